"""A :class:`~retouraanvraag.ports.Storage` on the standard library's :mod:`sqlite3`.

The embedded default: one file (or ``":memory:"``) holds requests, their outbox and
idempotency records. Writes run in ``BEGIN IMMEDIATE`` transactions, so two writers never
interleave; files use WAL, so readers never wait for a writer. Requests are stored as JSON
(:mod:`retouraanvraag._codec`) beside the indexed columns that listings and the money cap need;
the cap is a ``CHECK`` constraint, so it holds inside the database whoever writes to it.

Each thread gets its own connection to a file; ``":memory:"`` has one connection that the
instance's threads share behind a lock. A busy database is retried with a bounded backoff and
then reported as :class:`~retouraanvraag.errors.PortUnavailable`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import logging
import os
import random
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any, Final, Self, TypeVar

import attrs

from retouraanvraag._codec import (
    effect_from_json,
    effect_to_json,
    request_from_json,
    request_to_json,
)
from retouraanvraag.adapters._common import (
    Position,
    check_claim,
    check_commit,
    check_revivable,
    check_settlement,
    check_version,
    decode_cursor,
    encode_cursor,
    fee_fixed_error,
    from_timestamp,
    holds_lease,
    key_taken,
    lease_lost,
    money_cap_error,
    new_version,
    page_of,
    refund_totals,
    settle_entry,
    timestamp,
)
from retouraanvraag.errors import (
    InvalidInput,
    LeaseLost,
    NotFound,
    PortRejected,
    PortUnavailable,
)
from retouraanvraag.model import ReturnRequest
from retouraanvraag.ports import (
    Commit,
    EffectState,
    IdempotencyRecord,
    OutboxEntry,
    Page,
    Query,
    Settlement,
)

__all__ = ["SCHEMA_VERSION", "SqliteStorage"]

_T = TypeVar("_T")
_log = logging.getLogger(__name__)

#: The schema this code writes, kept in ``PRAGMA user_version``.
SCHEMA_VERSION: Final = 1

_SCHEMA: Final = (
    """
    CREATE TABLE requests (
        shop_id         TEXT    NOT NULL,
        id              TEXT    NOT NULL,
        version         INTEGER NOT NULL CHECK (version >= 1),
        status          TEXT    NOT NULL,
        created_at      TEXT    NOT NULL,
        needs_attention INTEGER NOT NULL CHECK (needs_attention IN (0, 1)),
        fee_paid_minor  INTEGER NOT NULL CHECK (fee_paid_minor >= 0),
        refunded_minor  INTEGER NOT NULL CHECK (refunded_minor >= 0),
        body            TEXT    NOT NULL,
        PRIMARY KEY (shop_id, id),
        CONSTRAINT money_cap CHECK (refunded_minor <= fee_paid_minor)
    )
    """,
    # A tab (a few statuses) is a few range scans in (created_at, id) order, whatever the
    # size of the shop's history; the other two serve "everything" and "needs attention".
    # The paid fee is fixed at submission, so the money cap cannot be lifted by raising it.
    """
    CREATE TRIGGER requests_fee_fixed BEFORE UPDATE OF fee_paid_minor ON requests
    WHEN NEW.fee_paid_minor <> OLD.fee_paid_minor
    BEGIN SELECT RAISE(ABORT, 'fee_fixed'); END
    """,
    "CREATE INDEX requests_by_status ON requests (shop_id, status, created_at, id)",
    "CREATE INDEX requests_by_created ON requests (shop_id, created_at, id)",
    """
    CREATE INDEX requests_needing_attention ON requests (shop_id, created_at, id)
    WHERE needs_attention = 1
    """,
    """
    CREATE TABLE outbox (
        seq          INTEGER PRIMARY KEY AUTOINCREMENT,
        shop_id      TEXT    NOT NULL,
        key          TEXT    NOT NULL,
        request_id   TEXT    NOT NULL,
        effect       TEXT    NOT NULL,
        state        TEXT    NOT NULL CHECK (state IN ('pending', 'done', 'dead')),
        attempts     INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
        available_at TEXT,
        lease_owner  TEXT,
        lease_until  TEXT,
        last_error   TEXT,
        UNIQUE (shop_id, key)
    )
    """,
    "CREATE INDEX outbox_pending ON outbox (seq) WHERE state = 'pending'",
    "CREATE INDEX outbox_by_request ON outbox (shop_id, request_id, seq)",
    """
    CREATE TABLE idempotency (
        shop_id     TEXT NOT NULL,
        key         TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        request_id  TEXT NOT NULL,
        result      TEXT NOT NULL,
        PRIMARY KEY (shop_id, key)
    )
    """,
)

# How long a listing page may scan rows that a ``where`` predicate refuses before it hands
# back a short page with a cursor: a page's cost stays bounded whatever the predicate.
_SCAN_BUDGET: Final = 5_000
_BATCH: Final = 200
_BUSY_CODES: Final = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})
_MAX_BACKOFF: Final = 0.05


class SqliteStorage:
    """Requests, outbox and idempotency records in one SQLite database.

    Example::

        with SqliteStorage("returns.sqlite3") as storage:
            saved = storage.commit(Commit(request, expected_version=None))

    Args:
        path: the database file (created when missing), or ``":memory:"`` for a private
            in-memory database shared by all threads using this instance.
        timeout: seconds to keep retrying a busy database before giving up with
            :class:`~retouraanvraag.errors.PortUnavailable`.

    Raises:
        PortRejected: the file is not a database, or its schema is newer than this code.
        PortUnavailable: the database cannot be opened now.
    """

    def __init__(self, path: str | os.PathLike[str] = ":memory:", *, timeout: float = 5.0) -> None:
        """Open (and create or check the schema of) the database at ``path``."""
        self._path = os.fspath(path)
        self._timeout = timeout
        self._in_memory = self._path in {":memory:", ""}
        self._pid = os.getpid()
        self._local = threading.local()
        self._registry = threading.Lock()
        # Held weakly: when a thread ends, its connection is collected (and so closed).
        self._connections: weakref.WeakSet[_Connection] = weakref.WeakSet()
        # A forked child keeps its parent's connections alive (and unused) for good.
        self._inherited: list[sqlite3.Connection] = []
        self._closed = False
        # ":memory:" is one database per connection: all threads share one, in turn.
        self._shared: sqlite3.Connection | None = None
        self._turn: contextlib.AbstractContextManager[object] = (
            threading.Lock() if self._in_memory else contextlib.nullcontext()
        )
        try:
            if not self._in_memory:
                self._retrying(lambda: self._connection().execute("PRAGMA journal_mode = WAL"))
            self._write(self._migrate)
        except BaseException:
            self.close()
            raise

    # -- lifecycle --------------------------------------------------------------------------

    @property
    def path(self) -> str:
        """The database file, or ``":memory:"``."""
        return self._path

    def close(self) -> None:
        """Close every connection this instance opened; later calls raise ``PortRejected``."""
        with self._registry:
            self._closed = True
            connections = list(self._connections)
            self._connections = weakref.WeakSet()
        for connection in connections:
            connection.close()

    def __enter__(self) -> Self:
        """Use as a context manager that closes the storage on exit."""
        return self

    def __exit__(self, *_exc: object) -> None:
        """Close the storage."""
        self.close()

    # -- reads ------------------------------------------------------------------------------

    def get(self, shop_id: str, request_id: str) -> ReturnRequest:
        """Load a request.

        Raises:
            NotFound: no such request in this shop.
            PortRejected: the stored row cannot be read back (a corrupt row); the message
                names the shop and the request.
            PortUnavailable: the database is busy or cannot be reached.
        """

        def read(connection: sqlite3.Connection) -> str | None:
            row = connection.execute(
                "SELECT body FROM requests WHERE shop_id = ? AND id = ?", (shop_id, request_id)
            ).fetchone()
            return None if row is None else str(row[0])

        body = self._read(read)
        if body is None:
            raise NotFound(shop_id=shop_id, request_id=request_id)
        return _request(body, shop_id, request_id)

    def idempotency_record(self, shop_id: str, key: str) -> IdempotencyRecord | None:
        """The record stored under ``key`` in this shop, or ``None``.

        Raises:
            PortRejected: the stored result cannot be read back (a corrupt row).
            PortUnavailable: the database is busy or cannot be reached.
        """

        def read(connection: sqlite3.Connection) -> tuple[str, str, str] | None:
            row = connection.execute(
                "SELECT fingerprint, request_id, result FROM idempotency "
                "WHERE shop_id = ? AND key = ?",
                (shop_id, key),
            ).fetchone()
            return None if row is None else (str(row[0]), str(row[1]), str(row[2]))

        row = self._read(read)
        if row is None:
            return None
        fingerprint, request_id, result = row
        try:
            stored = request_from_json(result)
        except InvalidInput as exc:
            raise PortRejected(
                f"shop {shop_id}: the result stored under idempotency key {key!r} (request "
                f"{request_id}) cannot be read: {exc}"
            ) from exc
        return IdempotencyRecord(
            shop_id=shop_id,
            key=key,
            fingerprint=fingerprint,
            request_id=request_id,
            result=stored,
        )

    def outbox(self, shop_id: str, request_id: str) -> Sequence[OutboxEntry]:
        """Every outbox entry of one request, in the order they were queued.

        Raises:
            PortRejected: an entry's row cannot be read back (a corrupt row).
            PortUnavailable: the database is busy or cannot be reached.
        """
        rows = self._read(
            lambda connection: connection.execute(
                f"SELECT {_OUTBOX_COLUMNS} FROM outbox "  # noqa: S608 - a constant
                "WHERE shop_id = ? AND request_id = ? ORDER BY seq",
                (shop_id, request_id),
            ).fetchall()
        )
        return tuple(_entry(row) for row in rows)

    def query(self, shop_id: str, query: Query) -> Page:
        """List requests of one shop, oldest first, by ``(created_at, id)``.

        Pages are found by keyset (the cursor is the last position shown), never by offset,
        through indexes on ``(shop_id, status, created_at, id)``: a page costs the same
        however long the shop's history. A ``where`` predicate that refuses many rows can
        yield a short page with a cursor; keep paging until ``next_cursor`` is ``None``.

        A row that cannot be read back is never left out silently: the listing raises.

        Raises:
            InvalidInput: the cursor is not one this store handed out, or a bound is naive.
            PortRejected: a request in the listing cannot be read back (a corrupt row); the
                message names the shop and the request.
            PortUnavailable: the database is busy or cannot be reached.
        """
        after = decode_cursor(query.cursor) if query.cursor is not None else None
        listing = _Listing.of(shop_id, query)
        batch = query.limit + 1 if query.where is None else max(query.limit + 1, _BATCH)
        found: list[tuple[Position, ReturnRequest]] = []
        scanned = 0
        while True:
            # Each batch is its own short read: the host's predicate never runs inside a
            # transaction, and keyset positions make consecutive batches line up anyway.
            fetched = self._read(functools.partial(listing.fetch, after=after, limit=batch))
            scanned += len(fetched)
            for position, body in fetched:
                request = _request(body, shop_id, position[1])
                if query.where is None or query.where(request):
                    found.append((position, request))
                    if len(found) > query.limit:
                        return page_of(found, query.limit)
            if len(fetched) < batch:
                return page_of(found, query.limit)
            after = fetched[-1][0]
            if scanned >= _SCAN_BUDGET:
                # Many rows refused by the predicate: a short page that resumes after them.
                return Page(tuple(request for _, request in found), encode_cursor(after))

    # -- writes -----------------------------------------------------------------------------

    def commit(self, commit: Commit) -> ReturnRequest:
        """Apply ``commit`` atomically, in one ``BEGIN IMMEDIATE`` transaction.

        Raises:
            ConcurrentModification: a lost compare-and-set, an existing id for a new request,
                a taken idempotency key, or a settlement by a caller that holds no lease.
            NotFound: ``expected_version`` is set but the request does not exist in this shop.
            PortRejected: the request's refunds exceed its paid fee (the database's
                ``money_cap`` constraint).
            InvalidInput: the commit is malformed (an effect or record of another request), or
                a ``revive`` key is not a dead entry of the request.
            PortUnavailable: the database stayed busy; nothing was changed.
        """
        check_commit(commit)
        saved = attrs.evolve(commit.request, version=new_version(commit))
        # Everything that costs time is prepared before the write lock is taken.
        paid, refunded = refund_totals(saved)
        row = (
            saved.version,
            saved.status.value,
            timestamp(saved.created_at, field="created_at"),
            int(saved.needs_attention),
            paid,
            refunded,
            request_to_json(saved),
            saved.shop_id,
            saved.id,
        )
        effects = [(effect.key, effect_to_json(effect)) for effect in commit.effects]
        record = commit.idempotency
        record_row = (
            None
            if record is None
            else (saved.shop_id, record.key, record.fingerprint, record.request_id,
                  request_to_json(record.result))
        )  # fmt: skip

        def write(connection: sqlite3.Connection) -> None:
            shop, request_id = saved.shop_id, saved.id
            found = connection.execute(
                "SELECT version FROM requests WHERE shop_id = ? AND id = ?", (shop, request_id)
            ).fetchone()
            stored = None if found is None else int(found[0])
            # The idempotency key first, the lease second, then the version: a taken key or a
            # lost lease says more than a moved version. The revived keys after the version,
            # since on a stale read an entry may well have moved on.
            if (
                record_row is not None
                and connection.execute(
                    "SELECT 1 FROM idempotency WHERE shop_id = ? AND key = ?", record_row[:2]
                ).fetchone()
            ):
                raise key_taken(commit)
            settle = commit.settle
            settled = None if settle is None else _settled(connection, commit, settle)
            check_version(commit, stored)
            for key in commit.revive:
                _check_revivable(connection, commit, key)
            try:
                if stored is None:
                    connection.execute(
                        "INSERT INTO requests (version, status, created_at, needs_attention, "
                        "fee_paid_minor, refunded_minor, body, shop_id, id) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        row,
                    )
                else:
                    connection.execute(
                        "UPDATE requests SET version = ?, status = ?, created_at = ?, "
                        "needs_attention = ?, fee_paid_minor = ?, refunded_minor = ?, body = ? "
                        "WHERE shop_id = ? AND id = ?",
                        row,
                    )
            except sqlite3.IntegrityError as exc:
                raise _refused(exc, request_id, paid, refunded) from exc
            connection.executemany(
                "INSERT INTO outbox (shop_id, key, request_id, effect, state) "
                "VALUES (?, ?, ?, ?, 'pending') ON CONFLICT (shop_id, key) DO NOTHING",
                [(shop, key, request_id, body) for key, body in effects],
            )
            if record_row is not None:
                connection.execute(
                    "INSERT INTO idempotency (shop_id, key, fingerprint, request_id, result) "
                    "VALUES (?, ?, ?, ?, ?)",
                    record_row,
                )
            if settled is not None:
                _store_settled(connection, shop, settled)
            connection.executemany(
                "UPDATE outbox SET state = 'pending', attempts = 0, available_at = NULL, "
                "lease_owner = NULL, lease_until = NULL WHERE shop_id = ? AND key = ?",
                [(shop, key) for key in commit.revive],
            )

        self._write(write)
        return saved

    def settle(self, shop_id: str, settlement: Settlement) -> None:
        """Settle a leased outbox entry without touching its request.

        Raises:
            LeaseLost: the entry is not pending and leased to ``settlement.owner``.
            InvalidInput: a naive ``retry_at``.
            PortUnavailable: the database stayed busy; nothing was changed.
        """
        check_settlement(settlement)

        def write(connection: sqlite3.Connection) -> None:
            entry = _queued(connection, shop_id, settlement.key)
            if entry is None or not holds_lease(entry, settlement):
                request_id = "?" if entry is None else entry.effect.request_id
                raise LeaseLost(request_id=request_id, key=settlement.key, owner=settlement.owner)
            _store_settled(connection, shop_id, settle_entry(entry, settlement))

        self._write(write)

    def claim(
        self, *, owner: str, now: dt.datetime, lease: dt.timedelta, limit: int
    ) -> Sequence[OutboxEntry]:
        """Lease up to ``limit`` pending entries that are due and not leased, oldest first.

        A row that cannot be read back (a corrupt row) is not handed out: it is marked dead in
        the same transaction, with ``last_error`` ``"corrupt outbox row: …"``, logged as an
        error, and the next due entry takes its place. One bad row never blocks the queue.

        Raises:
            InvalidInput: ``now`` is naive, ``lease`` is not positive, or ``limit`` negative.
            PortUnavailable: the database stayed busy.
        """
        check_claim(owner=owner, now=now, lease=lease, limit=limit)
        at = timestamp(now, field="now")
        until = timestamp(now + lease, field="lease")
        leased = functools.partial(
            attrs.evolve, lease_owner=owner, lease_until=from_timestamp(until)
        )

        def write(connection: sqlite3.Connection) -> tuple[list[OutboxEntry], list[_CorruptRow]]:
            claimed: list[OutboxEntry] = []
            corrupt: list[_CorruptRow] = []
            while len(claimed) < limit:
                rows = connection.execute(
                    f"SELECT seq, {_OUTBOX_COLUMNS} FROM outbox "  # noqa: S608 - a constant
                    "WHERE state = 'pending' AND (available_at IS NULL OR available_at <= ?) "
                    "AND (lease_until IS NULL OR lease_until <= ?) ORDER BY seq LIMIT ?",
                    (at, at, limit - len(claimed)),
                ).fetchall()
                good: list[tuple[int, OutboxEntry]] = []
                bad: list[tuple[int, _CorruptRow]] = []
                for row in rows:
                    try:
                        good.append((row[0], _entry(row[1:])))
                    except _CorruptRow as exc:
                        bad.append((row[0], exc))
                connection.executemany(
                    "UPDATE outbox SET lease_owner = ?, lease_until = ? WHERE seq = ?",
                    [(owner, until, seq) for seq, _ in good],
                )
                connection.executemany(
                    "UPDATE outbox SET state = 'dead', lease_owner = NULL, lease_until = NULL, "
                    "last_error = ? WHERE seq = ?",
                    [(f"corrupt outbox row: {exc.problem}", seq) for seq, exc in bad],
                )
                claimed.extend(leased(entry) for _, entry in good)
                corrupt.extend(exc for _, exc in bad)
                if not bad:  # every row was good: the claim is full, or nothing more is due
                    break
            return claimed, corrupt

        claimed, corrupt = self._write(write)
        for exc in corrupt:
            _log.error("%s; marked dead", exc)
        return tuple(claimed)

    # -- transactions -----------------------------------------------------------------------

    def _migrate(self, connection: sqlite3.Connection) -> None:
        version = int(connection.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise PortRejected(
                f"database {self._path!r} has schema version {version}, newer than the "
                f"{SCHEMA_VERSION} this version of retouraanvraag knows; upgrade the library"
            )
        if version == 0:
            for statement in _SCHEMA:
                connection.execute(statement)
            connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _read(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        return self._retrying(lambda: self._transaction("BEGIN DEFERRED", work))

    def _write(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        return self._retrying(lambda: self._transaction("BEGIN IMMEDIATE", work))

    def _transaction(self, begin: str, work: Callable[[sqlite3.Connection], _T]) -> _T:
        with self._turn:
            connection = self._connection()
            connection.execute(begin)
            try:
                result = work(connection)
                connection.execute("COMMIT")
            except BaseException:
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
                raise
            return result

    def _retrying(self, attempt: Callable[[], _T]) -> _T:
        """Run ``attempt``, again while the database is busy, then translate driver errors."""
        deadline = time.monotonic() + self._timeout
        backoff = 0.001
        while True:
            try:
                return attempt()
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc):
                    raise PortUnavailable(f"database {self._path!r}: {exc}") from exc
                if time.monotonic() >= deadline:
                    raise PortUnavailable(
                        f"database {self._path!r} stayed busy for {self._timeout} s"
                    ) from exc
            except sqlite3.IntegrityError as exc:
                raise PortRejected(f"database {self._path!r} refused a change: {exc}") from exc
            except sqlite3.DatabaseError as exc:
                raise PortRejected(f"database {self._path!r}: {exc}") from exc
            # Jitter keeps several processes from retrying in lockstep.
            time.sleep(backoff * random.uniform(0.5, 1.0))  # noqa: S311 - not a secret
            backoff = min(backoff * 2, _MAX_BACKOFF)

    def _connection(self) -> sqlite3.Connection:
        if self._closed:
            raise PortRejected(f"storage on {self._path!r} is closed")
        if self._in_memory:
            if self._shared is None:
                self._shared = self._open()
            return self._shared
        if self._pid != os.getpid():
            # A forked child must not use its parent's connections, nor close them (a close
            # may checkpoint the parent's WAL): they are kept, unused, and the child opens its own.
            with self._registry:
                self._pid = os.getpid()
                self._inherited.extend(self._connections)
                self._connections = weakref.WeakSet()
                self._local = threading.local()
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._open()
            self._local.connection = connection
        return connection

    def _open(self) -> sqlite3.Connection:
        connection = sqlite3.connect(
            self._path,
            timeout=self._timeout,
            isolation_level=None,
            check_same_thread=False,
            factory=_Connection,
        )
        with self._registry:
            if self._closed:
                connection.close()
                raise PortRejected(f"storage on {self._path!r} is closed")
            self._connections.add(connection)
        connection.execute("PRAGMA synchronous = FULL")
        return connection


class _Connection(sqlite3.Connection):
    """A connection that can be referenced weakly (the stdlib's own cannot)."""


# -- rows ----------------------------------------------------------------------------------

_OUTBOX_COLUMNS: Final = (
    "shop_id, key, request_id, effect, state, attempts, available_at, lease_owner, "
    "lease_until, last_error"
)


@attrs.frozen
class _Listing:
    """The SQL for one query's pages: a range scan per status, merged in listing order."""

    shop_id: str
    statuses: tuple[str, ...] | None
    filters: str
    bounds: tuple[str, ...]

    @classmethod
    def of(cls, shop_id: str, query: Query) -> _Listing:
        filters = ""
        bounds: list[str] = []
        if query.created_from is not None:
            filters += " AND created_at >= ?"
            bounds.append(timestamp(query.created_from, field="created_from"))
        if query.created_before is not None:
            filters += " AND created_at < ?"
            bounds.append(timestamp(query.created_before, field="created_before"))
        if query.needs_attention is not None:
            # A literal, not a parameter, so that the partial index can serve it.
            filters += f" AND needs_attention = {int(query.needs_attention)}"
        statuses = None if query.statuses is None else tuple(sorted(query.statuses))
        return cls(shop_id, statuses, filters, tuple(bounds))

    def fetch(
        self, connection: sqlite3.Connection, after: Position | None, limit: int
    ) -> list[tuple[Position, str]]:
        if self.statuses == ():
            return []
        cursor = " AND (created_at, id) > (?, ?)" if after is not None else ""
        where = f"shop_id = ?{self.filters}{cursor}"
        params: list[object] = [self.shop_id, *self.bounds, *(after or ())]
        if self.statuses is None:
            sql = (
                f"SELECT created_at, id, body FROM requests WHERE {where} "  # noqa: S608
                "ORDER BY created_at, id LIMIT ?"
            )
            rows = connection.execute(sql, (*params, limit)).fetchall()
        else:
            # Each status is its own index range in (created_at, id) order; UNION ALL merges
            # the first ``limit`` of each, so nothing outside the listed statuses is touched.
            part = (
                "SELECT * FROM (SELECT created_at, id, body FROM requests "  # noqa: S608
                f"WHERE {where} AND status = ? ORDER BY created_at, id LIMIT ?)"
            )
            sql = " UNION ALL ".join([part] * len(self.statuses))
            sql += " ORDER BY created_at, id LIMIT ?"
            values: list[object] = []
            for status in self.statuses:
                values.extend((*params, status, limit))
            rows = connection.execute(sql, (*values, limit)).fetchall()
        return [((str(ts), str(request_id)), str(body)) for ts, request_id, body in rows]


class _CorruptRow(PortRejected):
    """An outbox row that cannot be read back; ``problem`` says why."""

    def __init__(self, *, shop_id: str, key: str, request_id: str, problem: str) -> None:
        self.shop_id = shop_id
        self.key = key
        self.request_id = request_id
        self.problem = problem
        super().__init__(
            f"shop {shop_id}: outbox entry {key!r} of request {request_id} cannot be read: "
            f"{problem}"
        )


def _request(body: str, shop_id: str, request_id: str) -> ReturnRequest:
    """The request a row's body holds.

    Raises:
        PortRejected: the body does not decode, or holds another request than its row.
    """
    try:
        request = request_from_json(body)
    except InvalidInput as exc:
        problem = str(exc)
    else:
        if (request.shop_id, request.id) == (shop_id, request_id):
            return request
        problem = "the body holds another request than its row"
    raise PortRejected(
        f"shop {shop_id}: request {request_id}: the stored row cannot be read: {problem}"
    )


def _entry(row: Sequence[Any]) -> OutboxEntry:
    """The outbox entry a row of ``_OUTBOX_COLUMNS`` holds.

    Raises:
        _CorruptRow: the row does not decode, or its effect is not the row's key and request.
    """
    shop_id, key, request_id, *rest = row
    try:
        entry = _decoded(str(shop_id), rest)
    except (ValueError, TypeError) as exc:  # InvalidInput is a ValueError
        problem = str(exc)
    else:
        if (entry.key, entry.effect.request_id) == (key, request_id):
            return entry
        problem = (
            f"its effect is {entry.key!r} of request {entry.effect.request_id}, "
            "not the row's key and request"
        )
    raise _CorruptRow(
        shop_id=str(shop_id), key=str(key), request_id=str(request_id), problem=problem
    )


def _decoded(shop_id: str, row: Sequence[Any]) -> OutboxEntry:
    effect, state, attempts, available_at, lease_owner, lease_until, last_error = row
    if not isinstance(attempts, int):
        raise TypeError(f"attempts is {attempts!r}, not a number")
    return OutboxEntry(
        shop_id=shop_id,
        effect=effect_from_json(str(effect)),
        state=EffectState(state),
        attempts=attempts,
        available_at=None if available_at is None else from_timestamp(str(available_at)),
        lease_owner=None if lease_owner is None else str(lease_owner),
        lease_until=None if lease_until is None else from_timestamp(str(lease_until)),
        last_error=None if last_error is None else str(last_error),
    )


def _queued(connection: sqlite3.Connection, shop_id: str, key: str) -> OutboxEntry | None:
    """The outbox entry stored under ``key`` in the shop, or ``None``."""
    row = connection.execute(
        f"SELECT {_OUTBOX_COLUMNS} FROM outbox WHERE shop_id = ? AND key = ?",  # noqa: S608
        (shop_id, key),
    ).fetchone()
    return None if row is None else _entry(row)


def _settled(connection: sqlite3.Connection, commit: Commit, settle: Settlement) -> OutboxEntry:
    """The entry ``settle`` (the commit's) names, settled.

    Raises:
        LeaseLost: it is not an entry of the request, pending and leased to the settler.
    """
    entry = _queued(connection, commit.request.shop_id, settle.key)
    if (
        entry is None
        or entry.effect.request_id != commit.request.id
        or not holds_lease(entry, settle)
    ):
        raise lease_lost(commit)
    return settle_entry(entry, settle)


def _check_revivable(connection: sqlite3.Connection, commit: Commit, key: str) -> None:
    """Refuse a ``revive`` key that is not a dead entry of the commit's request.

    Raises:
        InvalidInput: it is not.
    """
    row = connection.execute(
        "SELECT request_id, state FROM outbox WHERE shop_id = ? AND key = ?",
        (commit.request.shop_id, key),
    ).fetchone()
    check_revivable(commit, key, None if row is None else (str(row[0]), EffectState(row[1])))


def _optional_timestamp(value: dt.datetime | None, field: str) -> str | None:
    return None if value is None else timestamp(value, field=field)


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        return (code & 0xFF) in _BUSY_CODES
    message = str(exc).lower()  # pragma: no cover - Python builds without error codes
    return "locked" in message or "busy" in message  # pragma: no cover


def _store_settled(connection: sqlite3.Connection, shop_id: str, settled: OutboxEntry) -> None:
    connection.execute(
        "UPDATE outbox SET state = ?, attempts = ?, available_at = ?, "
        "lease_owner = NULL, lease_until = NULL, last_error = ? "
        "WHERE shop_id = ? AND key = ?",
        (
            settled.state.value,
            settled.attempts,
            _optional_timestamp(settled.available_at, "retry_at"),
            settled.last_error,
            shop_id,
            settled.key,
        ),
    )


def _refused(exc: sqlite3.IntegrityError, request_id: str, paid: int, refunded: int) -> Exception:
    """The port error for a constraint the database enforced, or ``exc`` itself."""
    if "money_cap" in str(exc):
        return money_cap_error(request_id, paid, refunded)
    if "fee_fixed" in str(exc):
        return fee_fixed_error(request_id)
    return exc
