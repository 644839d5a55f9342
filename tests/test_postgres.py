"""The PostgreSQL store: the contract suite on a real server, then what is particular to it.

The server is the session's throwaway cluster (``tests/_postgres.py``); every test has a schema
of its own. Without PostgreSQL these tests skip (with ``CI=true`` they fail).
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import io
import itertools
import json
import multiprocessing
import os
import random
import select
import socket
import string
import threading
import traceback
from collections.abc import Callable, Iterator
from typing import Any

import attrs
import psycopg
import pytest
from psycopg import errors as pg_errors

from retouraanvraag.adapters import postgres as postgres_adapter
from retouraanvraag.adapters._common import plan_commit
from retouraanvraag.adapters.postgres import SCHEMA_VERSION, PostgresStorage, describe, migrate
from retouraanvraag.cli import main
from retouraanvraag.errors import (
    ConcurrentModification,
    IdempotencyKeyTaken,
    InvalidInput,
    LeaseLost,
    NotFound,
    PortRejected,
    PortUnavailable,
)
from retouraanvraag.model import Effect, ReturnRequest, Status
from retouraanvraag.ports import (
    Commit,
    EffectState,
    IdempotencyRecord,
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
    sample_request,
)

from . import _postgres
from .conftest import SHOP as SHOP_1
from .conftest import build_world

LEASE = dt.timedelta(seconds=30)


def execute(url: str, statement: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
    """Raw SQL from a connection of its own: another program on the same database."""
    with psycopg.connect(url, autocommit=True) as raw:
        cursor = raw.execute(statement, params or None)
        return cursor.fetchall() if cursor.description else []


class TestPostgresStorage(StorageContract):
    """Damage as only another program can do it here: the database checks every column's type,
    so a damaged row holds well-formed values that are not what a commit writes."""

    def make_storage(self) -> Storage:
        return PostgresStorage(_postgres.server().fresh_url())

    @staticmethod
    def execute(storage: Storage, statement: str, params: tuple[object, ...]) -> None:
        assert isinstance(storage, PostgresStorage)
        execute(storage._conninfo, statement, params)

    def damage_request(self, storage: Storage, shop_id: str, request_id: str) -> None:
        self.execute(
            storage,
            "UPDATE requests SET body = jsonb_set(body, '{order_number}', '17') "
            "WHERE shop_id = %s AND id = %s",
            (shop_id, request_id),
        )

    def damage_outbox_entry(self, storage: Storage, shop_id: str, key: str) -> None:
        self.execute(
            storage,
            'UPDATE outbox SET effect = \'{"kind": "teleport"}\' WHERE shop_id = %s AND key = %s',
            (shop_id, key),
        )

    def damage_idempotency_record(self, storage: Storage, shop_id: str, key: str) -> None:
        self.execute(
            storage,
            "UPDATE idempotency SET result = '[]' WHERE shop_id = %s AND key = %s",
            (shop_id, key),
        )


@pytest.fixture
def url() -> str:
    return _postgres.server().fresh_url()


@pytest.fixture
def storage(url: str) -> Iterator[PostgresStorage]:
    with PostgresStorage(url) as opened:
        yield opened


def submit(storage: Storage, request: ReturnRequest) -> ReturnRequest:
    change = request.submitted()
    return storage.commit(Commit(change.request, None, change.effects))


# -- the schema and its versions ------------------------------------------------------------


def test_opening_creates_the_schema_and_records_its_version(url: str) -> None:
    PostgresStorage(url).close()
    rows = execute(url, "SELECT version, description FROM retouraanvraag_schema")
    assert [version for version, _ in rows] == list(range(1, SCHEMA_VERSION + 1))
    assert all(description for _, description in rows)
    with PostgresStorage(url, migrate=False) as storage:  # up to date: nothing to do
        assert storage.query(SHOP, Query()).items == ()


def test_migrate_reports_the_versions_before_and_after(url: str) -> None:
    assert migrate(url) == (0, SCHEMA_VERSION)
    assert migrate(url) == (SCHEMA_VERSION, SCHEMA_VERSION)


def test_a_schema_newer_than_the_code_is_refused_clearly(url: str) -> None:
    migrate(url)
    execute(url, "INSERT INTO retouraanvraag_schema (version, description) VALUES (99, 'x')")
    with pytest.raises(PortRejected, match=rf"schema version 99, newer than the {SCHEMA_VERSION}"):
        PostgresStorage(url)
    with pytest.raises(PortRejected, match="newer"):
        migrate(url)


def test_without_migrating_an_old_schema_is_refused_naming_the_command(url: str) -> None:
    with pytest.raises(PortRejected, match="retouraanvraag db migrate"):
        PostgresStorage(url, migrate=False)
    assert execute(url, "SELECT to_regclass('requests')") == [(None,)]


def test_stores_opening_one_new_schema_at_once_migrate_it_once(url: str) -> None:
    opened: list[PostgresStorage] = []
    errors = errors_of(run_at_once(6, lambda _n: opened.append(PostgresStorage(url, max_size=1))))
    for storage in opened:
        storage.close()
    assert errors == []
    assert execute(url, "SELECT count(*) FROM retouraanvraag_schema") == [(SCHEMA_VERSION,)]


def test_schemas_are_separate_stores() -> None:
    server = _postgres.server()
    with PostgresStorage(server.fresh_url()) as one, PostgresStorage(server.fresh_url()) as two:
        submit(one, sample_request("r-1"))
        with pytest.raises(NotFound):
            two.get(SHOP, "r-1")


# -- the database's own guards ----------------------------------------------------------------


def test_the_database_itself_holds_the_money_cap_and_the_fixed_fee(
    storage: PostgresStorage, url: str
) -> None:
    submit(storage, sample_request("r-1", fee=495))
    with pytest.raises(pg_errors.CheckViolation) as above:
        execute(url, "UPDATE requests SET refunded_minor = 496 WHERE id = 'r-1'")
    assert above.value.diag.constraint_name == "money_cap"
    with pytest.raises(pg_errors.CheckViolation) as raised:
        execute(url, "UPDATE requests SET fee_paid_minor = 10000 WHERE id = 'r-1'")
    assert raised.value.diag.constraint_name == "fee_fixed"
    execute(url, "UPDATE requests SET refunded_minor = 495, fee_paid_minor = 495 WHERE id = 'r-1'")
    # What the database refuses is translated into the port's words.
    for error, words in ((above.value, "more than the 495"), (raised.value, "cannot change")):
        assert words in str(postgres_adapter._refused(error, "r-1", 495, 496))


@pytest.mark.parametrize(
    ("statement", "column"),
    [
        ("UPDATE requests SET created_at = 'infinity'", "created_at"),
        ("UPDATE requests SET created_at = '10000-01-01'", "created_at"),
        ("UPDATE outbox SET available_at = '-infinity'", "available_at"),
        ("UPDATE outbox SET lease_until = '0001-01-01 00:00:00+01'", "lease_until"),
    ],
)
def test_times_python_cannot_read_back_cannot_be_stored(
    storage: PostgresStorage, url: str, statement: str, column: str
) -> None:
    submit(storage, sample_request("r-1"))
    with pytest.raises(pg_errors.CheckViolation, match=column):
        execute(url, statement)


def test_times_read_back_alike_whatever_the_sessions_zone(url: str) -> None:
    # Late on 9999-12-31 in UTC is already year 10000 at UTC+14, which Python cannot hold.
    late = dt.datetime(9999, 12, 31, 23, 0, tzinfo=dt.UTC)
    in_kiribati = url.replace("options=", "options=-ctimezone%3DPacific/Kiritimati%20")
    with PostgresStorage(in_kiribati) as storage:
        saved = submit(storage, sample_request("r-1"))
        (entry,) = storage.claim(owner="w", now=late, lease=LEASE, limit=1)
        assert entry.lease_until == late + LEASE
        assert storage.outbox(SHOP, "r-1") == (entry,)
        assert storage.get(SHOP, "r-1") == saved


def test_creation_times_and_ids_order_listings_bytewise(storage: PostgresStorage) -> None:
    # Under a language collation "b" < "B" < "c"; bytewise "B" < "b" < "c", as on every store.
    for name in ("c", "b", "B", "a-2", "a_1"):
        submit(storage, sample_request(name, created_at=T0))
    assert [r.id for r in storage.query(SHOP, Query()).items] == sorted(
        ["c", "b", "B", "a-2", "a_1"]
    )


def test_listing_a_tab_is_an_index_range_per_status_without_offset(url: str) -> None:
    migrate(url)
    # Plenty of rows, so that the planner's choice is the one a large shop gets.
    execute(
        url,
        "INSERT INTO requests SELECT 'big', 'r' || n, 1, "
        "(ARRAY['requested', 'approved', 'completed', 'rejected'])[1 + n % 4], "
        "timestamptz '2026-01-01' + n * interval '1 minute', false, 0, 0, '{}' "
        "FROM generate_series(1, 20000) AS n",
    )
    execute(url, "ANALYZE requests")
    listing = postgres_adapter._Listing.of("big", Query(statuses=Tab.REQUESTS.statuses))
    statement, params = listing.select(("2026-01-02T00:00:00.000000Z", "r9"), 51)
    with psycopg.connect(url, autocommit=True) as raw:
        text = statement.as_string(raw)
        plan = "\n".join(row[0] for row in raw.execute(f"EXPLAIN {text}", params).fetchall())
    assert "requests_by_status" in plan
    assert "Seq Scan" not in plan
    assert "OFFSET" not in text.upper()


# -- the connection, failures and their translation -----------------------------------------


def test_an_unreachable_server_is_unavailable_and_the_password_never_shown() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound, not listening: connections are refused
        target = f"postgresql://anna:s3cret-pw@127.0.0.1:{port}/returns?connect_timeout=1"
        with pytest.raises(PortUnavailable) as caught:
            PostgresStorage(target, timeout=0.5)
    assert f"127.0.0.1:{port}/returns" in str(caught.value)
    assert "s3cret-pw" not in str(caught.value)
    assert describe("host=db.internal dbname=returns password=hunter2") == (
        "PostgreSQL db.internal:5432/returns"
    )
    with pytest.raises(InvalidInput):
        describe("this is = not a connection string")


def test_connections_killed_between_calls_are_replaced_without_a_failure(
    storage: PostgresStorage, url: str
) -> None:
    saved = submit(storage, sample_request("r-1"))
    for n in range(3):
        # A failover or a restart: every connection the pool holds dies.
        execute(
            url,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        saved = storage.commit(Commit(attrs.evolve(saved, carrier="DHL"), saved.version))
        assert storage.get(SHOP, "r-1") == saved
        (entry,) = storage.claim(owner="w", now=T0 + n * 2 * LEASE, lease=LEASE, limit=5)
        assert entry.effect.request_id == "r-1"


def test_conflicts_are_retried_a_bounded_number_of_times(
    storage: PostgresStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    saved = submit(storage, sample_request("r-1"))
    real = plan_commit
    failures = iter(
        [pg_errors.SerializationFailure("could not serialize"), pg_errors.DeadlockDetected("dl")]
    )

    def flaky(*args: Any) -> Any:
        failure = next(failures, None)
        if failure is not None:
            raise failure
        return real(*args)

    monkeypatch.setattr(postgres_adapter, "plan_commit", flaky)
    changed = storage.commit(Commit(attrs.evolve(saved, carrier="DHL"), saved.version))
    assert changed.version == 2
    assert storage.get(SHOP, "r-1") == changed

    def always(*_args: Any) -> Any:
        raise pg_errors.DeadlockDetected("deadlock detected")

    monkeypatch.setattr(postgres_adapter, "plan_commit", always)
    with pytest.raises(PortUnavailable, match="gave up after 6 tries"):
        storage.commit(Commit(changed, changed.version))
    assert storage.get(SHOP, "r-1") == changed


def test_a_statement_timeout_is_unavailable_and_changes_nothing(url: str) -> None:
    with PostgresStorage(url) as storage:
        submit(storage, sample_request("r-1"))
    # A store whose statements may take 50 ms, and a row another program keeps locked.
    slow = url.replace("options=", "options=-clock_timeout%3D50%20")
    with PostgresStorage(slow) as storage, psycopg.connect(url) as other:
        other.execute("SELECT 1 FROM requests WHERE id = 'r-1' FOR UPDATE")
        current = storage.get(SHOP, "r-1")
        with pytest.raises(PortUnavailable, match="lock"):
            storage.commit(Commit(attrs.evolve(current, carrier="DHL"), current.version))
        other.rollback()
        assert storage.get(SHOP, "r-1") == current


def test_a_server_that_turned_read_only_is_unavailable_not_a_refusal(url: str) -> None:
    with PostgresStorage(url) as storage:
        saved = submit(storage, sample_request("r-1"))
    # What a client meets when its server became a standby in a failover.
    standby = url.replace("options=", "options=-cdefault_transaction_read_only%3Don%20")
    with PostgresStorage(standby) as storage:
        assert storage.get(SHOP, "r-1") == saved
        with pytest.raises(PortUnavailable, match="read-only"):
            storage.commit(Commit(attrs.evolve(saved, carrier="DHL"), saved.version))
        with pytest.raises(PortUnavailable, match="read-only"):
            storage.claim(owner="w", now=T0, lease=LEASE, limit=1)


def test_text_postgresql_cannot_hold_names_nothing(storage: PostgresStorage) -> None:
    submit(storage, sample_request("r-1"))
    with pytest.raises(NotFound):
        storage.get(SHOP, "r-1\x00")
    assert storage.idempotency_record(SHOP, "k\x00") is None
    assert storage.outbox(SHOP, "r\x00") == ()
    assert storage.query("shop\x00", Query()).items == ()
    with pytest.raises(InvalidInput) as caught:
        storage.claim(owner="w\x00", now=T0, lease=LEASE, limit=1)
    assert caught.value.field == "owner"
    request = sample_request("r-2").submitted().request
    record = IdempotencyRecord(SHOP, "key\x00", "fp", "r-2", request)
    with pytest.raises(InvalidInput):  # the shared checks refuse such a key first
        storage.commit(Commit(request, None, idempotency=record))
    with pytest.raises(NotFound):
        storage.get(SHOP, "r-2")
    # A text that reaches the database (a revived key): the store's own refusal.
    saved = storage.get(SHOP, "r-1")
    with pytest.raises(InvalidInput, match="NUL"):
        storage.commit(Commit(attrs.evolve(saved, carrier="DHL"), saved.version, revive=("k\x00",)))
    assert storage.get(SHOP, "r-1") == saved


def test_a_closed_storage_refuses_every_call(url: str) -> None:
    storage = PostgresStorage(url)
    storage.close()
    calls: list[Callable[[], object]] = [
        lambda: storage.get(SHOP, "r-1"),
        lambda: storage.query(SHOP, Query()),
        lambda: storage.claim(owner="w", now=T0, lease=LEASE, limit=1),
        lambda: storage.commit(Commit(sample_request().submitted().request, None)),
    ]
    for call in calls:
        with pytest.raises(PortRejected, match="closed"):
            call()
    assert "closed" not in repr(storage)


# -- many workers -----------------------------------------------------------------------------


def test_a_claim_passes_over_rows_another_worker_holds_instead_of_waiting(
    storage: PostgresStorage, url: str
) -> None:
    for n in range(3):
        submit(storage, sample_request(f"r-{n}", created_at=T0 + dt.timedelta(minutes=n)))
    with psycopg.connect(url) as other:
        (held,) = other.execute(
            "SELECT key FROM outbox ORDER BY seq LIMIT 1 FOR UPDATE"
        ).fetchone() or ("",)
        claimed: list[str] = []
        worker = threading.Thread(
            target=lambda: claimed.extend(
                e.key for e in storage.claim(owner="w", now=T0, lease=LEASE, limit=10)
            )
        )
        worker.start()
        worker.join(timeout=30)
        assert not worker.is_alive(), "the claim waited for the locked row"
        other.rollback()
    assert len(claimed) == 2
    assert held not in claimed
    (late,) = storage.claim(owner="w2", now=T0, lease=LEASE, limit=10)
    assert late.key == held


def _decide_many(url: str, worker: int, shared: list[str], rounds: int) -> list[str]:
    """Submit and decide requests of one's own, and race the others for the shared ones."""
    decided: list[str] = []
    with PostgresStorage(url, max_size=2, timeout=30) as storage:
        for n in range(rounds):
            own = submit(storage, sample_request(f"w{worker}-{n}"))
            storage.commit(Commit(attrs.evolve(own, status=Status.APPROVED), own.version))
            request_id = shared[(worker + n) % len(shared)]
            current = storage.get(SHOP, request_id)
            if current.status is Status.REQUESTED:
                with contextlib.suppress(ConcurrentModification):
                    storage.commit(
                        Commit(attrs.evolve(current, status=Status.APPROVED), current.version)
                    )
                    decided.append(request_id)
    return decided


