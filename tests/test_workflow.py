from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable

import attrs
import pytest

from retouraanvraag import errors, rules
from retouraanvraag import photos as _photos
from retouraanvraag.model import (
    CUSTOMER,
    SYSTEM,
    Actor,
    Customer,
    Decision,
    Effect,
    MailKind,
    Money,
    Outcome,
    PaidFee,
    RefusedItem,
    ReturnRequest,
    Status,
    label_key,
)
from retouraanvraag.ports import EffectState, Mail, Query, Storage
from retouraanvraag.testing import MemoryStorage
from retouraanvraag.testing.faults import Fault, fail_nth, inject_faults
from retouraanvraag.testing.photo_contract import sample_png
from retouraanvraag.workflow import Desk, NewItem, Policy

from .conftest import NOW, SHOP, World, build_world

PNG = sample_png()


def mail_kinds(world: World, request_id: str) -> list[MailKind]:
    return [m.kind for m in world.mail.to(request_id)]


def mail_key(request_id: str, kind: MailKind) -> str:
    return Effect.send_mail(SHOP, request_id, kind).key


# -- submit --------------------------------------------------------------------------------


def test_submit_stores_a_requested_return_and_owes_a_confirmation(world: World) -> None:
    request = world.desk.submit(world.new_request())
    assert request.status is Status.REQUESTED
    assert request.version == 1
    assert request.from_country == "NL"
    assert request.items[0].reason == "too_small"
    assert [(h.actor, h.command) for h in request.history] == [(CUSTOMER, "submit")]
    assert world.desk.get(SHOP, request.id) == request
    report = world.dispatcher.run_until_idle()
    assert report.done == 1
    assert mail_kinds(world, request.id) == [MailKind.REQUEST_RECEIVED]


@pytest.mark.parametrize(
    ("changes", "error", "field"),
    [
        ({"items": ()}, errors.InvalidInput, "items"),
        ({"from_country": "Nederlnd"}, errors.UnknownCountry, "from_country"),
        (
            {"items": (NewItem("A", "B", 0, Money(100), "damaged"),)},
            errors.InvalidInput,
            "items[0].quantity",
        ),
        (
            {"items": (NewItem("A", "B", 1, Money(100), "kapot gegaan"),)},
            errors.UnknownReason,
            "items[0].reason",
        ),
        (
            {"items": (NewItem("A", "B", 1, Money(100), "other"),)},
            errors.InvalidInput,
            "items[0].reason_text",
        ),
        (
            {"items": (NewItem("A", "B", 1, Money(100, "USD"), "damaged"),)},
            errors.CurrencyMismatch,
            "items[0].unit_price",
        ),
        (
            {"return_fee": PaidFee(Money(100, "USD"), "pay_usd")},
            errors.CurrencyMismatch,
            "return_fee",
        ),
    ],
)
def test_bad_submissions_name_the_problem_and_store_nothing(
    world: World, changes: dict[str, object], error: type[Exception], field: str
) -> None:
    with pytest.raises(error) as info:
        world.desk.submit(world.new_request(**changes))
    assert getattr(info.value, "field", None) == field
    assert world.desk.list(SHOP).items == ()


def test_negative_money_cannot_even_be_built() -> None:
    with pytest.raises(errors.InvalidMoney, match="negative"):
        Money.parse("-€4,95")


def test_submission_past_the_return_window_is_refused_for_the_customer(world: World) -> None:
    late = world.new_request(delivered_at=NOW - dt.timedelta(days=31))
    with pytest.raises(errors.ReturnWindowExpired) as info:
        world.desk.submit(late)
    assert "retourtermijn van 30 dagen" in info.value.message_nl
    assert "1001" in info.value.message_en
    assert info.value.deadline == "2026-11-25"
    assert world.desk.list(SHOP).items == ()


def test_return_window_counts_days_in_the_merchants_time_zone(world: World) -> None:
    # Delivered 23:30 in Amsterdam on 27 October = 22:30 UTC: day 30 ends 26 November, local.
    delivered = dt.datetime(2026, 10, 27, 22, 30, tzinfo=dt.UTC)
    world.clock.advance(dt.timedelta(hours=10, minutes=59))  # 22:59 UTC = 23:59 local
    request = world.desk.submit(world.new_request(delivered_at=delivered))
    assert request.status is Status.REQUESTED
    world.clock.advance(dt.timedelta(minutes=2))  # past local midnight
    with pytest.raises(errors.ReturnWindowExpired):
        world.desk.submit(world.new_request(delivered_at=delivered))


