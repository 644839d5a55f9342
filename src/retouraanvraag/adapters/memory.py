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
import logging
import threading
from collections.abc import Iterator, Sequence

import attrs

from retouraanvraag.adapters._common import (
    DamagedRow,
    Position,
    check_claim,
    check_settlement,
    damaged_entry,
    damaged_record,
    damaged_request,
    decode_cursor,
    effect_problem,
    flagged,
    holds_lease,
    is_due,
    log_damage,
    page_of,
    plan_commit,
    readable,
    record_problem,
    request_problem,
    revived,
    set_aside_error,
    settle_entry,
    timestamp,
    uncountable,
)
from retouraanvraag.errors import LeaseLost, NotFound
from retouraanvraag.model import PaidFee, ReturnRequest, Status
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

_log = logging.getLogger(__name__)


@attrs.frozen
class _Queued:
    """An outbox entry with what the port's value object does not carry."""

    seq: int
    request_id: str
    entry: OutboxEntry

    def damage(self, shop_id: str, key: str) -> DamagedRow | None:
        """The error for this entry if it is not the entry of ``key`` (a test reached in)."""
        problem = effect_problem(self.entry, key, self.request_id)
        return None if problem is None else damaged_entry(shop_id, key, self.request_id, problem)


class MemoryStorage:
    """Requests, outbox and idempotency records in memory, behind one lock.

    Every stored object is a frozen attrs instance, so what a caller gets back cannot change
    the store. Nothing here is ever damaged, unless a test reaches in and leaves an object
    that is not its key's (another request, say): that one is treated as SQLite treats a
    damaged row. Example::

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
            PortRejected: the stored object is not this request (a damaged row).
        """
        with self._lock:
            request = self._requests.get((shop_id, request_id))
        if request is None:
            raise NotFound(shop_id=shop_id, request_id=request_id)
        _check_request(request, shop_id, request_id)
        return request

    def idempotency_record(self, shop_id: str, key: str) -> IdempotencyRecord | None:
        """The record stored under ``key`` in this shop, or ``None``.

        Raises:
            PortRejected: the stored object is not this key's record (a damaged row).
        """
        with self._lock:
            record = self._idempotency.get((shop_id, key))
        if record is None:
            return None
        problem = record_problem(record, shop_id, key)
        if problem is not None:
            named = readable(getattr(record, "request_id", None))
            raise damaged_record(shop_id, key, named, problem)
        return record

    def outbox(self, shop_id: str, request_id: str) -> Sequence[OutboxEntry]:
        """Every outbox entry of one request, in the order they were queued.

        An entry that is not its key's (a damaged row) is left out and logged as an error.
        """
        entries: list[OutboxEntry] = []
        damaged: list[DamagedRow] = []
        with self._lock:
            for key in self._by_request.get((shop_id, request_id), []):
                queued = self._outbox[(shop_id, key)]
                damage = queued.damage(shop_id, key)
                if damage is None:
                    entries.append(queued.entry)
                else:
                    damaged.append(damage)
        for skipped in damaged:
            log_damage(_log, skipped, "left out of the outbox listing")
        return tuple(entries)

    def query(self, shop_id: str, query: Query) -> Page:
        """List requests of one shop, oldest first, by ``(created_at, id)``.

        Like a database index, each status keeps its requests sorted: a tab is a merge of a
        few sorted runs from the cursor on, so a page costs the same whatever the history.

        A stored object that is not its request (a damaged row) is left out of the page and
        logged as an error naming the shop and the request.

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
            damaged: list[DamagedRow] = []
            with self._lock:
                listing = self._listing(shop_id, query, after, upper, damaged)
                candidates = list(itertools.islice(listing, batch))
            for damage in damaged:
                log_damage(_log, damage, "left out of the listing")
            # The host's predicate runs outside the lock: it may be slow, or call the store.
            # A rule condition is its compiled Python predicate here (the SQL stores' reference).
            for position, request in candidates:
                if (
                    request is not None
                    and (query.condition is None or query.condition(request))
                    and (query.where is None or query.where(request))
                ):
                    found.append((position, request))
            if len(found) > query.limit or len(candidates) < batch:
                return page_of(found, query.limit)
            after = candidates[-1][0]

    def count(self, shop_id: str, query: Query) -> int:
        """How many requests every page of ``query`` lists together (see ``Storage.count``).

        Raises:
            InvalidInput: the query has a ``where`` predicate (refused by every store alike),
                or a naive bound.
        """
        uncountable(query, exact=None)
        total, cursor = 0, None
        while True:
            page = self.query(shop_id, attrs.evolve(query, limit=500, cursor=cursor))
            total += len(page.items)
            if page.next_cursor is None:
                return total
            cursor = page.next_cursor

    def _listing(
        self,
        shop_id: str,
        query: Query,
        after: Position | None,
        upper: str | None,
        damaged: list[DamagedRow],
    ) -> Iterator[tuple[Position, ReturnRequest | None]]:
        """The shop's requests after ``after`` that pass the indexed filters, in order.

        A damaged one is yielded as ``None`` (so that the listing moves past it), whatever
        the filters, and its error appended to ``damaged``.
        """
        if query.statuses is None:
            runs = [self._order.get(shop_id, [])]
        else:
            runs = [self._by_status.get((shop_id, s), []) for s in sorted(query.statuses)]
        merged = heapq.merge(*(_run_after(run, after) for run in runs))
        for position in merged:
            if upper is not None and position[0] >= upper:
                return
            request_id = position[1]
            request = self._requests[(shop_id, request_id)]
            # request_problem's rule, inline: this runs for every row a listing walks.
            if (
                type(request) is ReturnRequest
                and request.id == request_id
                and request.shop_id == shop_id
            ):
                if (
                    query.needs_attention is None
                    or request.needs_attention is query.needs_attention
                ):
                    yield position, request
            else:  # not its key's request: a test reached in
                problem = request_problem(request, shop_id, request_id) or "not its request"
                damaged.append(damaged_request(shop_id, request_id, problem))
                yield position, None

    # -- writes -----------------------------------------------------------------------------

    def commit(self, commit: Commit) -> ReturnRequest:
        """Apply ``commit`` atomically: all of it or none of it.

        Raises:
            ConcurrentModification: a lost compare-and-set, an existing id for a new request,
                a taken idempotency key, or a settlement by a caller that holds no lease.
            NotFound: ``expected_version`` is set but the request does not exist in this shop.
            PortRejected: the request's refunds exceed its paid fee, the commit changes the
                paid fee (amount, currency or payment reference), or what the commit must
                read is damaged (the stored request, the entry it settles, a key it revives).
            InvalidInput: the commit is malformed (an effect or record of another request), or
                a ``revive`` key is not a dead entry of the request.
        """
        shop = commit.request.shop_id
        with self._lock:
            plan = plan_commit(commit, _Lookups(self, shop, commit.request.id))
            # Every check passed; only now does anything change, so a refusal leaves no trace.
            saved = plan.saved
            position = (timestamp(saved.created_at, field="created_at"), saved.id)
            current = self._requests.get((shop, saved.id))
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
                entry = OutboxEntry(shop_id=shop, effect=effect)
                self._store(shop, effect.key, _Queued(self._seq, saved.id, entry))
                self._by_request.setdefault((shop, saved.id), []).append(effect.key)
            if plan.record is not None:
                self._idempotency[(shop, plan.record.key)] = plan.record
            if plan.settled is not None:
                queued = self._outbox[(shop, plan.settled.key)]
                self._store(shop, plan.settled.key, attrs.evolve(queued, entry=plan.settled))
            for key in commit.revive:
                dead = self._outbox[(shop, key)]
                self._store(shop, key, attrs.evolve(dead, entry=revived(dead.entry)))
        return saved

    def _store(self, shop: str, key: str, queued: _Queued) -> None:
        """Put ``queued`` in the outbox, keeping the index of pending entries (under the lock)."""
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
            PortRejected: the stored entry is not this key's (a damaged row).
        """
        check_settlement(settlement)
        with self._lock:
            queued = self._outbox.get((shop_id, settlement.key))
            damage = None if queued is None else queued.damage(shop_id, settlement.key)
            if damage is not None:
                raise damage
            if queued is None or not holds_lease(queued.entry, settlement):
                raise LeaseLost(
                    request_id=queued.request_id if queued else "?",
                    key=settlement.key,
                    owner=settlement.owner,
                )
            settled = attrs.evolve(queued, entry=settle_entry(queued.entry, settlement))
            self._store(shop_id, settlement.key, settled)

    def claim(
        self, *, owner: str, now: dt.datetime, lease: dt.timedelta, limit: int
    ) -> Sequence[OutboxEntry]:
        """Lease up to ``limit`` pending entries that are due and not leased, oldest first.

        Only the pending entries are walked (an index kept beside the outbox), so a claim costs
        the same however many entries are done or dead. An entry that is not its key's (a
        damaged row) is set aside as SQLite sets one aside: marked dead, its request marked as
        needing attention, logged; the next entry takes its place.

        Raises:
            InvalidInput: ``now`` is naive, ``lease`` is not positive, or ``limit`` negative.
        """
        check_claim(owner=owner, now=now, lease=lease, limit=limit)
        until = now + lease
        claimed: list[OutboxEntry] = []
        set_aside: list[tuple[DamagedRow, str]] = []
        with self._lock:
            damaged: list[tuple[int, str, str, DamagedRow]] = []
            for seq, shop, key in self._pending:
                if len(claimed) >= limit:
                    break
                queued = self._outbox[(shop, key)]
                damage = queued.damage(shop, key)
                if damage is not None:
                    damaged.append((seq, shop, key, damage))
                elif is_due(queued.entry, now):
                    entry = attrs.evolve(queued.entry, lease_owner=owner, lease_until=until)
                    self._outbox[(shop, key)] = attrs.evolve(queued, entry=entry)
                    claimed.append(entry)
            for seq, shop, key, damage in damaged:
                set_aside.append((damage, self._set_aside(seq, shop, key, damage, now)))
        for damage, outcome in set_aside:
            log_damage(_log, damage, f"set aside (marked dead); {outcome}")
        return tuple(claimed)

    def _set_aside(
        self, seq: int, shop: str, key: str, damage: DamagedRow, now: dt.datetime
    ) -> str:
        """Take a damaged entry out of the queue for good and flag its request (under the lock).

        Returns:
            What became of the request, for the log.
        """
        del self._pending[bisect.bisect_left(self._pending, (seq, shop, key))]
        queued = self._outbox[(shop, key)]
        if type(queued.entry) is OutboxEntry:
            dead = attrs.evolve(
                queued.entry,
                state=EffectState.DEAD,
                lease_owner=None,
                lease_until=None,
                last_error=set_aside_error(damage.problem),
            )
            self._outbox[(shop, key)] = attrs.evolve(queued, entry=dead)
        request = self._requests.get((shop, queued.request_id))
        if request is None:
            return "no request of that id to mark as needing attention"
        if request_problem(request, shop, queued.request_id) is not None:
            return "its request cannot be read either"
        self._requests[(shop, queued.request_id)] = flagged(request, damage, now)
        return "its request is marked as needing attention"


