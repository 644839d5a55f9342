"""What the two SQL stores share, written once: their statements, row decoders and loops.

:mod:`~retouraanvraag.adapters.sqlite` and :mod:`~retouraanvraag.adapters.postgres` keep the
same tables and apply the same commit plan (:func:`~retouraanvraag.adapters._common.plan_commit`).
What differs in the SQL they speak — placeholders, casts to ``jsonb``, the literal for true, row
locks, reading the stored fee out of the body — is a :class:`SqlDialect`, from which
:class:`Statements` writes every statement both stores run. What differs in how values come
back and how a statement runs for many rows is each store's :class:`Driver`. On these, this
module decodes rows (requests, outbox entries, idempotency records), flags and settles
entries, claims the outbox, writes a commit's plan, and pages listings.

Transactions, locking, retries, error translation, migrations and connections are each
store's own: there the databases truly differ.
"""

# Every statement here is built, once, from column names and placeholders: no value reaches
# SQL text but through a bound parameter.
# ruff: noqa: S608

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Final, Protocol, TypeVar

import attrs

from retouraanvraag._codec import (
    effect_from_json,
    effect_to_json,
    request_from_json,
    request_to_json,
)
from retouraanvraag.adapters._common import (
    DamagedRow,
    Position,
    check_claim,
    damaged_entry,
    damaged_record,
    damaged_request,
    effect_problem,
    encode_cursor,
    flagged,
    from_timestamp,
    holds_lease,
    key_taken,
    log_damage,
    page_of,
    prepared,
    readable,
    record_problem,
    request_problem,
    set_aside_error,
    settle_entry,
    stored_fee,
    timestamp,
)
from retouraanvraag.adapters._facts import (
    FACT_COLUMNS,
    FIRST_WINDOW,
    Dialect,
    fact_placeholders,
    fact_values,
    next_window,
)
from retouraanvraag.errors import LeaseLost
from retouraanvraag.model import PaidFee, ReturnRequest
from retouraanvraag.ports import (
    Commit,
    EffectState,
    IdempotencyRecord,
    OutboxEntry,
    Page,
    Settlement,
)

if TYPE_CHECKING:
    import logging

    from retouraanvraag.adapters._common import CommitPlan
    from retouraanvraag.ports import Query

__all__ = [
    "COLUMN_NAMES",
    "POSTGRES",
    "POSTGRES_DIALECT",
    "SQLITE",
    "SQLITE_DIALECT",
    "Connection",
    "Cursor",
    "Driver",
    "Fetched",
    "Lookups",
    "Prepared",
    "SqlDialect",
    "Statements",
    "both",
    "claim",
    "entries_of",
    "entry_of",
    "filtered_page",
    "prepare",
    "record_of",
    "request_of",
    "scanned_page",
    "settle",
    "write_plan",
]


# -- the dialects -----------------------------------------------------------------------------


@attrs.frozen
class SqlDialect:
    """The words in which one database's SQL differs from the other's, for the same statement.

    Attributes:
        facts: the dialect of the fact columns (:mod:`retouraanvraag.adapters._facts`).
        param: a bound parameter's placeholder.
        json_param: the placeholder of a parameter written to a JSON column.
        json_text: what reads a JSON column back as text (appended to its name).
        true: the literal for a true flag.
        row_lock: what locks the rows a commit reads until its transaction ends (appended).
        claim_lock: what locks the rows a claim takes, passing over rows others hold.
        arrays: whether a set of keys binds as one array (``= ANY(…)``), or the statement
            runs once a key.
        inserts_may_meet: whether an insert the plan allowed may still meet a row that a
            concurrent commit inserted: it then does nothing, and the store counts the rows.
        stored_fee: the select list that reads a stored row's fee, after its version and
            ``fee_paid_minor``, for :meth:`Driver.stored`.
        unwritten_times: SQL that holds for an outbox row whose times the store did not
            write (a claim takes it, to set it aside), or ``None`` when the column types
            keep out every other time.
    """

    facts: Dialect
    param: str
    json_param: str
    json_text: str
    true: str
    row_lock: str
    claim_lock: str
    arrays: bool
    inserts_may_meet: bool
    stored_fee: str
    unwritten_times: str | None

    def keyed(self, column: str) -> str:
        """SQL matching ``column`` to a set of keys bound as one parameter (or one key)."""
        return f"{column} = ANY({self.param})" if self.arrays else f"{column} = {self.param}"


