"""The storage rules both adapters share, so that they agree to the byte.

:mod:`retouraanvraag.adapters.memory` and :mod:`retouraanvraag.adapters.sqlite` check commits,
claims and settlements, compare versions, hold the money cap, write timestamps and cursors, and
settle or revive outbox entries with these functions: what a cursor looks like and how an entry
settles is decided here, once. So is what a damaged row is called and what becomes of it
(:class:`DamagedRow`, :func:`flagged`, :func:`log_damage`).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import logging
import os
import re
from collections.abc import Sequence
from typing import Final, Protocol

import attrs

from retouraanvraag._codec import converter
from retouraanvraag.errors import (
    ConcurrentModification,
    IdempotencyKeyTaken,
    InvalidInput,
    LeaseLost,
    NotFound,
    PortRejected,
)
from retouraanvraag.model import Effect, PaidFee, ReturnRequest
from retouraanvraag.ports import (
    Commit,
    EffectState,
    IdempotencyRecord,
    OutboxEntry,
    Page,
    Query,
    Settlement,
    check_idempotency_key,
)

#: A request's place in a listing: its normalised ``created_at`` and its id.
Position = tuple[str, str]

_TIMESTAMP_RE: Final = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")
_CURSOR_TAG: Final = "r1"


# -- timestamps and cursors -------------------------------------------------------------------


def timestamp(value: dt.datetime, *, field: str) -> str:
    """An aware datetime as fixed-width UTC text that sorts like the instants it names.

    Raises:
        InvalidInput: the datetime is naive or cannot be expressed in UTC.
    """
    if not isinstance(value, dt.datetime) or value.tzinfo is None:
        raise InvalidInput("must be a timezone-aware datetime", field=field)
    try:
        utc = value.astimezone(dt.UTC)
    except OverflowError as exc:
        raise InvalidInput("is out of range once converted to UTC", field=field) from exc
    return utc.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def from_timestamp(text: str) -> dt.datetime:
    """Read back what :func:`timestamp` wrote, as an aware UTC datetime.

    Raises:
        ValueError: ``text`` is not what :func:`timestamp` writes (a corrupt row).
    """
    if not _TIMESTAMP_RE.fullmatch(text):
        raise ValueError(f"not a stored timestamp: {text[:40]!r}")
    return dt.datetime.fromisoformat(text)


def encode_cursor(position: Position) -> str:
    """An opaque cursor for the listing position after ``position``."""
    raw = json.dumps([_CURSOR_TAG, *position], separators=(",", ":"), ensure_ascii=False)
    return base64.urlsafe_b64encode(raw.encode()).decode("ascii").rstrip("=")


def decode_cursor(cursor: str) -> Position:
    """The position a cursor of :func:`encode_cursor` stands for.

    Raises:
        InvalidInput: the cursor is not one this store handed out.
    """
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (binascii.Error, UnicodeError, ValueError, AttributeError, TypeError) as exc:
        raise InvalidInput("is not a cursor this store handed out", field="cursor") from exc
    if (
        not isinstance(data, list)
        or len(data) != 3  # noqa: PLR2004
        or data[0] != _CURSOR_TAG
        or not isinstance(data[1], str)
        or not isinstance(data[2], str)
        or not _TIMESTAMP_RE.fullmatch(data[1])
    ):
        raise InvalidInput("is not a cursor this store handed out", field="cursor")
    try:
        from_timestamp(data[1])  # the shape is right; so must the date be (no 13th month)
    except ValueError:
        raise InvalidInput("is not a cursor this store handed out", field="cursor") from None
    return data[1], data[2]


def is_position(created_at: object, request_id: object) -> bool:
    """Whether a row's ``(created_at, id)`` can stand in a cursor (a damaged row's may not)."""
    return (
        isinstance(created_at, str)
        and isinstance(request_id, str)
        and _TIMESTAMP_RE.fullmatch(created_at) is not None
    )


def page_of(found: Sequence[tuple[Position, ReturnRequest]], limit: int) -> Page:
    """The first ``limit`` of ``found`` (matches in listing order), with a cursor if more."""
    if len(found) > limit:
        return Page(tuple(r for _, r in found[:limit]), encode_cursor(found[limit - 1][0]))
    return Page(tuple(r for _, r in found), None)


# -- commits ----------------------------------------------------------------------------------


def check_commit(commit: Commit) -> None:
    """Refuse a commit whose parts do not belong to its request.

    Raises:
        InvalidInput: an effect of another request, a record of another shop or request, a
            naive ``retry_at``, or an expected version below 1.
    """
    request = commit.request
    for effect in commit.effects:
        if effect.request_id != request.id:
            raise InvalidInput(
                f"effect {effect.key!r} belongs to request {effect.request_id}, "
                f"not to {request.id}",
                field="effects",
            )
    record = commit.idempotency
    if record is not None:
        check_idempotency_key(record.key)
    if record is not None and (record.shop_id, record.request_id) != (request.shop_id, request.id):
        raise InvalidInput(
            f"idempotency key {record.key!r} is recorded for request {record.request_id} of "
            f"shop {record.shop_id}, not for request {request.id} of shop {request.shop_id}",
            field="idempotency",
        )
    if commit.settle is not None:
        check_settlement(commit.settle)
    if commit.expected_version is not None and commit.expected_version < 1:
        raise InvalidInput(
            f"a stored request's version is at least 1, not {commit.expected_version}",
            field="expected_version",
        )


def new_version(commit: Commit) -> int:
    """The version the request gets if ``commit`` succeeds."""
    return 1 if commit.expected_version is None else commit.expected_version + 1


def check_version(commit: Commit, stored: int | None) -> None:
    """Compare-and-set: the stored version must be the one the commit expects.

    Raises:
        ConcurrentModification: a new request's id exists, or the version moved on.
        NotFound: an update of a request that does not exist in this shop.
    """
    request = commit.request
    if commit.expected_version is not None and stored is None:
        raise NotFound(shop_id=request.shop_id, request_id=request.id)
    if stored != commit.expected_version:
        raise ConcurrentModification(
            request_id=request.id, expected=commit.expected_version, actual=stored
        )


def key_taken(commit: Commit) -> IdempotencyKeyTaken:
    """The error for an idempotency key that another change already recorded."""
    key = commit.idempotency.key if commit.idempotency else ""
    return IdempotencyKeyTaken(
        shop_id=commit.request.shop_id, request_id=commit.request.id, key=key
    )


def lease_lost(commit: Commit) -> LeaseLost:
    """The error for settling an outbox entry that is not leased to the settler."""
    settle = commit.settle
    key, owner = (settle.key, settle.owner) if settle else ("", "")
    return LeaseLost(request_id=commit.request.id, key=key, owner=owner)


def check_revivable(commit: Commit, key: str, found: tuple[str, EffectState] | None) -> None:
    """Refuse a ``Commit.revive`` key that does not name a dead entry of the commit's request.

    Args:
        commit: the commit that names ``key`` in ``revive``.
        key: the outbox key to revive.
        found: the stored entry's ``(request id, state)`` in the commit's shop, or ``None``.

    Raises:
        InvalidInput: there is no such entry, it is another request's, or it is not dead.
    """
    if found is None:
        why = "there is no such entry"
    elif found[0] != commit.request.id:
        why = f"it belongs to request {found[0]}"
    elif found[1] is not EffectState.DEAD:
        why = f"it is {found[1].value}, not dead"
    else:
        return
    request = commit.request
    raise InvalidInput(
        f"outbox entry {key!r} cannot be revived with request {request.id} of shop "
        f"{request.shop_id}: {why}",
        field="revive",
    )


def revived(entry: OutboxEntry) -> OutboxEntry:
    """A dead entry run again: pending, due at once, no attempts, no lease; the error kept."""
    return attrs.evolve(
        entry,
        state=EffectState.PENDING,
        attempts=0,
        available_at=None,
        lease_owner=None,
        lease_until=None,
    )


# -- claims and settlements -------------------------------------------------------------------


def check_claim(*, owner: str, now: dt.datetime, lease: dt.timedelta, limit: int) -> None:
    """Refuse a claim that cannot mean anything.

    Raises:
        InvalidInput: an empty owner, a naive ``now``, a lease that is not positive, or a
            negative limit.
    """
    if not owner:
        raise InvalidInput("a claim needs an owner", field="owner")
    if unstorable(owner):
        raise InvalidInput(
            "holds a character no store can keep (NUL, a lone surrogate)", field="owner"
        )
    timestamp(now, field="now")
    if lease <= dt.timedelta(0):
        raise InvalidInput("must be positive", field="lease")
    try:  # a store adds the lease to `now` in its own zone or in UTC: both must be moments
        now + lease  # evaluated for its overflow only
        now.astimezone(dt.UTC) + lease
    except OverflowError:
        raise InvalidInput("ends past the last moment a store can hold", field="lease") from None
    if limit < 0:
        raise InvalidInput("must not be negative", field="limit")


def is_due(entry: OutboxEntry, now: dt.datetime) -> bool:
    """Whether a claim at ``now`` may take ``entry``: pending, due and not leased."""
    return (
        entry.state is EffectState.PENDING
        and (entry.available_at is None or entry.available_at <= now)
        and (entry.lease_until is None or entry.lease_until <= now)
    )


def check_settlement(settlement: Settlement) -> None:
    """Refuse a settlement with a naive ``retry_at``, or text no store can keep.

    Raises:
        InvalidInput: it has one.
    """
    if settlement.retry_at is not None:
        timestamp(settlement.retry_at, field="retry_at")
    if unstorable(settlement.owner, settlement.error):
        raise InvalidInput(
            "holds a character no store can keep (NUL, a lone surrogate)", field="error"
        )


_UNSTORABLE: Final = re.compile("[\x00\ud800-\udfff]")


def unstorable(*texts: object) -> bool:
    """Whether a text holds what no store can keep: NUL, or a lone surrogate.

    Such an id or key names nothing stored: look-ups by it find nothing.
    """
    return any(isinstance(text, str) and _UNSTORABLE.search(text) for text in texts)


def holds_lease(entry: OutboxEntry, settlement: Settlement) -> bool:
    """Whether ``settlement.owner`` holds ``entry``: it is pending and leased to them.

    A commit also needs the entry to belong to the committed request; the adapters check that
    beside this.
    """
    return entry.state is EffectState.PENDING and entry.lease_owner == settlement.owner


def settle_entry(entry: OutboxEntry, settlement: Settlement) -> OutboxEntry:
    """The entry after ``settlement``; the lease is released in every case.

    ``DONE`` keeps the last error for the record. ``PENDING`` (a retry) and ``DEAD`` count an
    attempt and keep the error; a retry becomes due again at ``retry_at`` (now if ``None``).
    """
    released = attrs.evolve(entry, state=settlement.state, lease_owner=None, lease_until=None)
    if settlement.state is EffectState.DONE:
        return released
    if settlement.state is EffectState.PENDING:
        return attrs.evolve(
            released,
            attempts=entry.attempts + 1,
            available_at=settlement.retry_at,
            last_error=settlement.error,
        )
    return attrs.evolve(released, attempts=entry.attempts + 1, last_error=settlement.error)


# -- money ------------------------------------------------------------------------------------


def refund_totals(request: ReturnRequest) -> tuple[int, int]:
    """``(paid fee, refunded so far)`` in minor units of the request's currency.

    Raises:
        PortRejected: a refund in another currency than the paid fee.
    """
    paid = request.return_fee.amount if request.return_fee is not None else None
    currency = paid.currency if paid is not None else request.order_value.currency
    refunded = 0
    for refund in request.refunds:
        if refund.amount.currency != currency:
            raise PortRejected(
                f"request {request.id}: refund {refund.key!r} is in {refund.amount.currency}, "
                f"the paid fee in {currency}"
            )
        refunded += refund.amount.amount
    return (paid.amount if paid is not None else 0), refunded


def check_money_cap(request: ReturnRequest) -> None:
    """The money cap: the request's refunds never add up to more than its paid fee.

    Raises:
        PortRejected: they do.
    """
    paid, refunded = refund_totals(request)
    if refunded > paid:
        raise money_cap_error(request.id, paid, refunded)


def money_cap_error(request_id: str, paid: int, refunded: int) -> PortRejected:
    """The error for refunds above the paid fee."""
    return PortRejected(
        f"request {request_id}: refunds total {refunded} minor units, "
        f"more than the {paid} paid as return fee"
    )


def fee_fixed_error(request_id: str) -> PortRejected:
    """The error for a commit that changes the fee a customer paid: it is fixed at submission.

    Fixed whole: its amount (which the money cap reads), its currency, and the payment it was
    paid by (which every refund goes to).
    """
    return PortRejected(f"request {request_id}: the paid return fee cannot change after submission")


def stored_fee(
    shop_id: str, request_id: str, fee_json: str | bytes | None, paid: int
) -> PaidFee | None:
    """The paid fee a request row holds: its body's ``return_fee``, read back strictly.

    For a store that keeps the body as JSON beside a ``fee_paid_minor`` column: only the fee
    is decoded, not the whole body, and the column must agree with it.

    Args:
        shop_id: the row's shop.
        request_id: the row's request.
        fee_json: the body's ``return_fee`` as JSON text (bytes when it is not UTF-8);
            ``None`` when the body has none.
        paid: the row's ``fee_paid_minor``.

    Raises:
        DamagedRow: the fee does not read back as a paid fee, or the column disagrees with it.
    """
    fee: PaidFee | None = None
    if fee_json is not None:
        try:
            fee = converter.structure(json.loads(fee_json), PaidFee | None)  # type: ignore[arg-type]
        # Whatever the stored text raises (bytes that are not UTF-8, cattrs' errors, a
        # validator's, an AttributeError for a list where an object belongs), it means "no
        # paid fee": the message names the place, never the value.
        except Exception:  # noqa: BLE001
            raise damaged_request(
                shop_id, request_id, "the body's return_fee does not read as a paid fee"
            ) from None
    if paid != (0 if fee is None else fee.amount.amount):
        raise damaged_request(shop_id, request_id, "column fee_paid_minor disagrees with the body")
    return fee


# -- files ------------------------------------------------------------------------------------


def fsync_folder(folder: str | os.PathLike[str]) -> None:
    """Flush a folder's entries (a link or a rename into it) to disk."""
    handle = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


