"""Explicit parentheses inside ``OF`` are kept (issue "rules, second edition", part 5)."""

from __future__ import annotations

import datetime as dt

import pytest

from retouraanvraag import rules
from retouraanvraag.model import Customer, Money, ReturnItem, ReturnRequest

GROUPED = "ALS (Van land IS NL OF Van land IS BE) OF Van land IS DE DAN Goedkeuren met label"


def _request(country: str) -> ReturnRequest:
    return ReturnRequest(
        shop_id="shop",
        id=f"r-{country}",
        order_number="1001",
        customer=Customer("klant@example.nl", "Klant"),
        from_country=country,
        order_value=Money(5000),
        items=(ReturnItem("TS-1", "T-shirt", 1, Money(1995), "too_small"),),
        created_at=dt.datetime(2026, 6, 1, tzinfo=dt.UTC),
    )


def test_a_group_inside_of_is_written_back_as_the_merchant_wrote_it() -> None:
    ruleset = rules.parse(GROUPED)
    assert rules.format(ruleset) == (
        "ALS (Van land IS Nederland OF Van land IS België) OF Van land IS Duitsland\n"
        "DAN Goedkeuren met label\n"
    )
    english = rules.format(ruleset, language="en")
    assert english.startswith("IF (From country IS Netherlands OR From country IS Belgium) OR")
    assert rules.parse(english) == ruleset  # the round trip keeps the group


@pytest.mark.parametrize("country", ["NL", "BE", "DE", "FR"])
def test_the_group_changes_nothing_of_what_the_rule_decides(country: str) -> None:
    flat = rules.parse(
        "ALS Van land IS NL OF Van land IS BE OF Van land IS DE DAN Goedkeuren met label"
    )
    grouped = rules.parse(GROUPED)
    assert grouped.evaluate(_request(country)).decision == flat.evaluate(_request(country)).decision


def test_of_without_parentheses_and_groups_inside_en_stay_as_they_were() -> None:
    flat = rules.parse("ALS Van land IS NL OF Van land IS BE DAN Goedkeuren met label")
    assert "(" not in rules.format(flat)
    conjunction = rules.parse(
        "ALS (Van land IS NL EN Bestelwaarde > €10) EN Aantal artikelen < 3 "
        "DAN Goedkeuren met label"
    )
    # (A EN B) EN C is one conjunction: written back without the parentheses.
    assert "(" not in rules.format(conjunction)
    assert len(conjunction.rules[0].condition.parts) == 3  # type: ignore[union-attr]