def _written_time(column: str) -> str:
    """SQLite: ``column`` is empty or a time as :func:`~._common.timestamp` writes it.

    The shape by ``GLOB``; the date and time by a round trip through ``strftime`` (a modifier
    makes SQLite normalise, so that February 30th comes back as March 2nd, unequal).
    """
    digits = "[0-9]"
    shape = f"{digits * 4}-{digits * 2}-{digits * 2}T{digits * 2}:{digits * 2}:{digits * 2}"
    seconds = f"substr({column}, 1, 19)"
    return (
        f"({column} IS NULL OR (typeof({column}) = 'text' AND {column} GLOB '{shape}.{digits * 6}Z'"
        f" AND strftime('%Y-%m-%dT%H:%M:%S', {seconds}, '+0 seconds') IS {seconds}))"
    )


# SQLite reads the fee out of the body with its JSON functions, a parse in C that builds nothing
# for the rest of the body (its items, its history); ``kind`` is NULL when the body is no JSON
# object, and the fee's JSON text comes only for an object (a text would come unquoted).
_BODY_IS_AN_OBJECT: Final = (
    "typeof(body) = 'text' AND json_valid(body) AND json_type(body) = 'object'"
)

#: SQLite: values in the types SQLite stores (times as text, flags as 0 and 1); every
#: transaction is ``BEGIN IMMEDIATE``, so a commit's reads need no lock of their own.
SQLITE_DIALECT: Final = SqlDialect(
    facts=Dialect.SQLITE,
    param="?",
    json_param="?",
    json_text="",
    true="1",
    row_lock="",
    claim_lock="",
    arrays=False,
    inserts_may_meet=False,
    stored_fee=(
        f"CASE WHEN {_BODY_IS_AN_OBJECT} "
        "THEN coalesce(json_type(body, '$.return_fee'), 'absent') END, "
        f"CASE WHEN {_BODY_IS_AN_OBJECT} AND json_type(body, '$.return_fee') = 'object' "
        "THEN json_extract(body, '$.return_fee') END"
    ),
    # Such a time would otherwise sort as "later" for good.
    unwritten_times=f"{_written_time('available_at')} AND {_written_time('lease_until')}",
)

#: PostgreSQL: ``jsonb`` bodies, ``timestamptz`` and ``boolean`` columns; transactions at READ
#: COMMITTED, so the rows a commit decides on are locked, and claims pass over locked rows.
POSTGRES_DIALECT: Final = SqlDialect(
    facts=Dialect.POSTGRES,
    param="%s",
    json_param="%s::jsonb",
    json_text="::text",
    true="true",
    row_lock=" FOR UPDATE",
    claim_lock=" FOR UPDATE SKIP LOCKED",
    arrays=True,
    inserts_may_meet=True,
    # The paid fee whole, out of the jsonb body: only the fee is rendered and decoded.
    stored_fee="(body -> 'return_fee')::text",
    unwritten_times=None,
)


# -- the statements ---------------------------------------------------------------------------

#: The columns a request row holds beside its body, in :meth:`Driver.columns` order.
COLUMN_NAMES: Final = (
    "version",
    "status",
    "created_at",
    "needs_attention",
    "fee_paid_minor",
    "refunded_minor",
)
_FACT_NAMES: Final = tuple(name for name, _, _ in FACT_COLUMNS)