def _process(url: str, worker: int, shared: list[str], start: Any) -> None:
    start.wait()
    _decide_many(url, worker, shared, 25)


def test_four_processes_on_one_database_decide_each_shared_request_once(url: str) -> None:
    with PostgresStorage(url) as storage:
        shared = [submit(storage, sample_request(f"s{n}")).id for n in range(10)]
    context = multiprocessing.get_context("fork")
    start = context.Event()
    workers = [context.Process(target=_process, args=(url, n, shared, start)) for n in range(4)]
    for worker in workers:
        worker.start()
    start.set()
    for worker in workers:
        worker.join(timeout=120)
    assert [w.exitcode for w in workers] == [0, 0, 0, 0]
    with PostgresStorage(url) as storage:
        for request_id in shared:
            request = storage.get(SHOP, request_id)
            assert (request.status, request.version) == (Status.APPROVED, 2)
        assert len(storage.query(SHOP, Query(limit=500)).items) == 10 + 4 * 25


def test_racing_claims_from_processes_never_share_an_entry(url: str) -> None:
    with PostgresStorage(url) as storage:
        for n in range(60):
            submit(storage, sample_request(f"r-{n}"))
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    start = context.Event()
    workers = [
        context.Process(target=_claim_all, args=(url, f"p{n}", start, queue)) for n in range(4)
    ]
    for worker in workers:
        worker.start()
    start.set()
    keys: list[str] = []
    for _ in workers:
        keys.extend(queue.get(timeout=120))
    for worker in workers:
        worker.join(timeout=60)
    assert [w.exitcode for w in workers] == [0, 0, 0, 0]
    assert len(keys) == 60
    assert len(set(keys)) == 60


