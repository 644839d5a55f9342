"""Parse rule text into a syntax tree with source positions (no meaning attached yet).

The grammar is ``grammar.lark`` (package data, in the notation of the lark parser generator);
:class:`_Parser` implements it by recursive descent over the tokens of :mod:`._lexer`, one rule
at a time so that every rule's syntax error is reported, and builds frozen :class:`SynRule`
nodes as it goes. Parentheses and ``NIET`` may nest :data:`MAX_DEPTH` deep, which also bounds
the recursion. ``tests/test_rules_grammar.py`` holds the two to each other: lark builds an LALR
parser from the grammar file and both must agree on every token sequence tried, down to what
the error message says would have fitted.

A rule that does not parse (or does not check) may hold a typo in a keyword (``DNA`` for
``DAN``) or lack one (a ``DAN`` left out): :func:`repair` tries each such fix and keeps one that
makes the rule whole, so the merchant is told about the typo instead of what it caused.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Sequence
from functools import cache
from typing import Final

import attrs

from retouraanvraag.model import fold_text
from retouraanvraag.rules._lexer import (
    KEYWORDS,
    OPERATORS,
    TYPO_KEYWORDS,
    Chunk,
    DateField,
    Token,
    tokenise,
)
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


class _TooDeep(Exception):
    def __init__(self, position: Position) -> None:
        self.position = position


class _Stuck(Exception):
    """Parsing stopped at token ``index``: nothing the grammar allows is there."""

    def __init__(self, index: int) -> None:
        self.index = index


def _pos(token: Token) -> Position:
    return Position(token.line, token.column)


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
    if "\\" not in body:
        return body
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


_END: Final = "$END"
#: What a comparison's value, and an action's argument, may be.
_VALUE_TYPES: Final = frozenset({"STRING", "NUMBER", "MONEY", "WORD"})
_ARGUMENT_TYPES: Final = frozenset({"STRING", "MONEY", "NUMBER"})


class _Parser:
    """A recursive-descent parser for ``grammar.lark``, building the syntax tree as it goes.

    The grammar is LL(1) over the lexer's tokens, so each choice looks at one token. The
    first run does nothing but parse; when it gets stuck, a second run over the same tokens
    notes every token type it looks for at the place where it got stuck: those are what
    would have fitted there (the message's "expected …"). Parentheses and ``NIET`` may nest
    :data:`MAX_DEPTH` deep, which also bounds the recursion.
    """

    __slots__ = ("depth", "expected", "index", "length", "stop", "tokens")

    def __init__(self, tokens: Sequence[Token], stop: int = -1) -> None:
        self.tokens = tokens
        self.length = len(tokens)
        self.index = 0
        self.depth = 0
        #: In the second run: the index where the first got stuck, and what was looked for.
        self.stop = stop
        self.expected: set[str] = set()

    def _looked_for(self, types: Iterable[str]) -> None:
        if self.index == self.stop:
            self.expected.update(types)

    def _type(self) -> str:
        return self.tokens[self.index].type if self.index < self.length else _END

    def _accept(self, type_: str) -> Token | None:
        """The next token if it is a ``type_`` (then it is consumed)."""
        if self.index < self.length:
            token = self.tokens[self.index]
            if token.type == type_:
                self.index += 1
                return token
        if self.index == self.stop:
            self.expected.add(type_)
        return None

    def _expect(self, type_: str) -> Token:
        token = self._accept(type_)
        if token is None:
            raise _Stuck(self.index)
        return token

    def _expect_one_of(self, types: frozenset[str]) -> Token:
        if self.index < self.length:
            token = self.tokens[self.index]
            if token.type in types:
                self.index += 1
                return token
        self._looked_for(types)
        raise _Stuck(self.index)

    def _end(self) -> None:
        if self.index < self.length:
            self._looked_for((_END,))
            raise _Stuck(self.index)

    def rule(self, comments: tuple[str, ...]) -> SynRule:
        """``[UIT] [REGEL "…":] ALS condition DAN action (EN action)*``, then the end."""
        first = self.tokens[0] if self.tokens else None
        enabled = self._accept("OFF") is None
        name = None
        if self._accept("RULE") is not None:
            name = unquote(self._expect("STRING").value)
            self._expect("COLON")
        self._expect("IF")
        condition = self.condition()
        self._expect("THEN")
        actions = [self.action()]
        while self._accept("AND") is not None:
            actions.append(self.action())
        self._end()
        assert first is not None  # noqa: S101 - `IF` was found
        return SynRule(name, condition, tuple(actions), _pos(first), comments, enabled=enabled)

    def lone_condition(self) -> SynCondition:
        """A condition, then the end (the requests tab's filter)."""
        condition = self.condition()
        self._end()
        return condition

    def condition(self) -> SynCondition:
        """Conjunctions joined by ``OF`` (a single one stands for itself)."""
        return self._joined("OR", self.conjunction, SynOr)

    def conjunction(self) -> SynCondition:
        """Negations joined by ``EN`` (a single one stands for itself)."""
        return self._joined("AND", self.negation, SynAnd)

    def _joined(
        self,
        joiner: str,
        part: Callable[[], SynCondition],
        junction: Callable[[tuple[SynCondition, ...], Position], SynCondition],
    ) -> SynCondition:
        """``part (joiner part)*``: the junction of two or more parts, else the one part."""
        start = self.index
        first = part()
        if self._accept(joiner) is None:
            return first
        parts = [first, part()]
        while self._accept(joiner) is not None:
            parts.append(part())
        return junction(tuple(parts), _pos(self.tokens[start]))

    def negation(self) -> SynCondition:
        """``NIET`` negation, ``( condition )`` or a comparison."""
        token = self._accept("NOT")
        if token is None:
            token = self._accept("LPAR")
            if token is None:
                return self.comparison()
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _TooDeep(_pos(token))
        inner: SynCondition
        if token.type == "NOT":
            inner = SynNot(self.negation(), _pos(token))
        else:
            inner = self.condition()
            self._expect("RPAR")
        self.depth -= 1
        return inner

    def comparison(self) -> SynCompare:
        """``<field> <operator> <value> (OF <value>)*``."""
        field = self._expect("WORD")
        operator = self._expect_one_of(OPERATORS)
        values = [self.value()]
        while self._accept("VALUE_OR") is not None:
            values.append(self.value())
        return SynCompare(
            plain_word(field.value),
            operator.type,
            tuple(values),
            Position(field.line, field.column),
            Position(operator.line, operator.column),
            operator.value,
        )

    def value(self) -> SynValue:
        """A text, number, amount or bare word."""
        token = self._expect_one_of(_VALUE_TYPES)
        kind = token.type.lower()
        text = unquote(token.value) if kind == "string" else token.value
        # A bare value keeps its apostrophes as typed: countries are named with curly ones.
        return SynValue(kind, text, Position(token.line, token.column))

    def action(self) -> SynAction:
        """An action's words, then its argument and the argument's unit, if any."""
        words = self._expect("WORD")
        argument = unit = None
        if self.index < self.length and self.tokens[self.index].type in _ARGUMENT_TYPES:
            token = self.tokens[self.index]
            self.index += 1
            kind = token.type.lower()
            text = unquote(token.value) if kind == "string" else token.value
            argument = SynValue(kind, text, _pos(token))
            if kind == "number":
                found = self._accept("UNIT")
                if found is not None:
                    unit = SynValue("unit", found.value, _pos(found))
        else:
            self._looked_for(_ARGUMENT_TYPES)
        return SynAction(plain_word(words.value), argument, _pos(words), unit)


_FIELD_BEFORE: Final = frozenset({"IF", "NOT", "LPAR", "OR"})


def _context(before: Sequence[Token]) -> str:
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


def _run(parser: _Parser, start: str, comments: tuple[str, ...]) -> SynRule | SynCondition:
    return parser.lone_condition() if start == "condition_only" else parser.rule(comments)


def _problem(tokens: Sequence[Token], index: int, start: str) -> SyntaxProblem:
    """Why the tokens do not parse: the token at ``index`` and what would have fitted there."""
    probe = _Parser(tokens, stop=index)
    with contextlib.suppress(_Stuck, _TooDeep):
        _run(probe, start, ())
    expected = frozenset(probe.expected)
    before = tokens[:index]
    if index < len(tokens):
        token = tokens[index]
        return SyntaxProblem(
            _pos(token), token.type, expected, text=token.value, context=_context(before)
        )
    last = tokens[-1] if tokens else None
    position = Position(last.end_line, last.end_column) if last else Position(1, 1)
    return SyntaxProblem(position, _END, expected, context=_context(before))


def parse_chunk(chunk: Chunk, *, start: str = "rule") -> SynRule | SynCondition | SyntaxProblem:
    """Parse one rule (or, with ``start="condition_only"``, a lone condition) from its tokens.

    Returns:
        The syntax tree, or the problem that stopped the parse.
    """
    try:
        return _run(_Parser(chunk.tokens), start, chunk.comments)
    except _Stuck as stuck:
        return _problem(chunk.tokens, stuck.index, start)
    except _TooDeep as deep:
        return SyntaxProblem(deep.position, "", frozenset(), code="too-deep")


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
    """A rule (or condition) that parses once ``fix`` is made; ``errors`` it still has.

    ``more``: a second keyword typo put right with it (two in one rule), reported after it.
    """

    fix: Fix
    parsed: tuple[SynRule | SynCondition, ...]
    errors: int
    more: tuple[Fix, ...] = ()


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
    return Token("WORD", text, token.line, token.column, token.end_line, token.end_column)


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
    raw: list[Token], language: str, start: str, date_field: DateField | None
) -> tuple[SynRule | SynCondition, ...] | SyntaxProblem | None:
    """Every rule in ``raw`` parsed, else the first one's syntax problem (``None``: no rule)."""
    mode = "top" if start == "rule" else "condition"
    parsed: list[SynRule | SynCondition] = []
    for tokens in tokenise(raw, language, start_mode=mode, date_field=date_field):
        if start == "rule" and tokens[0].type not in {"IF", "RULE", "OFF"}:
            return None
        syntax = parse_chunk(Chunk(tuple(tokens), ()), start=start)
        if isinstance(syntax, SyntaxProblem):
            return syntax
        parsed.append(syntax)
    return tuple(parsed) if parsed else None


#: How many strong typos are tried as the first of two in one rule (``NE`` … ``DNA``).
_FIRST_TYPOS: Final = 3


def repair(
    chunk: Chunk,
    problem: SyntaxProblem | None,
    language: str,
    errors: Callable[[tuple[SynRule | SynCondition, ...]], int],
    *,
    start: str = "rule",
    date_field: DateField | None = None,
) -> Repair | None:
    """A keyword typo or missing keyword that explains why ``chunk`` fails, if there is one.

    Args:
        chunk: the rule (or lone condition) that does not parse or does not check.
        problem: its syntax problem; ``None`` when it parses but has other errors.
        language: the file's language.
        errors: how many errors parsed rules have once checked.
        start: ``rule`` or ``condition_only``.
        date_field: which words name a date field (as the chunk was lexed).

    Returns:
        The nearest fix after which the rule parses and checks without errors — or two keyword
        typos put right (``Repair.more`` holds the second); for a rule that did not parse, else
        the strongest likeness (``DNA`` for ``DAN``) after which it parses.
    """
    raw = list(chunk.raw)
    if not raw or len(raw) > _MAX_REPAIR_WORDS:
        return None
    repairer = _Repairer(language, errors, start, date_field)
    found = repairer.one_fix(raw, problem)
    if found is not None and found.errors == 0:
        return found
    return repairer.two_typos(raw, problem) or found


@attrs.frozen
class _Repairer:
    """How a chunk's words are read and checked while fixes are tried on them."""

    language: str
    errors: Callable[[tuple[SynRule | SynCondition, ...]], int]
    start: str
    date_field: DateField | None

    def _parsed(
        self, tokens: list[Token]
    ) -> tuple[SynRule | SynCondition, ...] | SyntaxProblem | None:
        return _parse_all(tokens, self.language, self.start, self.date_field)

    def one_fix(self, raw: list[Token], problem: SyntaxProblem | None) -> Repair | None:
        """The nearest single fix that makes ``raw`` whole, else the strongest that parses."""
        best: Repair | None = None
        for fix, tokens, strong in _fixes(raw, problem, self.language, self.start):
            parsed = self._parsed(tokens)
            if not isinstance(parsed, tuple):
                continue
            count = self.errors(parsed)
            if count == 0:
                return Repair(fix, parsed, 0)
            if strong and problem is not None and (best is None or count < best.errors):
                best = Repair(fix, parsed, count)
        return best

    def two_typos(self, raw: list[Token], problem: SyntaxProblem | None) -> Repair | None:
        """Two keyword typos in one rule: a strong one put right, then one that makes it whole."""
        firsts = [
            (fix, tokens)
            for fix, tokens, strong in _fixes(raw, problem, self.language, self.start)
            if strong and fix.code == "keyword-typo"
        ]
        for fix, tokens in firsts[:_FIRST_TYPOS]:
            after = self._parsed(tokens)
            if after is None:
                continue
            second = self.one_fix(tokens, after if isinstance(after, SyntaxProblem) else None)
            if second is not None and second.errors == 0 and second.fix.code == "keyword-typo":
                first, then = sorted((fix, second.fix), key=lambda f: f.position)
                return Repair(first, second.parsed, 0, more=(then,))
        return None
