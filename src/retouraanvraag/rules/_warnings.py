"""Warnings about a checked file, each found in time linear in the file's size.

A rule that can never match; one always overridden by a later rule; one that undoes an earlier
"not returnable" for some items; ``EN`` and ``OF`` mixed without parentheses; two rules with one
name. They are sound and incomplete: a warning is only given when it is true, and the search
for it is bounded (every rule is compared with a bounded number of others, every comparison in
a bounded number of tests), so no file within the limits makes checking slow.
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Final

import attrs

from retouraanvraag.model import Money
from retouraanvraag.rules._checker import Checker
from retouraanvraag.rules._compiler import normalise_text
from retouraanvraag.rules._lexer import Chunk
from retouraanvraag.rules._messages import message
from retouraanvraag.rules.diagnostics import Position, Severity
from retouraanvraag.rules.fields import ACTIONS_BY_KIND, ActionKind, Field, FieldType
from retouraanvraag.rules.tree import And, Compare, Condition, Not, Operator, Or, Rule

__all__ = ["groups_of", "mixed_and_or", "never_matches", "warn"]

#: How many later rules (the nearest that share a field) are tried as overriding each rule.
CANDIDATES: Final = 16
#: How many times one rule is tried as overriding an earlier one.
TRIES: Final = 8
#: How many earlier "not returnable" rules a deciding rule is compared with.
REFUSERS: Final = 32
#: An OF of more parts than this is not split into cases when proving an override.
_CASES: Final = 8
_NOT_RETURNABLE: Final = frozenset(
    {ActionKind.ITEM_NOT_RETURNABLE, ActionKind.ORDER_NOT_RETURNABLE}
)
_TEXT_TYPES: Final = frozenset({FieldType.TEXT, FieldType.TAGS})

#: A field's comparisons are grouped per currency: amounts in two currencies never compare.
_GroupKey = tuple[str, str]
_Bound = tuple[object, bool]  # (value, inclusive)


def warn(checker: Checker, rules: Sequence[Rule], chunks: Sequence[Chunk]) -> None:
    """Report every warning about ``rules`` (``chunks``: their tokens, by rule number).

    A rule switched off is left out: it never matches, overrides or undoes anything.
    """
    language = checker.language
    rules = [rule for rule in rules if rule.enabled]
    named: dict[str, Rule] = {}
    interned = _Interned(rules)
    summaries: list[_Summary] = []
    for rule in rules:
        if rule.name is not None:
            if rule.name in named:
                checker.report(
                    rule.position,
                    "duplicate-name",
                    severity=Severity.WARNING,
                    name=rule.name,
                    other=named[rule.name].number,
                )
            named.setdefault(rule.name, rule)
        summary = _Summary.of(rule, interned)
        summaries.append(summary)
        top = summary.cases[0].facts if len(summary.cases) == 1 else None
        field = never_matches(rule.condition, top)
        if field is not None:
            checker.report(
                rule.position,
                "never-matches",
                severity=Severity.WARNING,
                field=field.name(language),
            )
        if 0 < rule.number <= len(chunks):
            mixed = mixed_and_or(chunks[rule.number - 1].tokens)
            if mixed is not None:
                checker.report(
                    mixed,
                    "mixed-and-or",
                    severity=Severity.WARNING,
                    hint=message("mixed-and-or-hint", language),
                )
    for rule, other in _overridden(rules, summaries, interned):
        name = other.display_name(language)
        checker.report(
            rule.position,
            "always-overridden",
            severity=Severity.WARNING,
            hint=message("overridden-hint", language, other=name),
            other=name,
        )
    for rule, refuser in _undoing(rules, summaries):
        decision = next(a for a in rule.actions if a.kind.group == "decision")
        refusal = next(a for a in refuser.actions if a.kind in _NOT_RETURNABLE)
        name = refuser.display_name(language)
        checker.report(
            decision.position,
            "undoes-not-returnable",
            severity=Severity.WARNING,
            hint=message("undoes-not-returnable-hint", language, other=name),
            other=name,
            action=ACTIONS_BY_KIND[refusal.kind].name(language),
        )


def groups_of(rule: Rule) -> frozenset[str]:
    """The kinds of action a rule takes that a later rule can make pointless.

    Decision, fee and carrier: a later matching rule replaces them. The refund: a later rule
    that also refunds whenever this one matches makes this one's refund change nothing.
    """
    return frozenset(a.kind.group for a in rule.actions)


# -- EN and OF without parentheses ---------------------------------------------------------------


def mixed_and_or(tokens: Iterable[object]) -> Position | None:
    """Where a condition first joins ``EN`` and ``OF`` at one level of parentheses.

    ``A EN B OF C`` reads as ``(A EN B) OF C`` (EN binds tighter), which is not always what was
    meant; with parentheses either way there is no doubt. An ``OF`` between values of one
    comparison (``IS NL OF BE``) is a list of values, not a condition's ``OF``.
    """
    levels: list[set[str]] = [set()]
    for token in tokens:
        kind = getattr(token, "type", "")
        if kind == "THEN":
            break
        if kind == "LPAR":
            levels.append(set())
        elif kind == "RPAR":
            if len(levels) > 1:
                levels.pop()
        elif kind in {"AND", "OR"}:
            seen = levels[-1]
            seen.add(kind)
            if len(seen) == 2:  # noqa: PLR2004 - both kinds
                return Position(getattr(token, "line", 1) or 1, getattr(token, "column", 1) or 1)
    return None


# -- what a condition requires ----------------------------------------------------------------


def _group_key(compare: Compare) -> _GroupKey:
    first = compare.values[0] if compare.values else None
    currency = first.currency if isinstance(first, Money) else ""
    return (compare.field.key, currency)


def _ordering_key(value: object) -> object | None:
    if isinstance(value, Money):
        return value.amount
    if isinstance(value, (int, Decimal)) and not isinstance(value, bool):
        return value
    if isinstance(value, dt.date):  # one field's bounds are all dates: they order
        return value
    return None


def _value_key(field: Field, value: object) -> object:
    """A value as the compiled rules compare it (text ignoring case and surrounding space)."""
    if field.type in _TEXT_TYPES:
        return normalise_text(value)
    if isinstance(value, Money):
        return value.amount
    return value


def _one_currency(compare: Compare) -> bool:
    currencies = {v.currency for v in compare.values if isinstance(v, Money)}
    return len(currencies) <= 1


@attrs.define
class _Facts:
    """What a conjunction of comparisons on one field (one currency) requires of its value."""

    field: Field
    allowed: frozenset[object] | None = None
    excluded: set[object] = attrs.field(factory=set)
    low: _Bound | None = None
    high: _Bound | None = None
    #: "contains one of" and "starts with one of", per comparison; "contains none of".
    contains: list[frozenset[object]] = attrs.field(factory=list)
    starts: list[frozenset[object]] = attrs.field(factory=list)
    lacks: set[object] = attrs.field(factory=set)
    #: Whether a comparison could not be read as bounds (it is left out: weaker, still sound).
    opaque: bool = False

    def add(self, compare: Compare) -> None:
        """Require ``compare`` too."""
        field, operator = self.field, compare.operator
        if field.type is FieldType.MONEY and not _one_currency(compare):
            self.opaque = True
            return
        values = frozenset(_value_key(field, v) for v in compare.values)
        if operator is Operator.IS:
            self.allowed = values if self.allowed is None else self.allowed & values
        elif operator is Operator.IS_NOT:
            self.excluded |= values
        elif operator is Operator.CONTAINS:
            self.contains.append(values)
        elif operator is Operator.STARTS_WITH:
            self.starts.append(values)
        elif operator is Operator.NOT_CONTAINS:
            self.lacks |= values
        else:
            self._bound(compare)

    def _bound(self, compare: Compare) -> None:
        operator = compare.operator
        bound = _ordering_key(compare.values[0])
        if bound is None:
            self.opaque = True
            return
        inclusive = operator is Operator.GE or operator is Operator.LE
        if operator is Operator.GT or operator is Operator.GE:
            if self.low is None or _tighter(self.low, (bound, inclusive), low=True):
                self.low = (bound, inclusive)
        elif self.high is None or _tighter(self.high, (bound, inclusive), low=False):
            self.high = (bound, inclusive)

    def possible(self) -> frozenset[object] | None:
        """The values ``IS`` leaves, less those excluded or out of bounds (``None``: any)."""
        if self.allowed is None:
            return None
        return frozenset(v for v in self.allowed - self.excluded if self.within(v))

    def within(self, value: object) -> bool:
        """Whether ``value`` lies within the bounds."""
        key = _ordering_key(value) if not isinstance(value, bool) else None
        if key is None:
            return True
        return _meets(key, self.low, low=True) and _meets(key, self.high, low=False)

    def satisfiable(self) -> bool:
        """Whether a value can meet every requirement (``IS``, ``IS NIET`` and bounds)."""
        possible = self.possible()
        if possible is not None:
            return bool(possible)
        if self.low is not None and self.high is not None:
            (lo, lo_in), (hi, hi_in) = self.low, self.high
            return bool(lo < hi or (lo == hi and lo_in and hi_in))  # type: ignore[operator]
        return True

    def implies(self, compare: Compare) -> bool:  # noqa: C901, PLR0911
        """Whether every value meeting these requirements makes ``compare`` certainly true."""
        field, operator = self.field, compare.operator
        if field.type is FieldType.MONEY and not _one_currency(compare):
            return False
        values = frozenset(_value_key(field, v) for v in compare.values)
        possible = self.possible()
        if possible is not None and not possible:
            return False  # never true: that is the never-matches warning, not this one
        if operator is Operator.IS:
            return possible is not None and possible <= values
        if operator is Operator.IS_NOT:
            return (possible is not None and not possible & values) or values <= self.excluded
        if operator is Operator.CONTAINS:
            if possible is not None and all(_contains(v, values) for v in possible):
                return True
            return any(alternatives <= values for alternatives in self.contains)
        if operator is Operator.STARTS_WITH:
            if possible is not None and all(_starts(v, values) for v in possible):
                return True
            return any(all(_starts(a, values) for a in s) for s in self.starts)
        if operator is Operator.NOT_CONTAINS:
            return values <= self.lacks
        bound = _ordering_key(compare.values[0])
        if bound is None:
            return False
        if possible is not None:
            probe = _Facts(field)
            probe.add(compare)
            return all(probe.within(v) for v in possible)
        inclusive = operator is Operator.GE or operator is Operator.LE
        if operator is Operator.GT or operator is Operator.GE:
            return self.low is not None and not _tighter(self.low, (bound, inclusive), low=True)
        return self.high is not None and not _tighter(self.high, (bound, inclusive), low=False)


def _tighter(old: _Bound, new: _Bound, *, low: bool) -> bool:
    """Whether bound ``new`` excludes more than ``old`` (a lower or an upper bound)."""
    (a, a_in), (b, b_in) = old, new
    if a == b:
        return a_in and not b_in
    return bool(b > a) if low else bool(b < a)  # type: ignore[operator]


def _meets(key: object, bound: _Bound | None, *, low: bool) -> bool:
    if bound is None:
        return True
    value, inclusive = bound
    try:
        if key == value:
            return inclusive
        return bool(key > value) if low else bool(key < value)  # type: ignore[operator]
    except TypeError:  # pragma: no cover - the checker gives one kind of value per field
        return True


def _contains(text: object, parts: frozenset[object]) -> bool:
    return isinstance(text, str) and any(isinstance(p, str) and p in text for p in parts)


def _starts(text: object, prefixes: frozenset[object]) -> bool:
    return isinstance(text, str) and any(
        isinstance(p, str) and text.startswith(p) for p in prefixes
    )


def _conjuncts(condition: Condition) -> list[Compare]:
    """The comparisons a condition certainly requires (its top level ones)."""
    if isinstance(condition, Compare):
        return [condition]
    if isinstance(condition, And):
        return [p for p in condition.parts if isinstance(p, Compare)]
    return []


def _facts(compares: Iterable[Compare]) -> dict[_GroupKey, _Facts]:
    found: dict[_GroupKey, _Facts] = {}
    for compare in compares:
        key = _group_key(compare)
        facts = found.get(key)
        if facts is None:
            facts = found[key] = _Facts(compare.field)
        facts.add(compare)
    return found


def _meet(a: _Facts, b: _Facts) -> bool:
    """Whether one value can meet the requirements of both (``IS``, ``IS NIET``, bounds)."""
    low = (
        a.low
        if b.low is None or (a.low is not None and _tighter(b.low, a.low, low=True))
        else b.low
    )
    high = (
        a.high
        if b.high is None or (a.high is not None and _tighter(b.high, a.high, low=False))
        else b.high
    )
    if a.allowed is not None or b.allowed is not None:
        if a.allowed is None or b.allowed is None:
            allowed = a.allowed if b.allowed is None else b.allowed
        else:
            allowed = (
                a.allowed & b.allowed if len(a.allowed) < len(b.allowed) else b.allowed & a.allowed
            )
        assert allowed is not None  # noqa: S101 - one of the two is set
        probe = _Facts(a.field, low=low, high=high)
        return any(v not in a.excluded and v not in b.excluded and probe.within(v) for v in allowed)
    if low is not None and high is not None:
        (lo, lo_in), (hi, hi_in) = low, high
        return bool(lo < hi or (lo == hi and lo_in and hi_in))  # type: ignore[operator]
    return True


def never_matches(
    condition: Condition, facts: dict[_GroupKey, _Facts] | None = None
) -> Field | None:
    """The field whose comparisons cannot all hold, when ``condition`` can never be true.

    ``facts``: what the condition's top-level comparisons require, when already known.
    """
    if isinstance(condition, Compare):
        return None  # one comparison always holds for some value
    if isinstance(condition, Or):
        fields = [never_matches(p) for p in condition.parts]
        return fields[0] if all(f is not None for f in fields) else None
    if isinstance(condition, Not):
        return None
    for part in condition.parts:
        field = never_matches(part)
        if field is not None:
            return field
    for found in (facts if facts is not None else _facts(_conjuncts(condition))).values():
        if not found.satisfiable():
            return found.field
    return None


class _Interned:
    """Every comparison of a file as a number: equal comparisons, one number.

    Comparing comparisons by value hashes their fields and values each time; the checks compare
    the same ones many times, so each is hashed once here and known by its object from then on.
    """

    def __init__(self, rules: Sequence[Rule]) -> None:
        numbers: dict[Compare, int] = {}
        self.by_object: dict[int, int] = {}
        self.count: dict[int, int] = {}
        self._keep: list[Condition] = []  # the objects whose id() is a key stay alive
        for rule in rules:
            stack: list[Condition] = [rule.condition]
            while stack:
                node = stack.pop()
                if isinstance(node, Compare):
                    number = numbers.setdefault(node, len(numbers))
                    self.by_object[id(node)] = number
                    self.count[number] = self.count.get(number, 0) + 1
                    self._keep.append(node)
                elif isinstance(node, Not):
                    stack.append(node.part)
                else:
                    self._keep.append(node)
                    stack.extend(node.parts)

        self._ordered: dict[int, list[Condition]] = {}

    def number(self, compare: Compare) -> int:
        """The comparison's number."""
        return self.by_object[id(compare)]

    def key(self, condition: Condition) -> object:
        """A condition as nested tuples of numbers: equal conditions, equal keys."""
        if isinstance(condition, Compare):
            return self.number(condition)
        if isinstance(condition, Not):
            return ("not", self.key(condition.part))
        kind = "and" if isinstance(condition, And) else "or"
        return (kind, tuple(self.key(p) for p in condition.parts))

    def rarest_first(self, condition: And) -> list[Condition]:
        """An AND's parts, the comparisons fewest rules share first (a proof fails there)."""
        ordered = self._ordered.get(id(condition))
        if ordered is None:

            def rarity(part: Condition) -> int:
                return self.count[self.number(part)] if isinstance(part, Compare) else 0

            ordered = sorted(condition.parts, key=rarity)
            self._ordered[id(condition)] = ordered
        return ordered


