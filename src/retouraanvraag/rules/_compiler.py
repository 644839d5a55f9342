"""Compile checked rules once into one plain Python function.

The function is built with the :mod:`ast` module from names only: the values the merchant typed
(countries, amounts, texts) live in the function's namespace under generated names (``_c3``), so
no user text ever becomes code. Three-valued logic costs nothing at run time: each condition is
compiled twice, as "is certainly true" and "is certainly false", and ``NIET`` swaps the two, so
an unknown value (``None``) makes both false and the rule does not match.

Loading a big file builds hundreds of thousands of nodes, so building is kept lean: a node gets
its location from its class, operators and reads of a local are one shared node each (the tree
is only read, by ``compile``), and the tree is freed before the garbage collector resumes.
"""

from __future__ import annotations

import ast
import bisect
import contextlib
import datetime as dt
import functools
import gc
import types
from collections.abc import Callable, Iterator, Sequence
from decimal import Decimal
from typing import Any, Final, TypeVar

import attrs

from retouraanvraag.model import Money, ReasonCatalogue, ReturnRequest, fold_text
from retouraanvraag.rules.fields import DEFAULT_FIELDS, FastPath, Field, FieldType, Scope
from retouraanvraag.rules.tree import And, Compare, Condition, Not, Operator, Or, Rule, fields_of

__all__ = [
    "Decided",
    "Roles",
    "RunResult",
    "compile_condition_function",
    "compile_decider",
    "compile_rules",
]

#: What the compiled function returns: the matching request-scope rules as a bit mask (bit k
#: for rule k), then per item the matching item-scope rules as a bit mask — or, when no rule
#: names an item field, the number of items. Hashable, so an outcome can be memoised on it.
RunResult = tuple[int, ...]

_Node = TypeVar("_Node", bound=ast.AST)


def _located(node_type: type[_Node]) -> type[_Node]:
    """``node_type`` with the location ``compile`` requires as class attributes.

    Every node of the generated function is on "line 1": giving each its location when it is
    made, or by a walk afterwards, cost as much as building the node (a big file has hundreds
    of thousands). The subclass keeps the name, fields and meaning of ``node_type``.
    """
    attributes = {
        "lineno": 1,
        "col_offset": 0,
        "end_lineno": 1,
        "end_col_offset": 0,
        "__module__": __name__,
        "__slots__": (),
    }
    return type(node_type.__name__, (node_type,), attributes)


_Name = _located(ast.Name)
_Attribute = _located(ast.Attribute)
_Call = _located(ast.Call)
_Compare = _located(ast.Compare)
_BoolOp = _located(ast.BoolOp)
_UnaryOp = _located(ast.UnaryOp)
_Constant = _located(ast.Constant)
_IfExp = _located(ast.IfExp)
_BinOp = _located(ast.BinOp)
_Subscript = _located(ast.Subscript)
_Slice = _located(ast.Slice)
_Tuple = _located(ast.Tuple)
_List = _located(ast.List)
_Assign = _located(ast.Assign)
_AugAssign = _located(ast.AugAssign)
_If = _located(ast.If)
_For = _located(ast.For)
_While = _located(ast.While)
_Break = _located(ast.Break)
_Return = _located(ast.Return)
_Expr = _located(ast.Expr)
_FunctionDef = _located(ast.FunctionDef)
_arg = _located(ast.arg)

# Contexts and operators have no location and no state: one of each serves every node.
_LOAD: Final = ast.Load()
_STORE: Final = ast.Store()
_AND: Final = ast.And()
_OR: Final = ast.Or()
_NOT: Final = ast.Not()
_EQ: Final = ast.Eq()
_NOT_EQ: Final = ast.NotEq()
_IN: Final = ast.In()
_NOT_IN: Final = ast.NotIn()
_IS: Final = ast.Is()
_IS_NOT: Final = ast.IsNot()
_GT: Final = ast.Gt()
_GTE: Final = ast.GtE()
_LT: Final = ast.Lt()
_LTE: Final = ast.LtE()
_ADD: Final = ast.Add()
_SUB: Final = ast.Sub()
_MULT: Final = ast.Mult()
_BIT_OR: Final = ast.BitOr()
#: A statement without parts: one serves every place (``compile`` only reads the tree).
_BREAK: Final = _Break()

#: An ordering's comparison operator when it holds, and when it certainly does not.
_OPS: Final[dict[Operator, tuple[ast.cmpop, ast.cmpop]]] = {
    Operator.GT: (_GT, _LTE),
    Operator.GE: (_GTE, _LT),
    Operator.LT: (_LT, _GTE),
    Operator.LE: (_LTE, _GT),
}


def _name(identifier: str) -> ast.Name:
    return _Name(identifier, _LOAD)


def _store(identifier: str) -> ast.Name:
    return _Name(identifier, _STORE)


def _attr(value: ast.expr, attribute: str) -> ast.Attribute:
    return _Attribute(value, attribute, _LOAD)


def _call(function: ast.expr, *args: ast.expr) -> ast.Call:
    return _Call(function, list(args), [])


def _compare(left: ast.expr, op: ast.cmpop, right: ast.expr) -> ast.Compare:
    return _Compare(left, [op], [right])


def _all(parts: Sequence[ast.expr]) -> ast.expr:
    return parts[0] if len(parts) == 1 else _BoolOp(_AND, list(parts))


def _any(parts: Sequence[ast.expr]) -> ast.expr:
    return parts[0] if len(parts) == 1 else _BoolOp(_OR, list(parts))


def _not(part: ast.expr) -> ast.expr:
    return _UnaryOp(_NOT, part)


def normalise_text(value: object) -> str | None:
    """Text compares ignoring case and surrounding space."""
    return None if value is None else str(value).strip().casefold()


def normalise_tags(tags: object) -> frozenset[str]:
    """Tags compare ignoring case and surrounding space."""
    if not tags:
        return frozenset()
    return frozenset(str(t).strip().casefold() for t in tags)  # type: ignore[attr-defined]


