"""Promises the SQL stores kept through their shared code (``adapters._sql``), on both databases.

A review of the refactor that moved the stores' statements, decoders, commit writing, claims
and listing loops into one module: what its order of writes, its batched set-asides and its
listing loops must still promise, each tried against SQLite and PostgreSQL alike.

* a commit is one transaction: when its request's row, its idempotency record or an outbox
  entry is refused by the database, nothing of it is left (SQLite now writes the record first);
* a claim is one transaction: when marking a set-aside row's request fails, no row is set
  aside, leased or flagged (PostgreSQL now marks every damaged row dead before flagging);
* keyset pages over many equal creation times list every readable request once, in order,
  whatever the page size, statuses, rule condition, ``where`` predicate and damaged rows;
* an empty set of statuses lists nothing, with or without a rule condition.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import random
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from retouraanvraag import rules
from retouraanvraag.adapters.postgres import PostgresStorage
from retouraanvraag.adapters.sqlite import SqliteStorage
from retouraanvraag.errors import PortRejected
from retouraanvraag.model import ReturnRequest, Status
from retouraanvraag.ports import Commit, EffectState, IdempotencyRecord, Query, Storage
from retouraanvraag.testing.storage_contract import SHOP, sample_request

from . import _postgres

T0 = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
LEASE = dt.timedelta(seconds=30)
STATUSES = (Status.REQUESTED, Status.APPROVED, Status.REJECTED, Status.CANCELLED)


@attrs.frozen
class _Store:
    """A store under test and a raw connection to its database, as another program."""

    storage: Storage
    raw: Callable[[str, tuple[object, ...]], list[tuple[Any, ...]]]
    kind: str

    def sql(self, statement: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        """Run ``statement`` (written with ``%s``) outside the store."""
        return self.raw(statement, params)


def _sqlite_store(path: Path) -> Iterator[_Store]:
    storage = SqliteStorage(path / "store.sqlite3")
    link = sqlite3.connect(path / "store.sqlite3", isolation_level=None)

    def raw(statement: str, params: tuple[object, ...]) -> list[tuple[Any, ...]]:
        return link.execute(statement.replace("%s", "?"), params).fetchall()

    try:
        yield _Store(storage, raw, "sqlite")
    finally:
        link.close()
        storage.close()


def _postgres_store() -> Iterator[_Store]:
    import psycopg  # noqa: PLC0415 - only where the server runs

    url = _postgres.server().fresh_url()
    storage = PostgresStorage(url)
    link = psycopg.connect(url, autocommit=True)

    def raw(statement: str, params: tuple[object, ...]) -> list[tuple[Any, ...]]:
        cursor = link.execute(statement, params or None)
        return cursor.fetchall() if cursor.description else []

    try:
        yield _Store(storage, raw, "postgres")
    finally:
        link.close()
        storage.close()


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[_Store]:
    if request.param == "sqlite":
        yield from _sqlite_store(tmp_path)
    else:
        yield from _postgres_store()


def _submit(storage: Storage, request: ReturnRequest, **commit: Any) -> ReturnRequest:
    change = request.submitted()
    return storage.commit(Commit(change.request, None, change.effects, **commit))


def _refuse_writes_to(store: _Store, table: str, request_id: str) -> None:
    """A trigger that refuses any insert or update of ``table`` for one request."""
    column = "id" if table == "requests" else "request_id"
    if store.kind == "sqlite":
        for event in ("INSERT", "UPDATE"):
            store.sql(
                f"CREATE TRIGGER refuse_{table}_{event.lower()} BEFORE {event} ON {table} "
                f"WHEN NEW.{column} = '{request_id}' BEGIN SELECT RAISE(ABORT, 'refused'); END"
            )
        return
    store.sql(
        "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        f"IF NEW.{column} = '{request_id}' THEN RAISE EXCEPTION 'refused'; END IF; "
        "RETURN NEW; END $$"
    )
    store.sql(
        f"CREATE TRIGGER refuse BEFORE INSERT OR UPDATE ON {table} "
        "FOR EACH ROW EXECUTE FUNCTION refuse()"
    )


def _stop_refusing(store: _Store, table: str) -> None:
    if store.kind == "sqlite":
        store.sql(f"DROP TRIGGER refuse_{table}_insert")
        store.sql(f"DROP TRIGGER refuse_{table}_update")
    else:
        store.sql(f"DROP TRIGGER refuse ON {table}")
        store.sql("DROP FUNCTION refuse()")


# -- a commit is one transaction, whichever of its writes the database refuses ---------------


@pytest.mark.parametrize("table", ["requests", "idempotency", "outbox"])
def test_a_commit_the_database_refuses_midway_leaves_nothing_behind(
    store: _Store, table: str
) -> None:
    # SQLite writes the record before the request now, PostgreSQL always did: whichever row
    # is refused, the record, the request and its entries go together or not at all.
    request = sample_request("r-refused")
    _refuse_writes_to(store, table, request.id)
    change = request.submitted()
    assert change.effects, "the submission queues effects, so the outbox write is reached"
    record = IdempotencyRecord(SHOP, "idem-1", "fp-1", request.id, change.request)
    with pytest.raises(PortRejected) as raised:
        store.storage.commit(Commit(change.request, None, change.effects, idempotency=record))
    # The driver's error (its DETAIL may quote the row) stays out of the message.
    assert "klant@example.nl" not in str(raised.value)
    assert store.sql("SELECT count(*) FROM requests")[0][0] == 0
    assert store.sql("SELECT count(*) FROM idempotency")[0][0] == 0
    assert store.sql("SELECT count(*) FROM outbox")[0][0] == 0
    assert store.storage.idempotency_record(SHOP, "idem-1") is None

    _stop_refusing(store, table)  # the same commit goes through once the database takes it
    saved = store.storage.commit(Commit(change.request, None, change.effects, idempotency=record))
    found = store.storage.idempotency_record(SHOP, "idem-1")
    assert found is not None
    assert found.result == saved == store.storage.get(SHOP, request.id)
    assert len(store.storage.outbox(SHOP, request.id)) == len(change.effects)


def test_a_taken_key_is_reported_before_the_version_and_writes_nothing(store: _Store) -> None:
    # The idempotency key is checked before the version; with the record now written first on
    # SQLite too, a repeated key must still raise the key error and leave the request as it was.
    from retouraanvraag.errors import IdempotencyKeyTaken  # noqa: PLC0415

    request = sample_request("r-key")
    change = request.submitted()
    record = IdempotencyRecord(SHOP, "idem-2", "fp", request.id, change.request)
    saved = store.storage.commit(Commit(change.request, None, change.effects, idempotency=record))
    again = saved.replace(order_number="2002")
    with pytest.raises(IdempotencyKeyTaken):
        # A stale version and a taken key: the key says more.
        store.storage.commit(Commit(again, expected_version=saved.version + 5, idempotency=record))
    assert store.storage.get(SHOP, request.id) == saved


# -- a claim is one transaction, set-asides and flags included --------------------------------


def _damage_effect(store: _Store, request_id: str) -> None:
    store.sql(
        'UPDATE outbox SET effect = \'{"kind": "teleport"}\' WHERE request_id = %s',
        (request_id,),
    )


def test_a_claim_whose_flagging_fails_sets_nothing_aside_and_leases_nothing(
    store: _Store,
) -> None:
    # PostgreSQL now marks every damaged row of a batch dead first, then flags their requests
    # one by one: a flag that fails must take the marks (and the leases) back with it.
    first, second, healthy = (
        _submit(store.storage, sample_request(name, created_at=T0))
        for name in ("r-1", "r-2", "r-3")
    )
    _damage_effect(store, first.id)
    _damage_effect(store, second.id)
    _refuse_writes_to(store, "requests", second.id)
    with pytest.raises(PortRejected):
        store.storage.claim(owner="w", now=T0, lease=LEASE, limit=10)
    states = store.sql("SELECT state, lease_owner FROM outbox")
    assert states
    assert all(state == "pending" and owner is None for state, owner in states)
    assert store.storage.get(SHOP, first.id) == first  # not flagged: the claim rolled back
    assert store.storage.get(SHOP, healthy.id) == healthy

    _stop_refusing(store, "requests")
    claimed = store.storage.claim(owner="w", now=T0, lease=LEASE, limit=10)
    assert {entry.effect.request_id for entry in claimed} == {healthy.id}
    for damaged in (first, second):
        assert store.storage.get(SHOP, damaged.id).needs_attention
        dead = store.sql(
            "SELECT state, last_error FROM outbox WHERE request_id = %s", (damaged.id,)
        )
        assert all(
            state == "dead" and error.startswith("corrupt outbox row") for state, error in dead
        )


def test_two_damaged_rows_of_one_request_flag_it_once_each_and_it_reads_back(
    store: _Store,
) -> None:
    request = sample_request("r-twice")
    change = request.submitted()
    effects = change.effects
    assert len(effects) >= 1
    saved = store.storage.commit(Commit(change.request, None, effects))
    # A second effect of the same request, queued by a later commit.
    later = saved.replace(order_number="1002")
    extra = attrs.evolve(effects[0], key=f"{effects[0].key}-again")
    saved = store.storage.commit(Commit(later, saved.version, (extra,)))
    _damage_effect(store, request.id)
    assert store.storage.claim(owner="w", now=T0, lease=LEASE, limit=5) == ()
    flagged = store.storage.get(SHOP, request.id)
    assert flagged.needs_attention
    assert flagged.version > saved.version
    assert {state for (state,) in store.sql("SELECT state FROM outbox")} == {"dead"}


def test_concurrent_claims_never_hand_out_one_entry_twice(store: _Store) -> None:
    for number in range(12):
        _submit(store.storage, sample_request(f"r-{number:02d}", created_at=T0))
    total = store.sql("SELECT count(*) FROM outbox")[0][0]
    taken: list[str] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def work(owner: str) -> None:
        try:
            while True:
                claimed = store.storage.claim(owner=owner, now=T0, lease=LEASE, limit=2)
                if not claimed:
                    return
                with lock:
                    taken.extend(f"{entry.shop_id}/{entry.key}" for entry in claimed)
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(f"w{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(taken) == len(set(taken)) == total


# -- keyset pages ----------------------------------------------------------------------------


def _fill(store: _Store, seed: int) -> list[ReturnRequest]:
    """Requests at a few creation times (many ties), of four statuses and three countries."""
    rnd = random.Random(seed)
    made: list[ReturnRequest] = []
    for number in range(60):
        moment = T0 + dt.timedelta(seconds=rnd.choice([0, 0, 0, 1, 2, 2, 7]))
        request = sample_request(f"r-{number:03d}", created_at=moment)
        request = request.replace(from_country=rnd.choice(["NL", "BE", "DE"]))
        submitted = request.submitted().request.replace(status=rnd.choice(STATUSES))
        made.append(store.storage.commit(Commit(submitted, None)))
    return made


def _damage_bodies(store: _Store, requests: list[ReturnRequest]) -> None:
    for request in requests:
        if store.kind == "sqlite":
            statement = (
                "UPDATE requests SET body = json_set(body, '$.order_number', 17) WHERE id = %s"
            )
        else:
            statement = (
                "UPDATE requests SET body = jsonb_set(body, '{order_number}', '17') WHERE id = %s"
            )
        store.sql(statement, (request.id,))


def _listed_by(query: Query, request: ReturnRequest) -> bool:
    """Whether every page of ``query`` together lists ``request`` (the reference)."""
    return (
        (query.statuses is None or request.status in query.statuses)
        and (query.created_from is None or request.created_at >= query.created_from)
        and (query.condition is None or query.condition(request))
        and (query.where is None or query.where(request))
    )


def _every_page(storage: Storage, query: Query) -> list[str]:
    listed: list[str] = []
    cursor = None
    for _ in range(1000):
        page = storage.query(SHOP, attrs.evolve(query, cursor=cursor))
        listed.extend(request.id for request in page.items)
        assert len(page.items) <= query.limit
        cursor = page.next_cursor
        if cursor is None:
            return listed
    pytest.fail("the pages never end")


BELGIAN = rules.compile_condition("Van land IS België")
NOT_DUTCH = rules.compile_condition("Van land IS NIET Nederland")


@pytest.mark.parametrize("seed", [1, 2])
def test_pages_over_equal_times_list_every_readable_request_once_in_order(
    store: _Store, seed: int, caplog: pytest.LogCaptureFixture
) -> None:
    made = _fill(store, seed)
    rnd = random.Random(seed)
    damaged = rnd.sample(made, 5)
    _damage_bodies(store, damaged)
    readable = sorted((r for r in made if r not in damaged), key=lambda r: (r.created_at, r.id))
    caplog.set_level(logging.CRITICAL)
    cases: list[tuple[Query, Callable[[ReturnRequest], bool]]] = []
    for _ in range(25):
        statuses = rnd.choice([None, frozenset(rnd.sample(STATUSES, rnd.randint(1, 3)))])
        condition = rnd.choice([None, BELGIAN, NOT_DUTCH])
        where = rnd.choice([None, lambda r: r.id[-1] in "02468"])
        created_from = rnd.choice([None, T0 + dt.timedelta(seconds=1)])
        query = Query(
            statuses=statuses,
            condition=condition,
            where=where,
            created_from=created_from,
            limit=rnd.choice([1, 2, 3, 7, 100]),
        )

        cases.append((query, functools.partial(_listed_by, query)))
    for query, expected in cases:
        assert _every_page(store.storage, query) == [r.id for r in readable if expected(r)]
        if query.where is None and query.condition is None:
            # The count sees the damaged rows too (it reads no bodies): at least as many.
            assert store.storage.count(SHOP, query) >= len([r for r in readable if expected(r)])


@pytest.mark.parametrize("condition", [None, BELGIAN], ids=["no condition", "condition"])
def test_an_empty_set_of_statuses_lists_and_counts_nothing(
    store: _Store, condition: rules.ConditionFilter | None
) -> None:
    # SQLite once built "SELECT … FROM () ORDER BY …" here with a condition (PortUnavailable).
    _fill(store, 3)
    query = Query(statuses=frozenset(), condition=condition, limit=5)
    assert store.storage.query(SHOP, query).items == ()
    assert store.storage.query(SHOP, query).next_cursor is None
    assert store.storage.count(SHOP, query) == 0


def test_a_settled_entry_keeps_its_state_and_releases_its_lease(store: _Store) -> None:
    from retouraanvraag.ports import Settlement  # noqa: PLC0415

    _submit(store.storage, sample_request("r-settle", created_at=T0))
    claimed = store.storage.claim(owner="w", now=T0, lease=LEASE, limit=1)
    assert len(claimed) == 1
    retry = T0 + dt.timedelta(minutes=5)
    store.storage.settle(
        SHOP, Settlement(claimed[0].key, "w", EffectState.PENDING, error="later", retry_at=retry)
    )
    (entry,) = (e for e in store.storage.outbox(SHOP, "r-settle") if e.key == claimed[0].key)
    assert entry.state is EffectState.PENDING
    assert entry.lease_owner is None
    assert entry.lease_until is None
    assert entry.available_at == retry
    assert entry.last_error == "later"
    later = store.storage.claim(owner="v", now=T0 + dt.timedelta(minutes=1), lease=LEASE, limit=5)
    assert claimed[0].key not in {e.key for e in later}  # not due before its retry time
    due = store.storage.claim(owner="v", now=retry, lease=LEASE, limit=5)
    assert claimed[0].key in {e.key for e in due}


def test_a_claim_near_the_last_moment_in_another_zone_is_refused_as_invalid_input(
    tmp_path: Path,
) -> None:
    from retouraanvraag.errors import InvalidInput  # noqa: PLC0415

    # It passed the check as an instant, then overflowed on the local wall time (OverflowError).
    now = dt.datetime(9999, 12, 31, 10, tzinfo=dt.timezone(dt.timedelta(hours=5)))
    with SqliteStorage(tmp_path / "s.sqlite3") as storage, pytest.raises(InvalidInput):
        storage.claim(owner="w", now=now, lease=dt.timedelta(hours=15), limit=1)
