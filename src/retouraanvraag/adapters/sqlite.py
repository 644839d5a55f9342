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
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Final, Self, TypeVar

import attrs

from retouraanvraag._codec import request_from_json
from retouraanvraag.adapters import _sql
from retouraanvraag.adapters._common import (
    Position,
    check_settlement,
    damaged_request,
    decode_cursor,
    fee_fixed_error,
    from_timestamp,
    is_position,
    money_cap_error,
    plan_commit,
    refund_totals,
    timestamp,
    uncountable,
    unstorable,
)
from retouraanvraag.adapters._facts import (
    LOCAL_DAY_FUNCTION,
    Dialect,
    add_facts,
    fact_values,
    local_day,
    scan_budget,
)
from retouraanvraag.errors import NotFound, PortRejected, PortUnavailable
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

if TYPE_CHECKING:
    from retouraanvraag.adapters._sql_filter import SqlFilter

__all__ = ["SCHEMA_VERSION", "SqliteStorage"]

_T = TypeVar("_T")
_log = logging.getLogger(__name__)

#: The schema this code writes, kept in ``PRAGMA user_version``. Version 2 added the rule
#: filter's fact columns (``adapters._sql_filter``); opening a version 1 file adds and fills them.
SCHEMA_VERSION: Final = 2

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
    # Its currency and payment reference live in the body only: the commit plan holds them.
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
            PortRejected: the stored row cannot be read back (a damaged row: bytes that are
                not UTF-8, a column of the wrong type or disagreeing with the body, a body that
                is not this request); the message names the shop and the request.
            PortUnavailable: the database is busy or cannot be reached.
        """
        if unstorable(shop_id, request_id):  # no such text reaches a row
            raise NotFound(shop_id=shop_id, request_id=request_id)
        row: Sequence[object] | None = self._read(
            lambda connection: connection.execute(
                _SQL.get_request, (shop_id, request_id)
            ).fetchone()
        )
        if row is None:
            raise NotFound(shop_id=shop_id, request_id=request_id)
        return _sql.request_of(_DRIVER, shop_id, request_id, row)

    def idempotency_record(self, shop_id: str, key: str) -> IdempotencyRecord | None:
        """The record stored under ``key`` in this shop, or ``None``.

        Raises:
            PortRejected: the stored record cannot be read back (a damaged row); the message
                names the shop, the key and the request.
            PortUnavailable: the database is busy or cannot be reached.
        """
        if unstorable(shop_id, key):
            return None
        row: Sequence[object] | None = self._read(
            lambda connection: connection.execute(_SQL.get_record, (shop_id, key)).fetchone()
        )
        return None if row is None else _sql.record_of(_DRIVER, shop_id, key, row)

    def outbox(self, shop_id: str, request_id: str) -> Sequence[OutboxEntry]:
        """Every outbox entry of one request, in the order they were queued.

        An entry whose row cannot be read back (a damaged row) is left out and logged as an
        error with its ids, so that the request's other entries stay readable.

        Raises:
            PortUnavailable: the database is busy or cannot be reached.
        """
        if unstorable(shop_id, request_id):
            return ()
        rows = self._read(
            lambda connection: connection.execute(
                _SQL.list_outbox, (shop_id, request_id)
            ).fetchall()
        )
        return _sql.entries_of(_DRIVER, rows, _log)

    def query(self, shop_id: str, query: Query) -> Page:
        """List requests of one shop, oldest first, by ``(created_at, id)``.

        Pages are found by keyset (the cursor is the last position shown), never by offset,
        through indexes on ``(shop_id, status, created_at, id)``: a page costs the same
        however long the shop's history. A ``where`` predicate that refuses many rows can
        yield a short page with a cursor; keep paging until ``next_cursor`` is ``None``.

        A rule ``condition`` runs as SQL over the fact columns, every built-in field in the
        database; one naming a host field runs as a Python predicate (after its built-in
        conjuncts have narrowed the rows in SQL), with the same bounded scan as ``where``.

        A row that cannot be read back (a damaged row) is left out of the page and logged as
        an error naming the shop and the request, so that one damaged row never makes a tab
        unreadable; ``get`` of that request raises.

        Raises:
            InvalidInput: the cursor is not one this store handed out, or a bound is naive.
            PortUnavailable: the database is busy or cannot be reached.
        """
        after: _RowPosition | None = (
            decode_cursor(query.cursor) if query.cursor is not None else None
        )
        if unstorable(shop_id, *(after or ())):  # names nothing stored
            return Page((), None)
        listing = _Listing.of(shop_id, query)
        if listing.condition is not None:
            try:
                return self._filtered(listing, query, after)
            except _DamagedFacts:
                # Text that is not JSON where a row's items or tags belong stops SQLite's JSON
                # functions for the whole statement: this listing runs in Python instead.
                _log.error(
                    "shop %s: a request's fact columns hold malformed JSON; its rule filter "
                    "runs in Python until the request is saved again",
                    shop_id,
                )
        return self._scanned(listing, query, after)

    def count(self, shop_id: str, query: Query) -> int:
        """How many requests every page of ``query`` lists together (see ``Storage.count``).

        One ``COUNT`` over the listing's index ranges, the rule condition as SQL on the facts.

        Raises:
            InvalidInput: a ``where`` predicate, a condition naming a host field, or a naive
                bound.
            PortUnavailable: the database is busy or cannot be reached.
        """
        listing = _Listing.of(shop_id, query)
        uncountable(
            query,
            exact=None
            if query.condition is None
            else bool(listing.condition and listing.condition.exact),
        )
        if listing.statuses == () or unstorable(shop_id):
            return 0
        where = f"shop_id = ?{listing.filters}"
        params: list[object] = [shop_id, *listing.bounds]
        if listing.statuses is not None:
            where += f" AND status IN ({', '.join('?' * len(listing.statuses))})"
            params.extend(listing.statuses)
        if listing.condition is not None:
            where += f" AND {listing.condition.sql}"
            params.extend(listing.condition.params)
        row = self._read(
            lambda connection: connection.execute(
                f"SELECT count(*) FROM requests WHERE {where}",  # noqa: S608 - placeholders
                params,
            ).fetchone()
        )
        return int(row[0])

    def _scanned(self, listing: _Listing, query: Query, after: _RowPosition | None) -> Page:
        """A page whose only filter beyond the indexed ones (if any) is a Python predicate."""
        return _sql.scanned_page(
            _DRIVER,
            lambda at, limit: self._read(functools.partial(listing.fetch, after=at, limit=limit)),
            query,
            shop_id=listing.shop_id,
            after=after,
            budget=_SCAN_BUDGET,
            batch=_BATCH,
            log=_log,
        )

    def _filtered(self, listing: _Listing, query: Query, after: _RowPosition | None) -> Page:
        """A page of a listing whose rule condition runs as SQL, over bounded windows.

        Each window is found and searched in one read (:meth:`_Listing.window`).
        """
        items = listing.condition is not None and listing.condition.reads_items
        return _sql.filtered_page(
            _DRIVER,
            lambda at, size, limit: self._read(
                functools.partial(listing.window, after=at, size=size, limit=limit)
            ),
            query,
            shop_id=listing.shop_id,
            after=after,
            rows=scan_budget(reads_items=items),
            decoded=_SCAN_BUDGET,
            log=_log,
        )

    # -- writes -----------------------------------------------------------------------------

    def commit(self, commit: Commit) -> ReturnRequest:
        """Apply ``commit`` atomically, in one ``BEGIN IMMEDIATE`` transaction.

        Raises:
            ConcurrentModification: a lost compare-and-set, an existing id for a new request,
                a taken idempotency key, or a settlement by a caller that holds no lease.
            NotFound: ``expected_version`` is set but the request does not exist in this shop.
            PortRejected: the request's refunds exceed its paid fee (the database's
                ``money_cap`` constraint), the commit changes the paid fee (amount, currency or
                payment reference; the ``requests_fee_fixed`` trigger stands behind the check
                on the amount), or a row the commit must read is damaged (the stored version
                or paid fee, the entry it settles, a key it revives); nothing was changed.
            InvalidInput: the commit is malformed (an effect or record of another request), or
                a ``revive`` key is not a dead entry of the request.
            PortUnavailable: the database stayed busy; nothing was changed.
        """
        # Everything that costs time is prepared before the write lock is taken.
        write = _sql.prepare(_DRIVER, commit)
        saved = write.saved

        def run(connection: sqlite3.Connection) -> None:
            lookups = _sql.Lookups(_DRIVER, connection, saved.shop_id, saved.id)
            plan = plan_commit(commit, lookups, saved)
            _sql.write_plan(_DRIVER, connection, commit, plan, write)

        self._write(run)
        return saved

    def settle(self, shop_id: str, settlement: Settlement) -> None:
        """Settle a leased outbox entry without touching its request.

        Raises:
            LeaseLost: the entry is not pending and leased to ``settlement.owner``.
            InvalidInput: a naive ``retry_at``.
            PortUnavailable: the database stayed busy; nothing was changed.
        """
        check_settlement(settlement)
        self._write(lambda connection: _sql.settle(_DRIVER, connection, shop_id, settlement))

    def claim(
        self, *, owner: str, now: dt.datetime, lease: dt.timedelta, limit: int
    ) -> Sequence[OutboxEntry]:
        """Lease up to ``limit`` pending entries that are due and not leased, oldest first.

        A row that cannot be read back (a damaged row) is not handed out: it is marked dead in
        the same transaction, with ``last_error`` ``"corrupt outbox row: …"``, its request (if
        that row reads back) is marked as needing attention, it is logged as an error, and the
        next due entry takes its place. A pending row whose times are not ones the store writes
        is taken as due, so that it is set aside rather than left waiting for good. One bad
        row never blocks the queue.

        Raises:
            InvalidInput: ``now`` is naive, ``lease`` is not positive, or ``limit`` negative.
            PortUnavailable: the database stayed busy.
        """
        return _sql.claim(
            _DRIVER, self._write, owner=owner, now=now, lease=lease, limit=limit, log=_log
        )

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
        if version < 2:  # noqa: PLR2004 - the version that added the fact columns
            _add_facts(connection)
        if version < SCHEMA_VERSION:
            connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _read(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        return self._retrying(lambda: self._transaction("BEGIN DEFERRED", work))

    def _write(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        return self._retrying(lambda: self._transaction("BEGIN IMMEDIATE", work))

    def _transaction(self, begin: str, work: Callable[[sqlite3.Connection], _T]) -> _T:
        with self._turn:
            connection = self._connection()
            try:
                return _run(connection, begin, work)
            except sqlite3.OperationalError as exc:
                if not _undecodable(exc):
                    raise
            # Some row holds TEXT that is not UTF-8, which sqlite3 refuses to fetch at all (and
            # would stop every row beside it). Run the work once more with such text fetched as
            # bytes, so that the row decoders can tell which row is damaged. Only then: the
            # default text factory is C code, a lenient one costs a call per column.
            connection.text_factory = _lenient_text
            try:
                return _run(connection, begin, work)
            finally:
                connection.text_factory = str

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
        # Rule filters read dates in the shop's zone through Python's own zoneinfo.
        connection.create_function(LOCAL_DAY_FUNCTION, 2, local_day, deterministic=True)
        return connection


class _DamagedFacts(Exception):
    """A fact column holds text that SQLite's JSON functions refuse."""