def test_no_window_without_a_delivery_date_or_a_policy_window(world: World) -> None:
    assert world.desk.submit(world.new_request(delivered_at=None)).status is Status.REQUESTED
    world.use_policy(Policy(return_window_days=None))
    old = world.new_request(delivered_at=NOW - dt.timedelta(days=900))
    assert world.desk.submit(old).status is Status.REQUESTED


@pytest.mark.parametrize("days", [-1, 1.5, True, 10_000])
def test_a_return_window_must_be_a_sensible_number_of_days(days: object) -> None:
    with pytest.raises(errors.InvalidInput, match="return_window_days"):
        Policy(return_window_days=days)  # type: ignore[arg-type]


def test_unknown_time_zone_is_a_clear_error() -> None:
    with pytest.raises(errors.InvalidInput, match="Europe/Amsterdm"):
        Policy(timezone="Europe/Amsterdm")


def test_photos_are_validated_stored_and_referenced(world: World) -> None:
    item = NewItem("A", "Lamp", 1, Money(2500), "damaged", photos=(PNG,))
    request = world.desk.submit(world.new_request(items=(item,)))
    (photo,) = request.items[0].photos
    assert photo.content_type == "image/png"
    assert world.photos.get(SHOP, photo.key).startswith(b"\x89PNG")


def test_bad_photos_are_refused_and_nothing_is_stored(world: World) -> None:
    not_an_image = NewItem("A", "Lamp", 1, Money(2500), "damaged", photos=(b"GIF89a....",))
    with pytest.raises(errors.InvalidPhoto):
        world.desk.submit(world.new_request(items=(not_an_image,)))
    too_many = NewItem("A", "Lamp", 1, Money(2500), "damaged", photos=(PNG,) * 11)
    with pytest.raises(errors.InvalidPhoto):
        world.desk.submit(world.new_request(items=(too_many,)))
    assert len(world.photos) == 0
    assert world.desk.list(SHOP).items == ()


def test_a_photo_that_is_not_bytes_is_refused_by_name(world: World) -> None:
    item = NewItem("A", "Lamp", 1, Money(2500), "damaged", photos=("photo.jpg",))  # type: ignore[arg-type]
    with pytest.raises(errors.InvalidPhoto, match="bytes"):
        world.desk.submit(world.new_request(items=(item,)))


def test_a_desk_without_photo_store_refuses_photos(world: World) -> None:
    desk = Desk(world.storage, clock=world.clock)
    item = NewItem("A", "Lamp", 1, Money(2500), "damaged", photos=(PNG,))
    with pytest.raises(errors.InvalidInput, match="no photo store"):
        desk.submit(world.new_request(items=(item,)))


# -- deciding ------------------------------------------------------------------------------


def test_approve_with_label_creates_it_mails_it_and_refunds(world: World) -> None:
    request = world.desk.submit(world.new_request())
    approved = world.desk.approve(
        SHOP, request.id, with_label=True, refund_return_fee=True, actor="staff-7"
    )
    assert approved.status is Status.APPROVED
    assert approved.history[-1].actor == Actor.staff("staff-7")
    assert str(approved.history[-1].actor) == "staff:staff-7"
    world.dispatcher.run_until_idle()
    stored = world.desk.get(SHOP, request.id)
    assert stored.label is not None
    assert stored.refunded == Money(495)
    assert list(world.labels.created) == [label_key(SHOP, request.id)]
    assert mail_kinds(world, request.id) == [MailKind.REQUEST_RECEIVED, MailKind.LABEL_CREATED]
    label_mail = world.mail.to(request.id)[-1]
    assert [a.filename for a in label_mail.attachments] == ["retourlabel.pdf"]
    assert label_mail.attachments[0].data == stored.label.document
    assert [e.state for e in world.storage.outbox(SHOP, request.id)] == [EffectState.DONE] * 4


def test_approve_without_label_tells_the_customer_to_keep_it(world: World) -> None:
    request = world.desk.submit(world.new_request())
    world.desk.approve(SHOP, request.id, with_label=False, actor="staff-7")
    world.dispatcher.run_until_idle()
    stored = world.desk.get(SHOP, request.id)
    assert stored.status is Status.APPROVED_WITHOUT_RETURN
    assert stored.label is None
    assert stored.refunded == Money(0)
    assert world.labels.calls == []
    assert MailKind.APPROVED_WITHOUT_RETURN in mail_kinds(world, request.id)