@attrs.define
class _Case:
    """One way a condition can hold: the comparisons it then certainly requires."""

    numbers: frozenset[int]
    facts: dict[_GroupKey, _Facts]

    @classmethod
    def of(cls, condition: Condition, interned: _Interned) -> _Case:
        compares = _conjuncts(condition)
        return cls(frozenset(interned.number(c) for c in compares), _facts(compares))

    def implies(self, condition: Condition, interned: _Interned) -> bool:
        """Whether this case makes ``condition`` certainly true (sound, not complete)."""
        if isinstance(condition, Compare):
            if interned.number(condition) in self.numbers:
                return True
            facts = self.facts.get(_group_key(condition))
            return facts is not None and not facts.opaque and facts.implies(condition)
        if isinstance(condition, And):
            return all(self.implies(p, interned) for p in interned.rarest_first(condition))
        if isinstance(condition, Or):
            return any(self.implies(p, interned) for p in condition.parts)
        return False

    def compatible(self, other: _Case) -> bool:
        """Whether both cases can hold at once, as far as their comparisons tell."""
        mine, theirs = (self.facts, other.facts)
        if len(theirs) < len(mine):
            mine, theirs = theirs, mine
        return all(_meet(facts, theirs[key]) for key, facts in mine.items() if key in theirs)


