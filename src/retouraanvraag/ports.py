"""The ports: what a host (or a plugin author) implements to connect the library.

Each port is a :class:`typing.Protocol`; implement the methods, inherit nothing. Ports take and
return frozen attrs value objects. Every adapter translates its driver's errors into the one
vocabulary of :mod:`retouraanvraag.errors`: :class:`~retouraanvraag.errors.PortUnavailable`
(transient: the caller retries), :class:`~retouraanvraag.errors.PortRejected` (permanent: a person
must look), :class:`~retouraanvraag.errors.ConcurrentModification` and
:class:`~retouraanvraag.errors.NotFound`. The contract suites in :mod:`retouraanvraag.testing`
check an adapter against these docstrings.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Final, Protocol, runtime_checkable

import attrs

from retouraanvraag.errors import InvalidInput
from retouraanvraag.model import (
    Decision,
    Effect,
    Event,
    Label,
    MailKind,
    Money,
    Outcome,
    PhotoRef,
    ReturnRequest,
    Status,
    Tab,
)

if TYPE_CHECKING:
    from retouraanvraag.rules import ConditionFilter

__all__ = [
    "COMMAND_RETRIES",
    "MAX_IDEMPOTENCY_KEY",
    "Attachment",
    "Clock",
    "Commit",
    "EffectState",
    "EventSink",
    "IdempotencyRecord",
    "LabelService",
    "Mail",
    "MailRendering",
    "MailTransport",
    "OutboxEntry",
    "Page",
    "PaymentService",
    "PhotoStore",
    "Query",
    "RuleEvaluator",
    "Settlement",
    "Storage",
    "SystemClock",
    "Tab",
    "check_idempotency_key",
]

#: How often the desk and the dispatcher redo a change that lost a compare-and-set race
#: (``ConcurrentModification``) before they give up.
COMMAND_RETRIES: Final = 8


# -- value objects crossing the storage port -------------------------------------------------


#: The longest idempotency key a store takes (as payment providers bound theirs).
MAX_IDEMPOTENCY_KEY: Final = 255


def check_idempotency_key(key: object) -> str:
    """``key`` if it can be an idempotency key: 1 to 255 printable characters.

    Keys come from outside (a portal's header, a job id); one that no store can index, or
    that holds NUL, a line break or a lone surrogate, is refused before anything is stored.

    Raises:
        InvalidInput: naming the field ``idempotency_key``, never echoing the key.
    """
    if (
        not isinstance(key, str)
        or not key
        or len(key) > MAX_IDEMPOTENCY_KEY
        or not key.isprintable()
    ):
        raise InvalidInput(
            f"must be 1 to {MAX_IDEMPOTENCY_KEY} printable characters", field="idempotency_key"
        )
    return key


@attrs.frozen
class IdempotencyRecord:
    """The first result of a command run under an idempotency key.

    Attributes:
        key: the caller's key, unique per shop.
        fingerprint: a digest of the command and its arguments.
        request_id: the request the command produced or changed.
        result: the request as the command left it (what a retry returns).
    """

    shop_id: str
    key: str
    fingerprint: str
    request_id: str
    result: ReturnRequest


class EffectState(enum.StrEnum):
    """Where an outbox entry is."""

    PENDING = "pending"
    DONE = "done"
    DEAD = "dead"


@attrs.frozen
class OutboxEntry:
    """An effect owed by a saved change, as the outbox holds it."""

    shop_id: str
    effect: Effect
    state: EffectState = EffectState.PENDING
    attempts: int = 0
    available_at: dt.datetime | None = None
    lease_owner: str | None = None
    lease_until: dt.datetime | None = None
    last_error: str | None = None

    @property
    def key(self) -> str:
        """The effect's stable key."""
        return self.effect.key


@attrs.frozen
class Settlement:
    """How a claimed outbox entry ends: done, retried later, or dead (needs a person)."""

    key: str
    owner: str
    state: EffectState
    error: str | None = None
    retry_at: dt.datetime | None = None


@attrs.frozen
class Commit:
    """One storage transaction: save a request, queue its effects, record the key, settle.

    Attributes:
        request: the request to save; its ``version`` is ignored (the store sets it).
        expected_version: ``None`` to insert a new request, else the version it must still have.
        effects: outbox entries to add; an effect whose key is already queued is not added again.
        idempotency: the record to store with the change (key unique per shop); the store
            records as its ``result`` the request as it saves it, whatever the caller put there.
        settle: an outbox entry of this request's to settle in the same transaction.
        revive: keys of this request's dead outbox entries to run again: each goes back to
            pending, due at once, with ``attempts`` 0 and its ``last_error`` kept. A key that is
            not a dead entry of this request is refused with ``InvalidInput``.
    """

    request: ReturnRequest
    expected_version: int | None
    effects: tuple[Effect, ...] = ()
    idempotency: IdempotencyRecord | None = None
    settle: Settlement | None = None
    revive: tuple[str, ...] = ()


def _status_set(value: Iterable[Status] | None) -> frozenset[Status] | None:
    return None if value is None else frozenset(value)


@attrs.frozen
class Query:
    """A listing of one shop's requests, oldest first, a page at a time.

    Attributes:
        statuses: only these statuses (``None``: any).
        created_from: created at or after (aware).
        created_before: created strictly before (aware).
        needs_attention: only requests that do (``True``) or do not (``False``) need a person.
        where: a predicate applied after the indexed filters, in Python.
        condition: a rule condition (:func:`retouraanvraag.rules.compile_condition`); a store
            with a database runs it there (the SQL stores translate every built-in field),
            others call it as a predicate. With ``where`` too, a request must pass both.
        limit: page size, 1 to 500.
        cursor: the ``next_cursor`` of the previous page.
    """

    statuses: frozenset[Status] | None = attrs.field(default=None, converter=_status_set)
    created_from: dt.datetime | None = None
    created_before: dt.datetime | None = None
    needs_attention: bool | None = None
    where: Callable[[ReturnRequest], bool] | None = attrs.field(default=None, eq=False)
    condition: ConditionFilter | None = attrs.field(default=None, eq=False, kw_only=True)
    limit: int = attrs.field(
        default=50,
        validator=attrs.validators.and_(attrs.validators.ge(1), attrs.validators.le(500)),
    )
    cursor: str | None = None


@attrs.frozen
class Page:
    """One page of a listing; ``next_cursor`` is ``None`` on the last page."""

    items: tuple[ReturnRequest, ...]
    next_cursor: str | None


# -- the ports -------------------------------------------------------------------------------


@runtime_checkable
class Storage(Protocol):
    """Requests, their outbox and idempotency records, changed together in one transaction.

    Every call is scoped to a shop: another shop's request id behaves as not found.
    Implementations must be safe to call from several threads.
    """

    def get(self, shop_id: str, request_id: str) -> ReturnRequest:
        """Load a request.

        Raises:
            NotFound: no such request in this shop.
            PortRejected: the stored row is damaged (it names the shop and the request); a
                person must look, retrying will not help.
            PortUnavailable: the store cannot be reached now.
        """
        ...

    def commit(self, commit: Commit) -> ReturnRequest:
        """Apply ``commit`` atomically: all of it or none of it.

        Saves the request with ``version = expected_version + 1`` (1 for a new request), adds
        each effect whose key is not queued yet for this shop, stores the idempotency record,
        and settles the named outbox entry. The total of the request's refunds must not exceed
        its paid fee, and the paid fee (amount, currency, payment reference) is fixed once
        stored; the store enforces both itself.

        Returns:
            The request as saved, with its new version.

        Raises:
            IdempotencyKeyTaken: the idempotency key is recorded already (checked first).
            LeaseLost: the settled entry is not leased to ``settle.owner`` (checked second).
            ConcurrentModification: the stored version is not ``expected_version``, or a new
                request's id exists.
            NotFound: ``expected_version`` is set but the request does not exist in this shop.
            PortRejected: the change breaks a stored invariant (a refund above the paid fee, a
                paid fee changed, added or dropped).
            InvalidInput: the commit is malformed: an effect or record of another request, a
                naive ``retry_at``, an ``expected_version`` below 1, a ``revive`` key that is
                not a dead entry of this request.
            PortUnavailable: the store cannot be reached now; nothing was changed.
        """
        ...

    def idempotency_record(self, shop_id: str, key: str) -> IdempotencyRecord | None:
        """The record stored under ``key`` in this shop, or ``None``.

        Raises:
            PortRejected: the stored record is damaged (it names the shop and the key).
            PortUnavailable: the store cannot be reached now.
        """
        ...

    def query(self, shop_id: str, query: Query) -> Page:
        """List requests of one shop, oldest first, by ``(created_at, id)``.

        With a ``where`` predicate a store may stop scanning early: a page can then be short,
        even empty, while ``next_cursor`` is not ``None``. Follow the cursor to the end. A
        damaged row is left out and logged with its ids, so that one row never hides a tab.

        Raises:
            InvalidInput: the cursor is not one this store handed out.
            PortUnavailable: the store cannot be reached now.
        """
        ...

    def count(self, shop_id: str, query: Query) -> int:
        """How many requests every page of ``query`` lists together (a tab's title count).

        ``limit`` and ``cursor`` play no part. The count runs where the listing's filters run
        (an index range per status in the SQL stores, the rule condition as SQL); a row that
        cannot be read back may be counted, though listings leave it out.

        Raises:
            InvalidInput: the query has a ``where`` predicate (Python, which a database cannot
                count by), or a rule condition naming a field the store cannot read in its
                database (a host field): count such a listing by paging through it.
            PortUnavailable: the store cannot be reached now.
        """
        ...

    def claim(
        self, *, owner: str, now: dt.datetime, lease: dt.timedelta, limit: int
    ) -> Sequence[OutboxEntry]:
        """Lease up to ``limit`` due pending entries that nobody holds (or whose lease ran out).

        Claimed entries carry ``lease_owner=owner`` and ``lease_until=now + lease``; no other
        caller gets them until the lease runs out. Oldest first. A damaged entry is set aside
        (dead, its request flagged as needing attention when it can be read) and never blocks
        the others, in any shop.

        Raises:
            InvalidInput: a naive ``now``, a lease that is not positive, a negative limit or an
                empty owner.
            PortUnavailable: the store cannot be reached now.
        """
        ...

    def settle(self, shop_id: str, settlement: Settlement) -> None:
        """Settle a leased outbox entry on its own, leaving its request untouched.

        For effects whose outcome changes nothing on the request (a mail sent, a label voided,
        a retry scheduled), so that a worker never competes with the desk for the version.

        Raises:
            LeaseLost: the entry is not pending and leased to ``settlement.owner``.
            InvalidInput: a naive ``retry_at``.
            PortUnavailable: the store cannot be reached now; nothing was changed.
        """
        ...

    def outbox(self, shop_id: str, request_id: str) -> Sequence[OutboxEntry]:
        """Every outbox entry of one request, in the order they were queued.

        A damaged entry is left out and logged with its ids.

        Raises:
            PortUnavailable: the store cannot be reached now.
        """
        ...


@runtime_checkable
class LabelService(Protocol):
    """A carrier integration that creates and voids return labels."""

    def create_label(self, key: str, request: ReturnRequest) -> Label:
        """Create the return label for ``request``.

        ``key`` is stable across retries: a second call with the same key returns the label
        made by the first and creates nothing new. A key that was voided is spent: a call
        under it is refused (``PortRejected``), never answered with the voided label or a new
        one. The library itself asks under a fresh key after a void.

        Raises:
            PortUnavailable: try again later.
            PortRejected: the carrier refuses (an unsupported country, a voided key, say).
        """
        ...

    def void_label(self, key: str) -> None:
        """Void the label created under ``key``; a no-op when it is void already.

        A void is final for its key, also when no label was made under it yet: a slow
        ``create_label`` under that key that arrives later must be refused. (A carrier without
        such a notion needs the adapter to remember voided keys.)

        Raises:
            PortUnavailable: try again later.
            PortRejected: the carrier will not void it (already scanned, say).
        """
        ...


@runtime_checkable
class PaymentService(Protocol):
    """The payment provider that took the return fee and refunds it."""

    def refund(self, key: str, payment_reference: str, amount: Money) -> str:
        """Refund ``amount`` of the payment ``payment_reference``; returns the refund's reference.

        ``key`` is stable across retries: a second call with the same key returns the first
        refund's reference and moves no money.

        Raises:
            PortUnavailable: try again later.
            PortRejected: the provider refuses (more than was paid, unknown payment, …).
        """
        ...


@attrs.frozen
class Attachment:
    """A file attached to a mail."""

    filename: str
    content_type: str
    data: bytes = attrs.field(repr=lambda d: f"<{len(d)} bytes>")


@attrs.frozen
class Mail:
    """A rendered message, ready to send; ``message_id`` derives from the effect key.

    ``shop_id`` and ``request_id`` say whose mail it is, so that a transport or a host can
    file it per shop and find a request's mails without reading the effect key apart.
    """

    to: str = attrs.field(repr=False)
    subject: str
    text: str
    html: str
    kind: MailKind
    request_id: str
    message_id: str
    sender: str = "retouren@localhost"
    language: str = "nl"
    attachments: tuple[Attachment, ...] = ()
    shop_id: str = ""


@runtime_checkable
class MailTransport(Protocol):
    """Delivers rendered mail."""

    def send(self, key: str, mail: Mail) -> None:
        """Deliver ``mail``. ``key`` is stable across retries.

        Plain SMTP cannot promise exactly once: a mail whose acceptance was lost in transit is
        sent again on retry (same ``Message-ID``). Transports that can deduplicate by key do.

        Raises:
            PortUnavailable: try again later.
            PortRejected: the address or the message is refused for good.
        """
        ...


@runtime_checkable
class EventSink(Protocol):
    """The host's ear: it hears of every transition and of the effects a host acts on.

    The dispatcher delivers each queued :class:`~retouraanvraag.model.Event` through it, after
    the commit that made it, with the same retries, backoff and "needs attention" as every
    other effect. Events of one request can arrive out of order after a retry: order them by
    ``version`` (and ``occurred_at``), not by arrival.
    """

    def deliver(self, event: Event) -> None:
        """Hand ``event`` to the host. ``event.key`` is stable across retries.

        Return only once the host has it. A retry delivers the same event (same key, same
        content) again when an earlier try's answer was lost, so the receiving end must treat
        a key it has seen as done (a webhook sends the key as its event id). Sinks that can
        deduplicate by key themselves do.

        Raises:
            PortUnavailable: try again later (the receiver is down, busy, or timed out).
            PortRejected: the receiver refuses the event for good: a person must look.
        """
        ...


@runtime_checkable
class PhotoStore(Protocol):
    """Keeps validated customer photos under generated names."""

    def put(self, shop_id: str, data: bytes, content_type: str) -> PhotoRef:
        """Store a validated image; returns its reference with a generated key.

        Raises:
            InvalidPhoto: a content type other than JPEG, PNG or WebP.
            InvalidInput: an empty shop id.
            PortUnavailable: try again later.
        """
        ...

    def get(self, shop_id: str, key: str) -> bytes:
        """Fetch a stored image of this shop.

        Raises:
            NotFound: no such photo in this shop.
            PortUnavailable: try again later.
        """
        ...

    def delete(self, shop_id: str, key: str) -> None:
        """Remove a stored image of this shop; a no-op when there is none (or it is gone).

        The desk calls it for photos it stored for a submission that then failed, so that no
        customer photo is kept with nothing pointing to it.

        Raises:
            PortUnavailable: try again later.
        """
        ...


@runtime_checkable
class Clock(Protocol):
    """The current time."""

    def now(self) -> dt.datetime:
        """An aware datetime in UTC."""
        ...


class SystemClock:
    """The machine's clock, in UTC: the default :class:`Clock` of the desk and the dispatcher."""

    def now(self) -> dt.datetime:
        """The current time, aware, in UTC."""
        return dt.datetime.now(dt.UTC)


class RuleEvaluator(Protocol):
    """What the desk needs of a rule set: an outcome per request (see ``retouraanvraag.rules``)."""

    def evaluate(self, request: ReturnRequest, *, default: Decision | None = None) -> Outcome:
        """Decide ``request``; items no rule decides take ``default``. Never raises."""
        ...


class MailRendering(Protocol):
    """Turns a request and a mail kind into a message (``retouraanvraag.mail.MailRenderer``)."""

    def render(self, request: ReturnRequest, kind: MailKind, *, key: str) -> Mail:
        """Render the mail owed under ``key``."""
        ...
