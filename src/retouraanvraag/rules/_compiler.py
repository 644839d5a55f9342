"""Compile checked rules once into one plain Python function.

The function is built with the :mod:`ast` module from names only: the values the merchant typed
(countries, amounts, texts) live in the function's namespace under generated names (``_c3``), so
no user text ever becomes code. Three-valued logic costs nothing at run time: each condition is
compiled twice, as "is certainly true" and "is certainly false", and ``NIET`` swaps the two, so
an unknown value (``None``) makes both false and the rule does not match.
"""

from __future__ import annotations

import ast
import datetime as dt
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any, Final

from retouraanvraag.model import Money, ReasonCatalogue, ReturnRequest, fold_text
from retouraanvraag.rules.fields import Field, FieldType, Scope
from retouraanvraag.rules.tree import And, Compare, Condition, Not, Operator, Rule, fields_of

__all__ = ["RunResult", "compile_condition_function", "compile_rules"]

#: What the compiled function returns: the matching request-scope rules (a bit mask, bit k for
#: rule k), the last matching request-scope decision rule, the fee rule, the carrier rule, the
#: refund flag, and per item (its decision rule, its matching item-scope rules as a bit mask) —
#: or ``None`` when no rule names an item field. Rule ``-1`` is "none". All hashable, so an
#: outcome can be memoised on it.
RunResult = tuple[int, int, int, int, bool, tuple[tuple[int, int], ...] | None]

_OPS: Final = {
    Operator.GT: (ast.Gt, ast.LtE),
    Operator.GE: (ast.GtE, ast.Lt),
    Operator.LT: (ast.Lt, ast.GtE),
    Operator.LE: (ast.LtE, ast.Gt),
}


def _name(identifier: str) -> ast.Name:
    return ast.Name(identifier, ast.Load())


def _store(identifier: str) -> ast.Name:
    return ast.Name(identifier, ast.Store())


def _attr(value: ast.expr, attribute: str) -> ast.Attribute:
    return ast.Attribute(value, attribute, ast.Load())


def _call(function: ast.expr, *args: ast.expr) -> ast.Call:
    return ast.Call(function, list(args), [])


def _compare(left: ast.expr, op: ast.cmpop, right: ast.expr) -> ast.Compare:
    return ast.Compare(left, [op], [right])


def _all(parts: Sequence[ast.expr]) -> ast.expr:
    return parts[0] if len(parts) == 1 else ast.BoolOp(ast.And(), list(parts))


def _any(parts: Sequence[ast.expr]) -> ast.expr:
    return parts[0] if len(parts) == 1 else ast.BoolOp(ast.Or(), list(parts))


def _not(part: ast.expr) -> ast.expr:
    return ast.UnaryOp(ast.Not(), part)


def normalise_text(value: object) -> str | None:
    """Text compares ignoring case and surrounding space."""
    return None if value is None else str(value).strip().casefold()


def normalise_tags(tags: object) -> frozenset[str]:
    """Tags compare ignoring case and surrounding space."""
    if not tags:
        return frozenset()
    return frozenset(str(t).strip().casefold() for t in tags)  # type: ignore[attr-defined]


def reason_normaliser(reasons: ReasonCatalogue) -> Callable[[str], str]:
    """Map a stored reason (a code, or a label in either language) to its code."""
    exact: dict[str, str] = {}
    folded: dict[str, str] = {}
    for reason in reasons.reasons:
        for text in (reason.code, reason.nl, reason.en):
            exact[text] = reason.code
            folded[fold_text(text)] = reason.code

    def normalise(value: str) -> str:
        code = exact.get(value)
        if code is not None:
            return code
        text = fold_text(str(value))
        return folded.get(text, text)

    return normalise


