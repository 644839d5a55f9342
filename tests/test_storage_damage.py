"""Damaged rows, swept: every column of every SQLite table, times every kind of damage.

One row whose bytes are not what the store wrote (a bad disk, another program writing the file,
hand-written SQL) must never stop the rows beside it. For each case the sweep damages one row
of a small database, shop-a's request ``r-1``, its confirmation mail's outbox entry, or its
idempotency record ``k-1``, and checks:

- ``get`` of the damaged request raises ``PortRejected`` naming shop and request (``NotFound``
  when the damage is in the very columns that name the row); every other request reads as saved;
- every listing (each tab, attention, a creation range, a predicate, one per page) shows exactly
  the requests that read, and logs the damaged one with its ids;
- ``claim`` hands out every healthy due entry of both shops, one at a time, and sets the damaged
  entry aside: dead, ``last_error`` ``corrupt outbox row: …``, its request flagged as needing
  attention;
- ``outbox`` lists a request's readable entries; ``idempotency_record`` of the damaged record
  raises ``PortRejected`` naming shop and key;
- no call ever raises ``PortUnavailable`` or an error outside the port's vocabulary.

Damage that SQLite itself refuses is written anyway, as a damaged disk would have it: CHECK
constraints are ignored, the fixed-fee trigger is dropped for the write, and ``NULL`` reaches a
``NOT NULL`` column through an edit of the schema text that is undone afterwards. ``outbox.seq``
is left out: it is the rowid, SQLite stores nothing but an integer in it, and any integer is a
valid place in the queue. Integers and reals written to a TEXT column become text (column
affinity), so for text columns "a number" is a kind of text here.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import logging
import re
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Final

import attrs
import pytest

from retouraanvraag.adapters import MemoryStorage, SqliteStorage
from retouraanvraag.adapters._facts import FACT_COLUMNS
from retouraanvraag.errors import (
    ConcurrentModification,
    LeaseLost,
    NotFound,
    PortRejected,
    PortUnavailable,
    RetouraanvraagError,
)
from retouraanvraag.model import HistoryEvent, ReturnRequest, Status
from retouraanvraag.ports import (
    Commit,
    EffectState,
    IdempotencyRecord,
    Query,
    Settlement,
    Storage,
    Tab,
)
from retouraanvraag.testing.storage_contract import SHOP, T0, sample_request

OTHER: Final = "shop-b"
LEASE: Final = dt.timedelta(seconds=30)
DEEP: Final = "[" * 100_000 + "]" * 100_000


# -- the kinds of damage ---------------------------------------------------------------------


@attrs.frozen
class Kind:
    """One kind of damage: the SQL expression the column is set to.

    ``{c}`` stands for the column, ``{valid}`` for a value the store could have written there.
    ``same_bytes``: the damaged value, read leniently, still names what the column named.
    """

    name: str
    sql: str
    params: tuple[object, ...] = ()
    same_bytes: bool = False


NOT_UTF8 = Kind("text that is not UTF-8", "CAST(x'ff' AS TEXT)")
CUT_SHORT = Kind("UTF-8 cut short", "coalesce({c}, {valid}) || CAST(x'c3' AS TEXT)")
SURROGATE = Kind("a lone surrogate, encoded", "CAST(x'eda080' AS TEXT)")
BLOB = Kind("a BLOB of the same bytes", "CAST(coalesce({c}, {valid}) AS BLOB)", same_bytes=True)
NULL = Kind("NULL", "NULL")
EMPTY = Kind("empty text", "''")

# Every column, whatever it holds, can get these.
GENERIC: Final = (NOT_UTF8, CUT_SHORT, SURROGATE, BLOB)

ID_KINDS: Final = (*GENERIC, EMPTY, Kind("another id", "'x-' || {c}"))
FREE_TEXT_KINDS: Final = GENERIC
ENUM_KINDS: Final = (
    *GENERIC,
    EMPTY,
    Kind("an unknown value", "'bogus'"),
    Kind("another case", "upper({c})"),
    Kind("a number", "7"),
)
TIME_KINDS: Final = (
    *GENERIC,
    EMPTY,
    Kind("no time zone", "'2026-03-01T08:00:00.000000'"),
    Kind("an offset, not Z", "'2026-03-01T08:00:00.000000+00:00'"),
    Kind("no microseconds", "'2026-03-01T08:00:00Z'"),
    Kind("no such day", "'2026-02-30T08:00:00.000000Z'"),
    Kind("out of range", "'2026-13-45T25:61:61.000000Z'"),
    Kind("not a time", "'tomorrow'"),
    Kind("a number", "1772352000"),
)
INTEGER_KINDS: Final = (
    *GENERIC,
    Kind("text", "'many'"),
    Kind("a real", "1.5"),
    Kind("negative", "-1"),
)
_FIELD = "json_set({c}, ?, json(?))"
JSON_KINDS: Final = (
    *GENERIC,
    EMPTY,
    Kind("not JSON", "'{{not json'"),
    Kind("JSON null", "'null'"),
    Kind("a JSON list", "'[]'"),
    Kind("a JSON number", "1.5"),
    Kind("nested too deep", "?", (DEEP,)),
    Kind("an unknown field", _FIELD, ("$.unknown", "1")),
)
REQUEST_JSON_KINDS: Final = (
    *JSON_KINDS,
    Kind("a number for text", _FIELD, ("$.order_number", "1001")),
    Kind("null for text", _FIELD, ("$.order_number", "null")),
    Kind("text for a number", _FIELD, ("$.items[0].quantity", '"1"')),
    Kind("a real for a number", _FIELD, ("$.items[0].quantity", "1.5")),
    Kind("a boolean for a number", _FIELD, ("$.items[0].quantity", "true")),
    Kind("text for a list", _FIELD, ("$.attention", '"oops"')),
    Kind("an object for a list", _FIELD, ("$.tags", '{"a": 1}')),
    Kind("an unknown status", _FIELD, ("$.status", '"bogus"')),
    Kind("a time without a zone", _FIELD, ("$.created_at", '"2026-03-01T09:00:00"')),
    Kind("an escaped lone surrogate", _FIELD, ("$.customer.name", '"K. \\ud800"')),
    Kind("a missing field", "json_remove({c}, '$.customer')"),
    Kind("another request", _FIELD, ("$.id", '"r-9"')),
)
BODY_KINDS: Final = (
    *REQUEST_JSON_KINDS,
    # Valid requests that are not the one the columns describe.
    Kind("another version", _FIELD, ("$.version", "9")),
    Kind("another status", _FIELD, ("$.status", '"approved"')),
    Kind("no fee paid", _FIELD, ("$.return_fee", "null")),
)
EFFECT_KINDS: Final = (
    *JSON_KINDS,
    Kind("an unknown kind", _FIELD, ("$.kind", '"bogus"')),
    Kind("an unknown mail", _FIELD, ("$.mail", '"bogus"')),
    Kind("a number for the request", _FIELD, ("$.request_id", "7")),
    Kind("another key", _FIELD, ("$.key", '"mail:elsewhere"')),
    Kind("another request", _FIELD, ("$.request_id", '"r-2"')),
    Kind("an escaped lone surrogate", _FIELD, ("$.key", '"mail:\\udc00"')),
)


@attrs.frozen
class Column:
    table: str
    name: str
    kinds: tuple[Kind, ...]
    valid: str = "'x'"  # a value the store could write, for damage built from the value
    nullable: bool = False


COLUMNS: Final = (
    Column("requests", "shop_id", ID_KINDS),
    Column("requests", "id", ID_KINDS),
    Column("requests", "version", (*INTEGER_KINDS, Kind("off by one", "{c} + 1"))),
    Column("requests", "status", (*ENUM_KINDS, Kind("another status", "'approved'"))),
    Column(
        "requests",
        "created_at",
        (*TIME_KINDS, Kind("another instant", "'2026-03-02T09:00:00.000000Z'")),
    ),
    Column("requests", "needs_attention", (*INTEGER_KINDS, Kind("out of range", "2"))),
    Column("requests", "fee_paid_minor", (*INTEGER_KINDS, Kind("off by one", "{c} + 1"))),
    Column("requests", "refunded_minor", (*INTEGER_KINDS, Kind("off by one", "{c} + 1"))),
    Column("requests", "body", BODY_KINDS),
    Column("outbox", "shop_id", ID_KINDS[:-1]),  # another shop's id is a move, not damage
    Column("outbox", "key", ID_KINDS),
    Column("outbox", "request_id", ID_KINDS),
    Column("outbox", "effect", EFFECT_KINDS),
    Column("outbox", "state", ENUM_KINDS),
    Column("outbox", "attempts", INTEGER_KINDS),
    Column("outbox", "available_at", TIME_KINDS, "'2026-03-01T08:00:00.000000Z'", True),
    Column("outbox", "lease_owner", FREE_TEXT_KINDS, "'w-0'", True),
    Column("outbox", "lease_until", TIME_KINDS, "'2026-03-01T08:00:00.000000Z'", True),
    Column("outbox", "last_error", FREE_TEXT_KINDS, "'timeout'", True),
    Column("idempotency", "shop_id", ID_KINDS),
    Column("idempotency", "key", ID_KINDS),
    Column("idempotency", "fingerprint", FREE_TEXT_KINDS),
    Column("idempotency", "request_id", ID_KINDS),
    Column("idempotency", "result", REQUEST_JSON_KINDS),
)

CASES: Final = [
    pytest.param(column, kind, id=f"{column.table}.{column.name}: {kind.name}")
    for column in COLUMNS
    for kind in (*column.kinds, *(() if column.nullable else (NULL,)))
]

#: The columns through which a lookup finds its row: damage there moves the row away.
NAMING: Final = {"requests": {"shop_id", "id"}, "idempotency": {"shop_id", "key"}}


def _schema(connection: sqlite3.Connection) -> set[tuple[str, str]]:
    tables = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    return {
        (table, row[1])
        for (table,) in tables
        if table != "sqlite_sequence"
        for row in connection.execute(f"PRAGMA table_info({table})")
    }


def test_the_sweep_covers_every_column_of_every_table() -> None:
    with SqliteStorage() as storage:
        stored = storage._read(_schema)
    swept = {(column.table, column.name) for column in COLUMNS}
    # The rule filter's fact columns are derived copies that only narrow a filtered listing,
    # which confirms every match on the decoded body: tests/test_sql_filter.py damages them.
    facts = {("requests", name) for name, _, _ in FACT_COLUMNS}
    assert stored - swept - facts == {("outbox", "seq")}  # the rowid; see the module's docstring
    assert swept <= stored
    assert len(CASES) >= 200


# -- the database every case starts from -----------------------------------------------------


@attrs.frozen
class Template:
    path: Path
    requests: dict[tuple[str, str], ReturnRequest]
    keys: dict[tuple[str, str], str]  # the confirmation mail's outbox key, by shop and request
    records: dict[tuple[str, str], IdempotencyRecord]


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    """shop-a: r-0, r-1 requested, r-2 approved, r-3 needing attention; shop-b: r-1.

    Each has its confirmation mail queued and an idempotency record ``k-<n>``.
    """
    path = tmp_path_factory.mktemp("damage") / "template.sqlite3"
    requests: dict[tuple[str, str], ReturnRequest] = {}
    records: dict[tuple[str, str], IdempotencyRecord] = {}
    keys: dict[tuple[str, str], str] = {}
    with SqliteStorage(path) as storage:
        for shop, n in [(SHOP, 0), (SHOP, 1), (SHOP, 2), (SHOP, 3), (OTHER, 1)]:
            draft = sample_request(
                f"r-{n}", shop_id=shop, created_at=T0 + n * dt.timedelta(minutes=1)
            )
            change = draft.submitted()
            request = change.request
            if n == 2:
                request = attrs.evolve(request, status=Status.APPROVED)
            if n == 3:
                request = request.with_attention("label: carrier refused")
            record = IdempotencyRecord(shop, f"k-{n}", f"fp-{n}", request.id, request)
            saved = storage.commit(Commit(request, None, change.effects, idempotency=record))
            requests[(shop, saved.id)] = saved
            records[(shop, record.key)] = storage.idempotency_record(shop, record.key)  # type: ignore[assignment]
            (entry,) = storage.outbox(shop, saved.id)
            keys[(shop, saved.id)] = entry.key
    return Template(path, requests, keys, records)


def _rowid(path: Path, table: str, template: Template) -> int:
    """The rowid of the row a case damages: shop-a's ``r-1``, its mail, its record ``k-1``."""
    lookups: dict[str, tuple[str, tuple[str, ...]]] = {
        "requests": ("SELECT rowid FROM requests WHERE shop_id = ? AND id = ?", (SHOP, "r-1")),
        "outbox": ("SELECT seq FROM outbox WHERE key = ?", (template.keys[(SHOP, "r-1")],)),
        "idempotency": (
            "SELECT rowid FROM idempotency WHERE shop_id = ? AND key = ?",
            (SHOP, "k-1"),
        ),
    }
    raw = sqlite3.connect(path)
    try:
        (rowid,) = raw.execute(*lookups[table]).fetchone()
        return int(rowid)
    finally:
        raw.close()


