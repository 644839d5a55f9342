"""A return fee decided per item: each item's last matching fee rule, the highest paid.

Issue "rules, second edition", part 7: "no fee when damaged" (Loop, AfterShip) is a fee rule
naming an item field. The combining rule (docs/rules.md, "Meaning"): an item's fee is its last
matching fee rule's, request rules included; the request pays the highest; a tie goes to the
later rule; an item no fee rule matches adds nothing.
"""

from __future__ import annotations

import datetime as dt

import pytest

from retouraanvraag import rules
from retouraanvraag.adapters import MemoryStorage
from retouraanvraag.errors import ReturnFeeMismatch
from retouraanvraag.model import Customer, Money, PaidFee, ReturnItem, ReturnRequest
from retouraanvraag.workflow import NewItem, Policy

from .conftest import build_world

POLICY = """
ALS Van land IS Nederland DAN Retourkosten €2,95
ALS Retourreden IS "Product beschadigd" DAN Retourkosten €0,00
"""


def _item(reason: str, sku: str = "TS-1", vendor: str | None = None) -> ReturnItem:
    return ReturnItem(sku, "T-shirt", 1, Money(1995), reason, vendor=vendor)


def _request(*items: ReturnItem, country: str = "NL") -> ReturnRequest:
    return ReturnRequest(
        shop_id="shop",
        id="r-1",
        order_number="1001",
        customer=Customer("klant@example.nl", "Klant"),
        from_country=country,
        order_value=Money(9995),
        items=items,
        created_at=dt.datetime(2026, 6, 1, tzinfo=dt.UTC),
    )


@pytest.mark.parametrize(
    ("reasons", "fee"),
    [
        (("damaged",), Money(0)),
        (("damaged", "damaged"), Money(0)),
        (("damaged", "too_small"), Money(295)),  # the parcel is paid for once
        (("too_small", "damaged"), Money(295)),  # whatever the order of the items
        (("too_small",), Money(295)),
    ],
)
def test_no_fee_when_every_returned_item_is_damaged(reasons: tuple[str, ...], fee: Money) -> None:
    ruleset = rules.parse(POLICY)
    items = [_item(r, sku=f"S-{i}") for i, r in enumerate(reasons)]
    assert ruleset.evaluate(_request(*items)).return_fee == fee


def test_an_item_no_fee_rule_matches_adds_nothing() -> None:
    ruleset = rules.parse('ALS Leverancier IS "Acme" DAN Retourkosten €4,00')
    acme, other = _item("too_small", "A", vendor="Acme"), _item("too_small", "B", vendor="Other")
    assert ruleset.evaluate(_request(acme, other)).return_fee == Money(400)
    assert ruleset.evaluate(_request(other)).return_fee is None  # no fee rule matched at all
    unknown = _item("too_small", "C")  # no vendor given: unknown, never matches
    assert ruleset.evaluate(_request(unknown)).return_fee is None


def test_per_item_the_last_matching_fee_rule_wins_then_the_highest_is_paid() -> None:
    ruleset = rules.parse(
        """
        ALS Retourreden IS "Te klein" DAN Retourkosten €5,00
        ALS Van land IS Nederland DAN Retourkosten €1,00
        ALS SKU BEGINT MET "LUX" DAN Retourkosten €9,00
        """
    )
    # Dutch: the request rule (later) replaces the small-size fee for every item; the luxury
    # item's later rule replaces it for that item; the request pays the highest.
    assert ruleset.evaluate(_request(_item("too_small"))).return_fee == Money(100)
    luxury = _item("too_small", "LUX-1")
    assert ruleset.evaluate(_request(_item("too_small"), luxury)).return_fee == Money(900)
    # Belgian: the request rule does not match; the small-size fee stands.
    belgian = _request(_item("too_small"), country="BE")
    assert ruleset.evaluate(belgian).return_fee == Money(500)


def test_the_trace_marks_the_fee_that_was_not_paid() -> None:
    ruleset = rules.parse(POLICY)
    only_damaged = ruleset.evaluate(_request(_item("damaged")))
    assert only_damaged.trace == (
        "regel 1: Retourkosten €2,95 (overschreven door regel 2)",
        "regel 2 [artikel 1]: Retourkosten €0,00",
    )
    mixed = ruleset.evaluate(_request(_item("damaged", "A"), _item("too_small", "B")))
    assert mixed.trace == (
        "regel 1: Retourkosten €2,95",
        "regel 2 [artikel 1]: Retourkosten €0,00 (overschreven door regel 1)",
    )


def test_a_carrier_or_window_in_an_item_rule_is_still_refused() -> None:
    for action in ('Verzenden met "DHL"', "Retourtermijn 60 dagen"):
        with pytest.raises(rules.RuleError) as caught:
            rules.parse(f'ALS Retourreden IS "Te klein" DAN {action}')
        assert [d.code for d in caught.value.diagnostics] == ["request-action-in-item-rule"]


def test_the_format_and_translation_keep_a_fee_per_item() -> None:
    ruleset = rules.parse(POLICY)
    english = rules.parse(rules.format(ruleset, language="en"))
    assert english == ruleset
    request = _request(_item("damaged", "A"), _item("too_small", "B"))
    assert english.evaluate(request).return_fee == Money(295)


def test_the_desk_asks_the_combined_fee_at_submission() -> None:
    world = build_world(MemoryStorage())
    world.use_policy(Policy(rules=rules.parse(POLICY)))
    damaged = NewItem("TS-1", "T-shirt", 1, Money(1995), "damaged")
    too_small = NewItem("JN-2", "Jeans", 1, Money(4995), "too_small")
    free = world.desk.submit(world.new_request(items=(damaged,), return_fee=None))
    assert free.return_fee_asked == Money(0)
    with pytest.raises(ReturnFeeMismatch):
        world.desk.submit(world.new_request(items=(damaged, too_small), return_fee=None))
    paid = world.desk.submit(
        world.new_request(items=(damaged, too_small), return_fee=PaidFee(Money(295), "pay_mixed"))
    )
    assert paid.return_fee_asked == Money(295)


def test_a_fee_in_another_currency_than_the_shops_is_a_warning() -> None:
    ruleset = rules.parse("ALS Van land IS BE DAN Retourkosten 5 USD")
    (warning,) = ruleset.warnings
    assert warning.code == "fee-other-currency"
    assert (warning.line, warning.column) == (1, 37)  # at the amount
    assert "USD" in warning.message
    assert "EUR" in warning.message
    # In a shop that charges in dollars, the same rule is fine.
    assert rules.parse("ALS Van land IS BE DAN Retourkosten 5 USD", currency="USD").warnings == ()
