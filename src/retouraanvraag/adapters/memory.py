"""An in-memory :class:`~retouraanvraag.ports.Storage`: a real store, kept in dictionaries.

Same invariants and errors as the SQLite adapter (compare-and-set, shop scoping, unique
idempotency and outbox keys, the money cap, leases) behind one lock, so it is safe to share
between threads. Nothing survives the process: use it in tests, demos and single-process tools.

The helpers at the bottom (timestamps, cursors, the money cap, settlements) are shared with
:mod:`retouraanvraag.adapters.sqlite`, so that both adapters agree to the byte on what a cursor
looks like and how an outbox entry settles.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import datetime as dt
import heapq
import itertools
import json
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Final

import attrs

from retouraanvraag.errors import (
    ConcurrentModification,
    IdempotencyKeyTaken,
    InvalidInput,
    LeaseLost,
    NotFound,
    PortRejected,
)
from retouraanvraag.model import ReturnRequest, Status
from retouraanvraag.ports import (
    Commit,
    EffectState,
    IdempotencyRecord,
    OutboxEntry,
    Page,
    Query,
    Settlement,
)

__all__ = ["MemoryStorage"]

#: A request's place in a listing: its normalised ``created_at`` and its id.
_Position = tuple[str, str]


@attrs.frozen
class _Queued:
    """An outbox entry with what the port's value object does not carry."""

    seq: int
    request_id: str
    entry: OutboxEntry


