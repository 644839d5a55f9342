"""Events for the host: every transition and effect, through the outbox, exactly once per key.

The desk queues a transition's event in the commit that makes the transition; the dispatcher
queues the event of a label kept, a refund or an effect given up in the commit that records it,
and delivers events with the same retries, backoff and "needs attention" as every other effect.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import json
import logging
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from retouraanvraag import rules
from retouraanvraag._codec import effect_from_json, effect_to_json, event_from_json, event_to_json
from retouraanvraag.errors import InvalidInput, PortRejected, PortUnavailable, TransitionNotAllowed
from retouraanvraag.model import (
    Actor,
    Customer,
    Effect,
    EffectKind,
    Event,
    EventType,
    ReturnRequest,
    Status,
    event_key,
    events_since,
)
from retouraanvraag.ports import Commit, EffectState, EventSink, Storage
from retouraanvraag.testing import EventRecorder, FakeLabels, MemoryStorage
from retouraanvraag.testing.event_contract import EventSinkContract, _sample_request, sample_event
from retouraanvraag.testing.faults import Fault, FaultPlan, FaultyPort, fail_nth, inject_faults
from retouraanvraag.workflow import Desk, NewRequest, Policy

from .conftest import NOW, SHOP, World, build_world, make_storage
from .strategies import customers

STAFF = Actor.staff("anna")


@attrs.define
class Host:
    """A world whose desk queues events and whose dispatcher delivers them to a recorder."""

    world: World
    sink: EventRecorder
    ids: list[str] = attrs.Factory(list)

    @property
    def desk(self) -> Desk:
        return self.world.desk

    def drain(self, *, sink: EventSink | None = None, rounds: int = 30) -> None:
        """Run the dispatcher until nothing is pending, moving the clock past every backoff."""
        dispatcher = self.world.make_dispatcher(events=sink or self.sink, seed=1)
        for _ in range(rounds):
            dispatcher.run_until_idle()
            if not self.pending():
                return
            self.world.clock.advance(dt.timedelta(hours=7))
        raise AssertionError(f"still pending: {self.pending()}")

    def submit(self, new: NewRequest, **options: str) -> ReturnRequest:
        request = self.desk.submit(new, **options)
        self.ids.append(request.id)
        return request

    def pending(self) -> list[str]:
        storage = self.world.storage
        return [
            e.key
            for request_id in self.ids
            for e in storage.outbox(SHOP, request_id)
            if e.state is EffectState.PENDING
        ]

    def event_entries(self, request_id: str) -> list[str]:
        outbox = self.world.storage.outbox(SHOP, request_id)
        return [e.key for e in outbox if e.effect.kind is EffectKind.EVENT]


def host_for(storage: Storage, policy: Policy | None = None) -> Host:
    world = build_world(storage, policy)
    world.desk = Desk(
        storage, photos=world.photos, policy=world.policy, clock=world.clock, events=True
    )
    return Host(world, EventRecorder())


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def host(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Host]:
    storage = make_storage(request.param, tmp_path)
    yield host_for(storage)
    close = getattr(storage, "close", None)
    if close is not None:
        close()


def key(request_id: str, kind: EventType, n: int = 1) -> str:
    return event_key(SHOP, request_id, kind, n)


def types_of(events: Sequence[Event]) -> list[EventType]:
    return [e.type for e in events]


# -- the lifecycle ------------------------------------------------------------------------------


def test_a_full_lifecycle_tells_the_host_each_step_once(host: Host) -> None:
    desk = host.desk
    request = host.submit(host.world.new_request())
    desk.approve(SHOP, request.id, with_label=True, refund_return_fee=True, actor=STAFF)
    host.drain()
    desk.mark_received(SHOP, request.id, actor=STAFF)
    desk.complete(SHOP, request.id, actor=STAFF)
    host.drain()

    events = host.sink.events(request.id)
    assert types_of(events) == [
        EventType.SUBMITTED,
        EventType.APPROVED,
        EventType.REFUNDED,
        EventType.LABEL_CREATED,
        EventType.RECEIVED,
        EventType.COMPLETED,
    ]
    assert set(host.sink.deliveries().values()) == {1}
    assert [e.key for e in events] == [key(request.id, e.type) for e in events]
    assert [e.status for e in events] == [
        Status.REQUESTED,
        Status.APPROVED,
        Status.APPROVED,
        Status.APPROVED,
        Status.RECEIVED,
        Status.COMPLETED,
    ]
    versions = [e.version for e in events]
    assert versions == sorted(versions)
    assert len(set(versions)) == len(versions)  # each in its own commit
    stored = desk.get(SHOP, request.id)
    assert versions[-1] == stored.version
    label, refund = events[3], events[2]
    assert stored.label is not None
    assert (label.carrier, label.tracking_number) == (
        stored.label.carrier,
        stored.label.tracking_number,
    )
    assert label.effect == stored.label_key
    assert refund.amount == refund.return_fee == stored.refunded
    assert refund.reference == stored.refunds[0].reference
    assert [str(e.actor) for e in events] == [
        "customer",
        "staff:anna",
        "system",
        "system",
        "staff:anna",
        "staff:anna",
    ]
    # Every outbox entry of an event is done, one per key.
    entries = host.event_entries(request.id)
    assert sorted(entries) == sorted(e.key for e in events)


def test_each_command_queues_its_event_in_its_own_commit(host: Host) -> None:
    """Before any dispatcher runs, the event sits in the outbox beside what the command owes."""
    desk = host.desk
    request = host.submit(host.world.new_request())
    assert host.event_entries(request.id) == [key(request.id, EventType.SUBMITTED)]
    desk.reject(SHOP, request.id, reason="Buiten de termijn", actor=STAFF)
    assert host.event_entries(request.id) == [
        key(request.id, EventType.SUBMITTED),
        key(request.id, EventType.REJECTED),
    ]
    (entry,) = [
        e
        for e in host.world.storage.outbox(SHOP, request.id)
        if e.key == key(request.id, EventType.REJECTED)
    ]
    assert entry.effect.event is not None
    assert entry.effect.event.version == desk.get(SHOP, request.id).version


def test_both_stores_keep_an_event_entry_whole_and_once(host: Host) -> None:
    """The outbox hands the event back field for field; queueing its key again adds nothing."""
    storage = host.world.storage
    request = host.submit(host.world.new_request())
    (queued,) = [e for e in storage.outbox(SHOP, request.id) if e.effect.kind is EffectKind.EVENT]
    assert queued.effect.event is not None
    assert queued.effect == Effect.deliver(queued.effect.event)
    again = storage.get(SHOP, request.id)
    storage.commit(Commit(again, again.version, (queued.effect,)))
    assert host.event_entries(request.id) == [queued.key]
    claimed = storage.claim(owner="w", now=NOW, lease=dt.timedelta(minutes=1), limit=10)
    assert queued.effect in [c.effect for c in claimed]


def test_a_rule_decision_at_submission_is_two_events_of_one_commit(tmp_path: Path) -> None:
    ruleset = rules.parse('REGEL "Thuisland": ALS Van land IS Nederland DAN Goedkeuren met label')
    host = host_for(make_storage("sqlite", tmp_path), Policy(rules=ruleset))
    request = host.submit(host.world.new_request())
    host.drain()
    submitted, approved, label = host.sink.events(request.id)
    assert (submitted.type, approved.type, label.type) == (
        EventType.SUBMITTED,
        EventType.APPROVED,
        EventType.LABEL_CREATED,
    )
    assert submitted.version == approved.version == 1
    assert str(approved.actor) == "rule:Thuisland"


def test_a_cancel_after_a_label_is_one_event_and_the_void_none(host: Host) -> None:
    desk = host.desk
    request = host.submit(host.world.new_request())
    desk.approve(SHOP, request.id, with_label=True, actor=STAFF)
    host.drain()
    desk.cancel(SHOP, request.id)
    host.drain()
    assert types_of(host.sink.events(request.id)) == [
        EventType.SUBMITTED,
        EventType.APPROVED,
        EventType.LABEL_CREATED,
        EventType.CANCELLED,
        EventType.REFUNDED,  # the paid fee goes back with a cancel
    ]
    assert host.world.labels.active == {}


def test_a_label_made_after_a_cancel_is_not_told_as_created(host: Host) -> None:
    """The carrier's late label is voided at once; the host never hears it was made."""
    desk = host.desk
    request = host.submit(host.world.new_request())
    desk.approve(SHOP, request.id, with_label=True, actor=STAFF)
    approved = desk.get(SHOP, request.id)
    label = host.world.labels.create_label(approved.label_key, approved)  # the carrier was slow
    desk.cancel(SHOP, request.id)
    change = desk.get(SHOP, request.id).label_created(
        Effect.create_label(SHOP, request.id), label, at=NOW
    )
    assert change.request.label is None
    assert events_since(desk.get(SHOP, request.id), change.request) == ()