def normalise_optional_tags(tags: object) -> frozenset[str] | None:
    """Tags of a host field that may be unknown: ``None`` stays unknown."""
    return None if tags is None else normalise_tags(tags)


def _reason_tables(reasons: ReasonCatalogue) -> tuple[dict[str, str], dict[str, str]]:
    exact: dict[str, str] = {}
    folded: dict[str, str] = {}
    for reason in reasons.reasons:
        for text in (reason.code, reason.nl, reason.en):
            exact[text] = reason.code
            folded[fold_text(text)] = reason.code
    return exact, folded


def reason_normaliser(reasons: ReasonCatalogue) -> Callable[[str], str | None]:
    """Map a stored reason (a code, or a label in either language) to its code."""
    exact, folded = _reason_tables(reasons)

    def normalise(value: str | None) -> str | None:
        if value is None:  # a host field's unknown reason stays unknown
            return None
        code = exact.get(value)
        if code is not None:
            return code
        text = fold_text(str(value))
        return folded.get(text, text)

    return normalise


#: The library's own fields, by key: the compiler reads these straight from the aggregate
#: (integer amounts, one pass over the items) when a field still has the library's accessor.
_BUILTIN_ACCESSORS: Final = {field.key: field.accessor for field in DEFAULT_FIELDS}
#: Request fields summed or tested over the items, computed together in one pass.
_ITEM_AGGREGATES: Final = (FastPath.ANY_PHOTO, FastPath.ITEM_COUNT, FastPath.ITEM_TOTAL)
#: "Days since …" fields (``FastPath.since`` names the earlier moment).
_DAYS_SINCE: Final = (FastPath.DAYS_SINCE_DELIVERY, FastPath.DAYS_SINCE_ORDER)


def _builtin(field: Field) -> str | None:
    """The field's key when it is one of the library's own fields, unchanged."""
    if _BUILTIN_ACCESSORS.get(field.key) is field.accessor and not field.optional:
        return field.key
    if field.fast in _DAYS_SINCE and _BUILTIN_ACCESSORS.get(field.key) is field.accessor:
        return field.key
    return None