class MemoryStorage:
    """Requests, outbox and idempotency records in memory, behind one lock.

    Every stored object is a frozen attrs instance, so what a caller gets back cannot change
    the store. Example::

        storage = MemoryStorage()
        saved = storage.commit(Commit(request, expected_version=None))
        assert storage.get(saved.shop_id, saved.id) == saved
    """

    def __init__(self) -> None:
        """Start empty."""
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str], ReturnRequest] = {}
        # Per shop, and per shop and status, the requests' positions, kept sorted: listings
        # bisect into them as a database would into an index.
        self._order: dict[str, list[_Position]] = {}
        self._by_status: dict[tuple[str, Status], list[_Position]] = {}
        self._outbox: dict[tuple[str, str], _Queued] = {}
        self._by_request: dict[tuple[str, str], list[str]] = {}
        self._idempotency: dict[tuple[str, str], IdempotencyRecord] = {}
        self._seq = 0

    # -- reads ------------------------------------------------------------------------------

    def get(self, shop_id: str, request_id: str) -> ReturnRequest:
        """Load a request.

        Raises:
            NotFound: no such request in this shop.
        """
        with self._lock:
            request = self._requests.get((shop_id, request_id))
        if request is None:
            raise NotFound(shop_id=shop_id, request_id=request_id)
        return request

    def idempotency_record(self, shop_id: str, key: str) -> IdempotencyRecord | None:
        """The record stored under ``key`` in this shop, or ``None``."""
        with self._lock:
            return self._idempotency.get((shop_id, key))

    def outbox(self, shop_id: str, request_id: str) -> Sequence[OutboxEntry]:
        """Every outbox entry of one request, in the order they were queued."""
        with self._lock:
            keys = self._by_request.get((shop_id, request_id), [])
            return tuple(self._outbox[(shop_id, key)].entry for key in keys)

    def query(self, shop_id: str, query: Query) -> Page:
        """List requests of one shop, oldest first, by ``(created_at, id)``.

        Like a database index, each status keeps its requests sorted: a tab is a merge of a
        few sorted runs from the cursor on, so a page costs the same whatever the history.

        Raises:
            InvalidInput: the cursor is not one this store handed out, or a bound is naive.
        """
        after = decode_cursor(query.cursor) if query.cursor is not None else None
        lower = timestamp(query.created_from, field="created_from") if query.created_from else None
        upper = (
            timestamp(query.created_before, field="created_before")
            if query.created_before
            else None
        )
        if lower is not None and (after is None or (lower, "") > after):
            after = (lower, "")
        batch = query.limit + 1
        found: list[tuple[_Position, ReturnRequest]] = []
        while True:
            with self._lock:
                candidates = list(
                    itertools.islice(self._listing(shop_id, query, after, upper), batch)
                )
            # The host's predicate runs outside the lock: it may be slow, or call the store.
            for position, request in candidates:
                if query.where is None or query.where(request):
                    found.append((position, request))
            if len(found) > query.limit or len(candidates) < batch:
                return page_of(found, None, query.limit)
            after = candidates[-1][0]

    def _listing(
        self, shop_id: str, query: Query, after: _Position | None, upper: str | None
    ) -> Iterator[tuple[_Position, ReturnRequest]]:
        """The shop's requests after ``after`` that pass the indexed filters, in order."""
        if query.statuses is None:
            runs = [self._order.get(shop_id, [])]
        else:
            runs = [self._by_status.get((shop_id, s), []) for s in sorted(query.statuses)]
        merged = heapq.merge(*(_run_after(run, after) for run in runs))
        for position in merged:
            if upper is not None and position[0] >= upper:
                return
            request = self._requests[(shop_id, position[1])]
            if query.needs_attention is None or request.needs_attention is query.needs_attention:
                yield position, request

    # -- writes -----------------------------------------------------------------------------

    def commit(self, commit: Commit) -> ReturnRequest:
        """Apply ``commit`` atomically: all of it or none of it.

        Raises:
            ConcurrentModification: a lost compare-and-set, an existing id for a new request,
                a taken idempotency key, or a settlement by a caller that holds no lease.
            NotFound: ``expected_version`` is set but the request does not exist in this shop.
            PortRejected: the request's refunds exceed its paid fee.
            InvalidInput: the commit is malformed (an effect or record of another request).
        """
        check_commit(commit)
        request = commit.request
        saved = attrs.evolve(request, version=new_version(commit))
        position = (timestamp(saved.created_at, field="created_at"), saved.id)
        shop = request.shop_id
        with self._lock:
            # Every check first; only then change anything, so a refusal leaves no trace.
            current = self._requests.get((shop, request.id))
            stored_version = None if current is None else current.version
            if commit.idempotency is not None and (shop, commit.idempotency.key) in (
                self._idempotency
            ):
                raise key_taken(commit, stored_version)
            settled: OutboxEntry | None = None
            if commit.settle is not None:
                queued = self._outbox.get((shop, commit.settle.key))
                if queued is None or not holds_lease(
                    queued.request_id, queued.entry, request.id, commit.settle
                ):
                    raise lease_lost(commit, stored_version)
                settled = settle_entry(queued.entry, commit.settle)
            # The version last: a taken key or a lost lease says more than a moved version.
            check_version(commit, stored_version)
            check_money_cap(saved)
            if current is not None and current.return_fee != saved.return_fee:
                raise fee_fixed_error(saved.id)

            self._requests[(shop, saved.id)] = saved
            if current is not None:
                old = (timestamp(current.created_at, field="created_at"), current.id)
                _remove(self._order[shop], old)
                _remove(self._by_status[(shop, current.status)], old)
            bisect.insort(self._order.setdefault(shop, []), position)
            bisect.insort(self._by_status.setdefault((shop, saved.status), []), position)
            for effect in commit.effects:
                if (shop, effect.key) in self._outbox:
                    continue
                self._seq += 1
                self._outbox[(shop, effect.key)] = _Queued(
                    self._seq, saved.id, OutboxEntry(shop_id=shop, effect=effect)
                )
                self._by_request.setdefault((shop, saved.id), []).append(effect.key)
            if commit.idempotency is not None:
                self._idempotency[(shop, commit.idempotency.key)] = commit.idempotency
            if settled is not None:
                key = (shop, settled.key)
                self._outbox[key] = attrs.evolve(self._outbox[key], entry=settled)
        return saved

    def settle(self, shop_id: str, settlement: Settlement) -> None:
        """Settle a leased outbox entry without touching its request.

        Raises:
            LeaseLost: the entry is not pending and leased to ``settlement.owner``.
            InvalidInput: a naive ``retry_at``.
        """
        check_settlement(settlement)
        with self._lock:
            queued = self._outbox.get((shop_id, settlement.key))
            if queued is None or not holds_lease(
                queued.request_id, queued.entry, queued.request_id, settlement
            ):
                raise LeaseLost(
                    request_id=queued.request_id if queued else "?",
                    key=settlement.key,
                    owner=settlement.owner,
                )
            entry = settle_entry(queued.entry, settlement)
            self._outbox[(shop_id, settlement.key)] = attrs.evolve(queued, entry=entry)

    def claim(
        self, *, owner: str, now: dt.datetime, lease: dt.timedelta, limit: int
    ) -> Sequence[OutboxEntry]:
        """Lease up to ``limit`` pending entries that are due and not leased, oldest first.

        Raises:
            InvalidInput: ``now`` is naive, ``lease`` is not positive, or ``limit`` negative.
        """
        check_claim(owner=owner, now=now, lease=lease, limit=limit)
        until = now + lease
        claimed: list[OutboxEntry] = []
        with self._lock:
            for key, queued in self._outbox.items():
                if len(claimed) >= limit:
                    break
                if is_due(queued.entry, now):
                    entry = attrs.evolve(queued.entry, lease_owner=owner, lease_until=until)
                    self._outbox[key] = attrs.evolve(queued, entry=entry)
                    claimed.append(entry)
        return tuple(claimed)