@attrs.frozen
class Statements:
    """Every statement both stores run, in one dialect: column names and placeholders only.

    Built once, when the store's module is imported: a call runs a constant text, which
    SQLite's statement cache and psycopg's prepared statements find again as it is.
    """

    dialect: SqlDialect
    #: A request row's columns, the body last (as text).
    request_columns: str
    #: An outbox row's columns, in :func:`entry_of` order.
    outbox_columns: str
    get_request: str
    lock_request: str
    get_record: str
    list_outbox: str
    get_entry: str
    entry_state: str
    key_taken: str
    stored: str
    insert_request: str
    update_request: str
    fill_facts: str
    flag_request: str
    insert_effect: str
    insert_record: str
    store_settled: str
    revive: str
    claimable: str
    lease: str
    set_aside: str

    @classmethod
    def of(cls, d: SqlDialect) -> Statements:
        """The statements in dialect ``d``."""
        p, lock = d.param, d.row_lock
        request_columns = ", ".join((*COLUMN_NAMES, f"body{d.json_text}"))
        outbox_columns = (
            f"shop_id, key, request_id, effect{d.json_text}, state, attempts, available_at, "
            "lease_owner, lease_until, last_error"
        )
        by_request = f"WHERE shop_id = {p} AND id = {p}"
        by_key = f"WHERE shop_id = {p} AND key = {p}"
        facts = fact_placeholders(d.facts).split(", ")  # one a fact column
        set_facts = ", ".join(
            f"{name} = {mark}" for name, mark in zip(_FACT_NAMES, facts, strict=True)
        )
        may_meet = " ON CONFLICT DO NOTHING" if d.inserts_may_meet else ""
        due = (
            f"(available_at IS NULL OR available_at <= {p}) "
            f"AND (lease_until IS NULL OR lease_until <= {p})"
        )
        if d.unwritten_times is not None:
            due = f"({due} OR NOT ({d.unwritten_times}))"
        released = "lease_owner = NULL, lease_until = NULL"
        return cls(
            dialect=d,
            request_columns=request_columns,
            outbox_columns=outbox_columns,
            get_request=f"SELECT {request_columns} FROM requests {by_request}",
            lock_request=f"SELECT {request_columns} FROM requests {by_request}{lock}",
            get_record=(
                f"SELECT fingerprint, request_id, result{d.json_text} FROM idempotency {by_key}"
            ),
            list_outbox=(
                f"SELECT {outbox_columns} FROM outbox "
                f"WHERE shop_id = {p} AND request_id = {p} ORDER BY seq"
            ),
            get_entry=f"SELECT {outbox_columns} FROM outbox {by_key}{lock}",
            entry_state=f"SELECT request_id, state FROM outbox {by_key}{lock}",
            key_taken=f"SELECT 1 FROM idempotency {by_key}",
            stored=(
                f"SELECT version, fee_paid_minor, {d.stored_fee} FROM requests {by_request}{lock}"
            ),
            insert_request=(
                f"INSERT INTO requests ({', '.join(COLUMN_NAMES)}, body, {', '.join(_FACT_NAMES)}, "
                f"shop_id, id) VALUES ({', '.join([p] * len(COLUMN_NAMES))}, {d.json_param}, "
                f"{', '.join(facts)}, {p}, {p}){may_meet}"
            ),
            update_request=(
                f"UPDATE requests SET {', '.join(f'{name} = {p}' for name in COLUMN_NAMES)}, "
                f"body = {d.json_param}, {set_facts} {by_request}"
            ),
            fill_facts=f"UPDATE requests SET {set_facts} {by_request}",
            flag_request=(
                f"UPDATE requests SET version = {p}, needs_attention = {d.true}, "
                f"body = {d.json_param} {by_request}"
            ),
            insert_effect=(
                "INSERT INTO outbox (shop_id, key, request_id, effect, state) "
                f"VALUES ({p}, {p}, {p}, {d.json_param}, 'pending') "
                "ON CONFLICT (shop_id, key) DO NOTHING"
            ),
            insert_record=(
                "INSERT INTO idempotency (shop_id, key, fingerprint, request_id, result) "
                f"VALUES ({p}, {p}, {p}, {p}, {d.json_param}){may_meet}"
            ),
            store_settled=(
                f"UPDATE outbox SET state = {p}, attempts = {p}, available_at = {p}, "
                f"{released}, last_error = {p} {by_key}"
            ),
            revive=(
                "UPDATE outbox SET state = 'pending', attempts = 0, available_at = NULL, "
                f"{released} WHERE shop_id = {p} AND {d.keyed('key')}"
            ),
            claimable=(
                f"SELECT seq, {outbox_columns} FROM outbox WHERE state = 'pending' AND {due} "
                f"ORDER BY seq LIMIT {p}{d.claim_lock}"
            ),
            lease=f"UPDATE outbox SET lease_owner = {p}, lease_until = {p} WHERE {d.keyed('seq')}",
            set_aside=(
                f"UPDATE outbox SET state = 'dead', {released}, last_error = {p} WHERE seq = {p}"
            ),
        )


#: The statements of :class:`~retouraanvraag.adapters.sqlite.SqliteStorage`.
SQLITE: Final = Statements.of(SQLITE_DIALECT)
#: The statements of :class:`~retouraanvraag.adapters.postgres.PostgresStorage`.
POSTGRES: Final = Statements.of(POSTGRES_DIALECT)


# -- the drivers ------------------------------------------------------------------------------


class Cursor(Protocol):
    """What a statement's result offers: both drivers' cursors have it."""

    @property
    def rowcount(self) -> int:
        """How many rows the statement changed."""
        ...

    def fetchone(self) -> Any:  # noqa: ANN401 - a row, or None
        """The next row, or ``None``."""
        ...

    def fetchall(self) -> list[Any]:
        """The rows left."""
        ...


class Connection(Protocol):
    """What the shared code asks of a connection: both drivers' connections have it."""

    def execute(self, statement: str, params: Sequence[Any], /) -> Cursor:
        """Run one statement with its parameters."""
        ...