class _Generator:
    """Builds the function's body; holds the namespace of constants and accessors."""

    def __init__(self, tz: dt.tzinfo, reasons: ReasonCatalogue) -> None:
        exact, _ = _reason_tables(reasons)
        self.namespace: dict[str, Any] = {
            "__builtins__": {},
            "_tz": tz,
            "_nt": normalise_text,
            "_ntags": normalise_tags,
            "_ntags_opt": normalise_optional_tags,
            # The library's tags are a frozenset of text: their normal form is memoised.
            "_ntags_cached": functools.lru_cache(maxsize=1024)(normalise_tags),
            "_nr": reason_normaliser(reasons),
            "_rx": exact,
            "_tuple": tuple,
            "_len": len,
        }
        self.locals: dict[str, str] = {}
        #: Money fields read as two locals: field key -> (amount, currency), integers and codes.
        self.money: dict[str, tuple[str, str]] = {}
        #: Statements computing request-scope parts of item rules, run before the item loop;
        #: ``None`` outside the item loop.
        self.hoisted: list[ast.stmt] | None = None
        self._constants: dict[tuple[type, object], ast.Name] = {}
        self._temps = 0
        #: One node per local read: a node may sit in several places of the tree (``compile``
        #: only reads it), and a big file reads the same few locals tens of thousands of times.
        self._reads: dict[str, ast.Name] = {}
        #: Whether an And, Or or Not reads the request only, by ``id``; the node is kept
        #: alongside so that its ``id`` stays its own.
        self._request_only: dict[int, tuple[Condition, bool]] = {}

    def temp(self, prefix: str = "t") -> str:
        """A fresh local name."""
        self._temps += 1
        return f"{prefix}{self._temps}"

    def constant(self, value: object) -> ast.Name:
        """A generated name bound to ``value`` in the namespace (user values never become code)."""
        key = (type(value), value)
        try:
            node = self._constants.get(key)
        except TypeError:  # pragma: no cover - every resolved value is hashable
            node = None
        if node is None:
            identifier = f"_c{len(self.namespace)}"
            self.namespace[identifier] = value
            node = self._constants[key] = _name(identifier)
        return node

    def read(self, identifier: str) -> ast.Name:
        """A node reading the local (or namespace name) ``identifier``."""
        node = self._reads.get(identifier)
        if node is None:
            node = self._reads[identifier] = _name(identifier)
        return node

    def request_only(self, condition: Condition) -> bool:
        """Whether ``condition`` names no item field (memoised: hoisting asks per part)."""
        if isinstance(condition, Compare):
            return condition.field.scope is not Scope.ITEM
        known = self._request_only.get(id(condition))
        if known is not None:
            return known[1]
        parts = (condition.part,) if isinstance(condition, Not) else condition.parts
        answer = True
        for part in parts:
            if not self.request_only(part):
                answer = False
                break
        self._request_only[id(condition)] = (condition, answer)
        return answer

    def bind(self, value: object) -> ast.Name:
        """A generated name bound to ``value`` (a table the code looks values up in)."""
        identifier = f"_c{len(self.namespace)}"
        self.namespace[identifier] = value
        return _name(identifier)

    def _local(self, field: Field) -> str:
        prefix = "i" if field.scope is Scope.ITEM else "r"
        local = f"{prefix}{len(self.locals)}"
        self.locals[field.key] = local
        return local

    def load_request(self, fields: Sequence[Field]) -> list[ast.stmt]:
        """Statements that read the request-scope ``fields`` into locals (once per request)."""
        body: list[ast.stmt] = []
        builtin = {f.key: f for f in fields if _builtin(f) is not None}
        fast = {f.fast: f for f in builtin.values() if f.fast is not None}
        aggregates = [fast[path] for path in _ITEM_AGGREGATES if path in fast]
        if aggregates:
            body += self._aggregates(aggregates)
        days = [fast[path] for path in _DAYS_SINCE if path in fast]
        if days:
            created = self.temp()
            body.append(_assign_expr(created, _date_in_tz(_attr(_name("request"), "created_at"))))
            for field in days:
                earlier = self.temp()
                since = field.fast.since if field.fast is not None else None
                body.append(_assign_expr(earlier, _attr(_name("request"), str(since))))
                days_between = _attr(
                    _BinOp(_name(created), _SUB, _date_in_tz(_name(earlier))), "days"
                )
                is_none = _compare(_name(earlier), _IS, _Constant(None))
                body.append(
                    _assign_expr(self._local(field), _IfExp(is_none, _Constant(None), days_between))
                )
        for field in fields:
            if field.key in self.locals:
                continue
            if field.fast is FastPath.TAGS and field.key in builtin:
                raw = _attr(_name("request"), "tags")
                value: ast.expr = _call(_name("_ntags_cached"), raw)
                body.append(_assign_expr(self._local(field), value))
                continue
            body += self.load(field)
        return body

    def _aggregates(self, fields: list[Field]) -> list[ast.stmt]:
        """One pass over the items for the number of items, the return value and photos."""
        paths = {f.fast for f in fields}
        init: list[ast.stmt] = []
        loop: list[ast.stmt] = []
        quantity = self.temp()
        if paths & {FastPath.ITEM_COUNT, FastPath.ITEM_TOTAL}:
            loop.append(_assign_expr(quantity, _attr(_name("item"), "quantity")))
        for field in fields:
            local = self._local(field)
            if field.fast is FastPath.ITEM_COUNT:
                init.append(_assign(local, 0))
                loop.append(_AugAssign(_store(local), _ADD, _name(quantity)))
            elif field.fast is FastPath.ITEM_TOTAL:
                # Every item's price is in the order's currency (the aggregate checks it).
                currency = self.temp()
                init += [
                    _assign(local, 0),
                    _assign_expr(
                        currency, _attr(_attr(_name("request"), "order_value"), "currency")
                    ),
                ]
                amount = _attr(_attr(_name("item"), "unit_price"), "amount")
                line = _BinOp(amount, _MULT, _name(quantity))
                loop.append(_AugAssign(_store(local), _ADD, line))
                self.money[field.key] = (local, currency)
            else:  # FastPath.ANY_PHOTO
                init.append(_assign(local, value=False))
                loop.append(_If(_attr(_name("item"), "photos"), [_assign(local, value=True)], []))
        return [*init, _For(_store("item"), _attr(_name("request"), "items"), loop, [])]

    def load_item(self, fields: Sequence[Field]) -> list[ast.stmt]:
        """Statements that read the item-scope ``fields`` into locals (once per item)."""
        body: list[ast.stmt] = []
        fast = {f.fast for f in fields if _builtin(f) is not None}
        quantity: str | None = None
        if FastPath.LINE_VALUE in fast:
            quantity = self.temp()
            body.append(_assign_expr(quantity, _attr(_name("item"), "quantity")))
        for field in fields:
            if quantity is not None and field.fast is FastPath.QUANTITY and _builtin(field):
                self.locals[field.key] = quantity
            elif quantity is not None and field.fast is FastPath.LINE_VALUE and _builtin(field):
                price, currency = self.temp(), self.temp()
                local = self._local(field)
                amount = _BinOp(_attr(_name(price), "amount"), _MULT, _name(quantity))
                body += [
                    _assign_expr(price, _attr(_name("item"), "unit_price")),
                    _assign_expr(local, amount),
                    _assign_expr(currency, _attr(_name(price), "currency")),
                ]
                self.money[field.key] = (local, currency)
            else:
                body += self.load(field)
        return body

    def load(self, field: Field) -> list[ast.stmt]:
        """Statements that read ``field`` into its local (once per request or item)."""
        if field.key in self.locals:
            return []
        local = self._local(field)
        subject = _name("item" if field.scope is Scope.ITEM else "request")
        if field.attribute is not None:
            raw: ast.expr = subject
            for name in field.attribute.split("."):
                raw = _attr(raw, name)
        else:
            accessor = f"_a{len(self.namespace)}"
            self.namespace[accessor] = field.accessor
            args = [subject, _name("_tz")] if field.timezone_aware else [subject]
            raw = _call(_name(accessor), *args)
        if field.type is FieldType.REASON:
            # Stored reasons are mostly exact codes or labels: one dict look-up, no call.
            text = self.temp()
            found = _call(_attr(_name("_rx"), "get"), _name(text))
            value = _BoolOp(_OR, [found, _call(_name("_nr"), _name(text))])
            return [_assign_expr(text, raw), _assign_expr(local, value)]
        return [_assign_expr(local, self._normalise(field, raw))]

    def _normalise(self, field: Field, raw: ast.expr) -> ast.expr:
        if field.type is FieldType.TEXT:
            if field.optional:
                return _call(_name("_nt"), raw)
            return _call(_attr(_call(_attr(raw, "strip")), "casefold"))
        if field.type is FieldType.TAGS:
            return _call(_name("_ntags_opt" if field.optional else "_ntags"), raw)
        return raw

    # -- conditions: certainly true / certainly false ---------------------------------------

    def true(self, condition: Condition) -> ast.expr:
        """An expression that is true exactly when ``condition`` is certainly true."""
        if isinstance(condition, Compare):
            return self._hoist(condition, want=True) or self._compare(condition, want=True)
        if isinstance(condition, Not):
            return self.false(condition.part)
        return self._hoist(condition, want=True) or self._junction(
            condition, isinstance(condition, And), want=True
        )

    def false(self, condition: Condition) -> ast.expr:
        """An expression that is true exactly when ``condition`` is certainly false."""
        if isinstance(condition, Compare):
            return self._hoist(condition, want=False) or self._compare(condition, want=False)
        if isinstance(condition, Not):
            return self.true(condition.part)
        return self._hoist(condition, want=False) or self._junction(
            condition, not isinstance(condition, And), want=False
        )

    def _junction(self, condition: And | Or, every: bool, *, want: bool) -> ast.expr:
        """``every`` part (or any part) certainly true (``want``) or certainly false."""
        parts = condition.parts
        combine = _all if every else _any
        hoisted = self.hoisted
        if hoisted is not None:
            # The parts that read only the request are computed once, before the item loop.
            fixed: list[Condition] = []
            varying: list[Condition] = []
            for part in parts:
                (fixed if self.request_only(part) else varying).append(part)
            if fixed:
                head = self._hoisted(hoisted, fixed, every, want=want)
                return combine([head, *(self._branch(p, want) for p in varying)])
        return combine([self._branch(p, want) for p in parts])

    def _branch(self, condition: Condition, want: bool) -> ast.expr:
        return self.true(condition) if want else self.false(condition)

    def _hoist(self, condition: Condition, *, want: bool) -> ast.Name | None:
        """In the item loop: a local computed before it, for a condition on the request only."""
        hoisted = self.hoisted
        if hoisted is None or not self.request_only(condition):
            return None
        return self._hoisted(hoisted, (condition,), every=True, want=want)

    def _hoisted(
        self, hoisted: list[ast.stmt], parts: Sequence[Condition], every: bool, *, want: bool
    ) -> ast.Name:
        """A local computed before the item loop (into ``hoisted``): ``every`` part or any."""
        self.hoisted = None
        try:
            values = [self._branch(p, want) for p in parts]
        finally:
            self.hoisted = hoisted
        local = self.temp("h")
        hoisted.append(_assign_expr(local, (_all if every else _any)(values)))
        return self.read(local)

    def _money(self, field: Field, v: ast.expr) -> tuple[ast.expr, ast.expr]:
        parts = self.money.get(field.key)
        if parts is not None:
            return self.read(parts[0]), self.read(parts[1])
        return _attr(v, "amount"), _attr(v, "currency")

    def _compare(self, compare: Compare, *, want: bool) -> ast.expr:
        field, operator = compare.field, compare.operator
        v = self.read(self.locals[field.key])
        # Identity tests, not set look-ups: an enum member's hash is a Python call, and a big
        # file has tens of thousands of comparisons.
        if operator is Operator.IS_NOT or operator is Operator.NOT_CONTAINS:
            want = not want
        test = self._test(field, operator, compare.values, v, want=want)
        needs_guard = field.optional and not (
            want
            and (operator is Operator.IS or operator is Operator.IS_NOT)
            and field.type is not FieldType.MONEY
        )
        if needs_guard:
            return _all([_compare(v, _IS_NOT, _Constant(None)), test])
        return test

    def _test(  # noqa: PLR0911
        self,
        field: Field,
        operator: Operator,
        values: tuple[object, ...],
        v: ast.expr,
        *,
        want: bool,
    ) -> ast.expr:
        """``want`` True: the comparison holds; False: it does not (the value being known)."""
        ordering = _OPS.get(operator)
        if ordering is not None:
            yes, no = ordering
            op = yes if want else no
            bound = values[0]
            if isinstance(bound, Money):
                amount, currency = self._money(field, v)
                return _all(
                    [
                        _compare(currency, _EQ, self.constant(bound.currency)),
                        _compare(amount, op, self.constant(bound.amount)),
                    ]
                )
            return _compare(v, op, self.constant(bound))
        if field.type is FieldType.MONEY:
            return self._money_equal(field, values, v, want=want)
        if operator is Operator.CONTAINS or operator is Operator.NOT_CONTAINS:
            folded = [normalise_text(x) or "" for x in values]
            if field.type is FieldType.TAGS:
                if len(folded) == 1:
                    op = _IN if want else _NOT_IN
                    return _compare(self.constant(folded[0]), op, v)
                disjoint = _call(_attr(v, "isdisjoint"), self.constant(frozenset(folded)))
                return _not(disjoint) if want else disjoint
            if want:
                return _any([_compare(self.constant(t), _IN, v) for t in folded])
            return _all([_compare(self.constant(t), _NOT_IN, v) for t in folded])
        if operator is Operator.STARTS_WITH:
            prefixes = tuple(normalise_text(x) or "" for x in values)
            test = _call(_attr(v, "startswith"), self.constant(prefixes))
            return test if want else _not(test)
        keys = [self._key(field, x) for x in values]
        if len(keys) == 1:
            return _compare(v, _EQ if want else _NOT_EQ, self.constant(keys[0]))
        return _compare(v, _IN if want else _NOT_IN, self.constant(frozenset(keys)))

    def _money_equal(
        self, field: Field, values: tuple[object, ...], v: ast.expr, *, want: bool
    ) -> ast.expr:
        """The amount is one of ``values`` (``want``), or certainly none of them."""
        amount, currency = self._money(field, v)
        amounts = [m for m in values if isinstance(m, Money)]
        tests = [
            _all(
                [
                    _compare(amount, _EQ, self.constant(m.amount)),
                    _compare(currency, _EQ, self.constant(m.currency)),
                ]
            )
            for m in amounts
        ]
        if want:
            return _any(tests)
        # An amount in none of the values' currencies compares as unknown, not as unequal.
        currencies = frozenset(m.currency for m in amounts)
        if len(currencies) == 1:
            known = _compare(currency, _EQ, self.constant(amounts[0].currency))
        else:
            known = _compare(currency, _IN, self.constant(currencies))
        return _all([known, _not(_any(tests))])

    @staticmethod
    def _key(field: Field, value: object) -> object:
        if field.type is FieldType.TEXT:
            return normalise_text(value)
        if isinstance(value, Decimal) and value == value.to_integral_value():
            return int(value)  # pragma: no cover - the checker already gives ints
        return value