class _Connection(sqlite3.Connection):
    """A connection that can be referenced weakly (the stdlib's own cannot)."""


def _run(
    connection: sqlite3.Connection, begin: str, work: Callable[[sqlite3.Connection], _T]
) -> _T:
    """``work`` in one transaction: committed if it returns, rolled back if it raises."""
    connection.execute(begin)
    try:
        result = work(connection)
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise
    return result


def _undecodable(exc: sqlite3.OperationalError) -> bool:
    """Whether sqlite3 refused to fetch a row because a TEXT value is not UTF-8."""
    # The sqlite3 module raises this itself, without an SQLite error code; CPython's own
    # tests pin the message ("Could not decode to UTF-8 column '…' with text '…'").
    return str(exc).startswith("Could not decode to UTF-8")


class _NotUtf8(bytes):
    """A TEXT value whose bytes are not UTF-8, as the lenient text factory fetches it."""


def _lenient_text(raw: bytes) -> str | bytes:
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return _NotUtf8(raw)


# -- rows ----------------------------------------------------------------------------------
#
# Every value fetched is checked before it is used: a row that is not what ``commit`` wrote
# (bytes that are not UTF-8, a BLOB, a number where text belongs, a body that disagrees with
# its columns) raises ``DamagedRow`` naming the row, never a raw ``ValueError``.

