"""A :class:`~retouraanvraag.ports.Storage` on PostgreSQL, for many workers on many hosts.

Install the extra (``pip install 'retouraanvraag[postgres]'``: psycopg 3 and psycopg_pool).
Each :class:`PostgresStorage` holds a pool of connections; every thread of the process shares
it. Writes are short transactions at READ COMMITTED: a commit locks the request's row
(``SELECT … FOR UPDATE``), runs the one commit plan every store shares
(:func:`~retouraanvraag.adapters._common.plan_commit`) against what it read, and writes. Two
desks deciding one request at once queue on that row lock, and the second sees the version the
first saved: it loses the compare-and-set. Claims take due outbox rows with
``FOR UPDATE SKIP LOCKED``, so that workers on many hosts share the outbox without waiting on
each other.

Requests are stored as ``jsonb`` (:mod:`retouraanvraag._codec`) beside the indexed columns that
listings and the money cap need; the cap is a ``CHECK`` constraint and the paid fee is fixed by
a trigger, so both hold inside the database whoever writes to it. The schema is versioned: a
table ``retouraanvraag_schema`` records the migrations applied, on open or by
``retouraanvraag db migrate --db postgresql://…``.

Serialization failures and deadlocks (SQLSTATE ``40001``, ``40P01``) are retried a bounded
number of times, and so is a connection found dead before ``COMMIT`` was sent (nothing was
saved then). A connection lost *during* ``COMMIT`` leaves the outcome unknown: that is
reported as :class:`~retouraanvraag.errors.PortUnavailable` saying so, and the command's retry
with the same idempotency key finds out which it was.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Final, Self, TypeVar, cast

import attrs

from retouraanvraag.adapters import _sql
from retouraanvraag.adapters._common import (
    Position,
    check_claim,
    check_settlement,
    decode_cursor,
    fee_fixed_error,
    from_timestamp,
    money_cap_error,
    plan_commit,
    refund_totals,
    timestamp,
    uncountable,
    unstorable,
)
from retouraanvraag.adapters._facts import Dialect, add_facts, scan_budget
from retouraanvraag.errors import (
    ConcurrentModification,
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

try:
    import psycopg
    import psycopg_pool
    from psycopg import errors as pg_errors
    from psycopg import sql
    from psycopg.conninfo import conninfo_to_dict
except ImportError as exc:  # pragma: no cover - the extra is installed for the tests
    raise ImportError(
        "the PostgreSQL store needs the postgres extra: pip install 'retouraanvraag[postgres]'"
    ) from exc

__all__ = ["SCHEMA_VERSION", "PostgresStorage", "describe", "migrate"]

if TYPE_CHECKING:
    from retouraanvraag.adapters._sql_filter import SqlFilter

_T = TypeVar("_T")
_log = logging.getLogger(__name__)

_Connection = psycopg.Connection[tuple[Any, ...]]


# -- the schema, as versioned migrations ------------------------------------------------------


@attrs.frozen
class _Migration:
    version: int
    description: str
    statements: tuple[str, ...]


_MIGRATIONS: Final = (
    _Migration(
        1,
        "requests, outbox and idempotency records",
        (
            # Ids sort bytewise ("C"), as the cursors of every store do, whatever the
            # database's own collation. Times stay within what Python can read back (no
            # 'infinity', no year 10000): one such row would stop every fetch that meets it.
            """
            CREATE TABLE requests (
                shop_id         text COLLATE "C" NOT NULL,
                id              text COLLATE "C" NOT NULL,
                version         integer NOT NULL CHECK (version >= 1),
                status          text COLLATE "C" NOT NULL,
                created_at      timestamptz NOT NULL CHECK (created_at BETWEEN
                                    '0001-01-01 00:00:00+00' AND '9999-12-31 23:59:59.999999+00'),
                needs_attention boolean NOT NULL,
                fee_paid_minor  bigint NOT NULL CHECK (fee_paid_minor >= 0),
                refunded_minor  bigint NOT NULL CHECK (refunded_minor >= 0),
                body            jsonb NOT NULL,
                PRIMARY KEY (shop_id, id),
                CONSTRAINT money_cap CHECK (refunded_minor <= fee_paid_minor)
            )
            """,
            # The paid fee is fixed at submission, so the money cap cannot be lifted by
            # raising it. The WHEN clause keeps the function off every other update. Its
            # currency and payment reference live in the body only: the commit plan holds them.
            """
            CREATE FUNCTION retouraanvraag_fee_fixed() RETURNS trigger
            LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION 'request %: the paid return fee cannot change', OLD.id
                    USING ERRCODE = 'check_violation', CONSTRAINT = 'fee_fixed';
            END
            $$
            """,
            """
            CREATE TRIGGER requests_fee_fixed BEFORE UPDATE OF fee_paid_minor ON requests
            FOR EACH ROW WHEN (NEW.fee_paid_minor <> OLD.fee_paid_minor)
            EXECUTE FUNCTION retouraanvraag_fee_fixed()
            """,
            # A tab (a few statuses) is a few range scans in (created_at, id) order, whatever
            # the size of the shop's history; the other two serve "everything" and "needs
            # attention".
            "CREATE INDEX requests_by_status ON requests (shop_id, status, created_at, id)",
            "CREATE INDEX requests_by_created ON requests (shop_id, created_at, id)",
            """
            CREATE INDEX requests_needing_attention ON requests (shop_id, created_at, id)
            WHERE needs_attention
            """,
            # The rule filter's facts (adapters._facts), written by every commit.
            *add_facts(Dialect.POSTGRES),
            # Leases change only unindexed columns: room on the page keeps those updates HOT.
            """
            CREATE TABLE outbox (
                seq          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                shop_id      text COLLATE "C" NOT NULL,
                key          text COLLATE "C" NOT NULL,
                request_id   text COLLATE "C" NOT NULL,
                effect       jsonb NOT NULL,
                state        text NOT NULL CHECK (state IN ('pending', 'done', 'dead')),
                attempts     integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
                available_at timestamptz CHECK (available_at BETWEEN
                                 '0001-01-01 00:00:00+00' AND '9999-12-31 23:59:59.999999+00'),
                lease_owner  text,
                lease_until  timestamptz CHECK (lease_until BETWEEN
                                 '0001-01-01 00:00:00+00' AND '9999-12-31 23:59:59.999999+00'),
                last_error   text,
                UNIQUE (shop_id, key)
            ) WITH (fillfactor = 80)
            """,
            "CREATE INDEX outbox_pending ON outbox (seq) WHERE state = 'pending'",
            "CREATE INDEX outbox_by_request ON outbox (shop_id, request_id, seq)",
            """
            CREATE TABLE idempotency (
                shop_id     text COLLATE "C" NOT NULL,
                key         text COLLATE "C" NOT NULL,
                fingerprint text NOT NULL,
                request_id  text COLLATE "C" NOT NULL,
                result      jsonb NOT NULL,
                PRIMARY KEY (shop_id, key)
            )
            """,
        ),
    ),
)

#: The schema this code writes: the newest migration's version.
SCHEMA_VERSION: Final = _MIGRATIONS[-1].version

_VERSIONS_TABLE: Final = """
    CREATE TABLE IF NOT EXISTS retouraanvraag_schema (
        version     integer PRIMARY KEY,
        description text NOT NULL,
        applied_at  timestamptz NOT NULL DEFAULT now()
    )