def _date_in_tz(moment: ast.expr) -> ast.expr:
    return _call(_attr(_call(_attr(moment, "astimezone"), _name("_tz")), "date"))


def _assign_expr(target: str, value: ast.expr) -> ast.stmt:
    return _Assign([_store(target)], value)


def _fields(rules: Sequence[Rule]) -> tuple[list[Field], list[Field]]:
    request: dict[str, Field] = {}
    item: dict[str, Field] = {}
    for rule in rules:
        if not rule.enabled:
            continue
        for field in fields_of(rule.condition):
            (item if field.scope is Scope.ITEM else request).setdefault(field.key, field)
    return list(request.values()), list(item.values())


def _mark(target: str, index: int) -> ast.stmt:
    return _AugAssign(_store(target), _BIT_OR, _Constant(1 << index))


def _assign(target: str, value: int | bool | None) -> ast.stmt:
    return _Assign([_store(target)], _Constant(value))


def compile_rules(
    rules: Sequence[Rule], tz: dt.tzinfo, reasons: ReasonCatalogue
) -> Callable[[ReturnRequest], RunResult]:
    """One function that runs every rule on a request and says which rules matched where.

    It returns ``(hits, mask of item 1, mask of item 2, …)`` when a rule names an item field,
    else ``(hits, number of items)``; ``hits`` has bit k set when request-scope rule k matched,
    an item's mask when item-scope rule k matched for it. Everything else the outcome needs
    (the deciding rules, fee, carrier, refund) follows from these masks.
    """
    return _function("_run", lambda: _rules_code(rules, tz, reasons))


