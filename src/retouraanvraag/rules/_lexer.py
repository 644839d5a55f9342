"""Tokens for the rules grammar: keywords of both languages, case-insensitive, multi-word.

The lexer does what an LALR(1) grammar cannot: it knows that ``DAN`` after ``GROTER`` is part of
an operator, that ``NIET`` in ``Artikel niet retourneerbaar`` is an action's word, and that
``OF`` (or a comma) after a value is another value unless ``<field> <operator>`` follows
(DESIGN §3). Consecutive words on one line become one ``WORD`` token: a field, a bare value or
an action's name ends at a keyword or at the end of a line, so a rule with a missing ``DAN``
never swallows the next line.

It also reads what merchants type: curly quotes and apostrophes, ``5,95 €``, ``5 euro``,
``EUR 5`` and ``5,-``. Numbers are read by :func:`read_number` and :func:`read_money`, which
leave the digit-group rule to :mod:`retouraanvraag.model` (one rule for the whole library).
"""

from __future__ import annotations

import bisect
import datetime as dt
import re
from collections.abc import Callable, Iterator, Sequence
from decimal import Decimal
from functools import cache
from typing import Final

import attrs
from babel.numbers import list_currencies

from retouraanvraag.errors import InvalidMoney
from retouraanvraag.model import Money, _read_number, fold_text
from retouraanvraag.rules.diagnostics import Position

__all__ = [
    "KEYWORDS",
    "MAX_DIGITS",
    "BadValue",
    "Chunk",
    "DateField",
    "Lexed",
    "Token",
    "detect_language",
    "lex",
    "read_money",
    "read_number",
    "tokenise",
]

#: Keywords per language: words (folded, space-separated) → token type. Longest match wins.
KEYWORDS: Final[dict[str, dict[str, str]]] = {
    "nl": {
        "regel": "RULE",
        "als": "IF",
        "dan": "THEN",
        "en": "AND",
        "of": "OR",
        "niet": "NOT",
        "is": "IS",
        "is niet": "IS_NOT",
        "bevat": "CONTAINS",
        "bevat niet": "NOT_CONTAINS",
        "begint met": "STARTS_WITH",
        "groter dan": "GT",
        "groter dan of gelijk aan": "GE",
        "kleiner dan": "LT",
        "kleiner dan of gelijk aan": "LE",
        "minstens": "GE",
        "hoogstens": "LE",
        "is groter dan": "GT",
        "is groter dan of gelijk aan": "GE",
        "is kleiner dan": "LT",
        "is kleiner dan of gelijk aan": "LE",
        "is minstens": "GE",
        "is hoogstens": "LE",
    },
    "en": {
        "rule": "RULE",
        "if": "IF",
        "then": "THEN",
        "and": "AND",
        "or": "OR",
        "not": "NOT",
        "is": "IS",
        "is not": "IS_NOT",
        "contains": "CONTAINS",
        "does not contain": "NOT_CONTAINS",
        "starts with": "STARTS_WITH",
        "greater than": "GT",
        "greater than or equal to": "GE",
        "less than": "LT",
        "less than or equal to": "LE",
        "at least": "GE",
        "at most": "LE",
        "is greater than": "GT",
        "is greater than or equal to": "GE",
        "is less than": "LT",
        "is less than or equal to": "LE",
        "is at least": "GE",
        "is at most": "LE",
    },
}
#: The word that switches a rule off when it stands before the rule's ``ALS``/``REGEL`` on the
#: same line (``UIT ALS …``, ``OFF IF …``): the rule keeps its text and is never evaluated. It
#: is a keyword only there, so ``uit`` stays an ordinary word everywhere else.
SWITCHED_OFF: Final = {"nl": "uit", "en": "off"}
#: Words comparing dates (``Besteldatum VOOR 2026-11-01``): operators only where a date follows,
#: so ``voor``, ``na`` and ``op`` stay ordinary words in text (``jas voor kinderen``).
DATE_OPERATORS: Final = {
    "nl": {"voor": "LT", "na": "GT", "op": "IS"},
    "en": {"before": "LT", "after": "GT", "on": "IS"},
}
#: What a date looks like to the lexer: year-month-day or day-month-year (checked later).
DATE_RE: Final = re.compile(r"\d{4}-\d{1,2}-\d{1,2}|\d{1,2}-\d{1,2}-\d{4}")
OPERATORS: Final = frozenset(
    {"IS", "IS_NOT", "CONTAINS", "NOT_CONTAINS", "STARTS_WITH", "GT", "GE", "LT", "LE"}
)
#: The keywords a typo is looked for (DESIGN §3: "bedoelde u DAN?"), by token type.
TYPO_KEYWORDS: Final = frozenset({"RULE", "IF", "THEN", "AND", "OR", "NOT"})
_SYMBOLS: Final = {
    ">=": "GE",
    "<=": "LE",
    "!=": "IS_NOT",
    ">": "GT",
    "<": "LT",
    "=": "IS",
    "≥": "GE",
    "≤": "LE",
    "≠": "IS_NOT",
    "(": "LPAR",
    ")": "RPAR",
    ":": "COLON",
    ",": "COMMA",
}
#: Operators from other languages (programming, spreadsheets) and what the rule language writes.
BAD_OPERATORS: Final = {"==": "=", "<>": "!=", "=>": ">=", "=<": "<="}
_VALUE_TOKENS: Final = frozenset({"WORD", "STRING", "NUMBER", "MONEY"})
#: The most digits a number may have (more could not be written back or explained).
MAX_DIGITS: Final = 30

