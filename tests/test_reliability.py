"""Reliability: idempotent replays, races, fault sweeps, shop isolation and the money cap.

The figures these tests measure are quoted in ``docs/reliability.md``. Soak variants (``make
soak``) run the same checks longer; they are skipped in the normal run.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import itertools
import json
import multiprocessing
import os
import random
import sqlite3
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from retouraanvraag import errors
from retouraanvraag.adapters.sqlite import SqliteStorage
from retouraanvraag.dispatcher import Dispatcher
from retouraanvraag.model import (
    TRANSITIONS,
    Effect,
    HistoryEntry,
    MailKind,
    Money,
    PaidFee,
    RefundRecord,
    ReturnRequest,
    Status,
    label_key,
)
from retouraanvraag.ports import Commit, EffectState, Query, Storage
from retouraanvraag.testing import FakeLabels, FakePayments, MailRecorder, MemoryStorage
from retouraanvraag.testing.faults import Fault, FaultPlan, fail_nth, inject_faults
from retouraanvraag.workflow import Desk

from . import _postgres
from . import _reliability_support as support
from .conftest import NOW, SHOP, World, build_world

SOAK = bool(os.environ.get("RETOURAANVRAAG_SOAK"))
soak = pytest.mark.skipif(not SOAK, reason="soak run only (make soak)")
ALLOWED: dict[tuple[Status, str], Status] = {
    (s, t.command): t.target for t in TRANSITIONS for s in t.sources
}
DECISIONS = frozenset({"approve_with_label", "approve_without_label", "reject"})
CONTEXT = multiprocessing.get_context("forkserver")
CONTEXT.set_forkserver_preload(["tests._reliability_support"])


def commands_of(request: ReturnRequest) -> list[HistoryEntry]:
    """The request's command entries (not the dispatcher's records of effects)."""
    return [h for h in request.history if h.is_command]


def mail_key(request_id: str, kind: MailKind) -> str:
    return Effect.send_mail(SHOP, request_id, kind).key


def storage_of(kind: str, tmp_path: Path) -> Storage:
    if kind == "postgres":
        return _postgres.storage()
    return MemoryStorage() if kind == "memory" else SqliteStorage(tmp_path / "returns.sqlite3")


@pytest.fixture(params=["memory", "sqlite-file", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    storage = storage_of(request.param, tmp_path)
    yield storage
    close = getattr(storage, "close", None)
    if close is not None:
        close()


def dispatcher_for(
    world: World,
    *,
    storage: Storage | None = None,
    labels: Any = None,
    payments: Any = None,
    mail: Any = None,
    max_attempts: int = 8,
    owner: str | None = None,
) -> Dispatcher:
    return Dispatcher(
        storage or world.storage,
        labels=labels or world.labels,
        payments=payments or world.payments,
        mail=mail or world.mail,
        renderer=support.renderer(),
        clock=world.clock,
        owner=owner,
        lease=dt.timedelta(minutes=5),
        max_attempts=max_attempts,
        backoff=dt.timedelta(seconds=1),
        backoff_cap=dt.timedelta(minutes=1),
        seed=7,
    )


def drain(world: World, dispatcher: Dispatcher, rounds: int = 40) -> int:
    """Dispatch until nothing is left, as a host's worker loop would.

    An error escaping a run (a storage failure) is what a crashing worker does: the loop goes
    on, and the clock moves past leases and backoff so the reconciler takes the entries back.

    Returns:
        How many runs ended in an escaped error.
    """
    escaped = 0
    quiet = 0
    for _ in range(rounds):
        try:
            handled = dispatcher.run_until_idle().handled
        except errors.PortError:
            escaped += 1
            handled = 1
        quiet = quiet + 1 if handled == 0 else 0
        if quiet == 2:
            break
        world.clock.advance(dt.timedelta(minutes=10))
    return escaped


# -- replay: one key, one execution ---------------------------------------------------------


Call = Callable[[str], ReturnRequest]


def random_command(rng: random.Random, world: World, ids: list[str]) -> tuple[str, Call, Call]:
    """A random desk command under a key, and the same command with other arguments."""
    name = rng.choice(("submit", "approve", "reject", "cancel", "mark_received", "complete"))
    desk = world.desk
    request_id = rng.choice(ids) if ids and rng.random() > 0.05 else "no-such-request"
    actor = f"staff-{rng.randint(1, 3)}"
    match name:
        case "submit":
            new = world.new_request() if rng.random() < 0.7 else world.new_request(return_fee=None)
            other = attrs.evolve(new, order_number="9999")
            return (
                name,
                lambda k: desk.submit(new, idempotency_key=k),
                lambda k: desk.submit(other, idempotency_key=k),
            )
        case "approve":
            label, refund = rng.random() < 0.5, rng.random() < 0.5

            def approve(key: str, *, refund: bool = refund) -> ReturnRequest:
                return desk.approve(
                    SHOP,
                    request_id,
                    with_label=label,
                    refund_return_fee=refund,
                    actor=actor,
                    idempotency_key=key,
                )

            return name, approve, lambda k: approve(k, refund=not refund)
        case "reject":
            reason = rng.choice(("Buiten de termijn", "Gebruikt", "Nee"))
            return (
                name,
                lambda k: desk.reject(
                    SHOP, request_id, reason=reason, actor=actor, idempotency_key=k
                ),
                lambda k: desk.reject(
                    SHOP, request_id, reason=reason + "!", actor=actor, idempotency_key=k
                ),
            )
        case _:
            command = getattr(desk, name)
            return (
                name,
                lambda k: command(SHOP, request_id, actor=actor, idempotency_key=k),
                lambda k: command(SHOP, request_id, actor=actor + "x", idempotency_key=k),
            )


def outcome(call: Call, key: str) -> tuple[object, ...]:
    try:
        return ("ok", call(key))
    except errors.RetouraanvraagError as exc:
        return ("error", type(exc).__name__, getattr(exc, "status", None))


def port_calls(world: World) -> tuple[int, int, int]:
    return len(world.labels.calls), len(world.payments.calls), len(world.mail.sent)


def test_replaying_1000_random_commands_executes_each_once(store: Storage) -> None:
    world = build_world(store)
    rng = random.Random(20261126)
    ids: list[str] = []
    figures: Counter[str] = Counter()
    for serial in range(1000):
        name, call, other = random_command(rng, world, ids)
        key = f"key-{serial}"
        first = outcome(call, key)
        world.dispatcher.run_until_idle()
        once = port_calls(world)
        figures[f"{name}:{first[0]}"] += 1
        result = first[1] if isinstance(first[1], ReturnRequest) else None
        if result is not None:
            if name == "submit":
                ids.append(result.id)
            stored = world.desk.get(SHOP, result.id)
        for _ in range(rng.randint(1, 5) - 1):
            again = outcome(call, key)
            figures["repeats"] += 1
            assert again[0] == first[0]
            assert again == first
        world.dispatcher.run_until_idle()
        assert port_calls(world) == once, f"{name} repeated under {key} called a port again"
        if result is not None:
            with pytest.raises(errors.IdempotencyConflict):
                other(key)
            figures["conflicts"] += 1
            assert world.desk.get(SHOP, result.id) == stored
    assert figures["conflicts"] > 250
    assert figures["repeats"] > 1500
    assert figures["submit:ok"] > 100
    assert figures["approve:ok"] + figures["reject:ok"] > 50


def test_a_replay_returns_the_request_exactly_as_first_returned(store: Storage) -> None:
    world = build_world(store)
    new = world.new_request()
    first = world.desk.submit(new, idempotency_key="k1")
    assert world.desk.submit(new, idempotency_key="k1") == first
    approved = world.desk.approve(SHOP, first.id, actor="s", idempotency_key="k2")
    assert world.desk.approve(SHOP, first.id, actor="s", idempotency_key="k2") == approved


def test_concurrent_calls_with_one_key_execute_once(store: Storage) -> None:
    world = build_world(store)
    rounds, threads = 25, 8
    refused = 0
    lock = threading.Lock()
    for round_ in range(rounds):
        request = world.desk.submit(world.new_request())
        barrier = threading.Barrier(threads)
        results: list[object] = []

        def approve(
            key: str,
            request_id: str = request.id,
            barrier: threading.Barrier = barrier,
            results: list[object] = results,
        ) -> None:
            barrier.wait()
            try:
                result: object = world.desk.approve(
                    SHOP, request_id, refund_return_fee=True, actor="s", idempotency_key=key
                )
            except errors.RetouraanvraagError as exc:
                result = exc
            with lock:
                results.append(result)

        pool = [threading.Thread(target=approve, args=(f"k-{round_}",)) for _ in range(threads)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        requests = [r for r in results if isinstance(r, ReturnRequest)]
        refused += sum(isinstance(r, errors.TransitionNotAllowed) for r in results)
        assert all(isinstance(r, (ReturnRequest, errors.TransitionNotAllowed)) for r in results), (
            results
        )
        assert requests
        assert all(r == requests[0] for r in requests)
        stored = world.desk.get(SHOP, request.id)
        assert [h.command for h in stored.history] == ["submit", "approve_with_label"]
        world.dispatcher.run_until_idle()
        assert world.labels.calls.count(("create_label", label_key(SHOP, request.id))) == 1
        assert world.payments.calls.count(Effect.refund(SHOP, request.id).key) == 1
    # Every caller got the one result: none was refused, none executed a second time.
    assert refused == 0


class _PausingStorage:
    """A storage proxy that pauses after the first idempotency lookup until told to go on."""

    def __init__(self, inner: Storage) -> None:
        self._inner = inner
        self.looked_up = threading.Event()
        self.go_on = threading.Event()

    def idempotency_record(self, shop_id: str, key: str) -> Any:
        record = self._inner.idempotency_record(shop_id, key)
        if not self.looked_up.is_set():
            self.looked_up.set()
            assert self.go_on.wait(10)
        return record

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def test_a_second_call_with_the_same_key_that_lost_the_race_returns_the_first_result(
    store: Storage,
) -> None:
    world = build_world(store)
    request = world.desk.submit(world.new_request())
    pausing = _PausingStorage(store)
    late_desk = Desk(pausing, clock=world.clock)
    late: list[object] = []

    def second() -> None:
        try:
            late.append(late_desk.approve(SHOP, request.id, actor="s", idempotency_key="k"))
        except errors.RetouraanvraagError as exc:
            late.append(exc)

    thread = threading.Thread(target=second)
    thread.start()
    assert pausing.looked_up.wait(10)
    first = world.desk.approve(SHOP, request.id, actor="s", idempotency_key="k")
    pausing.go_on.set()
    thread.join()
    assert isinstance(late[0], ReturnRequest), late[0]
    assert late[0] == first


# -- races: eight people deciding at once, dispatchers running meanwhile --------------------

ROLES = (
    ("approve_with_label", True),
    ("approve_with_label", False),
    ("approve_without_label", True),
    ("approve_without_label", False),
    ("reject", False),
    ("reject", False),
    ("cancel", False),
    ("cancel", False),
)


def decide(desk: Desk, request_id: str, role: int) -> ReturnRequest:
    command, refund = ROLES[role]
    actor = f"t{role}"
    if command == "reject":
        return desk.reject(SHOP, request_id, reason="Nee", actor=actor)
    if command == "cancel":
        return desk.cancel(SHOP, request_id, actor=actor)
    return desk.approve(
        SHOP,
        request_id,
        with_label=command == "approve_with_label",
        refund_return_fee=refund,
        actor=actor,
    )


def race_rounds(path: Path | str, rounds: int, per_round: int) -> Counter[str]:  # noqa: C901, PLR0915
    storage = support.open_storage(str(path))
    world = build_world(storage)
    workers = [support.open_storage(str(path)) for _ in range(2)]
    dispatchers = [dispatcher_for(world, storage=s, owner=f"d{i}") for i, s in enumerate(workers)]
    figures: Counter[str] = Counter()
    all_ids: list[str] = []
    # The same ten threads play every round (a thread pool, as a web server has): the main
    # thread submits, then all are released by one barrier and meet again at the next.
    start = threading.Barrier(len(ROLES) + len(dispatchers) + 1)
    finish = threading.Barrier(len(ROLES) + len(dispatchers) + 1)
    current: list[str] = []
    results: list[tuple[int, str, object]] = []
    unhandled: list[BaseException] = []
    lock = threading.Lock()

    def decider(role: int) -> None:
        order_rng = random.Random(role)
        for _ in range(rounds):
            start.wait()
            for request_id in order_rng.sample(current, len(current)):
                try:
                    result: object = decide(world.desk, request_id, role)
                except BaseException as error:  # noqa: BLE001 - losers and unhandled, sorted below
                    result = error
                with lock:
                    results.append((role, request_id, result))
            finish.wait()

    def dispatch(dispatcher: Dispatcher) -> None:
        for _ in range(rounds):
            start.wait()
            try:
                dispatcher.run_until_idle()
            except BaseException as error:  # noqa: BLE001 - counted as unhandled
                with lock:
                    unhandled.append(error)
            finish.wait()

    threads = [threading.Thread(target=decider, args=(role,)) for role in range(len(ROLES))]
    threads += [threading.Thread(target=dispatch, args=(d,)) for d in dispatchers]
    for t in threads:
        t.start()
    completed = False
    try:
        for _ in range(rounds):
            ids = [world.desk.submit(world.new_request()).id for _ in range(per_round)]
            all_ids += ids
            current[:] = ids
            results.clear()
            start.wait()
            finish.wait()
            assert unhandled == []
            for request_id in ids:
                stored = storage.get(SHOP, request_id)
                decided = commands_of(stored)[1:]
                commands = [h.command for h in decided]
                mine = [(role, r) for role, i, r in results if i == request_id]
                won = [(role, r) for role, r in mine if isinstance(r, ReturnRequest)]
                lost = [r for _, r in mine if isinstance(r, errors.TransitionNotAllowed)]
                others = [
                    r
                    for _, r in mine
                    if not isinstance(r, (ReturnRequest, errors.TransitionNotAllowed))
                ]
                assert others == [], others
                assert len(won) == len(commands)
                assert sum(c in DECISIONS for c in commands) <= 1
                assert commands[0] in DECISIONS | {"cancel"}
                assert len(commands) == 1 or commands == ["approve_with_label", "cancel"]
                statuses = {h.status_to.value for h in decided}
                assert all(exc.status in statuses for exc in lost)
                assert Counter(str(h.actor) for h in decided) == Counter(
                    f"staff:t{r}" for r, _ in won
                )
                figures[f"first:{commands[0]}"] += 1
                figures["refused"] += len(lost)
        completed = True
    finally:
        if not completed:  # free the threads waiting at the barriers, then fail
            start.abort()
            finish.abort()
    for t in threads:
        t.join()
    world.dispatcher.run_until_idle()
    deliveries = world.mail.deliveries()
    for request_id in all_ids:
        stored = storage.get(SHOP, request_id)
        assert all(e.state is EffectState.DONE for e in storage.outbox(SHOP, request_id))
        assert not stored.needs_attention
        key = label_key(SHOP, request_id)
        approve = next((h for h in stored.history if h.command.startswith("approve")), None)
        if stored.status is Status.APPROVED:
            assert stored.label is not None
            assert world.labels.active[key] == stored.label
        else:
            assert key not in world.labels.active
        refund_owed = stored.status in {Status.REJECTED, Status.CANCELLED} or (
            approve is not None and ROLES[int((approve.actor.name or "")[1:])][1]
        )
        assert stored.refunded == (Money(495) if refund_owed else Money(0))
        assert world.payments.refunded(stored.return_fee.payment_reference) == stored.refunded  # type: ignore[union-attr]
        assert deliveries[mail_key(request_id, MailKind.REQUEST_RECEIVED)] >= 1
    approved_with_label = {
        label_key(SHOP, i)
        for i in all_ids
        if any(h.command == "approve_with_label" for h in storage.get(SHOP, i).history)
    }
    assert set(world.labels.created) <= approved_with_label
    refunds_per_key = Counter(r.key for r in world.payments.refunds)
    assert all(n == 1 for n in refunds_per_key.values())
    figures["rounds"] = rounds
    figures["requests"] = len(all_ids)
    figures["labels"] = len(world.labels.created)
    figures["refunds"] = len(world.payments.refunds)
    figures["duplicate mails"] = sum(n - 1 for n in deliveries.values())
    for s in (*workers, storage):
        s.close()
    return figures


def open_files(under: Path) -> int:
    """How many of this process's descriptors are open on files under ``under``.

    Only those: a pool or server another test left running may open sockets meanwhile.
    """
    count = 0
    for fd in Path("/proc/self/fd").iterdir():
        with contextlib.suppress(OSError):  # closed between the listing and the look
            if fd.readlink().is_relative_to(under):
                count += 1
    return count


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts open files in /proc")
def test_short_lived_threads_do_not_leak_sqlite_connections(tmp_path: Path) -> None:
    with SqliteStorage(tmp_path / "threads.sqlite3") as storage:
        world = build_world(storage)
        request = world.desk.submit(world.new_request())
        counts = []
        for _ in range(3):
            for _ in range(50):
                thread = threading.Thread(target=storage.get, args=(SHOP, request.id))
                thread.start()
                thread.join()
            # A finished thread's connection closes when it is collected (sqlite3 connections
            # sit in reference cycles); SQLite reuses the descriptors it keeps for the file.
            gc.collect()
            counts.append(open_files(tmp_path))
        assert counts[0] >= 1, counts  # the store's own connection is counted
        assert max(counts[1:]) <= counts[0] + 5, counts


def test_eight_threads_deciding_at_once_one_wins_on_a_wal_file(tmp_path: Path) -> None:
    figures = race_rounds(tmp_path / "races.sqlite3", 200, 1)
    assert figures["requests"] == 200
    assert figures["refused"] > 200 * 5
    assert sum(n for k, n in figures.items() if k.startswith("first:")) == 200
    # No failures, so no mail twice: a worker never redoes a send because the desk moved on.
    assert figures["duplicate mails"] == 0
    with sqlite3.connect(tmp_path / "races.sqlite3") as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_eight_threads_deciding_at_once_one_wins_on_postgres() -> None:
    figures = race_rounds(_postgres.server().fresh_url(), 100, 1)
    assert figures["requests"] == 100
    assert figures["refused"] > 100 * 5
    assert sum(n for k, n in figures.items() if k.startswith("first:")) == 100
    assert figures["duplicate mails"] == 0


@pytest.mark.soak
@soak
def test_soak_eight_threads_deciding_1000_rounds(tmp_path: Path) -> None:
    figures = race_rounds(tmp_path / "races.sqlite3", 1000, 2)
    assert figures["requests"] == 2000


def processes_on_one_file(
    tmp_path: Path, processes: int, commands: int, url: str | None = None
) -> Counter[str]:
    db, ledger, clock_path = (str(tmp_path / n) for n in ("p.sqlite3", "ledger.jsonl", "clock.txt"))
    db = url or db
    clock = support.FileClock(clock_path)
    clock.set(NOW)
    book = support.Ledger(ledger)
    with support.open_storage(db) as storage:
        desk = Desk(storage, clock=clock)
        world = build_world(MemoryStorage())  # only for its request factory
        ids = [desk.submit(world.new_request()).id for _ in range(12)]
    outs = [str(tmp_path / f"out-{n}.json") for n in range(processes)]
    workers = [
        CONTEXT.Process(
            target=support.desk_worker,
            kwargs={
                "db": db,
                "ledger": ledger,
                "clock": clock_path,
                "ids": ids,
                "seed": n,
                "commands": commands,
                "out": outs[n],
            },
        )
        for n in range(processes)
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
        assert w.exitcode == 0
    log = [row for out in outs for row in json.loads(Path(out).read_text(encoding="utf-8"))]
    assert len(log) == processes * commands
    assert [row for row in log if row[2].startswith("error:")] == []
    support.crash_worker(db, ledger, clock_path, None, False)  # dispatch what is left
    figures: Counter[str] = Counter(row[2].split(":")[0] for row in log)
    labels, voids, refunds = book.count("label"), book.count("void"), book.count("refund")
    with support.open_storage(db) as storage:
        for request_id in ids:
            stored = storage.get(SHOP, request_id)
            accepted = [
                r
                for r in log
                if r[1] == request_id and r[0] != "dispatch" and not r[2].startswith("refused")
            ]
            done = commands_of(stored)
            assert len(done) == 1 + len(accepted)
            for before, after in itertools.pairwise(done):
                assert after.status_from is before.status_to
                assert ALLOWED[after.status_from, after.command] is after.status_to
            assert all(e.state is EffectState.DONE for e in storage.outbox(SHOP, request_id))
            key = label_key(SHOP, request_id)
            if stored.status in {Status.APPROVED, Status.RECEIVED, Status.COMPLETED}:
                assert stored.label is not None
                assert labels[key] == 1
                assert key not in voids
            else:
                assert key not in labels or key in voids
            fee = stored.return_fee.amount if stored.return_fee else Money(0)
            assert stored.refunded == (Money(0) if stored.status is Status.REQUESTED else fee)
            assert refunds[Effect.refund(SHOP, request_id).key] == (
                0 if stored.status is Status.REQUESTED else 1
            )
            figures[f"final:{stored.status.value}"] += 1
    figures["duplicate mails"] = sum(n - 1 for n in book.count("mail").values())
    return figures


def test_four_processes_on_one_file_end_consistent(tmp_path: Path) -> None:
    figures = processes_on_one_file(tmp_path, 4, 60)
    assert figures["duplicate mails"] == 0
    assert figures["refused"] > 0
    assert figures["dispatched"] > 0


def test_four_processes_on_one_postgres_database_end_consistent(tmp_path: Path) -> None:
    figures = processes_on_one_file(tmp_path, 4, 60, _postgres.server().fresh_url())
    assert figures["duplicate mails"] == 0
    assert figures["refused"] > 0
    assert figures["dispatched"] > 0


@pytest.mark.soak
@soak
def test_soak_four_processes_250_commands_each(tmp_path: Path) -> None:
    figures = processes_on_one_file(tmp_path, 4, 250)
    assert figures["refused"] > 0


# -- fault sweep: every call of every port fails, before and after acting ------------------


WRITES = frozenset({"commit", "settle"})


def nth_call_of(
    methods: frozenset[str] | None, n: int, fault: Fault, *, persist: bool = False
) -> FaultPlan:
    """Fail the ``n``-th call of ``methods`` (or of any); with ``persist`` every later one too."""
    seen = Counter[str]()

    def plan(_call: int, name: str) -> Fault | None:
        if methods is not None and name not in methods:
            return None
        seen["calls"] += 1
        if seen["calls"] == n:
            return fault
        return Fault.BEFORE if persist and seen["calls"] > n else None

    return plan


def scenario(world: World, kind: str) -> ReturnRequest:
    request = world.desk.submit(world.new_request())
    if kind == "approve":
        return world.desk.approve(SHOP, request.id, refund_return_fee=True, actor="staff-1")
    return world.desk.reject(SHOP, request.id, reason="Buiten de termijn", actor="staff-1")


def reference_calls(kind: str) -> dict[str, int]:
    """How many calls each port gets when nothing fails."""
    world = build_world(MemoryStorage())
    proxies: dict[str, Any] = {
        "labels": inject_faults(world.labels, lambda _n, _m: None),
        "payments": inject_faults(world.payments, lambda _n, _m: None),
        "mail": inject_faults(world.mail, lambda _n, _m: None),
    }
    commits: list[str] = []
    storage = inject_faults(world.storage, lambda _n, m: commits.append(m))
    scenario(world, kind)
    drain(world, dispatcher_for(world, storage=storage, **proxies))
    calls = {name: proxy.calls for name, proxy in proxies.items()}
    calls["storage"] = sum(1 for m in commits if m in WRITES)
    return calls


def sweep_cases() -> list[tuple[str, str, int, Fault]]:
    cases = []
    for kind in ("approve", "reject"):
        for port, count in reference_calls(kind).items():
            cases += [(kind, port, n, f) for n in range(1, count + 1) for f in Fault]
    return cases


def run_with_fault(
    storage: Storage, kind: str, port: str, plan: FaultPlan, *, max_attempts: int = 8
) -> tuple[World, ReturnRequest, int]:
    world = build_world(storage)
    request = scenario(world, kind)
    faulty: dict[str, Any] = {}
    if port == "storage":
        faulty["storage"] = inject_faults(storage, plan)
    else:
        faulty[port] = inject_faults(getattr(world, port), plan)
    escaped = drain(world, dispatcher_for(world, max_attempts=max_attempts, **faulty))
    return world, world.desk.get(SHOP, request.id), escaped


def fresh_store_like(store: Storage) -> Storage:
    """An empty store of the same kind (SQLite in memory for a file: it is quicker)."""
    if isinstance(store, MemoryStorage):
        return MemoryStorage()
    if isinstance(store, SqliteStorage):
        return SqliteStorage(":memory:")
    return _postgres.storage(max_size=1)


def test_every_failure_point_before_and_after_acting_converges(store: Storage) -> None:
    figures: Counter[str] = Counter()
    for kind, port, n, fault in sweep_cases():
        storage = fresh_store_like(store)
        methods = WRITES if port == "storage" else None
        world, stored, escaped = run_with_fault(storage, kind, port, nth_call_of(methods, n, fault))
        figures["cases"] += 1
        figures["escaped"] += escaped
        entries = world.storage.outbox(SHOP, stored.id)
        assert all(e.state is EffectState.DONE for e in entries), (kind, port, n, fault, entries)
        assert not stored.needs_attention
        # Money: exactly one refund of the whole fee, recorded on the request.
        assert [r.amount for r in world.payments.refunds] == [Money(495)]
        assert stored.refunded == Money(495)
        assert stored.refunds[0].reference == world.payments.refunds[0].reference
        if kind == "approve":
            assert stored.status is Status.APPROVED
            assert list(world.labels.active) == [label_key(SHOP, stored.id)]
            assert stored.label == world.labels.active[label_key(SHOP, stored.id)]
            owed = {MailKind.REQUEST_RECEIVED, MailKind.LABEL_CREATED}
        else:
            assert stored.status is Status.REJECTED
            assert world.labels.calls == []
            owed = {MailKind.REQUEST_RECEIVED, MailKind.REJECTED}
        deliveries = world.mail.deliveries()
        assert set(deliveries) == {mail_key(stored.id, k) for k in owed}
        twice = sum(n - 1 for n in deliveries.values())
        # A mail is delivered again only when its acceptance (or its settling commit) was lost.
        assert twice <= (
            1 if (fault is Fault.AFTER and port in {"mail", "storage"}) or port == "storage" else 0
        )
        figures["duplicate mails"] += twice
        close = getattr(storage, "close", None)
        if close is not None:
            close()
    assert figures["cases"] == 28


# The call that keeps failing; the port's other calls (voiding a label) still work.
CALLS = {
    "labels": frozenset({"create_label"}),
    "payments": frozenset({"refund"}),
    "mail": frozenset({"send"}),
}
PERSISTENT = [
    ("approve", "payments", Fault.BEFORE),
    ("approve", "payments", Fault.AFTER),
    ("approve", "labels", Fault.BEFORE),
    ("approve", "labels", Fault.AFTER),
    ("approve", "mail", Fault.BEFORE),
    ("reject", "payments", Fault.BEFORE),
    ("reject", "payments", Fault.AFTER),
    ("reject", "mail", Fault.BEFORE),
]


@pytest.mark.parametrize(("kind", "port", "fault"), PERSISTENT)
def test_an_effect_failing_for_good_needs_attention_and_leaves_no_stray_label(
    kind: str, port: str, fault: Fault
) -> None:
    world, stored, _ = run_with_fault(
        MemoryStorage(),
        kind,
        port,
        nth_call_of(CALLS[port], 1, fault, persist=True),
        max_attempts=3,
    )
    assert stored.needs_attention
    assert [r.id for r in world.desk.needing_attention(SHOP).items] == [stored.id]
    states = Counter(e.state for e in world.storage.outbox(SHOP, stored.id))
    assert states[EffectState.DEAD] >= 1
    assert states[EffectState.PENDING] == 0
    # Whatever the carrier made is on the request or voided; money never exceeds the fee.
    assert set(world.labels.active) <= ({stored.label_key} if stored.label else set())
    assert sum((r.amount for r in world.payments.refunds), Money(0)) <= Money(495)
    assert len(world.payments.refunds) <= 1


def test_fail_nth_counts_the_calls_of_the_named_method() -> None:
    world = build_world(MemoryStorage())
    request = world.desk.submit(world.new_request())
    labels = inject_faults(FakeLabels(), fail_nth(1, Fault.BEFORE, method="void_label"))
    labels.create_label("label:x", request)
    with pytest.raises(errors.PortUnavailable):
        labels.void_label("label:x")


# -- the dispatcher must not repeat an effect because the request moved on ------------------


class _MeddlingMail:
    """A transport that, during the first send, lets something else happen to the request."""

    def __init__(self, inner: MailRecorder, meanwhile: Callable[[], object]) -> None:
        self._inner = inner
        self._meanwhile: Callable[[], object] | None = meanwhile

    def send(self, key: str, mail: Any) -> None:
        self._inner.send(key, mail)
        meanwhile, self._meanwhile = self._meanwhile, None
        if meanwhile is not None:
            meanwhile()


def test_a_mail_is_sent_once_when_a_staff_member_decides_during_the_send(store: Storage) -> None:
    world = build_world(store)
    request = world.desk.submit(world.new_request())
    mail = _MeddlingMail(
        world.mail, lambda: world.desk.approve(SHOP, request.id, with_label=False, actor="s")
    )
    dispatcher_for(world, mail=mail).run_until_idle()
    assert world.mail.deliveries()[mail_key(request.id, MailKind.REQUEST_RECEIVED)] == 1


def test_a_worker_that_lost_its_lease_stops_instead_of_repeating_the_effect(store: Storage) -> None:
    world = build_world(store)
    request = world.desk.submit(world.new_request())
    other = dispatcher_for(world, owner="other")

    def lease_runs_out() -> None:
        world.clock.advance(dt.timedelta(minutes=6))
        other.run_until_idle()

    slow = dispatcher_for(world, mail=_MeddlingMail(world.mail, lease_runs_out), owner="slow")
    slow.run_until_idle()
    # At least once allows two deliveries (the slow worker's and the one that took over).
    assert world.mail.deliveries()[mail_key(request.id, MailKind.REQUEST_RECEIVED)] <= 2


# -- shops: another shop's ids are not found, always ----------------------------------------

OTHER_SHOPS = ("shop-2", "Shop-1", "shop-1 ", "shop-10", "SHOP-1")


@pytest.fixture(scope="module", params=["memory", "sqlite", "postgres"])
def shop_world(request: pytest.FixtureRequest) -> Iterator[tuple[World, list[str]]]:
    storage: Storage = (
        _postgres.storage()
        if request.param == "postgres"
        else MemoryStorage()
        if request.param == "memory"
        else SqliteStorage(":memory:")
    )
    world = build_world(storage)
    ids = [world.desk.submit(world.new_request(), idempotency_key=f"sub-{i}").id for i in range(5)]
    world.desk.approve(SHOP, ids[1], actor="s", idempotency_key="dec-1")
    world.desk.reject(SHOP, ids[2], reason="Nee", actor="s")
    world.desk.approve(SHOP, ids[3], with_label=False, actor="s")
    world.desk.approve(SHOP, ids[4], actor="s")
    world.desk.mark_received(SHOP, ids[4], actor="w")
    world.dispatcher.run_until_idle()
    yield world, ids
    close = getattr(storage, "close", None)
    if close is not None:
        close()


SHOP_COMMANDS: dict[str, Callable[[Desk, str, str], object]] = {
    "get": lambda d, s, i: d.get(s, i),
    "approve": lambda d, s, i: d.approve(s, i, actor="x"),
    "approve_keyed": lambda d, s, i: d.approve(s, i, actor="s", idempotency_key="dec-1"),
    "approve_without": lambda d, s, i: d.approve(s, i, with_label=False, actor="x"),
    "reject": lambda d, s, i: d.reject(s, i, reason="x", actor="x"),
    "cancel": lambda d, s, i: d.cancel(s, i),
    "mark_received": lambda d, s, i: d.mark_received(s, i, actor="x"),
    "complete": lambda d, s, i: d.complete(s, i, actor="x"),
    "resolve_attention": lambda d, s, i: d.resolve_attention(s, i, actor="x"),
}
SHOP_QUERIES: dict[str, Callable[[Desk, str], object]] = {
    "list": lambda d, s: d.list(s).items,
    "requests_tab": lambda d, s: d.requests_tab(s).items,
    "rejected": lambda d, s: d.requests_tab(s, rejected=True).items,
    "incoming": lambda d, s: d.incoming_returns(s).items,
    "history": lambda d, s: d.history_tab(s).items,
    "attention": lambda d, s: d.needing_attention(s).items,
    "everything": lambda d, s: d.list(s, Query(statuses=frozenset(Status), limit=500)).items,
}


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    command=st.sampled_from(sorted(SHOP_COMMANDS)),
    query=st.sampled_from(sorted(SHOP_QUERIES)),
    shop=st.sampled_from(OTHER_SHOPS),
    index=st.integers(0, 4),
)
def test_another_shops_ids_are_not_found_whatever_the_command(
    shop_world: tuple[World, list[str]], command: str, query: str, shop: str, index: int
) -> None:
    world, ids = shop_world
    before = [world.desk.get(SHOP, i) for i in ids]
    with pytest.raises(errors.NotFound) as info:
        SHOP_COMMANDS[command](world.desk, shop, ids[index])
    assert info.value.shop_id == shop
    assert SHOP_QUERIES[query](world.desk, shop) == ()
    assert world.storage.outbox(shop, ids[index]) == ()
    assert world.storage.idempotency_record(shop, f"sub-{index}") is None
    assert [world.desk.get(SHOP, i) for i in ids] == before


def test_a_key_used_in_one_shop_means_nothing_in_another(
    shop_world: tuple[World, list[str]],
) -> None:
    world, ids = shop_world
    new = world.new_request(shop_id="shop-2")
    mine = world.desk.submit(new, idempotency_key="sub-0")
    assert mine.shop_id == "shop-2"
    assert mine.id not in ids
    assert world.desk.submit(new, idempotency_key="sub-0").id == mine.id
    assert world.desk.get(SHOP, ids[0]).shop_id == SHOP


# -- money: the store refuses refunds above the paid fee, whoever asks ---------------------


def over_refunded(request: ReturnRequest, *amounts: int) -> ReturnRequest:
    """The request with refunds bolted on past the aggregate's own check."""
    extra = tuple(
        RefundRecord(f"refund:{request.id}:{n}", Money(a), f"re_x{n}", NOW)
        for n, a in enumerate(amounts)
    )
    return attrs.evolve(request, refunds=request.refunds + extra)


