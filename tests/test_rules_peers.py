"""Conditions and actions peers offer (issue 12, part 7): rules switched off, and more."""

from __future__ import annotations

import datetime as dt

import pytest

from retouraanvraag import rules
from retouraanvraag.errors import RuleError
from retouraanvraag.model import Customer, Decision, Money, ReturnItem, ReturnRequest

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