"""

# How long a listing page may scan rows that a ``where`` predicate refuses before it hands
# back a short page with a cursor: a page's cost stays bounded whatever the predicate.
_SCAN_BUDGET: Final = 5_000
_BATCH: Final = 200
# Serialization failures, deadlocks and connections found dead before COMMIT: tries in all.
_ATTEMPTS: Final = 6
_MAX_BACKOFF: Final = 0.05
_MOST_ROWS: Final = 2**63 - 1
_RETRIED: Final = (pg_errors.SerializationFailure, pg_errors.DeadlockDetected)


class PostgresStorage:
    """Requests, outbox and idempotency records in one PostgreSQL database (or schema).

    Example::

        with PostgresStorage("postgresql://returns@db.internal/returns") as storage:
            saved = storage.commit(Commit(request, expected_version=None))

    The tables live in ``current_schema()``: the first schema of the connection's
    ``search_path`` that exists (``public`` by default; ``options=-csearch_path=shop_returns``
    in the URL picks another). The database must be encoded in UTF8.

    Args:
        conninfo: a libpq connection string or ``postgresql://`` URL. Its password is never
            repeated in messages or logs.
        min_size: connections the pool keeps open.
        max_size: the most connections the pool opens; a thread that finds them all busy waits
            up to ``timeout`` for one.
        timeout: seconds to wait for a connection, and to keep retrying serialization failures,
            deadlocks and dead connections, before giving up with ``PortUnavailable``.
        migrate: bring the schema up to date on open (needs the right to create tables); with
            ``False`` a schema that is not the one this code writes is refused.

    Raises:
        InvalidInput: ``conninfo`` is not a connection string, or the pool sizes mean nothing.
        PortRejected: the schema is newer than this code (or older, with ``migrate=False``),
            the database refuses the migration, is not encoded in UTF8, or no schema of the
            ``search_path`` exists.
        PortUnavailable: the server cannot be reached within ``timeout``.
    """

    def __init__(
        self,
        conninfo: str,
        *,
        min_size: int = 1,
        max_size: int = 10,
        timeout: float = 5.0,
        migrate: bool = True,
    ) -> None:
        """Open a pool on ``conninfo``; create, migrate or check the schema."""
        if min_size < 0 or max_size < max(min_size, 1):
            raise InvalidInput(
                f"a pool of {min_size} to {max_size} connections cannot be opened",
                field="max_size",
            )
        self._conninfo = conninfo
        self._where = describe(conninfo)
        self._sizes = (min_size, max_size)
        self._timeout = timeout
        self._lock = threading.Lock()
        self._closed = False
        self._pid = os.getpid()
        # A forked child must not use (or close) its parent's connections: it keeps them,
        # unused, and opens a pool of its own.
        self._inherited: list[psycopg_pool.ConnectionPool[_Connection]] = []
        self._pool: psycopg_pool.ConnectionPool[_Connection] | None = None
        try:
            self._run(lambda connection: _schema(connection, self._where, apply=migrate))
        except BaseException:
            self.close()
            raise

    # -- lifecycle --------------------------------------------------------------------------

    def __repr__(self) -> str:
        """The store and where it is, without credentials."""
        return f"PostgresStorage({self._where})"

    @property
    def where(self) -> str:
        """Where the database is, as messages name it: host, port and database, no password."""
        return self._where

    def close(self) -> None:
        """Close the pool and its connections; later calls raise ``PortRejected``."""
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None and self._pid == os.getpid():
            pool.close()

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
            PortRejected: the stored row cannot be read back (a damaged row: a body that is
                not a request, is another request, or disagrees with its columns); the message
                names the shop and the request.
            PortUnavailable: the server cannot be reached.
        """
        if unstorable(shop_id, request_id):  # text PostgreSQL cannot hold names nothing stored
            raise NotFound(shop_id=shop_id, request_id=request_id)
        rows = self._read(_SQL.get_request, (shop_id, request_id))
        if not rows:
            raise NotFound(shop_id=shop_id, request_id=request_id)
        return _sql.request_of(_DRIVER, shop_id, request_id, rows[0])

    def idempotency_record(self, shop_id: str, key: str) -> IdempotencyRecord | None:
        """The record stored under ``key`` in this shop, or ``None``.

        Raises:
            PortRejected: the stored record cannot be read back (a damaged row); the message
                names the shop, the key and the request.
            PortUnavailable: the server cannot be reached.
        """
        if unstorable(shop_id, key):
            return None
        rows = self._read(_SQL.get_record, (shop_id, key))
        return _sql.record_of(_DRIVER, shop_id, key, rows[0]) if rows else None

    def outbox(self, shop_id: str, request_id: str) -> Sequence[OutboxEntry]:
        """Every outbox entry of one request, in the order they were queued.

        An entry whose row cannot be read back (a damaged row) is left out and logged as an
        error with its ids, so that the request's other entries stay readable.

        Raises:
            PortUnavailable: the server cannot be reached.
        """
        if unstorable(shop_id, request_id):
            return ()
        rows = self._read(_SQL.list_outbox, (shop_id, request_id))
        return _sql.entries_of(_DRIVER, rows, _log)

    def query(self, shop_id: str, query: Query) -> Page:
        """List requests of one shop, oldest first, by ``(created_at, id)``.

        Pages are found by keyset (the cursor is the last position shown), never by offset,
        through indexes on ``(shop_id, status, created_at, id)``: a page costs the same however
        long the shop's history. A ``where`` predicate (and, for now, a rule ``condition``)
        runs in Python after the indexed filters, on batches of rows; one that refuses many
        rows can yield a short page with a cursor: keep paging until ``next_cursor`` is
        ``None``.

        A row that cannot be read back (a damaged row) is left out of the page and logged as
        an error naming the shop and the request, so that one damaged row never makes a tab
        unreadable; ``get`` of that request raises.

        Raises:
            InvalidInput: the cursor is not one this store handed out, or a bound is naive.
            PortUnavailable: the server cannot be reached.
        """
        after: _At | None = decode_cursor(query.cursor) if query.cursor is not None else None
        listing = _Listing.of(shop_id, query)
        if listing.empty or unstorable(shop_id, *(after or ())):
            return Page((), None)
        if query.condition is not None:
            # Imported here: it reads the rule language, which a store without filters never
            # needs to load. Matches are confirmed in Python as on SQLite.
            from retouraanvraag.adapters._sql_filter import compile_filter  # noqa: PLC0415

            compiled = compile_filter(query.condition, Dialect.POSTGRES)
            if compiled is not None:
                return self._filtered(listing, compiled, query, after)

        def fetch(at: _At | None, limit: int) -> list[_sql.Fetched[_At]]:
            # Each batch is its own statement: the host's predicate never runs inside a
            # transaction, and keyset positions make consecutive batches line up anyway.
            return _fetched(self._read(*listing.select(at, limit)))

        return _sql.scanned_page(
            _DRIVER,
            fetch,
            query,
            shop_id=shop_id,
            after=after,
            budget=_SCAN_BUDGET,
            batch=_BATCH,
            log=_log,
        )

    def count(self, shop_id: str, query: Query) -> int:
        """How many requests every page of ``query`` lists together (see ``Storage.count``).

        One ``count(*)`` over the listing's index ranges, the rule condition as SQL on the facts.

        Raises:
            InvalidInput: a ``where`` predicate, a condition naming a host field, or a naive
                bound.
            PortUnavailable: the server cannot be reached.
        """
        listing = _Listing.of(shop_id, query)
        compiled = None
        if query.condition is not None:
            from retouraanvraag.adapters._sql_filter import compile_filter  # noqa: PLC0415

            compiled = compile_filter(query.condition, Dialect.POSTGRES)
        exact = None if query.condition is None else bool(compiled and compiled.exact)
        uncountable(query, exact=exact)
        if listing.empty or unstorable(shop_id):
            return 0
        if compiled is not None:
            listing = listing.where(sql.SQL(compiled.sql), *compiled.params)
        where, params = listing.range(None, None)
        if listing.statuses is not None:
            where = sql.SQL("{where} AND status = ANY(%s)").format(where=where)
            params.append(list(listing.statuses))
        statement = sql.SQL("SELECT count(*) FROM requests WHERE {where}").format(where=where)
        rows = self._read(statement, tuple(params))
        return int(rows[0][0])

    def _filtered(
        self, listing: _Listing, compiled: SqlFilter, query: Query, after: _At | None
    ) -> Page:
        """A page whose rule condition runs as SQL, over bounded windows (as on SQLite).

        Each round finds the end of the next window of the listing on the index alone, then
        fetches the matches inside it (two statements).
        """
        matching = listing.where(sql.SQL(compiled.sql), *compiled.params)

        def window(
            at: _At | None, size: int, limit: int
        ) -> tuple[_At | None, list[_sql.Fetched[_At]]]:
            until = self._window_end(listing, at, size)
            bounded = matching
            if until is not None:
                bounded = matching.where(
                    sql.SQL("(created_at, id) <= (%s, %s)"), _instant(until[0]), until[1]
                )
            return until, _fetched(self._read(*_matches(bounded, at, limit)))

        return _sql.filtered_page(
            _DRIVER,
            window,
            query,
            shop_id=listing.shop_id,
            after=after,
            rows=scan_budget(reads_items=compiled.reads_items),
            decoded=_SCAN_BUDGET,
            log=_log,
        )

    def _window_end(self, listing: _Listing, after: _At | None, size: int) -> _At | None:
        """The earliest of each status's ``size``-th position after ``after`` (``None``: none)."""
        ends: list[tuple[dt.datetime, str]] = []
        for status in (None,) if listing.statuses is None else listing.statuses:
            where, params = listing.range(after, status)
            statement = sql.SQL(
                "SELECT id, created_at FROM requests WHERE {where} "
                "ORDER BY created_at, id OFFSET %s LIMIT 1"
            ).format(where=where)
            rows = self._read(statement, (*params, size - 1))
            if rows:
                ends.append((rows[0][1], rows[0][0]))
        return min(ends) if ends else None

    # -- writes -----------------------------------------------------------------------------

    def commit(self, commit: Commit) -> ReturnRequest:
        """Apply ``commit`` atomically, in one transaction at READ COMMITTED.

        The request's row is locked first (``SELECT … FOR UPDATE``), so the compare-and-set on
        its version holds until the transaction ends.

        Raises:
            IdempotencyKeyTaken: the idempotency key is recorded already.
            LeaseLost: the settled entry is not leased to ``settle.owner``.
            ConcurrentModification: a lost compare-and-set, or an existing id for a new request.
            NotFound: ``expected_version`` is set but the request does not exist in this shop.
            PortRejected: the request's refunds exceed its paid fee, or the commit changes
                the paid fee (amount, currency or payment reference; the database's
                ``money_cap`` constraint and ``fee_fixed`` trigger stand behind the check on
                the amount), or a row the commit must read is damaged; nothing was changed.
            InvalidInput: the commit is malformed, or a ``revive`` key is not a dead entry of
                the request.
            PortUnavailable: the server cannot be reached, or stayed in conflict; nothing was
                changed, except when the message says the connection was lost while
                committing: then the change may or may not be saved.
        """
        # Everything that costs time is prepared before the row lock is taken.
        write = _sql.prepare(_DRIVER, commit)
        saved = write.saved

        def run(connection: _Connection) -> None:
            lookups = _sql.Lookups(_DRIVER, connection, saved.shop_id, saved.id)
            plan = plan_commit(commit, lookups, saved)
            _sql.write_plan(_DRIVER, connection, commit, plan, write)

        self._run(run, keyed=True)
        return saved

    def settle(self, shop_id: str, settlement: Settlement) -> None:
        """Settle a leased outbox entry without touching its request.

        Raises:
            LeaseLost: the entry is not pending and leased to ``settlement.owner``.
            PortRejected: the entry's row cannot be read back (a damaged row).
            InvalidInput: a naive ``retry_at``, or an error text PostgreSQL cannot hold (a NUL
                character or a lone surrogate).
            PortUnavailable: the server cannot be reached; nothing was changed, except when
                the message says the connection was lost while committing.
        """
        check_settlement(settlement)  # refuses an error text no store can hold, too
        if unstorable(shop_id, settlement.key, settlement.owner):
            raise LeaseLost(request_id="?", key=settlement.key, owner=settlement.owner)
        self._run(lambda connection: _sql.settle(_DRIVER, connection, shop_id, settlement))

    def claim(
        self, *, owner: str, now: dt.datetime, lease: dt.timedelta, limit: int
    ) -> Sequence[OutboxEntry]:
        """Lease up to ``limit`` pending entries that are due and not leased, oldest first.

        Rows are taken with ``FOR UPDATE SKIP LOCKED``: a row another worker is claiming or
        settling right now is passed over, never waited for, so that workers on many hosts
        share the outbox without queueing on each other.

        A row that cannot be read back (a damaged row) is not handed out: it is marked dead in
        the same transaction, with ``last_error`` ``"corrupt outbox row: …"``, its request (if
        that row reads back) is marked as needing attention, it is logged as an error, and the
        next due entry takes its place. One bad row never blocks the queue.

        Raises:
            InvalidInput: ``now`` is naive, ``lease`` is not positive or ends past the latest
                time Python holds, ``limit`` negative, or the owner empty (or holding a NUL
                character or a lone surrogate).
            PortUnavailable: the server cannot be reached.
        """
        check_claim(owner=owner, now=now, lease=lease, limit=limit)
        if limit == 0:  # nothing to claim: no connection is taken
            return ()
        limit = min(limit, _MOST_ROWS)  # no more rows than a bigint counts: all of them
        return _sql.claim(
            _DRIVER, self._run, owner=owner, now=now, lease=lease, limit=limit, log=_log
        )

    # -- connections and transactions -------------------------------------------------------

    def _connections(self) -> psycopg_pool.ConnectionPool[_Connection]:
        with self._lock:
            if self._closed:
                raise PortRejected(f"storage on {self._where} is closed")
            if self._pid != os.getpid():
                self._pid = os.getpid()
                if self._pool is not None:
                    self._inherited.append(self._pool)
                self._pool = None
            if self._pool is None:
                self._pool = self._open_pool()
            return self._pool

    def _open_pool(self) -> psycopg_pool.ConnectionPool[_Connection]:
        min_size, max_size = self._sizes
        pool: psycopg_pool.ConnectionPool[_Connection] = psycopg_pool.ConnectionPool(
            self._conninfo,
            min_size=min_size,
            max_size=max_size,
            kwargs={"autocommit": True},
            configure=_configure,
            timeout=self._timeout,
            open=False,
            name=f"retouraanvraag {self._where}",
        )
        try:
            pool.open(wait=min_size > 0, timeout=self._timeout)
        except psycopg_pool.PoolTimeout as exc:
            pool.close(timeout=0)
            raise PortUnavailable(
                f"{self._where}: no connection within {self._timeout} s ({_reason(exc)})"
            ) from exc
        return pool

    def _read(
        self, statement: str | sql.Composed, params: Sequence[object]
    ) -> list[tuple[Any, ...]]:
        """The rows of one statement run on its own; retried if the connection is dead."""
        return self._attempt(lambda connection: connection.execute(statement, params).fetchall())

    def _run(self, work: Callable[[_Connection], _T], *, keyed: bool = False) -> _T:
        """``work`` in one transaction at READ COMMITTED, retried on conflicts and dead links.

        ``keyed``: ``work`` is a commit, which a retry with its idempotency key settles.
        """
        return self._attempt(lambda connection: _transaction(connection, work), keyed=keyed)

    def _attempt(self, call: Callable[[_Connection], _T], *, keyed: bool = False) -> _T:
        """Run ``call`` on a pooled connection; retry what is safe to; translate the rest.

        A translated driver error is raised outside its ``except``, so that the port error
        holds no trace of it: the driver's ``DETAIL`` may quote a row, customer data and all.
        """
        deadline = time.monotonic() + self._timeout
        backoff = 0.001
        for attempt in range(1, _ATTEMPTS + 1):
            pool = self._connections()
            refusal: Exception | None = None
            try:
                with pool.connection(timeout=max(deadline - time.monotonic(), 0.001)) as link:
                    try:
                        return call(link)
                    except psycopg.OperationalError as exc:
                        if not link.broken or isinstance(exc, _OutcomeUnknown):
                            raise
                        # A dead connection (a failover, a restart): nothing was committed.
                        # Have the pool test the others before the next try.
                        raise _LinkLost from exc
            except _LinkLost as lost:
                failure: psycopg.Error = lost.__cause__  # type: ignore[assignment]
                pool.check()
            except _RETRIED as exc:
                failure = exc
            except psycopg_pool.PoolTimeout as exc:
                raise PortUnavailable(
                    f"{self._where}: no free connection within {self._timeout} s"
                ) from exc
            except (psycopg.Error, UnicodeEncodeError) as exc:
                refusal = _port_error(exc, self._where, keyed=keyed)
            if refusal is not None:
                raise refusal
            if attempt == _ATTEMPTS or time.monotonic() >= deadline:
                break
            # Jitter keeps several workers from retrying in lockstep.
            time.sleep(backoff * random.uniform(0.5, 1.0))  # noqa: S311 - not a secret
            backoff = min(backoff * 2, _MAX_BACKOFF)
        raise PortUnavailable(
            f"{self._where}: gave up after {attempt} tries (SQLSTATE {failure.sqlstate or '-'}: "
            f"{_reason(failure)})"
        ) from None


