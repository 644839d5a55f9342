"""Canonical text for checked rules, in Dutch or English: ``parse(format(x)) == x``."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Final

from babel.numbers import get_currency_precision

from retouraanvraag.model import Money, ReasonCatalogue, country_name
from retouraanvraag.rules._lexer import KEYWORDS
from retouraanvraag.rules._messages import OPERATOR_WORDS, word
from retouraanvraag.rules.fields import ACTIONS_BY_KIND, Argument, Field, FieldType
from retouraanvraag.rules.tree import Action, And, Compare, Condition, Not, Operator, Or, Rule

__all__ = ["format_action", "format_condition", "format_rule", "format_rules", "format_value"]

_KEYWORD_WORDS: Final = {
    language: frozenset(w for phrase in table for w in phrase.split())
    for language, table in KEYWORDS.items()
}
_BARE_WORD: Final = re.compile(r"[^\W\d_][\w'\u2019\-]*")
_FORMAT_OPERATORS: Final = {
    "nl": {"GT": "GROTER DAN", "LT": "KLEINER DAN", "GE": "MINSTENS", "LE": "HOOGSTENS"},
    "en": {"GT": "GREATER THAN", "LT": "LESS THAN", "GE": "AT LEAST", "LE": "AT MOST"},
}
_CURRENCY_SIGNS: Final = {"EUR": "€", "USD": "$", "GBP": "£"}


def quote(text: str) -> str:
    r"""Text in double quotes, ``"`` and ``\\`` escaped."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _bare_or_quoted(text: str, language: str) -> str:
    words = text.split()
    if words and all(
        _BARE_WORD.fullmatch(w) and w.casefold() not in _KEYWORD_WORDS[language] for w in words
    ):
        return " ".join(words)
    return quote(text)


def format_number(value: int | Decimal, language: str) -> str:
    """``4.5`` as ``4,5`` in Dutch, ``4.5`` in English; whole numbers without decimals."""
    text = str(value) if isinstance(value, int) else format(value, "f")
    return text.replace(".", ",") if language == "nl" else text


def format_money(value: Money, language: str) -> str:
    """``€4,95`` (nl), ``€4.95`` (en), ``4,95 CHF``; always readable back by ``Money.parse``."""
    precision = get_currency_precision(value.currency)
    number = f"{value.decimal:.{precision}f}"
    if language == "nl":
        number = number.replace(".", ",")
    sign = _CURRENCY_SIGNS.get(value.currency)
    return f"{sign}{number}" if sign else f"{number} {value.currency}"


def format_value(  # noqa: PLR0911
    field: Field, value: object, language: str, reasons: ReasonCatalogue | None = None
) -> str:
    """One resolved value as rule text for ``field``."""
    kind = field.type
    if kind is FieldType.COUNTRY:
        return _bare_or_quoted(country_name(str(value), language), language)
    if kind is FieldType.MONEY and isinstance(value, Money):
        return format_money(value, language)
    if kind is FieldType.NUMBER and isinstance(value, (int, Decimal)):
        return format_number(value, language)
    if kind is FieldType.REASON:
        reason = reasons.resolve(str(value)) if reasons is not None and value in reasons else None
        return quote(reason.label(language) if reason is not None else str(value))
    if kind is FieldType.CHOICE:
        choice = field.choice_for(value)
        return _bare_or_quoted(choice.name(language) if choice else str(value), language)
    if kind is FieldType.YES_NO:
        yes, no = ("ja", "nee") if language == "nl" else ("yes", "no")
        return yes if value else no
    return quote(str(value))


def _operator(operator: Operator, language: str) -> str:
    return _FORMAT_OPERATORS[language].get(operator.value) or word(
        OPERATOR_WORDS, operator.value, language
    )


def format_condition(
    condition: Condition, language: str, reasons: ReasonCatalogue | None = None
) -> str:
    """A condition as canonical text; parentheses only where ``EN`` before ``OF`` needs them."""
    if isinstance(condition, Compare):
        separator = " OF " if language == "nl" else " OR "
        values = separator.join(
            format_value(condition.field, v, language, reasons) for v in condition.values
        )
        field = condition.field.name(language)
        return f"{field} {_operator(condition.operator, language)} {values}"
    if isinstance(condition, Not):
        inner = format_condition(condition.part, language, reasons)
        if isinstance(condition.part, (And, Or)):
            inner = f"({inner})"
        return f"{'NIET' if language == 'nl' else 'NOT'} {inner}"
    is_and = isinstance(condition, And)
    if is_and:
        joiner = " EN " if language == "nl" else " AND "
    else:
        joiner = " OF " if language == "nl" else " OR "
    parts = []
    for part in condition.parts:
        text = format_condition(part, language, reasons)
        # EN binds tighter than OF: only an OF inside an EN (or a nested group) needs parentheses.
        if isinstance(part, (Or, type(condition))):
            text = f"({text})"
        parts.append(text)
    return joiner.join(parts)


def format_action(action: Action, language: str) -> str:
    """An action as rule text: ``Afwijzen met reden "…"``, ``Retourkosten €2,00``."""
    spec = ACTIONS_BY_KIND[action.kind]
    name = spec.name(language)
    if action.argument is None:
        return name
    if spec.argument is Argument.MONEY and isinstance(action.argument, Money):
        return f"{name} {format_money(action.argument, language)}"
    return f"{name} {quote(str(action.argument))}"


def format_rule(rule: Rule, language: str, reasons: ReasonCatalogue | None = None) -> str:
    """One rule: its comments, ``[REGEL "…":] ALS …`` and ``DAN … [EN …]`` on the next line."""
    nl = language == "nl"
    lines = [f"# {c}" if c else "#" for c in rule.comments]
    head = ""
    if rule.name is not None:
        head = f"{'REGEL' if nl else 'RULE'} {quote(rule.name)}: "
    condition = format_condition(rule.condition, language, reasons)
    lines.append(f"{head}{'ALS' if nl else 'IF'} {condition}")
    actions = (" EN " if nl else " AND ").join(format_action(a, language) for a in rule.actions)
    lines.append(f"{'DAN' if nl else 'THEN'} {actions}")
    return "\n".join(lines)


def format_rules(
    rules: tuple[Rule, ...],
    language: str,
    reasons: ReasonCatalogue | None = None,
    trailing_comments: tuple[str, ...] = (),
) -> str:
    """A whole file: rules separated by a blank line, ending in a newline."""
    blocks = [format_rule(rule, language, reasons) for rule in rules]
    if trailing_comments:
        blocks.append("\n".join(f"# {c}" if c else "#" for c in trailing_comments))
    return "\n\n".join(blocks) + "\n" if blocks else ""