@attrs.define
class _Summary:
    """A rule as the override checks see it."""

    groups: frozenset[str]
    #: The ways the condition can hold (one per part of a short top-level OF).
    cases: list[_Case]
    #: Fields one of which a rule must constrain to imply this condition.
    anchors: frozenset[str]
    condition: Condition
    #: The fields every case constrains (what this rule can prove something about).
    provides: frozenset[str]
    #: For a comparison or an EN of comparisons: the fields a rule must constrain, all of
    #: them, to imply it (a quick refusal); else ``None``.
    needs: frozenset[str] | None

    @classmethod
    def of(cls, rule: Rule, interned: _Interned) -> _Summary:
        condition = rule.condition
        parts = condition.parts if isinstance(condition, Or) else (condition,)
        cases = [_Case.of(p, interned) for p in parts] if len(parts) <= _CASES else []
        provided = [frozenset(key for key, _ in case.facts) for case in cases]
        provides = frozenset.intersection(*provided) if provided else frozenset()
        compares = [condition] if isinstance(condition, Compare) else []
        if isinstance(condition, And) and all(isinstance(p, Compare) for p in condition.parts):
            compares = list(condition.parts)  # type: ignore[arg-type]
        needs = frozenset(c.field.key for c in compares) if compares else None
        anchors = frozenset(_anchors(condition))
        return cls(groups_of(rule), cases, anchors, condition, provides, needs)

    def implies(self, condition: Condition, interned: _Interned) -> bool:
        """Whether this rule's condition makes ``condition`` certainly true."""
        return bool(self.cases) and all(case.implies(condition, interned) for case in self.cases)