@contextlib.contextmanager
def _null_allowed(path: Path, table: str, column: str) -> Iterator[None]:
    """The column's NOT NULL taken out of the schema text for a while, as a bad disk might."""
    raw = sqlite3.connect(path, isolation_level=None)
    (sql,) = raw.execute("SELECT sql FROM sqlite_master WHERE name = ?", (table,)).fetchone()
    relaxed = re.sub(rf"(\n\s+{column}\s+\w+\s+)NOT NULL", r"\1", sql)
    assert relaxed != sql, column

    def set_schema(text: str) -> None:
        (version,) = raw.execute("PRAGMA schema_version").fetchone()
        raw.execute("PRAGMA writable_schema = ON")
        raw.execute("UPDATE sqlite_master SET sql = ? WHERE name = ?", (text, table))
        raw.execute(f"PRAGMA schema_version = {version + 1}")
        raw.execute("PRAGMA writable_schema = OFF")

    try:
        set_schema(relaxed)
        raw.close()
        yield
    finally:
        raw = sqlite3.connect(path, isolation_level=None)
        set_schema(sql)
        raw.close()


def damage(path: Path, table: str, column: Column, kind: Kind, rowid: int) -> None:
    """Write ``kind`` into one row's column, past every guard SQLite has."""
    key = "seq" if table == "outbox" else "rowid"
    value = kind.sql.format(c=column.name, valid=column.valid)
    sql = f"UPDATE {table} SET {column.name} = {value} WHERE {key} = ?"  # noqa: S608 - test data
    with _null_allowed(path, table, column.name) if kind is NULL else contextlib.nullcontext():
        raw = sqlite3.connect(path, isolation_level=None)
        try:
            raw.execute("PRAGMA ignore_check_constraints = ON")
            raw.execute("BEGIN")
            trigger = raw.execute(
                "SELECT sql FROM sqlite_master WHERE name = 'requests_fee_fixed'"
            ).fetchone()
            raw.execute("DROP TRIGGER requests_fee_fixed")
            before = raw.execute(
                f"SELECT typeof({column.name}), hex({column.name}) FROM {table} WHERE {key} = ?",  # noqa: S608
                (rowid,),
            ).fetchone()
            raw.execute(sql, (*kind.params, rowid))
            after = raw.execute(
                f"SELECT typeof({column.name}), hex({column.name}) FROM {table} WHERE {key} = ?",  # noqa: S608
                (rowid,),
            ).fetchone()
            assert after != before, "the damage changed nothing"
            raw.execute(trigger[0])
            raw.execute("COMMIT")
        finally:
            raw.close()