def _rules_code(
    rules: Sequence[Rule], tz: dt.tzinfo, reasons: ReasonCatalogue
) -> tuple[list[ast.stmt], _Generator]:
    gen = _Generator(tz, reasons)
    request_fields, item_fields = _fields(rules)
    body: list[ast.stmt] = gen.load_request(request_fields)
    body.append(_assign("hits", 0))
    for index, rule in enumerate(rules):
        if rule.enabled and rule.scope is not Scope.ITEM:
            body.append(_If(gen.true(rule.condition), [_mark("hits", index)], []))
    items = _attr(_name("request"), "items")
    if not any(rule.enabled and rule.scope is Scope.ITEM for rule in rules):
        result = [_name("hits"), _call(_name("_len"), items)]
        body.append(_Return(_Tuple(result, _LOAD)))
        return body, gen
    loop = gen.load_item(item_fields)
    loop.append(_assign("ih", 0))
    gen.hoisted = []
    for index, rule in enumerate(rules):
        if rule.enabled and rule.scope is Scope.ITEM:
            loop.append(_If(gen.true(rule.condition), [_mark("ih", index)], []))
    loop.append(_Expr(_call(_name("add"), _name("ih"))))
    body += gen.hoisted
    body += [
        _assign_expr("per", _List([_name("hits")], _LOAD)),
        _assign_expr("add", _attr(_name("per"), "append")),
        _For(_store("item"), items, loop, []),
        _Return(_call(_name("_tuple"), _name("per"))),
    ]
    return body, gen


def compile_condition_function(
    condition: Condition, tz: dt.tzinfo, reasons: ReasonCatalogue
) -> Callable[[ReturnRequest], bool]:
    """A predicate: the condition certainly holds for the request (or for one of its items)."""
    return _function("_match", lambda: _condition_code(condition, tz, reasons))


def _condition_code(
    condition: Condition, tz: dt.tzinfo, reasons: ReasonCatalogue
) -> tuple[list[ast.stmt], _Generator]:
    gen = _Generator(tz, reasons)
    request_fields, item_fields = _fields([Rule(1, None, condition, ())])
    body: list[ast.stmt] = gen.load_request(request_fields)
    if not item_fields:
        body.append(_Return(gen.true(condition)))
    else:
        loop = gen.load_item(item_fields)
        gen.hoisted = []
        loop.append(_If(gen.true(condition), [_Return(_Constant(value=True))], []))
        body += gen.hoisted
        body.append(_For(_store("item"), _attr(_name("request"), "items"), loop, []))
        body.append(_Return(_Constant(value=False)))
    return body, gen


# -- deciding: the winning rule of each kind of action, by index look-ups and early exits ----

#: What :func:`compile_decider`'s function returns for a request: the best item decision's
#: rank (``-1``: no item is decided), whether some item is undecided, the rules that set the
#: fee and choose the carrier (``-1``: none), whether a rule refunds the fee, and the items a
#: not-returnable rule decided, as ``(item index, rule index)`` pairs, and the rule that sets
#: the return window (``-1``: none).
Decided = tuple[int, bool, int, int, bool, tuple[tuple[int, int], ...], int]

#: Fewer one-comparison rules than this on one field are tested one by one (a look-up costs
#: about as much as two or three tests).
MIN_INDEXED: Final = 3
#: Field types whose ``IS`` values are looked up in a dict (hashable, compared by equality).
_EQ_INDEXED: Final = frozenset(
    {
        FieldType.COUNTRY,
        FieldType.REASON,
        FieldType.CHOICE,
        FieldType.YES_NO,
        FieldType.TEXT,
        FieldType.NUMBER,
    }
)
#: ``IndexKey``: (field key, how its values are looked up, the bounds' currency).
IndexKey = tuple[str, str, str]


@attrs.frozen
class Roles:
    """The part each rule plays, as far as the decider needs to know it.

    Attributes:
        decides: the rules with a decision action.
        sets_fee: the rules with a return fee (request and item rules).
        sets_carrier: the request rules with a carrier.
        refunds: the rules that refund the fee.
        rank: per rule, ``strictness * len(rules) + index`` when it decides (higher wins
            between items), else ``-1``.
        not_returnable: the rules whose decision is "not returnable".
        sets_window: the request rules with a return window.
    """

    decides: frozenset[int]
    sets_fee: frozenset[int]
    sets_carrier: frozenset[int]
    refunds: frozenset[int]
    rank: tuple[int, ...]
    not_returnable: frozenset[int]
    sets_window: frozenset[int] = frozenset()
    #: Per rule, how its fee ranks when items' fees are combined (the amount, then the rule's
    #: place), with the rank of "no fee" last, at index ``-1``.
    fee_order: tuple[tuple[int, int], ...] = ((-1, -1),)


