"""Issue 7: nothing half-stored, bad input refused up front.

Each section attacks one promise of ``Desk.submit``: photos are stored exactly for stored
requests (whatever port fails, before or after acting); every moment and every derived amount
is one the library can work with; every field of the wrong type is refused by its name with a
library error; the return fee the rules ask is the one paid, and it is kept.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import pickle
from collections.abc import Callable
from typing import Any, TypeVar

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import retouraanvraag
from retouraanvraag import errors, rules
from retouraanvraag._codec import request_from_json, request_to_json
from retouraanvraag.mail import MailRenderer
from retouraanvraag.model import (
    EARLIEST_MOMENT,
    LATEST_MOMENT,
    MAX_MINOR_UNITS,
    Customer,
    Decision,
    MailKind,
    Money,
    Outcome,
    PaidFee,
    ReturnItem,
    ReturnRequest,
    Status,
)
from retouraanvraag.ports import Query
from retouraanvraag.testing import MemoryStorage
from retouraanvraag.testing.faults import Fault, FaultyPort, fail_nth, inject_faults
from retouraanvraag.testing.photo_contract import sample_png
from retouraanvraag.workflow import CLOCK_SKEW, Desk, NewItem, NewRequest, Policy

from .conftest import NOW, SHOP, World, build_world

PNG = sample_png()
T = TypeVar("T")


def attempt(call: Callable[[], T]) -> tuple[T | None, errors.RetouraanvraagError | None]:
    """The call's result, or the library error it raised (any other error propagates)."""
    try:
        return call(), None
    except errors.RetouraanvraagError as exc:
        return None, exc


def stored_requests(world: World) -> list[ReturnRequest]:
    found: list[ReturnRequest] = []
    cursor = None
    while True:
        page = world.desk.list(SHOP, Query(limit=500, cursor=cursor))
        found += page.items
        if page.next_cursor is None:
            return found
        cursor = page.next_cursor


def assert_photos_are_exactly_those_of_stored_requests(world: World) -> None:
    keys = [ref.key for r in stored_requests(world) for item in r.items for ref in item.photos]
    assert len(set(keys)) == len(keys)
    for key in keys:
        assert world.photos.get(SHOP, key).startswith(b"\x89PNG")
    assert len(world.photos) == len(keys)


def with_three_photos(world: World, **changes: object) -> NewRequest:
    """Two items: the lamp with two photos, the shirt with one."""
    lamp = NewItem("LMP", "Lamp", 1, Money(2500), "damaged", photos=(PNG, PNG))
    shirt = NewItem("TS-1", "T-shirt", 1, Money(1995), "damaged", photos=(PNG,))
    return world.new_request(items=(lamp, shirt), **changes)


# -- 9. nothing half-stored ------------------------------------------------------------------


@pytest.mark.parametrize("nth", [1, 2, 3])
def test_a_photo_store_failing_before_a_put_keeps_none_of_the_submissions_photos(
    world: World, nth: int
) -> None:
    photos = inject_faults(world.photos, fail_nth(nth, Fault.BEFORE, method="put"))
    desk = Desk(world.storage, photos=photos, clock=world.clock)
    new = with_three_photos(world)
    with pytest.raises(errors.PortUnavailable):
        desk.submit(new, idempotency_key="form-1")
    assert len(world.photos) == 0
    assert stored_requests(world) == []
    # The customer retries: one request, exactly its three photos.
    saved = world.desk.submit(new, idempotency_key="form-1")
    assert [len(item.photos) for item in saved.items] == [2, 1]
    assert_photos_are_exactly_those_of_stored_requests(world)


def test_a_put_whose_answer_was_lost_leaves_only_that_photo(world: World) -> None:
    # The store kept the photo but its key never came back: no call can find it again. This
    # is the one stray photo the desk cannot prevent (the photo port has no idempotency key).
    photos = inject_faults(world.photos, fail_nth(2, Fault.AFTER, method="put"))
    desk = Desk(world.storage, photos=photos, clock=world.clock)
    with pytest.raises(errors.PortUnavailable):
        desk.submit(with_three_photos(world))
    assert len(world.photos) == 1
    assert stored_requests(world) == []