# -- what every case must find -----------------------------------------------------------------


QUERIES: Final[dict[str, Query]] = {
    "everything": Query(),
    "one per page": Query(limit=1),
    "requests tab": Query(statuses=Tab.REQUESTS.statuses),  # type: ignore[arg-type, unused-ignore]
    "incoming tab": Query(statuses=Tab.INCOMING.statuses),  # type: ignore[arg-type, unused-ignore]
    "history tab": Query(statuses=Tab.HISTORY.statuses),  # type: ignore[arg-type, unused-ignore]
    "needing attention": Query(needs_attention=True),
    "not needing attention": Query(needs_attention=False, limit=1),
    "created in a range": Query(
        created_from=T0 + dt.timedelta(minutes=1), created_before=T0 + dt.timedelta(minutes=3)
    ),
    "with a predicate": Query(where=lambda r: r.id != "r-0", limit=1),
}


def _reference(requests: list[ReturnRequest], query: Query) -> list[str]:
    """What a listing of these (readable) requests shows, by the port's definition."""
    return [
        r.id
        for r in sorted(requests, key=lambda r: (r.created_at, r.id))
        if (query.statuses is None or r.status in query.statuses)
        and (query.needs_attention is None or r.needs_attention is query.needs_attention)
        and (query.created_from is None or r.created_at >= query.created_from)
        and (query.created_before is None or r.created_at < query.created_before)
        and (query.where is None or query.where(r))
    ]