def _claim_all(url: str, owner: str, start: Any, queue: Any) -> None:
    start.wait()
    keys: list[str] = []
    with PostgresStorage(url, max_size=1, timeout=30) as storage:
        while entries := storage.claim(owner=owner, now=T0, lease=LEASE, limit=3):
            for entry in entries:
                storage.settle(SHOP, Settlement(entry.key, owner, EffectState.DONE))
                keys.append(entry.key)
    queue.put(keys)


def _use_inherited(storage: PostgresStorage, request_id: str) -> None:
    request = storage.get(SHOP, request_id)
    storage.commit(Commit(attrs.evolve(request, carrier="child"), request.version))


def test_a_forked_child_opens_its_own_pool_and_the_parents_keeps_working(
    storage: PostgresStorage,
) -> None:
    saved = submit(storage, sample_request("r-1"))
    child = multiprocessing.get_context("fork").Process(
        target=_use_inherited, args=(storage, saved.id)
    )
    child.start()
    child.join(timeout=60)
    assert child.exitcode == 0
    assert storage.get(SHOP, "r-1").carrier == "child"
    again = storage.get(SHOP, "r-1")
    assert storage.commit(Commit(again, again.version)).version == 3


# -- failover: the connection dies while COMMIT is on its way -------------------------------


# The simple-query message of a bare COMMIT: "Q", its length (4 + 7 bytes), the text.
_COMMIT = b"Q\x00\x00\x00\x0bCOMMIT\x00"


