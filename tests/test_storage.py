"""The storage adapters: the contract suite against each, then what is particular to each."""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import json
import logging
import multiprocessing
import os
import pickle
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from retouraanvraag._codec import (
    effect_from_json,
    effect_to_json,
    request_from_json,
    request_to_dict,
    request_to_json,
)
from retouraanvraag.adapters import MemoryStorage, SqliteStorage
from retouraanvraag.adapters import memory as memory_adapter
from retouraanvraag.adapters import sqlite as sqlite_adapter
from retouraanvraag.adapters._common import is_due
from retouraanvraag.errors import (
    ConcurrentModification,
    InvalidInput,
    PortRejected,
    PortUnavailable,
)
from retouraanvraag.model import (
    Actor,
    Effect,
    MailKind,
    Money,
    RefundRecord,
    ReturnRequest,
    Status,
)
from retouraanvraag.ports import (
    Commit,
    EffectState,
    IdempotencyRecord,
    OutboxEntry,
    Query,
    Settlement,
    Storage,
    Tab,
)
from retouraanvraag.testing._threads import errors_of, run_at_once
from retouraanvraag.testing.storage_contract import (
    SHOP,
    T0,
    StorageContract,
    return_requests,
    sample_request,
)

LEASE = dt.timedelta(seconds=30)


class TestMemoryStorage(StorageContract):
    def make_storage(self) -> Storage:
        return MemoryStorage()

    # MemoryStorage keeps objects, not bytes: damage is an object that is not its key's.

    def damage_request(self, storage: Storage, shop_id: str, request_id: str) -> None:
        assert isinstance(storage, MemoryStorage)
        with storage._lock:
            stored = storage._requests[(shop_id, request_id)]
            storage._requests[(shop_id, request_id)] = attrs.evolve(stored, id="someone-else")

    def damage_outbox_entry(self, storage: Storage, shop_id: str, key: str) -> None:
        assert isinstance(storage, MemoryStorage)
        with storage._lock:
            queued = storage._outbox[(shop_id, key)]
            effect = attrs.evolve(queued.entry.effect, key=f"{key}-elsewhere")
            entry = attrs.evolve(queued.entry, effect=effect)
            storage._outbox[(shop_id, key)] = attrs.evolve(queued, entry=entry)

    def damage_idempotency_record(self, storage: Storage, shop_id: str, key: str) -> None:
        assert isinstance(storage, MemoryStorage)
        with storage._lock:
            record = storage._idempotency[(shop_id, key)]
            result = attrs.evolve(record.result, id="someone-else")
            storage._idempotency[(shop_id, key)] = attrs.evolve(record, result=result)


class _SqliteDamage(StorageContract):
    """Damage as a bad disk would: bytes that are not UTF-8 in a row's TEXT (the JSON)."""

    def execute(self, storage: Storage, sql: str, params: tuple[object, ...]) -> None:
        assert isinstance(storage, SqliteStorage)
        storage._write(lambda connection: connection.execute(sql, params))

    def damage_request(self, storage: Storage, shop_id: str, request_id: str) -> None:
        sql = "UPDATE requests SET body = CAST(x'80' AS TEXT) || body WHERE shop_id = ? AND id = ?"
        self.execute(storage, sql, (shop_id, request_id))

    def damage_outbox_entry(self, storage: Storage, shop_id: str, key: str) -> None:
        sql = (
            "UPDATE outbox SET effect = effect || CAST(x'c3' AS TEXT) WHERE shop_id = ? AND key = ?"
        )
        self.execute(storage, sql, (shop_id, key))

    def damage_idempotency_record(self, storage: Storage, shop_id: str, key: str) -> None:
        sql = "UPDATE idempotency SET result = CAST(x'ff' AS TEXT) WHERE shop_id = ? AND key = ?"
        self.execute(storage, sql, (shop_id, key))


class TestSqliteStorageInMemory(_SqliteDamage):
    def make_storage(self) -> Storage:
        return SqliteStorage(":memory:")


class TestSqliteStorageOnFile(_SqliteDamage):
    @pytest.fixture(autouse=True)
    def _directory(self, tmp_path: Path) -> None:
        self.directory = tmp_path

    def make_storage(self) -> Storage:
        return SqliteStorage(self.directory / "returns.sqlite3")

    def execute(self, storage: Storage, sql: str, params: tuple[object, ...]) -> None:
        """Raw SQL on the file, from a connection of its own: another program."""
        assert isinstance(storage, SqliteStorage)
        raw = sqlite3.connect(storage.path)
        try:
            raw.execute(sql, params)
            raw.commit()
        finally:
            raw.close()


def submit(storage: Storage, request: ReturnRequest) -> ReturnRequest:
    change = request.submitted()
    return storage.commit(Commit(change.request, None, change.effects))


