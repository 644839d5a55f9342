"""The checked rules: frozen nodes whose fields, values and actions are resolved.

Equality ignores source positions, comments and the language the rules were written in, so that
``parse(format(rules)) == rules`` and a Dutch file equals its English translation.
"""

from __future__ import annotations

import enum
from decimal import Decimal

import attrs

from retouraanvraag.model import Money
from retouraanvraag.rules.diagnostics import Position
from retouraanvraag.rules.fields import ActionKind, Field, Scope

__all__ = ["Action", "And", "Compare", "Condition", "Not", "Operator", "Or", "Rule", "Value"]


class Operator(enum.Enum):
    """How a field is compared with its values."""

    IS = "IS"
    IS_NOT = "IS_NOT"
    CONTAINS = "CONTAINS"
    NOT_CONTAINS = "NOT_CONTAINS"
    STARTS_WITH = "STARTS_WITH"
    GT = "GT"
    GE = "GE"
    LT = "LT"
    LE = "LE"

    @property
    def is_ordering(self) -> bool:
        """``>``, ``>=``, ``<`` or ``<=``."""
        return self.value in _ORDERING


_ORDERING = frozenset({"GT", "GE", "LT", "LE"})

#: A resolved value: a country code, an amount, a number, text, a reason code, a choice's
#: value, or yes/no.
Value = str | Money | int | Decimal | bool | object

_NOWHERE = Position(0, 0)


@attrs.frozen
class Compare:
    """``field operator values``: true when the field's value fits any (IS) or none (IS NIET)."""

    field: Field
    operator: Operator
    values: tuple[Value, ...]
    position: Position = attrs.field(default=_NOWHERE, eq=False, repr=False)

    @property
    def scope(self) -> Scope:
        """The field's scope."""
        return self.field.scope


@attrs.frozen
class And:
    """All parts hold."""

    parts: tuple[Condition, ...]


@attrs.frozen
class Or:
    """At least one part holds."""

    parts: tuple[Condition, ...]


@attrs.frozen
class Not:
    """The part does not hold (unknown stays unknown)."""

    part: Condition


Condition = Compare | And | Or | Not


def fields_of(condition: Condition) -> list[Field]:
    """Every field a condition names, in order (no recursion: depth is bounded anyway)."""
    if isinstance(condition, Compare):
        return [condition.field]
    found: list[Field] = []
    stack: list[Condition] = [condition]
    while stack:
        node = stack.pop()
        if isinstance(node, Compare):
            found.append(node.field)
        elif isinstance(node, Not):
            stack.append(node.part)
        else:
            stack.extend(reversed(node.parts))
    return found


def _names_item_field(condition: Condition) -> bool:
    """Whether the condition names an item field: ``fields_of`` without the list, stopping early."""
    stack: list[Condition] = [condition]
    while stack:
        node = stack.pop()
        if isinstance(node, Compare):
            if node.field.scope is Scope.ITEM:
                return True
        elif isinstance(node, Not):
            stack.append(node.part)
        else:
            stack.extend(node.parts)
    return False


@attrs.frozen
class Action:
    """What a rule does; ``argument`` is the reason, fee, carrier, refusal message or days."""

    kind: ActionKind
    argument: str | Money | int | None = None
    position: Position = attrs.field(default=_NOWHERE, eq=False, repr=False)


@attrs.frozen
class Rule:
    """One rule: its optional name, condition and actions, and its place in the file.

    Attributes:
        number: 1-based position in the rule set (unnamed rules are called "regel 3").
        name: the name the merchant gave (``REGEL "Binnenland": …``), or ``None``.
        enabled: ``False`` for a rule switched off (``UIT ALS …``): it keeps its place and
            text, is formatted and explained, and never matches.
    """

    number: int
    name: str | None
    condition: Condition
    actions: tuple[Action, ...]
    position: Position = attrs.field(default=_NOWHERE, eq=False, repr=False)
    comments: tuple[str, ...] = attrs.field(default=(), eq=False, repr=False)
    enabled: bool = attrs.field(default=True, kw_only=True)

    @property
    def scope(self) -> Scope:
        """``ITEM`` when the condition names an item field, else ``REQUEST``."""
        if _names_item_field(self.condition):
            return Scope.ITEM
        return Scope.REQUEST

    def display_name(self, language: str) -> str:
        """The name, or ``regel 3`` / ``rule 3`` for an unnamed rule."""
        if self.name is not None:
            return self.name
        return f"{'regel' if language == 'nl' else 'rule'} {self.number}"