C = TypeVar("C", bound=Connection)
#: A listing position as a store reads it back: ``(created_at, id)`` in the driver's types.
P = TypeVar("P", bound=tuple[object, object])
_C_contra = TypeVar("_C_contra", bound=Connection, contravariant=True)
_P_contra = TypeVar("_P_contra", bound=tuple[object, object], contravariant=True)

#: A listing row as fetched: its position and its request columns.
Fetched = tuple[P, Sequence[object]]


class Driver(Protocol[_C_contra, _P_contra]):
    """How one store's database hands values back and takes them, and runs statements.

    The readers take a fetched value and the column it came from: a database that enforces
    each column's type hands them back as they are; one that does not checks each one and
    raises :class:`ValueError` naming the column.
    """

    @property
    def sql(self) -> Statements:
        """The store's statements."""
        ...

    def text(self, value: object, column: str) -> str:
        """A text column."""
        ...

    def name(self, value: object, column: str) -> str:
        """An id column (text that names something)."""
        ...

    def count(self, value: object, column: str) -> int:
        """A count (never negative)."""
        ...

    def moment(self, value: object, column: str) -> dt.datetime | None:
        """A time column, as an aware UTC datetime (``None`` for NULL)."""
        ...

    def state(self, value: object) -> EffectState:
        """The ``state`` column of an outbox row."""
        ...

    def disagreement(self, columns: Sequence[object], request: ReturnRequest) -> str | None:
        """What is wrong with the first of a row's :data:`COLUMN_NAMES`, if any.

        That is: the first column a commit of ``request`` would not have written so.
        """
        ...

    def stored(
        self, shop_id: str, request_id: str, found: Sequence[object]
    ) -> tuple[int, int, str | bytes | None]:
        """A :attr:`Statements.stored` row's version, paid fee (minor units) and fee JSON.

        Raises:
            DamagedRow: the version or the fee column is not what the store writes.
        """
        ...

    def columns(self, request: ReturnRequest) -> tuple[int, str, object, object, int, int]:
        """What a commit writes in :data:`COLUMN_NAMES` for ``request``.

        Raises:
            PortRejected: a refund in another currency than the paid fee.
            InvalidInput: a creation time that cannot be expressed in UTC.
        """
        ...

    def time(self, moment: dt.datetime | None, field: str) -> object:
        """A time (checked aware) as its column takes it."""
        ...

    def position(self, at: _P_contra) -> Position:
        """Where a listed row stands, as a cursor holds it (for rows that decoded)."""
        ...

    def resumable(self, at: _P_contra) -> bool:
        """Whether a fetched position can stand in a cursor (a damaged row's may not)."""
        ...

    def each(self, connection: _C_contra, statement: str, rows: Sequence[Sequence[object]]) -> None:
        """Run ``statement`` once for each parameter row."""
        ...

    def keyed(
        self,
        connection: _C_contra,
        statement: str,
        fixed: tuple[object, ...],
        keys: Iterable[object],
    ) -> None:
        """Run ``statement`` (ending in :meth:`SqlDialect.keyed`) for ``keys``."""
        ...

    def save(self, connection: _C_contra, write: Prepared, *, stored: bool) -> None:
        """Update (``stored``) or insert the request's row.

        Raises:
            ConcurrentModification: a concurrent commit inserted the id first.
            PortRejected: the schema's own constraints refused it (the money cap, the fixed
                fee), a second line behind the commit plan's checks.
        """
        ...


# -- rows -------------------------------------------------------------------------------------
#
# A row that is not what ``commit`` wrote raises ``DamagedRow`` naming it, never a raw
# ``ValueError``: what a database can damage depends on its types (the driver's readers),
# what is then wrong with the row is the same everywhere.


def request_of(
    driver: Driver[Any, Any], shop_id: str, request_id: str, row: Sequence[object]
) -> ReturnRequest:
    """The request a row of :attr:`Statements.request_columns` holds, if its columns agree.

    Raises:
        DamagedRow: the body does not decode, holds another request than its row, or a column
            is not what a commit of that body writes.
    """
    *columns, body = row
    try:
        request = request_from_json(driver.text(body, "body"))
    except ValueError as exc:  # InvalidInput and the readers' errors are ValueErrors
        raise damaged_request(shop_id, request_id, str(exc)) from None
    problem = request_problem(request, shop_id, request_id) or driver.disagreement(columns, request)
    if problem is None:
        return request
    raise damaged_request(shop_id, request_id, problem)


