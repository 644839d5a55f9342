"""What a hurried merchant types (issue 12, parts 1-3 and 5): it loads, or it is told exactly why.

Each test names the example from the issue it proves.
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from pathlib import Path

import pytest

from retouraanvraag import _docs, rules
from retouraanvraag.errors import RuleError
from retouraanvraag.model import Customer, Decision, Language, Money, ReturnItem, ReturnRequest
from retouraanvraag.rules import Compare, Or, Severity
from retouraanvraag.rules._codes import CODES
from retouraanvraag.rules._format import WIDTH
from retouraanvraag.rules._messages import MESSAGES

ROOT = Path(__file__).resolve().parent.parent
APPROVE = "DAN Goedkeuren met label"
NOW = dt.datetime(2024, 6, 1, 12, tzinfo=dt.UTC)


def diagnostics(text: str | bytes, **options: str) -> tuple[rules.Diagnostic, ...]:
    with pytest.raises(RuleError) as caught:
        rules.parse(text, **options)  # type: ignore[arg-type]
    return caught.value.diagnostics


def only(text: str | bytes, **options: str) -> rules.Diagnostic:
    (diagnostic,) = diagnostics(text, **options)
    return diagnostic


def first_compare(ruleset: rules.RuleSet) -> Compare:
    condition = ruleset.rules[0].condition
    assert isinstance(condition, Compare)
    return condition


def request(country: str = "NL", order_value: int = 5000) -> ReturnRequest:
    return ReturnRequest(
        shop_id="shop",
        id="r1",
        order_number="1001",
        customer=Customer(email="klant@example.com", name="Klant", language=Language.NL),
        from_country=country,
        order_value=Money(order_value),
        items=(ReturnItem("SKU-1", "T-shirt", 1, Money(1000), "too_small"),),
        created_at=NOW,
    )


# -- 1. accept what a merchant types -----------------------------------------------------------


def test_a_utf8_byte_order_mark_is_dropped_as_text_and_as_bytes() -> None:
    # It gave `1:1 onverwacht teken '\ufeff'`.
    plain = rules.parse(f"ALS Van land IS NL {APPROVE}")
    assert rules.parse(f"\ufeffALS Van land IS NL {APPROVE}") == plain
    assert rules.parse(f"\ufeffALS Van land IS NL {APPROVE}".encode()) == plain
    # Columns count as the editor shows them, without the mark.
    diagnostic = only(f"\ufeffALS Van lnd IS NL {APPROVE}")
    assert (diagnostic.line, diagnostic.column) == (1, 5)
    assert diagnostic.source_line == f"ALS Van lnd IS NL {APPROVE}"


def test_a_windows_1252_file_is_read_as_such_with_a_warning_at_the_first_such_byte() -> None:
    # It exited 2 with Python's English UnicodeDecodeError and a byte offset.
    data = f"ALS Van land IS NL {APPROVE}\nALS Van land IS België {APPROVE}\n".encode("cp1252")
    ruleset = rules.parse(data)
    assert first_compare(ruleset).values == ("NL",)
    (warning,) = ruleset.warnings
    assert (warning.line, warning.column, warning.code) == (2, 22, "windows-1252")
    assert warning.severity is Severity.WARNING
    assert warning.hint == "sla het bestand op als UTF-8"
    assert rules.decode(data) == data.decode("cp1252")


@pytest.mark.parametrize(
    ("data", "column", "message"),
    [
        (
            b"ALS Van land IS NL\nDAN Goedkeuren met \x81label",
            20,
            "het bestand is niet in UTF-8 opgeslagen en ook niet als Windows-1252 te lezen",
        ),
        (
            "IF From country IS België\n".encode() + b"THEN Approve \x9dwith label",
            14,
            "the file is not saved as UTF-8 and cannot be read as Windows-1252 either",
        ),
    ],
)
def test_a_file_neither_utf8_nor_windows_1252_says_so_in_its_language_with_line_and_column(
    data: bytes, column: int, message: str
) -> None:
    diagnostic = only(data)
    assert (diagnostic.line, diagnostic.column, diagnostic.code) == (2, column, "not-utf8")
    assert diagnostic.message == message
    with pytest.raises(RuleError):
        rules.decode(data)


def test_a_utf16_file_with_its_mark_is_read() -> None:
    assert rules.parse(f"ALS Van land IS NL {APPROVE}".encode("utf-16")) == rules.parse(
        f"ALS Van land IS NL {APPROVE}"
    )


def test_crlf_tabs_and_no_break_spaces_load() -> None:
    text = f"ALS\tVan\u00a0land IS NL\r\n{APPROVE}\r\nALS Van land IS BE\r{APPROVE}"
    ruleset = rules.parse(text)
    assert [first_compare(ruleset).values, ruleset.rules[1].condition] == [
        ("NL",),
        rules.parse(f"ALS Van land IS BE {APPROVE}").rules[0].condition,
    ]
    diagnostic = only("ALS Van land IS NL\r\nDAN Goedkeuren met lable\r\n")
    assert (diagnostic.line, diagnostic.column) == (2, 5)
    assert diagnostic.source_line == "DAN Goedkeuren met lable"


@pytest.mark.parametrize(
    "value",
    [
        "\u2018cadeaubon\u2019",
        "“cadeaubon”",
        "'cadeaubon'",
        '"cadeaubon"',
        "„cadeaubon“",
        "”cadeaubon”",
    ],
)
def test_curly_and_single_quotes_are_quotes(value: str) -> None:
    # curly quotes was an unexpected character.
    ruleset = rules.parse(f"ALS Artikelnaam BEVAT {value} {APPROVE}")
    assert first_compare(ruleset).values == ("cadeaubon",)


def test_single_quoted_reason_and_apostrophes_inside_quotes() -> None:
    # 'Te klein' gave two messages; it is accepted now.
    assert first_compare(rules.parse(f"ALS Retourreden IS 'Te klein' {APPROVE}")).values == (
        "too_small",
    )
    quoted = rules.parse(f"ALS Artikelnaam IS 'Jan's jas' OF \u2018Mia\u2019s muts\u2019 {APPROVE}")
    assert first_compare(quoted).values == ("Jan's jas", "Mia\u2019s muts")
    bare = rules.parse(f"ALS Artikelnaam BEVAT 's-Hertogenbosch {APPROVE}")
    assert first_compare(bare).values == ("'s-Hertogenbosch",)


def test_a_curly_apostrophe_in_a_field_name() -> None:
    # `Heeft foto's (curly)` was an unknown field.
    curly = rules.parse(f"ALS Heeft foto\u2019s IS ja {APPROVE}")
    assert curly == rules.parse(f"ALS Heeft foto's IS ja {APPROVE}")
    assert first_compare(curly).field.key == "has_photos"


def test_an_unterminated_curly_quote_asks_for_its_own_closing_quote() -> None:
    diagnostic = only(f"ALS Artikelnaam BEVAT \u2018cadeaubon {APPROVE}")
    assert (diagnostic.column, diagnostic.code) == (23, "unterminated-string")
    assert diagnostic.hint == "sluit de tekst af met \u2019"


@pytest.mark.parametrize(
    ("natural", "symbol"),
    [
        ("IS GROTER DAN", ">"),
        ("IS KLEINER DAN", "<"),
        ("IS MINSTENS", ">="),
        ("IS HOOGSTENS", "<="),
        ("is groter dan of gelijk aan", ">="),
        ("GROTER DAN", ">"),
    ],
)
def test_natural_comparison_phrasing_in_dutch(natural: str, symbol: str) -> None:
    # `IS GROTER DAN` gave `onverwacht ">"`.
    assert rules.parse(f"ALS Bestelwaarde {natural} €5 {APPROVE}") == rules.parse(
        f"ALS Bestelwaarde {symbol} €5 {APPROVE}"
    )


@pytest.mark.parametrize(
    ("natural", "symbol"),
    [
        ("IS GREATER THAN", ">"),
        ("IS LESS THAN", "<"),
        ("IS AT LEAST", ">="),
        ("IS AT MOST", "<="),
        ("is less than or equal to", "<="),
    ],
)
def test_natural_comparison_phrasing_in_english(natural: str, symbol: str) -> None:
    assert rules.parse(f"IF Order value {natural} €5 THEN Skip review") == rules.parse(
        f"IF Order value {symbol} €5 THEN Skip review"
    )


@pytest.mark.parametrize(
    ("typed", "cents"),
    [
        ("5,95 €", 595),
        ("5,95€", 595),
        ("€5,95", 595),
        ("€ 5,95", 595),
        ("5 euro", 500),
        ("5 Euro's", 500),
        ("EUR 5", 500),
        ("5,-", 500),
        ("€5,-", 500),
        ("5,- EUR", 500),
        ("1.234,50 EUR", 123450),
        ("€1.000,00", 100000),
        ("€1000", 100000),
    ],
)
def test_money_as_merchants_write_it(typed: str, cents: int) -> None:
    # `5,95 €`, `5 euro`, `EUR 5`, `5,-` were refused.
    assert first_compare(rules.parse(f"ALS Bestelwaarde > {typed} {APPROVE}")).values == (
        Money(cents),
    )


def test_a_fee_written_the_merchants_way() -> None:
    ruleset = rules.parse("ALS Van land IS DE DAN Retourkosten 4,95 €")
    assert ruleset.rules[0].actions[0].argument == Money(495)
    assert rules.parse("ALS Van land IS DE DAN Retourkosten 5,-").rules[0].actions[0].argument == (
        Money(500)
    )


@pytest.mark.parametrize(
    ("text", "hint"),
    [
        (f"ALS Bestelwaarde > €1.000 {APPROVE}", "schrijf €1000 of €1.000,00"),
        (f"ALS Bestelwaarde > 1,000 EUR {APPROVE}", "schrijf 1000 EUR of 1,000.00 EUR"),
        ("IF Order value   > €1,000 THEN Skip review", "write €1000 or €1,000.00"),
    ],
)
def test_a_thousands_separator_or_decimals_is_explained(text: str, hint: str) -> None:
    # `€1.000` was refused with a generic hint.
    diagnostic = only(text)
    assert (diagnostic.column, diagnostic.code) == (20, "ambiguous-separator")
    assert diagnostic.hint == hint
    assert "duizendtallen" in diagnostic.message or "thousands" in diagnostic.message


def test_a_comma_separates_values_like_of() -> None:
    # `Van land IS Duitsland, Oostenrijk, Zwitserland` gave three errors.
    ruleset = rules.parse(f"ALS Van land IS Duitsland, Oostenrijk, Zwitserland {APPROVE}")
    assert first_compare(ruleset).values == ("DE", "AT", "CH")
    assert ruleset == rules.parse(
        f"ALS Van land IS Duitsland OF Oostenrijk OF Zwitserland {APPROVE}"
    )
    assert rules.parse(f"ALS Van land IS Duitsland, of Oostenrijk {APPROVE}") == rules.parse(
        f"ALS Van land IS Duitsland OF Oostenrijk {APPROVE}"
    )
    money = rules.parse(f"ALS Bestelwaarde IS €5, €10,50 {APPROVE}")
    assert first_compare(money).values == (Money(500), Money(1050))
    numbers = rules.parse(f"ALS Aantal IS 1, 2,5 {APPROVE}")
    assert first_compare(numbers).values == (1, Decimal("2.5"))


def test_a_comma_between_conditions_says_what_to_write() -> None:
    diagnostic = only(f"ALS Van land IS NL, Kanaal IS api {APPROVE}")
    assert diagnostic.code == "syntax"
    assert diagnostic.message == 'onverwacht ","'
    assert diagnostic.hint == "een komma scheidt waarden; gebruik EN of OF tussen voorwaarden"


# -- 2. never read a typo as something else ------------------------------------------------------


@pytest.mark.parametrize("typed", ["€4,9,5", "4,95,00", "€4.9.5", "€1,2345", "€12.34.56"])
def test_misplaced_group_separators_are_an_error_never_another_amount(typed: str) -> None:
    # `€4,9,5` loaded as €495,00 and `4,95,00` as €49.500,00.
    diagnostic = only(f"ALS Bestelwaarde > {typed} {APPROVE}")
    assert diagnostic.code == "bad-money"
    assert diagnostic.message == f'"{typed}" is geen bedrag'
    assert "groepen van drie" in (diagnostic.hint or "")


@pytest.mark.parametrize("typed", ["4,95,00", "4,9,5", "1.2.3", "1.234.56"])
def test_misplaced_group_separators_in_a_number_are_an_error(typed: str) -> None:
    diagnostic = only(f"ALS Aantal > {typed} {APPROVE}")
    assert (diagnostic.code, diagnostic.message) == ("bad-number", f'"{typed}" is geen getal')


def test_numbers_follow_the_models_three_digit_groups() -> None:
    # The checker's own reading took 1.234.567 for 1234.567.
    compare = first_compare(rules.parse(f"ALS Aantal artikelen > 1.234.567 {APPROVE}"))
    assert compare.values == (1234567,)
    assert first_compare(rules.parse(f"ALS Aantal artikelen > 1.234,5 {APPROVE}")).values == (
        first_compare(rules.parse(f"ALS Aantal artikelen > 1234.5 {APPROVE}")).values
    )


@pytest.mark.parametrize(("typed", "example"), [("$100", "100 USD"), ("100 $", "100 USD")])
def test_a_dollar_sign_asks_for_the_currency_code(typed: str, example: str) -> None:
    # `$100` loaded silently, though `$` names several currencies.
    diagnostic = only(f"ALS Bestelwaarde > {typed} {APPROVE}")
    assert diagnostic.code == "dollar-sign"
    assert diagnostic.hint == f"schrijf de code van de munt, bijvoorbeeld {example}"
    assert rules.parse(f"ALS Bestelwaarde > US$100 {APPROVE}") == rules.parse(
        f"ALS Bestelwaarde > 100 USD {APPROVE}"
    )


def test_an_amount_in_another_currency_than_the_shops_is_a_warning() -> None:
    # `100 USD` in a shop that takes euros loaded silently and can never match.
    ruleset = rules.parse(f"ALS Bestelwaarde > 100 USD {APPROVE}")
    (warning,) = ruleset.warnings
    assert (warning.column, warning.code, warning.severity) == (20, "other-currency", "warning")
    assert warning.message == (
        '"100 USD" is in USD, maar de winkel rekent in EUR: deze vergelijking geldt nooit'
    )
    assert ruleset.evaluate(request(order_value=10_000_000)).decision is None
    assert rules.parse(f"ALS Bestelwaarde > 100 USD {APPROVE}", currency="USD").warnings == ()
    in_dollars = rules.parse(f"ALS Bestelwaarde > 100 {APPROVE}", currency="USD")
    assert first_compare(in_dollars).values == (Money(10000, "USD"),)


# -- 3. diagnostics that point at the mistake ---------------------------------------------------


@pytest.mark.parametrize(
    ("text", "where", "typed", "hint"),
    [
        ("ALS Van land IS NL DNA Goedkeuren met label", (1, 20), "DNA", 'bedoelde u "DAN"?'),
        (
            (
                "ALS Van land IS NL DAN Retouraanvraag uitschakelen\n"
                "ASL Van land IS België DAN Goedkeuren met label"
            ),
            (2, 1),
            "ASL",
            'bedoelde u "ALS"?',
        ),
        ("ALS Van land IS NL NE Kanaal IS api " + APPROVE, (1, 20), "NE", 'bedoelde u "EN"?'),
        ("ALS Van land IS NL FO BE " + APPROVE, (1, 20), "FO", 'bedoelde u "OF"?'),
        (
            "ALS Van land IS NL DAN Goedkeuren met label NE Retourkosten terugbetalen",
            (1, 45),
            "NE",
            'bedoelde u "EN"?',
        ),
        ("ALS Van land IS NL THEN Skip review", (1, 20), "THEN", 'bedoelde u "DAN"?'),
        ("IF From country IS NL TEHN Approve with label", (1, 23), "TEHN", 'did you mean "THEN"?'),
        ("FI From country IS NL THEN Skip review", (1, 1), "FI", 'did you mean "IF"?'),
        (
            "IF From country IS NL ADN Channel IS api THEN Skip review",
            (1, 23),
            "ADN",
            'did you mean "AND"?',
        ),
        ("IF From country IS NL RO BE THEN Skip review", (1, 23), "RO", 'did you mean "OR"?'),
    ],
)
def test_keyword_typos_get_did_you_mean_with_the_caret_on_the_typo(
    text: str, where: tuple[int, int], typed: str, hint: str
) -> None:
    # `DNA` had its caret at the end of the line, `ASL` gave one giant unknown action on
    # line 1 with all ten actions listed.
    diagnostic = only(text)
    assert (diagnostic.line, diagnostic.column, diagnostic.code) == (*where, "keyword-typo")
    assert diagnostic.source_line[diagnostic.column - 1 :].startswith(typed)
    assert diagnostic.message in {f'onverwacht "{typed}"', f'unexpected "{typed}"'}
    assert diagnostic.hint == hint


def test_a_typo_does_not_hide_the_rules_other_mistake() -> None:
    first, second = diagnostics("ALS Van land IS NL DNA Goedkeurn met label")
    assert (first.code, second.code) == ("keyword-typo", "unknown-action")


@pytest.mark.parametrize(
    ("text", "where", "hint"),
    [
        ("ALS Van land IS NL\nGoedkeuren met label", (2, 1), 'schrijf "DAN Goedkeuren met label"'),
        ("ALS Van land IS NL Goedkeuren met label", (1, 20), 'schrijf "DAN Goedkeuren met label"'),
        (
            "ALS Van land IS NL DAN Goedkeuren met label\nRetourkosten terugbetalen",
            (2, 1),
            'schrijf "EN Retourkosten terugbetalen"',
        ),
        ("IF From country IS NL\nSkip review", (2, 1), 'write "THEN Skip review"'),
    ],
)
def test_a_missing_keyword_does_not_swallow_the_next_line(
    text: str, where: tuple[int, int], hint: str
) -> None:
    # A missing DAN swallowed the next line as a value.
    diagnostic = only(text)
    assert (diagnostic.line, diagnostic.column, diagnostic.code) == (*where, "missing-keyword")
    assert diagnostic.hint == hint


def test_values_end_at_the_end_of_a_line() -> None:
    diagnostic = only("ALS Van land IS Verenigd\nKoninkrijk DAN Goedkeuren met label")
    assert (diagnostic.line, diagnostic.column, diagnostic.code) == (2, 1, "syntax")
    assert diagnostic.message == 'onverwacht "Koninkrijk"'
    assert diagnostic.hint == "verwacht DAN of EN of OF"


def test_a_lone_condition_gets_its_typo_too() -> None:
    with pytest.raises(RuleError) as caught:
        rules.compile_condition("Van land IS NL NE Kanaal IS api")
    (diagnostic,) = caught.value.diagnostics
    assert (diagnostic.column, diagnostic.code) == (16, "keyword-typo")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (f"ALS Van land GROTER DAN Nederland {APPROVE}", "GROTER DAN past niet bij Van land"),
        (f"ALS Van land IS GROTER DAN Nederland {APPROVE}", "IS GROTER DAN past niet bij Van land"),
        ("IF From country AT LEAST Germany THEN Skip review", "AT LEAST does not fit From country"),
        (f"ALS Bestelwaarde MINSTENS €5 OF €9 {APPROVE}", "MINSTENS vergelijkt met één waarde"),
    ],
)
def test_operators_are_quoted_as_typed(text: str, message: str) -> None:
    # `GROTER DAN` on a country reported ">".
    diagnostic = only(text)
    assert diagnostic.message.startswith(message)
    assert ">" not in diagnostic.message


@pytest.mark.parametrize(
    ("typed", "meant"), [("==", "="), ("<>", "!="), ("=>", ">="), ("=<", "<=")]
)
def test_an_operator_from_elsewhere_is_quoted_as_typed(typed: str, meant: str) -> None:
    # `==` reported "IS", and a second message followed.
    diagnostic = only(f"ALS Van land {typed} Nederland {APPROVE}")
    assert (diagnostic.column, diagnostic.code) == (14, "unknown-operator")
    assert diagnostic.message == f'onbekende operator "{typed}"'
    assert diagnostic.hint == f'bedoelde u "{meant}"?'


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (f"ALS Van land IS NL €5 {APPROVE}", 'onverwacht "€5"'),
        ("IF From country IS NL €5 THEN Skip review", 'unexpected "€5"'),
        ("IF From country IS NL 12 THEN Skip review", 'unexpected "12"'),
        ('IF From country IS NL "x" THEN Skip review', 'unexpected "x"'),
        ("IF From country IS THEN Skip review", 'unexpected "THEN"'),
    ],
)
def test_syntax_errors_quote_what_was_typed_without_grammar_slips(text: str, message: str) -> None:
    # "unexpected an amount".
    assert only(text).message == message


def test_stray_characters_are_one_message_and_hide_no_other_rule() -> None:
    first, second = diagnostics(f"ALS Van land IS NL ~~~ {APPROVE}\nALS Van lnd IS BE {APPROVE}\n")
    assert (first.code, first.message) == ("bad-characters", "onverwachte tekens '~~~'")
    assert second.code == "unknown-field"


def test_an_unterminated_text_is_one_message() -> None:
    diagnostic = only('ALS Retourreden IS "Te klein DAN Goedkeuren met label')
    assert diagnostic.code == "unterminated-string"


def test_error_and_warning_words_are_in_the_files_language() -> None:
    assert str(only(f"ALS Van lnd IS NL {APPROVE}")).startswith("<rules>:1:5: fout[R008]: ")
    assert str(only("IF From contry IS NL THEN Skip review")).startswith(
        "<rules>:1:4: error[R008]: "
    )
    (dutch,) = rules.parse(f"ALS Bestelwaarde > 1 USD {APPROVE}").warnings
    assert str(dutch).startswith("<rules>:1:20: waarschuwing[R039]: ")
    (english,) = rules.parse("IF Order value > 1 USD THEN Skip review").warnings
    assert str(english).startswith("<rules>:1:18: warning[R039]: ")
    assert english.message.endswith("this comparison never holds")


@pytest.mark.parametrize("value", ["9" * 31, "€" + "9" * 31, "9" * 31 + " EUR"])
def test_a_too_long_number_names_the_digit_limit(value: str) -> None:
    field = "Aantal" if value.isdigit() else "Bestelwaarde"
    diagnostic = only(f"ALS {field} IS {value} {APPROVE}")
    assert diagnostic.code == "number-too-long"
    assert diagnostic.message == "dit getal is te lang: hoogstens 30 cijfers"


# -- codes ---------------------------------------------------------------------------------------

#: Message keys that are hints or parts of messages, not diagnostics of their own.
HINTS = {
    "expected",
    "unterminated-hint",
    "choose-from",
    "did-you-mean",
    "known-fields",
    "known-actions",
    "use-operators",
    "wrong-language-hint",
    "money-hint",
    "money-groups-hint",
    "number-hint",
    "ambiguous-hint",
    "dollar-hint",
    "other-currency-hint",
    "yes-no-hint",
    "request-action-hint",
    "contradiction-hint",
    "overridden-hint",
    "missing-keyword-hint",
    "comma-hint",
    "utf8-hint",
    "mixed-and-or-hint",
    "undoes-not-returnable-hint",
}


def test_every_diagnostic_has_a_stable_code_and_an_explanation() -> None:
    covered = {slug for entry in CODES for slug in entry.slugs}
    assert set(MESSAGES) - HINTS == covered, "add the new message to rules/_codes.py"
    numbers = [entry.code for entry in CODES]
    assert all(re.fullmatch(r"R\d{3}", code) for code in numbers)
    assert numbers == sorted(set(numbers))
    assert all(entry.nl and entry.en for entry in CODES)


@pytest.mark.parametrize(
    "entry", [e for e in CODES if e.examples is not None], ids=lambda e: e.code
)
def test_each_codes_example_gives_it_and_the_put_right_text_loads(entry: rules.Explanation) -> None:
    assert entry.examples is not None
    for language, (wrong, right) in entry.examples.items():
        try:
            found = rules.parse(wrong).warnings
        except RuleError as error:
            found = error.diagnostics
        assert entry.slug in {d.code for d in found}, (language, wrong)
        assert {d.stable_code for d in found if d.code == entry.slug} == {entry.code}
        fixed = rules.parse(right)
        assert entry.slug not in {d.code for d in fixed.warnings}
        assert fixed.language == language


def test_find_code_by_number_or_name() -> None:
    assert rules.find_code("R012") is rules.find_code("unknown-choice")
    assert rules.find_code("r12") is rules.find_code("R012")
    assert rules.find_code("bad-characters") is rules.find_code("R002")
    assert rules.find_code("R999") is None
    assert rules.find_code("nonsense") is None


def test_the_codes_page_is_generated_from_the_registry() -> None:
    page = ROOT / _docs.RULE_CODES_PAGE
    assert page.read_text(encoding="utf-8") == _docs.rule_codes_markdown(), (
        "docs/rule-codes.md is stale: run `make docs`"
    )


# -- 5. formatter and explain --------------------------------------------------------------------


def test_an_end_of_line_comment_stays_with_its_own_rule() -> None:
    # It moved above the next rule.
    text = (
        "# over Nederland\n"
        "ALS Van land IS NL\n"
        "DAN Goedkeuren met label # binnenland\n"
        "# over België\n"
        "ALS Van land IS BE DAN Retouraanvraag inschakelen # buurland\n"
        "# einde\n"
    )
    ruleset = rules.parse(text)
    assert [r.comments for r in ruleset.rules] == [
        ("over Nederland", "binnenland"),
        ("over België", "buurland"),
    ]
    assert ruleset.trailing_comments == ("einde",)
    formatted = rules.format(ruleset)
    assert formatted.index("# binnenland") < formatted.index("ALS Van land IS Nederland")
    assert formatted.index("# buurland") > formatted.index("DAN Goedkeuren met label")
    assert rules.format(rules.parse(formatted)) == formatted


def test_explicit_parentheses_inside_of_are_kept() -> None:
    text = f"ALS Van land IS NL OF (Kanaal IS api EN Aantal > 2) {APPROVE}"
    ruleset = rules.parse(text)
    condition = ruleset.rules[0].condition
    assert isinstance(condition, Or)
    assert rules.format(ruleset).splitlines()[0] == (
        "ALS Van land IS Nederland OF (Kanaal IS api EN Aantal GROTER DAN 2)"
    )
    english = rules.format(ruleset, language="en")
    assert english.splitlines()[0] == (
        "IF From country IS Netherlands OR (Channel IS api AND Quantity GREATER THAN 2)"
    )
    assert rules.parse(english) == ruleset
    not_list = rules.parse(f"ALS NIET (Van land IS NL OF BE) {APPROVE}")
    assert rules.format(not_list).startswith("ALS NIET (Van land IS Nederland OF België)\n")


def test_long_conditions_wrap_at_a_readable_width() -> None:
    countries = " OF ".join(["Duitsland", "Oostenrijk", "Zwitserland", "Frankrijk", "Italië"] * 3)
    text = (
        'REGEL "Buitenland": ALS Van land IS ' + countries + " EN Bestelwaarde > €50 "
        'EN (Kanaal IS api OF Terugbetaalwijze IS winkeltegoed OF ruilen OF "geld terug") '
        'DAN Retourkosten €6,95 EN Verzenden met "DHL Express" EN Retourkosten terugbetalen'
    )
    ruleset = rules.parse(text)
    for language in ("nl", "en"):
        formatted = rules.format(ruleset, language=language)
        lines = formatted.splitlines()
        assert len(lines) > 3
        assert all(len(line) <= WIDTH for line in lines), formatted
        assert all(line.startswith(("REGEL", "RULE", "DAN", "THEN", " ")) for line in lines)
        assert rules.parse(formatted) == ruleset
        assert rules.format(rules.parse(formatted)) == formatted


def test_explain_in_english_is_entirely_english_trace_included() -> None:
    # The trace lines of explain(…, "en") were in Dutch.
    ruleset = rules.parse(
        'REGEL "Binnenland": ALS Van land IS NL DAN Goedkeuren met label EN Retourkosten €2\n'
        "ALS Aantal > 0 DAN Artikel niet retourneerbaar\n"
    )
    report = ruleset.explain(request(), "en")
    assert "  · Binnenland: Approve with label (overridden by rule 2), Return fee €2.00" in report
    assert "  · rule 2 [item 1]: Unable to return item" in report
    assert "Outcome: not returnable (by rule 2)" in report
    assert "  not returnable: item 1: This item cannot be returned." in report
    dutch_words = {"regel", "artikel", "geldt", "waar", "onwaar", "Uitkomst", "Goedkeuren", "Dit"}
    assert not dutch_words & set(re.findall(r"\w+", report))
    dutch = ruleset.explain(request())
    assert "  · regel 2 [artikel 1]: Artikel niet retourneerbaar" in dutch
    assert ruleset.evaluate(request()).decision is Decision.NOT_RETURNABLE