def _anchors(condition: Condition) -> set[str]:
    if isinstance(condition, Compare):
        return {condition.field.key}
    if isinstance(condition, Not):
        return set()
    if isinstance(condition, And):
        return min((_anchors(p) for p in condition.parts), key=len, default=set())
    found: set[str] = set()
    for part in condition.parts:
        found |= _anchors(part)
    return found


# -- always overridden ------------------------------------------------------------------------


def _overridden(
    rules: Sequence[Rule], summaries: Sequence[_Summary], interned: _Interned
) -> list[tuple[Rule, Rule]]:
    """Each rule that a later one always overrides, with that later rule.

    A rule is always overridden when a later rule matches whenever it does and takes every
    kind of action it takes. Candidates are a rule with the same condition (found through a
    dict) and the nearest later rules that share a field with it; each rule is tried as the
    overriding one a bounded number of times.
    """
    found: list[tuple[Rule, Rule]] = []
    same = _same_condition(rules, summaries, interned)
    by_anchor: dict[str, list[int]] = {}
    for index, summary in enumerate(summaries):
        for anchor in summary.anchors:
            by_anchor.setdefault(anchor, []).append(index)
    tries = [TRIES] * len(rules)
    for index, summary in enumerate(summaries):
        if not summary.groups:
            continue
        other = same[index]
        if other is None:
            other = _later_implied(index, summaries, by_anchor, tries, interned)
        if other is not None:
            found.append((rules[index], rules[other]))
    return found


