"""Parse rule text into a syntax tree with source positions (no meaning attached yet).

The grammar is ``grammar.lark`` (package data), run by lark's LALR parser over the tokens of
:mod:`._lexer`, one rule at a time so that every rule's syntax error is reported. The lark tree
becomes frozen :class:`SynRule` nodes by an explicit walk that stops at a depth limit, so no
input can exhaust Python's recursion limit.

A rule that does not parse (or does not check) may hold a typo in a keyword (``DNA`` for
``DAN``) or lack one (a ``DAN`` left out): :func:`repair` tries each such fix and keeps one that
makes the rule whole, so the merchant is told about the typo instead of what it caused.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cache
from importlib import resources
from typing import Final

import attrs
from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedInput, UnexpectedToken
from lark.lexer import Lexer

from retouraanvraag.model import fold_text
from retouraanvraag.rules._lexer import KEYWORDS, TYPO_KEYWORDS, Chunk, tokenise
from retouraanvraag.rules._messages import TOKEN_WORDS, word
from retouraanvraag.rules.diagnostics import Position

__all__ = [
    "MAX_DEPTH",
    "Fix",
    "Repair",
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
    "repair",
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
    #: The operator as the merchant wrote it (``IS GROTER DAN``, ``>``), for messages.
    operator_text: str = ""


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
    #: The word after the argument (``dagen`` in ``Retourtermijn 60 dagen``), if any.
    unit: SynValue | None = None


@attrs.frozen
class SynRule:
    """One ``[REGEL "…":] ALS … DAN …`` rule as written."""

    name: str | None
    condition: SynCondition
    actions: tuple[SynAction, ...]
    position: Position
    comments: tuple[str, ...]
    #: ``False`` for a rule switched off with ``UIT`` / ``OFF``.
    enabled: bool = True


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


#: Apostrophes as keyboards and word processors type them; a field's name is written with '.
_APOSTROPHES: Final = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "`": "'"})


def plain_word(text: str) -> str:
    """A field's or action's name with curly apostrophes written straight (``Heeft foto's``)."""
    return text.translate(_APOSTROPHES)


def unquote(text: str) -> str:
    r"""The contents of a string token: quotes removed; in ``"…"``, ``\\"`` and ``\\\\`` unescaped.

    Curly and single quotes take their contents as written.
    """
    if not text.startswith('"'):
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
        # A value keeps its apostrophes as typed: countries are named with curly ones.
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
            plain_word(" ".join(w.value for w in words)),
            operator.type,
            values,
            _pos(words[0]),
            _pos(operator),
            str(operator.value),
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
    words = tokens[:1]
    argument = unit = None
    if len(tokens) > 1:
        token = tokens[1]
        kind = token.type.lower()
        text = unquote(token.value) if kind == "string" else token.value
        argument = SynValue(kind, text, _pos(token))
    if len(tokens) > 2:  # noqa: PLR2004 - words, argument, unit
        unit = SynValue("unit", tokens[2].value, _pos(tokens[2]))
    return SynAction(plain_word(" ".join(w.value for w in words)), argument, _pos(tokens[0]), unit)


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
    off, *children = tree.children
    name_token = children[1]
    name = unquote(name_token.value) if isinstance(name_token, Token) else None
    condition = _condition(children[4], 1)
    actions = tuple(_action(c) for c in children[6:] if isinstance(c, Tree))
    return SynRule(
        name, condition, actions, _pos(chunk.tokens[0]), chunk.comments, enabled=off is None
    )


# -- repairs: a keyword typo put right, a missing keyword put in -----------------------------

#: A rule of more words than this is not retried: a repair stays cheap next to checking.
_MAX_REPAIR_WORDS: Final = 400
#: How many fixes are tried for one rule, nearest to where parsing stopped first.
_MAX_TRIES: Final = 40
#: How many words before the point where parsing stopped a missing keyword is looked for.
_INSERT_BEFORE: Final = 8


@attrs.frozen
class Fix:
    """A keyword typo put right, or a missing keyword put in.

    Attributes:
        position: the typo, or the word the keyword is missing before.
        code: ``keyword-typo`` or ``missing-keyword``.
        text: what the merchant typed there: the typo, or the words after the gap.
        keyword: the keyword meant, as the file's language writes it (``DAN``).
    """

    position: Position
    code: str
    text: str
    keyword: str


@attrs.frozen
class Repair:
    """A rule (or condition) that parses once ``fix`` is made; ``errors`` it still has."""

    fix: Fix
    parsed: tuple[SynRule | SynCondition, ...]
    errors: int


def _one_edit(typed: str, keyword: str) -> str | None:
    """``swap`` (two letters swapped), ``edit`` (one letter changed, added or left out)."""
    if typed == keyword or abs(len(typed) - len(keyword)) > 1:
        return None
    if len(typed) == len(keyword):
        diffs = [i for i, (a, b) in enumerate(zip(typed, keyword, strict=True)) if a != b]
        if len(diffs) == 1:
            return "edit"
        first = diffs[0]
        if diffs == [first, first + 1] and typed[first] == keyword[first + 1]:
            return "swap" if typed[first + 1] == keyword[first] else None
        return None
    short, long = sorted((typed, keyword), key=len)
    i = 0
    while i < len(short) and short[i] == long[i]:
        i += 1
    return "edit" if short[i:] == long[i + 1 :] else None


@cache
def _typo_targets(language: str) -> dict[str, str]:
    return {w: t for w, t in KEYWORDS[language].items() if t in TYPO_KEYWORDS}


@cache
def _keyword_words(language: str) -> frozenset[str]:
    return frozenset(w for phrase in KEYWORDS[language] for w in phrase.split())


def _typo_of(typed: str, language: str) -> tuple[str, bool] | None:
    """The keyword ``typed`` may be a typo of, and whether the likeness is strong.

    Strong: two letters swapped (``DNA``, ``TEHN``) or the other language's keyword
    (``THEN`` in a Dutch file); such a fix is kept even when the rule has other errors.
    """
    folded = fold_text(typed)
    if len(folded) < 2 or folded in _keyword_words(language):  # noqa: PLR2004
        return None
    other = "en" if language == "nl" else "nl"
    meant = _typo_targets(other).get(folded)
    if meant is not None:
        return meant, True
    for keyword, type_ in _typo_targets(language).items():
        edit = _one_edit(folded, keyword)
        if edit is not None:
            return type_, edit == "swap"
    return None


def _as(token: Token, text: str) -> Token:
    """A word token at ``token``'s place reading ``text``."""
    return Token(
        "WORD",
        text,
        line=token.line,
        column=token.column,
        end_line=token.end_line,
        end_column=token.end_column,
    )


def _phrase_at(raw: Sequence[Token], j: int, language: str) -> str:
    """The words from ``raw[j]`` to the next keyword or line end, as typed."""
    words: list[str] = []
    for token in raw[j:]:
        if token.type != "WORD" or token.line != raw[j].line:
            break
        if words and fold_text(token.value) in KEYWORDS[language]:
            break
        words.append(token.value)
    return " ".join(words)


def _stop(raw: Sequence[Token], problem: SyntaxProblem | None) -> int:
    """The index of the word where parsing stopped (``len(raw)`` at the end)."""
    if problem is None or problem.found == "$END":
        return len(raw)
    where = (problem.position.line, problem.position.column)
    return next(
        (i for i, t in enumerate(raw) if ((t.line or 0), (t.column or 0)) >= where), len(raw)
    )


def _fixes(
    raw: list[Token], problem: SyntaxProblem | None, language: str, start: str
) -> list[tuple[Fix, list[Token], bool]]:
    """Every fix worth trying, nearest to where parsing stopped first."""
    stop = _stop(raw, problem)
    found: list[tuple[int, Fix, list[Token], bool]] = []
    for i, token in enumerate(raw):
        typo = _typo_of(token.value, language) if token.type == "WORD" else None
        if typo is not None:
            keyword = word(TOKEN_WORDS, typo[0], language)
            fix = Fix(_pos(token), "keyword-typo", token.value, keyword)
            found.append(
                (abs(i - stop), fix, [*raw[:i], _as(token, keyword), *raw[i + 1 :]], typo[1])
            )
    if problem is not None:
        for j in range(max(0, stop - _INSERT_BEFORE), min(stop + 1, len(raw))):
            if raw[j].type != "WORD" or fold_text(raw[j].value) in _keyword_words(language):
                continue
            types = ["THEN", "AND"] if start == "rule" else ["AND"]
            if j == 0 and start == "rule":
                types = ["IF"]
            for type_ in types:
                keyword = word(TOKEN_WORDS, type_, language)
                fix = Fix(_pos(raw[j]), "missing-keyword", _phrase_at(raw, j, language), keyword)
                found.append(
                    (abs(j - stop), fix, [*raw[:j], _as(raw[j], keyword), *raw[j:]], False)
                )
    found.sort(key=lambda f: f[0])
    return [(fix, tokens, strong) for _, fix, tokens, strong in found[:_MAX_TRIES]]


def _parse_all(
    raw: list[Token], language: str, start: str
) -> tuple[SynRule | SynCondition, ...] | None:
    """Every rule in ``raw`` parsed, or ``None`` when one of them does not parse."""
    mode = "top" if start == "rule" else "condition"
    parsed: list[SynRule | SynCondition] = []
    for tokens in tokenise(raw, language, start_mode=mode):
        if start == "rule" and tokens[0].type not in {"IF", "RULE", "OFF"}:
            return None
        syntax = parse_chunk(Chunk(tuple(tokens), ()), start=start)
        if isinstance(syntax, SyntaxProblem):
            return None
        parsed.append(syntax)
    return tuple(parsed) if parsed else None


def repair(
    chunk: Chunk,
    problem: SyntaxProblem | None,
    language: str,
    errors: Callable[[tuple[SynRule | SynCondition, ...]], int],
    *,
    start: str = "rule",
) -> Repair | None:
    """A keyword typo or missing keyword that explains why ``chunk`` fails, if there is one.

    Args:
        chunk: the rule (or lone condition) that does not parse or does not check.
        problem: its syntax problem; ``None`` when it parses but has other errors.
        language: the file's language.
        errors: how many errors parsed rules have once checked.
        start: ``rule`` or ``condition_only``.

    Returns:
        The nearest fix after which the rule parses and checks without errors; for a rule that
        did not parse, else the strongest likeness (``DNA`` for ``DAN``) after which it parses.
    """
    raw = list(chunk.raw)
    if not raw or len(raw) > _MAX_REPAIR_WORDS:
        return None
    best: Repair | None = None
    for fix, tokens, strong in _fixes(raw, problem, language, start):
        parsed = _parse_all(tokens, language, start)
        if parsed is None:
            continue
        count = errors(parsed)
        if count == 0:
            return Repair(fix, parsed, 0)
        if strong and problem is not None and (best is None or count < best.errors):
            best = Repair(fix, parsed, count)
    return best
