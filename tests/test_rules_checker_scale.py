"""The checker's warnings: the new ones, and work that grows linearly with the file.

Timings are never asserted (the benchmark measures them); instead the number of proof steps the
override and "not returnable" checks take is counted, and must grow in proportion to the file.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from retouraanvraag import rules
from retouraanvraag.model import DEFAULT_REASONS, Money, ReasonCatalogue
from retouraanvraag.rules import (
    DEFAULT_FIELDS,
    Action,
    ActionKind,
    And,
    Compare,
    Condition,
    FieldRegistry,
    Operator,
    Rule,
)
from retouraanvraag.rules import _warnings as warnings_module
from retouraanvraag.rules._checker import Checker

FIELDS = {f.key: f for f in DEFAULT_FIELDS}


def warning_codes(text: str) -> list[tuple[int, int, str]]:
    return [(w.line, w.column, w.code) for w in rules.parse(text).warnings]


# -- Retourkosten terugbetalen in the override check --------------------------------------------


def test_a_refund_repeated_by_a_later_rule_is_always_overridden() -> None:
    text = (
        "ALS Van land IS NL DAN Retourkosten terugbetalen\n"
        "ALS Van land IS NL OF BE DAN Retourkosten terugbetalen\n"
    )
    assert warning_codes(text) == [(1, 1, "always-overridden")]


def test_a_refund_keeps_a_rule_whose_decision_is_overridden_useful() -> None:
    text = (
        "ALS Van land IS NL DAN Goedkeuren met label EN Retourkosten terugbetalen\n"
        "ALS Van land IS NL DAN Retouraanvraag inschakelen\n"
    )
    assert warning_codes(text) == []


def test_decision_and_refund_both_taken_later_is_always_overridden() -> None:
    text = (
        "ALS Van land IS NL DAN Goedkeuren met label EN Retourkosten terugbetalen\n"
        "ALS Van land IS NL OF BE DAN Retourkosten terugbetalen EN Retouraanvraag inschakelen\n"
    )
    assert warning_codes(text) == [(1, 1, "always-overridden")]


def test_a_refund_only_rule_is_not_overridden_by_a_decision() -> None:
    text = (
        "ALS Van land IS NL DAN Retourkosten terugbetalen\n"
        "ALS Van land IS NL DAN Goedkeuren met label\n"
    )
    assert warning_codes(text) == []


def test_override_proofs_use_bounds_and_value_lists() -> None:
    text = (
        "ALS Bestelwaarde > €100 EN Van land IS NL DAN Retourkosten €1,00\n"
        "ALS Bestelwaarde > €50 DAN Retourkosten €2,00\n"
        "ALS Bestelwaarde > €10 EN Van land IS BE DAN Retourkosten €3,00\n"
    )
    assert warning_codes(text) == [(1, 1, "always-overridden")]


# -- EN and OF without parentheses ------------------------------------------------------------


@pytest.mark.parametrize(
    ("condition", "second"),
    [
        ("Van land IS NL EN Kanaal IS api OF Tags BEVAT vip", " OF "),
        ("Tags BEVAT vip OF Van land IS NL EN Kanaal IS api", " EN "),
        ("NIET Van land IS NL EN Kanaal IS api OF Tags BEVAT vip", " OF "),
    ],
)
def test_and_and_or_mixed_without_parentheses_is_a_warning(condition: str, second: str) -> None:
    text = f"ALS {condition} DAN Goedkeuren met label"
    diagnostics = rules.parse(text).warnings
    # The caret is on the keyword that mixes the two.
    column = text.index(second) + 2
    assert [(d.line, d.column, d.code) for d in diagnostics] == [(1, column, "mixed-and-or")]
    assert diagnostics[0].hint is not None
    assert "(A EN B) OF C" in diagnostics[0].hint


@pytest.mark.parametrize(
    "condition",
    [
        "(Van land IS NL EN Kanaal IS api) OF Tags BEVAT vip",
        "Van land IS NL EN (Kanaal IS api OF Tags BEVAT vip)",
        "Van land IS NL OF BE EN Kanaal IS api",  # OF between values is a list
        "Van land IS NL EN Kanaal IS api EN Tags BEVAT vip",
        "Van land IS NL OF Kanaal IS api OF Tags BEVAT vip",
    ],
)
def test_parentheses_or_one_kind_of_junction_give_no_warning(condition: str) -> None:
    assert warning_codes(f"ALS {condition} DAN Goedkeuren met label") == []


def test_mixed_and_or_in_english() -> None:
    text = "IF From country IS NL AND Channel IS api OR Tags CONTAINS vip THEN Approve with label"
    (diagnostic,) = rules.parse(text).warnings
    assert diagnostic.code == "mixed-and-or"
    assert diagnostic.message == "AND and OR are mixed here without parentheses"
    assert text[diagnostic.column - 1 :].startswith("OR ")


# -- a later rule that undoes "Artikel niet retourneerbaar" --------------------------------------


def test_a_later_decision_that_can_undo_not_returnable_is_a_warning() -> None:
    text = (
        'ALS SKU BEGINT MET "HYG-" DAN Artikel niet retourneerbaar\n'
        'ALS Retourreden IS "Product beschadigd" DAN Goedkeuren met label\n'
    )
    (warning,) = rules.parse(text, source_name="beleid.rules").warnings
    # The caret is on the decision that replaces the refusal.
    column = text.splitlines()[1].index("Goedkeuren") + 1
    assert (warning.line, warning.column, warning.code) == (2, column, "undoes-not-returnable")
    assert warning.message == (
        'voor een artikel waarvoor ook regel 1 geldt, maakt deze regel "Artikel niet '
        'retourneerbaar" ongedaan'
    )
    assert warning.hint is not None
    assert "regel 1" in warning.hint


def test_a_request_rule_can_undo_an_items_refusal_too() -> None:
    text = (
        "ALS Artikelnaam BEVAT cadeaubon DAN Artikel niet retourneerbaar\n"
        'ALS Dagen sinds levering > 30 DAN Afwijzen met reden "Te laat"\n'
    )
    column = text.splitlines()[1].index("Afwijzen") + 1
    assert warning_codes(text) == [(2, column, "undoes-not-returnable")]


@pytest.mark.parametrize(
    "text",
    [
        # the two can never hold together
        (
            "ALS Van land IS NL DAN Artikel niet retourneerbaar\n"
            "ALS Van land IS BE DAN Goedkeuren met label\n"
        ),
        (
            "ALS Bestelwaarde > €100 DAN Retour niet mogelijk\n"
            "ALS Bestelwaarde < €50 DAN Goedkeuren met label\n"
        ),
        # the refusal comes last, so it stands
        (
            'ALS Retourreden IS "Bedacht" DAN Goedkeuren met label\n'
            'ALS SKU BEGINT MET "HYG-" DAN Artikel niet retourneerbaar\n'
        ),
        # a later refusal, or a rule deciding nothing, undoes nothing
        (
            'ALS SKU BEGINT MET "HYG-" DAN Artikel niet retourneerbaar\n'
            "ALS Aantal > 3 DAN Retour niet mogelijk\n"
            "ALS Aantal > 3 DAN Retourkosten terugbetalen\n"
        ),
    ],
)
def test_no_undo_warning_when_the_refusal_cannot_be_undone(text: str) -> None:
    assert [c for _, _, c in warning_codes(text) if c == "undoes-not-returnable"] == []


def test_new_warnings_have_stable_codes_with_explanations() -> None:
    for slug in ("mixed-and-or", "undoes-not-returnable", "always-overridden"):
        entry = rules.find_code(slug)
        assert entry is not None, slug
        assert entry.severity == "warning"
        assert entry.examples is not None
        bad, good = entry.examples["nl"]
        assert slug in {w.code for w in rules.parse(bad).warnings}
        assert slug not in {w.code for w in rules.parse(good).warnings}


# -- linear work ---------------------------------------------------------------------------------


@contextmanager
def counted_steps() -> Iterator[list[int]]:
    """Count the proof steps the override and undo checks take."""
    count = [0]
    implies = warnings_module._Case.implies
    meet = warnings_module._meet

    def counting_implies(self: object, condition: Condition, interned: object) -> bool:
        count[0] += 1
        return implies(self, condition, interned)  # type: ignore[arg-type]

    def counting_meet(a: object, b: object) -> bool:
        count[0] += 1
        return meet(a, b)  # type: ignore[arg-type]

    warnings_module._Case.implies = counting_implies  # type: ignore[method-assign]
    warnings_module._meet = counting_meet
    try:
        yield count
    finally:
        warnings_module._Case.implies = implies  # type: ignore[method-assign]
        warnings_module._meet = meet


def _compare(key: str, operator: Operator, *values: object) -> Compare:
    return Compare(FIELDS[key], operator, values)


def _long_rules(count: int, per_rule: int) -> list[Rule]:
    """``count`` rules of ``per_rule`` comparisons joined by EN, alike but for the last one.

    Each later rule shares all comparisons but one with every earlier one: the shape that made
    the pairwise override check take rules squared times comparisons squared steps.
    """
    shared: list[Condition] = []
    for k in range(per_rule - 1):
        if k % 3 == 0:
            shared.append(_compare("order_value", Operator.IS_NOT, Money(k * 100)))
        elif k % 3 == 1:
            shared.append(_compare("number_of_items", Operator.IS_NOT, k))
        else:
            shared.append(_compare("order_number", Operator.STARTS_WITH, f"A{k}", f"B{k}"))
    return [
        Rule(
            n + 1,
            None,
            And((*shared, _compare("order_value", Operator.GT, Money((n + 1) * 100)))),
            (Action(ActionKind.REQUIRE_REVIEW),),
        )
        for n in range(count)
    ]


def _check(rule_list: list[Rule]) -> Checker:
    checker = Checker("nl", FieldRegistry(), ReasonCatalogue(DEFAULT_REASONS), "EUR", "<rules>", [])
    warnings_module.warn(checker, rule_list, ())
    return checker


def test_override_work_grows_linearly_with_rules_and_comparisons() -> None:
    steps = {}
    for count, per_rule in ((10, 300), (20, 300), (80, 300), (160, 300), (80, 600)):
        with counted_steps() as counter:
            _check(_long_rules(count, per_rule))
        steps[count, per_rule] = counter[0]
    for (count, _), taken in steps.items():
        # A bounded number of candidates per rule, each refuted in a step or two (the
        # comparison only this rule has is tried first), however long the rules are.
        assert taken <= 2 * warnings_module.CANDIDATES * count, (count, taken)
    assert steps[20, 300] <= 5 * steps[10, 300]
    assert steps[160, 300] <= 2.2 * steps[80, 300]
    assert steps[80, 600] <= 1.2 * steps[80, 300]


def test_identical_rules_by_the_thousand_are_each_reported_once_in_linear_work() -> None:
    same = And((_compare("from_country", Operator.IS, "NL"), _compare("quantity", Operator.GT, 3)))
    kinds = [ActionKind.REQUIRE_REVIEW, ActionKind.RETURN_FEE]
    rule_list = [
        Rule(n + 1, None, same, (Action(kinds[0]),) if n % 2 else (Action(kinds[1], Money(100)),))
        for n in range(5000)
    ]
    with counted_steps() as counter:
        checker = _check(rule_list)
    overridden = [d for d in checker.diagnostics if d.code == "always-overridden"]
    assert len(overridden) + checker.dropped >= 4998
    assert counter[0] <= 5000 * warnings_module.CANDIDATES


def test_undo_work_is_bounded_per_rule() -> None:
    refusing = [
        Rule(n + 1, None, _compare("from_country", Operator.IS, f"X{n}"),
             (Action(ActionKind.ITEM_NOT_RETURNABLE),))
        for n in range(2000)
    ] + [
        Rule(2001 + n, None, _compare("from_country", Operator.IS, f"Y{n}"),
             (Action(ActionKind.APPROVE_WITH_LABEL),))
        for n in range(2000)
    ]  # fmt: skip
    with counted_steps() as counter:
        checker = _check(refusing)
    assert not [d for d in checker.diagnostics if d.code == "undoes-not-returnable"]
    # Each deciding rule is compared with a bounded number of refusals (and every rule with
    # a bounded number of later ones for the override check).
    assert counter[0] <= 4000 * (warnings_module.REFUSERS + warnings_module.TRIES)


def test_the_issues_92_kb_file_checks_and_warns_nothing_false() -> None:
    parts = []
    for n in range(10):
        shared = " EN ".join(
            f"Bestelwaarde IS NIET €{k},00" if k % 2 else f"Aantal artikelen IS NIET {k}"
            for k in range(299)
        )
        parts.append(f"ALS {shared} EN Bestelwaarde > €{n + 1},00\nDAN Retouraanvraag inschakelen")
    text = "\n".join(parts) + "\n"
    assert len(text) > 80_000
    with counted_steps() as counter:
        ruleset = rules.parse(text)
    assert len(ruleset.rules) == 10
    # A later rule asks for a higher order value: it does not match whenever an earlier one does.
    assert ruleset.warnings == ()
    assert counter[0] <= 2 * 3000
