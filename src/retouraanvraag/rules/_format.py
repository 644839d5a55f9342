"""Canonical text for checked rules, in Dutch or English: ``parse(format(x)) == x``.

Parentheses are written wherever EN and OF meet (``A OF (B EN C)``), and around a list of
values after NIET (``NIET (Van land IS Nederland OF België)``), so the text reads as it means.
A rule wider than :data:`WIDTH` columns breaks before its EN and OF, continuation lines
indented; a line never breaks inside a value, since a value ends at the end of its line.
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from typing import Final

from babel.numbers import get_currency_precision

from retouraanvraag.model import Money, ReasonCatalogue, country_name
from retouraanvraag.rules._lexer import DATE_OPERATORS, KEYWORDS
from retouraanvraag.rules._messages import OPERATOR_WORDS, word
from retouraanvraag.rules.fields import ACTIONS_BY_KIND, DAY_WORDS, Argument, Field, FieldType
from retouraanvraag.rules.tree import Action, And, Compare, Condition, Not, Operator, Or, Rule

__all__ = [
    "WIDTH",
    "format_action",
    "format_condition",
    "format_rule",
    "format_rules",
    "format_value",
]

#: The width canonical text wraps at.
WIDTH: Final = 88
#: How far continuation lines are indented, per level.
_INDENT: Final = 4

_KEYWORD_WORDS: Final = {
    language: frozenset(w for phrase in table for w in phrase.split())
    for language, table in KEYWORDS.items()
}
_BARE_WORD: Final = re.compile(r"[^\W\d_][\w'\u2019\-]*")
_FORMAT_OPERATORS: Final = {
    "nl": {"GT": "GROTER DAN", "LT": "KLEINER DAN", "GE": "MINSTENS", "LE": "HOOGSTENS"},
    "en": {"GT": "GREATER THAN", "LT": "LESS THAN", "GE": "AT LEAST", "LE": "AT MOST"},
}
_DATE_OPERATORS: Final = {
    language: {type_: phrase.upper() for phrase, type_ in table.items()}
    for language, table in DATE_OPERATORS.items()
}
#: Signs written before an amount; other currencies by code (``$`` names several, never written).
_CURRENCY_SIGNS: Final = {"EUR": "€", "GBP": "£"}


#: What a backslash escapes inside "…": the lexer ends a text at a straight or curly double quote.
_ESCAPED: Final = str.maketrans(
    {"\\": "\\\\", '"': '\\"', "\u201c": "\\\u201c", "\u201d": "\\\u201d"}
)


def quote(text: str) -> str:
    r"""Text in double quotes; ``\\``, ``"`` and the curly ``“`` ``”`` escaped with ``\\``."""
    return '"' + text.translate(_ESCAPED) + '"'


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
    if kind is FieldType.DATE and isinstance(value, dt.date):
        return value.isoformat()  # bare: VOOR / NA / OP are operators only before a date
    return quote(str(value))


def _operator(operator: Operator, language: str, field: Field | None = None) -> str:
    if field is not None and field.type is FieldType.DATE:
        date_word = _DATE_OPERATORS[language].get(operator.value)
        if date_word is not None:
            return date_word
    return _FORMAT_OPERATORS[language].get(operator.value) or word(
        OPERATOR_WORDS, operator.value, language
    )


def _keyword(name: str, language: str) -> str:
    return {"AND": ("EN", "AND"), "OR": ("OF", "OR"), "NOT": ("NIET", "NOT")}[name][
        language != "nl"
    ]


def _grouped(part: Condition, parent: Condition) -> bool:
    """Whether ``part`` is written in parentheses inside ``parent``.

    An OF inside an EN needs them; an EN inside an OF does not (EN binds tighter) but gets them,
    as merchants write them, so that nobody has to know which binds tighter.
    """
    if isinstance(parent, Not):
        return isinstance(part, (And, Or)) or (isinstance(part, Compare) and len(part.values) > 1)
    return isinstance(part, (And, Or))


def _compare_pieces(compare: Compare, language: str, reasons: ReasonCatalogue | None) -> list[str]:
    """``Van land IS Nederland``, then ``OF België`` for every further value."""
    values = [format_value(compare.field, v, language, reasons) for v in compare.values]
    operator = _operator(compare.operator, language, compare.field)
    head = f"{compare.field.name(language)} {operator} {values[0]}"
    return [head, *(f"{_keyword('OR', language)} {v}" for v in values[1:])]


