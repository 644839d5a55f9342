"""Effects exactly once and nothing blocked: the promises of docs/reliability.md under attack.

The interleaving explorer runs a worker ("A") whose port calls are interposed: at its k-th
call, before or after the provider acted, its lease runs out and something else happens — a
second worker ("B") drains the outbox, the customer cancels, or both. Every effect kind meets
every point where a lease can expire; afterwards a fresh worker drains what is left, and the
invariants are checked on what the providers did, not on what the store says.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from retouraanvraag import errors
from retouraanvraag.adapters.maildir import MaildirTransport
from retouraanvraag.dispatcher import Dispatcher
from retouraanvraag.model import (
    CUSTOMER,
    SYSTEM,
    Actor,
    Customer,
    Effect,
    HistoryEvent,
    MailKind,
    Money,
    PaidFee,
    ReturnItem,
    ReturnRequest,
    Status,
    label_key,
)
from retouraanvraag.ports import Commit, EffectState, Storage
from retouraanvraag.testing.faults import Fault, fail_nth, inject_faults

from .conftest import NOW, SHOP, World, build_world, make_storage

LEASE = dt.timedelta(minutes=5)
FEE = Money(495)


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _world(kind: str, tmp_path: Path) -> World:
    tmp_path.mkdir(parents=True, exist_ok=True)
    return build_world(make_storage(kind, tmp_path))


# -- the explorer ---------------------------------------------------------------------------


class Interposed:
    """A port whose calls go through ``hook(number, method, when)`` around the real call."""

    def __init__(self, inner: object, hook: Callable[[str, str], None]) -> None:
        self._inner = inner
        self._hook = hook

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._inner, name)
        if name.startswith("_") or not callable(target):
            return target

        def call(*args: Any, **kwargs: Any) -> Any:
            self._hook(name, "before")
            result = target(*args, **kwargs)
            self._hook(name, "after")
            return result

        return call


@attrs.define
class Plan:
    """At A's ``call``-th port call, ``when`` (before/after the provider acted), do ``what``."""

    call: int
    when: str
    what: str
    seen: int = 0
    fired: bool = False
    in_flight: str | None = None


def _scenario(world: World, name: str) -> str:
    """Set a request up for ``name``; returns its id. Mails of the submission are sent."""
    request = world.desk.submit(world.new_request())
    world.dispatcher.run_until_idle()
    match name:
        case "approve_label_refund":
            world.desk.approve(SHOP, request.id, with_label=True, refund_return_fee=True, actor="a")
        case "approve_no_label_refund":
            world.desk.approve(
                SHOP, request.id, with_label=False, refund_return_fee=True, actor="a"
            )
        case "reject":
            world.desk.reject(SHOP, request.id, reason="Gedragen", actor="a")
        case "cancel_after_label":
            world.desk.approve(SHOP, request.id, with_label=True, actor="a")
            world.dispatcher.run_until_idle()
            world.desk.cancel(SHOP, request.id)
        case _:  # pragma: no cover
            raise AssertionError(name)
    return request.id


SCENARIOS = ("approve_label_refund", "approve_no_label_refund", "reject", "cancel_after_label")
INTERFERENCES = ("B drains", "cancel, B drains", "cancel")


def _dispatcher(world: World, owner: str, **ports: Any) -> Dispatcher:
    return world.make_dispatcher(owner=owner, lease=LEASE, **ports)


def _run_a(world: World, plan: Plan | None, request_id: str) -> list[str]:  # noqa: C901
    """Worker A drains the outbox; the plan's interference strikes at one of its calls."""
    calls: list[str] = []
    current_key: dict[str, str] = {}

    def hook(method: str, when: str) -> None:
        if when == "before":
            calls.append(method)
        if plan is None or plan.fired:
            return
        if when == "before":
            plan.seen += 1
        if plan.seen != plan.call or when != plan.when:
            return
        plan.fired = True
        plan.in_flight = current_key.get("key")
        world.clock.advance(LEASE + dt.timedelta(seconds=1))
        if plan.what.startswith("cancel"):
            with contextlib.suppress(errors.TransitionNotAllowed):
                world.desk.cancel(SHOP, request_id)
        if plan.what.endswith("B drains"):
            _dispatcher(world, "B").run_until_idle()

    class KeyNoting:
        """Remembers the key of A's call in flight (the first argument of every port call)."""

        def __init__(self, inner: object) -> None:
            self._inner = Interposed(inner, hook)

        def __getattr__(self, name: str) -> Any:
            target = getattr(self._inner, name)

            def call(key: str, *args: Any, **kwargs: Any) -> Any:
                current_key["key"] = key
                return target(key, *args, **kwargs)

            return call

    a = _dispatcher(
        world,
        "A",
        labels=KeyNoting(world.labels),
        payments=KeyNoting(world.payments),
        mail=KeyNoting(world.mail),
    )
    a.run_until_idle()
    return calls