def _listed(storage: Storage, shop_id: str, query: Query) -> list[str]:
    seen: list[str] = []
    cursor = None
    for _ in range(100):
        page = storage.query(shop_id, attrs.evolve(query, cursor=cursor))
        seen += [r.id for r in page.items]
        if page.next_cursor is None:
            return seen
        cursor = page.next_cursor
    pytest.fail("the listing never ended")  # pragma: no cover


def attempt(call: Callable[[], object], *allowed: type[Exception]) -> object:
    """Run a port call; only the errors the case allows come back (as values), never
    ``PortUnavailable`` (the reported bug: a damaged row read as "try again")."""
    try:
        return call()
    except PortUnavailable as exc:
        pytest.fail(f"PortUnavailable: {exc}")
    except allowed as exc:
        return exc
    except RetouraanvraagError as exc:
        pytest.fail(f"unexpected {type(exc).__name__}: {exc}")


@pytest.fixture
def logged(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.ERROR, logger="retouraanvraag")
    return caplog


def _errors(caplog: pytest.LogCaptureFixture, *ids: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.ERROR and all(i in r.getMessage() for i in ids)
    ]


@attrs.frozen
class Case:
    """One damaged row: which, how, and the store opened on it."""

    column: Column
    kind: Kind
    storage: SqliteStorage
    path: Path
    rowid: int
    template: Template
    log: pytest.LogCaptureFixture

    def hits(self, table: str, shop_id: str, name: str) -> bool:
        """Whether the damaged row is ``table``'s row of ``shop_id``'s ``name``."""
        return self.column.table == table and (shop_id, name) == (
            SHOP,
            "r-1" if table != "idempotency" else "k-1",
        )

    @property
    def moved(self) -> bool:
        """Whether the damage is in the columns a lookup finds the row by."""
        return self.column.name in NAMING.get(self.column.table, set())