#: A listing position as fetched: ``(created_at, id)``, which a damaged row may hold as bytes.
_RowPosition = tuple[object, object]


@attrs.frozen
class _Listing:
    """The SQL for one query's pages: a range scan per status, merged in listing order."""

    shop_id: str
    statuses: tuple[str, ...] | None
    filters: str
    bounds: tuple[str, ...]
    #: The query's rule condition as SQL, when it could be translated.
    condition: SqlFilter | None = None

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
        condition = None
        if query.condition is not None:
            # Imported here: it reads the rule language, which a store without filters never
            # needs to load.
            from retouraanvraag.adapters._sql_filter import compile_filter  # noqa: PLC0415

            condition = compile_filter(query.condition, Dialect.SQLITE)
        return cls(shop_id, statuses, filters, tuple(bounds), condition)

    def window(
        self,
        connection: sqlite3.Connection,
        after: _RowPosition | None,
        size: int,
        limit: int,
    ) -> tuple[_RowPosition | None, list[tuple[_RowPosition, Sequence[object]]]]:
        """The next ``size`` rows' last position, and the first ``limit`` matches up to it.

        The position is ``None`` when fewer than ``size`` rows are left (the matches then run
        to the end of the listing). It is found on the index alone; only the rows in the
        window are tested against the condition.
        """
        if self.statuses == ():  # no status asked for: nothing to list (and no SQL to join)
            return None, []
        until = self._window_end(connection, after, size)
        matches, params = self._select(
            after, "rowid AS k, created_at AS at, id AS rid", limit, until=until, filtered=True
        )
        sql = (
            f"SELECT m.at, m.rid, {_SQL.request_columns} FROM ({matches}) AS m "  # noqa: S608
            "JOIN requests ON requests.rowid = m.k ORDER BY m.at, m.rid"
        )
        try:
            rows = connection.execute(sql, params).fetchall()
        except sqlite3.OperationalError as exc:
            if "malformed JSON" in str(exc):  # SQLite's own words for it
                raise _DamagedFacts from exc
            raise
        return until, [((row[0], row[1]), row[2:]) for row in rows]

    def _window_end(
        self, connection: sqlite3.Connection, after: _RowPosition | None, size: int
    ) -> _RowPosition | None:
        """The earliest of each status's ``size``-th position after ``after`` (``None``: none).

        Each status is one index range, stepped through on the index alone; the window up to
        the earliest of them holds at least ``size`` rows and at most ``size`` per status.
        """
        ends: list[_RowPosition] = []
        for status in (None,) if self.statuses is None else self.statuses:
            if status is None:
                sql, params = self._select(after, "created_at, id", 1, offset=size - 1)
            else:
                sql, params = self._single(after, status, size)
            found = connection.execute(sql, params).fetchone()
            if found is not None:
                ends.append((found[0], found[1]))
        return min(ends, key=_sortable) if ends else None

    def _single(
        self, after: _RowPosition | None, status: str, size: int
    ) -> tuple[str, tuple[object, ...]]:
        cursor = ""
        if after is not None:
            cursor = f" AND (created_at, id) > ({_placeholder(after[0])}, {_placeholder(after[1])})"
        sql = (
            f"SELECT created_at, id FROM requests WHERE shop_id = ?{self.filters}{cursor} "  # noqa: S608
            "AND status = ? ORDER BY created_at, id LIMIT 1 OFFSET ?"
        )
        return sql, (self.shop_id, *self.bounds, *(after or ()), status, size - 1)

    def fetch(
        self, connection: sqlite3.Connection, after: _RowPosition | None, limit: int
    ) -> list[tuple[_RowPosition, Sequence[object]]]:
        """Up to ``limit`` rows after ``after``: each its position and its request columns."""
        if self.statuses == ():
            return []
        columns = f"created_at AS at, id AS rid, {_SQL.request_columns}"
        rows = connection.execute(*self._select(after, columns, limit)).fetchall()
        return [((row[0], row[1]), row[2:]) for row in rows]

    def _select(
        self,
        after: _RowPosition | None,
        columns: str,
        limit: int,
        *,
        offset: int = 0,
        until: _RowPosition | None = None,
        filtered: bool = False,
    ) -> tuple[str, tuple[object, ...]]:
        """The statement listing ``columns`` of rows after ``after``, in listing order."""
        cursor = ""
        if after is not None:
            # A damaged row's position may be text that is not UTF-8: bound as bytes, it must
            # be cast back to TEXT to compare as the column does.
            cursor = f" AND (created_at, id) > ({_placeholder(after[0])}, {_placeholder(after[1])})"
        if until is not None:
            cursor += (
                f" AND (created_at, id) <= ({_placeholder(until[0])}, {_placeholder(until[1])})"
            )
        params: list[object] = [self.shop_id, *self.bounds, *(after or ()), *(until or ())]
        if filtered and self.condition is not None:
            cursor += f" AND {self.condition.sql}"
            params += self.condition.params
        where = f"shop_id = ?{self.filters}{cursor}"
        # Pages go by keyset; an offset only ever finds a window's end on the index.
        skip, skipped = (" OFFSET ?", (offset,)) if offset else ("", ())
        if self.statuses is None:
            sql = (
                f"SELECT {columns} FROM requests WHERE {where} "  # noqa: S608
                f"ORDER BY created_at, id LIMIT ?{skip}"
            )
            return sql, (*params, limit, *skipped)
        # Each status is its own index range in (created_at, id) order; UNION ALL merges the
        # first ``limit + offset`` of each, so nothing outside the listed statuses is touched.
        part = (
            f"SELECT * FROM (SELECT {columns} FROM requests "  # noqa: S608
            f"WHERE {where} AND status = ? ORDER BY created_at, id LIMIT ?)"
        )
        sql = " UNION ALL ".join([part] * len(self.statuses))
        sql += f" ORDER BY at, rid LIMIT ?{skip}"
        values: list[object] = []
        for status in self.statuses:
            values.extend((*params, status, limit + offset))
        return sql, (*values, limit, *skipped)


