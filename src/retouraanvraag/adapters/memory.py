"""An in-memory :class:`~retouraanvraag.ports.Storage`: a real store, kept in dictionaries.

Same invariants and errors as the SQLite adapter (compare-and-set, shop scoping, unique
idempotency and outbox keys, the money cap, leases) behind one lock, so it is safe to share
between threads. Nothing survives the process: use it in tests, demos and single-process tools.
The rules both adapters share live in :mod:`retouraanvraag.adapters._common`.
"""

from __future__ import annotations

import bisect
import datetime as dt
import heapq
import itertools
import threading
from collections.abc import Iterator, Sequence

import attrs

from retouraanvraag.adapters._common import (
    Position,
    check_claim,
    check_commit,
    check_money_cap,
    check_revivable,
    check_settlement,
    check_version,
    decode_cursor,
    fee_fixed_error,
    holds_lease,
    is_due,
    key_taken,
    lease_lost,
    new_version,
    page_of,
    revived,
    settle_entry,
    timestamp,
)
from retouraanvraag.errors import LeaseLost, NotFound
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
        self._order: dict[str, list[Position]] = {}
        self._by_status: dict[tuple[str, Status], list[Position]] = {}
        self._outbox: dict[tuple[str, str], _Queued] = {}
        # The pending entries only, as ``(seq, shop_id, key)`` kept sorted: a claim walks these
        # oldest first, never the done and dead history (the SQLite adapter's partial index).
        self._pending: list[tuple[int, str, str]] = []
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
        found: list[tuple[Position, ReturnRequest]] = []
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
                return page_of(found, query.limit)
            after = candidates[-1][0]

    def _listing(
        self, shop_id: str, query: Query, after: Position | None, upper: str | None
    ) -> Iterator[tuple[Position, ReturnRequest]]:
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
            InvalidInput: the commit is malformed (an effect or record of another request), or
                a ``revive`` key is not a dead entry of the request.
        """
        check_commit(commit)
        saved = attrs.evolve(commit.request, version=new_version(commit))
        position = (timestamp(saved.created_at, field="created_at"), saved.id)
        shop = saved.shop_id
        with self._lock:
            # Every check first; only then change anything, so a refusal leaves no trace.
            current = self._requests.get((shop, saved.id))
            settled = self._check(commit, saved, current)
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
                self._store(_Queued(self._seq, saved.id, OutboxEntry(shop_id=shop, effect=effect)))
                self._by_request.setdefault((shop, saved.id), []).append(effect.key)
            if commit.idempotency is not None:
                self._idempotency[(shop, commit.idempotency.key)] = commit.idempotency
            if settled is not None:
                self._store(settled)
            for key in commit.revive:
                dead = self._outbox[(shop, key)]
                self._store(attrs.evolve(dead, entry=revived(dead.entry)))
        return saved

    def _check(
        self, commit: Commit, saved: ReturnRequest, current: ReturnRequest | None
    ) -> _Queued | None:
        """Every check of ``commit`` against the store (under the lock); the settled entry.

        The idempotency key first, the lease second, then the version: a taken key or a lost
        lease says more than a moved version. The revived keys after the version, since on a
        stale read an entry may well have moved on.
        """
        shop = saved.shop_id
        if commit.idempotency is not None and (shop, commit.idempotency.key) in self._idempotency:
            raise key_taken(commit)
        settled: _Queued | None = None
        if commit.settle is not None:
            queued = self._outbox.get((shop, commit.settle.key))
            if (
                queued is None
                or queued.request_id != saved.id
                or not holds_lease(queued.entry, commit.settle)
            ):
                raise lease_lost(commit)
            settled = attrs.evolve(queued, entry=settle_entry(queued.entry, commit.settle))
        check_version(commit, None if current is None else current.version)
        for key in commit.revive:
            found = self._outbox.get((shop, key))
            check_revivable(
                commit, key, None if found is None else (found.request_id, found.entry.state)
            )
        check_money_cap(saved)
        if current is not None and current.return_fee != saved.return_fee:
            raise fee_fixed_error(saved.id)
        return settled

    def _store(self, queued: _Queued) -> None:
        """Put ``queued`` in the outbox, keeping the index of pending entries (under the lock)."""
        shop, key = queued.entry.shop_id, queued.entry.key
        previous = self._outbox.get((shop, key))
        self._outbox[(shop, key)] = queued
        was_pending = previous is not None and previous.entry.state is EffectState.PENDING
        is_pending = queued.entry.state is EffectState.PENDING
        if was_pending and not is_pending:
            del self._pending[bisect.bisect_left(self._pending, (queued.seq, shop, key))]
        elif is_pending and not was_pending:
            bisect.insort(self._pending, (queued.seq, shop, key))

    def settle(self, shop_id: str, settlement: Settlement) -> None:
        """Settle a leased outbox entry without touching its request.

        Raises:
            LeaseLost: the entry is not pending and leased to ``settlement.owner``.
            InvalidInput: a naive ``retry_at``.
        """
        check_settlement(settlement)
        with self._lock:
            queued = self._outbox.get((shop_id, settlement.key))
            if queued is None or not holds_lease(queued.entry, settlement):
                raise LeaseLost(
                    request_id=queued.request_id if queued else "?",
                    key=settlement.key,
                    owner=settlement.owner,
                )
            self._store(attrs.evolve(queued, entry=settle_entry(queued.entry, settlement)))

    def claim(
        self, *, owner: str, now: dt.datetime, lease: dt.timedelta, limit: int
    ) -> Sequence[OutboxEntry]:
        """Lease up to ``limit`` pending entries that are due and not leased, oldest first.

        Only the pending entries are walked (an index kept beside the outbox), so a claim costs
        the same however many entries are done or dead.

        Raises:
            InvalidInput: ``now`` is naive, ``lease`` is not positive, or ``limit`` negative.
        """
        check_claim(owner=owner, now=now, lease=lease, limit=limit)
        until = now + lease
        claimed: list[OutboxEntry] = []
        with self._lock:
            for _, shop, key in self._pending:
                if len(claimed) >= limit:
                    break
                queued = self._outbox[(shop, key)]
                if is_due(queued.entry, now):
                    entry = attrs.evolve(queued.entry, lease_owner=owner, lease_until=until)
                    self._outbox[(shop, key)] = attrs.evolve(queued, entry=entry)
                    claimed.append(entry)
        return tuple(claimed)


def _run_after(run: list[Position], after: Position | None) -> Iterator[Position]:
    start = 0 if after is None else bisect.bisect_right(run, after)
    return (run[i] for i in range(start, len(run)))


def _remove(run: list[Position], position: Position) -> None:
    del run[bisect.bisect_left(run, position)]
