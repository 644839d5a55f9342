"""The desk: the commands and queries a shop backend calls, and the effect dispatcher.

Every command loads the request, asks the aggregate for a :class:`~retouraanvraag.model.Change`,
and saves the new request together with the effects it owes in one storage transaction
(compare-and-set on the version; a lost race is retried a bounded number of times). Effects run
later, in :class:`Dispatcher`, each with a stable key so that retries never duplicate a label,
a refund or a mail.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import logging
import random
import re
import threading
import uuid
import zoneinfo
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final, Protocol

import attrs
from dateutil import tz

from retouraanvraag import photos as _photos
from retouraanvraag._codec import converter
from retouraanvraag.adapters.clock import SystemClock
from retouraanvraag.errors import (
    ConcurrentModification,
    IdempotencyConflict,
    InvalidInput,
    InvalidPhoto,
    LeaseLost,
    NotFound,
    PortRejected,
    ReturnFeeMismatch,
    ReturnRefused,
    ReturnWindowExpired,
    TransitionNotAllowed,
    WrongType,
)
from retouraanvraag.model import (
    CUSTOMER,
    SYSTEM,
    TRANSITIONS,
    Actor,
    Change,
    Channel,
    Customer,
    Decision,
    Effect,
    EffectKind,
    MailKind,
    Money,
    Outcome,
    PaidFee,
    PhotoRef,
    ReasonCatalogue,
    RefundMethod,
    RefundRecord,
    ReturnItem,
    ReturnRequest,
    Status,
    _check_moment,
    _choice,
    _collection,
    _require,
    _tag_set,
    resolve_country,
    staff_actor,
)
from retouraanvraag.ports import (
    Clock,
    Commit,
    EffectState,
    IdempotencyRecord,
    LabelService,
    Mail,
    MailTransport,
    OutboxEntry,
    Page,
    PaymentService,
    PhotoStore,
    Query,
    Settlement,
    Storage,
    Tab,
)

__all__ = [
    "TRANSITIONS",
    "Desk",
    "DispatchReport",
    "Dispatcher",
    "MailRendering",
    "NewItem",
    "NewRequest",
    "Policy",
    "RuleEvaluator",
]

log = logging.getLogger("retouraanvraag")

#: How often a command is retried after losing a compare-and-set race.
COMMAND_RETRIES: Final = 8


class RuleEvaluator(Protocol):
    """What the desk needs of a rule set: an outcome per request (see ``retouraanvraag.rules``)."""

    def evaluate(self, request: ReturnRequest, *, default: Decision | None = None) -> Outcome:
        """Decide ``request``; items no rule decides take ``default``. Never raises."""
        ...


@functools.cache
def _zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def _check_zone(_instance: object, _attribute: object, value: str) -> None:
    # Only IANA names: dateutil would also take "" (the server's zone) and POSIX strings
    # such as "UTC+3" (which mean UTC-3), silently moving the return window.
    if not isinstance(value, str) or value not in _zones():
        raise InvalidInput(f"unknown IANA time zone {value!r}", field="timezone")


def _check_window(_instance: object, _attribute: object, value: int | None) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_WINDOW:
        raise InvalidInput(
            f"must be a whole number of days from 0 to {_MAX_WINDOW}, or None",
            field="return_window_days",
        )


_MAX_WINDOW: Final = 3650


@attrs.frozen
class Policy:
    """A shop's return policy.

    Attributes:
        manual_approval: with no rule deciding, ``True`` waits for review, ``False`` approves
            with a label (Sendcloud's "Retouren handmatig goedkeuren en afwijzen").
        return_window_days: days after delivery during which a return may be asked
            (``None``: no window).
        timezone: the merchant's IANA zone; the window counts calendar days there.
        reasons: the return reasons the shop offers.
        rules: the shop's rule set, consulted at submission.
    """

    manual_approval: bool = True
    return_window_days: int | None = attrs.field(default=30, validator=_check_window)
    timezone: str = attrs.field(default="Europe/Amsterdam", validator=_check_zone)
    reasons: ReasonCatalogue = attrs.field(factory=ReasonCatalogue)
    rules: RuleEvaluator | None = attrs.field(default=None, eq=False)

    def deadline(self, delivered_at: dt.datetime) -> dt.date | None:
        """The last local day on which a return may be asked, or ``None`` without a window.

        Raises:
            InvalidInput: ``delivered_at`` is not an aware datetime between
                :data:`~retouraanvraag.model.EARLIEST_MOMENT` and ``LATEST_MOMENT`` (the
                field is ``delivered_at``).
        """
        _check_moment(delivered_at, "delivered_at")
        if self.return_window_days is None:
            return None
        # Within the bounds, neither the zone nor the window (at most ten years) can overflow.
        local = delivered_at.astimezone(tz.gettz(self.timezone))
        return local.date() + dt.timedelta(days=self.return_window_days)


def _uploads(value: Iterable[bytes]) -> tuple[bytes, ...]:
    return _collection(value, "photos", "uploads (bytes)")


def _new_items(value: Iterable[NewItem]) -> tuple[NewItem, ...]:
    return _collection(value, "items", "NewItem")


@attrs.frozen
class NewItem:
    """An item as the customer submits it; ``photos`` are raw uploads, validated on submit.

    Fields are checked by :meth:`Desk.submit` and :meth:`Desk.preview`, where an error can name
    the item (``items[1].unit_price``); ``photos`` must be a collection of uploads already here.
    """

    sku: str
    name: str
    quantity: int
    unit_price: Money
    reason: str
    reason_text: str | None = None
    photos: tuple[bytes, ...] = attrs.field(default=(), converter=_uploads)


@attrs.frozen
class NewRequest:
    """A return request as the portal or the API submits it.

    ``from_country`` may be an ISO code or a Dutch/English name; ``reason`` of an item a code or
    a label of the shop's catalogue. Fields are checked by :meth:`Desk.submit` and
    :meth:`Desk.preview`, each error naming its field; ``items`` and ``tags`` must be
    collections already here.
    """

    shop_id: str
    order_number: str
    customer: Customer
    from_country: str
    order_value: Money
    items: tuple[NewItem, ...] = attrs.field(converter=_new_items)
    ordered_at: dt.datetime | None = None
    delivered_at: dt.datetime | None = None
    refund_method: RefundMethod = RefundMethod.MONEY_BACK
    return_method: str | None = None
    channel: Channel = Channel.PORTAL
    tags: frozenset[str] = attrs.field(default=frozenset(), converter=_tag_set)
    return_fee: PaidFee | None = None


class MailRendering(Protocol):
    """Turns a request and a mail kind into a message (``retouraanvraag.mail.MailRenderer``)."""

    def render(self, request: ReturnRequest, kind: MailKind, *, key: str) -> Mail:
        """Render the mail owed under ``key``."""
        ...


def _fingerprint(command: str, arguments: Mapping[str, Any]) -> str:
    payload = json.dumps(
        {"command": command, "arguments": converter.unstructure(arguments)},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def _submission_fingerprint(new: NewRequest) -> str:
    """The submission's digest; photos count by their SHA-256, not by their bytes."""
    items = [
        {**attrs.asdict(item, recurse=False), "photos": [_digest(p) for p in item.photos]}
        for item in new.items
    ]
    return _fingerprint("submit", {**attrs.asdict(new, recurse=False), "items": items})


def _digest(upload: object) -> str:
    if not isinstance(upload, bytes | bytearray | memoryview):
        return repr(type(upload))
    return hashlib.sha256(upload).hexdigest()


#: How far an order or delivery moment may lie ahead of the desk's clock: the shop's, the
#: carrier's and the desk's clocks never agree to the second.
CLOCK_SKEW: Final = dt.timedelta(minutes=5)

# The type each field of a submission takes (``True``: or ``None``); what they hold is checked
# by the model's own validators when the request is drafted.
_REQUEST_FIELDS: Final[tuple[tuple[str, type, bool], ...]] = (
    ("shop_id", str, False),
    ("order_number", str, False),
    ("customer", Customer, False),
    ("from_country", str, False),
    ("order_value", Money, False),
    ("return_method", str, True),
    ("return_fee", PaidFee, True),
)
_ITEM_FIELDS: Final[tuple[tuple[str, type, bool], ...]] = (
    ("sku", str, False),
    ("name", str, False),
    ("quantity", int, False),
    ("unit_price", Money, False),
    ("reason", str, False),
    ("reason_text", str, True),
)


def _check_submission(new: NewRequest) -> None:
    """Refuse what cannot be a submission before any work, each problem by its field.

    Fields of the wrong type, moments that are naive or out of bounds, a delivery before the
    order, too many photos, and a photo that is not bytes or is too large.
    """
    if not isinstance(new, NewRequest):
        raise WrongType(expected="a NewRequest", got=type(new).__name__, field="request")
    for name, kind, optional in _REQUEST_FIELDS:
        _require(getattr(new, name), kind, name, optional=optional)
    _choice(RefundMethod, new.refund_method, "refund_method")
    _choice(Channel, new.channel, "channel")
    for name in ("ordered_at", "delivered_at"):
        if (moment := getattr(new, name)) is not None:
            _check_moment(moment, name)
    if (
        new.ordered_at is not None
        and new.delivered_at is not None
        and new.delivered_at < new.ordered_at - CLOCK_SKEW
    ):
        raise InvalidInput("is before the order date (ordered_at)", field="delivered_at")
    for i, item in enumerate(new.items):
        _require(item, NewItem, f"items[{i}]")
        for name, kind, optional in _ITEM_FIELDS:
            _require(getattr(item, name), kind, f"items[{i}].{name}", optional=optional)
    _check_uploads(new)


def _check_uploads(new: NewRequest) -> None:
    """Refuse too many photos, and one that is not bytes or is too large, by its place."""
    count = sum(len(item.photos) for item in new.items)
    if count > _photos.MAX_PHOTOS_PER_REQUEST:
        raise InvalidPhoto(
            f"{count} photos; at most {_photos.MAX_PHOTOS_PER_REQUEST} per request",
            field="photos",
        )
    for i, item in enumerate(new.items):
        for j, upload in enumerate(item.photos):
            field = f"items[{i}].photos[{j}]"
            if not isinstance(upload, bytes | bytearray | memoryview):
                raise InvalidPhoto(f"must be bytes, not {type(upload).__name__}", field=field)
            if len(upload) > _photos.MAX_PHOTO_BYTES:
                raise InvalidPhoto(
                    f"is {len(upload)} bytes; at most {_photos.MAX_PHOTO_BYTES} are allowed",
                    field=field,
                )


def _in_future(moment: dt.datetime | None, now: dt.datetime) -> bool:
    return moment is not None and moment > now + CLOCK_SKEW


def _with_fee_asked(request: ReturnRequest, asked: Money | None) -> ReturnRequest:
    """The request with the return fee the rules ask, which the customer must have paid.

    With no fee asked, a paid fee is kept as it is; an asked fee of zero needs no payment.

    Raises:
        ReturnFeeMismatch: the fee paid (or none) is not the one asked.
        CurrencyMismatch: the rules ask a fee in another currency than the order's.
    """
    if asked is None:
        return request
    request = attrs.evolve(request, return_fee_asked=asked)
    paid = request.return_fee.amount if request.return_fee is not None else None
    if (paid.amount if paid is not None else 0) != asked.amount:
        raise ReturnFeeMismatch(asked=asked, paid=paid)
    return request


_ADDRESS: Final = re.compile(r"\S+@\S+")
_PROBLEM_LIMIT: Final = 500


def _problem(text: str) -> str:
    """A port's error text, fit to store and show staff: one line, short, no addresses."""
    return _ADDRESS.sub("<address>", " ".join(text.split()))[:_PROBLEM_LIMIT]


@functools.lru_cache(maxsize=256)
def _compiled_condition(
    text: str, reasons: ReasonCatalogue, timezone: str
) -> Callable[[ReturnRequest], bool]:
    """A tab filter, compiled once per text and policy rather than for every page."""
    from retouraanvraag.rules import compile_condition  # noqa: PLC0415 - imports the grammar

    return compile_condition(text, reasons=reasons, timezone=timezone)


class Desk:
    """The service a shop backend calls: submit, decide, move along, list.

    Args:
        storage: where requests, their outbox and idempotency records live.
        photos: where validated customer photos go.
        policy: one policy for every shop, or a function from shop id to its policy.
        clock: the time source (``SystemClock`` by default).
    """

    def __init__(
        self,
        storage: Storage,
        *,
        photos: PhotoStore | None = None,
        policy: Policy | Callable[[str], Policy] | None = None,
        clock: Clock | None = None,
    ) -> None:
        """Wire the desk to its ports."""
        self._storage = storage
        self._photos = photos
        self._policy: Callable[[str], Policy]
        if isinstance(policy, Policy) or policy is None:
            default = policy or Policy()
            self._policy = lambda _shop: default
        else:
            self._policy = policy
        self._clock = clock or SystemClock()

    def policy(self, shop_id: str) -> Policy:
        """The policy in force for ``shop_id``."""
        return self._policy(shop_id)

    # -- submission -------------------------------------------------------------------------

    def _draft(self, new: NewRequest, policy: Policy, now: dt.datetime) -> ReturnRequest:
        """Validate a submission into a request (after :func:`_check_submission`).

        Its photos are not stored yet: each upload stands in as a reference without a key, so
        that the rules see that the item has photos (``Heeft foto's``).
        """
        for name in ("ordered_at", "delivered_at"):
            if _in_future(getattr(new, name), now):
                minutes = int(CLOCK_SKEW.total_seconds() // 60)
                raise InvalidInput(
                    f"is in the future (more than {minutes} minutes after the desk's clock)",
                    field=name,
                )
        country = resolve_country(new.from_country, field="from_country")
        if not new.items:
            raise InvalidInput("a return request needs at least one item", field="items")
        items = []
        for i, item in enumerate(new.items):
            reason = policy.reasons.resolve(item.reason, field=f"items[{i}].reason")
            text = item.reason_text.strip() if item.reason_text else None
            if reason.needs_text and not text:
                raise InvalidInput(
                    f"reason {reason.code!r} needs the customer's own words",
                    field=f"items[{i}].reason_text",
                )
            try:
                items.append(
                    ReturnItem(
                        sku=item.sku,
                        name=item.name,
                        quantity=item.quantity,
                        unit_price=item.unit_price,
                        reason=reason.code,
                        reason_text=text,
                        photos=tuple(PhotoRef("", "", len(upload)) for upload in item.photos),
                    )
                )
            except InvalidInput as exc:
                raise exc.at(f"items[{i}]") from exc
        if new.delivered_at is not None:
            deadline = policy.deadline(new.delivered_at)
            today = now.astimezone(tz.gettz(policy.timezone)).date()
            if deadline is not None and today > deadline:
                raise ReturnWindowExpired(
                    order_number=new.order_number,
                    deadline=deadline.isoformat(),
                    days=policy.return_window_days or 0,
                )
        return ReturnRequest(
            shop_id=new.shop_id,
            id=uuid.uuid4().hex,
            order_number=new.order_number,
            customer=new.customer,
            from_country=country,
            order_value=new.order_value,
            items=tuple(items),
            created_at=now,
            ordered_at=new.ordered_at,
            delivered_at=new.delivered_at,
            refund_method=new.refund_method,
            return_method=new.return_method,
            channel=new.channel,
            tags=new.tags,
            return_fee=new.return_fee,
        )

    def _outcome(self, request: ReturnRequest, policy: Policy) -> Outcome:
        # Items no rule decides take the policy's default; the strictest item still decides.
        default = Decision.REVIEW if policy.manual_approval else Decision.APPROVE_WITH_LABEL
        if policy.rules is None:
            return Outcome(default)
        outcome = policy.rules.evaluate(request, default=default)
        if outcome.decision is None:
            outcome = attrs.evolve(outcome, decision=default, rule=None)
        return outcome

    def preview(self, new: NewRequest) -> Outcome:
        """What the shop's rules would decide for ``new``, without storing anything.

        A portal uses ``Outcome.refused`` to grey out items that cannot be returned.

        Raises:
            InvalidInput: the submission is invalid (see :meth:`submit`).
        """
        _check_submission(new)
        policy = self.policy(new.shop_id)
        request = self._draft(new, policy, self._clock.now())
        return self._outcome(request, policy)

    def submit(self, new: NewRequest, *, idempotency_key: str | None = None) -> ReturnRequest:
        """Take a customer's return request; the shop's rules may decide it at once.

        Args:
            new: the submission.
            idempotency_key: the same key with the same submission returns the first result.

        Returns:
            The stored request: ``requested``, or already decided by a rule.

        Raises:
            InvalidInput: an invalid submission, naming its field (its subclasses name the
                problem: ``WrongType``, ``UnknownCountry``, ``UnknownReason``,
                ``InvalidMoney``, ``InvalidPhoto``, ``ReturnWindowExpired``); an order or
                delivery moment in the future (beyond ``CLOCK_SKEW``), or a delivery before
                the order; nothing is stored.
            ReturnRefused: the rules refuse the return or some of its items.
            ReturnFeeMismatch: the fee paid is not the return fee the rules ask (no fee paid
                when one is asked included); nothing is stored.
            IdempotencyConflict: the key was used with another submission.
            PortUnavailable: the store or the photo store failed; no photo is left behind
                unless the store could not even tell whether the request was saved (then
                its photos are kept and logged: retry with the same key).
        """
        _check_submission(new)
        fingerprint = _submission_fingerprint(new)
        first = self._replay(new.shop_id, idempotency_key, fingerprint, "submit")
        if first is not None:
            return first
        policy = self.policy(new.shop_id)
        now = self._clock.now()
        request = self._draft(new, policy, now)
        places = [(i, j) for i, item in enumerate(new.items) for j in range(len(item.photos))]
        validated = _photos.validate_photos(
            [p for item in new.items for p in item.photos],
            fields=[f"items[{i}].photos[{j}]" for i, j in places],
        )
        outcome = self._outcome(request, policy)
        if outcome.decision is Decision.NOT_RETURNABLE:
            raise ReturnRefused(tuple((r.index, r.message) for r in outcome.refused))
        request = _with_fee_asked(request, outcome.return_fee)
        if outcome.carrier:
            request = attrs.evolve(request, carrier=outcome.carrier)
        # Photos are stored last, once nothing but the save can fail.
        change = self._decide(request.submitted(), outcome, now)
        if validated:
            with_photos = self._store_photos(change.request, [i for i, _ in places], validated)
            change = attrs.evolve(change, request=with_photos)
        saved = self._save_new(change, fingerprint, idempotency_key)
        log.info(
            "return request submitted",
            extra={"shop_id": saved.shop_id, "request_id": saved.id, "status": saved.status},
        )
        return saved

    def _save_new(
        self, change: Change, fingerprint: str, idempotency_key: str | None
    ) -> ReturnRequest:
        request = change.request
        record = None
        if idempotency_key is not None:
            result = attrs.evolve(request, version=1)
            record = IdempotencyRecord(
                request.shop_id, idempotency_key, fingerprint, request.id, result
            )
        try:
            return self._storage.commit(Commit(request, None, change.effects, idempotency=record))
        except Exception as exc:
            refused = isinstance(exc, ConcurrentModification | InvalidInput)
            lookup: Exception | None = None
            stored = None
            try:
                # A refusal changed nothing; any other error may be the lost answer to a commit
                # that was applied (a networked store): ask before deleting any photo.
                stored = None if refused else self._stored_after_all(request)
            except Exception as error:  # noqa: BLE001 - whatever it is, the outcome is unknown
                lookup = error
            if lookup is not None:
                # Nobody can say whether the request was saved. Its photos stay: a photo that
                # nothing points to can be swept, a saved request's deleted photo is lost.
                keys = [ref.key for item in request.items for ref in item.photos]
                log.warning(
                    "a submission's save and the look-up after it failed; its photos are kept",
                    extra={"shop_id": request.shop_id, "request_id": request.id, "photos": keys},
                )
                exc.add_note(
                    f"whether request {request.id} was saved is unknown (the look-up failed: "
                    f"{type(lookup).__name__}); its {len(keys)} photo(s) were kept"
                )
                raise
            if stored is not None:
                log.warning(
                    "a submission's save answered with an error but was applied",
                    extra={"shop_id": request.shop_id, "request_id": request.id},
                )
                return stored
            # Nothing points to the photos stored for this submission: remove them.
            self._forget_photos(request)
            if idempotency_key is None or not isinstance(exc, ConcurrentModification):
                raise
            # Another call with this key won the race; return its result (or refuse).
            first = self._replay(request.shop_id, idempotency_key, fingerprint, "submit")
            if first is None:
                raise
            return first

    def _store_photos(
        self,
        request: ReturnRequest,
        owners: Sequence[int],
        validated: Sequence[_photos.ValidatedPhoto],
    ) -> ReturnRequest:
        if self._photos is None:
            raise InvalidInput("this desk takes no photos (no photo store)", field="photos")
        refs: dict[int, list[PhotoRef]] = {}
        stored: list[PhotoRef] = []
        try:
            for owner, photo in zip(owners, validated, strict=True):
                ref = self._photos.put(request.shop_id, photo.data, photo.content_type)
                stored.append(ref)
                refs.setdefault(owner, []).append(ref)
        except Exception:
            # The submission fails: nothing would point to what it stored so far.
            self._delete_photos(request.shop_id, stored)
            raise
        items = tuple(
            attrs.evolve(item, photos=tuple(refs.get(i, ())))
            for i, item in enumerate(request.items)
        )
        return attrs.evolve(request, items=items)

    def _stored_after_all(self, request: ReturnRequest) -> ReturnRequest | None:
        """The new request as stored, if a commit that raised was applied; else ``None``."""
        try:
            return self._storage.get(request.shop_id, request.id)
        except NotFound:
            return None

    def _forget_photos(self, request: ReturnRequest) -> None:
        self._delete_photos(request.shop_id, [p for item in request.items for p in item.photos])

    def _delete_photos(self, shop_id: str, photos: Iterable[PhotoRef]) -> None:
        """Delete the photos of a failed submission; one that resists is logged, not raised."""
        if self._photos is None:
            return
        for photo in photos:
            try:
                self._photos.delete(shop_id, photo.key)
            except Exception:
                # Already failing: the submission's own error is the one to raise.
                log.exception(
                    "could not remove the photo of a failed submission",
                    extra={"shop_id": shop_id, "photo": photo.key},
                )

    def _decide(self, change: Change, outcome: Outcome, now: dt.datetime) -> Change:
        """Apply a rule set's (or the policy's) decision at submission."""
        request = change.request
        actor = Actor.rule(outcome.rule) if outcome.rule else SYSTEM
        trace = outcome.trace
        decided: Change
        match outcome.decision:
            case Decision.APPROVE_WITH_LABEL | Decision.APPROVE_WITHOUT_LABEL:
                decided = request.approve(
                    with_label=outcome.decision is Decision.APPROVE_WITH_LABEL,
                    refund_return_fee=outcome.refund_return_fee,
                    actor=actor,
                    at=now,
                    carrier=outcome.carrier,
                    trace=trace,
                )
            case Decision.REJECT:
                decided = request.reject(
                    reason=outcome.reason or "Afgewezen", actor=actor, at=now, trace=trace
                )
            case _:
                if trace:
                    entry = attrs.evolve(request.history[-1], trace=trace)
                    request = attrs.evolve(request, history=(*request.history[:-1], entry))
                return Change(request, change.effects)
        return Change(decided.request, change.effects + decided.effects)

    # -- commands on a stored request -------------------------------------------------------

    def _replay(
        self, shop_id: str, key: str | None, fingerprint: str, command: str
    ) -> ReturnRequest | None:
        """The first result under ``key``, if there is one (and the arguments match)."""
        if key is None:
            return None
        record = self._storage.idempotency_record(shop_id, key)
        if record is None:
            return None
        if record.fingerprint != fingerprint:
            raise IdempotencyConflict(key=key, command=command)
        return record.result

    def _run(
        self,
        *,
        shop_id: str,
        request_id: str,
        command: str,
        arguments: Mapping[str, Any],
        step: Callable[[ReturnRequest, dt.datetime], Change],
        idempotency_key: str | None,
    ) -> ReturnRequest:
        fingerprint = _fingerprint(command, {"request_id": request_id, **arguments})
        for attempt in range(COMMAND_RETRIES):
            first = self._replay(shop_id, idempotency_key, fingerprint, command)
            if first is not None:
                return first
            request = self._storage.get(shop_id, request_id)
            try:
                change = step(request, self._clock.now())
            except TransitionNotAllowed:
                # A call with this key may have won a race against us: its result stands.
                first = self._replay(shop_id, idempotency_key, fingerprint, command)
                if first is not None:
                    return first
                raise
            record = None
            if idempotency_key is not None:
                result = attrs.evolve(change.request, version=request.version + 1)
                record = IdempotencyRecord(
                    shop_id, idempotency_key, fingerprint, request_id, result
                )
            try:
                saved = self._storage.commit(
                    Commit(change.request, request.version, change.effects, idempotency=record)
                )
            except ConcurrentModification:
                log.debug(
                    "lost a race, retrying",
                    extra={"request_id": request_id, "command": command, "attempt": attempt},
                )
                continue
            log.info(
                "command applied",
                extra={"shop_id": shop_id, "request_id": request_id, "command": command},
            )
            return saved
        raise ConcurrentModification(request_id=request_id, expected=None, actual=None)

    def approve(
        self,
        shop_id: str,
        request_id: str,
        *,
        with_label: bool = True,
        refund_return_fee: bool = False,
        actor: Actor | str,
        idempotency_key: str | None = None,
    ) -> ReturnRequest:
        """Approve a request, with a return label (a parcel is expected) or without.

        Args:
            shop_id: the shop.
            request_id: the request.
            with_label: create a label and mail it; ``False`` lets the customer keep the product.
            refund_return_fee: refund the fee the customer paid; asking for it on a request
                that has no paid fee is an error (the merchant's picture of it is wrong).
            actor: who decides: a staff id (``"anna"``, ``"staff:anna"``) or
                ``Actor.staff("anna")``.
            idempotency_key: the same key with the same arguments returns the first result.

        Raises:
            InvalidInput: ``actor`` is not staff, or ``refund_return_fee`` with no paid fee.
            NotFound: no such request in this shop.
            TransitionNotAllowed: the request is no longer ``requested``.
            IdempotencyConflict: the key was used with other arguments.
        """
        staff = staff_actor(actor)

        def step(request: ReturnRequest, now: dt.datetime) -> Change:
            change = request.approve(
                with_label=with_label, refund_return_fee=refund_return_fee, actor=staff, at=now
            )
            if refund_return_fee and request.return_fee is None:
                raise InvalidInput(
                    f"request {request.id} has no paid return fee to refund",
                    field="refund_return_fee",
                )
            return change

        return self._run(
            shop_id=shop_id,
            request_id=request_id,
            command="approve",
            arguments={
                "with_label": with_label,
                "refund_return_fee": refund_return_fee,
                "actor": staff,
            },
            step=step,
            idempotency_key=idempotency_key,
        )

    def reject(
        self,
        shop_id: str,
        request_id: str,
        *,
        reason: str,
        actor: Actor | str,
        idempotency_key: str | None = None,
    ) -> ReturnRequest:
        """Reject a request with a reason the customer reads; a paid fee is refunded.

        Raises:
            InvalidInput: the reason is empty, or ``actor`` is not staff.
            NotFound: no such request in this shop.
            TransitionNotAllowed: the request is no longer ``requested``.
            IdempotencyConflict: the key was used with other arguments.
        """
        if isinstance(reason, str):
            reason = reason.strip()  # as the aggregate stores it, so retries fingerprint alike
        staff = staff_actor(actor)
        return self._run(
            shop_id=shop_id,
            request_id=request_id,
            command="reject",
            arguments={"reason": reason, "actor": staff},
            step=lambda r, now: r.reject(reason=reason, actor=staff, at=now),
            idempotency_key=idempotency_key,
        )

    def cancel(
        self,
        shop_id: str,
        request_id: str,
        *,
        actor: Actor | str = CUSTOMER,
        idempotency_key: str | None = None,
    ) -> ReturnRequest:
        """Withdraw a request before its parcel arrived; voids the label, refunds a paid fee.

        ``actor`` is the customer (the default) or a staff member.

        Raises:
            InvalidInput: ``actor`` is neither the customer nor staff.
            NotFound: no such request in this shop.
            TransitionNotAllowed: the request is neither ``requested`` nor ``approved``.
        """
        who = staff_actor(actor, allow_customer=True)
        return self._run(
            shop_id=shop_id,
            request_id=request_id,
            command="cancel",
            arguments={"actor": who},
            step=lambda r, now: r.cancel(actor=who, at=now),
            idempotency_key=idempotency_key,
        )

    def mark_received(
        self,
        shop_id: str,
        request_id: str,
        *,
        actor: Actor | str,
        idempotency_key: str | None = None,
    ) -> ReturnRequest:
        """Record that the parcel arrived.

        Raises:
            InvalidInput: ``actor`` is not staff.
            NotFound: no such request in this shop.
            TransitionNotAllowed: the request is not ``approved``.
        """
        staff = staff_actor(actor)
        return self._run(
            shop_id=shop_id,
            request_id=request_id,
            command="mark_received",
            arguments={"actor": staff},
            step=lambda r, now: r.mark_received(actor=staff, at=now),
            idempotency_key=idempotency_key,
        )

    def complete(
        self,
        shop_id: str,
        request_id: str,
        *,
        actor: Actor | str,
        idempotency_key: str | None = None,
    ) -> ReturnRequest:
        """Close a received return.

        Raises:
            InvalidInput: ``actor`` is not staff.
            NotFound: no such request in this shop.
            TransitionNotAllowed: the request is not ``received``.
        """
        staff = staff_actor(actor)
        return self._run(
            shop_id=shop_id,
            request_id=request_id,
            command="complete",
            arguments={"actor": staff},
            step=lambda r, now: r.complete(actor=staff, at=now),
            idempotency_key=idempotency_key,
        )

    def resolve_attention(
        self, shop_id: str, request_id: str, *, actor: Actor | str, retry: bool = False
    ) -> ReturnRequest:
        """Clear a request's "needs attention" flags once a person has dealt with them.

        Args:
            shop_id: the shop.
            request_id: the request.
            actor: the staff member who resolved it (recorded in the history).
            retry: also run the effects that failed for good again (the carrier's account
                was fixed, say): a refund or mail goes back to the outbox under its own key, so
                one that did happen after all is not made twice; a label that was given up was
                voided, so it is asked for anew under the next attempt's key. Without ``retry``
                the failed effects stay failed: the person handled them outside the library.

        Returns:
            The request; unchanged (no history entry) when nothing needed attention.

        Raises:
            InvalidInput: ``actor`` is not staff.
            NotFound: no such request in this shop.
        """
        staff = staff_actor(actor)
        for _ in range(COMMAND_RETRIES):
            request = self._storage.get(shop_id, request_id)
            dead = tuple(
                e.effect
                for e in self._storage.outbox(shop_id, request_id)
                if e.state is EffectState.DEAD and request.can_retry(e.effect)
            )
            if not request.needs_attention and not (retry and dead):
                return request
            retried = dead if retry else ()
            change = request.resolve_attention(actor=staff, at=self._clock.now(), retry=retried)
            revive = tuple(e.key for e in retried if e.kind is not EffectKind.CREATE_LABEL)
            try:
                saved = self._storage.commit(
                    Commit(change.request, request.version, change.effects, revive=revive)
                )
            except ConcurrentModification:
                continue
            log.info(
                "attention resolved",
                extra={"shop_id": shop_id, "request_id": request_id, "retried": len(retried)},
            )
            return saved
        raise ConcurrentModification(request_id=request_id, expected=None, actual=None)

    # -- queries ----------------------------------------------------------------------------

    def get(self, shop_id: str, request_id: str) -> ReturnRequest:
        """One request of this shop.

        Raises:
            NotFound: no such request in this shop (another shop's id included).
        """
        return self._storage.get(shop_id, request_id)

    def list(self, shop_id: str, query: Query | None = None) -> Page:
        """Any listing: by status, creation date range, attention, predicate; a page at a time."""
        return self._storage.query(shop_id, query or Query())

    def _where(self, shop_id: str, rule: str | None) -> Callable[[ReturnRequest], bool] | None:
        if rule is None:
            return None
        policy = self.policy(shop_id)
        return _compiled_condition(rule, policy.reasons, policy.timezone)

    def requests_tab(
        self,
        shop_id: str,
        *,
        rejected: bool | None = None,
        rule: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page:
        """The requests tab: requests waiting for a decision and rejected ones.

        Args:
            shop_id: the shop.
            rejected: ``True`` only rejected ones (the "rejected" filter), ``False`` only
                waiting ones, ``None`` both.
            rule: a rule condition to filter by, in the rule language
                (``'Van land IS Nederland'``).
            limit: page size.
            cursor: the previous page's ``next_cursor``.
        """
        statuses = {
            None: Tab.REQUESTS.statuses,
            True: frozenset({Status.REJECTED}),
            False: frozenset({Status.REQUESTED}),
        }[rejected]
        query = Query(
            statuses=statuses, where=self._where(shop_id, rule), limit=limit, cursor=cursor
        )
        return self._storage.query(shop_id, query)

    def incoming_returns(
        self, shop_id: str, *, rule: str | None = None, limit: int = 50, cursor: str | None = None
    ) -> Page:
        """Approved returns whose parcel is expected or has arrived."""
        query = Query(
            statuses=Tab.INCOMING.statuses,
            where=self._where(shop_id, rule),
            limit=limit,
            cursor=cursor,
        )
        return self._storage.query(shop_id, query)

    def history_tab(self, shop_id: str, *, limit: int = 50, cursor: str | None = None) -> Page:
        """Finished returns: approved without return, cancelled, completed."""
        return self._storage.query(
            shop_id, Query(statuses=Tab.HISTORY.statuses, limit=limit, cursor=cursor)
        )

    def needing_attention(
        self, shop_id: str, *, limit: int = 50, cursor: str | None = None
    ) -> Page:
        """Requests with an effect that failed for good: a person must look."""
        return self._storage.query(shop_id, Query(needs_attention=True, limit=limit, cursor=cursor))


# -- the dispatcher ------------------------------------------------------------------------


@attrs.define
class DispatchReport:
    """What one dispatcher run did, counted by outcome."""

    done: int = 0
    retried: int = 0
    dead: int = 0

    @property
    def handled(self) -> int:
        """Entries handled in the run."""
        return self.done + self.retried + self.dead

    def add(self, other: DispatchReport) -> None:
        """Add another run's counts to this one."""
        self.done += other.done
        self.retried += other.retried
        self.dead += other.dead


#: What applying a port's answer to a (fresh) request gives: the change to commit, or ``None``
#: when the request keeps nothing of it and the entry is only settled.
_Apply = Callable[[ReturnRequest], Change | None]

#: The longest a failed effect waits for its next try: beyond this, a retry is meaningless.
MAX_BACKOFF_CAP: Final = dt.timedelta(days=30)
_MICROSECOND: Final = dt.timedelta(microseconds=1)


class Dispatcher:
    """Runs the effects the outbox holds: labels, refunds, mails.

    Several dispatchers (threads or processes) may run against one store: each claims entries
    under a lease, so an entry is worked on by one of them at a time; an entry whose worker died
    is claimed again once its lease runs out (that is the reconciler). A worker never starts an
    entry whose lease has run out by its clock. A transient failure is retried with exponential
    backoff and jitter; a permanent one, or one that keeps failing for ``max_attempts`` tries,
    marks the request as needing attention. Nothing is dropped, and no entry ends the run: an
    unexpected error is logged with the entry's ids and the entry is retried later.

    The dispatcher calls the port; the aggregate says what the answer means for the request
    (:meth:`~retouraanvraag.model.ReturnRequest.label_created` and its siblings), and the
    dispatcher commits that, recording every effect in the request's history.

    Args:
        storage: the store the desk writes to.
        labels: the carrier.
        payments: the payment provider.
        mail: the mail transport.
        renderer: renders mails (``retouraanvraag.mail.MailRenderer``).
        clock: the time source.
        owner: this worker's name in leases (random by default).
        lease: how long a claimed entry stays this worker's.
        max_attempts: tries before a failing effect is given up and flagged.
        backoff: the first retry's delay; it doubles per try, with jitter, up to ``backoff_cap``.
        backoff_cap: the longest delay, at most :data:`MAX_BACKOFF_CAP`.
        seed: seeds the jitter (tests).
    """

    def __init__(
        self,
        storage: Storage,
        *,
        labels: LabelService,
        payments: PaymentService,
        mail: MailTransport,
        renderer: MailRendering,
        clock: Clock | None = None,
        owner: str | None = None,
        lease: dt.timedelta = dt.timedelta(minutes=5),
        max_attempts: int = 8,
        backoff: dt.timedelta = dt.timedelta(seconds=30),
        backoff_cap: dt.timedelta = dt.timedelta(hours=6),
        seed: int | None = None,
    ) -> None:
        """Wire the dispatcher to the ports."""
        if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
            raise InvalidInput("must be a whole number of at least 1", field="max_attempts")
        if not isinstance(lease, dt.timedelta) or lease <= dt.timedelta(0):
            raise InvalidInput("must be a positive timedelta", field="lease")
        if not isinstance(backoff, dt.timedelta) or not isinstance(backoff_cap, dt.timedelta):
            raise InvalidInput("must be timedeltas", field="backoff")
        if backoff <= dt.timedelta(0) or backoff_cap < backoff:
            raise InvalidInput("must be positive and at most backoff_cap", field="backoff")
        if backoff_cap > MAX_BACKOFF_CAP:
            raise InvalidInput(f"must be at most {MAX_BACKOFF_CAP.days} days", field="backoff_cap")
        self._storage = storage
        self._labels = labels
        self._payments = payments
        self._mail = mail
        self._renderer = renderer
        self._clock = clock or SystemClock()
        self.owner = owner or f"worker-{uuid.uuid4().hex[:12]}"
        self._lease = lease
        self._max_attempts = max_attempts
        self._backoff = backoff
        self._backoff_cap = backoff_cap
        self._random = random.Random(seed)  # noqa: S311 - jitter, not cryptography

    def run_once(self, limit: int = 100) -> DispatchReport:
        """Claim up to ``limit`` due entries and run each once."""
        report = DispatchReport()
        now = self._clock.now()
        for entry in self._storage.claim(owner=self.owner, now=now, lease=self._lease, limit=limit):
            report.add(self._run_entry(entry))
        return report

    def run_until_idle(self, *, max_rounds: int = 1000, limit: int = 100) -> DispatchReport:
        """Run rounds until no entry is due now (follow-up mails included)."""
        total = DispatchReport()
        for _ in range(max_rounds):
            report = self.run_once(limit)
            total.add(report)
            if report.handled == 0:
                break
        return total

    def run_worker(
        self, stop: threading.Event, *, poll: float = 1.0, limit: int = 100
    ) -> DispatchReport:
        """Run as a worker until ``stop`` is set: drain, then wait ``poll`` seconds, again.

        Nothing ends the worker but ``stop``: a store that is unavailable for a moment, or any
        other error, is logged and the worker waits and tries again (entries it had claimed
        come back when their lease runs out).
        """
        total = DispatchReport()
        while not stop.is_set():
            try:
                total.add(self.run_until_idle(limit=limit))
            except Exception as exc:  # noqa: BLE001 - the loop outlives every failure
                log.warning(
                    "dispatcher round failed; the worker waits",
                    extra={"owner": self.owner, "error": type(exc).__name__},
                )
            stop.wait(poll)
        return total

    def backoff(self, attempts: int) -> dt.timedelta:
        """The delay before try ``attempts + 1``: doubling, capped, with full jitter on half."""
        first = self._backoff // _MICROSECOND
        cap = self._backoff_cap // _MICROSECOND
        # Whole microseconds, capped before any timedelta is made: no overflow at any attempt.
        doublings = min(max(attempts - 1, 0), cap.bit_length())
        base = dt.timedelta(microseconds=min(first << doublings, cap))
        jitter: float = self._random.random()
        return base / 2 + base / 2 * jitter

    # -- one entry -------------------------------------------------------------------------

    def _run_entry(self, entry: OutboxEntry) -> DispatchReport:
        try:
            return self._work(entry)
        except Exception as exc:
            log.exception(
                "effect could not be handled; retrying later",
                extra={
                    "shop_id": entry.shop_id,
                    "request_id": entry.effect.request_id,
                    "effect": entry.key,
                },
            )
            try:
                return self._retry_later(entry, _problem(f"{type(exc).__name__}: {exc}"))
            except Exception:  # noqa: BLE001 - the store is failing too: the lease runs out
                return DispatchReport()

    def _work(self, entry: OutboxEntry) -> DispatchReport:  # noqa: PLR0911
        now = self._clock.now()
        if entry.lease_until is not None and now >= entry.lease_until:
            # The lease ran out before we got here (an earlier entry's call was slow): another
            # worker may have done this one already. Never start what we no longer hold.
            return DispatchReport()
        try:
            request = self._storage.get(entry.shop_id, entry.effect.request_id)
        except NotFound:
            return self._give_up(entry, None, "request no longer exists")
        except PortRejected as exc:
            # The stored request cannot be read (a damaged row): a person must look.
            return self._give_up(entry, None, _problem(f"request cannot be read: {exc}"))
        try:
            apply = self._call(entry.effect, request)
        except PortRejected as exc:
            if entry.effect.kind is EffectKind.CREATE_LABEL:
                fresh = self._storage.get(entry.shop_id, request.id)
                if not fresh.wants_label(entry.effect.key):
                    # Refused because the key was voided meanwhile (a cancel won the race):
                    # no label exists, which is what the request wants now.
                    return self._record(
                        entry, fresh, lambda r: Change(r.label_voided(entry.effect, at=now), ())
                    )
            return self._give_up(entry, request, _problem(f"{type(exc).__name__}: {exc}"))
        except InvalidInput as exc:
            # Refused for good, or a message that cannot be rendered: retrying won't help.
            return self._give_up(entry, request, _problem(f"{type(exc).__name__}: {exc}"))
        except Exception as exc:  # noqa: BLE001 - a port's bug must not stop the worker
            return self._retry_later(entry, _problem(f"{type(exc).__name__}: {exc}"))
        return self._record(entry, request, apply)

    def _call(self, effect: Effect, request: ReturnRequest) -> _Apply | None:  # noqa: PLR0911
        """Call the port once for ``effect``; returns how to apply its answer to a request."""
        now = self._clock.now()
        match effect.kind:
            case EffectKind.CREATE_LABEL:
                if not request.wants_label(effect.key):
                    # Cancelled before (or while) the label was made, or a given-up key: make
                    # sure no label is left under it (a void of a key with no label is final).
                    self._labels.void_label(effect.key)
                    return lambda r: Change(r.label_voided(effect, at=now), ())
                if request.label is not None:
                    recorded = request.label
                    return lambda r: r.label_created(effect, r.label or recorded, at=now)
                label = self._labels.create_label(effect.key, request)
                return lambda r: r.label_created(effect, label, at=now)
            case EffectKind.VOID_LABEL:
                self._labels.void_label(effect.label_key or request.label_key)
                return lambda r: Change(r.label_voided(effect, at=now), ())
            case EffectKind.REFUND:
                due = request.refund_due
                if request.return_fee is None or due.amount == 0:
                    return None
                reference = self._payments.refund(
                    effect.key, request.return_fee.payment_reference, due
                )
                record = RefundRecord(effect.key, due, reference, now)
                return lambda r: (
                    None
                    if any(f.key == record.key for f in r.refunds)
                    else Change(r.with_refund(record, effect), ())
                )
            case EffectKind.MAIL:
                if effect.mail is None:
                    raise PortRejected(f"{effect.key}: mail effect without a kind")
                mail = self._renderer.render(request, effect.mail, key=effect.key)
                self._mail.send(effect.key, mail)
                return lambda r: Change(r.mail_sent(effect, at=now), ())
        raise PortRejected(f"{effect.key}: unknown effect kind")  # pragma: no cover

    def _record(
        self, entry: OutboxEntry, request: ReturnRequest, apply: _Apply | None
    ) -> DispatchReport:
        """Commit the port's answer and settle the entry; the port is never called again."""
        shop_id, effect = entry.shop_id, entry.effect
        settle = Settlement(effect.key, self.owner, EffectState.DONE)
        current = request
        for _ in range(COMMAND_RETRIES):
            change = apply(current) if apply is not None else None
            try:
                if change is None:
                    self._storage.settle(shop_id, settle)
                else:
                    self._storage.commit(
                        Commit(change.request, current.version, change.effects, settle=settle)
                    )
            except LeaseLost:
                # Another worker holds the entry now and will finish the (idempotent) job; a
                # label we made for a request that no longer wants it is ours to void.
                if effect.kind is EffectKind.CREATE_LABEL and apply is not None:
                    self._void_unwanted(entry, apply)
                return DispatchReport()
            except ConcurrentModification:
                # The desk saved the request meanwhile: apply the same answer to the fresh one.
                current = self._storage.get(shop_id, request.id)
                continue
            log.info(
                "effect done",
                extra={"shop_id": shop_id, "request_id": request.id, "effect": effect.key},
            )
            return DispatchReport(done=1)
        if effect.kind in {EffectKind.MAIL, EffectKind.VOID_LABEL}:
            # Lost every race: settle alone rather than send or void again; only the record of
            # it in the history is missing.
            log.warning(
                "effect done but not recorded in the history",
                extra={"shop_id": shop_id, "request_id": request.id, "effect": effect.key},
            )
            try:
                self._storage.settle(shop_id, settle)
            except LeaseLost:
                return DispatchReport()
            return DispatchReport(done=1)
        # A label or refund must be recorded: leave the entry to its lease, and the next try
        # gets the same answer from the provider under the same key.
        return DispatchReport()

    def _void_unwanted(self, entry: OutboxEntry, apply: _Apply) -> None:
        """After a lost lease: void the label we made if the request no longer wants it."""
        shop_id, effect = entry.shop_id, entry.effect
        for _ in range(COMMAND_RETRIES):
            current = self._storage.get(shop_id, effect.request_id)
            change = apply(current)
            if change is None or not any(e.kind is EffectKind.VOID_LABEL for e in change.effects):
                return  # still wanted: the worker holding the entry records it
            at = self._clock.now()
            try:
                self._labels.void_label(effect.key)
                after = change.request.label_voided(effect, at=at)
                commit = Commit(after, current.version)
            except Exception as exc:  # noqa: BLE001 - the void must not be forgotten
                problem = _problem(f"label made after a cancel; void failed: {exc}")
                commit = Commit(
                    change.request.given_up(effect, problem, at=at).request, current.version
                )
            try:
                self._storage.commit(commit)
            except ConcurrentModification:
                continue
            return

    def _retry_later(self, entry: OutboxEntry, error: str) -> DispatchReport:
        attempts = entry.attempts + 1
        if attempts >= self._max_attempts:
            request = self._storage.get(entry.shop_id, entry.effect.request_id)
            return self._give_up(entry, request, f"gave up after {attempts} tries: {error}")
        retry_at = self._clock.now() + self.backoff(attempts)
        settle = Settlement(
            entry.key, self.owner, EffectState.PENDING, error=error, retry_at=retry_at
        )
        log.warning(
            "effect failed, will retry",
            extra={
                "request_id": entry.effect.request_id,
                "effect": entry.key,
                "attempts": attempts,
            },
        )
        try:
            self._storage.settle(entry.shop_id, settle)
        except LeaseLost:
            return DispatchReport()
        return DispatchReport(retried=1)

    def _give_up(
        self, entry: OutboxEntry, request: ReturnRequest | None, error: str
    ) -> DispatchReport:
        settle = Settlement(entry.key, self.owner, EffectState.DEAD, error=error)
        log.error(
            "effect failed for good; request needs attention",
            extra={"request_id": entry.effect.request_id, "effect": entry.key},
        )
        for _ in range(COMMAND_RETRIES):
            try:
                if request is None:
                    self._storage.settle(entry.shop_id, settle)
                else:
                    change = request.given_up(entry.effect, error, at=self._clock.now())
                    self._storage.commit(
                        Commit(change.request, request.version, change.effects, settle=settle)
                    )
            except LeaseLost:
                return DispatchReport()
            except ConcurrentModification:
                request = self._storage.get(entry.shop_id, entry.effect.request_id)
                continue
            return DispatchReport(dead=1)
        return DispatchReport()