def _sortable(position: _RowPosition) -> tuple[bytes, bytes]:
    """A position as SQLite orders it (text by its UTF-8 bytes; a damaged one is bytes)."""
    return tuple(  # type: ignore[return-value]
        part if isinstance(part, bytes) else str(part).encode() for part in position
    )


def _placeholder(value: object) -> str:
    return "CAST(? AS TEXT)" if isinstance(value, _NotUtf8) else "?"


def _column_values(request: ReturnRequest) -> tuple[int, str, dt.datetime, int, int, int]:
    """What a request row holds beside its body, in ``_COLUMN_NAMES`` order.

    ``created_at`` is the instant; the row holds it as :func:`timestamp` writes it.

    Raises:
        PortRejected: a refund in another currency than the paid fee.
    """
    paid, refunded = refund_totals(request)
    return (
        request.version,
        request.status.value,
        request.created_at,
        int(request.needs_attention),
        paid,
        refunded,
    )


class _Unreadable(ValueError):
    """A fetched value that is not what the store writes there (the message names the column)."""


def _describe(value: object) -> str:
    """What a fetched value is, in words, without the value itself (it may be anything)."""
    if isinstance(value, _NotUtf8):
        return "text that is not valid UTF-8"
    if value is None:
        return "NULL"
    if isinstance(value, bytes):
        return "a BLOB"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a real"
    return "text"