def _drain(world: World) -> None:
    """After the dust settles: a fresh worker, later, until nothing is due."""
    for _ in range(12):
        world.clock.advance(dt.timedelta(hours=7))
        _dispatcher(world, "C").run_until_idle()


def _check(world: World, request_id: str, plan: Plan | None) -> Counter[str]:  # noqa: C901
    """The invariants, on what the providers did."""
    figures: Counter[str] = Counter()
    stored = world.storage.get(SHOP, request_id)
    outbox = world.storage.outbox(SHOP, request_id)
    assert all(e.state is not EffectState.PENDING for e in outbox), outbox
    if any(e.state is EffectState.DEAD for e in outbox):
        assert stored.needs_attention
        figures["attention"] += 1
    # Labels: never an active label on a cancelled request, one at most otherwise.
    mine = {k: v for k, v in world.labels.active.items() if k.startswith(f"label:{SHOP}:")}
    if stored.status is Status.CANCELLED:
        assert mine == {}, (stored.status, mine)
    else:
        assert len(mine) <= 1
        if stored.status is Status.APPROVED and not stored.needs_attention:
            assert mine == {stored.label_key: stored.label}
    # Refunds: what the provider moved is what the request records, never above the fee.
    assert stored.return_fee is not None
    moved = world.payments.refunded(stored.return_fee.payment_reference)
    assert moved == stored.refunded
    assert stored.refunded <= FEE
    owed = stored.status in {Status.REJECTED, Status.CANCELLED} or any(
        h.command.startswith("approve") for h in stored.history
    )
    if owed and not stored.needs_attention:
        assert stored.refunded == FEE
    # Mails: once each, except the one whose send was in flight when the lease ran out.
    for key, count in world.mail.deliveries().items():
        if count > 1:
            assert plan is not None
            assert key == plan.in_flight, (key, count, plan)
            assert count == 2
            figures["in-flight mail sent twice"] += 1
    # A label mail carries the label the request kept, which is active unless cancelled since.
    for mail in world.mail.to(request_id):
        if mail.kind is MailKind.LABEL_CREATED and stored.status is not Status.CANCELLED:
            assert stored.label is not None
            assert stored.label.tracking_number in mail.text
    # The history: commands form a path; each effect recorded once per key and kind.
    commands = [h for h in stored.history if h.is_command]
    for before, after in itertools.pairwise(commands):
        assert after.status_from == before.status_to
    records = Counter((h.command, h.effect) for h in stored.history if not h.is_command)
    for (event, effect_key), count in records.items():
        if event in {HistoryEvent.LABEL_CREATED, HistoryEvent.REFUNDED}:
            assert count == 1, (event, effect_key, count)
    refunded = [h for h in stored.history if h.command == HistoryEvent.REFUNDED]
    assert len(refunded) == len(stored.refunds)
    return figures


def _explore(kind: str, tmp_path: Path, scenario: str) -> Counter[str]:
    figures: Counter[str] = Counter()
    dry = _world(kind, tmp_path / "dry")
    calls = _run_a(dry, None, _scenario(dry, scenario))
    assert calls, scenario
    for n, (call, when, what) in enumerate(
        itertools.product(range(1, len(calls) + 1), ("before", "after"), INTERFERENCES)
    ):
        world = _world(kind, tmp_path / f"{n}")
        request_id = _scenario(world, scenario)
        plan = Plan(call, when, what)
        _run_a(world, plan, request_id)
        assert plan.fired
        _drain(world)
        figures.update(_check(world, request_id, plan))
        figures["interleavings"] += 1
        close = getattr(world.storage, "close", None)
        if close is not None:
            close()
    return figures


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_lease_expiry_point_keeps_effects_exactly_once(
    store_kind: str, tmp_path: Path, scenario: str
) -> None:
    figures = _explore(store_kind, tmp_path, scenario)
    assert figures["interleavings"] >= 6
    print(f"{store_kind} {scenario}: {dict(figures)}")  # noqa: T201 - figures for the docs