def _listed(
    driver: Driver[Any, Any], shop_id: str, request_id: object, row: Sequence[object]
) -> ReturnRequest:
    """The request a listed row holds (see :func:`request_of`); its id column is read too."""
    try:
        checked = driver.text(request_id, "id")
    except ValueError as exc:
        raise damaged_request(shop_id, readable(request_id), str(exc)) from None
    return request_of(driver, shop_id, checked, row)


def _optional_text(driver: Driver[Any, Any], value: object, column: str) -> str | None:
    return None if value is None else driver.text(value, column)


def entry_of(driver: Driver[Any, Any], row: Sequence[object]) -> OutboxEntry:
    """The outbox entry a row of :attr:`Statements.outbox_columns` holds.

    Raises:
        DamagedRow: a column is not what the store writes there, the effect does not decode,
            or it is not the row's key and request.
    """
    shop_id, key, request_id, effect, state, attempts, available_at, owner, until, error = row
    try:
        entry = OutboxEntry(
            shop_id=driver.name(shop_id, "shop_id"),
            effect=effect_from_json(driver.text(effect, "effect")),
            state=driver.state(state),
            attempts=driver.count(attempts, "attempts"),
            available_at=driver.moment(available_at, "available_at"),
            lease_owner=_optional_text(driver, owner, "lease_owner"),
            lease_until=driver.moment(until, "lease_until"),
            last_error=_optional_text(driver, error, "last_error"),
        )
        problem = effect_problem(
            entry, driver.text(key, "key"), driver.text(request_id, "request_id")
        )
    except ValueError as exc:  # InvalidInput and the readers' errors are ValueErrors
        problem = str(exc)
    else:
        if problem is None:
            return entry
    raise damaged_entry(readable(shop_id), readable(key), readable(request_id), problem)


def entries_of(
    driver: Driver[Any, Any], rows: Iterable[Sequence[object]], log: logging.Logger
) -> tuple[OutboxEntry, ...]:
    """The entries of outbox rows; a damaged row is left out and logged, never the others."""
    entries: list[OutboxEntry] = []
    for row in rows:
        try:
            entries.append(entry_of(driver, row))
        except DamagedRow as damage:
            log_damage(log, damage, "left out of the outbox listing")
    return tuple(entries)


def record_of(
    driver: Driver[Any, Any], shop_id: str, key: str, row: Sequence[object]
) -> IdempotencyRecord:
    """The idempotency record a row of :attr:`Statements.get_record` holds.

    Raises:
        DamagedRow: a column is not text, the result does not decode, or it is not the
            request the row names.
    """
    fingerprint, request_id, result = row
    try:
        record = IdempotencyRecord(
            shop_id=shop_id,
            key=key,
            fingerprint=driver.text(fingerprint, "fingerprint"),
            request_id=driver.text(request_id, "request_id"),
            result=request_from_json(driver.text(result, "result")),
        )
        problem = record_problem(record, shop_id, key)
    except ValueError as exc:  # InvalidInput and the readers' errors are ValueErrors
        problem = str(exc)
    else:
        if problem is None:
            return record
    raise damaged_record(shop_id, key, readable(request_id), problem)


# -- look-ups and writes inside a transaction --------------------------------------------------


def _queued(driver: Driver[C, Any], connection: C, shop_id: str, key: str) -> OutboxEntry | None:
    """The outbox entry stored under ``key`` in the shop (locked, where rows are), or ``None``.

    Raises:
        DamagedRow: its row cannot be read back.
    """
    row = connection.execute(driver.sql.get_entry, (shop_id, key)).fetchone()
    return None if row is None else entry_of(driver, row)


@attrs.frozen
class Lookups:
    """A SQL store's answers to a commit plan's questions (``CommitLookups``), in its transaction.

    Where rows are locked (PostgreSQL), the rows a commit may change are read ``FOR UPDATE``:
    what the plan decided on cannot move before the transaction ends.
    """

    driver: Driver[Any, Any]
    connection: Connection
    shop: str
    request_id: str

    def stored(self) -> tuple[int, PaidFee | None] | None:
        """See ``CommitLookups.stored``."""
        found = self.connection.execute(self.driver.sql.stored, (self.shop, self.request_id))
        row = found.fetchone()
        if row is None:
            return None
        version, paid, fee_json = self.driver.stored(self.shop, self.request_id, row)
        return version, stored_fee(self.shop, self.request_id, fee_json, paid)

    def key_taken(self, key: str) -> bool:
        """See ``CommitLookups.key_taken``."""
        found = self.connection.execute(self.driver.sql.key_taken, (self.shop, key))
        return found.fetchone() is not None

    def entry(self, key: str) -> tuple[str, OutboxEntry] | None:
        """See ``CommitLookups.entry``."""
        entry = _queued(self.driver, self.connection, self.shop, key)
        return None if entry is None else (entry.effect.request_id, entry)

    def entry_state(self, key: str) -> tuple[str, EffectState] | None:
        """See ``CommitLookups.entry_state``."""
        # Only the row's request and state: a dead entry whose effect is damaged can be
        # revived (after a repair, say); a claim sets it aside again while it stays damaged.
        row = self.connection.execute(self.driver.sql.entry_state, (self.shop, key)).fetchone()
        if row is None:
            return None
        try:
            return self.driver.text(row[0], "request_id"), self.driver.state(row[1])
        except ValueError as exc:
            raise damaged_entry(self.shop, key, readable(row[0]), str(exc)) from None