def test_a_commit_applied_but_unacknowledged_keeps_the_photos_of_the_saved_request(
    world: World,
) -> None:
    storage = inject_faults(world.storage, fail_nth(1, Fault.AFTER, method="commit"))
    desk = Desk(storage, photos=world.photos, clock=world.clock)
    new = with_three_photos(world)
    saved = desk.submit(new, idempotency_key="form-1")
    assert saved == world.desk.get(SHOP, saved.id)
    assert [len(item.photos) for item in saved.items] == [2, 1]
    assert_photos_are_exactly_those_of_stored_requests(world)
    # The retry the customer's browser makes anyway returns the same request, photos intact.
    again = world.desk.submit(new, idempotency_key="form-1")
    assert again.id == saved.id
    assert_photos_are_exactly_those_of_stored_requests(world)
    assert len(stored_requests(world)) == 1


def test_a_commit_refused_before_acting_removes_the_photos(world: World) -> None:
    storage = inject_faults(world.storage, fail_nth(1, Fault.BEFORE, method="commit"))
    desk = Desk(storage, photos=world.photos, clock=world.clock)
    with pytest.raises(errors.PortUnavailable):
        desk.submit(with_three_photos(world), idempotency_key="form-1")
    assert len(world.photos) == 0
    assert stored_requests(world) == []


@pytest.mark.parametrize("commit", [Fault.BEFORE, Fault.AFTER])
def test_when_even_the_look_up_fails_the_photos_are_kept_and_logged(
    world: World, commit: Fault, caplog: pytest.LogCaptureFixture
) -> None:
    plans = {"commit": fail_nth(1, commit, method="commit"), "get": fail_nth(1, Fault.BEFORE)}

    def plan(_call: int, name: str) -> Fault | None:
        return plans[name](1, name) if name in plans else None

    desk = Desk(inject_faults(world.storage, plan), photos=world.photos, clock=world.clock)
    new = with_three_photos(world)
    with (
        caplog.at_level(logging.WARNING, "retouraanvraag"),
        pytest.raises(errors.PortUnavailable) as info,
    ):
        desk.submit(new, idempotency_key="form-1")
    assert "photo(s) were kept" in " ".join(getattr(info.value, "__notes__", []))
    assert len(world.photos) == 3
    (record,) = [r for r in caplog.records if "photos are kept" in r.getMessage()]
    assert len(record.photos) == 3  # type: ignore[attr-defined]
    assert "jan@example.nl" not in record.getMessage()
    saved = world.desk.submit(new, idempotency_key="form-1")
    if commit is Fault.AFTER:
        # It was saved: the retry returns it, with the photos that were kept.
        assert_photos_are_exactly_those_of_stored_requests(world)
    else:
        # It was not: the kept photos are the documented strays, the retry stores its own.
        assert len(world.photos) == 6
        assert len(stored_requests(world)) == 1
        assert sum(len(item.photos) for item in saved.items) == 3


def _storage_calls_of_a_keyed_submit() -> list[str]:
    calls: list[str] = []

    def record(_call: int, name: str) -> None:
        calls.append(name)

    probe = build_world(MemoryStorage())
    desk = Desk(inject_faults(probe.storage, record), photos=probe.photos, clock=probe.clock)
    desk.submit(with_three_photos(probe), idempotency_key="form-1")
    return calls


SUBMIT_CALLS = _storage_calls_of_a_keyed_submit()


def test_a_keyed_submit_asks_for_its_key_then_commits() -> None:
    assert SUBMIT_CALLS == ["idempotency_record", "commit"]


@pytest.mark.parametrize("when", [Fault.BEFORE, Fault.AFTER])
@pytest.mark.parametrize("nth", range(1, len(SUBMIT_CALLS) + 1))
def test_every_single_storage_fault_ends_with_exactly_the_stored_requests_photos(
    world: World, nth: int, when: Fault
) -> None:
    storage = FaultyPort(world.storage, fail_nth(nth, when))
    desk = Desk(storage, photos=world.photos, clock=world.clock)
    new = with_three_photos(world)
    with contextlib.suppress(errors.PortUnavailable):
        desk.submit(new, idempotency_key="form-1")
    assert [name for _, name, _ in storage.injected] == [SUBMIT_CALLS[nth - 1]]
    assert_photos_are_exactly_those_of_stored_requests(world)
    world.desk.submit(new, idempotency_key="form-1")
    assert len(stored_requests(world)) == 1
    assert_photos_are_exactly_those_of_stored_requests(world)


