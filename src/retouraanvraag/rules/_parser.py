"""Parse rule text into a syntax tree with source positions (no meaning attached yet).

The grammar is ``grammar.lark`` (package data), run by lark's LALR parser over the tokens of
:mod:`._lexer`, one rule at a time so that every rule's syntax error is reported. The lark tree
becomes frozen :class:`SynRule` nodes by an explicit walk that stops at a depth limit, so no
input can exhaust Python's recursion limit.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Final

import attrs
from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedInput, UnexpectedToken
from lark.lexer import Lexer

from retouraanvraag.rules._lexer import Chunk
from retouraanvraag.rules.diagnostics import Position

__all__ = [
    "MAX_DEPTH",
    "SynAction",
    "SynAnd",
    "SynCompare",
    "SynCondition",
    "SynNot",
    "SynOr",
    "SynRule",
    "SynValue",
    "SyntaxProblem",
    "parse_chunk",
]

#: How deeply parentheses and NIET may nest.
MAX_DEPTH: Final = 32


@attrs.frozen
class SynValue:
    """A value as written: ``kind`` is ``string``, ``word``, ``number`` or ``money``."""

    kind: str
    text: str
    position: Position


@attrs.frozen
class SynCompare:
    """``<field> <operator> <value> [OF <value>]…`` as written."""

    field: str
    operator: str
    values: tuple[SynValue, ...]
    position: Position
    operator_position: Position


@attrs.frozen
class SynAnd:
    """Conditions joined by EN / AND."""

    parts: tuple[SynCondition, ...]
    position: Position


@attrs.frozen
class SynOr:
    """Conditions joined by OF / OR."""

    parts: tuple[SynCondition, ...]
    position: Position


@attrs.frozen
class SynNot:
    """NIET / NOT before a condition."""

    part: SynCondition
    position: Position


SynCondition = SynCompare | SynAnd | SynOr | SynNot


@attrs.frozen
class SynAction:
    """An action's words and its argument, if any."""

    words: str
    argument: SynValue | None
    position: Position


@attrs.frozen
class SynRule:
    """One ``[REGEL "…":] ALS … DAN …`` rule as written."""

    name: str | None
    condition: SynCondition
    actions: tuple[SynAction, ...]
    position: Position
    comments: tuple[str, ...]


@attrs.frozen
class SyntaxProblem:
    """Why a chunk did not parse: the unexpected token and the terminals that would fit."""

    position: Position
    found: str
    expected: frozenset[str]
    code: str = "syntax"
    text: str = ""
    context: str = ""


class _TokenList(Lexer):
    """Lark's lexer slot: the tokens are already made by :mod:`._lexer`."""

    def __init__(self, conf: object) -> None:
        self.conf = conf

    def lex(self, data: object, *_args: object) -> object:  # type: ignore[override]
        return iter(data)  # type: ignore[call-overload]


@cache
def _parser() -> Lark:
    grammar = resources.files("retouraanvraag.rules").joinpath("grammar.lark").read_text("utf-8")
    return Lark(
        grammar,
        parser="lalr",
        lexer=_TokenList,
        start=["rule", "condition_only"],
        maybe_placeholders=True,
    )


class _TooDeep(Exception):
    def __init__(self, position: Position) -> None:
        self.position = position


def _pos(token: Token) -> Position:
    return Position(token.line or 1, token.column or 1)


def unquote(text: str) -> str:
    r"""The contents of a string token: quotes removed, ``\\"`` and ``\\\\`` unescaped."""
    if text.startswith("“"):
        return text[1:-1]
    body = text[1:-1]
    out: list[str] = []
    escaped = False
    for char in body:
        if escaped:
            out.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        else:
            out.append(char)
    return "".join(out)


def _first_token(node: Tree[Token] | Token) -> Token:
    while isinstance(node, Tree):
        node = node.children[0]
    return node


def _value(node: Tree[Token]) -> SynValue:
    tokens = [t for t in node.children if isinstance(t, Token)]
    first = tokens[0]
    kind = first.type.lower()
    if kind == "string":
        return SynValue("string", unquote(first.value), _pos(first))
    if kind == "word":
        return SynValue("word", " ".join(t.value for t in tokens), _pos(first))
    return SynValue(kind, first.value, _pos(first))