# -- the commit algorithm, once ----------------------------------------------------------------


class CommitLookups(Protocol):
    """What a store reads, inside a commit's transaction, for :func:`plan_commit`.

    Each store answers from its own rows; the plan asks in its fixed order and stops at the first
    refusal, so a store reads only what the outcome needs.
    """

    def stored(self) -> tuple[int, PaidFee | None] | None:
        """The stored request's ``(version, paid fee)``, or ``None`` when there is none.

        The paid fee whole (amount, currency, payment reference), as stored, or ``None`` when
        the request has none.

        Raises:
            DamagedRow: the stored version or fee cannot be read.
        """
        ...

    def key_taken(self, key: str) -> bool:
        """Whether the idempotency ``key`` is recorded in the commit's shop."""
        ...

    def entry(self, key: str) -> tuple[str, OutboxEntry] | None:
        """The outbox entry under ``key`` in the commit's shop, with its request id.

        Raises:
            DamagedRow: the entry cannot be read back.
        """
        ...

    def entry_state(self, key: str) -> tuple[str, EffectState] | None:
        """The request id and state of the outbox entry under ``key``, or ``None``.

        Raises:
            DamagedRow: they cannot be read.
        """
        ...


@attrs.frozen
class CommitPlan:
    """What a commit writes, once every check passed: the store applies it in one go.

    Attributes:
        saved: the request at its new version.
        stored: whether a row of it exists already (update) or not (insert).
        record: the idempotency record to store, its result the request as saved.
        settled: the settled outbox entry, if the commit settles one.
    """

    saved: ReturnRequest
    stored: bool
    record: IdempotencyRecord | None
    settled: OutboxEntry | None