def test_a_photo_store_that_cannot_delete_does_not_hide_the_saves_error(world: World) -> None:
    failing_deletes = inject_faults(
        world.photos, lambda _n, name: Fault.BEFORE if name == "delete" else None
    )
    storage = inject_faults(world.storage, fail_nth(1, Fault.BEFORE, method="commit"))
    desk = Desk(storage, photos=failing_deletes, clock=world.clock)
    with pytest.raises(errors.PortUnavailable, match="commit"):
        desk.submit(with_three_photos(world))


@attrs.frozen
class StaticRules:
    """A rule set that decides every request the same way."""

    outcome: Outcome

    def evaluate(self, _request: ReturnRequest, *, default: Decision | None = None) -> Outcome:
        return attrs.evolve(self.outcome, decision=self.outcome.decision or default)


def test_a_decision_the_aggregate_refuses_leaves_no_photo(world: World) -> None:
    # The decision is taken before any photo is stored: a reject reason the aggregate refuses
    # (a host's own rule evaluator may produce one) costs nothing to clean up.
    outcome = Outcome(Decision.REJECT, reason="x" * 2001, rule="host")
    world.use_policy(Policy(rules=StaticRules(outcome)))
    with pytest.raises(errors.InvalidInput, match="reason"):
        world.desk.submit(with_three_photos(world))
    assert len(world.photos) == 0
    assert stored_requests(world) == []


# -- 10. calendar edges -----------------------------------------------------------------------

PLUS_TWO = dt.timezone(dt.timedelta(hours=2))
EDGES = [
    dt.datetime(9999, 12, 31, tzinfo=dt.UTC),
    dt.datetime(1, 1, 1, tzinfo=PLUS_TWO),
    dt.datetime.max.replace(tzinfo=dt.timezone(-dt.timedelta(hours=23, minutes=59))),
    dt.datetime.min.replace(tzinfo=dt.timezone(dt.timedelta(hours=23, minutes=59))),
    dt.datetime(1899, 12, 31, 23, 59, tzinfo=dt.UTC),
    dt.datetime(9000, 1, 1, 0, 1, tzinfo=dt.UTC),
]


@pytest.mark.parametrize("moment", EDGES, ids=str)
def test_the_return_window_of_an_edge_date_is_a_named_error(moment: dt.datetime) -> None:
    with pytest.raises(errors.InvalidInput) as info:
        Policy(return_window_days=3650).deadline(moment)
    assert info.value.field == "delivered_at"


@pytest.mark.parametrize("field", ["ordered_at", "delivered_at"])
@pytest.mark.parametrize("moment", EDGES, ids=str)
def test_edge_dates_are_refused_by_name_and_store_nothing(
    world: World, field: str, moment: dt.datetime
) -> None:
    new = world.new_request(
        **{field: moment, "ordered_at" if field == "delivered_at" else "delivered_at": None}
    )
    for call in (world.desk.preview, world.desk.submit):
        with pytest.raises(errors.InvalidInput) as info:
            call(new)
        assert info.value.field == field
    assert stored_requests(world) == []