def index_key(condition: Condition) -> IndexKey | None:  # noqa: PLR0911 - one case per kind
    """How a rule whose condition is one comparison can be found by look-up, if it can."""
    if not isinstance(condition, Compare):
        return None
    field, operator, kind = condition.field, condition.operator, condition.field.type
    if operator is Operator.IS and kind in _EQ_INDEXED:
        return (field.key, "eq", "")
    if operator is Operator.STARTS_WITH and kind is FieldType.TEXT:
        return (field.key, "prefix", "")
    if operator is Operator.CONTAINS and kind is FieldType.TAGS:
        return (field.key, "tags", "")
    if operator.is_ordering and kind is FieldType.NUMBER:
        return (field.key, "order", "")
    bound = condition.values[0] if condition.values else None
    if operator.is_ordering and kind is FieldType.MONEY and isinstance(bound, Money):
        return (field.key, "order", bound.currency)
    return None


def region_table(
    conditions: Sequence[Compare], indexes: Sequence[int]
) -> tuple[list[Any], list[int]]:
    """Thresholds and, per region of the number line, the last rule whose comparison holds.

    With ``t`` the sorted distinct bounds, a value ``v`` lies in region
    ``bisect_left(t, v) + bisect_right(t, v)``: ``2i + 1`` when it equals ``t[i]``, ``2i`` when
    it lies strictly between ``t[i - 1]`` and ``t[i]``. A lower bound holds from some region on,
    an upper bound up to some region, so two running maxima give the table.
    """
    bounds = [_bound(c) for c in conditions]
    thresholds = sorted(set(bounds))
    position = {t: i for i, t in enumerate(thresholds)}
    regions = 2 * len(thresholds) + 1
    from_left = [-1] * regions  # lower bounds: the last rule holding from region r on
    from_right = [-1] * regions  # upper bounds: the last rule holding up to region r
    for condition, bound, index in zip(conditions, bounds, indexes, strict=True):
        j = position[bound]
        operator = condition.operator
        if operator is Operator.GT:
            from_left[2 * j + 2] = max(from_left[2 * j + 2], index)
        elif operator is Operator.GE:
            from_left[2 * j + 1] = max(from_left[2 * j + 1], index)
        elif operator is Operator.LT:
            from_right[2 * j] = max(from_right[2 * j], index)
        else:  # LE
            from_right[2 * j + 1] = max(from_right[2 * j + 1], index)
    for r in range(1, regions):
        from_left[r] = max(from_left[r], from_left[r - 1])
    for r in range(regions - 2, -1, -1):
        from_right[r] = max(from_right[r], from_right[r + 1])
    return thresholds, [max(a, b) for a, b in zip(from_left, from_right, strict=True)]


def _bound(condition: Compare) -> Any:  # noqa: ANN401 - an int, Decimal or cents
    bound = condition.values[0]
    return bound.amount if isinstance(bound, Money) else bound


def _every_item(rule: int, count: int) -> tuple[tuple[int, int], ...]:
    """Every item decided by one request rule."""
    return tuple((i, rule) for i in range(count))