def prepared(commit: Commit) -> ReturnRequest:
    """The commit's request at the version it gets if the commit succeeds.

    A store may make it (and its row) before its transaction starts, and hand it to
    :func:`plan_commit`, so that the write lock is held for the look-ups and writes only.

    Raises:
        InvalidInput: the commit is malformed.
    """
    check_commit(commit)
    return commit.request.replace(version=new_version(commit))


def plan_commit(
    commit: Commit, lookups: CommitLookups, saved: ReturnRequest | None = None
) -> CommitPlan:
    """Every check of a commit, in their one order; what to write if all pass.

    The shape of the commit first; then the idempotency key, the lease and the version — a
    taken key or a lost lease says more than a moved version —; the revived keys after the
    version, since on a stale read an entry may well have moved on; last the stored invariants:
    the money cap and the paid fee fixed at submission — all of it, amount, currency and
    payment reference, so that no refund goes to another payment than the one the customer
    paid by (and a request without a fee never gains one). A store that also enforces the
    invariants itself (the SQL stores' constraints and trigger on the amount) keeps them as a
    second line.

    Raises:
        InvalidInput: a malformed commit or a ``revive`` key that is not a dead entry of the
            request.
        IdempotencyKeyTaken: the key is recorded already.
        LeaseLost: the settled entry is not this request's, pending and leased to the settler.
        ConcurrentModification, NotFound: the compare-and-set on the version failed.
        PortRejected: refunds above the paid fee, or a changed paid fee.
        DamagedRow: a row the checks read is damaged.

    Args:
        commit: the commit.
        lookups: the store's answers, read inside its transaction.
        saved: :func:`prepared` of ``commit``, if the store made it already.
    """
    saved = prepared(commit) if saved is None else saved
    stored = lookups.stored()
    record = commit.idempotency
    if record is not None and lookups.key_taken(record.key):
        raise key_taken(commit)
    settled = None
    if commit.settle is not None:
        found = lookups.entry(commit.settle.key)
        if found is None or found[0] != saved.id or not holds_lease(found[1], commit.settle):
            raise lease_lost(commit)
        settled = settle_entry(found[1], commit.settle)
    check_version(commit, None if stored is None else stored[0])
    for key in commit.revive:
        check_revivable(commit, key, lookups.entry_state(key))
    check_money_cap(saved)
    if stored is not None and stored[1] != saved.return_fee:
        raise fee_fixed_error(saved.id)
    # The store records the request as it saves it: the caller never predicts the version.
    result = None if record is None else attrs.evolve(record, result=saved)
    return CommitPlan(saved, stored is not None, result, settled)