@pytest.mark.parametrize(("column", "kind"), CASES)
def test_one_damaged_row_never_stops_the_rows_beside_it(
    template: Template, tmp_path: Path, logged: pytest.LogCaptureFixture, column: Column, kind: Kind
) -> None:
    path = tmp_path / "returns.sqlite3"
    shutil.copyfile(template.path, path)
    rowid = _rowid(path, column.table, template)
    damage(path, column.table, column, kind, rowid)
    with SqliteStorage(path) as storage:
        case = Case(column, kind, storage, path, rowid, template, logged)
        _claims_take_every_healthy_entry(case)  # first, as a worker would find the store
        readable = _requests_read_but_the_damaged_one(case)
        _listings_show_what_reads(case, readable)
        _outboxes_list_what_reads(case)
        _records_read_but_the_damaged_one(case)
        _the_store_takes_commits(case)


def _claims_take_every_healthy_entry(case: Case) -> None:
    healthy = {
        (shop, key)
        for (shop, request_id), key in case.template.keys.items()
        if not case.hits("outbox", shop, request_id)
    }
    claimed: set[tuple[str, str]] = set()
    for n in range(len(healthy) + 2):  # one at a time: the damaged row takes no turn
        entries = attempt(
            functools.partial(case.storage.claim, owner=f"w{n}", now=T0, lease=LEASE, limit=1)
        )
        assert isinstance(entries, tuple)
        claimed |= {(e.shop_id, e.key) for e in entries}
    assert claimed == healthy
    if case.column.table != "outbox":
        return
    state, error, owner = _raw_outbox(case.path, case.rowid)
    if case.column.name == "state":  # not pending: never claimed, so never set aside
        assert state != "dead"
        return
    assert (state, owner) == ("dead", None)
    assert error.startswith("corrupt outbox row: ")
    assert _errors(case.log, "set aside (marked dead)")