# -- item by item ---------------------------------------------------------------------------


def test_a_retried_label_is_asked_under_a_new_key_never_the_voided_one(world: World) -> None:
    request = world.desk.submit(world.new_request())
    world.desk.approve(SHOP, request.id, with_label=True, actor="anna")
    # The carrier acts every time, but every answer is lost until the effect is given up.
    lossy = inject_faults(
        world.labels, lambda _n, name: Fault.AFTER if name == "create_label" else None
    )
    worker = world.make_dispatcher(labels=lossy, max_attempts=3)
    for _ in range(5):
        worker.run_until_idle()
        world.clock.advance(dt.timedelta(hours=7))
    flagged = world.desk.get(SHOP, request.id)
    first = label_key(SHOP, request.id, 1)
    assert flagged.needs_attention
    assert first in world.labels.voided
    assert world.labels.active == {}
    resolved = world.desk.resolve_attention(SHOP, request.id, actor="anna", retry=True)
    assert resolved.label_attempt == 2
    world.dispatcher.run_until_idle()
    done = world.desk.get(SHOP, request.id)
    second = label_key(SHOP, request.id, 2)
    assert done.label_key == second
    assert not done.needs_attention
    assert world.labels.active == {second: done.label}
    voided_at = world.labels.calls.index(("void_label", first))
    assert ("create_label", first) not in world.labels.calls[voided_at:]
    mailed = [m for m in world.mail.to(request.id) if m.kind is MailKind.LABEL_CREATED]
    assert len(mailed) == 1
    assert done.label is not None
    assert done.label.tracking_number in mailed[0].text
    # The given-up first attempt stays given up: a second resolve asks for nothing more.
    again = world.desk.resolve_attention(SHOP, request.id, actor="anna", retry=True)
    assert again == done


def _same_id_in_two_shops(storage: Storage) -> None:
    for shop, pay in (("shop-a", "pay_a"), ("shop-b", "pay_b")):
        request = ReturnRequest(
            shop_id=shop,
            id="req-1",
            order_number="1001",
            customer=Customer(f"klant@{shop}.example", "Klant", "nl"),
            from_country="NL",
            order_value=Money(5995),
            items=(ReturnItem("TS-1", "T-shirt", 1, Money(1995), "too_small"),),
            created_at=NOW,
            return_fee=PaidFee(FEE, pay),
        )
        change = request.submitted()
        storage.commit(Commit(change.request, None, change.effects))


def test_effect_keys_are_unique_across_shops(store_kind: str, tmp_path: Path) -> None:
    world = _world(store_kind, tmp_path)
    world.payments.charge("pay_a", FEE)
    world.payments.charge("pay_b", FEE)
    maildir = MaildirTransport(tmp_path / "mail")
    worker = world.make_dispatcher(mail=maildir)
    _same_id_in_two_shops(world.storage)
    for shop in ("shop-a", "shop-b"):
        world.desk.approve(shop, "req-1", with_label=True, refund_return_fee=True, actor="anna")
    worker.run_until_idle()
    a, b = world.storage.get("shop-a", "req-1"), world.storage.get("shop-b", "req-1")
    assert a.label is not None
    assert b.label is not None
    assert a.label.tracking_number != b.label.tracking_number
    assert [r.reference for r in a.refunds] != [r.reference for r in b.refunds]
    assert world.payments.refunded("pay_a") == FEE
    assert world.payments.refunded("pay_b") == FEE
    keys_a = {e.key for e in world.storage.outbox("shop-a", "req-1")}
    keys_b = {e.key for e in world.storage.outbox("shop-b", "req-1")}
    assert keys_a.isdisjoint(keys_b)
    # Two shops' mails of one kind are two messages, none dropped as a duplicate.
    assert len(maildir.messages()) == 4


@given(
    shop=st.text(min_size=1, max_size=8).filter(str.strip),
    other=st.text(min_size=1, max_size=8).filter(str.strip),
    request=st.text(min_size=1, max_size=8),
    second=st.text(min_size=1, max_size=8),
)
def test_no_two_shop_and_request_pairs_share_a_key(
    shop: str, other: str, request: str, second: str
) -> None:
    if (shop, request) == (other, second):
        return
    makers: tuple[Callable[[str, str], Effect], ...] = (
        Effect.create_label,
        Effect.void_label,
        Effect.refund,
        lambda s, r: Effect.send_mail(s, r, MailKind.REJECTED),
    )
    for make in makers:
        assert make(shop, request).key != make(other, second).key


