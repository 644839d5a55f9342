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
from operator import attrgetter, itemgetter
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
# Members the hot loops compare with, as module globals: Python 3.11 finds ``Operator.IS``
# through ``EnumType.__getattr__``, several times slower than a global.
_IS: Final = Operator.IS
_IS_NOT: Final = Operator.IS_NOT
_CONTAINS: Final = Operator.CONTAINS
_NOT_CONTAINS: Final = Operator.NOT_CONTAINS
_STARTS_WITH: Final = Operator.STARTS_WITH
_GT: Final = Operator.GT
_GE: Final = Operator.GE
_LT: Final = Operator.LT
_LE: Final = Operator.LE
_MONEY: Final = FieldType.MONEY
_TEXT: Final = FieldType.TEXT
_TAGS: Final = FieldType.TAGS
_ITEM_REFUSAL: Final = ActionKind.ITEM_NOT_RETURNABLE
_ORDER_REFUSAL: Final = ActionKind.ORDER_NOT_RETURNABLE
_WARNING: Final = Severity.WARNING
#: Each kind of action's group, by the member's ``id()``: an Enum member hashes in Python code
#: (3.11), and ``kind.group`` is a property on top; the members live as long as the module.
_GROUPS: Final = {id(kind): kind.group for kind in ActionKind}
# Getters that map() applies without a Python step per item.
_KIND_OF_ACTION: Final = attrgetter("kind")
_FIELD_OF_GROUP: Final = itemgetter(0)

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
                    severity=_WARNING,
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
                severity=_WARNING,
                field=field.name(language),
            )
        if 0 < rule.number <= len(chunks):
            mixed = mixed_and_or(chunks[rule.number - 1].tokens)
            if mixed is not None:
                checker.report(
                    mixed,
                    "mixed-and-or",
                    severity=_WARNING,
                    hint=message("mixed-and-or-hint", language),
                )
    for rule, other in _overridden(rules, summaries, interned):
        if checker.full:  # a warning past the listed ones is only counted: no words for it
            checker.report(rule.position, "always-overridden", severity=_WARNING)
            continue
        name = other.display_name(language)
        checker.report(
            rule.position,
            "always-overridden",
            severity=_WARNING,
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
            severity=_WARNING,
            hint=message("undoes-not-returnable-hint", language, other=name),
            other=name,
            action=ACTIONS_BY_KIND[refusal.kind].name(language),
        )


def groups_of(rule: Rule) -> frozenset[str]:
    """The kinds of action a rule takes that a later rule can make pointless.

    Decision, fee and carrier: a later matching rule replaces them. The refund: a later rule
    that also refunds whenever this one matches makes this one's refund change nothing.
    """
    return frozenset([_GROUPS[id(action.kind)] for action in rule.actions])


# -- EN and OF without parentheses ---------------------------------------------------------------


def mixed_and_or(tokens: Iterable[object]) -> Position | None:
    """Where a condition first joins ``EN`` and ``OF`` at one level of parentheses.

    ``A EN B OF C`` reads as ``(A EN B) OF C`` (EN binds tighter), which is not always what was
    meant; with parentheses either way there is no doubt. An ``OF`` between values of one
    comparison (``IS NL OF BE``) is a list of values, not a condition's ``OF``.
    """
    tokens = tokens if isinstance(tokens, (tuple, list)) else list(tokens)
    try:
        kinds = [token.type for token in tokens]  # type: ignore[union-attr]
    except AttributeError:  # not all of them the lexer's tokens
        kinds = [getattr(token, "type", "") for token in tokens]
    if "OR" not in kinds or "AND" not in kinds:
        return None  # most rules: no EN, or no OF, to mix
    levels: list[set[str]] = [set()]
    for index, kind in enumerate(kinds):
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
                token = tokens[index]
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