# -- damaged rows -----------------------------------------------------------------------------
#
# A stored row (or, in memory, a stored object) that does not read back as what the store
# wrote: bytes that are not UTF-8, a column of the wrong type, JSON that does not parse or
# describes something else. Such a row is never handed out as if it were fine, and never
# stops the rows beside it: claims set it aside, listings leave it out and log it, and a read
# of that very row raises ``DamagedRow`` (a ``PortRejected``: a person must look).


class DamagedRow(PortRejected):
    """A stored row that cannot be read back; a person must repair it.

    Attributes:
        shop_id: the row's shop (as far as it can be read).
        request_id: the request the row belongs to (as far as it can be read).
        key: the outbox or idempotency key of the row, ``None`` for a request row.
        problem: what is wrong, naming columns and fields, never the values stored.
    """

    def __init__(
        self, message: str, *, shop_id: str, request_id: str, key: str | None, problem: str
    ) -> None:
        """Build the error (:func:`damaged_request` and its siblings do)."""
        self.shop_id = shop_id
        self.request_id = request_id
        self.key = key
        self.problem = problem
        super().__init__(message)


def damaged_request(shop_id: str, request_id: str, problem: str) -> DamagedRow:
    """The error for a request row that cannot be read back."""
    return DamagedRow(
        f"shop {shop_id}: request {request_id}: the stored row cannot be read: {problem}",
        shop_id=shop_id,
        request_id=request_id,
        key=None,
        problem=problem,
    )


