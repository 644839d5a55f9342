"""The shortcuts that make checking and warning fast keep every answer the slow way gives.

Folding skips Unicode work for ASCII text, the checker reads each name and value of a file once,
and the warnings read each comparison once: these tests attack each shortcut where it could
give another answer or swallow a diagnostic. Timings are measured by the benchmark, not here.
"""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from retouraanvraag import rules
from retouraanvraag.errors import RuleError
from retouraanvraag.model import Money, fold_text
from retouraanvraag.rules import DEFAULT_FIELDS, Compare, Operator
from retouraanvraag.rules import _warnings as warnings_module

FIELDS = {f.key: f for f in DEFAULT_FIELDS}


def reference_fold(text: str) -> str:
    """``fold_text`` as written before its ASCII shortcut."""
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(plain.casefold().replace(".", "").split())


@given(st.text(alphabet=st.characters(max_codepoint=127)))
def test_folding_ascii_text_gives_the_unicode_fold(text: str) -> None:
    assert fold_text(text) == reference_fold(text)


@given(st.text())
def test_folding_any_text_gives_the_unicode_fold(text: str) -> None:
    assert fold_text(text) == reference_fold(text)


@pytest.mark.parametrize(
    ("text", "folded"),
    [("  België ", "belgie"), ("Retouraanvraag  INSCHAKELEN", "retouraanvraag inschakelen"),
     ("e.g.", "eg"), ("\tA\nB ", "a b"), ("ﬁ", "fi"), ("", "")],
)  # fmt: skip
def test_folding_examples(text: str, folded: str) -> None:
    assert fold_text(text) == folded


def diagnostics(text: str) -> list[tuple[int, int, str]]:
    try:
        found = rules.parse(text).warnings
    except RuleError as error:
        found = error.diagnostics
    return [(d.line, d.column, d.code) for d in found]


def test_an_unknown_country_repeated_is_reported_at_each_place() -> None:
    text = (
        "ALS Van land IS Narnia DAN Goedkeuren met label\n\n"
        "ALS Van land IS Narnia DAN Goedkeuren met label\n"
    )
    assert diagnostics(text) == [(1, 17, "unknown-country"), (3, 17, "unknown-country")]


def test_an_unknown_field_repeated_is_reported_at_each_place() -> None:
    text = 'ALS Lnad IS NL DAN Afwijzen met reden "x"\nALS Lnad IS NL DAN Afwijzen met reden "x"\n'
    assert diagnostics(text) == [(1, 5, "unknown-field"), (2, 5, "unknown-field")]


def test_an_amount_in_another_currency_repeated_is_warned_at_each_place() -> None:
    text = (
        "ALS Bestelwaarde > 5 USD DAN Goedkeuren met label\n\n"
        "ALS Bestelwaarde > 5 USD EN Van land IS NL DAN Retouraanvraag inschakelen\n"
    )
    assert diagnostics(text) == [(1, 20, "other-currency"), (3, 20, "other-currency")]


def test_a_fee_in_another_currency_after_the_same_amount_compared_is_warned_too() -> None:
    text = "ALS Bestelwaarde > 5 USD DAN Retourkosten 5 USD\n"
    codes = [code for _, _, code in diagnostics(text)]
    assert codes == ["other-currency", "fee-other-currency"]


def test_a_value_read_once_means_the_same_in_every_rule() -> None:
    ruleset = rules.parse(
        "ALS Bestelwaarde > €5,00 EN Van land IS België DAN Goedkeuren met label\n\n"
        "ALS Bestelwaarde > €5,00 EN Van land IS België DAN Retouraanvraag inschakelen\n"
    )
    first, second = (rule.condition for rule in ruleset.rules)
    assert first == second
    assert first.parts[0].values == (Money(500),)  # type: ignore[union-attr]
    assert first.parts[1].values == ("BE",)  # type: ignore[union-attr]