_NUMBER: Final = r"\d+(?:[.,]\d+)*"
_WHOLE: Final = r"(?:[.,][-\u2013])?"  # 5,- (or an en dash): whole euros
_GAP: Final = r"[ \t\xa0\u202f]?"  # inside one amount: € 5, 5 EUR (a locale's no-break space)
_NOT_AFTER_NUMBER: Final = r"(?![\w'\u2019\-/@+&])"
_SPACE: Final = r"[^\S\n]*(?:[\ufeff\u200b\u2060][^\S\n]*)*"  # a line end is a token of its own
_TOKEN_RE: Final = re.compile(
    rf"""
    (?P<ws>{_SPACE})
    (?:(?P<newline>\n)
    |(?P<comment>\#[^\n]*)
    |(?P<string>"(?:[^"“”\\\n]|\\.)*["“”]|[“”„][^"“”\n]*["“”])
    |(?P<unterminated>["“”„\u2018\u201a][^\n]*)
    |(?P<prefixmoney>(?:US\$|[€$£]){_GAP}{_NUMBER}{_WHOLE}(?!\w))
    |(?P<number>{_NUMBER}{_WHOLE}){_NOT_AFTER_NUMBER}
    |(?P<badoperator>==|<>|=>|=<)
    |(?P<symbol>>=|<=|!=|[<>=≥≤≠():,])
    |(?P<word>['\u2018\u2019]?\w[\w'\u2019\-./@+&]*)
    |(?P<bad>.)
    |$)
    """,
    re.VERBOSE,
)
_CURRENCY_AFTER_RE: Final = re.compile(
    rf"{_GAP}(?:(?P<sign>US\$|[€$£])|(?P<euro>(?i:euro(?:['\u2019]s|s)?))(?!\w)"
    r"|(?P<code>[A-Za-z]{3})(?!\w))"
)
_NUMBER_AFTER_RE: Final = re.compile(rf"{_GAP}{_NUMBER}{_WHOLE}{_NOT_AFTER_NUMBER}")
_CLOSING: Final = {"“": "”", "„": "”", "\u2018": "\u2019", "\u201a": "\u2019"}
#: Single quotes (' and the curly ones) open text that ends at the first ' or right curly quote
#: not followed by a letter, so that an apostrophe stays inside (foto's).
_SINGLE_OPENERS: Final = "'\u2018\u2019\u201a"
_SINGLE_CLOSER_RE: Final = re.compile(r"['\u2019](?!\w)|\n")


class Token:
    """One token: its type (``WORD``, ``IF``, ``GT``, …), the text as typed, and its place.

    ``line``/``column`` is where it starts and ``end_line``/``end_column`` just after it ends,
    counted from 1 as the diagnostics are.
    """

    __slots__ = ("column", "end_column", "end_line", "line", "type", "value")

    def __init__(  # noqa: PLR0917 - a record of six, made in hot loops
        self, type_: str, value: str, line: int, column: int, end_line: int, end_column: int
    ) -> None:
        """Make a token (positional arguments only: the lexer makes thousands)."""
        self.type = type_
        self.value = value
        self.line = line
        self.column = column
        self.end_line = end_line
        self.end_column = end_column

    def __repr__(self) -> str:
        """``Token('WORD', 'Van land', 1:5)``."""
        return f"Token({self.type!r}, {self.value!r}, {self.line}:{self.column})"


@cache
def _currencies() -> frozenset[str]:
    return frozenset(list_currencies())


@attrs.frozen
class Chunk:
    """The tokens of one rule (or of the stray text between rules) and its comments.

    ``raw`` holds the same stretch of text as words before keywords were recognised, so that a
    rule that does not parse can be tried again with a typo put right.
    """

    tokens: tuple[Token, ...]
    comments: tuple[str, ...]
    raw: tuple[Token, ...] = ()