def _value_keys(field: Field, values: Sequence[object]) -> frozenset[object]:
    """Values as the compiled rules compare them (text ignoring case and surrounding space)."""
    kind = field.type
    if kind is _TEXT or kind is _TAGS:
        if len(values) == 1:  # most comparisons have one value: no list to build
            return frozenset((normalise_text(values[0]),))
        return frozenset(map(normalise_text, values))
    if len(values) == 1:
        value = values[0]
        return frozenset((value.amount if isinstance(value, Money) else value,))
    return frozenset([v.amount if isinstance(v, Money) else v for v in values])


def _one_currency(compare: Compare) -> bool:
    values = compare.values
    if len(values) < 2:  # noqa: PLR2004 - one amount has one currency
        return True
    currencies = {v.currency for v in values if isinstance(v, Money)}
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
    #: :meth:`possible` once worked out for an ``IS`` (``None``: not yet); the override
    #: checks ask it of the same requirements many times.
    _possible: frozenset[object] | None = attrs.field(
        default=None, init=False, eq=False, repr=False
    )

    def add(self, compare: Compare) -> None:  # noqa: C901 - one pass, no helpers
        """Require ``compare`` too."""
        self._possible = None
        field, operator = self.field, compare.operator
        if field.type is _MONEY and len(compare.values) > 1 and not _one_currency(compare):
            self.opaque = True
            return
        lower = operator is _GT or operator is _GE
        if lower or operator is _LT or operator is _LE:
            # A bound (this runs for every comparison of a file: no calls it can do without).
            first = compare.values[0]
            bound = first.amount if isinstance(first, Money) else _ordering_key(first)
            if bound is None:
                self.opaque = True
                return
            new = (bound, operator is _GE or operator is _LE)
            if lower:
                if self.low is None or _tighter(self.low, new, low=True):
                    self.low = new
            elif self.high is None or _tighter(self.high, new, low=False):
                self.high = new
            return
        values = _value_keys(field, compare.values)
        if operator is _IS:
            self.allowed = values if self.allowed is None else self.allowed & values
        elif operator is _IS_NOT:
            self.excluded |= values
        elif operator is _CONTAINS:
            self.contains.append(values)
        elif operator is _STARTS_WITH:
            self.starts.append(values)
        elif operator is _NOT_CONTAINS:
            self.lacks |= values

    def possible(self) -> frozenset[object] | None:
        """The values ``IS`` leaves, less those excluded or out of bounds (``None``: any)."""
        if self.allowed is None:
            return None
        if self._possible is None:
            self._possible = frozenset(v for v in self.allowed - self.excluded if self.within(v))
        return self._possible

    def within(self, value: object) -> bool:
        """Whether ``value`` lies within the bounds."""
        key = _ordering_key(value) if not isinstance(value, bool) else None
        if key is None:
            return True
        return _meets(key, self.low, low=True) and _meets(key, self.high, low=False)

    def satisfiable(self) -> bool:
        """Whether a value can meet every requirement (``IS``, ``IS NIET`` and bounds)."""
        possible = None if self.allowed is None else self.possible()
        if possible is not None:
            return bool(possible)
        if self.low is not None and self.high is not None:
            (lo, lo_in), (hi, hi_in) = self.low, self.high
            return bool(lo < hi or (lo == hi and lo_in and hi_in))  # type: ignore[operator]
        return True

    def implies(self, compare: Compare, read: _Read | None = None) -> bool:  # noqa: C901, PLR0911, PLR0912
        """Whether every value meeting these requirements makes ``compare`` certainly true.

        ``read``: ``compare`` as already read (see :class:`_Read`).
        """
        if read is None:
            read = _Read(compare, -1)
        field = self.field
        if read.multi_currency and field.type is _MONEY:
            return False
        possible = None if self.allowed is None else self.possible()
        if possible is not None and not possible:
            return False  # never true: that is the never-matches warning, not this one
        if read.ordering:
            new = read.bound
            if new is None:
                return False
            if possible is not None:
                probe = _Facts(field)
                probe.add(compare)
                return all(probe.within(v) for v in possible)
            lower = read.lower
            old = self.low if lower else self.high
            if old is None:
                return False
            # ``not _tighter(old, new, low=lower)``, written out: the proofs' commonest step.
            (a, a_in), (b, b_in) = old, new
            if a == b:
                return not a_in or b_in
            return not (b > a if lower else b < a)  # type: ignore[operator]
        operator = compare.operator
        values = read.values(field)
        if operator is _IS:
            return possible is not None and possible <= values
        if operator is _IS_NOT:
            return (possible is not None and not possible & values) or values <= self.excluded
        if operator is _CONTAINS:
            if possible is not None and all(_contains(v, values) for v in possible):
                return True
            return any(alternatives <= values for alternatives in self.contains)
        if operator is _STARTS_WITH:
            if possible is not None and all(_starts(v, values) for v in possible):
                return True
            return any(all(_starts(a, values) for a in s) for s in self.starts)
        return operator is _NOT_CONTAINS and values <= self.lacks