def test_the_store_refuses_refunds_above_the_fee_built_behind_the_aggregates_back(
    store: Storage,
) -> None:
    world = build_world(store)
    request = world.desk.submit(world.new_request())
    with pytest.raises(errors.InvalidInput):
        request.with_refund(RefundRecord("r", Money(496), "re", NOW))
    for amounts in ((496,), (495, 1), (200, 200, 100), (1,) * 496):
        with pytest.raises(errors.PortRejected, match="495"):
            store.commit(Commit(over_refunded(request, *amounts), request.version))
    with pytest.raises(errors.PortRejected):
        store.commit(
            Commit(
                attrs.evolve(request, refunds=(RefundRecord("r", Money(100, "USD"), "re", NOW),)),
                request.version,
            )
        )
    unpaid = world.desk.submit(world.new_request(return_fee=None))
    with pytest.raises(errors.PortRejected):
        store.commit(Commit(over_refunded(unpaid, 1), unpaid.version))
    exact = store.commit(Commit(over_refunded(request, 200, 295), request.version))
    assert exact.refunded == Money(495)
    assert world.desk.get(SHOP, request.id).version == request.version + 1


def test_the_sqlite_money_cap_holds_for_any_writer(tmp_path: Path) -> None:
    path = tmp_path / "cap.sqlite3"
    with SqliteStorage(path) as storage:
        world = build_world(storage)
        request = world.desk.submit(world.new_request())
    with (
        sqlite3.connect(path) as connection,
        pytest.raises(sqlite3.IntegrityError, match="money_cap"),
    ):
        connection.execute(
            "UPDATE requests SET refunded_minor = fee_paid_minor + 1 WHERE id = ?", (request.id,)
        )