def damaged_entry(shop_id: str, key: str, request_id: str, problem: str) -> DamagedRow:
    """The error for an outbox row that cannot be read back."""
    return DamagedRow(
        f"shop {shop_id}: outbox entry {key!r} of request {request_id} cannot be read: {problem}",
        shop_id=shop_id,
        request_id=request_id,
        key=key,
        problem=problem,
    )


def damaged_record(shop_id: str, key: str, request_id: str, problem: str) -> DamagedRow:
    """The error for an idempotency record that cannot be read back."""
    return DamagedRow(
        f"shop {shop_id}: the record stored under idempotency key {key!r} (request "
        f"{request_id}) cannot be read: {problem}",
        shop_id=shop_id,
        request_id=request_id,
        key=key,
        problem=problem,
    )


def readable(value: object) -> str:
    """An id read from a damaged row, as text fit for a message: ids are never personal.

    Text stays as it is; bytes are decoded with their undecodable bytes escaped; anything else
    (a number, ``NULL``) is named by its ``repr``.
    """
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    return repr(value)


def request_problem(stored: object, shop_id: str, request_id: str) -> str | None:
    """What is wrong with ``stored`` as the request of row ``(shop_id, request_id)``, if any."""
    # Every listed row comes through here: the common case first, with nothing built.
    if type(stored) is ReturnRequest and stored.id == request_id and stored.shop_id == shop_id:
        return None
    if type(stored) is not ReturnRequest:
        return f"it holds {type(stored).__name__}, not a return request"
    return "the body holds another request than its row"