def _configure(connection: _Connection) -> None:
    """A new connection talks as the store reads, whatever the server, database or role sets.

    Times in UTC (in another zone an instant near the end of year 9999 would read as year
    10000, which Python cannot hold), written in ISO style (the driver reads no other), and
    text in UTF-8.
    """
    connection.execute("SET TIME ZONE 'UTC'")
    connection.execute("SET DateStyle TO ISO")
    connection.execute("SET IntervalStyle TO postgres")
    connection.execute("SET client_encoding TO 'UTF8'")


class _LinkLost(Exception):
    """A connection found dead before anything was committed: safe to try again."""


class _OutcomeUnknown(psycopg.OperationalError):
    """The connection died while ``COMMIT`` was on its way: saved or not, nobody here knows."""


def _transaction(connection: _Connection, work: Callable[[_Connection], _T]) -> _T:
    """``work`` between ``BEGIN`` and ``COMMIT``; rolled back if it raises."""
    connection.execute("BEGIN ISOLATION LEVEL READ COMMITTED")
    try:
        result = work(connection)
    except BaseException:
        if not connection.broken:
            try:
                connection.execute("ROLLBACK")
            except psycopg.Error:
                _log.debug("rollback failed on %s", connection.info.host, exc_info=True)
        raise
    try:
        connection.execute("COMMIT")
    except psycopg.OperationalError as exc:
        if connection.broken:
            raise _OutcomeUnknown(str(exc)) from exc
        raise
    return result