@pytest.fixture(params=["memory", "sqlite"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    if request.param == "memory":
        yield MemoryStorage()
        return
    with SqliteStorage(tmp_path / "returns.sqlite3") as opened:
        yield opened


@pytest.fixture
def database(tmp_path: Path) -> Path:
    return tmp_path / "returns.sqlite3"


# -- both adapters: input that means nothing -----------------------------------------------


FAR_FUTURE = dt.datetime(9999, 12, 31, 23, tzinfo=dt.timezone(-dt.timedelta(hours=5)))


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"owner": ""}, "owner"),
        ({"now": T0.replace(tzinfo=None)}, "now"),
        ({"now": FAR_FUTURE}, "now"),
        ({"lease": dt.timedelta(0)}, "lease"),
        ({"limit": -1}, "limit"),
    ],
)
def test_claim_refuses_arguments_that_mean_nothing(
    storage: Storage, changes: dict[str, object], field: str
) -> None:
    arguments: dict[str, object] = {"owner": "w", "now": T0, "lease": LEASE, "limit": 1}
    arguments.update(changes)
    with pytest.raises(InvalidInput) as caught:
        storage.claim(**arguments)  # type: ignore[arg-type]
    assert caught.value.field == field


def test_commit_refuses_an_effect_of_another_request(storage: Storage) -> None:
    request = sample_request().submitted().request
    with pytest.raises(InvalidInput, match="belongs to request other"):
        storage.commit(Commit(request, None, (Effect.refund(SHOP, "other"),)))
    assert storage.outbox(SHOP, "other") == ()


@pytest.mark.parametrize(("shop", "request_id"), [("shop-b", None), (SHOP, "other")])
def test_commit_refuses_an_idempotency_record_of_another_request(
    storage: Storage, shop: str, request_id: str | None
) -> None:
    request = sample_request().submitted().request
    record = IdempotencyRecord(shop, "k", "fp", request_id or request.id, request)
    with pytest.raises(InvalidInput) as caught:
        storage.commit(Commit(request, None, idempotency=record))
    assert caught.value.field == "idempotency"


def test_commit_refuses_an_expected_version_below_1(storage: Storage) -> None:
    with pytest.raises(InvalidInput):
        storage.commit(Commit(sample_request().submitted().request, 0))


def test_commit_refuses_a_naive_retry_time(storage: Storage) -> None:
    saved = submit(storage, sample_request())
    (entry,) = storage.claim(owner="w", now=T0, lease=LEASE, limit=1)
    naive = T0.replace(tzinfo=None)
    settle = Settlement(entry.key, "w", EffectState.PENDING, "timeout", naive)
    with pytest.raises(InvalidInput) as caught:
        storage.commit(Commit(saved, saved.version, settle=settle))
    assert caught.value.field == "retry_at"
    assert storage.outbox(SHOP, saved.id) == (entry,)


def test_query_refuses_naive_bounds(storage: Storage) -> None:
    with pytest.raises(InvalidInput):
        storage.query(SHOP, Query(created_from=T0.replace(tzinfo=None)))
    with pytest.raises(InvalidInput):
        storage.query(SHOP, Query(created_before=T0.replace(tzinfo=None)))


def test_query_refuses_a_non_ascii_cursor(storage: Storage) -> None:
    with pytest.raises(InvalidInput):
        storage.query(SHOP, Query(cursor="é"))


def test_a_request_whose_creation_moves_is_listed_at_its_new_place(storage: Storage) -> None:
    first = submit(storage, sample_request("first", created_at=T0))
    submit(storage, sample_request("second", created_at=T0 + LEASE))
    storage.commit(Commit(attrs.evolve(first, created_at=T0 + 2 * LEASE), first.version))
    assert [r.id for r in storage.query(SHOP, Query()).items] == ["second", "first"]


def test_refund_in_another_currency_than_the_fee_is_rejected(storage: Storage) -> None:
    saved = submit(storage, sample_request(fee=495))
    refund = RefundRecord("refund:x", Money(100, "USD"), "re_1", T0)
    with pytest.raises(PortRejected, match="USD"):
        storage.commit(Commit(attrs.evolve(saved, refunds=(refund,)), saved.version))


def test_conflict_errors_name_the_key_or_lease_and_pickle(storage: Storage) -> None:
    saved = submit(storage, sample_request())
    record = IdempotencyRecord(SHOP, "k-1", "fp", saved.id, saved)
    storage.commit(Commit(saved, saved.version, idempotency=record))
    with pytest.raises(ConcurrentModification) as taken:
        storage.commit(Commit(saved, 2, idempotency=record))
    with pytest.raises(ConcurrentModification) as lost:
        storage.commit(Commit(saved, 2, settle=Settlement("mail:x", "w9", EffectState.DONE)))
    for caught, words in ((taken, "'k-1'"), (lost, "not leased to 'w9'")):
        assert words in str(caught.value)
        copy = pickle.loads(pickle.dumps(caught.value))  # noqa: S301 - our own bytes
        assert (str(copy), copy.request_id) == (str(caught.value), saved.id)