def _requests_read_but_the_damaged_one(case: Case) -> dict[str, list[ReturnRequest]]:
    """Every request reads as saved (the set-aside entry's flagged), but the damaged one."""
    readable: dict[str, list[ReturnRequest]] = {SHOP: [], OTHER: []}
    for (shop, request_id), saved in case.template.requests.items():
        got = attempt(functools.partial(case.storage.get, shop, request_id), PortRejected, NotFound)
        if case.hits("requests", shop, request_id):
            if case.moved:
                assert isinstance(got, NotFound)
            else:
                assert isinstance(got, PortRejected)
                assert f"shop {SHOP}: request r-1: the stored row cannot be read" in str(got)
            continue
        assert isinstance(got, ReturnRequest), got
        if case.hits("outbox", shop, request_id) and _names_its_request(case.column, case.kind):
            assert got.needs_attention, "the set-aside entry's request was not flagged"
            assert got.version == saved.version + 1
            (problem,) = got.attention[len(saved.attention) :]
            assert "corrupt outbox row" in problem
            (recorded,) = got.history[len(saved.history) :]
            assert recorded.command == HistoryEvent.GIVEN_UP
            assert recorded.note is not None
            assert "corrupt outbox row" in recorded.note
            assert (
                attrs.evolve(
                    got, attention=saved.attention, version=saved.version, history=saved.history
                )
                == saved
            )
        else:
            assert got == saved
        readable[shop].append(got)
    return readable


def _listings_show_what_reads(case: Case, readable: dict[str, list[ReturnRequest]]) -> None:
    for name, query in QUERIES.items():
        for shop in (SHOP, OTHER):
            listed = attempt(functools.partial(_listed, case.storage, shop, query))
            assert listed == _reference(readable[shop], query), (name, shop)
    if case.column.table == "requests" and not case.moved:
        assert _errors(case.log, f"shop {SHOP}: request r-1", "left out of the listing")


def _outboxes_list_what_reads(case: Case) -> None:
    target = case.template.keys[(SHOP, "r-1")]
    for (shop, request_id), key in case.template.keys.items():
        entries = attempt(functools.partial(case.storage.outbox, shop, request_id))
        assert isinstance(entries, tuple)
        if not case.hits("outbox", shop, request_id):
            assert [e.key for e in entries] == [key]
        elif case.column.name in {"lease_owner", "lease_until", "last_error"}:
            # Setting the row aside rewrote the damaged column: it reads again, dead.
            (entry,) = entries
            assert entry.state is EffectState.DEAD
            assert (entry.last_error or "").startswith("corrupt outbox row: ")
        else:
            assert target not in [e.key for e in entries]
    if case.column.table == "outbox":
        if case.column.name == "state":
            assert _errors(case.log, target, "left out of the outbox listing")
        # Settling it is refused, as its lease was never handed out.
        settle = Settlement(target, "w0", EffectState.DONE)
        refused = attempt(lambda: case.storage.settle(SHOP, settle), PortRejected, LeaseLost)
        assert isinstance(refused, PortRejected | LeaseLost)


