"""Actions listed with commas, as a merchant lists them: ``DAN Goedkeuren met label, …``."""

from __future__ import annotations

import pytest

from retouraanvraag import rules
from retouraanvraag.model import Money
from retouraanvraag.rules import ActionKind


@pytest.mark.parametrize(
    "text",
    [
        "ALS Van land IS NL DAN Goedkeuren met label, Retourkosten €2",
        "ALS Van land IS NL DAN Goedkeuren met label , Retourkosten €2,00",
        "ALS Van land IS NL\nDAN Goedkeuren met label,\n    Retourkosten €2",
        "IF From country IS NL THEN Approve with label, Return fee €2.00",
    ],
)
def test_a_comma_between_actions_reads_as_en(text: str) -> None:
    (rule,) = rules.parse(text).rules
    assert [a.kind for a in rule.actions] == [ActionKind.APPROVE_WITH_LABEL, ActionKind.RETURN_FEE]
    assert rule.actions[1].argument == Money(200)
    assert rules.parse(text) == rules.parse(
        "ALS Van land IS NL DAN Goedkeuren met label EN Retourkosten €2"
    )


def test_a_comma_inside_quoted_text_or_an_amount_stays_where_it_is() -> None:
    (rule,) = rules.parse('ALS Van land IS NL DAN Afwijzen met reden "Te laat, sorry"').rules
    assert rule.actions[0].argument == "Te laat, sorry"
    (fee,) = rules.parse("ALS Van land IS NL DAN Retourkosten €4,95").rules
    assert fee.actions[0].argument == Money(495)


def test_a_comma_in_a_condition_still_lists_values() -> None:
    (rule,) = rules.parse(
        "ALS Van land IS Duitsland, Oostenrijk DAN Goedkeuren met label, Retourkosten €1"
    ).rules
    assert len(rule.actions) == 2
    assert rules.format(rules.parse("ALS Van land IS DE, AT DAN Goedkeuren met label")) == (
        "ALS Van land IS Duitsland OF Oostenrijk\nDAN Goedkeuren met label\n"
    )


def test_what_follows_a_comma_must_be_an_action() -> None:
    with pytest.raises(rules.RuleError) as caught:
        rules.parse("ALS Van land IS NL DAN Verzenden met DHL, Express")
    (problem,) = caught.value.diagnostics
    assert problem.code == "unknown-action"
    assert (problem.line, problem.column) == (1, 43)