class _Proxy:
    """A TCP relay to the server that can drop a connection around a COMMIT.

    With ``drop_after_commit`` set, the relay forwards the client's ``COMMIT`` to the server,
    waits for the server's answer (so the commit happened), and closes both sides instead of
    passing the answer on. With ``drop_before_commit`` set, it closes both sides instead of
    forwarding the ``COMMIT`` (so the server rolls back). Either way the client cannot tell
    whether its change was saved.
    """

    def __init__(self, port: int) -> None:
        self.target = port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.drop_after_commit = threading.Event()
        self.drop_before_commit = threading.Event()
        self.dropped = threading.Event()
        self._threads: list[threading.Thread] = []
        self._closing = False
        self._accepting = threading.Thread(target=self._accept, daemon=True)
        self._accepting.start()

    def _accept(self) -> None:
        while not self._closing:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.target))
            relay = threading.Thread(target=self._relay, args=(client, server), daemon=True)
            relay.start()
            self._threads.append(relay)

    def _relay(self, client: socket.socket, server: socket.socket) -> None:
        committing = False
        with client, server:
            while True:
                ready, _, _ = select.select([client, server], [], [], 0.5)
                if self._closing:
                    return
                for side in ready:
                    data = side.recv(1 << 16)
                    if not data:
                        return
                    if side is client:
                        if self.drop_before_commit.is_set() and _COMMIT in data:
                            self.dropped.set()  # the server never hears of the commit
                            return
                        if self.drop_after_commit.is_set() and _COMMIT in data:
                            committing = True
                        server.sendall(data)
                    elif committing:
                        self.dropped.set()  # the server answered: the change is saved
                        return
                    else:
                        client.sendall(data)

    def close(self) -> None:
        self._closing = True
        self.listener.close()
        for thread in self._threads:
            thread.join(timeout=5)