class _Read:
    """A comparison as :meth:`_Facts.implies` reads it, worked out once.

    The override checks test one rule's comparisons against several earlier rules' cases.
    """

    __slots__ = (
        "_values",
        "bound",
        "compare",
        "group",
        "lower",
        "multi_currency",
        "number",
        "ordering",
    )

    def __init__(self, compare: Compare, number: int) -> None:
        """Read ``compare``, the comparison numbered ``number`` (see :class:`_Interned`)."""
        operator = compare.operator
        self.compare = compare
        self.number = number
        self.group = _group_key(compare)
        self.multi_currency = len(compare.values) > 1 and not _one_currency(compare)
        #: ``>`` or ``>=``: a lower bound.
        self.lower = lower = operator is _GT or operator is _GE
        self.ordering = ordering = lower or operator is _LT or operator is _LE
        #: For an ordering: the bound it sets, or ``None`` when its value does not order.
        self.bound: _Bound | None = None
        if ordering:
            key = _ordering_key(compare.values[0])
            if key is not None:
                self.bound = (key, operator is _GE or operator is _LE)
        self._values: frozenset[object] | None = None

    def values(self, field: Field) -> frozenset[object]:
        """The values as ``field`` compares them."""
        if field is not self.compare.field:
            return _value_keys(field, self.compare.values)
        if self._values is None:
            self._values = _value_keys(field, self.compare.values)
        return self._values


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
        # _group_key(compare), written out: this runs for every comparison of the file.
        first = compare.values[0] if compare.values else None
        key = (compare.field.key, first.currency if isinstance(first, Money) else "")
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
        return _no_part_matches(condition.parts)
    if isinstance(condition, Not):
        return None
    for part in condition.parts:
        if isinstance(part, Compare):
            continue  # as above, without a call for each comparison of a long EN
        field = never_matches(part)
        if field is not None:
            return field
    for found in (facts if facts is not None else _facts(_conjuncts(condition))).values():
        if not found.satisfiable():
            return found.field
    return None


def _no_part_matches(parts: Sequence[Condition]) -> Field | None:
    """The first part's field when no part of an ``OF`` can be true (stops at one that can)."""
    fields: list[Field] = []
    for part in parts:
        field = None if isinstance(part, Compare) else never_matches(part)
        if field is None:
            return None
        fields.append(field)
    return fields[0]