# -- SQLite: schema, file, errors ----------------------------------------------------------


def test_a_file_keeps_its_requests_across_opens(database: Path) -> None:
    with SqliteStorage(database) as storage:
        saved = submit(storage, sample_request("r-1"))
        assert storage.path == str(database)
    with SqliteStorage(database) as storage:
        assert storage.get(SHOP, "r-1") == saved
        assert [e.key for e in storage.outbox(SHOP, "r-1")] == [
            Effect.send_mail(SHOP, "r-1", MailKind.REQUEST_RECEIVED).key
        ]
    raw = sqlite3.connect(database)
    assert raw.execute("PRAGMA user_version").fetchone() == (sqlite_adapter.SCHEMA_VERSION,)
    assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    raw.close()


def test_a_schema_newer_than_the_code_is_refused_clearly(database: Path) -> None:
    SqliteStorage(database).close()
    raw = sqlite3.connect(database)
    raw.execute("PRAGMA user_version = 99")
    raw.close()
    newer = rf"schema version 99, newer than the {sqlite_adapter.SCHEMA_VERSION} "
    with pytest.raises(PortRejected, match=newer):
        SqliteStorage(database)


def test_a_file_that_is_not_a_database_is_refused(database: Path) -> None:
    database.write_bytes(b"these are not the pages you are looking for" * 100)
    with pytest.raises(PortRejected, match="not a database"):
        SqliteStorage(database)


def test_a_database_that_cannot_be_opened_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(PortUnavailable, match="unable to open"):
        SqliteStorage(tmp_path / "missing" / "returns.sqlite3")


def test_the_money_cap_is_a_constraint_of_the_database_itself(database: Path) -> None:
    with SqliteStorage(database) as storage:
        saved = submit(storage, sample_request(fee=495))
    raw = sqlite3.connect(database)
    with pytest.raises(sqlite3.IntegrityError, match="money_cap"):
        raw.execute("UPDATE requests SET refunded_minor = 496 WHERE id = ?", (saved.id,))
    raw.close()


def test_an_integrity_error_from_the_database_is_rejected(database: Path) -> None:
    with SqliteStorage(database) as storage:
        saved = submit(storage, sample_request())
        raw = sqlite3.connect(database)
        raw.execute(
            "CREATE TRIGGER no_updates BEFORE UPDATE ON requests "
            "BEGIN SELECT RAISE(ABORT, 'frozen by the host'); END"
        )
        raw.commit()
        raw.close()
        with pytest.raises(PortRejected, match="frozen by the host"):
            storage.commit(Commit(saved, saved.version))
        assert storage.get(SHOP, saved.id) == saved


def test_a_corrupt_row_is_rejected_not_returned(database: Path) -> None:
    with SqliteStorage(database) as storage:
        saved = submit(storage, sample_request("r-1"))
        raw = sqlite3.connect(database)
        raw.execute("UPDATE requests SET body = '{\"id\": 1}' WHERE id = 'r-1'")
        raw.commit()
        raw.close()
        with pytest.raises(PortRejected, match="r-1"):
            storage.get(SHOP, saved.id)


def test_creation_times_are_stored_as_sortable_utc_text(database: Path) -> None:
    plus_two = dt.timezone(dt.timedelta(hours=2))
    with SqliteStorage(database) as storage:
        submit(
            storage, sample_request("r-1", created_at=dt.datetime(2026, 3, 1, 1, tzinfo=plus_two))
        )
        assert storage.get(SHOP, "r-1").created_at.utcoffset() == dt.timedelta(hours=2)
    raw = sqlite3.connect(database)
    assert raw.execute("SELECT created_at FROM requests").fetchone() == (
        "2026-02-28T23:00:00.000000Z",
    )
    raw.close()