@pytest.mark.parametrize("saved", [True, False], ids=["saved", "not saved"])
def test_a_desk_command_retried_with_its_key_after_a_lost_commit_runs_exactly_once(
    url: str, saved: bool
) -> None:
    proxy = _Proxy(_postgres.server().port)
    schema = url.rsplit("search_path%3D", 1)[1]
    through = (
        f"postgresql://postgres@127.0.0.1:{proxy.port}/retouraanvraag"
        f"?options=-csearch_path%3D{schema}"
    )
    try:
        with PostgresStorage(through) as storage:
            world = build_world(storage)
            request = world.desk.submit(world.new_request())
            (proxy.drop_after_commit if saved else proxy.drop_before_commit).set()
            with pytest.raises(PortUnavailable, match="may or may not be saved"):
                world.desk.approve(SHOP_1, request.id, actor="staff-7", idempotency_key="a-1")
            assert proxy.dropped.is_set()
            proxy.drop_after_commit.clear()
            proxy.drop_before_commit.clear()
            again = world.desk.approve(SHOP_1, request.id, actor="staff-7", idempotency_key="a-1")
            assert again.status is Status.APPROVED
            assert world.desk.get(SHOP_1, request.id) == again
            decisions = [h for h in again.history if h.command == "approve_with_label"]
            assert len(decisions) == 1
    finally:
        proxy.close()


def test_a_commit_whose_answer_is_lost_is_unavailable_and_a_keyed_retry_finds_it_saved(
    url: str,
) -> None:
    server = _postgres.server()
    proxy = _Proxy(server.port)
    schema = url.rsplit("search_path%3D", 1)[1]
    through = f"postgresql://postgres@127.0.0.1:{proxy.port}/retouraanvraag?options=-csearch_path%3D{schema}"
    try:
        with PostgresStorage(through) as storage:
            saved = submit(storage, sample_request("r-1"))
            approved = attrs.evolve(saved, status=Status.APPROVED)
            record = IdempotencyRecord(SHOP, "approve-1", "fp", "r-1", approved)
            proxy.drop_after_commit.set()
            with pytest.raises(PortUnavailable, match="may or may not be saved") as caught:
                storage.commit(Commit(approved, saved.version, idempotency=record))
            assert proxy.dropped.is_set()
            assert "idempotency key" in str(caught.value)
            proxy.drop_after_commit.clear()
            # The caller's retry looks the key up first: the change was saved.
            found = storage.idempotency_record(SHOP, "approve-1")
            assert found is not None
            assert found.result.status is Status.APPROVED
            assert storage.get(SHOP, "r-1") == found.result
    finally:
        proxy.close()


# -- damage of every kind the database lets through --------------------------------------------

REQUEST_DAMAGE = {
    "body is not an object": "body = '[1, 2]'",
    "body is another request": "body = jsonb_set(body, '{id}', '\"someone-else\"')",
    "body misses a field": "body = body - 'items'",
    "version disagrees": "version = version + 5",
    "status disagrees": "status = 'completed'",
    "status is no status": (
        "status = 'teleported', body = jsonb_set(body, '{status}', '\"teleported\"')"
    ),
    "created_at disagrees": "created_at = created_at + interval '1 microsecond'",
    "needs_attention disagrees": "needs_attention = NOT needs_attention",
    "refunds disagree": "refunded_minor = 1",
    "paid fee in the body disagrees": "body = jsonb_set(body, '{return_fee,amount,amount}', '1')",
}
ENTRY_DAMAGE = {
    "effect is not an object": "effect = '\"mail\"'",
    "effect of another key": "effect = jsonb_set(effect, '{key}', '\"mail:x\"')",
    "effect of another request": "effect = jsonb_set(effect, '{request_id}', '\"r-9\"')",
    "effect of no kind": "effect = jsonb_set(effect, '{kind}', '\"teleport\"')",
}


@pytest.mark.parametrize("change", REQUEST_DAMAGE.values(), ids=REQUEST_DAMAGE)
def test_a_damaged_request_row_is_rejected_left_out_and_never_blocks_its_neighbours(
    storage: PostgresStorage, url: str, change: str, caplog: pytest.LogCaptureFixture
) -> None:
    for n in range(3):
        submit(storage, sample_request(f"r-{n}", created_at=T0 + dt.timedelta(minutes=n)))
    execute(url, f"UPDATE requests SET {change} WHERE id = 'r-1'")  # noqa: S608 - constants
    with pytest.raises(PortRejected, match=r"shop-a: request r-1: the stored row cannot be read"):
        storage.get(SHOP, "r-1")
    for query in (Query(), Query(limit=1), Query(statuses=Tab.REQUESTS.statuses, limit=1)):
        listed: list[str] = []
        cursor = None
        while True:
            page = storage.query(SHOP, attrs.evolve(query, cursor=cursor))
            listed.extend(r.id for r in page.items)
            if (cursor := page.next_cursor) is None:
                break
        assert listed == ["r-0", "r-2"]
    assert any("r-1" in r.getMessage() and r.levelname == "ERROR" for r in caplog.records)
    # A claim sets nothing aside for it (its entry is fine) and claims all three mails.
    assert len(storage.claim(owner="w", now=T0, lease=LEASE, limit=10)) == 3


@pytest.mark.parametrize("change", ENTRY_DAMAGE.values(), ids=ENTRY_DAMAGE)
def test_a_damaged_outbox_row_is_set_aside_and_its_request_flagged(
    storage: PostgresStorage, url: str, change: str
) -> None:
    for n in range(3):
        submit(storage, sample_request(f"r-{n}"))
    execute(url, f"UPDATE outbox SET {change} WHERE request_id = 'r-1'")  # noqa: S608 - constants
    assert storage.outbox(SHOP, "r-1") == ()
    claimed = storage.claim(owner="w", now=T0, lease=LEASE, limit=10)
    assert sorted(e.effect.request_id for e in claimed) == ["r-0", "r-2"]
    flagged = storage.get(SHOP, "r-1")
    assert flagged.needs_attention
    assert flagged.version == 2
    ((state, error),) = execute(
        url, "SELECT state, last_error FROM outbox WHERE request_id = 'r-1'"
    )
    assert state == "dead"
    assert error.startswith("corrupt outbox row: ")