def test_the_store_does_not_let_a_commit_raise_the_paid_fee(store: Storage) -> None:
    world = build_world(store)
    request = world.desk.submit(world.new_request())
    richer = attrs.evolve(request, return_fee=PaidFee(Money(99_999), "pay_1"))
    with pytest.raises(errors.PortRejected):
        store.commit(Commit(over_refunded(richer, 99_999), request.version))


def hammer_refunds(storage: Storage, attempts: int, threads: int) -> Counter[str]:
    world = build_world(storage)
    request = world.desk.submit(world.new_request(return_fee=PaidFee(Money(10_000), "pay_big")))
    barrier = threading.Barrier(threads)
    figures: Counter[str] = Counter()
    lock = threading.Lock()

    def attempt_refunds(seed: int) -> None:
        rng = random.Random(seed)
        mine: Counter[str] = Counter()
        barrier.wait()
        for n in range(attempts // threads):
            current = storage.get(SHOP, request.id)
            record = RefundRecord(f"refund:{seed}:{n}", Money(rng.randint(1, 2_500)), "re", NOW)
            try:
                storage.commit(
                    Commit(
                        attrs.evolve(current, refunds=(*current.refunds, record)), current.version
                    )
                )
            except errors.ConcurrentModification:
                mine["lost race"] += 1
            except errors.PortRejected:
                mine["refused by the cap"] += 1
            else:
                mine["saved"] += 1
        with lock:
            figures.update(mine)

    pool = [threading.Thread(target=attempt_refunds, args=(seed,)) for seed in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    final = storage.get(SHOP, request.id)
    assert final.refunded <= Money(10_000)
    assert len(final.refunds) == figures["saved"]
    figures["refunded"] = final.refunded.amount
    return figures


def test_10000_concurrent_refund_attempts_never_exceed_the_fee(store: Storage) -> None:
    figures = hammer_refunds(store, 10_000, 8)
    assert sum(figures[k] for k in ("lost race", "refused by the cap", "saved")) == 10_000
    assert figures["refused by the cap"] > 0
    assert figures["saved"] > 0
    assert figures["refunded"] <= 10_000


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_many_dispatchers_refunding_one_request_move_the_fee_once(
    tmp_path: Path, kind: str
) -> None:
    db = _postgres.server().fresh_url() if kind == "postgres" else str(tmp_path / "refunds.sqlite3")
    storage = support.open_storage(db)
    world = build_world(storage)
    ids = [world.desk.submit(world.new_request()).id for _ in range(20)]
    for request_id in ids:
        world.desk.reject(SHOP, request_id, reason="Nee", actor="s")
    barrier = threading.Barrier(8)
    payments = FakePayments()
    for n in range(1, 21):
        payments.charge(f"pay_{n}", Money(495))

    def work(n: int) -> None:
        mine = support.open_storage(db)
        barrier.wait()
        dispatcher_for(world, storage=mine, payments=payments, owner=f"w{n}").run_until_idle()
        mine.close()

    pool = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    for request_id in ids:
        stored = storage.get(SHOP, request_id)
        assert stored.refunded == Money(495)
        assert payments.refunded(stored.return_fee.payment_reference) == Money(495)  # type: ignore[union-attr]
    assert len(payments.refunds) == 20
    storage.close()


@pytest.mark.soak
@soak
def test_soak_100000_refund_attempts(tmp_path: Path) -> None:
    with SqliteStorage(tmp_path / "soak.sqlite3") as storage:
        figures = hammer_refunds(storage, 100_000, 8)
    assert figures["refunded"] <= 10_000