class _Generator:
    """Builds the function's body; holds the namespace of constants and accessors."""

    def __init__(self, tz: dt.tzinfo, reasons: ReasonCatalogue) -> None:
        self.namespace: dict[str, Any] = {
            "__builtins__": {},
            "_tz": tz,
            "_nt": normalise_text,
            "_ntags": normalise_tags,
            "_nr": reason_normaliser(reasons),
            "_tuple": tuple,
        }
        self.locals: dict[str, str] = {}
        self._constants: dict[tuple[type, object], str] = {}

    def constant(self, value: object) -> ast.Name:
        """A generated name bound to ``value`` in the namespace (user values never become code)."""
        key = (type(value), value)
        try:
            identifier = self._constants.get(key)
        except TypeError:  # pragma: no cover - every resolved value is hashable
            identifier = None
        if identifier is None:
            identifier = f"_c{len(self.namespace)}"
            self.namespace[identifier] = value
            self._constants[key] = identifier
        return _name(identifier)

    def load(self, field: Field) -> list[ast.stmt]:
        """Statements that read ``field`` into its local (once per request or item)."""
        if field.key in self.locals:
            return []
        prefix = "i" if field.scope is Scope.ITEM else "r"
        local = f"{prefix}{len(self.locals)}"
        self.locals[field.key] = local
        subject = _name("item" if field.scope is Scope.ITEM else "request")
        if field.attribute is not None:
            raw: ast.expr = _attr(subject, field.attribute)
        else:
            accessor = f"_a{len(self.namespace)}"
            self.namespace[accessor] = field.accessor
            args = [subject, _name("_tz")] if field.timezone_aware else [subject]
            raw = _call(_name(accessor), *args)
        value = self._normalise(field, raw)
        return [ast.Assign([_store(local)], value)]

    def _normalise(self, field: Field, raw: ast.expr) -> ast.expr:
        if field.type is FieldType.TEXT:
            if field.optional:
                return _call(_name("_nt"), raw)
            return _call(_attr(_call(_attr(raw, "strip")), "casefold"))
        if field.type is FieldType.TAGS:
            return _call(_name("_ntags"), raw)
        if field.type is FieldType.REASON:
            return _call(_name("_nr"), raw)
        return raw

    # -- conditions: certainly true / certainly false ---------------------------------------

    def true(self, condition: Condition) -> ast.expr:
        """An expression that is true exactly when ``condition`` is certainly true."""
        if isinstance(condition, Compare):
            return self._compare(condition, want=True)
        if isinstance(condition, Not):
            return self.false(condition.part)
        parts = [self.true(p) for p in condition.parts]
        return _all(parts) if isinstance(condition, And) else _any(parts)

    def false(self, condition: Condition) -> ast.expr:
        """An expression that is true exactly when ``condition`` is certainly false."""
        if isinstance(condition, Compare):
            return self._compare(condition, want=False)
        if isinstance(condition, Not):
            return self.true(condition.part)
        parts = [self.false(p) for p in condition.parts]
        return _any(parts) if isinstance(condition, And) else _all(parts)

    def _compare(self, compare: Compare, *, want: bool) -> ast.expr:
        field, operator = compare.field, compare.operator
        v = _name(self.locals[field.key])
        negated = operator in {Operator.IS_NOT, Operator.NOT_CONTAINS}
        if negated:
            want = not want
        test = self._test(field, operator, compare.values, v, want=want)
        needs_guard = field.optional and not (
            want
            and operator in {Operator.IS, Operator.IS_NOT}
            and field.type is not FieldType.MONEY
        )
        if needs_guard:
            return _all([_compare(v, ast.IsNot(), ast.Constant(None)), test])
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
        if operator.is_ordering:
            yes, no = _OPS[operator]
            op = yes() if want else no()
            bound = values[0]
            if isinstance(bound, Money):
                return _all(
                    [
                        _compare(_attr(v, "currency"), ast.Eq(), self.constant(bound.currency)),
                        _compare(_attr(v, "amount"), op, self.constant(bound.amount)),
                    ]
                )
            return _compare(v, op, self.constant(bound))
        if field.type is FieldType.MONEY:
            tests = [
                _all(
                    [
                        _compare(_attr(v, "amount"), ast.Eq(), self.constant(m.amount)),
                        _compare(_attr(v, "currency"), ast.Eq(), self.constant(m.currency)),
                    ]
                )
                for m in values
                if isinstance(m, Money)
            ]
            return _any(tests) if want else _not(_any(tests))
        if operator in {Operator.CONTAINS, Operator.NOT_CONTAINS}:
            folded = [normalise_text(x) or "" for x in values]
            if field.type is FieldType.TAGS:
                if len(folded) == 1:
                    op = ast.In() if want else ast.NotIn()
                    return _compare(self.constant(folded[0]), op, v)
                disjoint = _call(_attr(v, "isdisjoint"), self.constant(frozenset(folded)))
                return _not(disjoint) if want else disjoint
            if want:
                return _any([_compare(self.constant(t), ast.In(), v) for t in folded])
            return _all([_compare(self.constant(t), ast.NotIn(), v) for t in folded])
        if operator is Operator.STARTS_WITH:
            prefixes = tuple(normalise_text(x) or "" for x in values)
            test = _call(_attr(v, "startswith"), self.constant(prefixes))
            return test if want else _not(test)
        keys = [self._key(field, x) for x in values]
        if len(keys) == 1:
            return _compare(v, ast.Eq() if want else ast.NotEq(), self.constant(keys[0]))
        return _compare(v, ast.In() if want else ast.NotIn(), self.constant(frozenset(keys)))

    @staticmethod
    def _key(field: Field, value: object) -> object:
        if field.type is FieldType.TEXT:
            return normalise_text(value)
        if isinstance(value, Decimal) and value == value.to_integral_value():
            return int(value)  # pragma: no cover - the checker already gives ints
        return value


def _fields(rules: Sequence[Rule]) -> tuple[list[Field], list[Field]]:
    request: dict[str, Field] = {}
    item: dict[str, Field] = {}
    for rule in rules:
        for field in fields_of(rule.condition):
            (item if field.scope is Scope.ITEM else request).setdefault(field.key, field)
    return list(request.values()), list(item.values())