@pytest.mark.parametrize("field", ["ordered_at", "delivered_at"])
def test_naive_or_offsetless_moments_are_refused_by_name(world: World, field: str) -> None:
    class NoOffset(dt.tzinfo):
        def utcoffset(self, _moment: dt.datetime | None) -> None:
            return None

        def dst(self, _moment: dt.datetime | None) -> None:
            return None

        def tzname(self, _moment: dt.datetime | None) -> str:
            return "nowhere"

    for moment in (NOW.replace(tzinfo=None), NOW.replace(tzinfo=NoOffset()), "2026-11-20"):
        with pytest.raises(errors.InvalidInput, match="timezone-aware") as info:
            world.desk.submit(
                world.new_request(
                    **{field: moment, "ordered_at": None}
                    if field == "delivered_at"
                    else {field: moment}
                )
            )
        assert info.value.field == field


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(
    moment=st.datetimes(
        timezones=st.timezones()
        | st.builds(
            dt.timezone,
            st.timedeltas(
                min_value=-dt.timedelta(hours=23, minutes=59),
                max_value=dt.timedelta(hours=23, minutes=59),
            ),
        )
    ),
    field=st.sampled_from(["ordered_at", "delivered_at"]),
    window=st.none() | st.integers(0, 3650),
    zone=st.sampled_from(["Europe/Amsterdam", "Pacific/Kiritimati", "Etc/GMT+12"]),
)
def test_any_moment_is_taken_or_refused_by_a_library_error(
    moment: dt.datetime, field: str, window: int | None, zone: str
) -> None:
    world = build_world(MemoryStorage(), Policy(return_window_days=window, timezone=zone))
    other = "ordered_at" if field == "delivered_at" else "delivered_at"
    new = world.new_request(**{field: moment, other: None})

    def submit() -> ReturnRequest:
        world.desk.preview(new)
        return world.desk.submit(new)

    saved, problem = attempt(submit)
    if isinstance(problem, errors.ReturnWindowExpired):
        return
    if problem is not None or saved is None:
        assert isinstance(problem, errors.InvalidInput)
        assert problem.field == field
        return
    # Accepted: it lies between the bounds and not in the future, and the rules can count days.
    assert EARLIEST_MOMENT <= moment <= NOW + CLOCK_SKEW
    counting = rules.parse(
        "ALS Dagen sinds levering > 3 OF Dagen sinds bestelling > 3 DAN Retouraanvraag inschakelen",
    )
    counting.evaluate(saved)


@given(
    moment=st.sampled_from([EARLIEST_MOMENT, LATEST_MOMENT]),
    zone=st.sampled_from(["Pacific/Kiritimati", "Etc/GMT+12", "UTC"]),
)
def test_the_bounds_survive_every_zone_the_window_and_the_rules(
    moment: dt.datetime, zone: str
) -> None:
    # What the aggregate accepts, every computation on it takes: the deadline, days since.
    deadline = Policy(return_window_days=3650, timezone=zone).deadline(moment)
    assert deadline is not None
    request = ReturnRequest(
        shop_id=SHOP,
        id="r1",
        order_number="1",
        customer=Customer("a@b.nl", "A"),
        from_country="NL",
        order_value=Money(100),
        items=(ReturnItem("A", "B", 1, Money(100), "damaged"),),
        created_at=moment,
        ordered_at=moment,
        delivered_at=moment,
    )
    counting = rules.parse(
        "ALS Dagen sinds levering >= 0 DAN Retouraanvraag inschakelen", timezone=zone
    )
    counting.evaluate(request)


def test_a_delivery_before_the_order_is_refused(world: World) -> None:
    ordered = NOW - dt.timedelta(days=10)
    before = world.new_request(ordered_at=ordered, delivered_at=ordered - CLOCK_SKEW * 2)
    with pytest.raises(errors.InvalidInput, match="before the order date") as info:
        world.desk.submit(before)
    assert info.value.field == "delivered_at"
    # Two systems' clocks: a few minutes before the order is within the tolerance.
    skewed = world.new_request(ordered_at=ordered, delivered_at=ordered - CLOCK_SKEW)
    assert world.desk.submit(skewed).status is Status.REQUESTED
    assert len(stored_requests(world)) == 1


@pytest.mark.parametrize("field", ["ordered_at", "delivered_at"])
def test_a_moment_in_the_future_is_refused_beyond_the_clock_skew(world: World, field: str) -> None:
    other = {"ordered_at": None} if field == "delivered_at" else {"delivered_at": None}
    late = world.new_request(**{field: NOW + CLOCK_SKEW + dt.timedelta(seconds=1)}, **other)
    for call in (world.desk.preview, world.desk.submit):
        with pytest.raises(errors.InvalidInput, match="in the future") as info:
            call(late)
        assert info.value.field == field
    assert stored_requests(world) == []
    almost = world.new_request(**{field: NOW + CLOCK_SKEW}, **other)
    assert world.desk.submit(almost).status is Status.REQUESTED


def test_clock_skew_is_five_minutes() -> None:
    assert dt.timedelta(minutes=5) == CLOCK_SKEW


# -- 11. amounts that pass submit and fail later -----------------------------------------------