@attrs.frozen
class Problem:
    """A lexical problem: a stray character, an unterminated string, an unknown operator.

    ``detail`` is the closing quote an unterminated string needs, or the operator meant.
    """

    position: Position
    code: str
    text: str
    detail: str = ""


@attrs.frozen
class Lexed:
    """The lexer's result: rule chunks, comments after the last rule, and problems."""

    language: str
    chunks: tuple[Chunk, ...]
    trailing_comments: tuple[str, ...]
    problems: tuple[Problem, ...]


_TYPES: Final = {
    "comment": "COMMENT",
    "string": "STRING",
    "prefixmoney": "MONEY",
    "money": "MONEY",
    "number": "NUMBER",
    "word": "WORD",
}


def _amount_end(text: str, kind: str, value: str, end: int) -> int | None:
    """Where an amount ends when the number or currency code at ``end`` is part of one."""
    if kind == "number":
        after = _CURRENCY_AFTER_RE.match(text, end)
        if after is None:
            return None
        code = after.group("code")
        if code is not None and (code.upper() not in _currencies() or _is_keyword(code)):
            return None
        return after.end()
    if kind == "word" and value.isupper() and value in _currencies():
        number = _NUMBER_AFTER_RE.match(text, end)
        return number.end() if number else None
    return None