def _same_condition(
    rules: Sequence[Rule], summaries: Sequence[_Summary], interned: _Interned
) -> list[int | None]:
    """Per rule, the nearest later rule with the same condition that takes all its actions."""
    nearest: dict[object, dict[frozenset[str], int]] = {}
    result: list[int | None] = [None] * len(rules)
    for index in range(len(rules) - 1, -1, -1):
        summary = summaries[index]
        seen = nearest.setdefault(interned.key(summary.condition), {})
        covering = [k for groups, k in seen.items() if summary.groups <= groups]
        result[index] = min(covering) if covering else None
        seen[summary.groups] = index
    return result


def _later_implied(
    index: int,
    summaries: Sequence[_Summary],
    by_anchor: dict[str, list[int]],
    tries: list[int],
    interned: _Interned,
) -> int | None:
    summary = summaries[index]
    fields = {key for case in summary.cases for key, _ in case.facts}
    nearby: set[int] = set()
    for key in fields:
        listed = by_anchor.get(key, [])
        start = bisect.bisect_right(listed, index)
        nearby.update(listed[start : start + CANDIDATES])
    for other in sorted(nearby)[:CANDIDATES]:
        theirs = summaries[other]
        if not summary.groups <= theirs.groups or tries[other] <= 0:
            continue
        if theirs.needs is not None and not theirs.needs <= summary.provides:
            continue  # it names a field this rule says nothing about
        tries[other] -= 1
        if summary.implies(theirs.condition, interned):
            return other
    return None


# -- a later rule that undoes "not returnable" -------------------------------------------------


def _undoing(rules: Sequence[Rule], summaries: Sequence[_Summary]) -> list[tuple[Rule, Rule]]:
    """Deciding rules after a "not returnable" one that can hold for the same item.

    For an item both match, the later rule's decision replaces "not returnable" (the last
    matching rule wins), so the item can be returned after all. Only rules that provably
    never hold together are left out.
    """
    found: list[tuple[Rule, Rule]] = []
    refusers: list[int] = []
    for index, rule in enumerate(rules):
        kinds = {a.kind for a in rule.actions if a.kind.group == "decision"}
        if kinds & _NOT_RETURNABLE:
            refusers.append(index)
            continue
        if not kinds:
            continue
        mine = summaries[index].cases
        for earlier in reversed(refusers[-REFUSERS:]):
            theirs = summaries[earlier].cases
            if _may_overlap(mine, theirs):
                found.append((rule, rules[earlier]))
                break
    return found


def _may_overlap(a: list[_Case], b: list[_Case]) -> bool:
    if not a or not b:
        return True
    return any(x.compatible(y) for x in a for y in b)
