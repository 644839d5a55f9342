"""``RuleSet.explain``: every rule and comparison with the request's actual values.

This walks the checked rules directly (it is not on the hot path), with the same three-valued
logic as the compiled code: an unknown value makes a comparison unknown, and unknown is not true.
Everything is in the requested language, the outcome's trace lines included: for another
language than the rules', the outcome comes from the same rules loaded in that language.
"""

from __future__ import annotations

import datetime as dt
import weakref
from collections.abc import Sequence
from decimal import Decimal
from typing import TYPE_CHECKING

import attrs

from retouraanvraag.model import Money, ReturnItem, ReturnRequest, country_name
from retouraanvraag.rules._compiler import normalise_tags, normalise_text, reason_normaliser
from retouraanvraag.rules._format import (
    format_action,
    format_condition,
    format_money,
    format_number,
    quote,
)
from retouraanvraag.rules._messages import DECISION_WORDS, REFUSAL_MESSAGES, REPORT_WORDS, word
from retouraanvraag.rules.fields import Field, FieldType, Scope
from retouraanvraag.rules.tree import And, Compare, Condition, Not, Operator, Or
from retouraanvraag.shop import time_zone

if TYPE_CHECKING:
    from collections.abc import Callable

    from retouraanvraag.rules._ruleset import RuleSet

__all__ = ["evaluate_condition", "explain", "read_field"]


def read_field(
    field: Field, request: ReturnRequest, item: ReturnItem | None, tz: dt.tzinfo
) -> object:
    """The field's raw value for the request (or the item)."""
    if field.scope is Scope.ITEM:
        return field.accessor(item)
    if field.timezone_aware:
        return field.accessor(request, tz)
    return field.accessor(request)


def _holds(  # noqa: C901, PLR0911, PLR0912
    compare: Compare, value: object, reason: Callable[[str], str | None]
) -> bool | None:
    if value is None:
        return None
    operator, values, kind = compare.operator, compare.values, compare.field.type
    if kind is FieldType.TEXT:
        value = normalise_text(value)
        values = tuple(normalise_text(v) for v in values)
    elif kind is FieldType.REASON:
        value = reason(str(value))
    elif kind is FieldType.TAGS:
        tags = normalise_tags(value)
        hit = any(normalise_text(v) in tags for v in values)
        return hit if operator is Operator.CONTAINS else not hit
    if (
        kind is FieldType.MONEY
        and isinstance(value, Money)
        and all(not isinstance(v, Money) or v.currency != value.currency for v in values)
    ):
        return None  # an amount in another currency compares as unknown, not as unequal
    if operator is Operator.IS:
        return value in values
    if operator is Operator.IS_NOT:
        return value not in values
    if operator in {Operator.CONTAINS, Operator.NOT_CONTAINS}:
        hit = any(str(v) in str(value) for v in values)
        return hit if operator is Operator.CONTAINS else not hit
    if operator is Operator.STARTS_WITH:
        return any(str(value).startswith(str(v)) for v in values)
    bound = values[0]
    if isinstance(bound, Money):
        if not isinstance(value, Money) or value.currency != bound.currency:
            return None
        left: object = value.amount
        right: object = bound.amount
    else:
        left, right = value, bound
    if operator is Operator.GT:
        return left > right  # type: ignore[operator,no-any-return]
    if operator is Operator.GE:
        return left >= right  # type: ignore[operator,no-any-return]
    if operator is Operator.LT:
        return left < right  # type: ignore[operator,no-any-return]
    return left <= right  # type: ignore[operator,no-any-return]


def evaluate_condition(
    condition: Condition,
    values: Callable[[Field], object],
    reason: Callable[[str], str | None],
    leaves: list[tuple[Compare, object, bool | None]] | None = None,
) -> bool | None:
    """Three-valued evaluation; ``leaves`` collects every comparison with its value and result."""
    if isinstance(condition, Compare):
        value = values(condition.field)
        result = _holds(condition, value, reason)
        if leaves is not None:
            leaves.append((condition, value, result))
        return result
    if isinstance(condition, Not):
        inner = evaluate_condition(condition.part, values, reason, leaves)
        return None if inner is None else not inner
    results = [evaluate_condition(p, values, reason, leaves) for p in condition.parts]
    if isinstance(condition, And):
        if any(r is False for r in results):
            return False
        return None if any(r is None for r in results) else True
    assert isinstance(condition, Or)  # noqa: S101 - the only other kind
    if any(r is True for r in results):
        return True
    return None if any(r is None for r in results) else False


def _show(field: Field, value: object, language: str, ruleset: RuleSet) -> str:  # noqa: PLR0911
    if value is None:
        return word(REPORT_WORDS, "unknown", language)
    if field.type is FieldType.COUNTRY:
        return f"{country_name(str(value), language)} ({value})"
    if isinstance(value, Money):
        return format_money(value, language)
    if isinstance(value, bool):
        return word(REPORT_WORDS, "yes" if value else "no", language)
    if isinstance(value, (int, Decimal)):
        return format_number(value, language)
    if field.type is FieldType.REASON and value in ruleset.reasons:
        return quote(ruleset.reasons.resolve(str(value)).label(language))
    if field.type is FieldType.CHOICE:
        choice = field.choice_for(value)
        return choice.name(language) if choice else str(value)
    if field.type is FieldType.TAGS:
        return ", ".join(sorted(str(t) for t in value)) or "-"  # type: ignore[attr-defined]
    if field.type is FieldType.DATE and isinstance(value, dt.date):
        return value.isoformat()
    return quote(str(value))