class _SingleQuotes:
    """Finds where single-quoted text closes, in time linear in the text.

    Many quotes that never close on their line (``'s-Hertogenbosch``) must not each scan to
    the end of the line: the next closing quote found is remembered until it is passed.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self.found = -1  # where the last search ended (a closing quote, a newline or the end)

    def close(self, start: int) -> int | None:
        """The index after the quote closing text opened at ``start``, if it closes."""
        if self.found <= start:
            match = _SINGLE_CLOSER_RE.search(self.text, start + 1)
            self.found = match.start() if match else len(self.text)
        if self.found < len(self.text) and self.text[self.found] != "\n":
            return self.found + 1
        return None


def _single_quoted(quotes: _SingleQuotes, text: str, start: int) -> tuple[str, int] | None:
    """A single-quoted text at ``start`` (kind and end), or ``None`` when it is a word."""
    if text[start] not in _SINGLE_OPENERS:
        return None
    end = quotes.close(start)
    if end is not None:
        return "string", end
    if text[start] in "\u2018\u201a":  # only ever an opening quote: the text is unterminated
        newline = text.find("\n", start)
        return "unterminated", newline if newline >= 0 else len(text)
    return None


def _raw_tokens(text: str) -> Iterator[Token | Problem]:  # noqa: C901, PLR0912, PLR0915
    """Split the text into words, strings, numbers, money, symbols and comments."""
    line, line_start, pos = 1, 0, 0
    bad: Problem | None = None  # stray characters next to each other are one problem
    quotes = _SingleQuotes(text)
    match_at = _TOKEN_RE.match
    size = len(text)
    while pos < size:
        match = match_at(text, pos)
        if match is None:  # pragma: no cover - `bad` or `$` always matches
            break
        kind = match.lastgroup
        end = match.end()
        if kind == "newline":
            line += 1
            line_start = pos = end
            continue
        if kind == "ws":  # only trailing space was left
            break
        start = match.end(1)  # after the space (group 1)
        if text[start] in _SINGLE_OPENERS and (single := _single_quoted(quotes, text, start)):
            kind, end = single
            value = text[start:end]
        else:
            value = match.group(kind)  # type: ignore[arg-type]
        column = start - line_start + 1
        if bad is not None and (kind != "bad" or start != pos):
            yield _merged(bad)
            bad = None
        if kind == "word":
            if value.isupper() and (amount_end := _amount_end(text, kind, value, end)):
                end, kind, value = amount_end, "money", text[start:amount_end]
        elif kind == "number":
            if amount_end := _amount_end(text, kind, value, end):
                end, kind, value = amount_end, "money", text[start:amount_end]
            elif value[-1] in "-\u2013":
                kind = "money"  # 5,- is an amount in the shop's currency
        elif kind == "bad":
            if bad is None:
                bad = Problem(Position(line, column), "bad-character", value)
            else:
                bad = attrs.evolve(bad, text=bad.text + value)
            pos = end
            continue
        elif kind == "badoperator":
            yield Problem(Position(line, column), "unknown-operator", value, BAD_OPERATORS[value])
            pos = end
            continue
        elif kind == "unterminated":
            closing = _CLOSING.get(value[0], '"')
            yield Problem(Position(line, column), "unterminated-string", value, closing)
            value += closing
            kind = "string"
        type_ = _SYMBOLS[value] if kind == "symbol" else _TYPES[kind]  # type: ignore[index]
        yield Token(type_, value, line, column, line, column + len(value))
        pos = end
    if bad is not None:
        yield _merged(bad)


def _merged(problem: Problem) -> Problem:
    return problem if len(problem.text) == 1 else attrs.evolve(problem, code="bad-characters")


@cache
def _all_keyword_words() -> frozenset[str]:
    return frozenset(w for table in KEYWORDS.values() for phrase in table for w in phrase.split())


def _is_keyword(word: str) -> bool:
    return fold_text(word) in _all_keyword_words()


def detect_language(text: str) -> str:
    """The language of a rule file: that of its first ``ALS``/``REGEL`` or ``IF``/``RULE``.

    A text with neither (its first rule's opening word mistyped) goes by its first ``DAN`` or
    ``THEN``; failing that, it is Dutch.
    """
    fallback = ""
    for token in _raw_tokens(text[:100_000]):
        if isinstance(token, Token) and token.type == "WORD":
            word = fold_text(token.value)
            if word in {"als", "regel"}:
                return "nl"
            if word in {"if", "rule"}:
                return "en"
            if not fallback and word in {"dan", "then"}:
                fallback = "nl" if word == "dan" else "en"
    return fallback or "nl"


@cache
def _phrases(language: str) -> dict[str, tuple[tuple[tuple[str, ...], str], ...]]:
    """Keyword phrases by their first word, longest first."""
    index: dict[str, list[tuple[tuple[str, ...], str]]] = {}
    for phrase, type_ in KEYWORDS[language].items():
        words = tuple(phrase.split())
        index.setdefault(words[0], []).append((words, type_))
    return {w: tuple(sorted(p, key=lambda x: -len(x[0]))) for w, p in index.items()}


def _join(tokens: Sequence[Token], type_: str, text: str) -> Token:
    first, last = tokens[0], tokens[-1]
    return Token(type_, text, first.line, first.column, last.end_line, last.end_column)


def _match_phrase(folded: list[str | None], i: int, language: str) -> tuple[str, int] | None:
    """The keyword starting at ``tokens[i]`` (longest match) and its length in words."""
    candidates = _phrases(language).get(folded[i] or "", ())
    after = folded[i + 1] if i + 1 < len(folded) else None
    for words, type_ in candidates:
        n = len(words)
        if n == 1:
            return type_, 1
        if words[1] == after and tuple(folded[i : i + n]) == words:
            return type_, n
    return None


def _retyped(token: Token, type_: str) -> Token:
    """The token read as another type (a word that is a keyword, a comma that is an ``EN``)."""
    return Token(type_, token.value, token.line, token.column, token.end_line, token.end_column)


@cache
def _special_words(language: str) -> frozenset[str]:
    """The words :func:`_classify` looks at; every other word passes through as it is.

    A keyword phrase's first word, the switch-off word, the units and the date operators.
    """
    return frozenset(
        {*_phrases(language), SWITCHED_OFF[language], *UNITS, *DATE_OPERATORS[language]}
    )


@cache
def _lone_keywords(language: str) -> dict[str, str]:
    """Words that are a keyword on their own and begin no longer phrase (``en``, ``dan``)."""
    return {
        words[0]: type_
        for phrases in _phrases(language).values()
        for words, type_ in phrases
        if len(phrases) == 1 and len(words) == 1
    }


#: The mode :func:`_classify` is in after a keyword: a condition after ALS, actions after DAN.
_MODE_AFTER: Final = {"IF": "condition", "RULE": "top", "THEN": "action", "OFF": "top"}


#: Whether words name a date field (``Besteldatum``): then ``VOOR``/``NA``/``OP`` after them
#: compare dates whatever follows, so that ``Besteldatum VOOR gisteren`` is told about its value.
DateField = Callable[[str], bool]


def _classify(
    tokens: list[Token],
    language: str,
    *,
    start_mode: str,
    folded: list[str | None] | None = None,
    date_field: DateField | None = None,
) -> list[Token]:
    """Turn words into keywords where the mode allows (condition, action, between rules).

    ``folded``: each token's casefolded text if it is a ``WORD`` (else ``None``), when the
    caller has it already.
    """
    if folded is None:
        folded = [t.value.casefold() if t.type == "WORD" else None for t in tokens]
    special, lone = _special_words(language), _lone_keywords(language)
    out: list[Token] = []
    append = out.append
    mode = start_mode
    i, count = 0, len(tokens)
    while i < count:
        token = tokens[i]
        word = folded[i]
        read = None
        if word is not None and word in special and token.type == "WORD":
            type_ = lone.get(word)
            if type_ is None:
                read = _keyword_at(tokens, folded, i, language, mode, out, date_field)
            elif _keyword_here(mode, type_):
                read = _retyped(token, type_), 1
        if read is None:
            append(token)
            i += 1
            continue
        keyword, n = read
        append(keyword)
        i += n
        mode = _MODE_AFTER.get(keyword.type, mode)
    return out


def _keyword_here(mode: str, type_: str) -> bool:
    """Outside a condition only ALS and REGEL are keywords, and EN between actions."""
    return mode == "condition" or type_ in {"RULE", "IF"} or (mode == "action" and type_ == "AND")


def _keyword_at(  # noqa: PLR0911, PLR0917 - one return per kind of keyword
    tokens: list[Token],
    folded: list[str | None],
    i: int,
    language: str,
    mode: str,
    before: list[Token],
    date_field: DateField | None,
) -> tuple[Token, int] | None:
    """The keyword the words at ``tokens[i]`` make in ``mode``, and how many words it takes.

    ``before``: the tokens classified so far.
    """
    word, token = folded[i], tokens[i]
    if word == SWITCHED_OFF[language] and _switches_off(tokens, folded, i, language):
        return _retyped(token, "OFF"), 1
    if mode == "action" and word in UNITS and _is_unit(tokens, folded, i):
        return _retyped(token, "UNIT"), 1
    dates = DATE_OPERATORS[language]
    if (
        mode == "condition"
        and word in dates
        and (_compares_dates(tokens, i) or _after_date_field(before, token, date_field))
    ):
        return _retyped(token, dates[word or ""]), 1
    matched = _match_phrase(folded, i, language)
    if matched is None:
        return None
    type_, n = matched
    if not _keyword_here(mode, type_):
        return None
    if n == 1:
        return _retyped(token, type_), 1
    return _join(tokens[i : i + n], type_, _words(tokens[i : i + n])), n


#: The units a number in an action may carry (``Retourtermijn 60 dagen``), either language.
UNITS: Final = frozenset({"dagen", "dag", "days", "day"})


def _is_unit(tokens: list[Token], folded: list[str | None], i: int) -> bool:
    """Whether ``tokens[i]`` is ``dagen``/``days`` right after a number on the same line."""
    if folded[i] not in UNITS or i == 0:
        return False
    before = tokens[i - 1]
    return before.type == "NUMBER" and before.end_line == tokens[i].line


def _compares_dates(tokens: list[Token], i: int) -> bool:
    """Whether ``tokens[i]`` (``VOOR``/``NA``/``OP``, ``BEFORE``/…) stands before a date."""
    if i + 1 >= len(tokens):
        return False
    after = tokens[i + 1]
    if after.type == "STRING":  # a date may be quoted: OP "2026-11-01"
        return DATE_RE.fullmatch(after.value[1:-1].strip()) is not None
    return after.type == "WORD" and DATE_RE.fullmatch(after.value) is not None


#: The most words a date field's name is looked for in, before ``VOOR``.
_FIELD_WORDS: Final = 6


def _after_date_field(before: list[Token], token: Token, date_field: DateField | None) -> bool:
    """Whether the words just before ``token`` on its line name a date field, as a field.

    That is: they follow ``ALS``, ``EN``, ``OF``, ``NIET`` or ``(``, so an operator comes next.
    """
    if date_field is None:
        return False
    k = len(before)
    while k > 0 and before[k - 1].type == "WORD" and before[k - 1].line == token.line:
        k -= 1
    words = before[k:]
    if not words or len(words) > _FIELD_WORDS or (k and before[k - 1].type not in _FIELD_AFTER):
        return False
    return date_field(" ".join(w.value for w in words))


#: The tokens a comparison's field follows.
_FIELD_AFTER: Final = frozenset({"IF", "AND", "OR", "NOT", "LPAR"})


def _switches_off(tokens: list[Token], folded: list[str | None], i: int, language: str) -> bool:
    """Whether ``tokens[i]`` is ``UIT``/``OFF`` opening its line before ``ALS`` or ``REGEL``."""
    if folded[i] != SWITCHED_OFF[language] or i + 1 >= len(tokens):
        return False
    if i > 0 and tokens[i - 1].line == tokens[i].line:
        return False
    opener = _match_phrase(folded, i + 1, language)
    return (
        opener is not None and opener[0] in {"IF", "RULE"} and tokens[i + 1].line == tokens[i].line
    )


def _switch_before(tokens: list[Token], i: int, language: str) -> bool:
    """Whether ``language``'s switch-off word stands just before ``tokens[i]`` on its line."""
    before = tokens[i - 1]
    return (
        i > 0
        and before.type == "WORD"
        and before.line == tokens[i].line
        and before.value.casefold() == SWITCHED_OFF[language]
    )


def _foreign_rules(tokens: list[Token], language: str, folded: list[str | None]) -> list[Token]:
    """Mark the ``IF``/``RULE`` of a rule written in the other language as ``FOREIGN``.

    Such a word opens a line and a ``THEN`` of that language follows before our next rule; the
    ``FOREIGN`` token starts a chunk, which is reported once and not parsed.
    """
    other = "en" if language == "nl" else "nl"
    openers = {w for w, t in KEYWORDS[other].items() if t in {"IF", "RULE"}}
    own = {w for w, t in KEYWORDS[language].items() if t in {"IF", "RULE"}}
    then = next(w for w, t in KEYWORDS[other].items() if t == "THEN")
    out = list(tokens)
    then_ahead = False  # scanning backwards: a THEN of the other language before our IF/RULE
    for i in range(len(tokens) - 1, 0, -1):
        word = folded[i]
        if word is None:
            continue
        token = tokens[i]
        start = i
        if word in openers and _switch_before(tokens, i, other):
            start = i - 1  # OFF IF … in a Dutch file: the switch opens the foreign rule
        if word in openers and then_ahead and (start == 0 or tokens[start - 1].line != token.line):
            out[start] = _retyped(tokens[start], "FOREIGN")
        if word == then:
            then_ahead = True
        elif word in own:
            then_ahead = False
    return out


def _starts_comparison(tokens: list[Token], i: int) -> bool:
    """Whether ``tokens[i:]`` begins ``<field> <operator>``, ``NIET`` or ``(``."""
    if i >= len(tokens):
        return False
    if tokens[i].type in {"NOT", "LPAR"}:
        return True
    j = i
    while j < len(tokens) and tokens[j].type == "WORD":
        j += 1
    return j > i and j < len(tokens) and tokens[j].type in OPERATORS


def _action_commas(tokens: list[Token]) -> list[Token]:
    """A comma between actions is an ``EN``: ``DAN Goedkeuren met label, Retourkosten €2``."""
    out: list[Token] = []
    in_actions = False
    for token in tokens:
        type_ = token.type
        if type_ == "THEN":
            in_actions = True
        elif type_ in _RULE_OPENERS:
            in_actions = False
        elif in_actions and type_ == "COMMA":
            token = _retyped(token, "AND")  # noqa: PLW2901 - the comma's new reading
        out.append(token)
    return out


_RULE_OPENERS: Final = frozenset({"IF", "RULE", "FOREIGN", "OFF"})
#: Tokens after which a value list is over.
_ENDS_VALUES: Final = frozenset({"LPAR", "RPAR", "NOT", "THEN", "IF", "RULE", "FOREIGN", "OFF"})


def _disambiguate(tokens: list[Token]) -> list[Token]:  # noqa: C901
    """Decide whether OF/EN/a comma after a value joins values or conditions (DESIGN §3)."""
    out: list[Token] = []
    in_values = False
    tokens = _action_commas(tokens)
    count = len(tokens)
    for i, token in enumerate(tokens):
        type_ = token.type
        if type_ in OPERATORS:
            in_values = True
        elif type_ in _JOINERS:
            after_value = in_values and bool(out) and out[-1].type in _VALUE_TOKENS
            nxt = tokens[i + 1] if i + 1 < count else None
            if type_ == "COMMA":
                if after_value and nxt is not None:
                    if nxt.type in {"OR", "VALUE_OR"}:
                        continue  # "Duitsland, of Oostenrijk": the comma adds nothing to the OF
                    if nxt.type in _VALUE_TOKENS and not _starts_comparison(tokens, i + 1):
                        out.append(_retyped(token, "VALUE_OR"))
                        continue
            elif after_value:
                if not _starts_comparison(tokens, i + 1):
                    if type_ == "OR" and nxt is not None and nxt.type in _VALUE_TOKENS:
                        out.append(_retyped(token, "VALUE_OR"))
                        continue
                    if (
                        type_ == "AND"
                        and out[-1].type == "WORD"
                        and nxt is not None
                        and nxt.type == "WORD"
                        and nxt.line == token.line == out[-1].line
                    ):
                        # A bare value with "en"/"and" inside: Bosnië en Herzegovina.
                        out.append(_retyped(token, "WORD"))
                        continue
                in_values = False
        elif type_ in _ENDS_VALUES:
            in_values = False
        out.append(token)
    return out


_JOINERS: Final = frozenset({"COMMA", "OR", "AND"})


def _merge_words(tokens: list[Token]) -> list[Token]:
    """Join the words of one line into one ``WORD``: a name or bare value ends at a line end."""
    out: list[Token] = []
    append = out.append
    run: list[Token] = []
    for token in tokens:
        if token.type == "WORD":
            if run and token.line != run[0].line:
                append(run[0] if len(run) == 1 else _join(run, "WORD", _words(run)))
                run = []
            run.append(token)
            continue
        if run:
            append(run[0] if len(run) == 1 else _join(run, "WORD", _words(run)))
            run = []
        append(token)
    if run:
        append(run[0] if len(run) == 1 else _join(run, "WORD", _words(run)))
    return out


def _words(tokens: Sequence[Token]) -> str:
    return " ".join(t.value for t in tokens)


def _chunks(tokens: list[Token]) -> list[list[Token]]:
    """Split at each rule's start, so that one rule's syntax error does not hide the next.

    A rule starts at ``UIT``, at a rule in the other language, at ``REGEL`` (unless right
    after its ``UIT``) and at ``ALS`` (unless it is the first ``ALS`` after ``REGEL``/``UIT``).
    """
    chunks: list[list[Token]] = []
    current: list[Token] = []
    opened = False  # the current chunk began with REGEL or UIT
    has_if = False  # ... and has had its ALS
    for token in tokens:
        type_ = token.type
        if type_ in _CHUNK_OPENERS:
            if type_ == "RULE":
                starts = not (opened and current[-1].type == "OFF")
            elif type_ == "IF":
                starts = not opened or has_if
            else:
                starts = True
            if starts and current:
                chunks.append(current)
                current = []
        if not current:
            opened, has_if = type_ in {"RULE", "OFF"}, False
        if type_ == "IF":
            has_if = True
        current.append(token)
    if current:
        chunks.append(current)
    return chunks


_CHUNK_OPENERS: Final = frozenset({"OFF", "FOREIGN", "RULE", "IF"})


def _position(token: Token) -> Position:
    return Position(token.line, token.column)


def _end(token: Token) -> tuple[int, int]:
    return (token.end_line, token.end_column)


def _start(token: Token) -> tuple[int, int]:
    return (token.line, token.column)


def tokenise(
    raw: Sequence[Token],
    language: str,
    *,
    start_mode: str = "top",
    date_field: DateField | None = None,
) -> list[list[Token]]:
    """The grammar's tokens for words from :func:`_raw_tokens`, one list per rule."""
    tokens = raw if isinstance(raw, list) else list(raw)
    folded = [t.value.casefold() if t.type == "WORD" else None for t in tokens]
    if start_mode == "top":
        tokens = _foreign_rules(tokens, language, folded)
    classified = _classify(
        tokens, language, start_mode=start_mode, folded=folded, date_field=date_field
    )
    tokens = _merge_words(_disambiguate(classified))
    if start_mode == "top":
        return _chunks(tokens)
    return [tokens] if tokens else []


def lex(
    text: str, language: str, *, start_mode: str = "top", date_field: DateField | None = None
) -> Lexed:
    """Tokenise ``text`` for the grammar and split it into one chunk per rule.

    ``date_field`` tells which words name a date field (see :data:`DateField`).
    """
    found: list[Problem] = []
    comments: list[Token] = []
    words: list[Token] = []
    for raw in _raw_tokens(text):
        if isinstance(raw, Problem):
            found.append(raw)
        elif raw.type == "COMMENT":
            comments.append(raw)
        else:
            words.append(raw)
    problems = tuple(found)
    token_chunks = tokenise(words, language, start_mode=start_mode, date_field=date_field)
    foreign = [c[0] for c in token_chunks if c[0].type == "FOREIGN"]
    problems += tuple(Problem(_position(t), "wrong-language", t.value) for t in foreign)
    token_chunks = [c for c in token_chunks if c[0].type != "FOREIGN"]
    chunk_comments = _attach_comments(token_chunks, comments)
    chunks = []
    high = 0
    for tokens, notes in zip(token_chunks, chunk_comments[:-1], strict=True):
        low = bisect.bisect_left(words, _start(tokens[0]), lo=high, key=_start)
        high = bisect.bisect_left(words, _end(tokens[-1]), lo=low, key=_start)
        chunks.append(Chunk(tuple(tokens), tuple(notes), tuple(words[low:high])))
    return Lexed(language, tuple(chunks), tuple(chunk_comments[-1]), problems)


def _attach_comments(chunks: list[list[Token]], comments: list[Token]) -> list[list[str]]:
    """Each rule's comments (above it, inside it, or at the end of its last line), then the rest.

    A comment on a line of its own belongs to the rule below it; one at the end of a rule's
    line stays with that rule.
    """
    notes: list[list[str]] = [[] for _ in range(len(chunks) + 1)]
    starts = [_start(c[0]) for c in chunks]
    for comment in comments:
        where = _start(comment)
        k = bisect.bisect_right(starts, where) - 1  # the last rule that starts before it
        if k >= 0 and (where < _end(chunks[k][-1]) or where[0] == _end(chunks[k][-1])[0]):
            notes[k].append(comment.value[1:].strip())
        else:
            notes[k + 1].append(comment.value[1:].strip())
    return notes


# -- reading numbers and amounts ---------------------------------------------------------------


class BadValue(Exception):  # a signal between the reading functions and the checker
    """A number or amount that cannot be read: the message key, its hint's key and values."""

    def __init__(self, code: str, hint: str | None = None, **values: object) -> None:
        """Record the message key (``bad-money``), the hint key and the message's values."""
        super().__init__(code)
        self.code = code
        self.hint = hint
        self.values = values


def read_date(text: str) -> dt.date:
    """Read ``2026-11-01`` or ``1-11-2026``.

    Raises:
        BadValue: it is not written as a date, or names a day that does not exist
            (``bad-date``).
    """
    parts = text.strip().split("-")
    if DATE_RE.fullmatch(text.strip()) is None or len(parts) != 3:  # noqa: PLR2004
        raise BadValue("bad-date", text=text)
    first, month, last = (int(p) for p in parts)
    year, day = (first, last) if len(parts[0]) == 4 else (last, first)  # noqa: PLR2004
    try:
        return dt.date(year, month, day)
    except ValueError as error:
        raise BadValue("bad-date", text=text) from error


_WHOLE_RE: Final = re.compile(r"(?<=\d)[.,][-\u2013]")
_EURO_RE: Final = re.compile(r"(?i)(?<![a-z])euro(?:['\u2019]s|s)?(?![a-z])")
_DOLLAR_RE: Final = re.compile(r"(?<!US)\$")
_AMBIGUOUS_RE: Final = re.compile(r"(?<![\d.,])([1-9]\d{0,2})([.,])(\d{3})(?![\d.,])")
_DIGITS_RE: Final = re.compile(r"\d[\d.,]*")


def _digits(text: str) -> int:
    return sum(c.isdigit() for c in text)


def read_number(text: str) -> int | Decimal:
    """``4,5`` or ``4.5`` → ``Decimal('4.5')``; ``1.234,5`` → ``Decimal('1234.5')``; ``3`` → 3.

    A separator that appears once, last, marks the decimals; every other separator groups
    three digits (the rule of :meth:`Money.parse`, which this delegates to).

    Raises:
        BadValue: too many digits (``number-too-long``) or misplaced separators (``bad-number``).
    """
    if _digits(text) > MAX_DIGITS:
        raise BadValue("number-too-long", limit=MAX_DIGITS)
    try:
        number = _read_number(text, MAX_DIGITS, text)
    except InvalidMoney as error:
        raise BadValue("bad-number", "number-hint", text=text) from error
    return int(number) if number == number.to_integral_value() else number.normalize()


def read_money(text: str, currency: str) -> Money:
    """An amount as merchants type it: ``€5,95``, ``5,95 €``, ``5 euro``, ``EUR 5``, ``5,-``.

    A plain number is in ``currency``; the digits are read by :meth:`Money.parse`.

    Raises:
        BadValue: ``dollar-sign`` for ``$`` (it names several currencies), ``number-too-long``,
            ``ambiguous-separator`` for ``€1.000``, or ``bad-money``.
    """
    typed = text.strip()
    plain = _EURO_RE.sub("EUR", _WHOLE_RE.sub("", typed))
    if _DOLLAR_RE.search(plain):
        digits = _DIGITS_RE.search(plain)
        example = f"{digits.group(0) if digits else '100'} USD"
        raise BadValue("dollar-sign", "dollar-hint", text=typed, example=example)
    if _digits(plain) > MAX_DIGITS:
        raise BadValue("number-too-long", limit=MAX_DIGITS)
    try:
        return Money.parse(plain, currency=currency)
    except InvalidMoney as error:
        ambiguous = _AMBIGUOUS_RE.search(typed)
        if ambiguous is not None:
            whole, separator, group = ambiguous.groups()
            decimal = "," if separator == "." else "."
            at, end = ambiguous.span()
            raise BadValue(
                "ambiguous-separator",
                "ambiguous-hint",
                text=typed,
                separator=separator,
                plain=f"{typed[:at]}{whole}{group}{typed[end:]}",
                full=f"{typed[:end]}{decimal}00{typed[end:]}",
            ) from error
        raise BadValue("bad-money", "money-groups-hint", text=typed) from error