def test_a_busy_database_is_reported_unavailable_and_changes_nothing(database: Path) -> None:
    with SqliteStorage(database, timeout=0.05) as storage:
        saved = submit(storage, sample_request("r-1"))
        blocker = sqlite3.connect(database, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        with pytest.raises(PortUnavailable, match="busy"):
            storage.commit(Commit(attrs.evolve(saved, carrier="DHL"), saved.version))
        # Readers are not blocked by a writer in WAL mode.
        assert storage.get(SHOP, "r-1") == saved
        blocker.execute("ROLLBACK")
        blocker.close()
        assert storage.commit(Commit(saved, saved.version)).version == 2


def test_busy_errors_are_retried_until_they_pass(database: Path) -> None:
    with SqliteStorage(database) as storage:
        failures = [sqlite3.OperationalError("database is locked") for _ in range(3)]
        for failure in failures:
            failure.sqlite_errorcode = sqlite3.SQLITE_BUSY
        calls: list[int] = []

        def flaky() -> str:
            calls.append(1)
            if failures:
                raise failures.pop()
            return "done"

        assert storage._retrying(flaky) == "done"
        assert len(calls) == 4


def test_other_operational_errors_are_unavailable_at_once(database: Path) -> None:
    with SqliteStorage(database) as storage:
        calls: list[int] = []

        def broken() -> None:
            calls.append(1)
            raise sqlite3.OperationalError("disk I/O error")

        with pytest.raises(PortUnavailable, match="disk I/O"):
            storage._retrying(broken)
        assert calls == [1]


def test_a_closed_storage_refuses_every_call(database: Path) -> None:
    storage = SqliteStorage(database)
    submit(storage, sample_request("r-1"))
    storage.close()
    storage.close()
    with pytest.raises(PortRejected, match="closed"):
        storage.get(SHOP, "r-1")
    errors: list[BaseException] = []

    def elsewhere() -> None:
        try:
            storage.get(SHOP, "r-1")
        except PortRejected as exc:
            errors.append(exc)

    thread = threading.Thread(target=elsewhere)
    thread.start()
    thread.join()
    assert len(errors) == 1


def test_a_connection_opened_while_closing_is_closed_again(database: Path) -> None:
    storage = SqliteStorage(database)
    storage._closed = True
    with pytest.raises(PortRejected, match="closed"):
        storage._open()
    storage.close()


def test_a_threads_connection_is_released_when_the_thread_ends(database: Path) -> None:
    with SqliteStorage(database) as storage:
        submit(storage, sample_request("r-1"))
        assert len(storage._connections) == 1
        seen: list[ReturnRequest] = []
        thread = threading.Thread(target=lambda: seen.append(storage.get(SHOP, "r-1")))
        thread.start()
        thread.join()
        del thread
        gc.collect()
        assert len(seen) == 1
        assert len(storage._connections) == 1


def test_in_memory_database_is_shared_by_the_instances_threads() -> None:
    with SqliteStorage() as storage:
        seen: list[ReturnRequest] = []
        saved = submit(storage, sample_request("r-1"))
        thread = threading.Thread(target=lambda: seen.append(storage.get(SHOP, "r-1")))
        thread.start()
        thread.join()
        assert seen == [saved]
        assert storage.path == ":memory:"


def test_listing_a_tab_uses_the_status_index_and_no_offset(database: Path) -> None:
    with SqliteStorage(database) as storage:
        for n in range(5):
            submit(storage, sample_request(f"r{n}", created_at=T0 + n * LEASE))
        statements: list[str] = []
        storage._connection().set_trace_callback(statements.append)
        first = storage.query(
            SHOP,
            Query(statuses=Tab.INCOMING.statuses | Tab.REQUESTS.statuses, limit=2),  # type: ignore[arg-type, unused-ignore]
        )
        storage.query(
            SHOP,
            Query(statuses=Tab.REQUESTS.statuses, limit=2, cursor=first.next_cursor),  # type: ignore[arg-type, unused-ignore]
        )
        storage.query(SHOP, Query(needs_attention=True, created_from=T0, created_before=T0 + LEASE))
        storage._connection().set_trace_callback(None)
        selects = [s for s in statements if s.lstrip().startswith("SELECT")]
        assert len(selects) == 3
        raw = sqlite3.connect(database)
        for select in selects:
            assert "OFFSET" not in select.upper()
            plan = " | ".join(row[3] for row in raw.execute("EXPLAIN QUERY PLAN " + select))
            assert "SCAN requests" not in plan, plan
            assert "USING INDEX requests_" in plan, plan
        raw.close()


def test_a_picky_predicate_yields_short_pages_that_still_cover_everything(
    database: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_adapter, "_SCAN_BUDGET", 4)
    monkeypatch.setattr(sqlite_adapter, "_BATCH", 2)
    with SqliteStorage(database) as storage:
        for n in range(9):
            submit(storage, sample_request(f"r{n}", created_at=T0 + n * LEASE))
        query = Query(where=lambda r: r.id in {"r6", "r8"}, limit=1)
        pages = []
        while True:
            page = storage.query(SHOP, query)
            pages.append([r.id for r in page.items])
            if page.next_cursor is None:
                break
            query = attrs.evolve(query, cursor=page.next_cursor)
        assert pages == [[], ["r6"], ["r8"]]


# -- SQLite: many threads and processes on one file ----------------------------------------


def _hammer(storage: Storage, worker: int, shared: list[str], rounds: int) -> list[str]:
    """Submit own requests, race to decide shared ones, claim and settle; return decided ids."""
    decided = []
    for i in range(rounds):
        submit(storage, sample_request(f"w{worker}-{os.getpid()}-{i}", created_at=T0 + i * LEASE))
        current = storage.get(SHOP, shared[i % len(shared)])
        if current.status is Status.REQUESTED:
            if worker % 2:
                change = current.reject(
                    reason="Te laat", actor=Actor.staff(f"staff-{worker}"), at=T0
                )
            else:
                change = current.approve(
                    with_label=True,
                    refund_return_fee=True,
                    actor=Actor.staff(f"staff-{worker}"),
                    at=T0,
                )
            try:
                storage.commit(Commit(change.request, current.version, change.effects))
                decided.append(current.id)
            except ConcurrentModification:
                pass
        storage.query(SHOP, Query(statuses=Tab.REQUESTS.statuses, limit=5))  # type: ignore[arg-type, unused-ignore]
        owner = f"w{worker}-{os.getpid()}"
        for entry in storage.claim(owner=owner, now=T0, lease=LEASE, limit=2):
            request = storage.get(entry.shop_id, entry.effect.request_id)
            settle = Settlement(entry.key, owner, EffectState.DONE)
            # A lost race: the request moved on and the entry stays leased until it runs out.
            with contextlib.suppress(ConcurrentModification):
                storage.commit(Commit(request, request.version, settle=settle))
    return decided


def _run_threads(count: int, target: Callable[[int], None]) -> list[BaseException]:
    return errors_of(run_at_once(count, target))


def _decisions(storage: Storage, request_id: str) -> list[str]:
    request = storage.get(SHOP, request_id)
    return [h.command for h in request.history if h.command != "submit"]


def test_eight_threads_hammering_one_file_decide_each_request_once(database: Path) -> None:
    with SqliteStorage(database) as storage:
        shared = [submit(storage, sample_request(f"s{n}")).id for n in range(6)]
        decided: list[str] = []
        errors = _run_threads(8, lambda n: decided.extend(_hammer(storage, n, shared, 12)))
        assert errors == []
        assert sorted(decided) == sorted(shared)
        for request_id in shared:
            assert len(_decisions(storage, request_id)) == 1
        assert len(storage.query(SHOP, Query(limit=500)).items) == 6 + 8 * 12


def _process(
    path: str, worker: int, shared: list[str], start: multiprocessing.synchronize.Event
) -> None:
    start.wait()
    with SqliteStorage(path, timeout=30) as storage:
        _hammer(storage, worker, shared, 25)


def test_four_processes_on_one_file_decide_each_request_once(database: Path) -> None:
    with SqliteStorage(database) as storage:
        shared = [submit(storage, sample_request(f"s{n}")).id for n in range(10)]
    context = multiprocessing.get_context("fork")
    start = context.Event()
    workers = [
        context.Process(target=_process, args=(str(database), n, shared, start)) for n in range(4)
    ]
    for worker in workers:
        worker.start()
    start.set()
    for worker in workers:
        worker.join(timeout=120)
    assert [w.exitcode for w in workers] == [0, 0, 0, 0]
    with SqliteStorage(database) as storage:
        for request_id in shared:
            assert len(_decisions(storage, request_id)) == 1
        assert len(storage.query(SHOP, Query(limit=500)).items) == 10 + 4 * 25


def _use_inherited(storage: SqliteStorage, request_id: str) -> None:
    request = storage.get(SHOP, request_id)
    storage.commit(Commit(attrs.evolve(request, carrier="child"), request.version))


def test_a_forked_child_opens_its_own_connection(database: Path) -> None:
    with SqliteStorage(database) as storage:
        saved = submit(storage, sample_request("r-1"))
        child = multiprocessing.get_context("fork").Process(
            target=_use_inherited, args=(storage, saved.id)
        )
        child.start()
        child.join(timeout=60)
        assert child.exitcode == 0
        assert storage.get(SHOP, "r-1").carrier == "child"


# -- decoding never lets a raw error out ---------------------------------------------------

DEEP = "[" * 100_000 + "]" * 100_000


@pytest.mark.parametrize("decode", [request_from_json, effect_from_json])
@pytest.mark.parametrize(
    "text",
    [
        "",
        "not json",
        b"\xff\xfe",
        "null",
        "[]",
        '{"id": 1}',
        DEEP,
        '{"shop_id": ' + DEEP + "}",
        '{"kind": "refund", "key": "refund:r", "request_id": ' + DEEP + "}",
    ],
    ids=lambda v: repr(v)[:20],
)
def test_undecodable_text_raises_invalid_input(
    decode: Callable[[str | bytes], object], text: str | bytes
) -> None:
    with pytest.raises(InvalidInput, match="not a valid"):
        decode(text)


def test_a_timestamp_that_is_not_text_or_has_no_zone_raises_invalid_input() -> None:
    body = request_to_dict(sample_request("r-1"))
    for value in (1_700_000_000, "2026-03-01T09:00:00"):
        with pytest.raises(InvalidInput, match=r"ISO 8601 timestamp|has no time zone"):
            request_from_json(json.dumps({**body, "created_at": value}))
    assert request_from_json(json.dumps(body)) == sample_request("r-1")


def _json_values() -> st.SearchStrategy[object]:
    scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10)
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
        max_leaves=8,
    )