@attrs.frozen
class Prepared:
    """What a commit writes, made before its transaction so that its locks wait for nothing.

    Attributes:
        saved: the request at the version it gets.
        row: the parameters of :attr:`Statements.insert_request` and ``update_request``.
        body: the request's JSON, the body of its row (and the result of its record).
        effects: the parameters of :attr:`Statements.insert_effect`, one row an effect.
        totals: the paid fee and the refunds so far, for the money cap's message.
    """

    saved: ReturnRequest
    row: tuple[object, ...]
    body: str
    effects: list[tuple[str, str, str, str]]
    totals: tuple[int, int]


def prepare(driver: Driver[Any, Any], commit: Commit) -> Prepared:
    """Everything of ``commit`` that costs time, before the transaction starts.

    Raises:
        InvalidInput: the commit is malformed, or a time cannot be expressed in UTC.
        PortRejected: a refund in another currency than the paid fee.
    """
    saved = prepared(commit)
    columns = driver.columns(saved)
    body = request_to_json(saved)
    facts = fact_values(saved, driver.sql.dialect.facts)
    shop, request_id = saved.shop_id, saved.id
    effects = [(shop, effect.key, request_id, effect_to_json(effect)) for effect in commit.effects]
    row = (*columns, body, *facts, shop, request_id)
    return Prepared(saved, row, body, effects, (columns[4], columns[5]))


def write_plan(
    driver: Driver[C, Any], connection: C, commit: Commit, plan: CommitPlan, write: Prepared
) -> None:
    """Write what the commit plan decided: the record, the request, its effects, the entries.

    Raises:
        IdempotencyKeyTaken: a concurrent commit recorded the key first.
        ConcurrentModification: a concurrent commit inserted the id first.
        PortRejected: the schema's own constraints refused the request's row.
    """
    sql = driver.sql
    shop = write.saved.shop_id
    if plan.record is not None:
        record = plan.record
        # The record's result is the request as saved: the row's body, written again.
        params = (shop, record.key, record.fingerprint, record.request_id, write.body)
        if connection.execute(sql.insert_record, params).rowcount != 1:
            raise key_taken(commit)  # a concurrent commit recorded it first
    driver.save(connection, write, stored=plan.stored)
    driver.each(connection, sql.insert_effect, write.effects)
    if plan.settled is not None:
        _store_settled(driver, connection, shop, plan.settled)
    driver.keyed(connection, sql.revive, (shop,), commit.revive)


def _store_settled(
    driver: Driver[C, Any], connection: C, shop_id: str, settled: OutboxEntry
) -> None:
    """Write a settled entry's state, attempts, retry time and error; release its lease."""
    connection.execute(
        driver.sql.store_settled,
        (
            settled.state.value,
            settled.attempts,
            driver.time(settled.available_at, "retry_at"),
            settled.last_error,
            shop_id,
            settled.key,
        ),
    )


def settle(driver: Driver[C, Any], connection: C, shop_id: str, settlement: Settlement) -> None:
    """Settle a leased outbox entry without touching its request.

    Raises:
        LeaseLost: the entry is not pending and leased to ``settlement.owner``.
        DamagedRow: its row cannot be read back.
    """
    entry = _queued(driver, connection, shop_id, settlement.key)
    if entry is None or not holds_lease(entry, settlement):
        request_id = "?" if entry is None else entry.effect.request_id
        raise LeaseLost(request_id=request_id, key=settlement.key, owner=settlement.owner)
    _store_settled(driver, connection, shop_id, settle_entry(entry, settlement))


def _flag(driver: Driver[C, Any], connection: C, damage: DamagedRow, now: dt.datetime) -> str:
    """Mark the request of an outbox row that a claim set aside as needing attention.

    Returns:
        What became of the request, for the log.
    """
    shop_id, request_id = damage.shop_id, damage.request_id
    row = connection.execute(driver.sql.lock_request, (shop_id, request_id)).fetchone()
    if row is None:
        return "no request of that id to mark as needing attention"
    try:
        request = request_of(driver, shop_id, request_id, row)
    except DamagedRow:
        return "its request cannot be read either"
    saved = flagged(request, damage, now)
    connection.execute(
        driver.sql.flag_request, (saved.version, request_to_json(saved), shop_id, request_id)
    )
    return "its request is marked as needing attention"