def test_a_stale_worker_starts_nothing_whose_lease_ran_out(world: World) -> None:
    for _ in range(3):
        world.desk.submit(world.new_request())
    b = world.make_dispatcher(owner="B", lease=LEASE)
    fired = threading.Event()

    class SlowFirstSend:
        def send(self, key: str, mail: Any) -> None:
            world.mail.send(key, mail)
            if not fired.is_set():
                fired.set()
                world.clock.advance(LEASE + dt.timedelta(seconds=1))
                b.run_until_idle()

    a = world.make_dispatcher(owner="A", lease=LEASE, mail=SlowFirstSend())
    a.run_once(limit=3)
    deliveries = world.mail.deliveries()
    assert sum(deliveries.values()) == 4
    assert sorted(deliveries.values()) == [1, 1, 2]


def test_backoff_never_overflows_and_the_entry_ends_dead(world: World) -> None:
    request = world.desk.submit(world.new_request())
    down = inject_faults(world.mail, lambda _n, _m: Fault.BEFORE)
    worker = world.make_dispatcher(
        mail=down,
        backoff=dt.timedelta(hours=1),
        backoff_cap=dt.timedelta(days=30),
        max_attempts=60,
    )
    for _ in range(70):
        worker.run_until_idle()
        world.clock.advance(dt.timedelta(days=31))
    (entry,) = world.storage.outbox(SHOP, request.id)
    assert entry.state is EffectState.DEAD
    assert entry.attempts == 60
    assert world.desk.get(SHOP, request.id).needs_attention


@given(
    first=st.integers(1, 10**12),
    cap_factor=st.integers(1, 10**6),
    attempts=st.integers(-5, 10**6),
)
def test_backoff_is_capped_and_grows_for_any_attempt(
    first: int, cap_factor: int, attempts: int
) -> None:
    backoff = dt.timedelta(microseconds=first)
    cap = min(backoff * cap_factor, dt.timedelta(days=30))
    if cap < backoff:
        return
    world = build_world(make_storage("memory", Path()))
    worker = world.make_dispatcher(backoff=backoff, backoff_cap=cap, seed=3)
    delay = worker.backoff(attempts)
    assert cap / 2 <= delay <= cap or delay >= backoff / 2
    assert delay <= cap
    assert worker.backoff(attempts + 1) >= delay / 2


@pytest.mark.parametrize("cap", [dt.timedelta(days=31), dt.timedelta.max])
def test_a_backoff_cap_beyond_a_month_is_refused(world: World, cap: dt.timedelta) -> None:
    with pytest.raises(errors.InvalidInput, match="backoff_cap"):
        world.make_dispatcher(backoff_cap=cap)


class Exploding:
    """A port (or renderer) whose chosen method raises a bug-like exception once."""

    def __init__(self, inner: object, method: str, error: BaseException) -> None:
        self._inner, self._method, self._error = inner, method, error
        self.raised = 0

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._inner, name)
        if name != self._method:
            return target

        def call(*args: Any, **kwargs: Any) -> Any:
            if not self.raised:
                self.raised += 1
                raise self._error
            return target(*args, **kwargs)

        return call


@pytest.mark.parametrize(
    ("where", "error"),
    [
        ("renderer", ZeroDivisionError("bug")),
        ("renderer", OverflowError("date value out of range")),
        ("storage.get", RuntimeError("driver bug")),
        ("storage.settle", KeyError("x")),
        ("storage.commit", TypeError("x")),
    ],
)
def test_one_entry_failing_in_any_way_never_stops_the_others(
    world: World, where: str, error: Exception
) -> None:
    ids = [world.desk.submit(world.new_request()).id for _ in range(3)]
    options: dict[str, Any] = {}
    if where == "renderer":
        options["renderer"] = Exploding(world.dispatcher._renderer, "render", error)
    else:
        options["storage"] = Exploding(world.storage, where.split(".")[1], error)
    worker = world.make_dispatcher(**options)
    worker.run_once()
    world.clock.advance(dt.timedelta(hours=7))
    world.make_dispatcher().run_until_idle()
    for request_id in ids:
        assert all(e.state is EffectState.DONE for e in world.storage.outbox(SHOP, request_id))
    assert sorted(world.mail.deliveries().values()) in ([1, 1, 1], [1, 1, 2])