def test_an_item_worth_more_than_an_amount_can_hold_is_refused_at_submit(world: World) -> None:
    shirt = NewItem("TS-1", "T-shirt", 2, Money(10**15), "damaged")
    for call in (world.desk.preview, world.desk.submit):
        with pytest.raises(errors.InvalidMoney) as info:
            call(world.new_request(items=(shirt,)))
        assert info.value.field == "items[0].unit_price"
    assert stored_requests(world) == []


def test_a_return_worth_more_than_an_amount_can_hold_is_refused_at_submit(world: World) -> None:
    half = NewItem("TS-1", "T-shirt", 1, Money(MAX_MINOR_UNITS // 2 + 1), "damaged")
    with pytest.raises(errors.InvalidMoney) as info:
        world.desk.submit(world.new_request(items=(half, half)))
    assert info.value.field == "items"
    assert stored_requests(world) == []


def test_the_largest_accepted_request_mails_and_derives_every_amount(world: World) -> None:
    half = NewItem("TS-1", "T-shirt", 1, Money(MAX_MINOR_UNITS // 4), "damaged")
    pair = NewItem("TS-2", "T-shirt", 2, Money(MAX_MINOR_UNITS // 4), "damaged")
    saved = world.desk.submit(world.new_request(items=(half, pair)))
    assert saved.return_value == Money(MAX_MINOR_UNITS // 4 * 3)
    world.dispatcher.run_until_idle()
    assert [m.kind for m in world.mail.to(saved.id)] == [MailKind.REQUEST_RECEIVED]
    assert not world.desk.get(SHOP, saved.id).needs_attention


@given(
    quantities=st.lists(st.integers(1, 10_000), min_size=1, max_size=4),
    price=st.integers(0, MAX_MINOR_UNITS),
)
def test_a_request_that_can_be_built_can_derive_every_amount(
    quantities: list[int], price: int
) -> None:

    def build() -> ReturnRequest:
        return ReturnRequest(
            shop_id=SHOP,
            id="r1",
            order_number="1",
            customer=Customer("a@b.nl", "A"),
            from_country="NL",
            order_value=Money(100),
            items=tuple(ReturnItem("A", "B", q, Money(price), "damaged") for q in quantities),
            created_at=NOW,
        )

    request, problem = attempt(build)
    too_much = price * sum(quantities) > MAX_MINOR_UNITS
    if problem is not None or request is None:
        assert isinstance(problem, errors.InvalidMoney)
        assert problem.field in {"unit_price", "items"}
        assert too_much
        return
    assert not too_much
    assert request.return_value == Money(price * sum(quantities))
    renderer = MailRenderer(sender="retouren@shop.example", shop_name="Shop")
    renderer.render(request.submitted().request, MailKind.REQUEST_RECEIVED, key="mail:1")


# -- 13. raw errors a host can cause ------------------------------------------------------------

HOSTILE: tuple[object, ...] = (None, 0, 1.5, b"x", [], "x", True)


def _valid_item(**changes: object) -> NewItem:
    item = NewItem("TS-1", "T-shirt", 1, Money(1995), "damaged")
    return attrs.evolve(item, **changes)  # type: ignore[arg-type]


#: Per field: which hostile values are of a type the field takes (those are not swept).
_ACCEPTS: dict[str, Callable[[object], bool]] = {
    "text": lambda v: isinstance(v, str),
    "optional text": lambda v: v is None or isinstance(v, str),
    "optional": lambda v: v is None,
    "optional int": lambda v: v is None or (isinstance(v, int) and not isinstance(v, bool)),
    "collection": lambda v: isinstance(v, list),
    "none": lambda _v: False,
}
REQUEST_FIELDS = {
    "shop_id": "text",
    "order_number": "text",
    "customer": "none",
    "from_country": "text",
    "order_value": "none",
    "items": "collection",
    "ordered_at": "optional",
    "delivered_at": "optional",
    "refund_method": "none",
    "return_method": "optional text",
    "channel": "none",
    "tags": "collection",
    "return_fee": "optional",
    "discount_code": "optional text",
    "earlier_returns": "optional int",
}
ITEM_FIELDS = {
    "sku": "text",
    "name": "text",
    "quantity": "none",
    "unit_price": "none",
    "reason": "text",
    "reason_text": "optional text",
    "photos": "collection",
    "product_type": "optional text",
    "product_tags": "collection",
    "vendor": "optional text",
}
CUSTOMER_FIELDS = {"email": "text", "name": "text", "language": "none"}
FEE_FIELDS = {"amount": "none", "payment_reference": "text"}


def _cases(owner: str, fields: dict[str, str]) -> list[tuple[str, str, object]]:
    return [
        (owner, name, value)
        for name, accepts in fields.items()
        for value in HOSTILE
        if not _ACCEPTS[accepts](value)
    ]


SWEEP = (
    _cases("NewRequest", REQUEST_FIELDS)
    + _cases("NewItem", ITEM_FIELDS)
    + _cases("Customer", CUSTOMER_FIELDS)
    + _cases("PaidFee", FEE_FIELDS)
)


def test_the_sweep_covers_every_field_with_every_wrong_type() -> None:
    swept = {(owner, name) for owner, name, _ in SWEEP}
    expected = {
        *(("NewRequest", n) for n in attrs.fields_dict(NewRequest)),
        *(("NewItem", n) for n in attrs.fields_dict(NewItem)),
        *(("Customer", n) for n in attrs.fields_dict(Customer)),
        *(("PaidFee", n) for n in attrs.fields_dict(PaidFee)),
    }
    assert swept == expected
    assert len(SWEEP) == 182


@pytest.mark.parametrize(("owner", "name", "value"), SWEEP, ids=repr)
def test_every_wrong_type_is_a_library_error_naming_its_field(
    world: World, owner: str, name: str, value: object
) -> None:
    expected = {
        "NewRequest": {name},
        "NewItem": {f"items[1].{name}", name},  # photos: refused when the item is built
        "Customer": {name},
        "PaidFee": {name},
    }[owner]

    def attempt() -> None:
        if owner == "Customer":
            Customer(**{"email": "jan@example.nl", "name": "Jan Jansen", name: value})  # type: ignore[arg-type]
        elif owner == "PaidFee":
            PaidFee(**{"amount": Money(495), "payment_reference": "pay_1", name: value})  # type: ignore[arg-type]
        elif owner == "NewItem":
            items = (_valid_item(), _valid_item(**{name: value}))
            world.desk.submit(world.new_request(items=items))
        else:
            changes: dict[str, Any] = {name: value}
            world.desk.submit(attrs.evolve(world.new_request(), **changes))

    with pytest.raises(errors.RetouraanvraagError) as info:
        attempt()
    error = info.value
    assert getattr(error, "field", None) in expected, str(error)
    assert "Jan Jansen" not in str(error)
    assert "jan@example.nl" not in str(error)
    assert stored_requests(world) == []


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(
    field=st.sampled_from(sorted(REQUEST_FIELDS)),
    value=st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(),
        st.binary(max_size=8),
        st.text(max_size=8),
        st.lists(st.integers(), max_size=2),
        st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
        st.builds(object),
    ),
)
def test_any_value_in_any_field_is_taken_or_refused_by_a_library_error(
    field: str, value: object
) -> None:
    world = build_world(MemoryStorage())

    def submit() -> ReturnRequest:
        changes: dict[str, Any] = {field: value}
        new = attrs.evolve(world.new_request(), **changes)
        world.desk.preview(new)
        return world.desk.submit(new)

    _, problem = attempt(submit)  # anything but a library error fails the test here
    if problem is not None and not isinstance(problem, errors.ReturnWindowExpired):
        assert isinstance(problem, errors.InvalidInput)
        assert problem.field is not None
        assert problem.field.startswith(field)


def test_an_unknown_language_names_the_field_and_the_accepted_ones() -> None:
    with pytest.raises(errors.InvalidInput) as info:
        Customer("jan@example.nl", "Jan Jansen", language="de")
    assert info.value.field == "language"
    assert "'nl'" in str(info.value)
    assert "'en'" in str(info.value)
    assert Customer("jan@example.nl", "Jan", language="en").language == "en"


def test_a_price_as_text_says_to_parse_it(world: World) -> None:
    item = NewItem("TS-1", "T-shirt", 1, "€19,95", "damaged")  # type: ignore[arg-type]
    with pytest.raises(errors.WrongType) as info:
        world.desk.submit(world.new_request(items=(item,)))
    assert info.value.field == "items[0].unit_price"
    assert "Money.parse('€19,95')" in str(info.value)
    assert isinstance(info.value, TypeError)  # hosts catching attrs' TypeError still do
    assert "Attribute(" not in str(info.value)


def test_one_text_where_a_collection_belongs_is_refused_not_split() -> None:
    with pytest.raises(errors.WrongType, match="collection") as info:
        NewItem("TS-1", "T-shirt", 1, Money(1995), "damaged", photos=PNG)  # type: ignore[arg-type]
    assert info.value.field == "photos"
    with pytest.raises(errors.WrongType) as tags:
        attrs.evolve(NewRequest("s", "1", Customer("a@b.nl", "A"), "NL", Money(1), ()), tags="sale")
    assert tags.value.field == "tags"


def test_an_enum_given_by_its_value_is_taken(world: World) -> None:
    values: dict[str, Any] = {"refund_method": "store_credit", "channel": "api"}
    new = attrs.evolve(world.new_request(), **values)
    saved = world.desk.submit(new)
    assert (saved.refund_method.value, saved.channel.value) == ("store_credit", "api")


def test_photo_errors_name_the_item_and_its_photo(world: World) -> None:
    lamp = NewItem("LMP", "Lamp", 1, Money(2500), "damaged", photos=(PNG,))
    for bad in (b"GIF89a....", "photo.jpg", b""):
        shirt = NewItem("TS-1", "T-shirt", 1, Money(1995), "damaged", photos=(bad,))  # type: ignore[arg-type]
        with pytest.raises(errors.InvalidPhoto) as info:
            world.desk.submit(world.new_request(items=(lamp, shirt)))
        assert info.value.field == "items[1].photos[0]"
    assert len(world.photos) == 0


def test_the_rules_see_the_photos_of_a_submission(world: World) -> None:
    with_photos = "ALS Heeft foto's IS ja DAN Goedkeuren zonder label"
    world.use_policy(Policy(rules=rules.parse(with_photos)))
    lamp = NewItem("LMP", "Lamp", 1, Money(2500), "damaged", photos=(PNG,))
    assert world.desk.preview(world.new_request(items=(lamp,))).rule is not None
    saved = world.desk.submit(world.new_request(items=(lamp,)))
    assert saved.status is Status.APPROVED_WITHOUT_RETURN
    assert saved.items[0].photos[0].key  # the stored photo's, not a stand-in
    assert_photos_are_exactly_those_of_stored_requests(world)
    plain = world.desk.submit(world.new_request())
    assert plain.status is Status.REQUESTED


# -- 14. the rules' fee ---------------------------------------------------------------------------

FEE_RULE = "ALS Aantal artikelen >= 1 DAN Retourkosten €2,00"


def fee(amount: int | None, world: World) -> dict[str, Any]:
    if amount is None:
        return {"return_fee": None}
    return {"return_fee": PaidFee(Money(amount), f"pay_fee_{world.serial}")}


def test_the_fee_the_rules_ask_is_stored_beside_the_fee_paid(world: World) -> None:
    world.use_policy(Policy(rules=rules.parse(FEE_RULE)))
    saved = world.desk.submit(world.new_request(**fee(200, world)))
    assert saved.return_fee_asked == Money(200)
    assert saved.return_fee is not None
    assert saved.return_fee.amount == Money(200)
    assert world.desk.get(SHOP, saved.id).return_fee_asked == Money(200)
    assert request_from_json(request_to_json(saved)) == saved


@pytest.mark.parametrize("paid", [495, 199, 0, None])
def test_a_fee_other_than_the_one_asked_is_refused_for_the_customer(
    world: World, paid: int | None
) -> None:
    world.use_policy(Policy(rules=rules.parse(FEE_RULE)))
    new = world.new_request(**fee(paid, world))
    assert world.desk.preview(new).return_fee == Money(200)  # the portal still learns the fee
    with pytest.raises(errors.ReturnFeeMismatch) as info:
        world.desk.submit(new, idempotency_key="form-1")
    error = info.value
    assert error.asked == Money(200)
    assert error.paid == (None if paid is None else Money(paid))
    assert error.field == "return_fee"
    assert "€ 2,00" in error.message_nl.replace("\xa0", " ")
    assert "€2.00" in error.message_en
    assert pickle.loads(pickle.dumps(error)).asked == Money(200)  # noqa: S301 - our own bytes
    assert stored_requests(world) == []
    # Paying what is asked, under the same key, goes through.
    assert world.desk.submit(world.new_request(**fee(200, world)), idempotency_key="form-1")


def test_without_a_fee_from_the_rules_a_paid_fee_is_kept(world: World) -> None:
    saved = world.desk.submit(world.new_request())
    assert saved.return_fee_asked is None
    assert saved.return_fee is not None
    assert saved.return_fee.amount == Money(495)
    assert world.desk.preview(world.new_request()).return_fee is None


def test_a_zero_fee_asked_needs_no_payment(world: World) -> None:
    world.use_policy(Policy(rules=rules.parse("ALS Aantal artikelen >= 1 DAN Retourkosten €0,00")))
    saved = world.desk.submit(world.new_request(return_fee=None))
    assert saved.return_fee_asked == Money(0)
    assert saved.return_fee is None


def test_a_fee_asked_in_another_currency_than_the_orders_is_refused(world: World) -> None:
    world.use_policy(Policy(rules=rules.parse("ALS Aantal artikelen >= 1 DAN Retourkosten 2 GBP")))
    with pytest.raises(errors.CurrencyMismatch) as info:
        world.desk.submit(world.new_request(return_fee=None))
    assert info.value.field == "return_fee_asked"


def test_the_fee_mismatch_error_is_public_and_customer_facing() -> None:
    assert retouraanvraag.ReturnFeeMismatch is errors.ReturnFeeMismatch
    assert issubclass(errors.ReturnFeeMismatch, errors.InvalidInput)
    assert issubclass(errors.WrongType, errors.InvalidInput)
    assert issubclass(errors.WrongType, TypeError)
    error = errors.ReturnFeeMismatch(asked=Money(200), paid=None)
    assert "niets betaald" in error.message_nl
    assert "none was paid" in error.message_en
    wrong = errors.WrongType(expected="Money", got="str", field="unit_price", hint="parse it")
    copied = pickle.loads(pickle.dumps(wrong.at("items[2]")))  # noqa: S301 - our own bytes
    assert (copied.field, copied.expected, copied.got) == ("items[2].unit_price", "Money", "str")
    assert str(copied) == "items[2].unit_price: must be Money, not str; parse it"


def test_a_stored_request_keeps_no_fee_asked_in_another_currency() -> None:
    with pytest.raises(errors.CurrencyMismatch):
        ReturnRequest(
            shop_id=SHOP,
            id="r1",
            order_number="1",
            customer=Customer("a@b.nl", "A"),
            from_country="NL",
            order_value=Money(100),
            items=(ReturnItem("A", "B", 1, Money(100), "damaged"),),
            created_at=NOW,
            return_fee_asked=Money(200, "GBP"),
        )


@pytest.mark.parametrize(
    "address",
    [
        "=?utf-8?q?a=0D=0AX-Evil=3A_1?=@example.nl",
        "a=?b@example.nl",
        "jan\ud800@example.nl",
        "jan\u202e@example.nl",
    ],
)
def test_an_address_a_mail_header_would_decode_is_refused(address: str) -> None:
    with pytest.raises(errors.InvalidInput) as caught:
        Customer(address, "Jan")
    assert caught.value.field == "email"
    assert address not in str(caught.value)


@pytest.mark.parametrize("key", ["", "k" * 256, "a\x00b", "line\nbreak", "\ud800", "tab\there", 7])
def test_an_idempotency_key_no_store_can_hold_is_refused_before_anything_is_stored(
    key: object,
) -> None:
    world = build_world(MemoryStorage())
    with pytest.raises(errors.InvalidInput) as caught:
        world.desk.submit(world.new_request(), idempotency_key=key)  # type: ignore[arg-type]
    assert caught.value.field == "idempotency_key"
    assert "k" * 50 not in str(caught.value)  # the key is never echoed
    assert world.desk.requests_tab(SHOP).items == ()
    request = world.desk.submit(world.new_request(), idempotency_key="k" * 255)  # the limit
    with pytest.raises(errors.InvalidInput):
        world.desk.approve(SHOP, request.id, with_label=True, actor="anna", idempotency_key=key)  # type: ignore[arg-type]
