"""The hand-written parser against ``grammar.lark``, the grammar it implements.

lark (a development dependency only) builds an LALR parser from the grammar file; both parse
the same token sequences — rules drawn from the grammar, then damaged by deleting, inserting or
replacing tokens — and must agree: the same syntax tree when the tokens are a rule, the same
place when they are not, and there exactly the token types that could follow (lark's
interactive parser tries each one).
"""

from __future__ import annotations

from importlib import resources

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedInput, UnexpectedToken
from lark.lexer import Lexer

from retouraanvraag.rules import _lexer
from retouraanvraag.rules._parser import (
    SynAction,
    SynAnd,
    SynCompare,
    SynCondition,
    SynNot,
    SynOr,
    SynRule,
    SyntaxProblem,
    SynValue,
    parse_chunk,
    plain_word,
    unquote,
)
from retouraanvraag.rules.diagnostics import Position

OPERATOR_TYPES = sorted(_lexer.OPERATORS)
TEXT = {
    "OFF": "UIT",
    "RULE": "REGEL",
    "IF": "ALS",
    "THEN": "DAN",
    "AND": "EN",
    "OR": "OF",
    "VALUE_OR": "OF",
    "NOT": "NIET",
    "LPAR": "(",
    "RPAR": ")",
    "COLON": ":",
    "COMMA": ",",
    "STRING": '"tekst"',
    "NUMBER": "12",
    "MONEY": "€5,00",
    "WORD": "Van land",
    "UNIT": "dagen",
    **{t: t.lower() for t in OPERATOR_TYPES},
}
ALL_TYPES = sorted(TEXT)


class _TokenList(Lexer):
    """Lark's lexer slot: the tokens are given."""

    def __init__(self, conf: object) -> None:
        self.conf = conf

    def lex(self, data: object, *_args: object) -> object:  # type: ignore[override]
        return iter(data)  # type: ignore[call-overload]


_GRAMMAR = resources.files("retouraanvraag.rules").joinpath("grammar.lark").read_text("utf-8")
LARK = Lark(
    _GRAMMAR,
    parser="lalr",
    lexer=_TokenList,
    start=["rule", "condition_only"],
    maybe_placeholders=True,
)


# -- the tokens: a rule drawn from the grammar, then maybe damaged ------------------------------


@st.composite
def condition_types(draw: st.DrawFn, depth: int = 0) -> list[str]:
    parts = []
    for _ in range(draw(st.integers(1, 3 if depth < 3 else 1))):
        conjunction: list[str] = []
        for k in range(draw(st.integers(1, 3 if depth < 3 else 1))):
            if k:
                conjunction.append("AND")
            conjunction.extend(["NOT"] * draw(st.integers(0, 2)))
            if depth < 3 and draw(st.booleans()):
                conjunction += ["LPAR", *draw(condition_types(depth + 1)), "RPAR"]
            else:
                values = ["WORD", draw(st.sampled_from(OPERATOR_TYPES))]
                for v in range(draw(st.integers(1, 3))):
                    if v:
                        values.append("VALUE_OR")
                    values.append(draw(st.sampled_from(["STRING", "NUMBER", "MONEY", "WORD"])))
                conjunction += values
        parts.append(conjunction)
    out: list[str] = []
    for k, part in enumerate(parts):
        if k:
            out.append("OR")
        out += part
    return out


@st.composite
def rule_types(draw: st.DrawFn) -> list[str]:
    types = ["OFF"] if draw(st.booleans()) else []
    if draw(st.booleans()):
        types += ["RULE", "STRING", "COLON"]
    types += ["IF", *draw(condition_types()), "THEN"]
    for k in range(draw(st.integers(1, 3))):
        if k:
            types.append("AND")
        types.append("WORD")
        argument = draw(st.sampled_from([None, "STRING", "MONEY", "NUMBER"]))
        if argument is not None:
            types.append(argument)
            if argument == "NUMBER" and draw(st.booleans()):
                types.append("UNIT")
    return types