def _truth(result: bool | None, language: str) -> str:
    key = "unknown" if result is None else ("true" if result else "false")
    return word(REPORT_WORDS, key, language)


def explain(ruleset: RuleSet, request: ReturnRequest, language: str) -> str:
    """The report behind :meth:`RuleSet.explain`."""
    tz = time_zone(ruleset.timezone)
    reason = reason_normaliser(ruleset.reasons)
    out: list[str] = []
    item_label = word(REPORT_WORDS, "items", language)
    for rule in ruleset.rules:
        if not rule.enabled:
            actions = ", ".join(_action_texts(ruleset, rule.number - 1, language))
            off = word(REPORT_WORDS, "switched-off", language)
            out.append(f"{rule.display_name(language)}: {off} → {actions}")
            continue
        scopes: Sequence[ReturnItem | None] = request.items if rule.scope is Scope.ITEM else (None,)
        results = []
        detail: list[str] = []
        for position, item in enumerate(scopes):
            cache: dict[str, object] = {}

            def values(
                field: Field, item: ReturnItem | None = item, cache: dict[str, object] = cache
            ) -> object:
                if field.key not in cache:
                    cache[field.key] = read_field(field, request, item, tz)
                return cache[field.key]

            leaves: list[tuple[Compare, object, bool | None]] = []
            result = evaluate_condition(rule.condition, values, reason, leaves)
            results.append(result)
            prefix = "  "
            if item is not None:
                detail.append(
                    f"  {item_label} {position + 1} ({item.sku}): {_truth(result, language)}"
                )
                prefix = "    "
            for compare, value, leaf in leaves:
                shown = _show(compare.field, value, language, ruleset)
                text = format_condition(compare, language, ruleset.reasons)
                detail.append(
                    f"{prefix}{text} → {_truth(leaf, language)} "
                    f"({compare.field.name(language)} = {shown})"
                )
        matched = any(r is True for r in results)
        status = word(REPORT_WORDS, "matches" if matched else "no-match", language)
        actions = ", ".join(line for line in _action_texts(ruleset, rule.number - 1, language))
        out.append(f"{rule.display_name(language)}: {status} → {actions}")
        out.extend(detail)
    out.append(_summary(ruleset, request, language))
    return "\n".join(out) + "\n"


def _action_texts(ruleset: RuleSet, index: int, language: str) -> list[str]:
    return [format_action(a, language) for a in ruleset.rules[index].actions]


#: The same rules in another language, per rule set and language (a rule set is compiled once
#: per language it is explained in, and forgotten with it).
_TRANSLATED: weakref.WeakKeyDictionary[RuleSet, dict[str, RuleSet]] = weakref.WeakKeyDictionary()


def _in_language(ruleset: RuleSet, language: str) -> RuleSet:
    """``ruleset`` as if written in ``language``: its trace names rules and actions in it."""
    if language == ruleset.language:
        return ruleset
    known = _TRANSLATED.setdefault(ruleset, {})
    if language not in known:
        known[language] = attrs.evolve(ruleset, language=language)
    return known[language]


def _refusal(message: str, language: str) -> str:
    """A refused item's message; the library's own default one in the report's language."""
    for key in ("item", "order"):
        if message in REFUSAL_MESSAGES[key]:
            return word(REFUSAL_MESSAGES, key, language)
    return message


def _summary(ruleset: RuleSet, request: ReturnRequest, language: str) -> str:
    outcome = _in_language(ruleset, language).evaluate(request)
    head = word(REPORT_WORDS, "result", language)
    if outcome.decision is None:
        lines = [f"{head}: {word(REPORT_WORDS, 'no-decision', language)}"]
    else:
        decided = word(DECISION_WORDS, outcome.decision.value, language)
        by = word(REPORT_WORDS, "by", language)
        lines = [f"{head}: {decided} ({by} {outcome.rule})"]
    if outcome.reason:
        lines.append(f"  {word(REPORT_WORDS, 'reason', language)}: {quote(outcome.reason)}")
    if outcome.return_fee is not None:
        fee = format_money(outcome.return_fee, language)
        lines.append(f"  {word(REPORT_WORDS, 'fee', language)}: {fee}")
    if outcome.carrier:
        lines.append(f"  {word(REPORT_WORDS, 'carrier', language)}: {outcome.carrier}")
    if outcome.return_window_days is not None:
        days = word(REPORT_WORDS, "days", language).format(days=outcome.return_window_days)
        lines.append(f"  {word(REPORT_WORDS, 'window', language)}: {days}")
    if outcome.refund_return_fee:
        lines.append(f"  {word(REPORT_WORDS, 'refund', language)}")
    for refused in outcome.refused:
        where = (
            word(REPORT_WORDS, "order", language)
            if refused.index is None
            else f"{word(REPORT_WORDS, 'items', language)} {refused.index + 1}"
        )
        text = _refusal(refused.message, language)
        lines.append(f"  {word(REPORT_WORDS, 'refused', language)}: {where}: {text}")
    lines.extend(f"  · {t}" for t in outcome.trace)
    return "\n".join(lines)