def test_a_label_retried_after_a_give_up_and_a_second_give_up_have_their_own_keys(
    host: Host,
) -> None:
    """needs_attention twice is two keys; the second attempt's label is told once."""
    world = host.world
    labels = inject_faults(
        FakeLabels(), fail_nth(1, Fault.BEFORE, method="create_label"), error=PortRejected
    )
    request = host.submit(world.new_request())
    host.desk.approve(SHOP, request.id, with_label=True, actor=STAFF)
    dispatcher = world.make_dispatcher(labels=labels, events=host.sink)
    dispatcher.run_until_idle()
    assert host.desk.get(SHOP, request.id).needs_attention
    host.desk.resolve_attention(SHOP, request.id, actor=STAFF, retry=True)
    dispatcher.run_until_idle()
    dispatcher.run_until_idle()
    stored = host.desk.get(SHOP, request.id)
    assert stored.label is not None
    assert stored.label_attempt == 2
    # A refund that fails for good: the second give-up.
    host.desk.cancel(SHOP, request.id)
    broke = inject_faults(world.payments, fail_nth(1, Fault.BEFORE), error=PortRejected)
    world.make_dispatcher(labels=labels, payments=broke, events=host.sink).run_until_idle()
    events = host.sink.events(request.id)
    attention = [e for e in events if e.type is EventType.NEEDS_ATTENTION]
    assert [e.key for e in attention] == [
        key(request.id, EventType.NEEDS_ATTENTION, 1),
        key(request.id, EventType.NEEDS_ATTENTION, 2),
    ]
    assert [e.effect for e in attention] == [
        Effect.create_label(SHOP, request.id, 1).key,
        Effect.refund(SHOP, request.id).key,
    ]
    (label,) = [e for e in events if e.type is EventType.LABEL_CREATED]
    assert label.effect == Effect.create_label(SHOP, request.id, 2).key
    assert label.tracking_number == stored.label.tracking_number
    assert set(host.sink.deliveries().values()) == {1}