def format_condition(
    condition: Condition, language: str, reasons: ReasonCatalogue | None = None
) -> str:
    """A condition as canonical text on one line (see :func:`_layout` for the wrapped form)."""
    if isinstance(condition, Compare):
        return " ".join(_compare_pieces(condition, language, reasons))
    if isinstance(condition, Not):
        inner = format_condition(condition.part, language, reasons)
        if _grouped(condition.part, condition):
            inner = f"({inner})"
        return f"{_keyword('NOT', language)} {inner}"
    joiner = f" {_keyword('AND' if isinstance(condition, And) else 'OR', language)} "
    parts = []
    for part in condition.parts:
        text = format_condition(part, language, reasons)
        parts.append(f"({text})" if _grouped(part, condition) else text)
    return joiner.join(parts)


def _layout(
    condition: Condition, language: str, reasons: ReasonCatalogue | None, column: int, indent: int
) -> list[str]:
    """The condition as lines: the first goes on at ``column``, the others start indented.

    A condition that fits on the rest of the line stays whole; else it breaks before each of
    its EN / OF (or, for a comparison, before each further value), and parts that still do not
    fit break in turn, one level deeper.
    """
    flat = format_condition(condition, language, reasons)
    if column + len(flat) <= WIDTH:
        return [flat]
    pad = " " * indent
    if isinstance(condition, Compare):  # as many values on a line as fit, the rest deeper
        head, *rest = _compare_pieces(condition, language, reasons)
        filled, at = [head], column
        deeper = " " * (indent + _INDENT)
        for piece in rest:
            if at + len(filled[-1]) + 1 + len(piece) <= WIDTH:
                filled[-1] += f" {piece}"
            else:
                filled.append(deeper + piece)
                at = 0
        return filled
    if isinstance(condition, Not):
        prefix = f"{_keyword('NOT', language)} "
        return _joined(prefix, condition.part, condition, language, reasons, column, indent)
    joiner = _keyword("AND" if isinstance(condition, And) else "OR", language)
    lines: list[str] = []
    for k, part in enumerate(condition.parts):
        prefix = "" if k == 0 else f"{joiner} "
        start = column if k == 0 else indent
        part_lines = _joined(prefix, part, condition, language, reasons, start, indent)
        lines.extend(part_lines if k == 0 else [pad + part_lines[0], *part_lines[1:]])
    return lines


def _joined(  # noqa: PLR0917 - private layout helper
    prefix: str,
    part: Condition,
    parent: Condition,
    language: str,
    reasons: ReasonCatalogue | None,
    column: int,
    indent: int,
) -> list[str]:
    """``prefix`` and ``part`` (in parentheses where :func:`_grouped` says) as lines."""
    if not _grouped(part, parent):
        inner = _layout(part, language, reasons, column + len(prefix), indent)
        return [prefix + inner[0], *inner[1:]]
    inner = _layout(part, language, reasons, column + len(prefix) + 1, indent + _INDENT)
    inner[-1] += ")"
    return [f"{prefix}({inner[0]}", *inner[1:]]


def format_action(action: Action, language: str) -> str:
    """An action as rule text: ``Afwijzen met reden "…"``, ``Retourkosten €2,00``."""
    spec = ACTIONS_BY_KIND[action.kind]
    name = spec.name(language)
    if action.argument is None:
        return name
    if spec.argument is Argument.MONEY and isinstance(action.argument, Money):
        return f"{name} {format_money(action.argument, language)}"
    if spec.argument is Argument.DAYS:
        return f"{name} {action.argument} {DAY_WORDS[language][0]}"
    return f"{name} {quote(str(action.argument))}"


def format_rule(rule: Rule, language: str, reasons: ReasonCatalogue | None = None) -> str:
    """One rule: its comments, ``[REGEL "…":] ALS …`` and ``DAN … [EN …]`` on the next line.

    Lines wider than :data:`WIDTH` wrap before EN and OF, continuation lines indented.
    """
    nl = language == "nl"
    lines = [f"# {c}" if c else "#" for c in rule.comments]
    head = "" if rule.enabled else f"{'UIT' if nl else 'OFF'} "
    if rule.name is not None:
        head += f"{'REGEL' if nl else 'RULE'} {quote(rule.name)}: "
    head += f"{'ALS' if nl else 'IF'} "
    condition = _layout(rule.condition, language, reasons, len(head), _INDENT)
    lines += [head + condition[0], *condition[1:]]
    then = f"{'DAN' if nl else 'THEN'} "
    actions = [format_action(a, language) for a in rule.actions]
    joiner = f" {_keyword('AND', language)} "
    if len(then) + len(joiner.join(actions)) <= WIDTH:
        lines.append(then + joiner.join(actions))
    else:
        lines.append(then + actions[0])
        lines += [f"{' ' * _INDENT}{joiner.strip()} {action}" for action in actions[1:]]
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