def _condition(node: Tree[Token] | Token, depth: int) -> SynCondition:
    if depth > MAX_DEPTH:
        raise _TooDeep(_pos(_first_token(node)))
    assert isinstance(node, Tree)  # noqa: S101 - the grammar puts trees here
    data = node.data
    children = node.children
    if data == "comparison":
        field_node, operator_node, values_node = children
        assert isinstance(field_node, Tree)  # noqa: S101
        assert isinstance(operator_node, Tree)  # noqa: S101
        assert isinstance(values_node, Tree)  # noqa: S101
        words = [t for t in field_node.children if isinstance(t, Token)]
        operator = operator_node.children[0]
        assert isinstance(operator, Token)  # noqa: S101
        values = tuple(
            _value(v) for v in values_node.children if isinstance(v, Tree) and v.data == "value"
        )
        return SynCompare(
            " ".join(w.value for w in words), operator.type, values, _pos(words[0]), _pos(operator)
        )
    if data == "negation":
        not_token, inner = children
        assert isinstance(not_token, Token)  # noqa: S101
        return SynNot(_condition(inner, depth + 1), _pos(not_token))
    if data == "atom":  # ( condition )
        return _condition(children[1], depth + 1)
    parts = tuple(
        _condition(c, depth + 1)
        for c in children
        if isinstance(c, Tree) or c.type not in {"AND", "OR"}
    )
    position = _pos(_first_token(node))
    if data == "and_condition":
        return SynAnd(parts, position)
    return SynOr(parts, position)


def _action(node: Tree[Token]) -> SynAction:
    tokens = [t for t in node.children if isinstance(t, Token)]
    words = [t for t in tokens if t.type == "WORD"]
    tail = [t for t in tokens if t.type != "WORD"]
    argument = None
    if tail:
        token = tail[0]
        kind = token.type.lower()
        text = unquote(token.value) if kind == "string" else token.value
        argument = SynValue(kind, text, _pos(token))
    return SynAction(" ".join(w.value for w in words), argument, _pos(tokens[0]))


_FIELD_BEFORE: Final = frozenset({"IF", "NOT", "LPAR", "OR"})


def _context(before: list[Token]) -> str:
    """Whether a field (after ALS, NIET, (, OF, EN) or an action (after DAN, EN) comes next."""
    if not before:
        return ""
    previous = before[-1].type
    in_action = any(t.type == "THEN" for t in before)
    if previous == "THEN" or (previous == "AND" and in_action):
        return "action"
    if previous in _FIELD_BEFORE or previous == "AND":
        return "field"
    return ""


def _problem(error: UnexpectedInput, tokens: tuple[Token, ...]) -> SyntaxProblem:
    expected = frozenset(getattr(error, "expected", ()) or ())
    if isinstance(error, UnexpectedToken) and error.token.type != "$END":
        token = error.token
        before = [t for t in tokens if (t.line, t.column) < (token.line, token.column)]
        return SyntaxProblem(
            _pos(token), token.type, expected, text=str(token.value), context=_context(before)
        )
    last = tokens[-1] if tokens else None
    position = Position(last.end_line or 1, last.end_column or 1) if last else Position(1, 1)
    return SyntaxProblem(position, "$END", expected, context=_context(list(tokens)))


def parse_chunk(chunk: Chunk, *, start: str = "rule") -> SynRule | SynCondition | SyntaxProblem:
    """Parse one rule (or a lone condition) from its tokens.

    Returns:
        The syntax tree, or the problem that stopped the parse.
    """
    try:
        tree = _parser().parse(chunk.tokens, start=start)
    except UnexpectedInput as error:
        return _problem(error, chunk.tokens)
    try:
        if start == "condition_only":
            return _condition(tree.children[0], 1)
        return _rule(tree, chunk)
    except _TooDeep as deep:
        return SyntaxProblem(deep.position, "", frozenset(), code="too-deep")


def _rule(tree: Tree[Token], chunk: Chunk) -> SynRule:
    children = tree.children
    name_token = children[1]
    name = unquote(name_token.value) if isinstance(name_token, Token) else None
    condition = _condition(children[4], 1)
    actions = tuple(_action(c) for c in children[6:] if isinstance(c, Tree))
    return SynRule(name, condition, actions, _pos(chunk.tokens[0]), chunk.comments)