@settings(max_examples=300, deadline=None, database=None)
@given(st.data())
def test_a_stored_request_with_any_field_replaced_decodes_or_raises_invalid_input(
    data: st.DataObject,
) -> None:
    request = data.draw(return_requests())
    body = json.loads(request_to_json(request))
    field = data.draw(st.sampled_from(sorted(body)))
    body[field] = data.draw(_json_values())
    with contextlib.suppress(InvalidInput):
        request_from_json(json.dumps(body))


@settings(max_examples=200, deadline=None, database=None)
@given(st.sampled_from(["kind", "key", "request_id", "mail", "extra"]), _json_values())
def test_a_stored_effect_with_any_field_replaced_decodes_or_raises_invalid_input(
    field: str, value: object
) -> None:
    body = json.loads(effect_to_json(Effect.send_mail(SHOP, "r-1", MailKind.REQUEST_RECEIVED)))
    body[field] = value
    with contextlib.suppress(InvalidInput):
        effect_from_json(json.dumps(body))


# -- SQLite: corrupt rows are reported or set aside, never stop the world ------------------


def _raw(database: Path, sql: str, *params: object) -> None:
    raw = sqlite3.connect(database)
    raw.execute(sql, params)
    raw.commit()
    raw.close()


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def logged() -> Iterator[_Records]:
    handler = _Records()
    logger = logging.getLogger("retouraanvraag")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