def _run_after(run: list[_Position], after: _Position | None) -> Iterator[_Position]:
    start = 0 if after is None else bisect.bisect_right(run, after)
    return (run[i] for i in range(start, len(run)))


def _remove(run: list[_Position], position: _Position) -> None:
    del run[bisect.bisect_left(run, position)]


# -- shared with the SQLite adapter ---------------------------------------------------------

_TIMESTAMP_RE: Final = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")
_CURSOR_TAG: Final = "r1"


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
    """Read back what :func:`timestamp` wrote, as an aware UTC datetime."""
    return dt.datetime.fromisoformat(text)


def encode_cursor(position: _Position) -> str:
    """An opaque cursor for the listing position after ``position``."""
    raw = json.dumps([_CURSOR_TAG, *position], separators=(",", ":"), ensure_ascii=False)
    return base64.urlsafe_b64encode(raw.encode()).decode("ascii").rstrip("=")


def decode_cursor(cursor: str) -> _Position:
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
    return data[1], data[2]


def page_of(
    candidates: Sequence[tuple[_Position, ReturnRequest]],
    where: Callable[[ReturnRequest], bool] | None,
    limit: int,
) -> Page:
    """The first page of ``candidates`` (in listing order) that pass ``where``."""
    found: list[tuple[_Position, ReturnRequest]] = []
    for position, request in candidates:
        if where is None or where(request):
            found.append((position, request))
            if len(found) > limit:
                break
    if len(found) > limit:
        return Page(tuple(r for _, r in found[:limit]), encode_cursor(found[limit - 1][0]))
    return Page(tuple(r for _, r in found), None)


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
    if record is not None and (record.shop_id, record.request_id) != (request.shop_id, request.id):
        raise InvalidInput(
            f"idempotency key {record.key!r} is recorded for request {record.request_id} of "
            f"shop {record.shop_id}, not for request {request.id} of shop {request.shop_id}",
            field="idempotency",
        )
    if commit.settle is not None and commit.settle.retry_at is not None:
        timestamp(commit.settle.retry_at, field="retry_at")
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


def key_taken(commit: Commit, _stored: int | None) -> IdempotencyKeyTaken:
    """The error for an idempotency key that another change already recorded."""
    key = commit.idempotency.key if commit.idempotency else ""
    return IdempotencyKeyTaken(
        shop_id=commit.request.shop_id, request_id=commit.request.id, key=key
    )


def lease_lost(commit: Commit, _stored: int | None) -> LeaseLost:
    """The error for settling an outbox entry that is not leased to the settler."""
    settle = commit.settle
    key, owner = (settle.key, settle.owner) if settle else ("", "")
    return LeaseLost(request_id=commit.request.id, key=key, owner=owner)


def holds_lease(
    entry_request_id: str, entry: OutboxEntry, request_id: str, settlement: Settlement
) -> bool:
    """Whether ``settlement.owner`` may settle ``entry`` in a commit of ``request_id``."""
    return (
        entry_request_id == request_id
        and entry.state is EffectState.PENDING
        and entry.lease_owner == settlement.owner
    )


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


def fee_fixed_error(request_id: str) -> PortRejected:
    """The error for a commit that changes the fee a customer paid: it is fixed at submission."""
    return PortRejected(f"request {request_id}: the paid return fee cannot change after submission")


def check_settlement(settlement: Settlement) -> None:
    """Refuse a settlement with a naive ``retry_at``.

    Raises:
        InvalidInput: it has one.
    """
    if settlement.retry_at is not None:
        timestamp(settlement.retry_at, field="retry_at")


def money_cap_error(request_id: str, paid: int, refunded: int) -> PortRejected:
    """The error for refunds above the paid fee."""
    return PortRejected(
        f"request {request_id}: refunds total {refunded} minor units, "
        f"more than the {paid} paid as return fee"
    )


def check_claim(*, owner: str, now: dt.datetime, lease: dt.timedelta, limit: int) -> None:
    """Refuse a claim that cannot mean anything.

    Raises:
        InvalidInput: an empty owner, a naive ``now``, a lease that is not positive, or a
            negative limit.
    """
    if not owner:
        raise InvalidInput("a claim needs an owner", field="owner")
    timestamp(now, field="now")
    if lease <= dt.timedelta(0):
        raise InvalidInput("must be positive", field="lease")
    if limit < 0:
        raise InvalidInput("must not be negative", field="limit")


def is_due(entry: OutboxEntry, now: dt.datetime) -> bool:
    """Whether a claim at ``now`` may take ``entry``: pending, due and not leased."""
    return (
        entry.state is EffectState.PENDING
        and (entry.available_at is None or entry.available_at <= now)
        and (entry.lease_until is None or entry.lease_until <= now)
    )