def test_the_worker_loop_outlives_any_error(world: World) -> None:
    request = world.desk.submit(world.new_request())
    stop = threading.Event()
    storage = Exploding(world.storage, "claim", RuntimeError("claim bug"))

    class StopAfterTwoRounds:
        rounds = 0

        def now(self) -> dt.datetime:
            return world.clock.now()

    worker = world.make_dispatcher(storage=storage)
    original = worker.run_until_idle

    def counted(**kwargs: Any) -> Any:
        try:
            return original(**kwargs)
        finally:
            StopAfterTwoRounds.rounds += 1
            if StopAfterTwoRounds.rounds >= 2:
                stop.set()

    worker.run_until_idle = counted  # type: ignore[method-assign]
    worker.run_worker(stop, poll=0)
    assert storage.raised == 1
    assert (
        world.mail.deliveries()[Effect.send_mail(SHOP, request.id, MailKind.REQUEST_RECEIVED).key]
        == 1
    )


# -- audit ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "actor",
    [
        "",
        " ",
        "a\nb",
        "anna\r",
        "x" * 1000,
        "rule:Buitenland",
        "system",
        "customer",
        "policy",
        "staff:",
        "staff:rule:x",
        "anna smith",
        "ännä",
        "-anna",
        "a\u2028b",
        "a\u200bb",
        "a:b",
    ],
)
def test_staff_actors_cannot_be_forged(world: World, actor: str) -> None:
    request = world.desk.submit(world.new_request())
    with pytest.raises(errors.InvalidInput) as caught:
        world.desk.approve(SHOP, request.id, actor=actor)
    assert caught.value.field == "actor"
    # The typed text is not echoed (the message names the reserved words itself).
    assert actor.strip() in {"", "customer"} or actor not in str(caught.value)
    assert world.desk.get(SHOP, request.id).status is Status.REQUESTED


@pytest.mark.parametrize("actor", [Actor.rule("Buitenland"), SYSTEM, CUSTOMER])
def test_only_staff_decide(world: World, actor: Actor) -> None:
    request = world.desk.submit(world.new_request())
    commands: tuple[Callable[[], object], ...] = (
        lambda: world.desk.approve(SHOP, request.id, actor=actor),
        lambda: world.desk.reject(SHOP, request.id, reason="Nee", actor=actor),
        lambda: world.desk.resolve_attention(SHOP, request.id, actor=actor),
    )
    for command in commands:
        with pytest.raises(errors.InvalidInput, match="cannot run this command"):
            command()


def test_a_cancel_is_by_the_customer_or_staff(world: World) -> None:
    one = world.desk.submit(world.new_request())
    two = world.desk.submit(world.new_request())
    three = world.desk.submit(world.new_request())
    assert world.desk.cancel(SHOP, one.id).history[-1].actor == CUSTOMER
    assert world.desk.cancel(SHOP, two.id, actor="staff:anna").history[-1].actor == Actor.staff(
        "anna"
    )
    with pytest.raises(errors.InvalidInput):
        world.desk.cancel(SHOP, three.id, actor=Actor.rule("x"))


@given(
    actor=st.sampled_from((CUSTOMER, SYSTEM))
    | st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", fullmatch=True)
    .filter(lambda s: s.casefold() not in {"customer", "system", "policy", "rule", "staff"})
    .map(Actor.staff)
    | st.text(min_size=1, max_size=200)
    .filter(lambda s: s.strip() and s.isprintable())
    .map(Actor.rule)
)
def test_an_actor_reads_back_from_its_stored_form(actor: Actor) -> None:
    assert Actor.parse(str(actor)) == actor