def _mismatch(value: object, kind: type) -> str:
    if type(value) is kind:
        return "disagrees with the body"
    return f"holds {_describe(value)}"


def _same_instant(column: object, moment: dt.datetime) -> bool:
    """Whether a ``created_at`` column is the time :func:`timestamp` writes for ``moment``.

    :func:`from_timestamp` takes only the one form ``timestamp`` writes, so naming the same
    instant means being the same text.
    """
    if type(column) is not str:
        return False
    try:
        return from_timestamp(column) == moment
    except (ValueError, OverflowError):
        return False


def _stored_version(shop_id: str, request_id: str, value: object) -> int:
    """The version column of a row a commit is about to replace.

    Raises:
        DamagedRow: it is not a version the store writes.
    """
    if type(value) is int and value >= 1:
        return value
    kind = "a number below 1" if type(value) is int else _describe(value)
    raise damaged_request(shop_id, request_id, f"column version holds {kind}")


class _Sqlite:
    """SQLite's side of the shared SQL (:class:`~retouraanvraag.adapters._sql.Driver`).

    SQLite types values, not columns: every value fetched is checked before it is used, and
    one that is not what ``commit`` wrote (bytes that are not UTF-8, a BLOB, a number where
    text belongs) raises ``_Unreadable`` naming the column. Times are text as
    :func:`timestamp` writes them, flags 0 and 1; a statement for many rows is ``executemany``.
    """

    sql: Final = _sql.SQLITE

    def text(self, value: object, column: str) -> str:
        if type(value) is str:
            return value
        raise _Unreadable(f"column {column} holds {_describe(value)}, not text")

    def name(self, value: object, column: str) -> str:
        """An id column: text, and not empty (every id the store writes names something)."""
        text = self.text(value, column)
        if not text:
            raise _Unreadable(f"column {column} is empty")
        return text

    def count(self, value: object, column: str) -> int:
        if type(value) is int and value >= 0:
            return value
        kind = "a negative number" if type(value) is int else _describe(value)
        raise _Unreadable(f"column {column} holds {kind}, not a count")

    def moment(self, value: object, column: str) -> dt.datetime | None:
        if value is None:
            return None
        try:
            return from_timestamp(self.text(value, column))
        except ValueError:
            raise _Unreadable(f"column {column} holds no time as the store writes it") from None

    def state(self, value: object) -> EffectState:
        try:
            return EffectState(self.text(value, "state"))
        except ValueError:
            raise _Unreadable("column state holds no known state") from None

    def disagreement(self, columns: Sequence[object], request: ReturnRequest) -> str | None:
        """The first column that is not what a commit of ``request`` writes there, if any.

        The stored time is parsed and compared (cheap), not formatted again (not): this runs
        for every row a listing shows.
        """
        try:
            expected = _column_values(request)
        except PortRejected as exc:
            return f"the body cannot be stored as it is: {exc}"
        version, status, created_at, attention, paid, refunded = expected
        if (
            columns[0] == version
            and columns[1] == status
            and columns[3] == attention
            and columns[4] == paid
            and columns[5] == refunded
            and _same_instant(columns[2], created_at)
        ):
            return None
        # Some column disagrees: name the first.
        for name, value, wanted in zip(_sql.COLUMN_NAMES, columns, expected, strict=True):
            if isinstance(wanted, dt.datetime):
                if not _same_instant(value, wanted):
                    return f"column {name} {_mismatch(value, str)}"
            elif value != wanted:
                return f"column {name} {_mismatch(value, type(wanted))}"
        return None

    def stored(
        self, shop_id: str, request_id: str, found: Sequence[object]
    ) -> tuple[int, int, str | bytes | None]:
        # ``kind`` is NULL when the body is no JSON object (see ``_sql.SQLITE_DIALECT``).
        version = _stored_version(shop_id, request_id, found[0])
        paid, kind, fee_json = found[1:]
        if type(paid) is not int or paid < 0:
            problem = f"column fee_paid_minor holds {_describe(paid)}"
            raise damaged_request(shop_id, request_id, problem)
        if kind is None:
            raise damaged_request(shop_id, request_id, "column body holds no JSON object")
        if kind not in {"object", "null", "absent"}:
            raise damaged_request(shop_id, request_id, "the body's return_fee is not a paid fee")
        return version, paid, fee_json  # type: ignore[return-value]

    def columns(self, request: ReturnRequest) -> tuple[int, str, object, object, int, int]:
        version, status, created_at, attention, paid, refunded = _column_values(request)
        created = timestamp(created_at, field="created_at")
        return version, status, created, attention, paid, refunded

    def time(self, moment: dt.datetime | None, field: str) -> object:
        return None if moment is None else timestamp(moment, field=field)

    def position(self, at: _RowPosition) -> Position:
        return str(at[0]), str(at[1])

    def resumable(self, at: _RowPosition) -> bool:
        return is_position(*at)

    def each(
        self, connection: sqlite3.Connection, statement: str, rows: Sequence[Sequence[object]]
    ) -> None:
        connection.executemany(statement, rows)

    def keyed(
        self,
        connection: sqlite3.Connection,
        statement: str,
        fixed: tuple[object, ...],
        keys: Iterable[object],
    ) -> None:
        connection.executemany(statement, [(*fixed, key) for key in keys])

    def save(self, connection: sqlite3.Connection, write: _sql.Prepared, *, stored: bool) -> None:
        sql = self.sql.update_request if stored else self.sql.insert_request
        try:
            connection.execute(sql, write.row)
        except sqlite3.IntegrityError as exc:
            # The schema's own constraints, a second line behind the plan's checks.
            raise _refused(exc, write.saved.id, *write.totals) from exc