def _records_read_but_the_damaged_one(case: Case) -> None:
    for (shop, key), saved in case.template.records.items():
        got = attempt(functools.partial(case.storage.idempotency_record, shop, key), PortRejected)
        if not case.hits("idempotency", shop, key):
            assert got == saved
        elif case.moved:
            assert got is None
        else:
            assert isinstance(got, PortRejected)
            assert f"shop {SHOP}: " in str(got)
            assert "'k-1'" in str(got)


def _the_store_takes_commits(case: Case) -> None:
    """A healthy request takes a commit; over the damaged one a clean refusal, or a repair."""
    storage = case.storage
    r0 = storage.get(SHOP, "r-0")
    assert storage.commit(Commit(attrs.evolve(r0, carrier="DHL"), r0.version)).version == 2
    if case.column.table == "requests":
        current = case.template.requests[(SHOP, "r-1")]
    else:
        current = storage.get(SHOP, "r-1")
    outcome = attempt(
        lambda: storage.commit(Commit(attrs.evolve(current, carrier="DHL"), current.version)),
        PortRejected,
        ConcurrentModification,
        NotFound,
    )
    if isinstance(outcome, ReturnRequest):
        assert storage.get(SHOP, "r-1") == outcome


def _names_its_request(column: Column, kind: Kind) -> bool:
    """Whether the damaged outbox row, read leniently, still names shop-a's ``r-1``.

    A claim then flags that request (unless the row was never claimed: a damaged ``state``).
    """
    if column.name == "state":
        return False
    return column.name not in {"shop_id", "request_id"} or kind.same_bytes


def _raw_outbox(path: Path, seq: int) -> tuple[str, str, str | None]:
    """``state``, ``last_error`` and ``lease_owner`` of an outbox row, read as SQLite has them."""
    raw = sqlite3.connect(path)
    raw.text_factory = lambda data: data.decode("utf-8", "replace")
    try:
        state, error, owner = raw.execute(
            "SELECT state, last_error, lease_owner FROM outbox WHERE seq = ?", (seq,)
        ).fetchone()
        return str(state), str(error), owner
    finally:
        raw.close()


# -- SQLite: the lenient reading is the exception, and cursors step over damaged positions ---


def test_a_damaged_row_does_not_leave_the_connection_reading_leniently(tmp_path: Path) -> None:
    path = tmp_path / "returns.sqlite3"
    with SqliteStorage(path) as storage:
        for n in range(2):
            submit_one(storage, f"r-{n}", n)
        _execute(path, "UPDATE requests SET body = CAST(x'ff' AS TEXT) WHERE id = 'r-1'")
        with pytest.raises(PortRejected, match="r-1"):
            storage.get(SHOP, "r-1")
        assert storage._read(lambda connection: connection.text_factory) is str
        assert storage.get(SHOP, "r-0").id == "r-0"


def test_a_listing_steps_over_a_damaged_position_whatever_the_scan_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, logged: pytest.LogCaptureFixture
) -> None:
    from retouraanvraag.adapters import sqlite as sqlite_adapter  # noqa: PLC0415

    monkeypatch.setattr(sqlite_adapter, "_SCAN_BUDGET", 2)
    monkeypatch.setattr(sqlite_adapter, "_BATCH", 2)
    path = tmp_path / "returns.sqlite3"
    with SqliteStorage(path) as storage:
        for n in range(6):
            submit_one(storage, f"r-{n}", n)
        # Not UTF-8: the row sorts after every other, and its position fits in no cursor.
        _execute(path, "UPDATE requests SET created_at = CAST(x'ff' AS TEXT) WHERE id = 'r-2'")
        for where, ids in (
            (lambda _: False, []),
            (lambda _: True, ["r-0", "r-1", "r-3", "r-4", "r-5"]),
        ):
            assert _listed(storage, SHOP, Query(limit=1, where=where)) == ids
        assert _errors(logged, f"shop {SHOP}: request r-2", "column created_at")


def submit_one(storage: Storage, request_id: str, minutes: int) -> ReturnRequest:
    change = sample_request(request_id, created_at=T0 + dt.timedelta(minutes=minutes)).submitted()
    return storage.commit(Commit(change.request, None, change.effects))