def _mark(target: str, index: int) -> ast.stmt:
    return ast.AugAssign(_store(target), ast.BitOr(), ast.Constant(1 << index))


def _assign(target: str, value: int | bool | None) -> ast.stmt:
    return ast.Assign([_store(target)], ast.Constant(value))


def compile_rules(  # noqa: C901, PLR0912
    rules: Sequence[Rule], tz: dt.tzinfo, reasons: ReasonCatalogue
) -> Callable[[ReturnRequest], RunResult]:
    """One function that runs every rule on a request and says which matched, per item."""
    gen = _Generator(tz, reasons)
    request_fields, item_fields = _fields(rules)
    body: list[ast.stmt] = []
    for field in request_fields:
        body += gen.load(field)
    body += [
        _assign("hits", 0),
        _assign("dec", -1),
        _assign("fee", -1),
        _assign("carrier", -1),
        _assign("refund", value=False),
    ]
    item_rules = [r for r in rules if r.scope is Scope.ITEM]
    for index, rule in enumerate(rules):
        if rule.scope is Scope.ITEM:
            continue
        then: list[ast.stmt] = [_mark("hits", index)]
        groups = {a.kind.group for a in rule.actions}
        for group, target in (("decision", "dec"), ("fee", "fee"), ("carrier", "carrier")):
            if group in groups:
                then.append(_assign(target, index))
        if "refund" in groups:
            then.append(_assign("refund", value=True))
        body.append(ast.If(gen.true(rule.condition), then, []))
    if item_rules:
        loop: list[ast.stmt] = []
        for field in item_fields:
            loop += gen.load(field)
        loop += [
            ast.Assign([_store("d")], _name("dec")),
            _assign("ih", 0),
        ]
        for index, rule in enumerate(rules):
            if rule.scope is not Scope.ITEM:
                continue
            then = [_mark("ih", index)]
            groups = {a.kind.group for a in rule.actions}
            if "decision" in groups:
                then.append(
                    ast.If(
                        _compare(_name("d"), ast.Lt(), ast.Constant(index)),
                        [_assign("d", index)],
                        [],
                    )
                )
            if "refund" in groups:
                then.append(_assign("refund", value=True))
            loop.append(ast.If(gen.true(rule.condition), then, []))
        loop.append(
            ast.Expr(
                _call(
                    _attr(_name("per"), "append"),
                    ast.Tuple([_name("d"), _name("ih")], ast.Load()),
                )
            )
        )
        body += [
            ast.Assign([_store("per")], ast.List([], ast.Load())),
            ast.For(_store("item"), _attr(_name("request"), "items"), loop, []),
            ast.Assign([_store("per")], _call(_name("_tuple"), _name("per"))),
        ]
    else:
        body.append(_assign("per", None))
    body.append(
        ast.Return(
            ast.Tuple(
                [_name(n) for n in ("hits", "dec", "fee", "carrier", "refund", "per")], ast.Load()
            )
        )
    )
    return _define("_run", body, gen)


def compile_condition_function(
    condition: Condition, tz: dt.tzinfo, reasons: ReasonCatalogue
) -> Callable[[ReturnRequest], bool]:
    """A predicate: the condition certainly holds for the request (or for one of its items)."""
    gen = _Generator(tz, reasons)
    request_fields, item_fields = _fields([Rule(1, None, condition, ())])
    body: list[ast.stmt] = []
    for field in request_fields:
        body += gen.load(field)
    if not item_fields:
        body.append(ast.Return(gen.true(condition)))
    else:
        loop: list[ast.stmt] = []
        for field in item_fields:
            loop += gen.load(field)
        loop.append(ast.If(gen.true(condition), [ast.Return(ast.Constant(value=True))], []))
        body.append(ast.For(_store("item"), _attr(_name("request"), "items"), loop, []))
        body.append(ast.Return(ast.Constant(value=False)))
    return _define("_match", body, gen)


def _define(name: str, body: list[ast.stmt], gen: _Generator) -> Callable[..., Any]:
    function = ast.FunctionDef(
        name=name,
        args=ast.arguments(
            posonlyargs=[],
            args=[ast.arg("request")],
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
    # One flat pass instead of ast.fix_missing_locations' recursion (load time of big files).
    for node in ast.walk(module):
        if "lineno" in node._attributes:  # noqa: SLF001 - the documented node fields
            node.lineno = node.end_lineno = 1  # type: ignore[attr-defined]
            node.col_offset = node.end_col_offset = 0  # type: ignore[attr-defined]
    code = compile(module, "<rules>", "exec")
    # The module was built node by node from generated names and fixed operators; every value
    # the merchant typed sits in `namespace` and is only ever referenced by name.
    exec(code, gen.namespace)  # noqa: S102
    function_object: Callable[..., Any] = gen.namespace[name]
    return function_object