@st.composite
def damaged(draw: st.DrawFn, types: list[str]) -> list[str]:
    types = list(types)
    for _ in range(draw(st.integers(0, 2))):
        kind = draw(st.sampled_from(["delete", "insert", "replace"]))
        if kind == "insert" or not types:
            types.insert(draw(st.integers(0, len(types))), draw(st.sampled_from(ALL_TYPES)))
        elif kind == "delete":
            del types[draw(st.integers(0, len(types) - 1))]
        else:
            types[draw(st.integers(0, len(types) - 1))] = draw(st.sampled_from(ALL_TYPES))
    return types


def tokens_of(types: list[str]) -> tuple[_lexer.Token, ...]:
    """The types as tokens, two columns apart on lines of five."""
    out = []
    for i, type_ in enumerate(types):
        line, column = 1 + i // 5, 1 + 20 * (i % 5)
        text = TEXT[type_] if type_ != "WORD" else f"woord{i}"
        out.append(_lexer.Token(type_, text, line, column, line, column + len(text)))
    return tuple(out)


def lark_tokens(tokens: tuple[_lexer.Token, ...]) -> list[Token]:
    return [
        Token(
            t.type,
            t.value,
            line=t.line,
            column=t.column,
            end_line=t.end_line,
            end_column=t.end_column,
        )
        for t in tokens
    ]


# -- lark's tree as the syntax tree (the parser's former walk) ---------------------------------


def _pos(token: Token) -> Position:
    return Position(token.line or 1, token.column or 1)


def _first(node: Tree[Token] | Token) -> Token:
    while isinstance(node, Tree):
        node = node.children[0]
    return node


def _value(node: Tree[Token]) -> SynValue:
    (token,) = [t for t in node.children if isinstance(t, Token)]
    kind = token.type.lower()
    text = unquote(token.value) if kind == "string" else str(token.value)
    return SynValue(kind, text, _pos(token))


def _condition(node: Tree[Token] | Token) -> SynCondition:
    assert isinstance(node, Tree)
    children = node.children
    if node.data == "comparison":
        field, operator, values = children
        assert isinstance(field, Tree)
        assert isinstance(operator, Tree)
        assert isinstance(values, Tree)
        (word,) = field.children
        (op,) = operator.children
        assert isinstance(word, Token)
        assert isinstance(op, Token)
        return SynCompare(
            plain_word(str(word.value)),
            op.type,
            tuple(_value(v) for v in values.children if isinstance(v, Tree)),
            _pos(word),
            _pos(op),
            str(op.value),
        )
    if node.data == "negation":
        not_token, inner = children
        assert isinstance(not_token, Token)
        return SynNot(_condition(inner), _pos(not_token))
    if node.data == "atom":
        return _condition(children[1])
    parts = tuple(
        _condition(c) for c in children if isinstance(c, Tree) or c.type not in {"AND", "OR"}
    )
    junction = SynAnd if node.data == "and_condition" else SynOr
    return junction(parts, _pos(_first(node)))


def _action(node: Tree[Token]) -> SynAction:
    tokens = [t for t in node.children if isinstance(t, Token)]
    argument = unit = None
    if len(tokens) > 1:
        kind = tokens[1].type.lower()
        text = unquote(tokens[1].value) if kind == "string" else str(tokens[1].value)
        argument = SynValue(kind, text, _pos(tokens[1]))
    if len(tokens) > 2:
        unit = SynValue("unit", str(tokens[2].value), _pos(tokens[2]))
    return SynAction(plain_word(str(tokens[0].value)), argument, _pos(tokens[0]), unit)


def from_lark(tree: Tree[Token], start: str, first: Token) -> SynRule | SynCondition:
    if start == "condition_only":
        return _condition(tree.children[0])
    off, _rule, name, _colon, _if, condition, _then, *actions = tree.children
    return SynRule(
        unquote(name.value) if isinstance(name, Token) else None,
        _condition(condition),
        tuple(_action(a) for a in actions if isinstance(a, Tree)),
        _pos(first),
        (),
        enabled=off is None,
    )


def viable(tokens: list[Token], start: str) -> frozenset[str]:
    """Every token type lark accepts after ``tokens`` (which it accepts as a prefix)."""
    interactive = LARK.parse_interactive(start=start)
    for token in tokens:
        interactive.feed_token(token)
    return frozenset(interactive.accepts())  # type: ignore[no-untyped-call]