def _check_request(stored: object, shop_id: str, request_id: str) -> None:
    """Refuse a stored object that is not the request of its key.

    Raises:
        DamagedRow: it is not.
    """
    # request_problem's rule, its common case first: every get comes through here.
    if type(stored) is ReturnRequest and stored.id == request_id and stored.shop_id == shop_id:
        return
    problem = request_problem(stored, shop_id, request_id) or "not its request"
    raise damaged_request(shop_id, request_id, problem)


def _run_after(run: list[Position], after: Position | None) -> Iterator[Position]:
    start = 0 if after is None else bisect.bisect_right(run, after)
    return (run[i] for i in range(start, len(run)))


def _remove(run: list[Position], position: Position) -> None:
    del run[bisect.bisect_left(run, position)]


@attrs.frozen
class _Lookups:
    """The memory store's answers to a commit plan's questions (under its lock)."""

    store: MemoryStorage
    shop: str
    request_id: str

    def stored(self) -> tuple[int, PaidFee | None] | None:
        current = self.store._requests.get((self.shop, self.request_id))  # noqa: SLF001
        if current is None:
            return None
        _check_request(current, self.shop, self.request_id)
        return current.version, current.return_fee

    def key_taken(self, key: str) -> bool:
        return (self.shop, key) in self.store._idempotency  # noqa: SLF001

    def entry(self, key: str) -> tuple[str, OutboxEntry] | None:
        queued = self.store._outbox.get((self.shop, key))  # noqa: SLF001
        if queued is None:
            return None
        damage = queued.damage(self.shop, key)
        if damage is not None:
            raise damage
        return queued.request_id, queued.entry

    def entry_state(self, key: str) -> tuple[str, EffectState] | None:
        found = self.store._outbox.get((self.shop, key))  # noqa: SLF001
        if found is None:
            return None
        if type(found.entry) is not OutboxEntry:
            raise damaged_entry(self.shop, key, found.request_id, "it holds no outbox entry")
        return found.request_id, found.entry.state