def test_a_bad_amount_repeated_is_reported_at_each_place() -> None:
    text = (
        "ALS Bestelwaarde > €1.000 DAN Goedkeuren met label\n\n"
        "ALS Bestelwaarde > €1.000 DAN Goedkeuren met label\n"
    )
    codes = diagnostics(text)
    assert [c for _, _, c in codes] == ["ambiguous-separator", "ambiguous-separator"]
    assert [line for line, _, _ in codes] == [1, 3]


def test_equal_comparisons_in_separate_rules_are_one_comparison() -> None:
    text = (
        "ALS Van land IS NL EN Aantal artikelen > 2 DAN Goedkeuren met label\n\n"
        "ALS Aantal artikelen > 2 EN Van land IS NL DAN Retouraanvraag inschakelen\n"
    )
    assert diagnostics(text) == [(1, 1, "always-overridden")]


def test_equal_comparisons_built_apart_get_one_number() -> None:
    a = Compare(FIELDS["order_value"], Operator.GT, (Money(100),))
    b = Compare(FIELDS["order_value"], Operator.GT, (Money(100),))
    c = Compare(FIELDS["order_value"], Operator.GE, (Money(100),))
    rule_list = [
        rules.Rule(n, None, condition, (rules.Action(rules.ActionKind.REQUIRE_REVIEW),))
        for n, condition in enumerate((a, b, c), start=1)
    ]
    interned = warnings_module._Interned(rule_list)
    assert interned.number(a) == interned.number(b) != interned.number(c)
    assert interned.count[interned.number(a)] == 2


def test_what_is_possible_is_worked_out_again_after_each_requirement() -> None:
    facts = warnings_module._Facts(FIELDS["from_country"])
    facts.add(Compare(FIELDS["from_country"], Operator.IS, ("NL", "BE", "DE")))
    assert facts.possible() == frozenset({"NL", "BE", "DE"})
    facts.add(Compare(FIELDS["from_country"], Operator.IS_NOT, ("NL",)))
    assert facts.possible() == frozenset({"BE", "DE"})
    facts.add(Compare(FIELDS["from_country"], Operator.IS, ("NL", "DE")))
    assert facts.possible() == frozenset({"DE"})
    facts.add(Compare(FIELDS["from_country"], Operator.IS_NOT, ("DE",)))
    assert facts.possible() == frozenset()
    assert not facts.satisfiable()


def test_a_bound_implied_is_read_the_same_with_and_without_a_reading() -> None:
    facts = warnings_module._Facts(FIELDS["order_value"])
    facts.add(Compare(FIELDS["order_value"], Operator.GT, (Money(500),)))
    for operator, amount, implied in [
        (Operator.GT, 400, True), (Operator.GE, 500, True), (Operator.GT, 500, True),
        (Operator.GT, 600, False), (Operator.LT, 900, False),
    ]:  # fmt: skip
        compare = Compare(FIELDS["order_value"], operator, (Money(amount),))
        read = warnings_module._Read(compare, 0)
        assert facts.implies(compare) is implied, (operator, amount)
        assert facts.implies(compare, read) is implied, (operator, amount)


def test_en_and_of_mixed_are_found_in_any_iterable_of_tokens() -> None:
    text = (
        "ALS Van land IS NL EN Aantal artikelen > 2 OF Bestelwaarde > €5 DAN Goedkeuren met label\n"
    )
    assert diagnostics(text) == [(1, 44, "mixed-and-or")]

    class Token:
        def __init__(self, type_: str, column: int) -> None:
            self.type, self.line, self.column = type_, 1, column

    tokens = [Token("WORD", 1), Token("AND", 5), Token("WORD", 8), Token("OR", 12)]
    assert warnings_module.mixed_and_or(iter(tokens)) == rules.Position(1, 12)
    assert warnings_module.mixed_and_or(tokens[:3]) is None
    assert warnings_module.mixed_and_or([object(), *tokens]) == rules.Position(1, 12)
