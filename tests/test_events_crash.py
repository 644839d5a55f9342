"""Crash recovery with events: a worker SIGKILLed anywhere still tells each event once per key.

As in ``test_crash.py``: a child process runs the dispatcher against a SQLite file, with the
desk's events queued, and kills itself right before or after a chosen call (a provider's, the
event sink's, or the store's). A fresh worker takes over once the leases ran out. Afterwards
every entry is done, every event is in the outbox once and was delivered, and an event went
twice only when the worker died after delivering it and before settling its entry — the
documented at-least-once case; never otherwise.
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
import os
import signal
from collections import Counter
from pathlib import Path
from typing import Any

import attrs

from retouraanvraag.dispatcher import Dispatcher
from retouraanvraag.model import Customer, Effect, EffectKind, Event, EventType, Money, PaidFee
from retouraanvraag.model import event_key as make_event_key
from retouraanvraag.ports import EffectState
from retouraanvraag.workflow import Desk, NewItem, NewRequest

from . import _reliability_support as support

NOW = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)
FEE = Money(495)
CONTEXT = multiprocessing.get_context("forkserver")


class LedgerEvents:
    """An event sink whose deliveries live in the ledger: every delivery, as over HTTP."""

    def __init__(self, ledger: support.Ledger) -> None:
        self._ledger = ledger

    def deliver(self, event: Event) -> None:
        self._ledger.act("event", event.key, lambda _n: {"version": event.version}, dedupe=False)


@attrs.frozen
class Scenario:
    root: Path
    ids: tuple[str, ...]

    @property
    def db(self) -> str:
        return str(self.root / "returns.sqlite3")

    @property
    def ledger(self) -> str:
        return str(self.root / "ledger.jsonl")

    @property
    def clock(self) -> str:
        return str(self.root / "clock.txt")


def prepare(root: Path) -> Scenario:
    """Two requests with events owed: one approved with a label and a refund, one rejected."""
    root.mkdir(parents=True)
    clock = support.FileClock(str(root / "clock.txt"))
    clock.set(NOW)
    ids = []
    with support.open_storage(str(root / "returns.sqlite3")) as storage:
        desk = Desk(storage, clock=clock, events=True)
        for serial in (1, 2):
            new = NewRequest(
                shop_id=support.SHOP,
                order_number=f"100{serial}",
                customer=Customer("jan@example.nl", "Jan Jansen", "nl"),
                from_country="NL",
                order_value=Money(5995),
                items=(NewItem("TS-1", "T-shirt", 1, Money(1995), "Te klein"),),
                return_fee=PaidFee(FEE, f"pay_{serial}"),
            )
            ids.append(desk.submit(new).id)
        desk.approve(support.SHOP, ids[0], refund_return_fee=True, actor="staff-1")
        desk.reject(support.SHOP, ids[1], reason="Buiten de termijn", actor="staff-1")
    return Scenario(root, tuple(ids))


def event_worker(db: str, ledger: str, clock: str, kill: str | None, record: str | None) -> None:
    """A dispatcher worker with an event sink; with ``kill`` it SIGKILLs itself there."""
    switch: Any = support._Recorder() if record else support._KillSwitch(kill)
    book = support.Ledger(ledger)
    storage = support.open_storage(db)
    inner: Any = storage if not record else support._RecordingStorage(storage, switch)
    dispatcher = Dispatcher(
        support.killing(inner, switch),
        labels=support.killing(support.LedgerLabels(book), switch),
        payments=support.killing(support.LedgerPayments(book), switch),
        mail=support.killing(support.LedgerMail(book, dedupe=True), switch),
        renderer=support.renderer(),
        events=support.killing(LedgerEvents(book), switch),
        clock=support.FileClock(clock),
        lease=support.LEASE,
        seed=os.getpid(),
    )
    dispatcher.run_until_idle()
    storage.close()
    if record:
        Path(record).write_text(
            "\n".join(f"{method} {key or '-'}" for method, key in switch.calls), encoding="utf-8"
        )


def expected_events(ids: tuple[str, ...]) -> set[str]:
    approved, rejected = ids
    kinds = {
        approved: (
            EventType.SUBMITTED,
            EventType.APPROVED,
            EventType.REFUNDED,
            EventType.LABEL_CREATED,
        ),
        rejected: (EventType.SUBMITTED, EventType.REJECTED, EventType.REFUNDED),
    }
    return {make_event_key(support.SHOP, i, k, 1) for i, types in kinds.items() for k in types}


def kill_points(root: Path) -> list[tuple[str, bool]]:
    """Every call of a reference run, before and after; and whether it may repeat an event."""
    scenario = prepare(root)
    record = root / "calls.txt"
    event_worker(scenario.db, scenario.ledger, scenario.clock, None, str(record))
    points: list[tuple[str, bool]] = []
    seen: Counter[str] = Counter()
    for line in record.read_text(encoding="utf-8").splitlines():
        method, settles = line.split(" ", 1)
        seen[method] += 1
        for when in ("before", "after"):
            in_flight = (method == "deliver" and when == "after") or (
                when == "before" and settles.startswith("event:")
            )
            points.append((f"{method}:{when}:{seen[method]}", in_flight))
    return points


def check_recovered(scenario: Scenario) -> int:
    """Nothing lost, nothing twice but an event in flight; returns how many went twice."""
    book = support.Ledger(scenario.ledger)
    with support.open_storage(scenario.db) as storage:
        for request_id in scenario.ids:
            outbox = storage.outbox(support.SHOP, request_id)
            assert {e.state for e in outbox} == {EffectState.DONE}, outbox
            assert not storage.get(support.SHOP, request_id).needs_attention
        queued = Counter(
            e.key
            for request_id in scenario.ids
            for e in storage.outbox(support.SHOP, request_id)
            if e.effect.kind is EffectKind.EVENT
        )
    assert set(queued) == expected_events(scenario.ids)
    assert set(queued.values()) == {1}
    delivered = book.count("event")
    assert set(delivered) == expected_events(scenario.ids)
    assert book.count("label") == Counter(
        {Effect.create_label(support.SHOP, scenario.ids[0]).key: 1}
    )
    assert set(book.count("refund").values()) == {1}
    assert all(n <= 2 for n in delivered.values()), delivered
    return sum(1 for n in delivered.values() if n > 1)


def test_a_worker_killed_anywhere_tells_every_event_and_repeats_only_one_in_flight(
    tmp_path: Path,
) -> None:
    points = [p for p in kill_points(tmp_path / "reference") if not p[0].startswith("get:")]
    scenarios = {spec: prepare(tmp_path / spec.replace(":", "-")) for spec, _ in points}
    crashed = {
        spec: CONTEXT.Process(target=event_worker, args=(s.db, s.ledger, s.clock, spec, None))
        for spec, s in scenarios.items()
    }
    for process in crashed.values():
        process.start()
    for spec, process in crashed.items():
        process.join(60)
        assert process.exitcode == -signal.SIGKILL, f"{spec} never struck ({process.exitcode})"
    for scenario in scenarios.values():
        support.FileClock(scenario.clock).advance(support.LEASE + dt.timedelta(minutes=1))
    restarted = [
        CONTEXT.Process(target=event_worker, args=(s.db, s.ledger, s.clock, None, None))
        for s in scenarios.values()
    ]
    for process in restarted:
        process.start()
    for process in restarted:
        process.join(60)
        assert process.exitcode == 0
    figures: Counter[str] = Counter()
    for spec, in_flight in points:
        twice = check_recovered(scenarios[spec])
        assert twice == int(in_flight), spec
        figures["killed"] += 1
        figures["repeated events"] += twice
        figures[spec.split(":")[0]] += 1
    print(f"events crash sweep: {dict(figures)}")  # noqa: T201 - figures for the docs
    assert figures["deliver"] == 2 * len(expected_events(prepare(tmp_path / "count").ids))
    # A kill right after a delivery, or right before the settle that records it: once each.
    assert figures["repeated events"] == 2 * len(expected_events(scenarios[points[0][0]].ids))
