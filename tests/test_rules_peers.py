"""Conditions and actions peers offer (issue 12, part 7): rules switched off, and more."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import attrs
import pytest

from retouraanvraag import jsonformat, rules
from retouraanvraag._codec import request_from_json, request_to_dict
from retouraanvraag.errors import InvalidInput, ReturnWindowExpired, RuleError, WrongType
from retouraanvraag.model import Customer, Decision, Money, ReturnItem, ReturnRequest
from retouraanvraag.workflow import NewItem, NewRequest

from .conftest import World

NOW = dt.datetime(2024, 6, 1, 12, tzinfo=dt.UTC)


def request(*, country: str = "NL", reason: str = "too_small") -> ReturnRequest:
    return ReturnRequest(
        shop_id="shop",
        id="r1",
        order_number="1001",
        customer=Customer(email="klant@example.com", name="Klant"),
        from_country=country,
        order_value=Money(5000),
        items=(ReturnItem("SKU-1", "T-shirt", 1, Money(1000), reason),),
        created_at=NOW,
    )


# -- a rule switched off keeps its text ------------------------------------------------------

SWITCHED = (
    "ALS Van land IS Nederland DAN Retouraanvraag inschakelen\n"
    'UIT REGEL "Kerst": ALS Van land IS Nederland DAN Goedkeuren zonder label\n'
    'uit als Retourreden IS too_small DAN Afwijzen met reden "nee"\n'
)


def test_a_rule_switched_off_is_kept_but_never_decides() -> None:
    ruleset = rules.parse(SWITCHED)
    assert [r.enabled for r in ruleset.rules] == [True, False, False]
    outcome = ruleset.evaluate(request())
    assert outcome.decision is Decision.REVIEW
    assert outcome.rule == "regel 1"
    assert outcome.trace == ("regel 1: Retouraanvraag inschakelen",)


def test_switching_a_rule_on_again_changes_the_outcome() -> None:
    on = rules.parse(SWITCHED.replace('UIT REGEL "Kerst"', 'REGEL "Kerst"'))
    assert on.rules[1].enabled
    outcome = on.evaluate(request())
    assert (outcome.decision, outcome.rule) == (Decision.APPROVE_WITHOUT_LABEL, "Kerst")
    assert on != rules.parse(SWITCHED)


def test_a_rule_switched_off_gives_no_override_or_never_matches_warning() -> None:
    on = rules.parse(
        "ALS Van land IS NL DAN Goedkeuren met label\n"
        "ALS Van land IS NL DAN Retouraanvraag inschakelen\n"
        "ALS Van land IS NL EN Van land IS BE DAN Retouraanvraag inschakelen\n"
    )
    assert {w.code for w in on.warnings} == {"always-overridden", "never-matches"}
    off = rules.parse(
        "ALS Van land IS NL DAN Goedkeuren met label\n"
        "UIT ALS Van land IS NL DAN Retouraanvraag inschakelen\n"
        "UIT ALS Van land IS NL EN Van land IS BE DAN Retouraanvraag inschakelen\n"
    )
    assert off.warnings == ()


def test_a_rule_switched_off_is_still_checked() -> None:
    with pytest.raises(RuleError) as caught:
        rules.parse("UIT ALS Van lnd IS NL DAN Goedkeuren met label\n")
    (problem,) = caught.value.diagnostics
    assert (problem.line, problem.column, problem.stable_code) == (1, 9, "R008")


@pytest.mark.parametrize("language", ["nl", "en"])
def test_format_keeps_the_switch_and_translates_it(language: str) -> None:
    ruleset = rules.parse(SWITCHED)
    text = rules.format(ruleset, language=language)
    marker = "UIT" if language == "nl" else "OFF"
    assert f'{marker} {"REGEL" if language == "nl" else "RULE"} "Kerst": ' in text
    assert sum(line.startswith(f"{marker} ") for line in text.splitlines()) == 2
    again = rules.parse(text)
    assert again == ruleset
    assert [r.enabled for r in again.rules] == [True, False, False]


def test_english_off_marker() -> None:
    ruleset = rules.parse("OFF IF From country IS NL THEN Require review\n")
    assert not ruleset.rules[0].enabled
    assert ruleset.evaluate(request()).decision is None


def test_uit_is_an_ordinary_word_elsewhere() -> None:
    ruleset = rules.parse(
        "ALS Retourmethode IS uit DAN Retouraanvraag inschakelen\n"
        'ALS Van land IS NL DAN Goedkeuren met label EN Verzenden met "uit"\n'
    )
    assert all(r.enabled for r in ruleset.rules)
    assert rules.parse(rules.format(ruleset)) == ruleset


def test_explain_shows_a_rule_as_switched_off() -> None:
    ruleset = rules.parse(SWITCHED)
    report = ruleset.explain(request())
    assert "Kerst: uitgeschakeld → Goedkeuren zonder label" in report.splitlines()
    english = ruleset.explain(request(), "en")
    assert "Kerst: switched off → Approve without label" in english.splitlines()
    assert "Retourreden" not in report  # a rule switched off is not evaluated


def test_a_switched_off_rule_in_the_other_language_is_reported_as_such() -> None:
    with pytest.raises(RuleError) as caught:
        rules.parse(
            "ALS Van land IS NL DAN Goedkeuren met label\n"
            "OFF IF From country IS BE THEN Approve with label\n"
        )
    (problem,) = caught.value.diagnostics
    assert (problem.line, problem.column, problem.stable_code) == (2, 1, "R016")


def test_a_switch_not_before_a_rule_is_a_syntax_error_at_the_switch() -> None:
    with pytest.raises(RuleError) as caught:
        rules.parse(
            "ALS Van land IS NL DAN Goedkeuren met label\n"
            "UIT\n"
            "ALS Van land IS BE DAN Goedkeuren met label\n"
        )
    (problem,) = caught.value.diagnostics
    assert (problem.line, problem.column, problem.message) == (2, 1, 'onverwacht "UIT"')


def test_switched_off_item_rule_leaves_a_request_only_trace_intact() -> None:
    ruleset = rules.parse(
        "ALS Van land IS NL DAN Goedkeuren met label\n"
        "UIT ALS Retourreden IS too_small DAN Artikel niet retourneerbaar\n"
    )
    outcome = ruleset.evaluate(request())
    assert outcome.decision is Decision.APPROVE_WITH_LABEL
    assert outcome.refused == ()
    assert outcome.trace == ("regel 1: Goedkeuren met label",)
    assert ruleset.warnings == ()


# -- fields the host gives: product type, product tags, vendor, discount code, earlier returns --


def host_request(
    *,
    product_type: str | None = None,
    product_tags: frozenset[str] = frozenset(),
    vendor: str | None = None,
    discount_code: str | None = None,
    earlier_returns: int | None = None,
) -> ReturnRequest:
    item = ReturnItem(
        "SKU-1",
        "T-shirt",
        1,
        Money(1000),
        "too_small",
        product_type=product_type,
        product_tags=product_tags,
        vendor=vendor,
    )
    return attrs.evolve(
        request(), items=(item,), discount_code=discount_code, earlier_returns=earlier_returns
    )


HOST_RULES = (
    "ALS Producttype IS Cadeaubon DAN Artikel niet retourneerbaar\n"
    "ALS Producttags BEVAT final-sale DAN Artikel niet retourneerbaar\n"
    "ALS Leverancier IS Acme DAN Goedkeuren zonder label\n"
    'ALS Kortingscode BEGINT MET PERS DAN Afwijzen met reden "personeel"\n'
    "ALS Eerdere retouren > 10 DAN Retouraanvraag inschakelen\n"
)


@pytest.mark.parametrize(
    ("changes", "decision"),
    [
        ({}, None),
        ({"product_type": "cadeaubon"}, Decision.NOT_RETURNABLE),
        ({"product_tags": frozenset({"Final-Sale "})}, Decision.NOT_RETURNABLE),
        ({"vendor": "ACME"}, Decision.APPROVE_WITHOUT_LABEL),
        ({"discount_code": "PERS-2024"}, Decision.REJECT),
        ({"earlier_returns": 11}, Decision.REVIEW),
        ({"earlier_returns": 10}, None),
    ],
)
def test_fields_the_host_gives_decide(changes: dict[str, Any], decision: Decision | None) -> None:
    ruleset = rules.parse(HOST_RULES)
    assert ruleset.evaluate(host_request(**changes)).decision is decision


def test_fields_the_host_does_not_give_are_unknown_even_under_not() -> None:
    ruleset = rules.parse(
        "ALS NIET Leverancier IS Acme DAN Goedkeuren zonder label\n"
        "ALS NIET Eerdere retouren > 3 DAN Goedkeuren met label\n"
        'ALS NIET Kortingscode IS X DAN Afwijzen met reden "x"\n'
    )
    assert ruleset.evaluate(host_request()).decision is None
    assert ruleset.evaluate(host_request(vendor="Other")).decision is (
        Decision.APPROVE_WITHOUT_LABEL
    )


def test_host_fields_translate_and_round_trip() -> None:
    ruleset = rules.parse(HOST_RULES)
    english = rules.format(ruleset, language="en")
    for name in ("Product type", "Product tags", "Vendor", "Discount code", "Earlier returns"):
        assert name in english
    assert rules.parse(english) == ruleset
    assert rules.format(rules.parse(english), language="nl") == rules.format(ruleset)
    assert "Leverancier" in str(ruleset.explain(host_request(vendor="Acme")))


def test_host_fields_have_their_types_checked() -> None:
    with pytest.raises(RuleError) as info:
        rules.parse("ALS Eerdere retouren IS veel DAN Retouraanvraag inschakelen")
    assert info.value.diagnostics[0].line == 1
    with pytest.raises(RuleError):
        rules.parse("ALS Producttags > 3 DAN Retouraanvraag inschakelen")


def test_a_host_item_field_sets_a_fee_per_item_but_never_a_carrier() -> None:
    # A fee may be decided per item (the request pays the highest); the carrier may not.
    assert rules.parse("ALS Leverancier IS Acme DAN Retourkosten €0,00").rules
    with pytest.raises(RuleError) as caught:
        rules.parse('ALS Leverancier IS Acme DAN Verzenden met "DHL"')
    assert [d.code for d in caught.value.diagnostics] == ["request-action-in-item-rule"]


@pytest.mark.parametrize(
    ("changes", "field", "error"),
    [
        ({"earlier_returns": -1}, "earlier_returns", InvalidInput),
        ({"earlier_returns": 1_000_001}, "earlier_returns", InvalidInput),
        ({"earlier_returns": True}, "earlier_returns", WrongType),
        ({"discount_code": "x" * 101}, "discount_code", InvalidInput),
        ({"discount_code": "a\nb"}, "discount_code", InvalidInput),
        ({"vendor": "x" * 101}, "vendor", InvalidInput),
        ({"product_type": 3}, "product_type", InvalidInput),
        ({"product_tags": "sale"}, "product_tags", WrongType),
        ({"product_tags": [["x"]]}, "product_tags", WrongType),
    ],
)
def test_host_fields_are_validated_like_their_neighbours(
    changes: dict[str, Any], field: str, error: type[Exception]
) -> None:
    with pytest.raises(error) as info:
        host_request(**changes)
    assert getattr(info.value, "field", None) == field


def test_the_desk_passes_host_fields_to_the_rules_and_stores_them(world: World) -> None:
    world.use_policy(
        attrs.evolve(
            world.policy,
            rules=rules.parse(
                "ALS Leverancier IS Acme EN Eerdere retouren < 3 DAN Goedkeuren zonder label"
            ),
        )
    )
    item = NewItem(
        "TS-1", "T-shirt", 1, Money(1995), "damaged", vendor="Acme",
        product_type="Shirt", product_tags=frozenset({"summer"}),
    )  # fmt: skip
    new = world.new_request(items=(item,), discount_code="WELKOM", earlier_returns=0)
    assert world.desk.preview(new).decision is Decision.APPROVE_WITHOUT_LABEL
    stored = world.desk.submit(new)
    again = world.storage.get(stored.shop_id, stored.id)
    assert (again.discount_code, again.earlier_returns) == ("WELKOM", 0)
    assert (again.items[0].vendor, again.items[0].product_tags) == ("Acme", frozenset({"summer"}))


def test_the_desk_refuses_a_host_field_of_the_wrong_type_by_name(world: World) -> None:
    with pytest.raises(WrongType) as info:
        world.desk.submit(world.new_request(earlier_returns="3"))
    assert info.value.field == "earlier_returns"
    item = NewItem("TS-1", "T-shirt", 1, Money(1995), "damaged", vendor=7)  # type: ignore[arg-type]
    with pytest.raises(WrongType) as info:
        world.desk.submit(world.new_request(items=(item,)))
    assert info.value.field == "items[0].vendor"


def test_a_stored_request_without_host_fields_still_reads() -> None:
    data = request_to_dict(host_request(vendor="Acme", earlier_returns=2))
    for key in ("discount_code", "earlier_returns"):
        del data[key]
    for key in ("product_type", "product_tags", "vendor"):
        del data["items"][0][key]
    old = request_from_json(json.dumps(data))
    assert (old.earlier_returns, old.items[0].vendor, old.items[0].product_tags) == (
        None,
        None,
        frozenset(),
    )


# -- absolute dates: Besteldatum / Leverdatum / Aanvraagdatum VOOR / NA / OP a date -----------


def dated(
    *, ordered: dt.datetime | None = None, delivered: dt.datetime | None = None
) -> ReturnRequest:
    return attrs.evolve(request(), ordered_at=ordered, delivered_at=delivered)


DATE_RULES = (
    'ALS Besteldatum VOOR 2024-01-01 DAN Afwijzen met reden "oud"\n'
    "ALS Leverdatum NA 20-5-2024 DAN Goedkeuren zonder label\n"
    "ALS Aanvraagdatum OP 2024-06-01 EN Besteldatum OP 2024-05-01 OF 2024-05-02"
    " DAN Retouraanvraag inschakelen\n"
)


@pytest.mark.parametrize(
    ("ordered", "delivered", "decision"),
    [
        (None, None, None),
        (dt.datetime(2023, 12, 31, 12, tzinfo=dt.UTC), None, Decision.REJECT),
        # 23:30 UTC on 31 December is 1 January in Amsterdam: not before it.
        (dt.datetime(2023, 12, 31, 23, 30, tzinfo=dt.UTC), None, None),
        (None, dt.datetime(2024, 5, 20, 12, tzinfo=dt.UTC), None),
        (None, dt.datetime(2024, 5, 20, 22, 30, tzinfo=dt.UTC), Decision.APPROVE_WITHOUT_LABEL),
        (dt.datetime(2024, 5, 2, 8, tzinfo=dt.UTC), None, Decision.REVIEW),
    ],
)
def test_dates_compare_as_calendar_days_in_the_rule_sets_time_zone(
    ordered: dt.datetime | None, delivered: dt.datetime | None, decision: Decision | None
) -> None:
    ruleset = rules.parse(DATE_RULES, timezone="Europe/Amsterdam")
    assert ruleset.evaluate(dated(ordered=ordered, delivered=delivered)).decision is decision


def test_a_missing_date_is_unknown_even_under_not() -> None:
    ruleset = rules.parse(
        "ALS NIET Leverdatum VOOR 2024-05-01 DAN Goedkeuren zonder label\n"
        "ALS NIET (Besteldatum OP 2024-05-01) DAN Goedkeuren met label\n"
    )
    assert ruleset.evaluate(dated()).decision is None
    delivered = dt.datetime(2024, 5, 3, 12, tzinfo=dt.UTC)
    assert ruleset.evaluate(dated(delivered=delivered)).decision is (Decision.APPROVE_WITHOUT_LABEL)


def test_dates_round_trip_and_translate() -> None:
    ruleset = rules.parse(DATE_RULES)
    dutch, english = rules.format(ruleset), rules.format(ruleset, language="en")
    assert "Leverdatum NA 2024-05-20" in dutch  # day-month-year is written back year first
    assert "Order date BEFORE 2024-01-01" in english
    assert "Delivery date AFTER 2024-05-20" in english
    assert "Request date ON 2024-06-01" in english
    assert rules.parse(english) == ruleset
    assert rules.format(rules.parse(english), language="nl") == dutch
    assert rules.parse(dutch) == ruleset


def test_other_comparisons_of_dates_are_allowed() -> None:
    ruleset = rules.parse("ALS Besteldatum MINSTENS 2024-05-01 DAN Goedkeuren met label")
    assert ruleset.evaluate(dated(ordered=dt.datetime(2024, 5, 1, 9, tzinfo=dt.UTC))).decision
    assert rules.parse("IF Order date >= 2024-05-01 THEN Approve with label") == ruleset


def test_voor_na_and_op_stay_words_in_text() -> None:
    ruleset = rules.parse(
        "ALS Artikelnaam BEVAT jas voor kinderen OF op maat DAN Goedkeuren met label"
    )
    compare = ruleset.rules[0].condition
    assert isinstance(compare, rules.Compare)
    assert compare.values == ("jas voor kinderen", "op maat")


@pytest.mark.parametrize(
    ("text", "column"),
    [
        ("ALS Besteldatum VOOR 2026-02-30 DAN Goedkeuren met label", 22),
        ("ALS Leverdatum NA 31-4-2026 DAN Goedkeuren met label", 19),
        ('IF Order date ON "2026-13-01" THEN Approve with label', 18),
    ],
)
def test_an_impossible_date_is_an_error_at_its_place(text: str, column: int) -> None:
    with pytest.raises(RuleError) as info:
        rules.parse(text)
    (diagnostic,) = info.value.diagnostics
    assert (diagnostic.line, diagnostic.column, diagnostic.code) == (1, column, "bad-date")
    assert "R043" in str(info.value)


def test_a_date_field_wants_a_date() -> None:
    with pytest.raises(RuleError) as info:
        rules.parse("ALS Besteldatum IS gisteren DAN Goedkeuren met label")
    assert info.value.diagnostics[0].code == "bad-date"
    with pytest.raises(RuleError) as info:
        rules.parse("ALS Besteldatum BEVAT 2024 DAN Goedkeuren met label")
    assert info.value.diagnostics[0].code == "bad-operator"


def test_explain_shows_dates_and_unknown_ones() -> None:
    ruleset = rules.parse(DATE_RULES)
    report = ruleset.explain(dated(ordered=dt.datetime(2023, 6, 1, tzinfo=dt.UTC)))
    assert "Besteldatum VOOR 2024-01-01 → waar (Besteldatum = 2023-06-01)" in report
    assert "Leverdatum NA 2024-05-20 → onbekend" in report


def test_dates_that_cannot_both_hold_are_warned_about() -> None:
    ruleset = rules.parse(
        "ALS Besteldatum VOOR 2024-01-01 EN Besteldatum NA 2024-02-01 DAN Goedkeuren met label"
    )
    assert [w.code for w in ruleset.warnings] == ["never-matches"]


# -- a return window set by the rules: Retourtermijn 60 dagen -------------------------------

WINDOW_RULES = (
    "ALS Tags BEVAT vip DAN Retourtermijn 60 dagen\n"
    "ALS Van land IS BE DAN Retourtermijn 10 dagen EN Goedkeuren met label\n"
)


def test_the_last_matching_rule_sets_the_return_window() -> None:
    ruleset = rules.parse(WINDOW_RULES)
    assert ruleset.evaluate(request()).return_window_days is None
    vip = attrs.evolve(request(), tags=frozenset({"vip"}))
    assert ruleset.evaluate(vip).return_window_days == 60
    both = attrs.evolve(request(country="BE"), tags=frozenset({"vip"}))
    outcome = ruleset.evaluate(both)
    assert (outcome.return_window_days, outcome.decision) == (10, Decision.APPROVE_WITH_LABEL)
    assert "overschreven door regel 2" in outcome.trace[0]


def test_the_return_window_translates_and_round_trips() -> None:
    ruleset = rules.parse(WINDOW_RULES)
    english = rules.format(ruleset, language="en")
    assert "THEN Return window 60 days" in english
    assert rules.parse(english) == ruleset
    assert rules.format(rules.parse(english), language="nl") == rules.format(ruleset)
    assert rules.parse("IF Tags CONTAINS vip THEN Return window 60") == ruleset.__class__(
        (ruleset.rules[0],)
    )
    report = ruleset.explain(attrs.evolve(request(), tags=frozenset({"vip"})))
    assert "retourtermijn: 60 dagen" in report


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("ALS Van land IS BE DAN Retourtermijn 2,5 dagen", "bad-window"),
        ("ALS Van land IS BE DAN Retourtermijn 3651 dagen", "bad-window"),
        ("ALS Van land IS BE DAN Retourtermijn", "bad-window"),
        ('ALS Van land IS BE DAN Retourtermijn "zestig"', "bad-window"),
        ("ALS Retourreden IS too_small DAN Retourtermijn 60 dagen", "request-action-in-item-rule"),
        ("ALS Van land IS BE DAN Retourkosten €2,00 dagen", "syntax"),
    ],
)
def test_a_return_window_that_does_not_fit_is_an_error(text: str, code: str) -> None:
    with pytest.raises(RuleError) as info:
        rules.parse(text)
    assert [d.code for d in info.value.diagnostics] == [code]


def _window_world(world: World, text: str, days: int) -> NewRequest:
    world.use_policy(attrs.evolve(world.policy, rules=rules.parse(text)))
    delivered = world.clock.now() - dt.timedelta(days=days)
    return world.new_request(delivered_at=delivered, tags=frozenset({"vip"}))


def test_a_longer_window_from_the_rules_takes_a_late_return(world: World) -> None:
    new = _window_world(world, "ALS Tags BEVAT vip DAN Retourtermijn 60 dagen", 45)
    assert world.policy.return_window_days == 30
    assert world.desk.preview(new).return_window_days == 60
    assert world.desk.submit(new).status is not None


def test_a_shorter_window_from_the_rules_refuses_with_its_days(world: World) -> None:
    new = _window_world(world, "ALS Tags BEVAT vip DAN Retourtermijn 10 dagen", 20)
    with pytest.raises(ReturnWindowExpired) as info:
        world.desk.preview(new)
    assert info.value.days == 10
    with pytest.raises(ReturnWindowExpired) as info:
        world.desk.submit(new)
    assert info.value.days == 10


def test_without_a_window_rule_the_policy_window_applies(world: World) -> None:
    new = _window_world(world, "ALS Tags BEVAT sale DAN Retourtermijn 60 dagen", 45)
    with pytest.raises(ReturnWindowExpired) as info:
        world.desk.submit(new)
    assert info.value.days == 30


def _public_json(**changes: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "sku": "TS-1",
        "name": "T-shirt",
        "quantity": 1,
        "unit_price": "€19,95",
        "reason": "Te klein",
        "product_type": "shirt",
        "product_tags": ["sale", "zomer"],
        "vendor": "Acme",
    }
    data: dict[str, Any] = {
        "shop_id": "shop-1",
        "id": "r-1",
        "order_number": "1001",
        "customer": {"email": "jan@example.nl", "name": "Jan"},
        "from_country": "NL",
        "order_value": "€59,95",
        "items": [item],
        "created_at": "2026-11-26T12:00:00+00:00",
        "discount_code": "WELKOM10",
        "earlier_returns": 3,
    }
    data.update(changes)
    return data


def test_the_public_json_format_carries_the_host_given_fields() -> None:
    request = jsonformat.request_from_json(_public_json())
    (item,) = request.items
    assert (item.product_type, item.product_tags, item.vendor) == (
        "shirt",
        frozenset({"sale", "zomer"}),
        "Acme",
    )
    assert (request.discount_code, request.earlier_returns) == ("WELKOM10", 3)
    again = jsonformat.request_from_json(jsonformat.request_to_json(request))
    assert again == request
    ruleset = rules.parse(
        'ALS Eerdere retouren > 2 EN Kortingscode IS WELKOM10 DAN Afwijzen met reden "Te vaak"'
    )
    assert ruleset.evaluate(request).decision is Decision.REJECT


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"earlier_returns": "3"}, "earlier_returns"),
        ({"earlier_returns": True}, "earlier_returns"),
        ({"earlier_returns": -1}, "earlier_returns"),
        ({"discount_code": 10}, "discount_code"),
    ],
)
def test_a_host_given_field_of_the_wrong_kind_is_named(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        jsonformat.request_from_json(_public_json(**changes))
    assert caught.value.field == field


@pytest.mark.parametrize(
    ("name", "value"), [("product_tags", "sale"), ("product_type", 1), ("vendor", ["x"])]
)
def test_an_item_host_field_of_the_wrong_kind_is_named(name: str, value: object) -> None:
    data = _public_json()
    data["items"][0][name] = value
    with pytest.raises(InvalidInput) as caught:
        jsonformat.request_from_json(data)
    assert caught.value.field == f"items[0].{name}"