def claim(
    driver: Driver[C, Any],
    transaction: Callable[[Callable[[C], _Claimed]], _Claimed],
    *,
    owner: str,
    now: dt.datetime,
    lease: dt.timedelta,
    limit: int,
    log: logging.Logger,
) -> tuple[OutboxEntry, ...]:
    """``Storage.claim``: lease up to ``limit`` due entries to ``owner``, oldest first.

    A damaged row is set aside (:func:`_claim_rows`) and logged as an error with its ids.

    Args:
        driver: the store's driver.
        transaction: runs its argument in one write transaction of the store.
        owner: the claimant.
        now: the time of the claim.
        lease: how long the entries are leased.
        limit: the most entries to claim.
        log: where rows set aside are logged.

    Raises:
        InvalidInput: ``now`` is naive, ``lease`` is not positive or ends past the latest time
            a store holds, ``limit`` negative, or the owner empty (or text no store can keep).
    """
    check_claim(owner=owner, now=now, lease=lease, limit=limit)
    until = from_timestamp(timestamp(now + lease, field="lease"))  # bounded by check_claim
    claimed, set_aside = transaction(
        lambda connection: _claim_rows(
            driver, connection, owner=owner, now=now, until=until, limit=limit
        )
    )
    for damage, outcome in set_aside:
        log_damage(log, damage, f"set aside (marked dead); {outcome}")
    return tuple(claimed)


_Claimed = tuple[list[OutboxEntry], list[tuple[DamagedRow, str]]]


def _claim_rows(
    driver: Driver[C, Any],
    connection: C,
    *,
    owner: str,
    now: dt.datetime,
    until: dt.datetime,
    limit: int,
) -> _Claimed:
    """Lease up to ``limit`` due rows to ``owner`` until ``until``; set damaged ones aside.

    A damaged row is marked dead with ``last_error`` ``"corrupt outbox row: …"`` and its
    request flagged (:func:`_flag`), and the next due row takes its place.

    Returns:
        The entries claimed, and each row set aside with what became of its request.
    """
    at, leased_until = driver.time(now, "now"), driver.time(until, "lease")
    claimed: list[OutboxEntry] = []
    set_aside: list[tuple[DamagedRow, str]] = []
    while len(claimed) < limit:
        rows = connection.execute(driver.sql.claimable, (at, at, limit - len(claimed)))
        good: list[tuple[int, OutboxEntry]] = []
        bad: list[tuple[int, DamagedRow]] = []
        for seq, *row in rows.fetchall():
            try:
                good.append((seq, entry_of(driver, row)))
            except DamagedRow as damage:
                bad.append((seq, damage))
        driver.keyed(connection, driver.sql.lease, (owner, leased_until), [s for s, _ in good])
        driver.each(
            connection,
            driver.sql.set_aside,
            [(set_aside_error(damage.problem), seq) for seq, damage in bad],
        )
        claimed.extend(
            attrs.evolve(entry, lease_owner=owner, lease_until=until) for _, entry in good
        )
        set_aside.extend((damage, _flag(driver, connection, damage, now)) for _, damage in bad)
        if not bad:  # every row was good: the claim is full, or nothing more is due
            break
    return claimed, set_aside


# -- listings ---------------------------------------------------------------------------------
#
# Both stores page by keyset, never by offset. A listing whose only filter beyond the indexed
# ones is a Python predicate reads batches; one whose rule condition runs as SQL reads windows
# of the listing (found on the index alone) and fetches the matches in each. Every match is
# confirmed on the decoded request (a microsecond beside the decoding): a fact column damaged
# on disk can hide a request, never show a wrong one. A row that cannot be read back is left
# out of the page and logged, so that one damaged row never makes a tab unreadable.

_Keep = Callable[[ReturnRequest], bool]


def both(first: _Keep | None, second: _Keep | None) -> _Keep | None:
    """A predicate that holds when both hold (``None``: no predicate)."""
    if first is None or second is None:
        return first or second
    return lambda request: first(request) and second(request)