class _Decider:
    """Writes the decider: one early-exit chain per kind of action and scope."""

    def __init__(self, gen: _Generator, rules: Sequence[Rule]) -> None:
        self.gen = gen
        self.rules = rules
        #: Per rule, how it is found by look-up, if it can be (asked once per chain and share).
        self.keys = [index_key(rule.condition) for rule in rules]
        #: Conditions evaluated once into a local because two chains test them.
        self.shared: dict[int, str] = {}

    def share(self, chains: Sequence[Sequence[int]]) -> list[ast.stmt]:
        """Evaluate, once, the conditions that several of ``chains`` would test one by one."""
        seen: set[int] = set()
        body: list[ast.stmt] = []
        for chain in chains:
            for k in self.partition(chain)[1]:
                if k in seen and k not in self.shared:
                    local = self.gen.temp("m")
                    body.append(_assign_expr(local, self.gen.true(self.rules[k].condition)))
                    self.shared[k] = local
                seen.add(k)
        return body

    def chain(
        self,
        members: Sequence[int],
        target: str,
        *,
        start: str | None = None,
        start_values: Sequence[int] = (),
        initialise: bool = True,
    ) -> list[ast.stmt]:
        """``target`` = the last of ``members`` whose condition holds (or ``start``, if later).

        One-comparison rules on a field with enough of them are looked up; the others are
        tested from the last rule up, stopping at the first that holds or at ``target``'s
        value, since no earlier rule can win any more.
        """
        body: list[ast.stmt] = []
        if initialise:
            body.append(_assign_expr(target, _name(start)) if start else _assign(target, -1))
        groups, tested = self.partition(members)
        looked_up: list[int] = []
        for key, indexes in groups.items():
            conditions = [self.rules[k].condition for k in indexes]
            body += self.lookup(key, conditions, indexes, target)  # type: ignore[arg-type]
            looked_up.extend(indexes)
        body += self.tests(tested, target, [*looked_up, *start_values])
        return body

    def partition(self, members: Sequence[int]) -> tuple[dict[IndexKey, list[int]], list[int]]:
        """The rules found by look-up (per index), and those tested one by one, last first."""
        groups: dict[IndexKey, list[int]] = {}
        tested: list[int] = []
        for k in members:
            key = self.keys[k]
            if key is None:
                tested.append(k)
            else:
                groups.setdefault(key, []).append(k)
        for key in [key for key, indexes in groups.items() if len(indexes) < MIN_INDEXED]:
            tested.extend(groups.pop(key))
        return groups, sorted(tested, reverse=True)

    def tests(self, tested: Sequence[int], target: str, possible: Sequence[int]) -> list[ast.stmt]:
        """Test ``tested`` (last rule first) until one holds or ``target`` is already later.

        ``possible``: the values ``target`` may hold before the tests. A guard "already later"
        goes only where one of them lies between two tested rules.
        """
        if not tested:
            return []
        values = sorted(set(possible))
        loop: list[ast.stmt] = []
        above = None
        for k in tested:
            low = bisect.bisect_right(values, k)
            high = len(values) if above is None else bisect.bisect_left(values, above)
            if low < high:
                guard = _compare(self.gen.read(target), _GT, _Constant(k))
                loop.append(_If(guard, [_BREAK], []))
            local = self.shared.get(k)
            test = self.gen.read(local) if local else self.gen.true(self.rules[k].condition)
            loop.append(_If(test, [_assign(target, k), _BREAK], []))
            above = k
        loop.append(_BREAK)
        return [_While(_Constant(value=True), loop, [])]

    def lookup(
        self, key: IndexKey, conditions: list[Compare], indexes: list[int], target: str
    ) -> list[ast.stmt]:
        """Statements raising ``target`` to the last of these rules whose comparison holds."""
        field = conditions[0].field
        value = _name(self.gen.locals[field.key])
        found = self.gen.temp("x")

        def raise_to(expression: ast.expr) -> list[ast.stmt]:
            higher = _compare(_name(found), _GT, _name(target))
            return [
                _assign_expr(found, expression),
                _If(higher, [_assign_expr(target, _name(found))], []),
            ]

        pairs = list(zip(conditions, indexes, strict=True))
        if key[1] == "eq":
            table = _last_per_value(pairs, lambda v: _Generator._key(field, v))  # noqa: SLF001
            body = raise_to(_call(_attr(self.gen.bind(table), "get"), value, _Constant(-1)))
        elif key[1] == "prefix":
            body = []
            for length, prefixes in _prefix_tables(pairs):
                cut = _Subscript(value, _Slice(None, _Constant(length), None), _LOAD)
                get = _attr(self.gen.bind(prefixes), "get")
                body += raise_to(_call(get, cut, _Constant(-1)))
        elif key[1] == "tags":
            tags = _last_per_value(pairs, lambda v: normalise_text(v) or "")
            tag = self.gen.temp("g")
            get = _attr(self.gen.bind(tags), "get")
            each = raise_to(_call(get, _name(tag), _Constant(-1)))
            body = [_For(_store(tag), value, each, [])]
        else:
            body = self._bounds(key, conditions, indexes, value, raise_to)
        if field.optional:
            body = [_If(_compare(value, _IS_NOT, _Constant(None)), body, [])]
        return body

    def _bounds(
        self,
        key: IndexKey,
        conditions: list[Compare],
        indexes: list[int],
        value: ast.Name,
        raise_to: Callable[[ast.expr], list[ast.stmt]],
    ) -> list[ast.stmt]:
        """``>``, ``<``, …: which region of the number line the value is in, by two bisects."""
        field = conditions[0].field
        thresholds, regions = region_table(conditions, indexes)
        ts = self.gen.bind(tuple(thresholds))
        number: ast.Name = value
        prelude: list[ast.stmt] = []
        currency_test: ast.expr | None = None
        if field.type is FieldType.MONEY:
            amount, currency = self.gen._money(field, value)  # noqa: SLF001 - same module
            number = _name(self.gen.temp("a"))
            prelude = [_assign_expr(number.id, amount)]
            currency_test = _compare(currency, _EQ, self.gen.constant(key[2]))
        region = _BinOp(_call(_name("_bl"), ts, number), _ADD, _call(_name("_br"), ts, number))
        table = self.gen.bind(tuple(regions))
        body = prelude + raise_to(_Subscript(table, region, _LOAD))
        return [_If(currency_test, body, [])] if currency_test is not None else body


def _last_per_value(
    pairs: Sequence[tuple[Compare, int]], key: Callable[[object], object]
) -> dict[object, int]:
    """For each value the comparisons list, the last rule listing it."""
    table: dict[object, int] = {}
    for condition, k in pairs:
        for v in condition.values:
            entry = key(v)
            table[entry] = max(table.get(entry, -1), k)
    return table


def _prefix_tables(pairs: Sequence[tuple[Compare, int]]) -> list[tuple[int, dict[str, int]]]:
    """Per prefix length, each prefix with the last rule starting with it."""
    by_length: dict[int, dict[str, int]] = {}
    for condition, k in pairs:
        for v in condition.values:
            prefix = normalise_text(v) or ""
            same_length = by_length.setdefault(len(prefix), {})
            same_length[prefix] = max(same_length.get(prefix, -1), k)
    return sorted(by_length.items())


def compile_decider(
    rules: Sequence[Rule], tz: dt.tzinfo, reasons: ReasonCatalogue, roles: Roles
) -> Callable[[ReturnRequest], Decided]:
    """One function that finds, for a request, the rules that decide its outcome.

    "The last matching rule wins" is read backwards: each kind of action's rules are tried
    from the last one up and the first that holds is the winner, so most rules are never
    tested; one-comparison rules sharing a field (``Van land IS …``, ``SKU BEGINT MET …``,
    ``Bestelwaarde > …``) are found by one dict or bisect look-up. Which rules matched
    besides the winners is left to :func:`compile_rules` (the trace needs it, evaluation not).
    """
    return _function("_decide", lambda: _decider_code(rules, tz, reasons, roles))