def test_reject_mails_the_reason_and_refunds_the_paid_fee(world: World) -> None:
    request = world.desk.submit(world.new_request())
    rejected = world.desk.reject(SHOP, request.id, reason="Buiten de termijn", actor="staff-7")
    assert rejected.status is Status.REJECTED
    assert rejected.reject_reason == "Buiten de termijn"
    world.dispatcher.run_until_idle()
    assert world.desk.get(SHOP, request.id).refunded == Money(495)
    assert world.payments.refunded(request.return_fee.payment_reference) == Money(495)  # type: ignore[union-attr]
    mail = world.mail.to(request.id)[-1]
    assert mail.kind is MailKind.REJECTED
    assert "Buiten de termijn" in mail.text


def test_an_empty_reject_reason_is_refused(world: World) -> None:
    request = world.desk.submit(world.new_request())
    with pytest.raises(errors.InvalidInput, match="reason"):
        world.desk.reject(SHOP, request.id, reason="  ", actor="staff-7")
    assert world.desk.get(SHOP, request.id).status is Status.REQUESTED


def test_deciding_twice_is_not_allowed(world: World) -> None:
    request = world.desk.submit(world.new_request())
    world.desk.approve(SHOP, request.id, actor="staff-7")
    with pytest.raises(errors.TransitionNotAllowed) as info:
        world.desk.reject(SHOP, request.id, reason="Nee", actor="staff-8")
    assert info.value.status == "approved"
    assert info.value.request_id == request.id


def test_cancel_voids_the_label_and_refunds(world: World) -> None:
    request = world.desk.submit(world.new_request())
    world.desk.approve(SHOP, request.id, actor="staff-7")
    world.dispatcher.run_until_idle()
    world.desk.cancel(SHOP, request.id)
    world.dispatcher.run_until_idle()
    assert world.labels.voided == {label_key(SHOP, request.id)}
    assert world.labels.active == {}
    assert world.desk.get(SHOP, request.id).refunded == Money(495)
    assert mail_kinds(world, request.id)[-1] is MailKind.CANCELLED


def test_cancel_before_the_label_was_made_leaves_no_label(world: World) -> None:
    request = world.desk.submit(world.new_request())
    world.desk.approve(SHOP, request.id, actor="staff-7")
    world.desk.cancel(SHOP, request.id)
    world.dispatcher.run_until_idle()
    assert world.labels.active == {}
    assert world.desk.get(SHOP, request.id).label is None


def test_a_return_travels_to_completed_through_the_tabs(world: World) -> None:
    request = world.desk.submit(world.new_request())
    assert [r.id for r in world.desk.requests_tab(SHOP).items] == [request.id]
    world.desk.approve(SHOP, request.id, actor="staff-7")
    assert world.desk.requests_tab(SHOP).items == ()
    assert [r.id for r in world.desk.incoming_returns(SHOP).items] == [request.id]
    world.desk.mark_received(SHOP, request.id, actor="warehouse")
    assert [r.status for r in world.desk.incoming_returns(SHOP).items] == [Status.RECEIVED]
    done = world.desk.complete(SHOP, request.id, actor="warehouse")
    assert done.status is Status.COMPLETED
    assert [r.id for r in world.desk.history_tab(SHOP).items] == [request.id]
    assert [h.command for h in done.history] == [
        "submit",
        "approve_with_label",
        "mark_received",
        "complete",
    ]


def test_requests_tab_keeps_rejected_ones_behind_a_filter(world: World) -> None:
    waiting = world.desk.submit(world.new_request())
    rejected = world.desk.submit(world.new_request())
    world.desk.reject(SHOP, rejected.id, reason="Nee", actor="staff-1")
    assert {r.id for r in world.desk.requests_tab(SHOP).items} == {waiting.id, rejected.id}
    assert [r.id for r in world.desk.requests_tab(SHOP, rejected=True).items] == [rejected.id]
    assert [r.id for r in world.desk.requests_tab(SHOP, rejected=False).items] == [waiting.id]


def test_listing_pages_through_every_request_once(world: World) -> None:
    ids = []
    for _ in range(7):
        ids.append(world.desk.submit(world.new_request()).id)
        world.clock.advance(dt.timedelta(minutes=1))
    seen: list[str] = []
    cursor = None
    while True:
        page = world.desk.requests_tab(SHOP, limit=3, cursor=cursor)
        seen += [r.id for r in page.items]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == ids


def test_another_shops_request_is_not_found(world: World) -> None:
    request = world.desk.submit(world.new_request())
    other = "shop-2"
    with pytest.raises(errors.NotFound):
        world.desk.get(other, request.id)
    commands: list[Callable[[], object]] = [
        lambda: world.desk.approve(other, request.id, actor="x"),
        lambda: world.desk.reject(other, request.id, reason="x", actor="x"),
        lambda: world.desk.cancel(other, request.id),
        lambda: world.desk.mark_received(other, request.id, actor="x"),
        lambda: world.desk.complete(other, request.id, actor="x"),
    ]
    for command in commands:
        with pytest.raises(errors.NotFound):
            command()
    assert world.desk.requests_tab(other).items == ()
    assert world.desk.get(SHOP, request.id).version == 1