def _kept(
    driver: Driver[Any, P],
    shop_id: str,
    fetched: Iterable[Fetched[P]],
    keep: _Keep | None,
    damaged: list[DamagedRow],
) -> Iterator[tuple[Position, ReturnRequest]]:
    """The fetched requests that ``keep`` keeps, with their positions; damaged rows noted."""
    for position, row in fetched:
        try:
            request = _listed(driver, shop_id, position[1], row)
        except DamagedRow as damage:
            damaged.append(damage)
            continue
        if keep is None or keep(request):
            yield driver.position(position), request


def _short(driver: Driver[Any, P], found: list[tuple[Position, ReturnRequest]], after: P) -> Page:
    """A page cut short by a budget, resuming after ``after``."""
    return Page(tuple(request for _, request in found), encode_cursor(driver.position(after)))


def scanned_page(
    driver: Driver[Any, P],
    fetch: Callable[[P | None, int], Sequence[Fetched[P]]],
    query: Query,
    *,
    shop_id: str,
    after: P | None,
    budget: int,
    batch: int,
    log: logging.Logger,
) -> Page:
    """A page whose only filters beyond the indexed ones (if any) run in Python.

    Those are the query's ``where`` predicate and, when it does not run as SQL, its rule
    condition: a listed request must pass both.

    Args:
        driver: the store's driver.
        fetch: up to ``n`` rows of the listing after a position (each its own short read:
            the host's predicate never runs inside a transaction).
        query: the query.
        shop_id: the listing's shop.
        after: the position the page starts after (``None``: the listing's start).
        budget: how many rows a page may read before it is handed back short, with a cursor.
        batch: how many rows a batch reads when a predicate may refuse some.
        log: where damaged rows are logged.
    """
    limit, keep = query.limit, both(query.condition, query.where)
    batch = limit + 1 if keep is None else max(limit + 1, batch)
    found: list[tuple[Position, ReturnRequest]] = []
    damaged: list[DamagedRow] = []
    scanned = 0
    try:
        while True:
            fetched = fetch(after, batch)
            scanned += len(fetched)
            for match in _kept(driver, shop_id, fetched, keep, damaged):
                found.append(match)
                if len(found) > limit:
                    return page_of(found, limit)
            if len(fetched) < batch:
                return page_of(found, limit)
            after = fetched[-1][0]
            if scanned >= budget and driver.resumable(after):
                # Many rows refused by the predicate: a short page that resumes after them.
                # (A damaged row's position cannot stand in a cursor: scan on past it.)
                return _short(driver, found, after)
    finally:
        for skipped in damaged:
            log_damage(log, skipped, "left out of the listing")


def filtered_page(
    driver: Driver[Any, P],
    window: Callable[[P | None, int, int], tuple[P | None, Sequence[Fetched[P]]]],
    query: Query,
    *,
    shop_id: str,
    after: P | None,
    rows: int,
    decoded: int,
    log: logging.Logger,
) -> Page:
    """A page of a listing whose rule condition runs as SQL, over bounded windows.

    Each round reads one window of the listing (the next ``size`` rows in listing order) and
    the rows in it that the condition matches. A filter that matches little reads ever larger
    windows, up to a budget of rows a page; past that the page is short and its cursor resumes
    after the rows examined.

    Args:
        driver: the store's driver.
        window: for a position, a window size and a number of matches wanted: the window's
            last position (``None`` when fewer rows are left: the matches then run to the end
            of the listing), and the first matches after the position up to it.
        query: the query; every SQL match is confirmed on the decoded request (its rule
            condition and its ``where`` predicate).
        shop_id: the listing's shop.
        after: the position the page starts after (``None``: the listing's start).
        rows: how many rows a page may examine (``scan_budget``).
        decoded: how many matches a page may decode.
        log: where damaged rows are logged.
    """
    limit, keep = query.limit, both(query.condition, query.where)
    size = min(FIRST_WINDOW * (limit + 1), rows)
    found: list[tuple[Position, ReturnRequest]] = []
    damaged: list[DamagedRow] = []
    examined = read = 0
    try:
        while True:
            need = limit + 1 - len(found)
            until, fetched = window(after, size, need)
            read += len(fetched)
            found.extend(_kept(driver, shop_id, fetched, keep, damaged))
            if len(found) > limit:
                return page_of(found, limit)
            if len(fetched) == need:  # the window may hold more matches: go on after them
                after = fetched[-1][0]
            elif until is None:  # the window reached the end of the listing
                return page_of(found, limit)
            else:
                after, examined = until, examined + size
                size = max(1, min(next_window(size, examined, len(found), limit), rows - examined))
            if (examined >= rows or read >= decoded) and driver.resumable(after):
                # Few matches in many rows: a short page that resumes after those rows.
                return _short(driver, found, after)
    finally:
        for skipped in damaged:
            log_damage(log, skipped, "left out of the listing")
