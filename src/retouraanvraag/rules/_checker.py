"""Give the syntax tree its meaning: resolve fields, values and actions; report every problem.

Every problem of a file is collected (never the first only), each at its line and column, in the
file's language, with what was expected or a "bedoelde u …?" suggestion.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Final

import attrs

from retouraanvraag.errors import UnknownCountry, UnknownReason
from retouraanvraag.model import Money, ReasonCatalogue, fold_text, nearest, resolve_country
from retouraanvraag.rules._lexer import BadValue, read_date, read_money, read_number
from retouraanvraag.rules._messages import (
    OPERATOR_WORDS,
    TOKEN_WORDS,
    TYPE_WORDS,
    message,
    word,
)
from retouraanvraag.rules._parser import (
    MAX_DEPTH,
    SynAction,
    SynAnd,
    SynCompare,
    SynCondition,
    SynNot,
    SynRule,
    SyntaxProblem,
    SynValue,
)
from retouraanvraag.rules.diagnostics import Diagnostic, Position, Severity
from retouraanvraag.rules.fields import (
    ACTIONS,
    ACTIONS_BY_KIND,
    DAY_WORDS,
    MAX_WINDOW_DAYS,
    ActionKind,
    ActionSpec,
    Argument,
    Field,
    FieldRegistry,
    FieldType,
    Scope,
)
from retouraanvraag.rules.tree import (
    Action,
    And,
    Compare,
    Condition,
    Not,
    Operator,
    Or,
    Rule,
    Value,
    fields_of,
)

__all__ = ["Checker"]

#: The longest reject reason, carrier or refusal message.
MAX_TEXT: Final = 2000
#: How many comparisons one rule may hold.
MAX_COMPARISONS: Final = 1000
#: The most problems reported for one file; the rest are counted.
MAX_DIAGNOSTICS: Final = 100

_ALLOWED: Final[dict[FieldType, tuple[Operator, ...]]] = {
    FieldType.COUNTRY: (Operator.IS, Operator.IS_NOT),
    FieldType.REASON: (Operator.IS, Operator.IS_NOT),
    FieldType.CHOICE: (Operator.IS, Operator.IS_NOT),
    FieldType.YES_NO: (Operator.IS, Operator.IS_NOT),
    FieldType.MONEY: (
        Operator.IS, Operator.IS_NOT, Operator.GT, Operator.GE, Operator.LT, Operator.LE,
    ),
    FieldType.NUMBER: (
        Operator.IS, Operator.IS_NOT, Operator.GT, Operator.GE, Operator.LT, Operator.LE,
    ),
    FieldType.TEXT: (
        Operator.IS, Operator.IS_NOT, Operator.CONTAINS, Operator.NOT_CONTAINS,
        Operator.STARTS_WITH,
    ),
    FieldType.TAGS: (Operator.CONTAINS, Operator.NOT_CONTAINS),
    FieldType.DATE: (
        Operator.IS, Operator.IS_NOT, Operator.GT, Operator.GE, Operator.LT, Operator.LE,
    ),
}  # fmt: skip
_YES: Final = frozenset({"ja", "yes", "waar", "true", "wel"})
_NO: Final = frozenset({"nee", "no", "onwaar", "false", "geen"})
_YES_NO_WORDS: Final = _YES | _NO
# The kinds :meth:`Checker.value` tells apart, as module globals: Python 3.11 finds
# ``FieldType.MONEY`` through ``EnumType.__getattr__``, several times slower than a global.
_COUNTRY: Final = FieldType.COUNTRY
_REASON: Final = FieldType.REASON
_MONEY: Final = FieldType.MONEY
_NUMBER: Final = FieldType.NUMBER
_DATE: Final = FieldType.DATE
_TEXT: Final = FieldType.TEXT
_TAGS: Final = FieldType.TAGS
_CHOICE: Final = FieldType.CHOICE
_YES_NO: Final = FieldType.YES_NO
_ERROR: Final = Severity.ERROR
_VALUE_TOKENS: Final = frozenset({"STRING", "NUMBER", "MONEY", "WORD"})
_OPERATOR_TOKENS: Final = frozenset(o.value for o in Operator)
#: An operator token's value as its operator and whether it orders (read once per comparison).
_OPERATORS: Final = {o.value: (o, o.is_ordering) for o in Operator}


class _Invalid(Exception):
    """A value or action that could not be resolved; the diagnostic is already recorded."""


@attrs.define
class Checker:
    """Checks one file's rules (or one lone condition) and collects diagnostics."""

    language: str
    fields: FieldRegistry
    reasons: ReasonCatalogue
    currency: str
    source_name: str
    lines: Sequence[str]
    diagnostics: list[Diagnostic] = attrs.field(factory=list)
    #: Problems past :data:`MAX_DIAGNOSTICS`, counted but not reported one by one.
    dropped: int = 0
    _failed: bool = False
    # What this file's names and values resolve to, each looked up once: a file names a few
    # fields and repeats its values. Bounded by the file; a copy (``attrs.evolve``) starts
    # afresh.
    _known_fields: dict[str, Field | None] = attrs.field(
        init=False, factory=dict, eq=False, repr=False
    )
    _readings: dict[tuple[str, str], Value] = attrs.field(
        init=False, factory=dict, eq=False, repr=False
    )
    _amounts: dict[tuple[str, str], Money] = attrs.field(
        init=False, factory=dict, eq=False, repr=False
    )

    # -- diagnostics ------------------------------------------------------------------------

    def report(
        self,
        position: Position,
        code: str,
        *,
        hint: str | None = None,
        severity: Severity = Severity.ERROR,
        **values: object,
    ) -> None:
        """Record a diagnostic at ``position`` with the message ``code`` in the file's language."""
        if severity is _ERROR:
            self._failed = True
        if self.full:
            self.dropped += 1
            return
        line = position.line
        source = self.lines[line - 1] if 0 < line <= len(self.lines) else ""
        self.diagnostics.append(
            Diagnostic(
                line,
                position.column,
                severity,
                message(code, self.language, **values),
                source.rstrip("\n"),
                hint,
                code,
                self.source_name,
                self.language,
            )
        )

    @property
    def full(self) -> bool:
        """Whether a further problem is only counted (:data:`MAX_DIAGNOSTICS` are listed)."""
        return len(self.diagnostics) >= MAX_DIAGNOSTICS

    def listing(self) -> tuple[Diagnostic, ...]:
        """The diagnostics in source order, then how many more problems there were."""
        ordered = sorted(self.diagnostics, key=lambda d: (d.line, d.column))
        if self.dropped:
            last = ordered[-1]
            ordered.append(
                attrs.evolve(
                    last,
                    message=message("too-many-problems", self.language, count=self.dropped),
                    source_line="",
                    hint=None,
                    code="too-many-problems",
                )
            )
        return tuple(ordered)

    def _suggest(self, text: str, candidates: Iterable[str], fallback_key: str) -> str:
        names = list(dict.fromkeys(candidates))
        suggestion = nearest(text, names)
        if suggestion is not None:
            return message("did-you-mean", self.language, suggestion=suggestion)
        return message(fallback_key, self.language, names=", ".join(names))

    def syntax_problem(self, problem: SyntaxProblem) -> None:
        """Report a parse failure in words: what was found, what would have fitted."""
        if problem.code == "too-deep":
            self.report(problem.position, "too-deep", limit=MAX_DEPTH)
            return
        # What the merchant typed, quoted (a text shows its own quotes); never a token's name.
        found = problem.text if problem.found == "STRING" else f'"{problem.text}"'
        if problem.found == "$END":
            found = word(TOKEN_WORDS, "$END", self.language)
        expected = self._expected(problem.expected, problem.context)
        hint = message("expected", self.language, expected=expected)
        if problem.found == "COMMA":
            hint = message("comma-hint", self.language)
        self.report(problem.position, "syntax", hint=hint, found=found)

    def _expected(self, expected: frozenset[str], context: str) -> str:
        remaining = set(expected)
        if (
            "WORD" in remaining
            and context in {"field", "action"}
            and not remaining & _VALUE_TOKENS - {"WORD"}
        ):
            remaining.discard("WORD")
            remaining.add("FIELD" if context == "field" else "ACTION")
        parts: list[str] = []
        if remaining & _OPERATOR_TOKENS:
            remaining -= _OPERATOR_TOKENS
            parts.append(word(TOKEN_WORDS, "OPERATOR", self.language))
        if remaining >= _VALUE_TOKENS:
            remaining -= _VALUE_TOKENS
            parts.append(word(TOKEN_WORDS, "VALUE", self.language))
        if "VALUE_OR" in remaining and "OR" in remaining:
            remaining.discard("VALUE_OR")
        order = list(TOKEN_WORDS)
        parts.extend(
            word(TOKEN_WORDS, name, self.language) if name in TOKEN_WORDS else name
            for name in sorted(remaining, key=lambda n: order.index(n) if n in order else 99)
        )
        joiner = " of " if self.language == "nl" else " or "
        return joiner.join(parts) if len(parts) > 1 else (parts[0] if parts else "?")

    # -- rules ------------------------------------------------------------------------------

    def rule(self, syntax: SynRule, number: int) -> Rule | None:
        """Check one rule; ``None`` when it has errors (they are reported)."""
        self._failed = False
        condition = self.condition(syntax.condition)
        count = len(fields_of(condition)) if condition is not None else 0
        if count > MAX_COMPARISONS:
            self.report(syntax.position, "too-many-comparisons", count=count, limit=MAX_COMPARISONS)
        actions = []
        for syn_action in syntax.actions:
            try:
                actions.append(self.action(syn_action))
            except _Invalid:
                continue
        self._check_actions(syntax.condition, actions)
        if self._failed or condition is None:
            return None
        return Rule(
            number,
            syntax.name,
            condition,
            tuple(actions),
            syntax.position,
            syntax.comments,
            enabled=syntax.enabled,
        )

    def _syntax_fields(self, syntax: SynCondition) -> list[Field]:
        """The known fields a condition names, even when other parts of it have errors."""
        found: list[Field] = []
        stack: list[SynCondition] = [syntax]
        while stack:
            node = stack.pop()
            if isinstance(node, SynCompare):
                field = self._field(node.field)
                if field is not None:
                    found.append(field)
            elif isinstance(node, SynNot):
                stack.append(node.part)
            else:
                stack.extend(node.parts)
        return found

    def _field(self, name: str) -> Field | None:
        """The field called ``name``, as :meth:`FieldRegistry.lookup` finds it (once per name)."""
        known = self._known_fields
        if name in known:
            return known[name]
        field = known[name] = self.fields.lookup(name)
        return field

    def _check_actions(self, condition: SynCondition, actions: list[Action]) -> None:
        decision: Action | None = None
        seen: dict[ActionKind, Action] = {}
        fields: list[Field] | None = None  # the condition's fields, found when needed
        for action in actions:
            spec = ACTIONS_BY_KIND[action.kind]
            if action.kind in seen:
                self.report(action.position, "duplicate-action", action=spec.name(self.language))
                continue
            seen[action.kind] = action
            if action.kind.group == "decision":
                if decision is not None:
                    self.report(
                        action.position,
                        "contradiction",
                        hint=message("contradiction-hint", self.language),
                        first=ACTIONS_BY_KIND[decision.kind].name(self.language),
                        second=spec.name(self.language),
                    )
                decision = action
            # A fee may be decided per item (the request pays the highest, see docs/rules.md).
            if action.kind.group in {"carrier", "window"}:
                if fields is None:
                    fields = self._syntax_fields(condition)
                item_field = next((f for f in fields if f.scope is Scope.ITEM), None)
                if item_field is not None:
                    name = spec.name(self.language)
                    self.report(
                        action.position,
                        "request-action-in-item-rule",
                        hint=message("request-action-hint", self.language, action=name),
                        action=name,
                        field=item_field.name(self.language),
                    )

    # -- conditions -------------------------------------------------------------------------

    def condition(self, syntax: SynCondition) -> Condition | None:
        """Resolve a condition; ``None`` when a part of it has errors (they are reported)."""
        if isinstance(syntax, SynCompare):
            return self.compare(syntax)
        if isinstance(syntax, SynNot):
            part = self.condition(syntax.part)
            return None if part is None else Not(part)
        parts = [self.condition(p) for p in syntax.parts]
        if any(p is None for p in parts):
            return None
        present = tuple(part for part in parts if part is not None)
        if isinstance(syntax, SynAnd):
            # (A EN B) EN C is A EN B EN C; the conjunction's checks read one flat list.
            flat: list[Condition] = []
            for part in present:
                flat.extend(part.parts if isinstance(part, And) else (part,))
            return And(tuple(flat))
        # An OF the merchant put in parentheses inside another OF stays a group of its own, so
        # that the formatter writes it back as it was written: (A OF B) OF C.
        return Or(present)

    def compare(self, syntax: SynCompare) -> Compare | None:
        """Resolve ``field operator values``, checking that operator and values fit the field."""
        field = self._field(syntax.field)
        if field is None:
            self.report(
                syntax.position,
                "unknown-field",
                hint=self._suggest(syntax.field, self.fields.names(self.language), "known-fields"),
                text=syntax.field,
            )
            return None
        operator, ordering = _OPERATORS.get(syntax.operator) or (Operator(syntax.operator), False)
        allowed = _ALLOWED[field.type]
        ok = True
        if operator not in allowed:
            names = ", ".join(word(OPERATOR_WORDS, o.value, self.language) for o in allowed)
            self.report(
                syntax.operator_position,
                "bad-operator",
                hint=message("use-operators", self.language, operators=names),
                operator=syntax.operator_text,
                field=field.name(self.language),
                type=word(TYPE_WORDS, field.type.value, self.language),
            )
            ok = False
        if ordering and len(syntax.values) > 1:
            self.report(
                syntax.values[1].position,
                "one-value",
                operator=syntax.operator_text,
                count=len(syntax.values),
            )
            ok = False
        values: list[Value] = []
        for value in syntax.values:
            try:
                values.append(self.value(field, value))
            except _Invalid:
                ok = False
        if not ok:
            return None
        return Compare(field, operator, tuple(values), syntax.position)

    def value(self, field: Field, value: SynValue) -> Value:  # noqa: C901, PLR0911, PLR0912
        """Resolve one value for ``field``; reports and raises ``_Invalid`` when it does not fit."""
        text = value.text.strip()
        kind = field.type
        name = field.name(self.language)
        try:
            if kind is _COUNTRY and value.kind in {"word", "string"}:
                return self._read("country", text, resolve_country)
            if kind is _REASON and value.kind in {"word", "string"}:
                return self._read("reason", text, self._reason_code)
            if kind is _MONEY:
                return self._compared_amount(value, name)
            if kind is _NUMBER and value.kind == "number":
                return self._read("number", text, read_number)
            if kind is _DATE and value.kind in {"word", "string"}:
                return self._read("date", text, read_date)
            if (kind is _TEXT or kind is _TAGS) and value.kind != "money":
                if not text:
                    self.report(value.position, "empty-text")
                    raise _Invalid
                return text
            if kind is _CHOICE and value.kind in {"word", "string"}:
                choice = field.choice(text)
                if choice is None:
                    names = ", ".join(c.name(self.language) for c in field.choices)
                    self.report(
                        value.position,
                        "unknown-choice",
                        hint=message("choose-from", self.language, choices=names),
                        text=text,
                        field=name,
                    )
                    raise _Invalid
                return choice.value
            if kind is _YES_NO and fold_text(text) in _YES_NO_WORDS:
                return fold_text(text) in _YES
        except UnknownCountry as error:
            self._unknown(value, "unknown-country", error.suggestion, text)
            raise _Invalid from error
        except UnknownReason as error:
            self._unknown(value, "unknown-reason", error.suggestion, text)
            raise _Invalid from error
        except BadValue as error:
            self._bad_value(value, error)
            raise _Invalid from error
        hint = message("yes-no-hint", self.language) if kind is _YES_NO else None
        self.report(
            value.position,
            "type-mismatch",
            hint=hint,
            field=name,
            type=word(TYPE_WORDS, kind.value, self.language),
            text=text,
        )
        raise _Invalid

    def _read(self, kind: str, text: str, read: Callable[[str], Value]) -> Value:
        """``read(text)``, once per kind of value and text: a file repeats its values.

        Only readings that succeed are kept; one that raises is read (and reported) again.
        """
        key = (kind, text)
        found = self._readings.get(key)
        if found is None:
            found = self._readings[key] = read(text)
        return found

    def _reason_code(self, text: str) -> str:
        return self.reasons.resolve(text).code

    def _unknown(self, value: SynValue, code: str, suggestion: str | None, text: str) -> None:
        hint = message("did-you-mean", self.language, suggestion=suggestion) if suggestion else None
        self.report(value.position, code, hint=hint, text=text)

    def _compared_amount(self, value: SynValue, label: str) -> Money:
        """An amount to compare with; one in another currency than the shop's never matches."""
        return self._shops_currency(value, label, "other-currency")

    def _shops_currency(self, value: SynValue, label: str, code: str) -> Money:
        """The amount ``value``, with the warning ``code`` when it is not in the shop's currency."""
        amount = self.money(value, label)
        if amount.currency != self.currency:
            self.report(
                value.position,
                code,
                severity=Severity.WARNING,
                hint=message("other-currency-hint", self.language, shop=self.currency),
                text=value.text,
                currency=amount.currency,
                shop=self.currency,
            )
        return amount

    def _bad_value(self, value: SynValue, error: BadValue) -> None:
        """Report a number or amount the lexer's reading refused, in the file's language."""
        hint = message(error.hint, self.language, **error.values) if error.hint else None
        self.report(value.position, error.code, hint=hint, severity=Severity.ERROR, **error.values)

    def money(self, value: SynValue, label: str) -> Money:
        """Read an amount: ``€4,95``, ``5,95 €``, ``5 euro``, or a number in the shop's currency."""
        key = (self.currency, value.text)
        known = self._amounts.get(key)
        if known is not None:
            return known
        try:
            amount = self._amounts[key] = read_money(value.text, self.currency)
        except BadValue as error:
            if value.kind in {"money", "number"}:
                self._bad_value(value, error)
                raise _Invalid from error
        else:
            return amount
        self.report(
            value.position,
            "type-mismatch",
            hint=message("money-hint", self.language),
            field=label,
            type=word(TYPE_WORDS, "money", self.language),
            text=value.text,
        )
        raise _Invalid

    # -- actions ----------------------------------------------------------------------------

    def action(self, syntax: SynAction) -> Action:  # noqa: C901
        """Resolve an action's words and argument."""
        key = fold_text(syntax.words)
        spec, rest = _match_action(key)
        if spec is None:
            names = [s.name(self.language) for s in ACTIONS]
            self.report(
                syntax.position,
                "unknown-action",
                hint=self._suggest(syntax.words, names, "known-actions"),
                text=syntax.words,
            )
            raise _Invalid
        name = spec.name(self.language)
        argument = syntax.argument
        if spec.argument is Argument.DAYS:
            return self._window(spec, syntax, rest)
        if syntax.unit is not None:
            self.report(syntax.unit.position, "unexpected-argument", action=name)
            raise _Invalid
        if rest:
            bare_words = syntax.words.split()[-len(rest.split()) :]
            if argument is not None or spec.argument is Argument.NONE:
                self.report(syntax.position, "unexpected-argument", action=name)
                raise _Invalid
            argument = SynValue("word", " ".join(bare_words), syntax.position)
        if spec.argument is Argument.NONE:
            if argument is not None:
                self.report(argument.position, "unexpected-argument", action=name)
                raise _Invalid
            return Action(spec.kind, None, syntax.position)
        if argument is None:
            if spec.argument is Argument.OPTIONAL_TEXT:
                return Action(spec.kind, None, syntax.position)
            needed = "MONEY" if spec.argument is Argument.MONEY else "STRING"
            self.report(
                syntax.position,
                "missing-argument",
                action=name,
                argument=word(TOKEN_WORDS, needed, self.language),
            )
            raise _Invalid
        if spec.argument is Argument.MONEY:
            return Action(spec.kind, self._fee(argument, name), syntax.position)
        text = argument.text.strip()
        if not text:
            self.report(argument.position, "empty-text")
            raise _Invalid
        if len(text) > MAX_TEXT:
            self.report(argument.position, "text-too-long", limit=MAX_TEXT)
            raise _Invalid
        return Action(spec.kind, text, syntax.position)

    def _fee(self, value: SynValue, label: str) -> Money:
        """A return fee; one in another currency than the shop's only such orders can pay."""
        return self._shops_currency(value, label, "fee-other-currency")

    def _window(self, spec: ActionSpec, syntax: SynAction, rest: str) -> Action:
        """``Retourtermijn 60 dagen``: a whole number of days, 0 to ``MAX_WINDOW_DAYS``."""
        name = spec.name(self.language)
        argument, unit = syntax.argument, syntax.unit
        if rest or argument is None or argument.kind != "number":
            self.report(
                argument.position if argument is not None else syntax.position,
                "bad-window",
                action=name,
                limit=MAX_WINDOW_DAYS,
            )
            raise _Invalid
        days = read_number(argument.text) if argument.text.isdigit() else None
        if not isinstance(days, int) or days > MAX_WINDOW_DAYS:
            self.report(argument.position, "bad-window", action=name, limit=MAX_WINDOW_DAYS)
            raise _Invalid
        units = {w for words in DAY_WORDS.values() for w in words}
        if unit is not None and fold_text(unit.text) not in units:
            self.report(unit.position, "bad-window", action=name, limit=MAX_WINDOW_DAYS)
            raise _Invalid
        return Action(spec.kind, days, syntax.position)


def _match_action(key: str) -> tuple[ActionSpec | None, str]:
    """The action whose words are ``key`` or begin it (the rest is a bare argument)."""
    best: tuple[ActionSpec | None, str] = (None, "")
    best_length = -1
    for spec, folded in _ACTION_NAMES:
        if key == folded:
            return spec, ""
        if (
            spec.argument is not Argument.NONE
            and key.startswith(folded + " ")
            and len(folded) > best_length
        ):
            best, best_length = (spec, key[len(folded) + 1 :]), len(folded)
    return best


#: Every action's words, folded once, in the order :func:`_match_action` tries them.
_ACTION_NAMES: Final = tuple(
    (spec, fold_text(name)) for spec in ACTIONS for name in (spec.nl, spec.en, *spec.aliases)
)