class _Interned:
    """Every comparison of a file as a number: equal comparisons, one number.

    Comparing comparisons by value hashes their fields and values each time; the checks compare
    the same ones many times, so each is hashed once here and known by its object from then on.
    """

    def __init__(self, rules: Sequence[Rule]) -> None:
        # A comparison's own hash calls its field's, operator's and values' hashes (Python code
        # each). It is numbered instead by its field (the first equal one seen, by identity),
        # its operator (one object per member) and its values: equal numbers exactly for equal
        # comparisons, with only the values hashed.
        numbers: dict[tuple[int, int, tuple[object, ...]], int] = {}
        fields: dict[Field, Field] = {}
        same_field: dict[int, Field] = {}
        by_object: dict[int, int] = {}
        #: How many comparisons of the file have each number.
        count: list[int] = []
        self.by_object, self.count = by_object, count
        # The rules hold every node whose id() is a key here (frozen trees): they stay alive.
        self._keep = tuple(rules)
        for rule in self._keep:
            stack: list[Condition] = [rule.condition]
            while stack:
                node = stack.pop()
                if isinstance(node, Not):
                    stack.append(node.part)
                    continue
                # The comparisons among a node's parts are numbered on the spot (a long EN's
                # are most of a file), the other parts wait on the stack.
                for part in (node,) if isinstance(node, Compare) else node.parts:
                    if not isinstance(part, Compare):
                        stack.append(part)
                        continue
                    field = same_field.get(id(part.field))
                    if field is None:
                        field = same_field[id(part.field)] = fields.setdefault(
                            part.field, part.field
                        )
                    number = numbers.setdefault(
                        (id(field), id(part.operator), part.values), len(numbers)
                    )
                    if number == len(count):
                        count.append(1)
                    else:
                        count[number] += 1
                    by_object[id(part)] = number

        #: Each EN's parts as :meth:`rarest_first` orders them, by ``id()``.
        self.ordered: dict[int, list[Condition]] = {}
        #: Each comparison as read by :meth:`read`, by ``id()``.
        self.reads: dict[int, _Read] = {}

    def number(self, compare: Compare) -> int:
        """The comparison's number."""
        return self.by_object[id(compare)]

    def read(self, compare: Compare) -> _Read:
        """The comparison as :meth:`_Facts.implies` reads it (read once)."""
        found = self.reads.get(id(compare))
        if found is None:
            found = self.reads[id(compare)] = _Read(compare, self.by_object[id(compare)])
        return found

    def key(self, condition: Condition) -> object:
        """A condition as nested tuples of numbers: equal conditions, equal keys."""
        by_object = self.by_object
        if isinstance(condition, Compare):
            return by_object[id(condition)]
        if isinstance(condition, Not):
            return ("not", self.key(condition.part))
        keys = [
            by_object[id(p)] if isinstance(p, Compare) else self.key(p) for p in condition.parts
        ]
        return ("and" if isinstance(condition, And) else "or", tuple(keys))

    def rarest_first(self, condition: And) -> list[Condition]:
        """An AND's parts, the comparisons fewest rules share first (a proof fails there)."""
        ordered = self.ordered.get(id(condition))
        if ordered is None:
            count, by_object, parts = self.count, self.by_object, condition.parts
            rarity = [count[by_object[id(p)]] if isinstance(p, Compare) else 0 for p in parts]
            if len(parts) == 2:  # noqa: PLR2004 - the commonest EN, sorted (stably) by hand
                ordered = [parts[1], parts[0]] if rarity[1] < rarity[0] else list(parts)
            else:
                ordered = [parts[i] for i in sorted(range(len(parts)), key=rarity.__getitem__)]
            self.ordered[id(condition)] = ordered
        return ordered