CORRUPT_EFFECTS = {
    "not json": ("effect", "{not json"),
    "deeply nested": ("effect", DEEP),
    "an effect of another key": ("effect", effect_to_json(Effect.refund(SHOP, "r-1"))),
    "attempts not a number": ("attempts", "many"),
    "a lease time not written by the store": ("lease_until", "2026-03-01"),
}


@pytest.mark.parametrize(("column", "value"), CORRUPT_EFFECTS.values(), ids=CORRUPT_EFFECTS)
def test_claim_sets_a_corrupt_outbox_row_aside_and_hands_out_the_good_ones(
    database: Path, logged: _Records, column: str, value: str
) -> None:
    with SqliteStorage(database) as storage:
        keys = []
        for n in range(4):
            saved = submit(storage, sample_request(f"r-{n}", created_at=T0 + n * LEASE))
            keys.append(storage.outbox(SHOP, saved.id)[0].key)
        _raw(database, f"UPDATE outbox SET {column} = ? WHERE key = ?", value, keys[1])  # noqa: S608
        claimed = storage.claim(owner="w1", now=T0, lease=LEASE, limit=3)
        assert [e.key for e in claimed] == [keys[0], keys[2], keys[3]]
        assert all(e.lease_owner == "w1" for e in claimed)
        assert storage.claim(owner="w2", now=T0 + 2 * LEASE, lease=LEASE, limit=5) != ()
        raw = sqlite3.connect(database)
        state, error, owner = raw.execute(
            "SELECT state, last_error, lease_owner FROM outbox WHERE key = ?", (keys[1],)
        ).fetchone()
        raw.close()
        assert (state, owner) == ("dead", None)
        assert error.startswith("corrupt outbox row: ")
        (record,) = [r for r in logged.records if r.levelno == logging.ERROR]
        assert keys[1] in record.getMessage()
        assert "r-1" in record.getMessage()


def test_claim_of_only_corrupt_rows_hands_out_nothing_and_marks_them_all_dead(
    database: Path, logged: _Records
) -> None:
    with SqliteStorage(database) as storage:
        for n in range(3):
            submit(storage, sample_request(f"r-{n}", created_at=T0 + n * LEASE))
        _raw(database, "UPDATE outbox SET effect = '[]'")
        assert storage.claim(owner="w1", now=T0, lease=LEASE, limit=2) == ()
        raw = sqlite3.connect(database)
        assert raw.execute("SELECT state FROM outbox").fetchall() == [("dead",)] * 3
        raw.close()
        assert len(logged.records) == 3


