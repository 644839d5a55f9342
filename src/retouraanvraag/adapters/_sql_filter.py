"""Rule conditions as SQL, for SQLite and PostgreSQL, with the rule language's own meaning.

A store keeps, beside each request's body, its *facts* (:mod:`retouraanvraag.adapters._facts`):
the values the built-in rule fields read, already normalised the way the Python evaluation
normalises them (texts stripped and case-folded with :meth:`str.casefold`, amounts in minor
units with their currency, the items as a JSON array). Folding happens in Python when the
request is written, so a comparison in the database is plain equality, ``instr``/``strpos`` or
a number comparison: SQL's ``lower()`` (ASCII only in SQLite, not full case folding anywhere)
never decides anything.

The translation mirrors :mod:`retouraanvraag.rules._compiler`: every comparison is written
twice, "certainly true" and "certainly false", and ``NIET`` swaps the two, so an unknown value
(a missing delivery date, an amount in another currency) makes both false and never matches,
also under ``IS NIET`` and ``NIET``. A condition that names an item field holds when it
certainly holds for one of the items (``EXISTS`` over the items' JSON). Every value the merchant
typed is a bound parameter; the SQL text holds only column names, operators and placeholders.

Dates and "days since …" are read in the shop's time zone: SQLite calls a function the store
registers (:func:`local_day`, Python's own :mod:`zoneinfo`), PostgreSQL uses
``AT TIME ZONE``. A host-registered field has no column: a condition naming one is not
translated (its built-in conjuncts still narrow the scan), and the store runs the Python
predicate over a bounded scan.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Final

import attrs

from retouraanvraag.adapters._facts import LINE_FIELDS, LOCAL_DAY_FUNCTION, Dialect
from retouraanvraag.model import Money, ReasonCatalogue
from retouraanvraag.rules._compiler import _reason_tables as reason_tables
from retouraanvraag.rules._compiler import normalise_text
from retouraanvraag.rules.fields import DEFAULT_FIELDS, Field, FieldType, Scope
from retouraanvraag.rules.tree import And, Compare, Condition, Not, Operator, fields_of

if TYPE_CHECKING:
    from retouraanvraag.rules import ConditionFilter

__all__ = ["SqlFilter", "compile_filter"]

# Where each item fact sits in an item's JSON array (the order LINE_FIELDS gives).
_AT: Final = {name: index for index, name in enumerate(LINE_FIELDS)}
_REASON, _REASON_FOLDED, _NAME, _SKU = (
    _AT["reason"],
    _AT["reason_folded"],
    _AT["item_name"],
    _AT["sku"],
)
_VALUE, _QUANTITY, _TYPE = _AT["item_value"], _AT["quantity"], _AT["product_type"]
_PTAGS, _VENDOR = _AT["product_tags"], _AT["vendor"]

# Integers beyond these never occur in a column (amounts stop at 10**15, days and counts far
# sooner); a bound beyond them is moved to just past them, which keeps every comparison's
# answer and keeps the parameter inside a 64-bit integer.
_BIG: Final[int] = 1 << 62


# -- SQL fragments: text and bound values, rendered in order ------------------------------


@attrs.frozen
class _Param:
    value: object


_Part = str | _Param
_Sql = tuple[_Part, ...]

_TRUE: Final[_Sql] = ("TRUE",)
_FALSE: Final[_Sql] = ("FALSE",)


def _join(separator: str, parts: Sequence[_Sql]) -> _Sql:
    out: list[_Part] = ["("]
    for k, part in enumerate(parts):
        if k:
            out.append(f" {separator} ")
        out.extend(part)
    out.append(")")
    return tuple(out)


def _all(parts: Sequence[_Sql]) -> _Sql:
    kept = [p for p in parts if p != _TRUE]
    if any(p == _FALSE for p in kept):
        return _FALSE
    if not kept:
        return _TRUE
    return kept[0] if len(kept) == 1 else _join("AND", kept)


def _any(parts: Sequence[_Sql]) -> _Sql:
    kept = [p for p in parts if p != _FALSE]
    if any(p == _TRUE for p in kept):
        return _TRUE
    if not kept:
        return _FALSE
    return kept[0] if len(kept) == 1 else _join("OR", kept)


def _not(part: _Sql) -> _Sql:
    """SQL ``NOT`` of an expression that is never NULL."""
    if part == _TRUE:
        return _FALSE
    if part == _FALSE:
        return _TRUE
    return ("(NOT ", *part, ")")


@attrs.frozen
class SqlFilter:
    """A condition as SQL: a boolean expression over the request row and its bound values.

    Attributes:
        sql: the expression, with ``?`` (SQLite) or ``%s`` (PostgreSQL) placeholders.
        params: the values, in placeholder order.
        exact: ``True`` when the expression is the whole condition; ``False`` when it only
            narrows the rows (a host field's part must still be checked in Python).
        reads_items: whether it looks into the items (a JSON array per row: several times
            the cost of a column comparison).
    """

    sql: str
    params: tuple[object, ...]
    exact: bool
    reads_items: bool = False


class _Unsupported(Exception):
    """A comparison this module does not translate (a host field, say)."""


#: The library's own fields by key; a field translates only when it is one of these unchanged.
_DEFAULTS: Final = {field.key: field for field in DEFAULT_FIELDS}

_ORDER_SQL: Final = {Operator.GT: ">", Operator.GE: ">=", Operator.LT: "<", Operator.LE: "<="}
_OPPOSITE: Final = {
    Operator.GT: Operator.LE,
    Operator.GE: Operator.LT,
    Operator.LT: Operator.GE,
    Operator.LE: Operator.GT,
}


def _translatable(field: Field) -> bool:
    default = _DEFAULTS.get(field.key)
    return (
        default is not None
        and field.accessor is default.accessor
        and field.type is default.type
        and field.scope is default.scope
    )


def compile_filter(
    condition: ConditionFilter, dialect: Dialect, *, table: str = "requests"
) -> SqlFilter | None:
    """The condition as one SQL expression over ``table``'s fact columns.

    Returns:
        The whole condition (``exact``), or, for a condition naming a host field, the
        built-in parts of its top-level ``EN`` that narrow the rows (not ``exact``), or
        ``None`` when nothing can be translated.
    """
    writer = _Writer(dialect, condition.timezone, condition.reasons, table)
    root = condition.condition
    try:
        return writer.render(writer.matches(root), exact=True, reads_items=_reads_items(root))
    except _Unsupported:
        pass
    narrowing: list[_Sql] = []
    items = False
    for part in root.parts if isinstance(root, And) else (root,):
        try:
            narrowing.append(writer.matches(part))
        except _Unsupported:
            continue
        items = items or _reads_items(part)
    if not narrowing:
        return None
    return writer.render(_all(narrowing), exact=False, reads_items=items)


def _reads_items(condition: Condition) -> bool:
    return any(field.scope is Scope.ITEM for field in fields_of(condition))


class _Writer:
    """Writes one condition: column references, bound values, the two polarities."""

    def __init__(self, dialect: Dialect, zone: str, reasons: ReasonCatalogue, table: str) -> None:
        self.dialect = dialect
        self.zone = zone
        self.table = table
        self.exact, self.folded = reason_tables(reasons)
        self.sqlite = dialect is Dialect.SQLITE

    def render(self, sql: _Sql, *, exact: bool, reads_items: bool) -> SqlFilter:
        """Text and parameters, in order."""
        placeholder = "?" if self.sqlite else "%s"
        text: list[str] = []
        params: list[object] = []
        for part in sql:
            if isinstance(part, _Param):
                text.append(placeholder)
                params.append(part.value)
            else:
                text.append(part)
        return SqlFilter("".join(text), tuple(params), exact, reads_items)

    def matches(self, condition: Condition) -> _Sql:
        """True exactly when the condition certainly holds (for one of the items)."""
        fields = fields_of(condition)
        for field in fields:
            if not _translatable(field):
                raise _Unsupported(field.key)
        body = self.branch(condition, want=True)
        if not any(field.scope is Scope.ITEM for field in fields):
            return body
        if self.sqlite:
            items = f"json_each({self.table}.f_lines) AS it"
        else:
            items = f"jsonb_array_elements({self.table}.f_lines) AS it(v)"
        # Table and column names only: every value is a parameter in ``body``.
        return (f"EXISTS (SELECT 1 FROM {items} WHERE ", *body, ")")  # noqa: S608

    def branch(self, condition: Condition, *, want: bool) -> _Sql:
        """``want``: the condition is certainly true; else: certainly false."""
        if isinstance(condition, Compare):
            return self.compare(condition, want=want)
        if isinstance(condition, Not):
            return self.branch(condition.part, want=not want)
        parts = [self.branch(part, want=want) for part in condition.parts]
        every = isinstance(condition, And) == want
        return _all(parts) if every else _any(parts)

    # -- columns --------------------------------------------------------------------------

    def column(self, field: Field) -> tuple[_Sql, bool]:
        """The field's value as SQL, and whether it may be NULL (unknown)."""
        key = field.key
        if field.scope is Scope.ITEM:
            return self._item(key), key in {"product_type", "vendor"}
        simple = {
            "from_country": "f_country",
            "number_of_items": "f_item_count",
            "refund_method": "f_refund",
            "return_method": "f_return_method",
            "channel": "f_channel",
            "has_photos": "f_photos",
            "customer_email": "f_email",
            "order_number": "f_order_number",
            "discount_code": "f_discount",
            "earlier_returns": "f_earlier",
        }
        if key in simple:
            nullable = key in {"return_method", "discount_code", "earlier_returns"}
            return (f"{self.table}.{simple[key]}",), nullable
        if key in {"days_since_delivery", "days_since_order"}:
            earlier = "f_delivered_at" if key == "days_since_delivery" else "f_ordered_at"
            created = self.day(f"{self.table}.created_at")
            return ("(", *created, " - ", *self.day(f"{self.table}.{earlier}"), ")"), True
        dates = {
            "order_date": "f_ordered_at",
            "delivery_date": "f_delivered_at",
            "request_date": "created_at",
        }
        if key in dates:
            return self.day(f"{self.table}.{dates[key]}"), key != "request_date"
        raise _Unsupported(key)  # pragma: no cover - money and tags have their own paths

    def day(self, column: str) -> _Sql:
        """A timestamp column's date in the shop's zone: an ordinal (SQLite), a date (PG)."""
        if self.sqlite:
            return (f"{LOCAL_DAY_FUNCTION}({column}, ", _Param(self.zone), ")")
        return (f"(({column}) AT TIME ZONE ", _Param(self.zone), ")::date")

    def day_value(self, day: dt.date) -> _Param:
        return _Param(day.toordinal() if self.sqlite else day)

    def _item(self, key: str) -> _Sql:
        index = {
            "reason": _REASON,
            "item_name": _NAME,
            "sku": _SKU,
            "item_value": _VALUE,
            "quantity": _QUANTITY,
            "product_type": _TYPE,
            "vendor": _VENDOR,
        }[key]
        return self._element(index, number=key in {"item_value", "quantity"})

    def _element(self, index: int, *, number: bool) -> _Sql:
        if self.sqlite:
            return (f"json_extract(it.value, '$[{index}]')",)
        return (f"((it.v ->> {index})::bigint)",) if number else (f"(it.v ->> {index})",)

    def money(self, field: Field) -> tuple[_Sql, _Sql]:
        """The amount (minor units) and the currency of a money field."""
        currency: _Sql = (f"{self.table}.f_currency",)
        if field.key == "order_value":
            return (f"{self.table}.f_order_minor",), currency
        if field.key == "return_value":
            return (f"{self.table}.f_return_minor",), currency
        return self._item("item_value"), currency  # every item is in the order's currency

    # -- comparisons ----------------------------------------------------------------------

    def compare(self, compare: Compare, *, want: bool) -> _Sql:
        """One comparison, certainly true (``want``) or certainly false, never NULL-true."""
        field, operator, values = compare.field, compare.operator, compare.values
        if operator in {Operator.IS_NOT, Operator.NOT_CONTAINS}:
            want = not want
            operator = Operator.IS if operator is Operator.IS_NOT else Operator.CONTAINS
        kind = field.type
        if kind is FieldType.MONEY:
            return self._money(field, operator, values, want=want)
        if kind is FieldType.TAGS:
            return self._tags(field, operator, values, want=want)
        if kind is FieldType.REASON:
            return self._reason(operator, values, want=want)
        value, nullable = self.column(field)
        if kind is FieldType.DATE:
            test = self._date(value, operator, values, want=want)
        elif kind is FieldType.NUMBER:
            test = self._number(value, operator, values, want=want)
        elif kind is FieldType.TEXT:
            test = self._text(value, operator, values, want=want)
        elif operator is Operator.IS and kind in {
            FieldType.COUNTRY,
            FieldType.CHOICE,
            FieldType.YES_NO,
        }:
            test = self._one_of(value, [_plain(v) for v in values], want=want)
        else:
            raise _Unsupported(field.key)
        if nullable:
            return _all([(*value, " IS NOT NULL"), test])
        return test

    def _one_of(self, value: _Sql, keys: Sequence[object], *, want: bool) -> _Sql:
        """``value`` is one of ``keys`` (``want``) or none of them; ``value`` is known."""
        if not keys:
            return _FALSE if want else _TRUE
        if len(keys) == 1:
            return (*value, " = " if want else " <> ", _Param(keys[0]))
        listed: list[_Part] = []
        for k, key in enumerate(keys):
            if k:
                listed.append(", ")
            listed.append(_Param(key))
        return (*value, " IN (" if want else " NOT IN (", *listed, ")")

    def _order(self, value: _Sql, operator: Operator, bound: object, *, want: bool) -> _Sql:
        op = operator if want else _OPPOSITE[operator]
        return (*value, f" {_ORDER_SQL[op]} ", _Param(bound))

    def _number(
        self, value: _Sql, operator: Operator, values: tuple[object, ...], *, want: bool
    ) -> _Sql:
        if operator.is_ordering:
            op = operator if want else _OPPOSITE[operator]
            op, bound = _integer_bound(op, _number_value(values[0]))
            return self._order(value, op, bound, want=True)
        if operator is not Operator.IS:
            raise _Unsupported(operator.value)
        keys: list[object] = []
        for v in values:
            number = _number_value(v)
            whole = int(number)
            if whole == number and -_BIG < whole < _BIG:  # beyond: equal to no stored value
                keys.append(whole)
        return self._one_of(value, keys, want=want)

    def _date(
        self, value: _Sql, operator: Operator, values: tuple[object, ...], *, want: bool
    ) -> _Sql:
        days = [v for v in values if isinstance(v, dt.date)]
        if len(days) != len(values):
            raise _Unsupported("date")
        if operator.is_ordering:
            op = operator if want else _OPPOSITE[operator]
            return (*value, f" {_ORDER_SQL[op]} ", self.day_value(days[0]))
        if operator is not Operator.IS:
            raise _Unsupported(operator.value)
        listed = [self.day_value(day) for day in days]
        if len(listed) == 1:
            return (*value, " = " if want else " <> ", listed[0])
        inner: list[_Part] = []
        for k, day in enumerate(listed):
            inner += [", ", day] if k else [day]
        return (*value, " IN (" if want else " NOT IN (", *inner, ")")

    def _text(
        self, value: _Sql, operator: Operator, values: tuple[object, ...], *, want: bool
    ) -> _Sql:
        folded = [normalise_text(v) or "" for v in values]
        if operator is Operator.IS:
            return self._one_of(value, folded, want=want)
        if operator is Operator.CONTAINS:
            found = [self._position(value, text, first=False) for text in folded]
            return _any(found) if want else _not(_any(found))
        if operator is Operator.STARTS_WITH:
            starts = [self._position(value, text, first=True) for text in folded]
            return _any(starts) if want else _not(_any(starts))
        raise _Unsupported(operator.value)

    def _position(self, value: _Sql, text: str, *, first: bool) -> _Sql:
        """``text`` occurs in ``value`` (at its start, when ``first``); ``value`` is known."""
        if not text:
            return _TRUE  # the empty text is in, and starts, every text
        if "\x00" in text:
            return _FALSE  # stored text never holds a NUL (the model refuses control characters)
        function = "instr(" if self.sqlite else "strpos("
        return (function, *value, ", ", _Param(text), ") = 1" if first else ") > 0")

    def _money(
        self, field: Field, operator: Operator, values: tuple[object, ...], *, want: bool
    ) -> _Sql:
        amount, currency = self.money(field)
        amounts = [m for m in values if isinstance(m, Money)]
        if len(amounts) != len(values):
            raise _Unsupported("money")
        if operator.is_ordering:
            bound = amounts[0]
            return _all(
                [
                    (*currency, " = ", _Param(bound.currency)),
                    self._order(amount, operator, bound.amount, want=want),
                ]
            )
        if operator is not Operator.IS:
            raise _Unsupported(operator.value)
        equal = _any(
            [
                _all([(*amount, " = ", _Param(m.amount)), (*currency, " = ", _Param(m.currency))])
                for m in amounts
            ]
        )
        if want:
            return equal
        # An amount in none of the values' currencies compares as unknown, not as unequal.
        currencies = sorted({m.currency for m in amounts})
        return _all([self._one_of(currency, currencies, want=True), _not(equal)])

    def _tags(
        self, field: Field, operator: Operator, values: tuple[object, ...], *, want: bool
    ) -> _Sql:
        if operator is not Operator.CONTAINS:
            raise _Unsupported(operator.value)
        folded = sorted({normalise_text(v) or "" for v in values})
        if self.sqlite:
            source = (
                f"json_each({self.table}.f_tags)"
                if field.scope is Scope.REQUEST
                else f"json_each(it.value, '$[{_PTAGS}]')"
            )
            listed: list[_Part] = []
            for k, tag in enumerate(folded):
                listed += [", ", _Param(tag)] if k else [_Param(tag)]
            found: _Sql = (
                f"EXISTS (SELECT 1 FROM {source} AS tg WHERE tg.value IN (",  # noqa: S608
                *listed,
                "))",
            )
        elif field.scope is Scope.REQUEST:
            found = (f"({self.table}.f_tags && ", _Param(folded), "::text[])")
        else:
            found = (f"((it.v -> {_PTAGS}) ?| ", _Param(folded), "::text[])")
        return found if want else _not(found)

    def _reason(self, operator: Operator, values: tuple[object, ...], *, want: bool) -> _Sql:
        """The stored reason, read as the catalogue reads it, is one of the codes."""
        if operator is not Operator.IS:
            raise _Unsupported(operator.value)
        codes = {str(v) for v in values}
        raw = self._element(_REASON, number=False)
        folded = self._element(_REASON_FOLDED, number=False)
        exact_codes = sorted(text for text, code in self.exact.items() if code in codes)
        folded_codes = sorted(text for text, code in self.folded.items() if code in codes)
        # Exactly the normaliser: a stored text that is a code or label takes that label's
        # code; else its folded form does; else the folded form is compared itself.
        known_exact = self._one_of(raw, sorted(self.exact), want=True)
        known_folded = self._one_of(folded, sorted(self.folded), want=True)
        match = _any(
            [
                self._one_of(raw, exact_codes, want=True),
                _all(
                    [
                        _not(known_exact),
                        _any(
                            [
                                self._one_of(folded, folded_codes, want=True),
                                _all(
                                    [
                                        _not(known_folded),
                                        self._one_of(folded, sorted(codes), want=True),
                                    ]
                                ),
                            ]
                        ),
                    ]
                ),
            ]
        )
        return match if want else _not(match)


def _plain(value: object) -> object:
    """A value as a column holds it: a choice's stored text, yes/no as itself."""
    if isinstance(value, enum.Enum):
        return value.value
    return value


def _number_value(value: object) -> int | Decimal:
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise _Unsupported("number")
    return value


def _integer_bound(operator: Operator, bound: int | Decimal) -> tuple[Operator, int]:
    """The same comparison of an integer column with an integer bound inside 64 bits."""
    if isinstance(bound, Decimal) and bound != bound.to_integral_value():
        floor = int(bound.to_integral_value(rounding="ROUND_FLOOR"))
        # An integer above 2.5 is above 2; one at least 2.5, above 2; below or at most 2.5,
        # at most 2.
        operator = {
            Operator.GT: Operator.GT,
            Operator.GE: Operator.GT,
            Operator.LT: Operator.LE,
            Operator.LE: Operator.LE,
        }[operator]
        bound = floor
    number = int(bound)
    return operator, max(-_BIG, min(_BIG, number))