@attrs.define
class _Case:
    """One way a condition can hold: the comparisons it then certainly requires."""

    numbers: frozenset[int]
    facts: dict[_GroupKey, _Facts]

    @classmethod
    def of(cls, condition: Condition, interned: _Interned) -> _Case:
        return cls.of_compares(_conjuncts(condition), interned)

    @classmethod
    def of_compares(cls, compares: list[Compare], interned: _Interned) -> _Case:
        """The case of a condition whose top-level comparisons are ``compares``."""
        by_object = interned.by_object
        return cls(frozenset(map(by_object.__getitem__, map(id, compares))), _facts(compares))

    def implies(self, condition: Condition, interned: _Interned) -> bool:
        """Whether this case makes ``condition`` certainly true (sound, not complete)."""
        if isinstance(condition, Compare):
            read = interned.reads.get(id(condition)) or interned.read(condition)
            if read.number in self.numbers:
                return True
            facts = self.facts.get(read.group)
            return facts is not None and not facts.opaque and facts.implies(condition, read)
        if isinstance(condition, And):
            parts = interned.ordered.get(id(condition)) or interned.rarest_first(condition)
            # A loop, not all(…): no generator for each of the many proof steps.
            for part in parts:  # noqa: SIM110
                if not self.implies(part, interned):
                    return False
            return True
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
        groups = groups_of(rule)
        if not isinstance(condition, Or):
            compares = _conjuncts(condition)
            case = _Case.of_compares(compares, interned)
            if isinstance(condition, Compare) or (
                isinstance(condition, And) and compares and len(compares) == len(condition.parts)
            ):
                # A comparison or an EN of comparisons, most rules: the fields they name are
                # what the rule provides and what implying it needs; the first is its anchor.
                keys = frozenset(map(_FIELD_OF_GROUP, case.facts))
                anchors = frozenset((compares[0].field.key,))
                return cls(groups, [case], anchors, condition, keys, keys)
            cases = [case]
        else:
            parts = condition.parts
            cases = [_Case.of(p, interned) for p in parts] if len(parts) <= _CASES else []
        provided = [frozenset(map(_FIELD_OF_GROUP, case.facts)) for case in cases]
        provides = frozenset.intersection(*provided) if provided else frozenset()
        anchors = frozenset(_anchors(condition))
        return cls(groups, cases, anchors, condition, provides, None)

    def implies(self, condition: Condition, interned: _Interned) -> bool:
        """Whether this rule's condition makes ``condition`` certainly true."""
        cases = self.cases
        if len(cases) == 1:
            return cases[0].implies(condition, interned)
        return bool(cases) and all(case.implies(condition, interned) for case in cases)


def _anchors(condition: Condition) -> set[str]:
    if isinstance(condition, Compare):
        return {condition.field.key}
    if isinstance(condition, Not):
        return set()
    if isinstance(condition, And):
        # The first smallest set of the parts' (a comparison's is one field; none is smaller
        # than empty), without building a set for every comparison of a long EN.
        best: set[str] | None = None
        for part in condition.parts:
            if isinstance(part, Compare):
                if best is None or len(best) > 1:
                    best = {part.field.key}
                continue
            theirs = _anchors(part)
            if best is None or len(theirs) < len(best):
                best = theirs
            if not best:
                break
        return best if best is not None else set()
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
            listed = by_anchor.get(anchor)
            if listed is None:
                by_anchor[anchor] = [index]
            else:
                listed.append(index)
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
        key = interned.key(summary.condition)
        seen = nearest.get(key)
        if seen is None:
            seen = nearest[key] = {}
        if seen:
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
    # Most rules hold in one way: that case proves (or not) each candidate itself.
    one = summary.cases[0] if len(summary.cases) == 1 else None
    if one is not None:
        fields: Iterable[str] = summary.provides  # the fields of its one case
    else:
        fields = {key for case in summary.cases for key, _ in case.facts}
    nearby: set[int] = set()
    for key in fields:
        listed = by_anchor.get(key, [])
        start = bisect.bisect_right(listed, index)
        nearby.update(listed[start : start + CANDIDATES])
    groups, provides, prover = summary.groups, summary.provides, one or summary
    for other in sorted(nearby)[:CANDIDATES]:
        theirs = summaries[other]
        if not groups <= theirs.groups or tries[other] <= 0:
            continue
        if theirs.needs is not None and not theirs.needs <= provides:
            continue  # it names a field this rule says nothing about
        tries[other] -= 1
        if prover.implies(theirs.condition, interned):
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
        kinds = list(map(_KIND_OF_ACTION, rule.actions))
        if _ITEM_REFUSAL in kinds or _ORDER_REFUSAL in kinds:
            refusers.append(index)
            continue
        if not refusers or "decision" not in summaries[index].groups:
            continue  # nothing to undo, or no decision to undo it with
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
