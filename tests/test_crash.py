"""Crash recovery: a dispatcher worker process killed with SIGKILL at every point loses nothing.

A child process runs the dispatcher against a SQLite file and kills itself (``SIGKILL``, no
clean-up of any kind) right before or right after a chosen call: a provider call (the label,
refund or mail was made, the answer never arrived) or a storage commit (the effect's result was,
or was not, saved). The providers keep what they did in a file ledger, so the parent sees their
acts across the crash. The parent then lets the dead worker's leases run out (a clock kept in a
file) and starts a fresh worker: that is the reconciler. Afterwards every owed effect has
happened, labels and refunds exactly once, and a mail twice only for the one plain-SMTP send in
flight at the crash, the documented at-least-once case.
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
import os
import signal
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

from retouraanvraag.dispatcher import Dispatcher
from retouraanvraag.model import Customer, Effect, MailKind, Money, PaidFee, Status, label_key
from retouraanvraag.ports import EffectState
from retouraanvraag.workflow import Desk, NewItem, NewRequest

from . import _postgres
from . import _reliability_support as support

SOAK = bool(os.environ.get("RETOURAANVRAAG_SOAK"))
NOW = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)
FEE = Money(495)
CONTEXT = multiprocessing.get_context("forkserver")
CONTEXT.set_forkserver_preload(["tests._reliability_support", "retouraanvraag.adapters.postgres"])


@attrs.frozen
class Scenario:
    root: Path
    ids: dict[str, str]
    url: str | None = None  # a PostgreSQL schema's; else a SQLite file in ``root``

    @property
    def db(self) -> str:
        return self.url or str(self.root / "returns.sqlite3")

    @property
    def ledger(self) -> str:
        return str(self.root / "ledger.jsonl")

    @property
    def clock(self) -> str:
        return str(self.root / "clock.txt")


def submission(serial: int) -> NewRequest:
    return NewRequest(
        shop_id=support.SHOP,
        order_number=f"10{serial:02d}",
        customer=Customer("jan@example.nl", "Jan Jansen", "nl"),
        from_country="NL",
        order_value=Money(5995),
        items=(NewItem("TS-1", "T-shirt", 1, Money(1995), "Te klein"),),
        return_fee=PaidFee(FEE, f"pay_{serial}"),
    )


def prepare(root: Path, kind: str = "sqlite") -> Scenario:
    """Four requests with owed effects of every kind, one label already made and cancelled."""
    root.mkdir()
    scenario = Scenario(root, {}, _postgres.server().fresh_url() if kind == "postgres" else None)
    clock = support.FileClock(scenario.clock)
    clock.set(NOW)
    book = support.Ledger(scenario.ledger)
    with support.open_storage(scenario.db) as storage:
        desk = Desk(storage, clock=clock)
        ids = {
            name: desk.submit(submission(i)).id for i, name in enumerate(("r1", "r2", "r3", "r4"))
        }
        desk.approve(support.SHOP, ids["r3"], actor="staff-1")
        Dispatcher(
            storage,
            labels=support.LedgerLabels(book),
            payments=support.LedgerPayments(book),
            mail=support.LedgerMail(book, dedupe=False),
            renderer=support.renderer(),
            clock=clock,
        ).run_until_idle()
        desk.approve(support.SHOP, ids["r1"], refund_return_fee=True, actor="staff-1")
        desk.reject(support.SHOP, ids["r2"], reason="Buiten de termijn", actor="staff-1")
        desk.cancel(support.SHOP, ids["r3"])
        desk.approve(support.SHOP, ids["r4"], with_label=False, actor="staff-1")
    return attrs.evolve(scenario, ids=ids)


def run_worker(
    scenario: Scenario, kill: str | None, *, dedupe: bool
) -> multiprocessing.process.BaseProcess:
    process = CONTEXT.Process(
        target=support.crash_worker,
        args=(scenario.db, scenario.ledger, scenario.clock, kill, dedupe),
    )
    process.start()
    return process


@attrs.frozen
class KillPoint:
    spec: str
    duplicates_mail: bool


def kill_points(root: Path, kind: str = "sqlite") -> list[KillPoint]:
    """Every provider call and every claim, commit and settle of a dispatch, before and after.

    The points come from a reference run of the dispatch of :func:`prepare` (1 label, 3
    refunds, 1 void and 4 mails to go). A plain transport delivers a mail twice exactly when
    the worker dies after sending it and before its entry is settled.
    """
    scenario = prepare(root, kind)
    calls = support.reference_calls(scenario.db, scenario.ledger, scenario.clock)
    points: list[KillPoint] = []
    seen: Counter[str] = Counter()
    for method, settles in calls:
        seen[method] += 1
        n = seen[method]
        for when in ("before", "after"):
            mail_in_flight = (method == "send" and when == "after") or (
                when == "before" and settles is not None and settles.startswith("mail:")
            )
            points.append(KillPoint(f"{method}:{when}:{n}", duplicates_mail=mail_in_flight))
    return points


def mail_key(request_id: str, kind: MailKind) -> str:
    return Effect.send_mail(support.SHOP, request_id, kind).key


def label_of(request_id: str) -> str:
    return label_key(support.SHOP, request_id)


def refund_of(request_id: str) -> str:
    return Effect.refund(support.SHOP, request_id).key


def owed_mails(ids: dict[str, str]) -> set[str]:
    return {
        *(mail_key(i, MailKind.REQUEST_RECEIVED) for i in ids.values()),
        mail_key(ids["r1"], MailKind.LABEL_CREATED),
        mail_key(ids["r3"], MailKind.LABEL_CREATED),
        mail_key(ids["r2"], MailKind.REJECTED),
        mail_key(ids["r3"], MailKind.CANCELLED),
        mail_key(ids["r4"], MailKind.APPROVED_WITHOUT_RETURN),
    }


def check_recovered(scenario: Scenario, *, dedupe: bool) -> int:
    """Assert that nothing was lost and nothing but an in-flight plain mail duplicated.

    Returns:
        How many mails were delivered twice.
    """
    ids = scenario.ids
    book = support.Ledger(scenario.ledger)
    entries = book.entries()
    with support.open_storage(scenario.db) as storage:
        requests = {name: storage.get(support.SHOP, i) for name, i in ids.items()}
        for request_id in ids.values():
            states = {e.key: e.state for e in storage.outbox(support.SHOP, request_id)}
            assert set(states.values()) == {EffectState.DONE}, states
            # Every effect done is in the history, once, whatever the crash interrupted.
            history = storage.get(support.SHOP, request_id).history
            recorded = [h.effect for h in history if h.effect is not None]
            assert sorted(recorded) == sorted(states), (recorded, states)
    # Labels: one per approved-with-label request, the one the request carries; r3's voided.
    labels = {e["key"]: e for e in entries if e["kind"] == "label"}
    assert book.count("label") == Counter({label_of(ids["r1"]): 1, label_of(ids["r3"]): 1})
    r1 = requests["r1"]
    assert r1.status is Status.APPROVED
    assert r1.label is not None
    assert r1.label.tracking_number == labels[label_of(ids["r1"])]["tracking"]
    assert set(book.count("void")) == {label_of(ids["r3"])}
    # Refunds: exactly one per request that owes one, of the whole fee, recorded on it.
    refunds = {e["key"]: e for e in entries if e["kind"] == "refund"}
    assert book.count("refund") == Counter({refund_of(ids[n]): 1 for n in ("r1", "r2", "r3")})
    for name in ("r1", "r2", "r3"):
        request = requests[name]
        assert request.refunded == FEE
        (record,) = request.refunds
        assert record.reference == refunds[refund_of(request.id)]["reference"]
        assert refunds[record.key]["amount"] == FEE.amount
    assert requests["r4"].refunds == ()
    assert not any(r.needs_attention for r in requests.values())
    # Mail: every owed mail delivered; twice at most, and only the one in flight.
    delivered = book.count("mail")
    assert set(delivered) == owed_mails(ids)
    twice = [k for k, n in delivered.items() if n > 1]
    assert all(n <= 2 for n in delivered.values()), delivered
    assert len(twice) <= (0 if dedupe else 1), delivered
    return len(twice)


@pytest.fixture
def scratch(tmp_path: Path) -> Iterator[Path]:
    """A directory in memory when the machine has one: a SIGKILL needs no disk to be honest.

    The kernel keeps what a killed process wrote (its page cache survives the process), so
    syncing to a real disk adds time, not truth, to a process-crash test.
    """
    shm = Path("/dev/shm")  # noqa: S108 - a private directory below it, removed afterwards
    if not shm.is_dir():
        yield tmp_path
        return
    with tempfile.TemporaryDirectory(dir=shm, prefix="retouraanvraag-crash-") as path:
        yield Path(path)


def crash_and_recover(
    tmp_path: Path, points: list[KillPoint], *, dedupe: bool, kind: str = "sqlite"
) -> Counter[str]:
    scenarios = {p.spec: prepare(tmp_path / p.spec.replace(":", "-"), kind) for p in points}
    crashed = {point: run_worker(s, point, dedupe=dedupe) for point, s in scenarios.items()}
    for process in crashed.values():
        process.join(30)
    figures: Counter[str] = Counter()
    for point, process in crashed.items():
        assert process.exitcode == -signal.SIGKILL, f"{point} never struck ({process.exitcode})"
        figures["killed"] += 1
    for scenario in scenarios.values():
        # The dead worker's leases run out; a fresh process takes over (the reconciler).
        support.FileClock(scenario.clock).advance(support.LEASE + dt.timedelta(minutes=1))
    restarted = [run_worker(s, None, dedupe=dedupe) for s in scenarios.values()]
    for process in restarted:
        process.join(30)
        assert process.exitcode == 0
    expected = {p.spec: p.duplicates_mail and not dedupe for p in points}
    for point, scenario in scenarios.items():
        twice = check_recovered(scenario, dedupe=dedupe)
        assert twice == int(expected[point]), point
        figures["duplicate mails"] += twice
        figures[point.split(":")[0]] += 1
    return figures


@pytest.fixture(params=["sqlite", "postgres"])
def kind(request: pytest.FixtureRequest) -> str:
    """The store the workers share: a SQLite file, or a PostgreSQL schema of its own."""
    return str(request.param)


def test_a_worker_killed_anywhere_loses_nothing_and_duplicates_only_plain_mail(
    scratch: Path, kind: str
) -> None:
    points = kill_points(scratch / "reference", kind)
    # Around reads a kill is a kill around the neighbouring write; the soak run does them too.
    points = [p for p in points if SOAK or not p.spec.startswith("get:")]
    figures = crash_and_recover(scratch, points, dedupe=False, kind=kind)
    assert figures["killed"] == len(points) >= 40
    # Every provider call and every settling write was a kill point, before and after.
    assert figures["create_label"] == figures["void_label"] == 2
    assert figures["refund"] == 6
    assert figures["send"] == 8
    # A kill right after a plain send leaves that mail to be sent again, and so does a kill
    # right before the write that settles a mail: 8, and nothing else.
    assert figures["duplicate mails"] == 8


def test_a_deduplicating_mail_transport_makes_mail_exactly_once_across_crashes(
    scratch: Path, kind: str
) -> None:
    points = [p for p in kill_points(scratch / "reference", kind) if p.duplicates_mail]
    figures = crash_and_recover(scratch, points, dedupe=True, kind=kind)
    assert figures["killed"] == len(points)
    assert figures["duplicate mails"] == 0


def test_a_worker_that_finishes_leaves_nothing_for_the_next(tmp_path: Path, kind: str) -> None:
    scenario = prepare(tmp_path / "clean", kind)
    support.crash_worker(scenario.db, scenario.ledger, scenario.clock, None, False)
    assert check_recovered(scenario, dedupe=False) == 0
    support.crash_worker(scenario.db, scenario.ledger, scenario.clock, None, False)
    assert check_recovered(scenario, dedupe=False) == 0


@pytest.mark.soak
@pytest.mark.skipif(not SOAK, reason="soak run only (make soak)")
def test_soak_crash_sweep_repeated(scratch: Path) -> None:
    for round_ in range(5):
        (scratch / f"round-{round_}").mkdir()
        points = kill_points(scratch / f"reference-{round_}")
        figures = crash_and_recover(scratch / f"round-{round_}", points, dedupe=False)
        assert figures["killed"] == len(points)