# -- idempotency and races -----------------------------------------------------------------


def test_the_same_key_returns_the_first_result(world: World) -> None:
    new = world.new_request()
    first = world.desk.submit(new, idempotency_key="k-submit")
    again = world.desk.submit(new, idempotency_key="k-submit")
    assert again == first
    assert len(world.desk.list(SHOP).items) == 1
    approved = world.desk.approve(SHOP, first.id, actor="s", idempotency_key="k-approve")
    assert world.desk.approve(SHOP, first.id, actor="s", idempotency_key="k-approve") == approved
    with pytest.raises(errors.IdempotencyConflict):
        world.desk.approve(
            SHOP, first.id, actor="s", refund_return_fee=True, idempotency_key="k-approve"
        )
    with pytest.raises(errors.IdempotencyConflict):
        world.desk.submit(world.new_request(order_number="2002"), idempotency_key="k-submit")


def test_a_key_replays_a_submission_with_photos_and_notices_other_photos(world: World) -> None:
    item = NewItem("A", "Lamp", 1, Money(2500), "damaged", photos=(PNG,))
    new = world.new_request(items=(item,))
    first = world.desk.submit(new, idempotency_key="k-photo")
    assert world.desk.submit(new, idempotency_key="k-photo") == first
    assert len(world.photos) == 1
    other = attrs.evolve(new, items=(attrs.evolve(item, photos=(PNG, PNG)),))
    with pytest.raises(errors.IdempotencyConflict):
        world.desk.submit(other, idempotency_key="k-photo")