def _decider_code(
    rules: Sequence[Rule], tz: dt.tzinfo, reasons: ReasonCatalogue, roles: Roles
) -> tuple[list[ast.stmt], _Generator]:
    gen = _Generator(tz, reasons)
    gen.namespace.update(
        {
            "_bl": bisect.bisect_left,
            "_br": bisect.bisect_right,
            "_rank": (*roles.rank, -1),
            "_refusing": roles.not_returnable,
            "_every": _every_item,
        }
    )
    decider = _Decider(gen, rules)
    scopes = [rule.scope for rule in rules]
    on_request = [k for k, scope in enumerate(scopes) if scope is not Scope.ITEM]
    on_item = [k for k, scope in enumerate(scopes) if scope is Scope.ITEM]
    request_fields, item_fields = _fields(rules)
    body: list[ast.stmt] = gen.load_request(request_fields)
    request_chains = {
        "rd": [k for k in on_request if k in roles.decides],
        "fee": [k for k in on_request if k in roles.sets_fee],
        "car": [k for k in on_request if k in roles.sets_carrier],
        "rf": [k for k in on_request if k in roles.refunds],
        "win": [k for k in on_request if k in roles.sets_window],
    }
    body += decider.share(list(request_chains.values()))
    for result_name, members in request_chains.items():
        body += decider.chain(members, result_name)
    items: ast.expr = _attr(_name("request"), "items")
    refunded = _compare(_name("rf"), _GTE, _Constant(0))
    result = _Tuple(
        [*(_name(n) for n in ("br", "und", "fee", "car")), refunded, _name("nr"), _name("win")],
        _LOAD,
    )
    if not on_item:
        decided = _compare(_name("rd"), _IN, _name("_refusing"))
        every = _call(_name("_every"), _name("rd"), _call(_name("_len"), items))
        body += [
            _assign_expr("br", _Subscript(_name("_rank"), _name("rd"), _LOAD)),
            _assign_expr("und", _compare(_name("rd"), _LT, _Constant(0))),
            _assign_expr("nr", _IfExp(decided, every, _Tuple([], _LOAD))),
            _Return(result),
        ]
        return body, gen
    item_chains = {
        "b": [k for k in on_item if k in roles.decides],
        "rf": [k for k in on_item if k in roles.refunds],
        "f": [k for k in on_item if k in roles.sets_fee],
    }
    gen.hoisted = []
    loop = gen.load_item(item_fields)
    loop += decider.share(list(item_chains.values()))
    loop += decider.chain(item_chains["b"], "b", start="rd", start_values=request_chains["rd"])
    if item_chains["f"]:
        # Each item's fee is its last matching fee rule (request or item); the request
        # pays the highest of them, a tie going to the later rule: "fb" is that rule.
        loop += decider.chain(
            item_chains["f"], "f", start="fee", start_values=request_chains["fee"]
        )
        higher = _compare(
            _Subscript(_name("_feeorder"), _name("f"), _LOAD),
            _GT,
            _Subscript(_name("_feeorder"), _name("fb"), _LOAD),
        )
        loop.append(_If(higher, [_assign_expr("fb", _name("f"))], []))
        gen.namespace["_feeorder"] = roles.fee_order
        result.elts[2] = _name("fb")
    if item_chains["rf"]:
        unrefunded = _compare(_name("rf"), _LT, _Constant(0))
        refund = decider.chain(item_chains["rf"], "rf", initialise=False)
        loop.append(_If(unrefunded, refund, []))
    rank = _Subscript(_name("_rank"), _name("b"), _LOAD)
    loop += [
        _assign_expr("r", rank),
        _If(_compare(_name("r"), _GT, _name("br")), [_assign_expr("br", _name("r"))], []),
        _If(_compare(_name("b"), _LT, _Constant(0)), [_assign("und", value=True)], []),
    ]
    target: ast.expr = _store("item")
    if roles.not_returnable:
        pair = _Tuple([_Tuple([_name("i"), _name("b")], _LOAD)], _LOAD)
        loop.append(
            _If(
                _compare(_name("b"), _IN, _name("_refusing")),
                [_assign_expr("nr", _BinOp(_name("nr"), _ADD, pair))],
                [],
            )
        )
        target = _Tuple([_store("i"), _store("item")], _STORE)
        items = _call(_name("_enumerate"), items)
        gen.namespace["_enumerate"] = enumerate
    body += gen.hoisted
    body += [
        _assign("br", -1),
        _assign("fb", -1),
        _assign("und", value=False),
        _assign_expr("nr", _Tuple([], _LOAD)),
        _For(target, items, loop, []),
        _Return(result),
    ]
    return body, gen


@contextlib.contextmanager
def paused_collector() -> Iterator[None]:
    """Pause the cyclic garbage collector while rules are loaded or a rule set's code is built.

    Loading allocates a token and a node per word, building a syntax tree node per operator
    and name: hundreds of thousands for a big file. Each of them counts towards the collector's
    thresholds, and every full collection walks the whole heap (the rules, their tokens), so on
    a big file the collector took as long as the loading itself. None of them is in a reference
    cycle, so nothing is lost by collecting after; :func:`_function` frees the syntax tree
    before the collector resumes. The pause is process-wide and lasts one load (at most about
    two seconds for a file at the 1 MB limit); reference counting frees memory meanwhile.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _function(
    name: str, build: Callable[[], tuple[list[ast.stmt], _Generator]]
) -> Callable[..., Any]:
    """The function ``name`` whose body ``build`` writes, compiled with the collector paused.

    No node outlives ``_compile``: reference counting frees the whole tree before the collector
    resumes. Were the tree still alive then, the collection that follows (every node counted
    towards it) would walk each of its nodes, costing about as much as building them.
    """
    with paused_collector():
        code, namespace = _compile(name, *build())
    # The module was built node by node from generated names and fixed operators; every value
    # the merchant typed sits in `namespace` and is only ever referenced by name.
    exec(code, namespace)  # noqa: S102
    function: Callable[..., Any] = namespace[name]
    return function


def _compile(
    name: str, body: list[ast.stmt], gen: _Generator
) -> tuple[types.CodeType, dict[str, Any]]:
    function = _FunctionDef(
        name=name,
        args=ast.arguments(
            posonlyargs=[],
            args=[_arg("request")],
            vararg=None,
            kwonlyargs=[],
            kw_defaults=[],
            kwarg=None,
            defaults=[],
        ),
        body=body,
        decorator_list=[],
        returns=None,
    )
    module = ast.Module([function], type_ignores=[])
    return compile(module, "<rules>", "exec"), gen.namespace