def effect_problem(entry: object, key: str, request_id: str) -> str | None:
    """What is wrong with ``entry`` as the outbox entry of ``key`` and request, or ``None``."""
    if type(entry) is not OutboxEntry or type(entry.effect) is not Effect:
        return f"it holds {type(entry).__name__}, not an outbox entry"
    effect = entry.effect
    if (effect.key, effect.request_id) != (key, request_id):
        return "its effect is another key's or another request's than its row"
    return None


def record_problem(record: object, shop_id: str, key: str) -> str | None:
    """What is wrong with ``record`` as the idempotency record of ``key``, or ``None``."""
    if type(record) is not IdempotencyRecord:
        return f"it holds {type(record).__name__}, not an idempotency record"
    if (record.shop_id, record.key) != (shop_id, key):
        return "it holds another key's record than its row"
    problem = request_problem(record.result, shop_id, record.request_id)
    return None if problem is None else f"its result: {problem}"


def set_aside_error(problem: str) -> str:
    """The ``last_error`` of an outbox entry that a claim set aside because it is damaged."""
    return f"corrupt outbox row: {problem}"


def flagged(request: ReturnRequest, damage: DamagedRow, now: dt.datetime) -> ReturnRequest:
    """``request`` as saved by a claim that set its damaged outbox entry ``damage`` aside.

    It needs attention (the effect will not run until a person repairs and revives it), the
    history records the entry as given up, and it is at the next version, as any other change
    would be saved.
    """
    key = damage.key or "outbox row"  # a claim sets aside outbox rows, which have keys
    set_aside = request.set_aside(key, set_aside_error(damage.problem), at=now)
    return set_aside.replace(version=request.version + 1)


def log_damage(logger: logging.Logger, damage: DamagedRow, outcome: str) -> None:
    """Log a damaged row at ERROR with its ids (in the message and as ``extra``)."""
    logger.error(
        "%s; %s",
        damage,
        outcome,
        extra={"shop_id": damage.shop_id, "request_id": damage.request_id, "key": damage.key},
    )


def uncountable(query: Query, *, exact: bool | None) -> None:
    """Refuse to count a query whose filters a database cannot run (see ``Storage.count``).

    ``exact``: whether the store runs the query's rule condition whole (``None``: it has none).

    Raises:
        InvalidInput: a ``where`` predicate, or a condition the store runs only in part.
    """
    if query.where is not None:
        raise InvalidInput(
            "a where predicate runs in Python: count the listing by paging through it",
            field="where",
        )
    if exact is False:
        raise InvalidInput(
            "the condition names a field the database cannot read: count it by paging",
            field="condition",
        )