def test_a_corrupt_outbox_row_is_left_out_when_listed_and_rejected_when_settled(
    database: Path, logged: _Records
) -> None:
    with SqliteStorage(database) as storage:
        saved = submit(storage, sample_request("r-1"))
        (entry,) = storage.claim(owner="w1", now=T0, lease=LEASE, limit=1)
        _raw(database, "UPDATE outbox SET effect = 'nope'")
        assert storage.outbox(SHOP, "r-1") == ()
        (record,) = logged.records
        assert f"shop {SHOP}: outbox entry '{entry.key}' of request r-1" in record.getMessage()
        with pytest.raises(PortRejected, match=entry.key):
            storage.settle(SHOP, Settlement(entry.key, "w1", EffectState.DONE))
        with pytest.raises(PortRejected, match=entry.key):
            storage.commit(
                Commit(saved, saved.version, settle=Settlement(entry.key, "w1", EffectState.DONE))
            )
        assert storage.get(SHOP, "r-1") == saved


def test_a_dead_corrupt_row_can_be_revived_and_is_set_aside_again(
    database: Path, logged: _Records
) -> None:
    with SqliteStorage(database) as storage:
        saved = submit(storage, sample_request("r-1"))
        key = storage.outbox(SHOP, "r-1")[0].key
        _raw(database, "UPDATE outbox SET effect = 'nope'")
        assert storage.claim(owner="w1", now=T0, lease=LEASE, limit=1) == ()
        flagged = storage.get(SHOP, "r-1")
        assert (flagged.version, flagged.needs_attention) == (saved.version + 1, True)
        storage.commit(Commit(flagged, flagged.version, revive=(key,)))
        assert storage.claim(owner="w1", now=T0, lease=LEASE, limit=1) == ()
        assert len(logged.records) == 2


CORRUPT_BODIES = {
    "not json": "{not json",
    "deeply nested": DEEP,
    "nested in a field": '{"id": ' + DEEP + "}",
    "a request missing fields": '{"id": "r-1"}',
    "another request": request_to_json(sample_request("r-9")),
}


@pytest.mark.parametrize("body", CORRUPT_BODIES.values(), ids=CORRUPT_BODIES)
def test_get_of_a_corrupt_request_row_is_rejected_naming_shop_and_request(
    database: Path, body: str
) -> None:
    with SqliteStorage(database) as storage:
        submit(storage, sample_request("r-1"))
        _raw(database, "UPDATE requests SET body = ? WHERE id = 'r-1'", body)
        with pytest.raises(PortRejected, match=rf"shop {SHOP}: request r-1: .*cannot be read"):
            storage.get(SHOP, "r-1")


@pytest.mark.parametrize("where", [None, lambda _: True])
def test_a_listing_that_reaches_a_corrupt_row_leaves_it_out_and_logs_it(
    database: Path, logged: _Records, where: Callable[[ReturnRequest], bool] | None
) -> None:
    with SqliteStorage(database) as storage:
        for n in range(5):
            submit(storage, sample_request(f"r-{n}", created_at=T0 + n * LEASE))
        _raw(database, "UPDATE requests SET body = ? WHERE id = 'r-3'", DEEP)
        first = storage.query(SHOP, Query(limit=2, where=where))
        assert [r.id for r in first.items] == ["r-0", "r-1"]
        assert logged.records == []
        second = storage.query(SHOP, Query(limit=2, where=where, cursor=first.next_cursor))
        assert [r.id for r in second.items] == ["r-2", "r-4"]  # the page is full all the same
        assert second.next_cursor is None
        tab = storage.query(SHOP, Query(statuses=Tab.REQUESTS.statuses))  # type: ignore[arg-type, unused-ignore]
        assert [r.id for r in tab.items] == ["r-0", "r-1", "r-2", "r-4"]
        assert len(logged.records) == 2
        for record in logged.records:
            assert record.levelno == logging.ERROR
            assert f"shop {SHOP}: request r-3: the stored row cannot be read" in record.getMessage()
            assert (record.shop_id, record.request_id) == (SHOP, "r-3")  # type: ignore[attr-defined]


def test_a_corrupt_idempotency_result_is_rejected_naming_the_key(database: Path) -> None:
    with SqliteStorage(database) as storage:
        request = sample_request("r-1").submitted().request
        record = IdempotencyRecord(SHOP, "k-1", "fp", "r-1", request)
        storage.commit(Commit(request, None, idempotency=record))
        _raw(database, "UPDATE idempotency SET result = '[1]'")
        with pytest.raises(PortRejected, match=rf"shop {SHOP}: .*'k-1' \(request r-1\)"):
            storage.idempotency_record(SHOP, "k-1")


# -- memory: claims walk the pending entries only ------------------------------------------


