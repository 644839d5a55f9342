"""Desk.decide_many: several requests decided at once, each on its own."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from retouraanvraag import ShopSettings, errors
from retouraanvraag.model import Customer, Decision, EffectKind, Money, Status
from retouraanvraag.ports import COMMAND_RETRIES
from retouraanvraag.testing import MemoryStorage
from retouraanvraag.testing.faults import Fault, inject_faults
from retouraanvraag.workflow import BULK_LIMIT, Desk

from .conftest import SHOP, World, build_world


def submit(world: World, count: int, **changes: object) -> list[str]:
    return [world.desk.submit(world.new_request(**changes)).id for _ in range(count)]


def test_approve_with_label_decides_each_request_and_owes_each_its_label(world: World) -> None:
    ids = submit(world, 3)
    results = world.desk.decide_many(SHOP, ids, decision=Decision.APPROVE_WITH_LABEL, actor="anna")
    assert list(results) == ids
    for request_id, result in results.items():
        assert not isinstance(result, Exception)
        assert result.id == request_id
        assert result.status is Status.APPROVED
        assert str(result.history[-1].actor) == "staff:anna"
        assert world.desk.get(SHOP, request_id).status is Status.APPROVED
    world.dispatcher.run_until_idle()
    assert len(world.labels.created) == 3
    for request_id in ids:
        assert world.desk.get(SHOP, request_id).label is not None


def test_one_request_that_cannot_be_decided_does_not_stop_the_others(world: World) -> None:
    first, decided, last = submit(world, 3)
    world.desk.reject(SHOP, decided, reason="Gedragen", actor="anna")
    other_shop = world.desk.submit(world.new_request(shop_id="shop-2")).id
    results = world.desk.decide_many(
        SHOP,
        [first, decided, "no-such-request", other_shop, last],
        decision="approve_without_label",
        actor="anna",
    )
    assert isinstance(results[decided], errors.TransitionNotAllowed)
    assert results[decided].request_id == decided  # type: ignore[union-attr]
    assert isinstance(results["no-such-request"], errors.NotFound)
    # Another shop's request behaves as not found, and is left as it was.
    assert isinstance(results[other_shop], errors.NotFound)
    assert world.desk.get("shop-2", other_shop).status is Status.REQUESTED
    for ok in (first, last):
        result = results[ok]
        assert not isinstance(result, Exception)
        assert result.status is Status.APPROVED_WITHOUT_RETURN
    assert world.desk.get(SHOP, decided).status is Status.REJECTED


def test_reject_gives_every_request_the_reason_and_refunds_each_paid_fee(world: World) -> None:
    ids = submit(world, 2)
    results = world.desk.decide_many(
        SHOP, ids, decision="reject", reason="  Buiten de voorwaarden ", actor="anna"
    )
    for request_id in ids:
        result = results[request_id]
        assert not isinstance(result, Exception)
        assert result.status is Status.REJECTED
        assert result.reject_reason == "Buiten de voorwaarden"
    world.dispatcher.run_until_idle()
    assert sorted(r.payment_reference for r in world.payments.refunds) == ["pay_1", "pay_2"]


def test_refund_in_a_batch_refunds_where_a_fee_was_paid(world: World) -> None:
    paid = submit(world, 1)[0]
    free = submit(world, 1, return_fee=None)[0]
    results = world.desk.decide_many(
        SHOP,
        [paid, free],
        decision=Decision.APPROVE_WITH_LABEL,
        refund_return_fee=True,
        actor="anna",
    )
    assert all(not isinstance(r, Exception) for r in results.values())
    world.dispatcher.run_until_idle()
    assert [r.payment_reference for r in world.payments.refunds] == ["pay_1"]
    assert world.desk.get(SHOP, paid).refunded == Money(495)
    assert world.desk.get(SHOP, free).refunded == Money(0)


def test_a_repeated_id_is_decided_once(world: World) -> None:
    (only,) = submit(world, 1)
    results = world.desk.decide_many(
        SHOP, [only, only, only], decision="approve_with_label", actor="anna"
    )
    assert list(results) == [only]
    assert not isinstance(results[only], Exception)
    commands = [h.command for h in world.desk.get(SHOP, only).history if h.is_command]
    assert commands == ["submit", "approve_with_label"]


def test_each_request_has_its_own_idempotency_key(world: World) -> None:
    ids = submit(world, 2)
    first = world.desk.decide_many(
        SHOP, ids, decision="approve_with_label", actor="anna", idempotency_key="bulk-7"
    )
    again = world.desk.decide_many(
        SHOP, ids, decision="approve_with_label", actor="anna", idempotency_key="bulk-7"
    )
    # The repeat replays each first result instead of refusing a second approval.
    assert again == first
    record = world.storage.idempotency_record(SHOP, f"bulk-7:{ids[0]}")
    assert record is not None
    assert record.request_id == ids[0]
    other = world.desk.decide_many(
        SHOP, ids, decision="approve_without_label", actor="anna", idempotency_key="bulk-7"
    )
    assert all(isinstance(r, errors.IdempotencyConflict) for r in other.values())
    outbox = [e.effect.kind for e in world.storage.outbox(SHOP, ids[0])]
    assert outbox.count(EffectKind.CREATE_LABEL) == 1


def test_a_request_that_loses_every_race_reports_concurrent_modification() -> None:
    inner = MemoryStorage()
    world = build_world(inner)
    ids = submit(world, 3)
    commits = 0

    def plan(_call: int, name: str) -> Fault | None:
        nonlocal commits
        if name != "commit":
            return None
        commits += 1
        # The second request's every try collides; the first and third commit at once.
        return Fault.BEFORE if 2 <= commits <= 1 + COMMAND_RETRIES else None

    def collision(_message: str) -> errors.PortError:
        return errors.ConcurrentModification(request_id="?", expected=1, actual=2)

    racing = inject_faults(inner, plan, error=collision)
    desk = Desk(racing, photos=world.photos, policy=world.policy, clock=world.clock)
    results = desk.decide_many(SHOP, ids, decision="reject", reason="Nee", actor="anna")
    assert isinstance(results[ids[1]], errors.ConcurrentModification)
    assert inner.get(SHOP, ids[1]).status is Status.REQUESTED
    for ok in (ids[0], ids[2]):
        assert inner.get(SHOP, ok).status is Status.REJECTED


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"decision": "cancel"}, "decision"),
        ({"decision": "review"}, "decision"),
        ({"decision": "not_returnable"}, "decision"),
        ({"decision": "reject"}, "reason"),
        ({"decision": "reject", "reason": "   "}, "reason"),
        ({"decision": "approve_with_label", "reason": "waarom"}, "reason"),
        ({"decision": "reject", "reason": "Nee", "refund_return_fee": True}, "refund_return_fee"),
        ({"decision": "approve_with_label", "actor": "customer"}, "actor"),
        ({"decision": "approve_with_label", "request_ids": []}, "request_ids"),
        ({"decision": "approve_with_label", "request_ids": "abc"}, "request_ids"),
        ({"decision": "approve_with_label", "request_ids": ["ok", 7]}, "request_ids[1]"),
        ({"decision": "approve_with_label", "request_ids": ["ok", ""]}, "request_ids[1]"),
        (
            {"decision": "approve_with_label", "request_ids": [str(i) for i in range(501)]},
            "request_ids",
        ),
    ],
)
def test_arguments_wrong_for_every_request_decide_nothing(
    world: World, arguments: dict[str, object], field: str
) -> None:
    ids = submit(world, 2)
    options: dict[str, object] = {"actor": "anna", "request_ids": ids, **arguments}
    with pytest.raises(errors.InvalidInput) as caught:
        world.desk.decide_many(SHOP, **options)  # type: ignore[arg-type]
    assert caught.value.field == field
    for request_id in ids:
        assert world.desk.get(SHOP, request_id).status is Status.REQUESTED


def test_the_limit_is_the_largest_tab_page() -> None:
    assert BULK_LIMIT == 500


@given(
    st.lists(
        st.sampled_from(["requested", "approved", "rejected", "missing"]), min_size=1, max_size=8
    ),
    st.sampled_from(["approve_with_label", "approve_without_label", "reject"]),
)
def test_exactly_the_waiting_requests_are_decided(states: list[str], decision: str) -> None:
    world = build_world(MemoryStorage())
    ids: list[str] = []
    for n, state in enumerate(states):
        if state == "missing":
            ids.append(f"missing-{n}")
            continue
        request_id = world.desk.submit(world.new_request()).id
        if state == "approved":
            world.desk.approve(SHOP, request_id, actor="bob")
        elif state == "rejected":
            world.desk.reject(SHOP, request_id, reason="Eerder", actor="bob")
        ids.append(request_id)
    before = {
        i: world.desk.get(SHOP, i) for i, s in zip(ids, states, strict=True) if s != "missing"
    }
    world.clock.advance(dt.timedelta(minutes=1))
    reason = "Bulk" if decision == "reject" else None
    results = world.desk.decide_many(SHOP, ids, decision=decision, reason=reason, actor="anna")
    target = {
        "approve_with_label": Status.APPROVED,
        "approve_without_label": Status.APPROVED_WITHOUT_RETURN,
        "reject": Status.REJECTED,
    }[decision]
    assert list(results) == ids
    for request_id, state in zip(ids, states, strict=True):
        result = results[request_id]
        if state == "missing":
            assert isinstance(result, errors.NotFound)
        elif state == "requested":
            assert not isinstance(result, Exception)
            assert result.status is target
            assert world.desk.get(SHOP, request_id) == result
        else:
            assert isinstance(result, errors.TransitionNotAllowed)
            assert world.desk.get(SHOP, request_id) == before[request_id]


def test_a_preset_reason_reaches_each_customer_in_their_language(world: World) -> None:
    dutch = world.desk.submit(world.new_request()).id
    english = world.desk.submit(
        world.new_request(customer=Customer("ann@example.com", "Ann", "en"))
    ).id
    preset = ShopSettings().reject_reason("used")
    results = world.desk.decide_many(
        SHOP, [dutch, english], decision="reject", reason=preset, actor="anna"
    )
    assert not isinstance(results[dutch], Exception)
    assert not isinstance(results[english], Exception)
    assert world.desk.get(SHOP, dutch).reject_reason == preset.nl
    assert world.desk.get(SHOP, english).reject_reason == preset.en