# -- the comparison ----------------------------------------------------------------------------


def agree(types: list[str], start: str) -> None:
    tokens = tokens_of(types)
    ours = parse_chunk(_lexer.Chunk(tokens, ()), start=start)
    theirs = lark_tokens(tokens)
    try:
        tree = LARK.parse(theirs, start=start)
    except UnexpectedInput as error:
        assert isinstance(ours, SyntaxProblem), types
        found = error.token if isinstance(error, UnexpectedToken) else None
        at_end = found is None or found.type == "$END"
        stop = len(theirs) if at_end else next(i for i, t in enumerate(theirs) if t is found)
        assert ours.found == ("$END" if at_end else types[stop]), types
        if not at_end:
            assert ours.position == Position(tokens[stop].line, tokens[stop].column)
        assert ours.expected == viable(theirs[:stop], start), types
        return
    assert ours == from_lark(tree, start, theirs[0] if theirs else Token("$END", "")), types


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_the_parser_and_the_grammar_agree_on_rules(data: st.DataObject) -> None:
    agree(data.draw(damaged(data.draw(rule_types()))), "rule")


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_the_parser_and_the_grammar_agree_on_lone_conditions(data: st.DataObject) -> None:
    agree(data.draw(damaged(data.draw(condition_types()))), "condition_only")


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.sampled_from(ALL_TYPES), max_size=12), st.sampled_from(["rule", "condition_only"])
)
def test_the_parser_and_the_grammar_agree_on_any_tokens(types: list[str], start: str) -> None:
    agree(types, start)


@pytest.mark.parametrize(
    ("types", "expected"),
    [
        (["IF", "WORD", "IS", "WORD", "COLON"], {"VALUE_OR", "AND", "OR", "THEN"}),
        (["IF", "LPAR", "WORD", "IS", "WORD", "COLON"], {"VALUE_OR", "AND", "OR", "RPAR"}),
        (
            ["IF", "WORD", "IS", "WORD", "THEN", "WORD", "COLON"],
            {"STRING", "MONEY", "NUMBER", "AND", "$END"},
        ),
        (["COLON"], {"OFF", "RULE", "IF"}),
    ],
)
def test_what_would_fit_is_only_what_may_follow_here(types: list[str], expected: set[str]) -> None:
    """No ``)`` is offered outside parentheses, no ``DAN`` after the actions."""
    problem = parse_chunk(_lexer.Chunk(tokens_of(types), ()))
    assert isinstance(problem, SyntaxProblem)
    assert problem.expected == expected


#: Rules using every production once or more; every one-token edit of each is compared.
BASES = [
    ("rule", "IF WORD IS WORD THEN WORD"),
    ("rule", "OFF RULE STRING COLON IF NOT WORD GT MONEY VALUE_OR NUMBER THEN WORD NUMBER UNIT"),
    ("rule", "IF LPAR WORD IS STRING OR WORD LT NUMBER RPAR AND WORD IS_NOT WORD THEN WORD MONEY"),
    ("rule", "IF NOT LPAR NOT WORD CONTAINS STRING RPAR THEN WORD STRING AND WORD AND WORD NUMBER"),
    ("condition_only", "WORD GE MONEY AND LPAR WORD STARTS_WITH STRING OR WORD LE NUMBER RPAR"),
    ("condition_only", "NOT WORD NOT_CONTAINS WORD VALUE_OR STRING VALUE_OR MONEY"),
]


def one_edits(types: list[str]) -> list[list[str]]:
    edits: list[list[str]] = []
    for i in range(len(types) + 1):
        edits.extend([*types[:i], extra, *types[i:]] for extra in ALL_TYPES)
    for i in range(len(types)):
        edits.append(types[:i] + types[i + 1 :])
        edits.extend([*types[:i], other, *types[i + 1 :]] for other in ALL_TYPES)
    return edits


@pytest.mark.parametrize(("start", "base"), BASES)
def test_the_parser_and_the_grammar_agree_on_every_one_token_edit(start: str, base: str) -> None:
    for types in one_edits(base.split()):
        agree(types, start)