def test_memory_claim_walks_only_pending_entries_however_long_the_history(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    storage = MemoryStorage()
    keys = []
    for n in range(300):
        saved = submit(storage, sample_request(f"r-{n:03d}", created_at=T0 + n * LEASE))
        keys.append(storage.outbox(SHOP, saved.id)[0].key)
    # Settle all but every 30th: most done, some dead, some waiting for a retry an hour on.
    later = T0 + dt.timedelta(hours=1)
    expected_now, expected_later = [], []
    for n, entry in enumerate(storage.claim(owner="w", now=T0, lease=LEASE, limit=1000)):
        if n % 30 == 0:
            expected_now.append(entry.key)
            continue
        if n % 30 == 1:
            settlement = Settlement(entry.key, "w", EffectState.PENDING, "busy", later)
            expected_later.append(entry.key)
        elif n % 30 == 2:
            settlement = Settlement(entry.key, "w", EffectState.DEAD, "refused")
        else:
            settlement = Settlement(entry.key, "w", EffectState.DONE)
        storage.settle(SHOP, settlement)
    assert len(storage._pending) == len(expected_now) + len(expected_later) == 20

    looked_at: list[str] = []

    def counting_is_due(entry: OutboxEntry, now: dt.datetime) -> bool:
        looked_at.append(entry.key)
        return is_due(entry, now)

    monkeypatch.setattr(memory_adapter, "is_due", counting_is_due)
    after_lease = T0 + LEASE
    claimed = storage.claim(owner="w2", now=after_lease, lease=LEASE, limit=100)
    assert [e.key for e in claimed] == expected_now
    assert len(looked_at) == 20  # the pending entries, not the 300 of the history
    claimed = storage.claim(owner="w3", now=later + LEASE, lease=LEASE, limit=100)
    assert [e.key for e in claimed] == sorted(expected_now + expected_later, key=keys.index)


# -- both adapters: the outbox index agrees with the outbox ---------------------------------

_OPS = st.lists(
    st.tuples(
        st.sampled_from(["queue", "claim", "done", "retry", "dead", "revive", "tick"]),
        st.integers(0, 9),
    ),
    max_size=40,
)


@settings(max_examples=60, deadline=None, database=None)
@given(_OPS)
def test_memory_and_sqlite_claim_alike_whatever_happened_to_the_outbox(
    ops: list[tuple[str, int]],
) -> None:
    stores: list[Storage] = [MemoryStorage(), SqliteStorage()]
    clock = T0
    for store in stores:
        for n in range(5):
            submit(store, sample_request(f"r-{n}"))
    held: dict[str, str] = {}
    for op, n in ops:
        request_id = f"r-{n % 5}"
        mail = Effect.send_mail(SHOP, request_id, MailKind.REQUEST_RECEIVED)
        key = mail.key if n < 5 else Effect.refund(SHOP, request_id).key
        results = []
        for store in stores:
            try:
                results.append(
                    _apply(store, op, request_id=request_id, key=key, now=clock, held=held)
                )
            except (ConcurrentModification, InvalidInput) as exc:
                results.append(type(exc).__name__)
        assert results[0] == results[1], (op, key)
        if op == "claim" and isinstance(results[0], tuple):
            held.update(dict(results[0]))
        if op == "tick":
            clock += LEASE
    memory, sqlite_store = stores
    assert isinstance(memory, MemoryStorage)
    for n in range(5):
        assert memory.outbox(SHOP, f"r-{n}") == sqlite_store.outbox(SHOP, f"r-{n}")
    pending = {
        (e.shop_id, e.key)
        for n in range(5)
        for e in memory.outbox(SHOP, f"r-{n}")
        if e.state is EffectState.PENDING
    }
    assert {(shop, key) for _, shop, key in memory._pending} == pending
    assert [seq for seq, _, _ in memory._pending] == sorted(seq for seq, _, _ in memory._pending)
    assert isinstance(sqlite_store, SqliteStorage)
    sqlite_store.close()


def _apply(
    store: Storage, op: str, *, request_id: str, key: str, now: dt.datetime, held: dict[str, str]
) -> object:
    """One step of the differential test; returns what both stores must agree on."""
    request = store.get(SHOP, request_id)
    if op == "queue":
        store.commit(Commit(request, request.version, (Effect.refund(SHOP, request_id),)))
        return None
    if op == "claim":
        claimed = store.claim(owner=f"w-{now.timestamp()}", now=now, lease=LEASE, limit=2)
        return tuple((e.key, e.lease_owner or "") for e in claimed)
    if op == "tick":
        return None
    if op == "revive":
        store.commit(Commit(request, request.version, revive=(key,)))
        return None
    states = {"done": EffectState.DONE, "retry": EffectState.PENDING, "dead": EffectState.DEAD}
    retry_at = now + LEASE if op == "retry" else None
    store.settle(SHOP, Settlement(key, held.get(key, "nobody"), states[op], op, retry_at))
    return None