def test_needs_attention_counts_every_give_up_so_stored_keys_keep_their_meaning(
    host: Host,
) -> None:
    """An event given up emits nothing but is counted: ``n`` skips it, and never repeats.

    Counting only the give-ups that emit would hand a later give-up the ``n`` an event
    already stored under the old count holds, and the outbox keeps one entry per key.
    """
    world = host.world
    refusing = inject_faults(host.sink, lambda *_: Fault.BEFORE, error=PortRejected)
    request = host.submit(world.new_request())
    host.drain(sink=refusing)  # the submitted event is given up: give-up 1, no event
    host.desk.resolve_attention(SHOP, request.id, actor=STAFF, retry=True)
    host.drain()
    labels = inject_faults(
        FakeLabels(),
        lambda _n, name: Fault.BEFORE if name == "create_label" else None,
        error=PortRejected,
    )
    host.desk.approve(SHOP, request.id, with_label=True, actor=STAFF)
    world.make_dispatcher(labels=labels, events=host.sink).run_until_idle()  # give-up 2
    host.desk.resolve_attention(SHOP, request.id, actor=STAFF, retry=True)
    world.make_dispatcher(labels=labels, events=host.sink).run_until_idle()  # give-up 3
    attention = [e for e in host.sink.events(request.id) if e.type is EventType.NEEDS_ATTENTION]
    assert [e.key for e in attention] == [
        key(request.id, EventType.NEEDS_ATTENTION, 2),
        key(request.id, EventType.NEEDS_ATTENTION, 3),
    ]
    assert {e.effect for e in attention} == {
        Effect.create_label(SHOP, request.id, 1).key,
        Effect.create_label(SHOP, request.id, 2).key,
    }
    given_up = [h.effect for h in host.desk.get(SHOP, request.id).history if h.effect]
    assert given_up.count(key(request.id, EventType.SUBMITTED)) == 1  # the one counted as 1


# -- a shop without a sink ----------------------------------------------------------------------