def test_two_people_deciding_at_once_one_wins(world: World) -> None:
    request = world.desk.submit(world.new_request())
    barrier = threading.Barrier(2)
    results: dict[str, object] = {}

    def decide(name: str) -> None:
        barrier.wait()
        try:
            if name == "approve":
                results[name] = world.desk.approve(SHOP, request.id, actor="a")
            else:
                results[name] = world.desk.reject(SHOP, request.id, reason="Nee", actor="b")
        except errors.TransitionNotAllowed as exc:
            results[name] = exc

    threads = [threading.Thread(target=decide, args=(n,)) for n in ("approve", "reject")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [r for r in results.values() if isinstance(r, ReturnRequest)]
    losers = [r for r in results.values() if isinstance(r, errors.TransitionNotAllowed)]
    assert len(winners) == 1
    assert len(losers) == 1
    assert losers[0].status == winners[0].status.value
    assert len([h for h in world.desk.get(SHOP, request.id).history if h.is_command]) == 2


# -- effects failing -----------------------------------------------------------------------


def test_a_transient_failure_is_retried_with_backoff(world: World) -> None:
    world.dispatcher = world.make_dispatcher(
        mail=inject_faults(world.mail, fail_nth(1, Fault.BEFORE)),
        backoff=dt.timedelta(seconds=30),
        seed=3,
    )
    request = world.desk.submit(world.new_request())
    report = world.dispatcher.run_until_idle()
    assert (report.done, report.retried) == (0, 1)
    (entry,) = world.storage.outbox(SHOP, request.id)
    assert entry.attempts == 1
    assert entry.last_error is not None
    assert "injected failure" in entry.last_error
    assert world.dispatcher.run_until_idle().handled == 0  # not due yet
    world.clock.advance(dt.timedelta(seconds=31))
    assert world.dispatcher.run_until_idle().done == 1
    assert world.mail.deliveries() == {mail_key(request.id, MailKind.REQUEST_RECEIVED): 1}


def test_a_permanent_failure_flags_the_request_and_drops_nothing(world: World) -> None:
    world.labels = type(world.labels)(refuse_countries=frozenset({"NL"}))
    world.dispatcher = world.make_dispatcher()
    request = world.desk.submit(world.new_request())
    world.desk.approve(SHOP, request.id, actor="staff-1")
    report = world.dispatcher.run_until_idle()
    assert report.dead == 1
    flagged = world.desk.get(SHOP, request.id)
    assert flagged.needs_attention
    assert label_key(SHOP, request.id) in flagged.attention[0]
    assert [r.id for r in world.desk.needing_attention(SHOP).items] == [request.id]
    states = {e.key: e.state for e in world.storage.outbox(SHOP, request.id)}
    assert states[label_key(SHOP, request.id)] is EffectState.DEAD
    cleared = world.desk.resolve_attention(SHOP, request.id, actor="staff-1")
    assert not cleared.needs_attention
    assert world.desk.needing_attention(SHOP).items == ()


def test_an_effect_that_keeps_failing_is_given_up_after_max_attempts(world: World) -> None:
    world.dispatcher = world.make_dispatcher(
        mail=inject_faults(world.mail, lambda _n, _m: Fault.BEFORE),
        max_attempts=3,
        backoff=dt.timedelta(seconds=1),
        backoff_cap=dt.timedelta(seconds=2),
    )
    request = world.desk.submit(world.new_request())
    for _ in range(3):
        world.dispatcher.run_until_idle()
        world.clock.advance(dt.timedelta(seconds=5))
    assert world.desk.get(SHOP, request.id).needs_attention
    (entry,) = world.storage.outbox(SHOP, request.id)
    assert entry.state is EffectState.DEAD
    assert entry.attempts == 3


def test_failure_after_the_provider_acted_does_not_duplicate(world: World) -> None:
    labels = inject_faults(world.labels, fail_nth(1, Fault.AFTER))
    payments = inject_faults(world.payments, fail_nth(1, Fault.AFTER))
    world.dispatcher = world.make_dispatcher(
        labels=labels,
        payments=payments,
        backoff=dt.timedelta(seconds=1),
    )
    request = world.desk.submit(world.new_request())
    world.desk.approve(SHOP, request.id, refund_return_fee=True, actor="staff-1")
    for _ in range(3):
        world.dispatcher.run_until_idle()
        world.clock.advance(dt.timedelta(minutes=5))
    stored = world.desk.get(SHOP, request.id)
    assert stored.label is not None
    assert len(world.labels.created) == 1
    assert len(world.payments.refunds) == 1
    assert stored.refunded == Money(495)


def test_a_dead_workers_lease_runs_out_and_another_worker_takes_over(world: World) -> None:
    request = world.desk.submit(world.new_request())
    claimed = world.storage.claim(
        owner="dead-worker", now=world.clock.now(), lease=dt.timedelta(minutes=5), limit=10
    )
    assert [e.key for e in claimed] == [mail_key(request.id, MailKind.REQUEST_RECEIVED)]
    assert world.dispatcher.run_until_idle().handled == 0
    world.clock.advance(dt.timedelta(minutes=6))
    assert world.dispatcher.run_until_idle().done == 1
    assert world.mail.deliveries()[mail_key(request.id, MailKind.REQUEST_RECEIVED)] == 1


def test_a_worker_whose_lease_ran_out_leaves_the_entry_to_the_new_owner(world: World) -> None:
    request = world.desk.submit(world.new_request())
    late = world.make_dispatcher(
        owner="new-owner",
    )
    reports = []

    class SlowMail:
        """Sends, but so slowly that the lease runs out and another worker takes over."""

        def send(self, key: str, mail: Mail) -> None:
            world.mail.send(key, mail)
            world.clock.advance(dt.timedelta(minutes=6))
            reports.append(late.run_once())

    slow = world.make_dispatcher(
        mail=SlowMail(),
        owner="slow-owner",
    )
    assert slow.run_once().handled == 0
    assert reports[0].done == 1
    (entry,) = world.storage.outbox(SHOP, request.id)
    assert entry.state is EffectState.DONE
    # Plain mail is at-least-once: both workers handed the message over.
    assert world.mail.deliveries()[entry.key] == 2


def test_the_worker_loop_drains_survives_an_unavailable_store_and_stops(world: World) -> None:
    request = world.desk.submit(world.new_request())
    stop = threading.Event()
    polls: list[int] = []

    class FlakyStore:
        """The world's store, unavailable for the first claim; stops the worker at the third."""

        def __init__(self, inner: object) -> None:
            self.inner = inner

        def __getattr__(self, name: str) -> object:
            return getattr(self.inner, name)

        def claim(self, **kwargs: object) -> object:
            polls.append(1)
            if len(polls) == 1:
                raise errors.PortUnavailable("database is locked")
            if len(polls) >= 3:
                stop.set()
            return self.inner.claim(**kwargs)  # type: ignore[attr-defined]

    worker = world.make_dispatcher(storage=FlakyStore(world.storage))
    report = worker.run_worker(stop, poll=0)
    assert report.done == 1
    assert world.mail.deliveries() == {mail_key(request.id, MailKind.REQUEST_RECEIVED): 1}


def test_backoff_doubles_with_jitter_up_to_the_cap(world: World) -> None:
    delays = [world.dispatcher.backoff(n) for n in range(1, 12)]
    assert dt.timedelta(seconds=15) <= delays[0] <= dt.timedelta(seconds=30)
    assert dt.timedelta(seconds=30) <= delays[1] <= dt.timedelta(seconds=60)
    assert all(d <= dt.timedelta(hours=6) for d in delays)
    with pytest.raises(errors.InvalidInput):
        world.make_dispatcher(
            max_attempts=0,
        )


# -- policy and rules ----------------------------------------------------------------------


@attrs.frozen
class StaticRules:
    outcome: Outcome

    def evaluate(self, request: ReturnRequest, *, default: Decision | None = None) -> Outcome:
        assert request.status is Status.REQUESTED
        assert default is Decision.REVIEW
        return self.outcome


def test_without_manual_approval_requests_are_approved_with_a_label(world: World) -> None:
    world.use_policy(Policy(manual_approval=False))
    request = world.desk.submit(world.new_request())
    assert request.status is Status.APPROVED
    assert request.history[-1].actor == SYSTEM
    assert str(request.history[-1].actor) == "system"
    world.dispatcher.run_until_idle()
    assert mail_kinds(world, request.id) == [MailKind.REQUEST_RECEIVED, MailKind.LABEL_CREATED]


@pytest.mark.parametrize(
    ("outcome", "status"),
    [
        (Outcome(Decision.APPROVE_WITH_LABEL, rule="Binnenland"), Status.APPROVED),
        (Outcome(Decision.APPROVE_WITHOUT_LABEL, rule="Goedkoop"), Status.APPROVED_WITHOUT_RETURN),
        (Outcome(Decision.REJECT, reason="Sale-artikel", rule="Sale"), Status.REJECTED),
        (Outcome(Decision.REVIEW, rule="Duur", trace=("Duur: matched",)), Status.REQUESTED),
        (Outcome(None), Status.REQUESTED),
    ],
)
def test_a_rules_decision_is_applied_and_recorded(
    world: World, outcome: Outcome, status: Status
) -> None:
    world.use_policy(Policy(rules=StaticRules(outcome)))
    request = world.desk.submit(world.new_request())
    assert request.status is status
    last = request.history[-1]
    if outcome.rule and status is not Status.REQUESTED:
        assert last.actor == Actor.rule(outcome.rule)
        assert str(last.actor) == f"rule:{outcome.rule}"
    assert last.trace == outcome.trace
    if status is Status.REJECTED:
        assert request.reject_reason == "Sale-artikel"


def test_rules_refusing_the_return_store_nothing(world: World) -> None:
    refusal = Outcome(
        Decision.NOT_RETURNABLE, refused=(RefusedItem(0, "Hygiëneartikel: niet retour"),)
    )
    world.use_policy(Policy(rules=StaticRules(refusal)))
    new = world.new_request()
    assert world.desk.preview(new).refused == refusal.refused
    with pytest.raises(errors.ReturnRefused) as info:
        world.desk.submit(new)
    assert info.value.refused == ((0, "Hygiëneartikel: niet retour"),)
    assert world.desk.list(SHOP).items == ()


def test_policy_per_shop(world: World) -> None:
    policies = {"auto": Policy(manual_approval=False), SHOP: Policy()}
    desk = Desk(world.storage, policy=policies.__getitem__, clock=world.clock)
    assert desk.submit(world.new_request()).status is Status.REQUESTED
    assert desk.submit(world.new_request(shop_id="auto")).status is Status.APPROVED


def test_queries_by_status_and_date(world: World) -> None:
    first = world.desk.submit(world.new_request())
    world.clock.advance(dt.timedelta(days=1))
    second = world.desk.submit(world.new_request(customer=Customer("a@b.nl", "Piet", "en")))
    page = world.desk.list(SHOP, Query(created_from=NOW + dt.timedelta(hours=1)))
    assert [r.id for r in page.items] == [second.id]
    page = world.desk.list(SHOP, Query(created_before=NOW + dt.timedelta(hours=1)))
    assert [r.id for r in page.items] == [first.id]
    page = world.desk.list(SHOP, Query(statuses={Status.APPROVED}))
    assert page.items == ()
    english = world.desk.list(SHOP, Query(where=lambda r: r.customer.language == "en"))
    assert [r.id for r in english.items] == [second.id]


def test_build_world_over_a_given_storage() -> None:
    world = build_world(MemoryStorage())
    assert world.desk.submit(world.new_request()).status is Status.REQUESTED


HELP_ARTICLE_RULES = """\
ALS Retourreden IS NIET "product beschadigd" OF "Verkeerd product verzonden"
DAN Retouraanvraag uitschakelen
ALS Van land is Nederland
DAN Retouraanvraag uitschakelen
REGEL "Sale": ALS Tags BEVAT "sale" DAN Afwijzen met reden "Sale-artikelen ruilen we niet"
REGEL "Cadeaubon": ALS SKU BEGINT MET "GC-" DAN Artikel niet retourneerbaar
"""


def test_the_help_article_rules_decide_at_submission(world: World) -> None:
    world.use_policy(Policy(rules=rules.parse(HELP_ARTICLE_RULES)))
    dutch = world.desk.submit(world.new_request())
    assert dutch.status is Status.APPROVED
    assert str(dutch.history[-1].actor) == "rule:regel 2"
    assert dutch.history[-1].trace
    damaged = NewItem("LMP", "Lamp", 1, Money(4995), "Product beschadigd")
    german = world.desk.submit(world.new_request(from_country="Duitsland", items=(damaged,)))
    assert german.status is Status.REQUESTED  # damaged: no rule skips review, policy reviews
    sale = world.desk.submit(world.new_request(tags=frozenset({"sale"})))
    assert sale.status is Status.REJECTED
    assert sale.reject_reason == "Sale-artikelen ruilen we niet"
    assert sale.history[-1].actor == Actor.rule("Sale")
    gift = NewItem("GC-25", "Cadeaubon", 1, Money(2500), "Bedacht")
    preview = world.desk.preview(world.new_request(items=(damaged, gift)))
    assert [r.index for r in preview.refused] == [1]
    with pytest.raises(errors.ReturnRefused):
        world.desk.submit(world.new_request(items=(damaged, gift)))


def test_items_no_rule_decides_take_the_policy_default(world: World) -> None:
    only_damaged = 'ALS Retourreden IS "damaged" DAN Goedkeuren zonder label'
    world.use_policy(Policy(manual_approval=True, rules=rules.parse(only_damaged)))
    damaged = NewItem("LMP", "Lamp", 1, Money(4995), "damaged")
    small = NewItem("TS", "Shirt", 1, Money(1995), "too_small")
    # One item approved without label, the other waits for review: review is stricter.
    assert world.desk.submit(world.new_request(items=(damaged, small))).status is Status.REQUESTED
    assert world.desk.submit(world.new_request(items=(damaged,))).status is (
        Status.APPROVED_WITHOUT_RETURN
    )


def test_the_requests_tab_filters_by_a_rule_condition(world: World) -> None:
    dutch = world.desk.submit(world.new_request())
    german = world.desk.submit(world.new_request(from_country="DE"))
    assert [r.id for r in world.desk.requests_tab(SHOP, rule="Van land IS Nederland").items] == [
        dutch.id
    ]
    page = world.desk.requests_tab(SHOP, rule="Van land IS NIET Nederland")
    assert [r.id for r in page.items] == [german.id]
    assert world.desk.incoming_returns(SHOP, rule="Van land IS Nederland").items == ()


# -- hardening -----------------------------------------------------------------------------


class FailingCommits:
    """A store whose commits fail as unavailable; everything else passes through."""

    def __init__(self, inner: Storage) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def commit(self, _commit: object) -> ReturnRequest:
        raise errors.PortUnavailable("database is locked")


def test_photos_of_a_submission_that_fails_to_save_are_removed(world: World) -> None:
    desk = Desk(FailingCommits(world.storage), photos=world.photos, clock=world.clock)  # type: ignore[arg-type]
    item = NewItem("A", "Lamp", 1, Money(2500), "damaged", photos=(PNG, PNG))
    with pytest.raises(errors.PortUnavailable):
        desk.submit(world.new_request(items=(item,)))
    assert len(world.photos) == 0


def test_photo_limits_are_checked_before_anything_else(world: World) -> None:
    huge = b"\xff\xd8\xff" + bytes(_photos.MAX_PHOTO_BYTES)
    item = NewItem("A", "Lamp", 1, Money(2500), "damaged", photos=(huge,))
    with pytest.raises(errors.InvalidPhoto) as info:
        world.desk.submit(world.new_request(items=(item,)), idempotency_key="k")
    assert info.value.field == "items[0].photos[0]"
    with pytest.raises(errors.InvalidInput, match="NewRequest"):
        world.desk.preview("not a request")  # type: ignore[arg-type]


def test_the_carrier_the_rules_chose_is_kept_for_a_reviewed_request(world: World) -> None:
    carrier = 'ALS Van land IS Nederland DAN Verzenden met "DHL"'
    world.use_policy(Policy(rules=rules.parse(carrier)))
    request = world.desk.submit(world.new_request())
    assert request.status is Status.REQUESTED
    world.desk.approve(SHOP, request.id, actor="staff-1")
    world.dispatcher.run_until_idle()
    label = world.desk.get(SHOP, request.id).label
    assert label is not None
    assert label.carrier == "DHL"


def test_a_reject_reason_with_stray_spaces_replays_under_its_key(world: World) -> None:
    request = world.desk.submit(world.new_request())
    first = world.desk.reject(SHOP, request.id, reason="Te laat", actor="s", idempotency_key="k")
    again = world.desk.reject(SHOP, request.id, reason=" Te laat ", actor="s", idempotency_key="k")
    assert again == first


@pytest.mark.parametrize("zone", ["", "UTC+3", "Europe/Amsterdm", "local"])
def test_only_iana_time_zones_are_accepted(zone: str) -> None:
    with pytest.raises(errors.InvalidInput, match="time zone"):
        Policy(timezone=zone)


def test_stored_problems_carry_no_address_and_stay_short(world: World) -> None:
    class ChattyMail:
        def send(self, _key: str, mail: Mail) -> None:
            raise errors.PortRejected(f"mailbox {mail.to} is full\n" + "x" * 2000)

    world.dispatcher = world.make_dispatcher(
        mail=ChattyMail(),
    )
    request = world.desk.submit(world.new_request())
    world.dispatcher.run_until_idle()
    (problem,) = world.desk.get(SHOP, request.id).attention
    assert "jan@example.nl" not in problem
    assert "<address>" in problem
    assert "\n" not in problem
    assert len(problem) <= 600
    (entry,) = world.storage.outbox(SHOP, request.id)
    assert entry.last_error is not None
    assert "jan@example.nl" not in entry.last_error


def test_a_request_that_cannot_be_read_is_given_up_not_retried_forever(world: World) -> None:
    class CorruptRequests:
        def __init__(self, inner: Storage) -> None:
            self.inner = inner

        def __getattr__(self, name: str) -> object:
            return getattr(self.inner, name)

        def get(self, shop_id: str, request_id: str) -> ReturnRequest:
            raise errors.PortRejected(f"shop {shop_id}: request {request_id} cannot be read")

    request = world.desk.submit(world.new_request())
    worker = world.make_dispatcher(storage=CorruptRequests(world.storage))
    assert worker.run_until_idle().dead == 1
    (entry,) = world.storage.outbox(SHOP, request.id)
    assert entry.state is EffectState.DEAD
    assert "cannot be read" in (entry.last_error or "")


def test_retrying_failed_effects_after_the_cause_is_fixed(world: World) -> None:
    world.labels = type(world.labels)(refuse_countries=frozenset({"NL"}))
    world.dispatcher = world.make_dispatcher()
    request = world.desk.submit(world.new_request())
    world.desk.approve(SHOP, request.id, actor="staff-1")
    assert world.dispatcher.run_until_idle().dead == 1
    world.labels._refuse = frozenset()  # the carrier now collects from NL
    first, second = label_key(SHOP, request.id, 1), label_key(SHOP, request.id, 2)
    resolved = world.desk.resolve_attention(SHOP, request.id, actor="staff-7", retry=True)
    assert not resolved.needs_attention
    assert resolved.history[-1].command == "resolve_attention"
    assert resolved.history[-1].note == f"retry {first}"
    # The given-up label was voided: the retry asks under the next attempt's key.
    assert (resolved.label_attempt, resolved.label_key) == (2, second)
    world.dispatcher.run_until_idle()
    stored = world.desk.get(SHOP, request.id)
    assert stored.label is not None
    assert first in world.labels.voided
    assert list(world.labels.active) == [second]
    assert stored.label == world.labels.created[second]
    assert MailKind.LABEL_CREATED in mail_kinds(world, request.id)
    # Nothing left to resolve: the request comes back as it is.
    assert world.desk.resolve_attention(SHOP, request.id, actor="staff-7") == stored


def test_backoff_never_overflows_and_must_be_positive(world: World) -> None:
    assert world.dispatcher.backoff(10_000) <= dt.timedelta(hours=6)
    with pytest.raises(errors.InvalidInput, match="backoff"):
        world.make_dispatcher(
            backoff=dt.timedelta(0),
        )


def test_the_worker_survives_a_store_that_refuses(world: World) -> None:
    stop = threading.Event()

    class RefusingStore:
        def __init__(self, inner: Storage) -> None:
            self.inner = inner

        def __getattr__(self, name: str) -> object:
            return getattr(self.inner, name)

        def claim(self, **_kwargs: object) -> object:
            stop.set()
            raise errors.PortRejected("corrupt outbox")

    worker = world.make_dispatcher(storage=RefusingStore(world.storage))
    assert worker.run_worker(stop, poll=0).handled == 0