def test_a_revived_damaged_entry_is_set_aside_again(storage: PostgresStorage, url: str) -> None:
    saved = submit(storage, sample_request("r-1"))
    (entry,) = storage.outbox(SHOP, "r-1")
    execute(url, "UPDATE outbox SET effect = '{}' WHERE request_id = 'r-1'")
    assert storage.claim(owner="w", now=T0, lease=LEASE, limit=1) == ()
    flagged = storage.get(SHOP, "r-1")
    revived = storage.commit(Commit(flagged, flagged.version, revive=(entry.key,)))
    assert revived.version == saved.version + 2
    assert storage.claim(owner="w", now=T0, lease=LEASE, limit=1) == ()
    assert execute(url, "SELECT state FROM outbox") == [("dead",)]


def test_a_queued_effect_keeps_its_kind_and_keys(storage: PostgresStorage) -> None:
    saved = submit(storage, sample_request("r-1"))
    effects = (Effect.refund(SHOP, "r-1"), Effect.create_label(SHOP, "r-1", 1))
    storage.commit(Commit(saved, saved.version, effects))
    assert [e.effect for e in storage.outbox(SHOP, "r-1")][1:] == list(effects)


def test_db_migrate_on_a_postgresql_url_creates_then_finds_the_schema_up_to_date(url: str) -> None:
    outputs = []
    for _ in range(2):
        out, err = io.StringIO(), io.StringIO()
        assert main(["db", "migrate", "--db", url], out=out, err=err) == 0, err.getvalue()
        outputs.append(out.getvalue())
    where = describe(url)
    assert outputs == [
        f"{where}: schema version {SCHEMA_VERSION} (created)\n",
        f"{where}: schema version {SCHEMA_VERSION} (up to date)\n",
    ]
    with PostgresStorage(url, migrate=False) as storage:
        assert storage.query(SHOP, Query()).items == ()