def _reason(exc: BaseException) -> str:
    """An error's first line, for a message (a driver's may run over several)."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _port_error(exc: psycopg.Error | UnicodeEncodeError, where: str, *, keyed: bool) -> Exception:
    """The port error for what a call met that is not retried (``keyed``: in a commit)."""
    if isinstance(exc, UnicodeEncodeError):  # the driver met a lone surrogate in a parameter
        return InvalidInput(
            "holds a lone surrogate, which is not Unicode text: PostgreSQL cannot store it"
        )
    if isinstance(exc, _OutcomeUnknown):
        advice = ": retry the command with the same idempotency key to find out" if keyed else ""
        return PortUnavailable(
            f"{where}: the connection was lost while committing ({_reason(exc)}); "
            f"the change may or may not be saved{advice}"
        )
    return _translated(exc, where)


def _translated(exc: psycopg.Error, where: str) -> Exception:
    """The port error for a driver error that is not retried.

    Only the error's first line and its SQLSTATE are kept: the driver's further lines
    (``DETAIL``) may quote a row, customer data and all.
    """
    state = exc.sqlstate or ""
    if isinstance(exc, psycopg.DataError) and "NUL" in str(exc):
        return InvalidInput("contains a NUL character, which PostgreSQL text cannot hold")
    # 22P05: a character the database cannot hold; class 54, program limit exceeded: a key
    # too long for its index, say. Both are the input's doing: no retry changes them.
    if isinstance(exc, pg_errors.UntranslatableCharacter) or state.startswith("54"):
        what = "is too large" if state.startswith("54") else "holds a character"
        return InvalidInput(f"{what} PostgreSQL cannot store (SQLSTATE {state}: {_reason(exc)})")
    if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
        # Timeouts, cancelled statements, a lock not available, too many connections.
        return PortUnavailable(f"{where}: {_reason(exc)}")
    if isinstance(exc, pg_errors.ReadOnlySqlTransaction):
        # A standby after a failover, whatever statement met it first: the primary may be back.
        return PortUnavailable(f"{where} is read-only: {_reason(exc)}")
    if isinstance(exc, psycopg.IntegrityError):
        return PortRejected(f"{where} refused a change: {_reason(exc)}")
    return PortRejected(f"{where}: {_reason(exc)}")


def _refused(exc: pg_errors.CheckViolation, request_id: str, paid: int, refunded: int) -> Exception:
    """The port error for a constraint the database enforced, never the driver's own error.

    The driver's error stays out of it: its ``DETAIL`` quotes the failing row, body and all.
    """
    constraint = exc.diag.constraint_name
    if constraint == "money_cap":
        return money_cap_error(request_id, paid, refunded)
    if constraint == "fee_fixed":
        return fee_fixed_error(request_id)
    return PortRejected(
        f"request {request_id}: the database refused the change (constraint "
        f"{constraint or '?'}, SQLSTATE {exc.sqlstate or '?'})"
    )


def describe(conninfo: str) -> str:
    """Where ``conninfo`` points, for messages: ``PostgreSQL host:port/database``, no password.

    Raises:
        InvalidInput: ``conninfo`` is not a connection string libpq can read.
    """
    try:
        parts = conninfo_to_dict(conninfo)
    except psycopg.ProgrammingError:
        raise InvalidInput(
            "is not a PostgreSQL connection string or postgresql:// URL", field="conninfo"
        ) from None
    host = str(parts.get("host") or "localhost")
    port = str(parts.get("port") or "5432")
    database = str(parts.get("dbname") or parts.get("user") or "")
    return f"PostgreSQL {host}:{port}/{database}"


# -- the schema's versions ---------------------------------------------------------------------


def _schema(connection: _Connection, where: str, *, apply: bool) -> tuple[int, int]:
    """Bring the schema up to date (``apply``) or check it; ``(version before, after)``.

    The tables are ``current_schema()``'s: the first schema of the ``search_path`` that
    exists. A table of the same name in a later schema of the path is never taken for them.

    Raises:
        PortRejected: the database is not encoded in UTF8, no schema of the ``search_path``
            exists, or the schema is newer than this code, or older and ``apply`` is false.
    """
    found = connection.execute(
        "SELECT current_setting('server_encoding'), current_schema()"
    ).fetchone()
    encoding, schema = found if found is not None else (None, None)
    if encoding != "UTF8":
        raise PortRejected(
            f"{where} is encoded in {encoding}, not UTF8: it cannot hold every text a request "
            "may hold; use a database created with ENCODING 'UTF8'"
        )
    if schema is None:
        raise PortRejected(
            f"{where}: no schema of the connection's search_path exists, so there is nowhere "
            "to put the tables; create the schema first"
        )
    before = _applied(connection, schema)
    if before == SCHEMA_VERSION:
        return before, before
    if before > SCHEMA_VERSION:
        raise _newer(where, before)
    if not apply:
        raise PortRejected(
            f"{where} has schema version {before}, not the {SCHEMA_VERSION} this version of "
            "retouraanvraag writes; run `retouraanvraag db migrate` (or open with migrate=True)"
        )
    # One migrator at a time per schema; the others wait here and then find nothing to do.
    connection.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended("
        "'retouraanvraag schema ' || coalesce(current_schema(), ''), 0))"
    )
    connection.execute(_VERSIONS_TABLE)
    current = _applied(connection, schema)
    if current > SCHEMA_VERSION:
        raise _newer(where, current)
    for migration in _MIGRATIONS:
        if migration.version > current:
            for statement in migration.statements:
                connection.execute(statement)
            connection.execute(
                "INSERT INTO retouraanvraag_schema (version, description) VALUES (%s, %s)",
                (migration.version, migration.description),
            )
    return before, SCHEMA_VERSION


def _applied(connection: _Connection, schema: str) -> int:
    """The newest migration recorded in ``schema`` (0 when its table is missing there)."""
    table = sql.Identifier(schema, "retouraanvraag_schema")
    exists = connection.execute(
        "SELECT to_regclass(%s) IS NOT NULL", (table.as_string(connection),)
    ).fetchone()
    if not exists or not exists[0]:
        return 0
    row = connection.execute(
        sql.SQL("SELECT max(version) FROM {table}").format(table=table)
    ).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def _newer(where: str, version: int) -> PortRejected:
    return PortRejected(
        f"{where} has schema version {version}, newer than the {SCHEMA_VERSION} this version "
        "of retouraanvraag knows; upgrade the library"
    )


def migrate(conninfo: str, *, timeout: float = 5.0) -> tuple[int, int]:
    """Create the schema, or bring it up to date: what ``retouraanvraag db migrate`` does.

    Args:
        conninfo: a libpq connection string or ``postgresql://`` URL; the tables go into the
            first schema of its ``search_path`` that exists (``current_schema()``).
        timeout: seconds to wait for the connection.

    Returns:
        The schema version before (0: there was none) and after.

    Raises:
        InvalidInput: ``conninfo`` is not a connection string.
        PortRejected: the schema is newer than this code, the database refuses a change, is
            not encoded in UTF8, or no schema of the ``search_path`` exists.
        PortUnavailable: the server cannot be reached.
    """
    where = describe(conninfo)
    try:
        link = psycopg.connect(conninfo, autocommit=True, connect_timeout=max(int(timeout), 1))
        with link:
            _configure(link)
            return _transaction(link, lambda connection: _schema(connection, where, apply=True))
    except (PortRejected, PortUnavailable):
        raise
    except psycopg.Error as exc:
        refusal = _translated(exc, where)
    raise refusal  # outside the except: no trace of the driver's error (and its DETAIL)


# -- rows ----------------------------------------------------------------------------------
#
# The database enforces each column's type, so what can be damaged is what it cannot check:
# a body that is not a request, is another request, or disagrees with its columns; an effect
# that is not its row's. Such a row raises ``DamagedRow`` naming it, never a raw error.

#: A listing position: ``(created_at, id)`` as a row holds it, or as a cursor does (the time
#: as text).
_At = tuple[dt.datetime | str, str]


def _instant(value: dt.datetime | str) -> dt.datetime:
    """A position's time, as its column compares: a cursor's text is read back."""
    return value if isinstance(value, dt.datetime) else from_timestamp(value)


def _fetched(rows: Sequence[Sequence[Any]]) -> list[_sql.Fetched[_At]]:
    """Listed rows (``rid, at`` and the request's columns) as the listings read them."""
    return [((row[1], row[0]), row[2:]) for row in rows]


def _column_values(request: ReturnRequest) -> tuple[int, str, dt.datetime, bool, int, int]:
    """What a request row holds beside its body, in ``_sql.COLUMN_NAMES`` order.

    Raises:
        PortRejected: a refund in another currency than the paid fee.
        InvalidInput: a creation time that cannot be expressed in UTC.
    """
    paid, refunded = refund_totals(request)
    created = from_timestamp(timestamp(request.created_at, field="created_at"))
    return (
        request.version,
        request.status.value,
        created,
        request.needs_attention,
        paid,
        refunded,
    )


class _Postgres:
    """PostgreSQL's side of the shared SQL (:class:`~retouraanvraag.adapters._sql.Driver`).

    The column types hold what the store writes (text, counts, ``state`` among the known
    ones, ``timestamptz`` within what Python can read back), so values are taken as they
    come. Times are aware datetimes, read back in UTC; flags are booleans. A set of keys binds
    as one array; many parameter rows go in one ``executemany``.
    """

    sql: Final = _sql.POSTGRES

    def text(self, value: object, column: str) -> str:  # noqa: ARG002 - typed by its column
        return cast("str", value)

    def name(self, value: object, column: str) -> str:  # noqa: ARG002 - typed by its column
        return cast("str", value)

    def count(self, value: object, column: str) -> int:  # noqa: ARG002 - typed by its column
        return cast("int", value)

    def moment(self, value: object, column: str) -> dt.datetime | None:  # noqa: ARG002
        return None if value is None else cast("dt.datetime", value).astimezone(dt.UTC)

    def state(self, value: object) -> EffectState:
        return EffectState(cast("str", value))

    def disagreement(self, columns: Sequence[object], request: ReturnRequest) -> str | None:
        """The first column that is not what a commit of ``request`` writes there, if any."""
        try:
            expected = _column_values(request)
        except (PortRejected, InvalidInput) as exc:
            return f"the body cannot be stored as it is: {exc}"
        if tuple(columns) == expected:
            return None
        for name, value, wanted in zip(_sql.COLUMN_NAMES, columns, expected, strict=True):
            if value != wanted:
                return f"column {name} disagrees with the body"
        return None  # pragma: no cover - the tuples differ, so some column does

    def stored(
        self, shop_id: str, request_id: str, found: Sequence[Any]
    ) -> tuple[int, int, str | bytes | None]:
        del shop_id, request_id  # the column types hold the version and the fee
        return int(found[0]), int(found[1]), found[2]

    def columns(self, request: ReturnRequest) -> tuple[int, str, object, object, int, int]:
        return _column_values(request)

    def time(self, moment: dt.datetime | None, field: str) -> object:  # noqa: ARG002
        return moment

    def position(self, at: _At) -> Position:
        moment = at[0]
        if isinstance(moment, dt.datetime):
            return timestamp(moment, field="created_at"), at[1]
        return moment, at[1]

    def resumable(self, at: _At) -> bool:  # noqa: ARG002 - every position the types admit
        return True

    def each(
        self, connection: _Connection, statement: str, rows: Sequence[Sequence[object]]
    ) -> None:
        if rows:
            with connection.cursor() as cursor:
                cursor.executemany(statement, rows)

    def keyed(
        self,
        connection: _Connection,
        statement: str,
        fixed: tuple[object, ...],
        keys: Iterable[object],
    ) -> None:
        values = list(keys)
        if values:
            connection.execute(statement, (*fixed, values))

    def save(self, connection: _Connection, write: _sql.Prepared, *, stored: bool) -> None:
        saved, refusal = write.saved, None
        try:
            if stored:
                connection.execute(self.sql.update_request, write.row)
            elif connection.execute(self.sql.insert_request, write.row).rowcount != 1:
                actual = _version(connection, saved.shop_id, saved.id)
                raise ConcurrentModification(request_id=saved.id, expected=None, actual=actual)
        except pg_errors.CheckViolation as exc:
            refusal = _refused(exc, saved.id, *write.totals)
        if refusal is not None:  # raised here, so that it holds no trace of the driver's error
            raise refusal


_DRIVER: Final = _Postgres()
_SQL: Final = _DRIVER.sql


def _version(connection: _Connection, shop_id: str, request_id: str) -> int | None:
    row = connection.execute(
        "SELECT version FROM requests WHERE shop_id = %s AND id = %s", (shop_id, request_id)
    ).fetchone()
    return None if row is None else int(row[0])


# -- listings ----------------------------------------------------------------------------------


@attrs.frozen
class _Listing:
    """The SQL for one query's pages: a range scan per status, merged in listing order.

    ``conditions`` are ANDed into every scan, each a :mod:`psycopg.sql` fragment with its
    parameters (bound, never interpolated): the indexed filters of :class:`Query`, and any
    further filter that compiles to SQL.
    """

    shop_id: str
    statuses: tuple[str, ...] | None
    conditions: tuple[tuple[sql.Composable, tuple[object, ...]], ...] = ()

    @classmethod
    def of(cls, shop_id: str, query: Query) -> _Listing:
        """The listing of ``query``'s indexed filters.

        Raises:
            InvalidInput: a naive bound.
        """
        listing = cls(shop_id, None if query.statuses is None else tuple(sorted(query.statuses)))
        if query.created_from is not None:
            moment = timestamp(query.created_from, field="created_from")
            listing = listing.where(sql.SQL("created_at >= %s"), from_timestamp(moment))
        if query.created_before is not None:
            moment = timestamp(query.created_before, field="created_before")
            listing = listing.where(sql.SQL("created_at < %s"), from_timestamp(moment))
        if query.needs_attention is not None:
            # A literal, not a parameter, so that the partial index can serve it.
            flag = "needs_attention" if query.needs_attention else "NOT needs_attention"
            listing = listing.where(sql.SQL(flag))
        return listing

    @property
    def empty(self) -> bool:
        """Whether no row can match (an empty set of statuses)."""
        return self.statuses == ()

    def where(self, condition: sql.Composable, *params: object) -> _Listing:
        """This listing with one more condition on the rows, its parameters bound."""
        return attrs.evolve(self, conditions=(*self.conditions, (condition, params)))

    def range(self, after: _At | None, status: str | None) -> tuple[sql.Composable, list[object]]:
        """The ``WHERE`` of one status's index range (every status: ``None``) after ``after``."""
        parts: list[sql.Composable] = [sql.SQL("shop_id = %s")]
        params: list[object] = [self.shop_id]
        for condition, bound in self.conditions:
            parts.append(condition)
            params.extend(bound)
        if status is not None:
            parts.append(sql.SQL("status = %s"))
            params.append(status)
        if after is not None:
            parts.append(sql.SQL("(created_at, id) > (%s, %s)"))
            params.extend((_instant(after[0]), after[1]))
        return sql.SQL(" AND ").join(parts), params

    def arms(
        self, after: _At | None, columns: str, limit: int
    ) -> tuple[list[sql.Composed], list[object]]:
        """A statement a status's range: ``columns`` of its first ``limit`` rows after ``after``.

        Each status is its own index range in (created_at, id) order; merging the first
        ``limit`` of each (``UNION ALL``) touches nothing outside the listed statuses.
        """
        arms: list[sql.Composed] = []
        params: list[object] = []
        for status in (None,) if self.statuses is None else self.statuses:
            where, values = self.range(after, status)
            arms.append(
                sql.SQL(
                    "SELECT {columns} FROM requests WHERE {where} ORDER BY created_at, id LIMIT %s"
                ).format(columns=sql.SQL(columns), where=where)
            )
            params += [*values, limit]
        return arms, params

    def select(self, after: _At | None, limit: int) -> tuple[sql.Composed, tuple[object, ...]]:
        """The statement for up to ``limit`` rows after ``after``, with its parameters.

        Each row is the request's id, its creation time and then its request columns.
        """
        columns = f"id AS rid, created_at AS at, {_SQL.request_columns}"
        arms, params = self.arms(after, columns, limit)
        if len(arms) == 1:
            return arms[0], tuple(params)
        statement = sql.SQL("{arms} ORDER BY at, rid LIMIT %s").format(arms=_union(arms))
        return statement, (*params, limit)


def _union(arms: Sequence[sql.Composable]) -> sql.Composed:
    return sql.SQL(" UNION ALL ").join(sql.SQL("({arm})").format(arm=arm) for arm in arms)


def _matches(
    listing: _Listing, after: _At | None, limit: int
) -> tuple[sql.Composed, tuple[object, ...]]:
    """The first ``limit`` rows of ``listing``: positions found first, bodies fetched after.

    The positions come from the index with the facts beside them (an index-only scan where
    the condition reads small facts), so only the matches' bodies are read from the table.
    """
    arms, params = listing.arms(after, "id AS rid, created_at AS at", limit)
    statement = sql.SQL(
        "SELECT m.rid, m.at, {columns} FROM "
        "(SELECT * FROM ({arms}) AS u ORDER BY at, rid LIMIT %s) AS m "
        "JOIN requests ON requests.shop_id = %s AND requests.id = m.rid ORDER BY m.at, m.rid"
    ).format(columns=sql.SQL(_SQL.request_columns), arms=_union(arms))
    return statement, (*params, limit, listing.shop_id)