def test_a_desk_without_events_queues_none(world: World) -> None:
    """The default: no sink, no rows for it (the dispatcher queues none either)."""
    request = world.desk.submit(world.new_request())
    world.desk.approve(SHOP, request.id, with_label=True, refund_return_fee=True, actor=STAFF)
    world.dispatcher.run_until_idle()
    world.dispatcher.run_until_idle()
    kinds = {e.effect.kind for e in world.storage.outbox(SHOP, request.id)}
    assert EffectKind.EVENT not in kinds
    assert {EffectKind.MAIL, EffectKind.REFUND, EffectKind.CREATE_LABEL} <= kinds


def test_a_sink_beside_a_desk_without_events_tells_the_host_nothing_and_warns_once(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """Not a label or a refund of a request the host never heard was submitted."""
    sink = EventRecorder()
    dispatcher = world.make_dispatcher(events=sink)
    ids = []
    for _ in range(2):
        request = world.desk.submit(world.new_request())
        world.desk.approve(SHOP, request.id, with_label=True, refund_return_fee=True, actor=STAFF)
        ids.append(request.id)
    with caplog.at_level(logging.WARNING, logger="retouraanvraag"):
        report = dispatcher.run_until_idle()
    assert report.dead == 0
    assert sink.delivered == []
    for request_id in ids:
        stored = world.desk.get(SHOP, request_id)
        assert stored.label is not None
        assert stored.refunds
        kinds = {e.effect.kind for e in world.storage.outbox(SHOP, request_id)}
        assert EffectKind.EVENT not in kinds
    warnings = [r for r in caplog.records if "events=True" in r.getMessage()]
    assert len(warnings) == 1
    assert getattr(warnings[0], "request_id", None) in ids


def test_a_sink_keeps_telling_a_request_whose_desk_queued_events(host: Host) -> None:
    """Whether a request's effects are told follows its own outbox, not the desk of today."""
    request = host.submit(host.world.new_request())
    host.world.desk.approve(SHOP, request.id, with_label=True, refund_return_fee=True, actor=STAFF)
    quiet = Desk(host.world.storage, clock=host.world.clock)  # events turned off since
    quiet.mark_received(SHOP, request.id, actor=STAFF)
    host.drain()
    assert types_of(host.sink.events(request.id)) == [
        EventType.SUBMITTED,
        EventType.APPROVED,
        EventType.REFUNDED,
        EventType.LABEL_CREATED,
    ]


def test_events_queued_for_a_dispatcher_without_a_sink_are_given_up_not_dropped(
    host: Host,
) -> None:
    """Misconfigured: visible (needs attention), and no needs_attention event chases them."""
    world = host.world
    request = host.submit(world.new_request())
    blind = world.make_dispatcher()  # no events=
    blind.run_until_idle()
    stored = host.desk.get(SHOP, request.id)
    assert stored.needs_attention
    assert "no event sink" in stored.attention[0]
    outbox = world.storage.outbox(SHOP, request.id)
    assert [(e.key, e.state) for e in outbox if e.effect.kind is EffectKind.EVENT] == [
        (key(request.id, EventType.SUBMITTED), EffectState.DEAD)
    ]
    # Configured later: a person retries, and the event arrives under its own key.
    host.desk.resolve_attention(SHOP, request.id, actor=STAFF, retry=True)
    host.drain()
    assert [e.key for e in host.sink.events()] == [key(request.id, EventType.SUBMITTED)]


def test_a_sink_that_refuses_for_good_flags_the_request_without_an_event_loop(
    host: Host,
) -> None:
    refusing = inject_faults(host.sink, lambda _n, _name: Fault.BEFORE, error=PortRejected)
    request = host.submit(host.world.new_request())
    host.drain(sink=refusing)
    stored = host.desk.get(SHOP, request.id)
    assert stored.needs_attention
    assert host.event_entries(request.id) == [key(request.id, EventType.SUBMITTED)]
    assert host.sink.delivered == []


def test_a_failing_sink_is_retried_with_backoff_and_honours_retry_after(host: Host) -> None:
    world = host.world
    asked = dt.timedelta(hours=2)

    class Busy:
        calls = 0

        def deliver(self, event: Event) -> None:
            Busy.calls += 1
            if Busy.calls == 1:
                raise PortUnavailable("busy", retry_after=asked)
            host.sink.deliver(event)

    request = host.submit(world.new_request())
    dispatcher = world.make_dispatcher(events=Busy(), backoff=dt.timedelta(seconds=30))
    assert dispatcher.run_once().retried == 1
    (entry,) = world.storage.outbox(SHOP, request.id)[1:]
    assert entry.available_at is not None
    assert entry.available_at >= NOW + asked
    assert dispatcher.run_once().handled == 0  # not due before the receiver's wait
    world.clock.advance(asked)
    assert dispatcher.run_once().done == 1
    assert [e.type for e in host.sink.events()] == [EventType.SUBMITTED]


def test_retry_after_is_capped_by_the_dispatchers_backoff_cap(host: Host) -> None:
    class Away:
        def deliver(self, event: Event) -> None:
            raise PortUnavailable(event.key, retry_after=dt.timedelta(days=365))

    request = host.submit(host.world.new_request())
    cap = dt.timedelta(hours=1)
    host.world.make_dispatcher(events=Away(), backoff_cap=cap).run_once()
    (entry,) = host.world.storage.outbox(SHOP, request.id)[1:]
    assert entry.available_at == NOW + cap


def test_a_delivery_outliving_its_lease_is_finished_by_the_next_worker_once(host: Host) -> None:
    """The slow worker's settle is refused; the event went twice (at least once), entry once."""
    world = host.world
    request = host.submit(world.new_request())
    taken_over: list[object] = []

    class Slow:
        def deliver(self, event: Event) -> None:
            host.sink.deliver(event)
            if not taken_over:  # the first try: its lease runs out, another worker steps in
                world.clock.advance(dt.timedelta(minutes=6))
                taken_over.append(world.make_dispatcher(events=host.sink).run_until_idle())

    report = world.make_dispatcher(events=Slow()).run_until_idle()
    assert report.done == 1  # the mail; the event's settle was no longer this worker's
    assert host.sink.deliveries() == Counter({key(request.id, EventType.SUBMITTED): 2})
    (entry,) = [e for e in world.storage.outbox(SHOP, request.id) if e.key.startswith("event:")]
    assert entry.state is EffectState.DONE
    assert not host.desk.get(SHOP, request.id).needs_attention


# -- faults: every storage and sink call failing before and after it acts ---------------------


def _lifecycle(host: Host) -> str:
    desk = host.desk
    request = host.submit(host.world.new_request(), idempotency_key="s")
    desk.approve(
        SHOP, request.id, with_label=True, refund_return_fee=True, actor=STAFF, idempotency_key="a"
    )
    return request.id


EXPECTED = [
    EventType.SUBMITTED,
    EventType.APPROVED,
    EventType.REFUNDED,
    EventType.LABEL_CREATED,
]


def _run_case(
    store_kind: str, folder: Path, target: str, plan: FaultPlan
) -> tuple[Host, str, FaultyPort]:
    """A lifecycle drained by a dispatcher whose storage or sink follows ``plan``."""
    folder.mkdir()
    storage = make_storage(store_kind, folder)
    host = host_for(storage)
    request_id = _lifecycle(host)
    faulty = FaultyPort(storage if target == "storage" else host.sink, plan)
    dispatcher = host.world.make_dispatcher(
        storage=faulty if target == "storage" else storage,
        events=faulty if target == "sink" else host.sink,
        seed=1,
    )
    for _ in range(30):
        with contextlib.suppress(PortUnavailable):  # a failed claim: run_worker waits
            dispatcher.run_until_idle()
        if not host.pending():
            break
        host.world.clock.advance(dt.timedelta(hours=7))
    return host, request_id, faulty


@pytest.mark.parametrize("store_kind", ["memory", "sqlite"])
def test_every_single_fault_still_tells_each_event_once_per_key(
    store_kind: str, tmp_path: Path
) -> None:
    """Every storage and sink call of the dispatcher, failing before and after acting.

    Afterwards each event is in the outbox once, done, and was delivered; twice only when
    the delivery's answer was lost (a fault after the sink took it) or its settling was.
    """
    duplicates = Counter[str]()
    cases = 0
    for target in ("storage", "sink"):
        _, _, dry = _run_case(store_kind, tmp_path / f"{target}-dry", target, lambda *_: None)
        assert dry.calls > 0
        for n, when in itertools.product(range(1, dry.calls + 1), Fault):
            cases += 1
            case = f"{target} call {n} {when.value}"
            host, request_id, faulty = _run_case(
                store_kind, tmp_path / f"{target}-{n}-{when.value}", target, fail_nth(n, when)
            )
            assert host.pending() == [], case
            events = host.sink.events(request_id)
            # A retried event arrives after later ones: the versions put them in order.
            assert sorted(types_of(events)) == sorted(EXPECTED), case
            in_order = sorted(events, key=lambda e: e.version)
            assert types_of(in_order)[:2] == EXPECTED[:2], case
            assert len({e.version for e in events}) == len(events), case
            assert sorted(host.event_entries(request_id)) == sorted(e.key for e in events), case
            assert not host.desk.get(SHOP, request_id).needs_attention, case
            twice = [k for k, c in host.sink.deliveries().items() if c > 1]
            if twice:
                # Only a delivery whose answer was lost, or whose settling was.
                hit = [name for _n, name, _f in faulty.injected]
                assert (target, when) == ("sink", Fault.AFTER) or hit == ["settle"], case
                assert len(twice) == 1, case
                duplicates[f"{target} {hit[0]} {when.value}"] += 1
            close = getattr(host.world.storage, "close", None)
            if close is not None:
                close()
    assert duplicates["sink deliver after"] == len(EXPECTED)  # each lost answer
    print(f"{store_kind}: {cases} cases, duplicates {dict(duplicates)}")  # noqa: T201


# -- any sequence of commands and failures --------------------------------------------------------

STEPS = (
    "approve_with_label",
    "approve_without_label",
    "reject",
    "cancel",
    "mark_received",
    "complete",
    "dispatch",
    "dispatch_failing",
    "resolve_and_retry",
    "wait",
)
COMMAND_EVENTS = {
    "submit": EventType.SUBMITTED,
    "approve_with_label": EventType.APPROVED,
    "approve_without_label": EventType.APPROVED_WITHOUT_RETURN,
    "reject": EventType.REJECTED,
    "cancel": EventType.CANCELLED,
    "mark_received": EventType.RECEIVED,
    "complete": EventType.COMPLETED,
}


def _step(host: Host, request_id: str, step: str, refund: bool) -> None:
    desk, world = host.desk, host.world
    failing = {
        "labels": inject_faults(world.labels, lambda *_: Fault.BEFORE, error=PortRejected),
        "payments": inject_faults(world.payments, lambda *_: Fault.BEFORE, error=PortRejected),
        "events": inject_faults(host.sink, lambda *_: Fault.AFTER),
    }
    try:
        match step:
            case "approve_with_label" | "approve_without_label":
                desk.approve(
                    SHOP,
                    request_id,
                    with_label=step == "approve_with_label",
                    refund_return_fee=refund,
                    actor=STAFF,
                )
            case "reject":
                desk.reject(SHOP, request_id, reason="Nee", actor=STAFF)
            case "cancel":
                desk.cancel(SHOP, request_id)
            case "mark_received":
                desk.mark_received(SHOP, request_id, actor=STAFF)
            case "complete":
                desk.complete(SHOP, request_id, actor=STAFF)
            case "dispatch":
                world.make_dispatcher(events=host.sink).run_until_idle()
            case "dispatch_failing":
                world.make_dispatcher(max_attempts=2, **failing).run_until_idle()
            case "resolve_and_retry":
                desk.resolve_attention(SHOP, request_id, actor=STAFF, retry=True)
            case _:
                world.clock.advance(dt.timedelta(hours=7))
    except TransitionNotAllowed:
        pass


@given(steps=st.lists(st.sampled_from(STEPS), max_size=12), refund=st.booleans())
@settings(max_examples=60)
def test_any_history_is_told_once_per_entry_that_a_host_hears_of(
    steps: list[str], refund: bool
) -> None:
    """Whatever happened, the events are exactly the history's, each under its own key.

    Counted from the final history, independently of how the library derives them: one per
    command, one per refund, one for the label the request keeps, one per effect given up
    that was not itself an event.
    """
    host = host_for(MemoryStorage())
    request_id = host.submit(host.world.new_request()).id
    for step in steps:
        _step(host, request_id, step, refund)
    host.drain()
    final = host.desk.get(SHOP, request_id)
    expected = Counter[EventType]()
    for entry in final.history:
        if entry.is_command and entry.command.value in COMMAND_EVENTS:
            expected[COMMAND_EVENTS[entry.command.value]] += 1
        elif entry.command.value == "effect_given_up" and not (entry.effect or "").startswith(
            "event:"
        ):
            expected[EventType.NEEDS_ATTENTION] += 1
    expected[EventType.REFUNDED] += len(final.refunds)
    expected[EventType.LABEL_CREATED] += final.label is not None
    events = host.sink.events(request_id)
    assert Counter(types_of(events)) == +expected
    queued = host.event_entries(request_id)
    assert sorted(queued) == sorted(e.key for e in events)  # one entry per key, each delivered
    assert all(e.version <= final.version for e in events)
    assert all(e.shop_id == SHOP and e.request_id == request_id for e in events)


# -- the values ---------------------------------------------------------------------------------


def test_event_keys_never_collide_across_shops_and_requests() -> None:
    assert event_key("a:b", "c", EventType.SUBMITTED, 1) != event_key(
        "a", "b:c", EventType.SUBMITTED, 1
    )
    assert event_key("s", "r", EventType.NEEDS_ATTENTION, 1) != event_key(
        "s", "r", EventType.NEEDS_ATTENTION, 2
    )


def _bodies(customer: Customer, reason: str) -> list[str]:
    """The JSON of a request's submitted and rejected events."""
    request = _request_for(customer)
    rejected = request.reject(reason=reason, actor=STAFF, at=NOW).request
    events = (*events_since(None, request), *events_since(request, rejected))
    return [event_to_json(e) for e in events]


@given(customer=customers, reason=st.text(min_size=1, max_size=60).filter(str.strip))
@settings(max_examples=60)
def test_no_event_carries_the_customers_data_or_typed_text(customer: Customer, reason: str) -> None:
    """Name, e-mail and a reject reason a person typed never reach an event's JSON.

    Stronger than looking for them: the events are the same whoever the customer is and
    whatever the merchant typed.
    """
    bodies = _bodies(customer, reason)
    assert bodies == _bodies(Customer("ander@example.com", "Iemand Anders"), "Iets anders")
    text = "".join(_bodies(Customer("jan@example.nl", "Jan Jansen"), "Geheime reden"))
    assert "jan@example.nl" not in text
    assert "Jansen" not in text
    assert "Geheime" not in text


def _request_for(customer: Customer) -> ReturnRequest:
    submitted = _sample_request("r-1").submitted().request
    return attrs.evolve(submitted, customer=customer, version=1)


def test_an_event_round_trips_through_json_and_the_outbox_row() -> None:
    event = sample_event(type=EventType.REFUNDED)
    assert event_from_json(event_to_json(event)) == event
    effect = Effect.deliver(event)
    assert effect_from_json(effect_to_json(effect)) == effect


def test_effects_without_an_event_are_stored_as_before() -> None:
    """Rows written before events existed read the same, and new ones are written alike."""
    mail = effect_to_json(Effect.refund("s", "r"))
    assert "event" not in json.loads(mail)
    assert effect_from_json('{"kind":"refund","key":"refund:s:r","request_id":"r"}') == (
        Effect.refund("s", "r")
    )


@pytest.mark.parametrize(
    "make",
    [
        lambda e: Effect(EffectKind.EVENT, e.key, e.request_id),
        lambda e: Effect(EffectKind.MAIL, e.key, e.request_id, event=e),
        lambda e: Effect(EffectKind.EVENT, "event:other", e.request_id, event=e),
        lambda e: Effect(EffectKind.EVENT, e.key, "other", event=e),
    ],
)
def test_an_event_effect_carries_exactly_its_own_event(make: object) -> None:
    with pytest.raises(InvalidInput, match="event"):
        make(sample_event())  # type: ignore[operator]


def test_a_damaged_stored_event_is_refused_by_its_field() -> None:
    row = json.loads(effect_to_json(Effect.deliver(sample_event())))
    row["event"]["version"] = 0
    with pytest.raises(InvalidInput):
        effect_from_json(json.dumps(row))
    row["event"]["version"] = 1
    row["event"]["key"] = "mail:x"
    with pytest.raises(InvalidInput):
        effect_from_json(json.dumps(row))


# -- the recording sink keeps the contract ------------------------------------------------------


class TestEventRecorder(EventSinkContract):
    def make_sink(self) -> EventSink:
        return EventRecorder()

    def received(self, sink: EventSink) -> Sequence[Event]:
        assert isinstance(sink, EventRecorder)
        return sink.delivered


def test_the_recorder_refuses_one_key_with_two_contents() -> None:
    recorder = EventRecorder()
    event = sample_event()
    recorder.deliver(event)
    with pytest.raises(PortRejected):
        recorder.deliver(attrs.evolve(event, version=event.version + 1))