_DRIVER: Final = _Sqlite()
_SQL: Final = _DRIVER.sql
#: The statement that inserts a request's row (the SQL filter's benchmark fills files with it).
_INSERT_REQUEST: Final = _SQL.insert_request


def _add_facts(connection: sqlite3.Connection) -> None:
    """Schema 2: the rule filter's fact columns, filled in from each stored body.

    A row whose body does not decode keeps NULL facts: no rule filter matches it, and the
    listings skip and log it as they always did.
    """
    # The index holds a tab's rows in listing order with every fact beside them: a condition
    # is tested on it alone, a fifth of a microsecond a row, and only matches are looked up.
    for statement in add_facts(Dialect.SQLITE):
        connection.execute(statement)
    rows = connection.execute("SELECT shop_id, id, body FROM requests").fetchall()
    filled = []
    for shop_id, request_id, body in rows:
        try:
            request = request_from_json(body)
        except (ValueError, TypeError):
            continue
        filled.append((*fact_values(request, Dialect.SQLITE), shop_id, request_id))
    connection.executemany(_SQL.fill_facts, filled)


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        return (code & 0xFF) in _BUSY_CODES
    message = str(exc).lower()  # pragma: no cover - Python builds without error codes
    return "locked" in message or "busy" in message  # pragma: no cover


def _refused(exc: sqlite3.IntegrityError, request_id: str, paid: int, refunded: int) -> Exception:
    """The port error for a constraint the database enforced, or ``exc`` itself."""
    if "money_cap" in str(exc):
        return money_cap_error(request_id, paid, refunded)
    if "fee_fixed" in str(exc):
        return fee_fixed_error(request_id)
    return exc