def test_every_effect_is_recorded_in_the_history_with_time(store_kind: str, tmp_path: Path) -> None:
    world = _world(store_kind, tmp_path)
    request = world.desk.submit(world.new_request())
    world.desk.approve(SHOP, request.id, with_label=True, refund_return_fee=True, actor="anna")
    world.clock.advance(dt.timedelta(minutes=1))
    world.dispatcher.run_until_idle()
    world.desk.cancel(SHOP, request.id, actor="anna")
    world.dispatcher.run_until_idle()
    stored = world.storage.get(SHOP, request.id)
    assert stored.label is not None
    events = [(h.command, h.note) for h in stored.history if not h.is_command]
    assert (HistoryEvent.MAIL_SENT.value, "request_received") in events
    assert (HistoryEvent.REFUNDED.value, f"4.95 EUR {stored.refunds[0].reference}") in events
    assert (
        HistoryEvent.LABEL_CREATED.value,
        f"{stored.label.carrier} {stored.label.tracking_number}",
    ) in events
    assert (HistoryEvent.MAIL_SENT.value, "label_created") in events
    assert (HistoryEvent.LABEL_VOIDED.value, stored.label_key) in events
    assert (HistoryEvent.MAIL_SENT.value, "cancelled") in events
    for entry in stored.history:
        if not entry.is_command:
            assert entry.actor == SYSTEM
            assert entry.at.tzinfo is not None
            assert entry.effect in {e.key for e in world.storage.outbox(SHOP, request.id)}
    assert [str(h.actor) for h in stored.history if h.is_command] == [
        "customer",
        "staff:anna",
        "staff:anna",
    ]


def test_an_effect_given_up_is_recorded(world: World) -> None:
    request = world.desk.submit(world.new_request())
    refusing = inject_faults(world.mail, fail_nth(1, Fault.BEFORE), error=errors.PortRejected)
    world.make_dispatcher(mail=refusing).run_until_idle()
    stored = world.desk.get(SHOP, request.id)
    (given_up,) = [h for h in stored.history if h.command == HistoryEvent.GIVEN_UP]
    assert given_up.effect == Effect.send_mail(SHOP, request.id, MailKind.REQUEST_RECEIVED).key
    assert given_up.note is not None
    assert "PortRejected" in given_up.note


def test_refunding_a_fee_that_was_never_paid_is_refused(world: World) -> None:
    request = world.desk.submit(world.new_request(return_fee=None))
    with pytest.raises(errors.InvalidInput) as caught:
        world.desk.approve(SHOP, request.id, refund_return_fee=True, actor="anna")
    assert caught.value.field == "refund_return_fee"
    assert world.desk.get(SHOP, request.id).status is Status.REQUESTED


@pytest.mark.parametrize(
    ("stored", "actor"),
    [
        ("staff-7", Actor.staff("staff-7")),
        ("staff:anna", Actor.staff("anna")),
        ("policy", SYSTEM),
        ("customer", CUSTOMER),
        ("rule:regel 2", Actor.rule("regel 2")),
    ],
)
def test_histories_stored_before_typed_actors_still_read(stored: str, actor: Actor) -> None:
    assert Actor.parse(stored) == actor


@pytest.mark.parametrize("stored", ["", "anna smith", "rule:", "staff:rule:x", "a\nb", "x" * 65])
def test_a_damaged_stored_actor_is_refused(stored: str) -> None:
    with pytest.raises(errors.InvalidInput):
        Actor.parse(stored)


def test_a_given_up_label_is_not_asked_for_once_the_parcel_arrived(world: World) -> None:
    request = world.desk.submit(world.new_request())
    world.desk.approve(SHOP, request.id, with_label=True, actor="anna")
    refusing = inject_faults(
        world.labels,
        lambda _n, name: Fault.BEFORE if name == "create_label" else None,
        error=errors.PortRejected,
    )
    world.make_dispatcher(labels=refusing).run_until_idle()
    world.desk.mark_received(SHOP, request.id, actor="anna")
    resolved = world.desk.resolve_attention(SHOP, request.id, actor="anna", retry=True)
    assert resolved.label_attempt == 1
    world.dispatcher.run_until_idle()
    assert world.labels.active == {}
    assert [m.kind for m in world.mail.to(request.id)] == [MailKind.REQUEST_RECEIVED]
    # Nothing is left to retry: a second resolve changes nothing.
    assert world.desk.resolve_attention(SHOP, request.id, actor="anna", retry=True) == (
        world.desk.get(SHOP, request.id)
    )


def test_a_providers_error_with_text_no_store_keeps_is_kept_readable() -> None:
    # A provider's message with NUL or a lone surrogate: the store must not refuse the record
    # of the failure (which would lose the provider's words); the dispatcher keeps them whole
    # as far as every store can hold them.
    from retouraanvraag.dispatcher import _problem  # noqa: PLC0415 - the one rule for it

    assert _problem("relay said \x00 no\ud800pe") == "relay said \ufffd no\ufffdpe"
    assert _problem("to jan@example.nl:\r\n 550") == "to <address> 550"