def _execute(path: Path, sql: str) -> None:
    raw = sqlite3.connect(path)
    try:
        raw.execute(sql)
        raw.commit()
    finally:
        raw.close()


# -- memory: whatever object is left under a key is a damaged row ---------------------------


def _other_request() -> ReturnRequest:
    return sample_request("r-9").submitted().request


@pytest.mark.parametrize("stored", ["r-1", _other_request()], ids=["text", "another request"])
def test_memory_treats_whatever_is_left_under_a_request_key_as_a_damaged_row(
    stored: object, logged: pytest.LogCaptureFixture
) -> None:
    storage = MemoryStorage()
    for n in range(3):
        submit_one(storage, f"r-{n}", n)
    before = storage.get(SHOP, "r-1")
    storage._requests[(SHOP, "r-1")] = stored  # type: ignore[assignment]
    with pytest.raises(PortRejected, match=rf"shop {SHOP}: request r-1: the stored row"):
        storage.get(SHOP, "r-1")
    for query in QUERIES.values():
        assert "r-1" not in _listed(storage, SHOP, query)
    assert _listed(storage, SHOP, Query()) == ["r-0", "r-2"]
    assert _errors(logged, f"shop {SHOP}: request r-1", "left out of the listing")
    with pytest.raises(PortRejected, match="r-1"):
        storage.commit(Commit(before, before.version))
    assert {e.key for e in storage.claim(owner="w", now=T0, lease=LEASE, limit=10)} == {
        e.key for n in range(3) for e in storage.outbox(SHOP, f"r-{n}")
    }


@pytest.mark.parametrize("stored", [None, "mail", "another"])
def test_memory_treats_whatever_is_left_under_an_outbox_key_as_a_damaged_row(
    stored: str | None, logged: pytest.LogCaptureFixture
) -> None:
    storage = MemoryStorage()
    keys = [storage.outbox(SHOP, submit_one(storage, f"r-{n}", n).id)[0].key for n in range(3)]
    queued = storage._outbox[(SHOP, keys[1])]
    other = storage.outbox(SHOP, "r-2")[0]
    entry = {None: None, "mail": "mail", "another": other}[stored]
    storage._outbox[(SHOP, keys[1])] = attrs.evolve(queued, entry=entry)  # type: ignore[arg-type]
    claimed = [
        *storage.claim(owner="w", now=T0, lease=LEASE, limit=1),
        *storage.claim(owner="w", now=T0, lease=LEASE, limit=1),
    ]
    assert [e.key for e in claimed] == [keys[0], keys[2]]
    assert storage.claim(owner="w", now=T0 + 2 * LEASE, lease=LEASE, limit=10) != ()
    assert keys[1] not in [
        e.key for e in storage.claim(owner="v", now=T0 + 4 * LEASE, lease=LEASE, limit=10)
    ]
    assert storage.get(SHOP, "r-1").needs_attention
    assert _errors(logged, keys[1], "set aside (marked dead)")
    assert storage.outbox(SHOP, "r-1") == ()
    with pytest.raises(PortRejected, match=re.escape(keys[1])):
        storage.settle(SHOP, Settlement(keys[1], "w", EffectState.DONE))
    assert len(storage._pending) == 2  # the index holds the healthy two


@pytest.mark.parametrize("stored", ["k-1", "another key", "another result"])
def test_memory_treats_whatever_is_left_under_an_idempotency_key_as_a_damaged_row(
    stored: str,
) -> None:
    storage = MemoryStorage()
    request = sample_request("r-1").submitted().request
    record = IdempotencyRecord(SHOP, "k-1", "fp", "r-1", request)
    storage.commit(Commit(request, None, idempotency=record))
    damaged = {
        "k-1": "k-1",
        "another key": attrs.evolve(record, key="k-2"),
        "another result": attrs.evolve(record, result=_other_request()),
    }[stored]
    storage._idempotency[(SHOP, "k-1")] = damaged  # type: ignore[assignment]
    with pytest.raises(PortRejected, match=rf"shop {SHOP}: .*'k-1'"):
        storage.idempotency_record(SHOP, "k-1")