def test_a_picky_predicate_yields_short_pages_that_still_cover_everything(
    storage: PostgresStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(postgres_adapter, "_SCAN_BUDGET", 4)
    monkeypatch.setattr(postgres_adapter, "_BATCH", 2)
    for n in range(12):
        submit(storage, sample_request(f"r-{n:02d}", created_at=T0 + dt.timedelta(minutes=n)))
    wanted = {"r-01", "r-10"}
    pages = []
    cursor = None
    while True:
        page = storage.query(SHOP, Query(where=lambda r: r.id in wanted, limit=1, cursor=cursor))
        pages.append([r.id for r in page.items])
        if (cursor := page.next_cursor) is None:
            break
    assert [i for page in pages for i in page] == ["r-01", "r-10"]
    assert [] in pages  # a page cut short by the budget, with a cursor to go on


def _held(url: str, statement: str, params: tuple[object, ...]) -> psycopg.Connection[Any]:
    """Another program's transaction that has written a row and not committed yet."""
    other = psycopg.connect(url)
    other.execute(statement, params)
    return other


def _racing(call: Callable[[], object]) -> tuple[threading.Thread, list[object]]:
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(call())
        except Exception as exc:  # noqa: BLE001 - the outcome is the point
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def test_a_key_recorded_by_a_commit_still_in_flight_is_taken(
    storage: PostgresStorage, url: str
) -> None:
    request = sample_request("r-1").submitted().request
    other = _held(
        url,
        "INSERT INTO idempotency VALUES (%s, 'k-1', 'fp', 'r-0', '{}')",
        (SHOP,),
    )
    record = IdempotencyRecord(SHOP, "k-1", "fp", "r-1", request)
    thread, outcome = _racing(lambda: storage.commit(Commit(request, None, idempotency=record)))
    thread.join(timeout=1)
    assert thread.is_alive()  # it waits for the other transaction on the key's index entry
    other.commit()
    other.close()
    thread.join(timeout=30)
    (error,) = outcome
    assert isinstance(error, IdempotencyKeyTaken)
    with pytest.raises(NotFound):
        storage.get(SHOP, "r-1")


def test_an_id_inserted_by_a_commit_still_in_flight_is_a_lost_race(
    storage: PostgresStorage, url: str
) -> None:
    first = submit(storage, sample_request("r-0"))
    other = _held(
        url,
        "INSERT INTO requests SELECT shop_id, 'r-1', version, status, created_at, "
        "needs_attention, fee_paid_minor, refunded_minor, jsonb_set(body, '{id}', '\"r-1\"') "
        "FROM requests WHERE id = 'r-0'",
        (),
    )
    thread, outcome = _racing(lambda: submit(storage, sample_request("r-1")))
    thread.join(timeout=1)
    assert thread.is_alive()
    other.commit()
    other.close()
    thread.join(timeout=30)
    (error,) = outcome
    assert isinstance(error, ConcurrentModification)
    assert (error.expected, error.actual) == (None, first.version)
    assert storage.outbox(SHOP, "r-1") == ()  # its effects went with the lost commit


def test_a_pool_with_every_connection_busy_is_unavailable_after_its_timeout(url: str) -> None:
    with PostgresStorage(url, min_size=1, max_size=1, timeout=0.2) as storage:
        pool = storage._connections()
        taken = pool.getconn()
        try:
            with pytest.raises(PortUnavailable, match="no free connection"):
                storage.get(SHOP, "r-1")
        finally:
            pool.putconn(taken)
        with pytest.raises(NotFound):
            storage.get(SHOP, "r-1")


def test_a_damaged_entry_is_set_aside_also_when_its_request_is_gone_or_damaged(
    storage: PostgresStorage, url: str, caplog: pytest.LogCaptureFixture
) -> None:
    submit(storage, sample_request("r-1"))
    submit(storage, sample_request("r-2"))
    execute(url, "UPDATE outbox SET effect = '[]'")
    execute(url, "DELETE FROM requests WHERE id = 'r-1'")
    execute(url, "UPDATE requests SET body = '{}' WHERE id = 'r-2'")
    assert storage.claim(owner="w", now=T0, lease=LEASE, limit=5) == ()
    assert execute(url, "SELECT DISTINCT state FROM outbox") == [("dead",)]
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "no request of that id to mark as needing attention" in messages
    assert "its request cannot be read either" in messages


# -- what the review found: sessions, encodings, schemas, odd text, and what errors keep ------


def _schema_of(url: str) -> str:
    return url.rsplit("search_path%3D", 1)[1]


def _session(url: str, *settings: str) -> str:
    """``url`` with further ``-c`` settings for the session, as a role or database sets them."""
    extra = "".join(f"-c{setting}%20" for setting in settings)
    return url.replace("options=", f"options={extra}")


def test_times_read_back_alike_whatever_the_sessions_date_style(url: str) -> None:
    odd = _session(url, "datestyle%3DSQL%5C,%5C%20DMY", "intervalstyle%3Dsql_standard")
    with psycopg.connect(odd) as raw:  # the session really is set so, before the store's SET
        assert raw.execute("SHOW datestyle").fetchone() == ("SQL, DMY",)
    with PostgresStorage(odd) as storage:
        saved = submit(storage, sample_request("r-1"))
        assert storage.get(SHOP, "r-1") == saved
        assert storage.query(SHOP, Query()).items == (saved,)
        (entry,) = storage.claim(owner="w", now=T0, lease=LEASE, limit=1)
        assert entry.lease_until == T0 + LEASE
        assert storage.outbox(SHOP, "r-1") == (entry,)


def test_text_reads_back_alike_whatever_the_sessions_client_encoding(url: str) -> None:
    with PostgresStorage(_session(url, "client_encoding%3DLATIN1")) as storage:
        request = attrs.evolve(sample_request("zażółć-日本-😀"), carrier="Łódź 日本")
        saved = submit(storage, request)
        assert storage.get(SHOP, request.id) == saved


_ENCODED_DATABASES = itertools.count(1)


@pytest.mark.parametrize("encoding", ["LATIN1", "SQL_ASCII"])
def test_a_database_not_encoded_in_utf8_is_refused_on_open_naming_it(encoding: str) -> None:
    server = _postgres.server()
    name = f"enc_{encoding.lower()}_{os.getpid()}_{next(_ENCODED_DATABASES)}"
    with psycopg.connect(server.url("postgres"), autocommit=True) as admin:
        admin.execute(
            f"CREATE DATABASE {name} TEMPLATE template0 ENCODING '{encoding}' "
            "LC_COLLATE 'C' LC_CTYPE 'C'"
        )
    try:
        secret = server.url(name).replace("postgres@", "postgres:s3cret-pw@")
        with pytest.raises(
            PortRejected, match=f"/{name} is encoded in {encoding}, not UTF8"
        ) as on_open:
            PostgresStorage(secret)
        with pytest.raises(PortRejected, match="not UTF8") as on_migrate:
            migrate(secret)
        for caught in (on_open, on_migrate):
            assert "s3cret-pw" not in str(caught.value)
        # Nothing was created there.
        assert execute(server.url(name), "SELECT to_regclass('retouraanvraag_schema')") == [(None,)]
    finally:
        with psycopg.connect(server.url("postgres"), autocommit=True) as admin:
            admin.execute(f"DROP DATABASE {name}")


def test_no_existing_schema_on_the_search_path_is_refused_on_open() -> None:
    nowhere = _postgres.server().url(schema="no_such_schema_here")
    with pytest.raises(PortRejected, match="no schema of the connection's search_path exists"):
        PostgresStorage(nowhere)
    with pytest.raises(PortRejected, match="search_path"):
        migrate(nowhere)


def test_the_tables_go_into_the_current_schema_never_taken_from_a_later_one(url: str) -> None:
    with PostgresStorage(url) as later:
        submit(later, sample_request("r-1"))
    first = _postgres.server().fresh_url()
    path = first.replace(_schema_of(first), f"{_schema_of(first)},{_schema_of(url)}")
    # The later schema's tables are no store of the first schema's: not up to date, not there.
    with pytest.raises(PortRejected, match="schema version 0"):
        PostgresStorage(path, migrate=False)
    with PostgresStorage(path) as storage:
        with pytest.raises(NotFound):
            storage.get(SHOP, "r-1")
        submit(storage, sample_request("r-2"))
    assert execute(first, "SELECT id FROM requests") == [("r-2",)]
    assert execute(first, "SELECT version FROM retouraanvraag_schema") == [(SCHEMA_VERSION,)]
    assert execute(url, "SELECT id FROM requests") == [("r-1",)]


def test_a_nul_inside_the_body_is_invalid_input(storage: PostgresStorage) -> None:
    submitted = sample_request("r-1").submitted()
    saved = storage.commit(Commit(submitted.request, None, submitted.effects))
    after = saved.given_up(submitted.effects[0], "550 relay said: bad\x00byte", at=T0).request
    with pytest.raises(InvalidInput, match="22P05"):
        storage.commit(Commit(after, saved.version))
    assert storage.get(SHOP, "r-1") == saved


def _incompressible(size: int) -> str:
    chosen = random.Random(size)
    return "".join(chosen.choice(string.ascii_letters + string.digits) for _ in range(size))


def test_a_key_too_long_for_the_index_is_invalid_input_not_unavailable(
    storage: PostgresStorage, url: str
) -> None:
    long_key = _incompressible(8000)
    # The database's own refusal (program limit exceeded, class 54) is the input's fault.
    with pytest.raises(pg_errors.ProgramLimitExceeded) as refused:
        execute(
            url,
            "INSERT INTO idempotency VALUES ('shop', %s, 'fp', 'r-0', '{}')",
            (long_key,),
        )
    assert isinstance(postgres_adapter._translated(refused.value, storage.where), InvalidInput)
    request = sample_request("r-1").submitted().request
    record = IdempotencyRecord(SHOP, long_key, "fp", "r-1", request)
    with pytest.raises(InvalidInput):
        storage.commit(Commit(request, None, idempotency=record))
    with pytest.raises(NotFound):
        storage.get(SHOP, "r-1")
    assert submit(storage, sample_request("r-2")).version == 1


def _cursor_of(*position: str) -> str:
    raw = json.dumps(["r1", *position]).encode()  # \ud800 escaped, as a tampered cursor may be
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def test_a_lone_surrogate_names_nothing_and_cannot_be_stored(storage: PostgresStorage) -> None:
    saved = submit(storage, sample_request("r-1"))
    lone = "x\udc80"
    with pytest.raises(NotFound):
        storage.get(SHOP, lone)
    assert storage.idempotency_record(SHOP, lone) is None
    assert storage.outbox(SHOP, lone) == ()
    assert storage.query(lone, Query()).items == ()
    assert storage.count(lone, Query()) == 0
    page = storage.query(SHOP, Query(cursor=_cursor_of("2026-01-01T00:00:00.000000Z", "\ud800")))
    assert page.items == ()
    with pytest.raises(InvalidInput) as owner:
        storage.claim(owner="w\ud800", now=T0, lease=LEASE, limit=1)
    assert owner.value.field == "owner"
    (entry,) = storage.claim(owner="w", now=T0, lease=LEASE, limit=1)
    with pytest.raises(LeaseLost):
        storage.settle(SHOP, Settlement(lone, "w", EffectState.DONE))
    for bad in ("550 \udcff", "550 bad\x00byte"):
        with pytest.raises(InvalidInput) as error:
            storage.settle(SHOP, Settlement(entry.key, "w", EffectState.PENDING, error=bad))
        assert error.value.field == "error"
    # A text the shared checks let through to the database (a revived key): refused, not raw.
    moved = attrs.evolve(saved, carrier="DHL")
    with pytest.raises(InvalidInput, match="lone surrogate"):
        storage.commit(Commit(moved, saved.version, revive=(lone,)))
    assert storage.outbox(SHOP, "r-1") == (entry,)
    assert storage.get(SHOP, "r-1") == saved


def test_a_lease_past_the_latest_time_is_invalid_and_a_huge_limit_claims_all(
    storage: PostgresStorage,
) -> None:
    late = dt.datetime(9999, 12, 31, tzinfo=dt.UTC)
    with pytest.raises(InvalidInput) as caught:
        storage.claim(owner="w", now=late, lease=dt.timedelta(days=2), limit=1)
    assert caught.value.field == "lease"
    submit(storage, sample_request("r-1"))
    # A limit past what the database counts in a bigint is "all of them", not a refusal.
    assert len(storage.claim(owner="w", now=T0, lease=LEASE, limit=2**63)) == 1


def test_only_a_lost_commit_is_told_to_retry_with_its_idempotency_key(
    storage: PostgresStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    def lost(*_args: object) -> object:
        raise postgres_adapter._OutcomeUnknown("server closed the connection unexpectedly")

    monkeypatch.setattr(postgres_adapter, "_transaction", lost)
    with pytest.raises(PortUnavailable, match="may or may not be saved") as committing:
        submit(storage, sample_request("r-1"))
    assert "same idempotency key" in str(committing.value)
    calls: list[Callable[[], object]] = [
        lambda: storage.claim(owner="w", now=T0, lease=LEASE, limit=1),
        lambda: storage.settle(SHOP, Settlement("mail:x", "w", EffectState.DONE)),
    ]
    for call in calls:
        with pytest.raises(PortUnavailable, match="may or may not be saved") as other:
            call()
        assert "idempotency key" not in str(other.value)


def _chain(error: BaseException) -> str:
    assert error.__cause__ is None
    assert error.__context__ is None
    return "".join(traceback.format_exception(error))


def test_a_refused_change_keeps_no_trace_of_the_row_the_database_quoted(
    storage: PostgresStorage, url: str
) -> None:
    saved = submit(storage, sample_request("r-1"))
    # Constraints the library does not know, added by someone else: their DETAIL quotes the row.
    execute(url, "ALTER TABLE requests ADD CONSTRAINT no_dhl CHECK (body->>'carrier' <> 'DHL')")
    execute(url, "ALTER TABLE idempotency ADD CONSTRAINT no_fp CHECK (fingerprint <> 'fp')")
    with pytest.raises(PortRejected, match="no_dhl") as on_request:
        storage.commit(Commit(attrs.evolve(saved, carrier="DHL"), saved.version))
    approved = attrs.evolve(saved, status=Status.APPROVED)
    record = IdempotencyRecord(SHOP, "k-1", "fp", "r-1", approved)
    with pytest.raises(PortRejected, match="no_fp") as on_record:
        storage.commit(Commit(approved, saved.version, idempotency=record))
    for caught in (on_request, on_record):
        text = _chain(caught.value)
        assert "klant@example.nl" not in text
        assert "Failing row" not in text
    assert storage.get(SHOP, "r-1") == saved
