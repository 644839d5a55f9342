"""Tokens for the rules grammar: keywords of both languages, case-insensitive, multi-word.

The lexer does what an LALR(1) grammar cannot: it knows that ``DAN`` after ``GROTER`` is part of
an operator, that ``NIET`` in ``Artikel niet retourneerbaar`` is an action's word, and that
``OF`` after a value is another value unless ``<field> <operator>`` follows (DESIGN §3).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import cache
from typing import Final

import attrs
from babel.numbers import list_currencies
from lark import Token

from retouraanvraag.model import fold_text
from retouraanvraag.rules.diagnostics import Position

__all__ = ["KEYWORDS", "Chunk", "Lexed", "detect_language", "lex"]

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
    },
}
OPERATORS: Final = frozenset(
    {"IS", "IS_NOT", "CONTAINS", "NOT_CONTAINS", "STARTS_WITH", "GT", "GE", "LT", "LE"}
)
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
}
_VALUE_TOKENS: Final = frozenset({"WORD", "STRING", "NUMBER", "MONEY"})
_NUMBER: Final = r"\d+(?:[.,]\d+)*"
_TOKEN_RE: Final = re.compile(
    rf"""
    (?P<ws>\s*)
    (?:(?P<comment>\#[^\n]*)
    |(?P<string>"(?:[^"\\\n]|\\.)*"|“[^”\n]*”)
    |(?P<unterminated>["“][^\n]*)
    |(?P<prefixmoney>[€$£]\s?{_NUMBER}(?![\w]))
    |(?P<number>{_NUMBER}(?![\w'\u2019\-/@+&]))
    |(?P<symbol>>=|<=|!=|[<>=≥≤≠():])
    |(?P<word>[\w][\w'\u2019\-./@+&]*)
    |(?P<bad>.)
    |$)
    """,
    re.VERBOSE,
)
_CODE_AFTER_RE: Final = re.compile(r"[ \t]?([A-Za-z]{3})(?![\w])")
_NUMBER_AFTER_RE: Final = re.compile(rf"[ \t]?{_NUMBER}(?![\w'\u2019\-/@+&])")


@cache
def _currencies() -> frozenset[str]:
    return frozenset(list_currencies())


@attrs.frozen
class Chunk:
    """The tokens of one rule (or of the stray text between rules) and its comments."""

    tokens: tuple[Token, ...]
    comments: tuple[str, ...]


@attrs.frozen
class Problem:
    """A lexical problem: a stray character or an unterminated string."""

    position: Position
    code: str
    text: str


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


def _raw_tokens(text: str) -> Iterator[Token | Problem]:  # noqa: C901
    """Split the text into words, strings, numbers, money, symbols and comments."""
    line, line_start, pos = 1, 0, 0
    while pos < len(text):
        match = _TOKEN_RE.match(text, pos)
        if match is None:  # pragma: no cover - `bad` or `$` always matches
            break
        newlines = match.group("ws").count("\n")
        if newlines:
            line += newlines
            line_start = text.rindex("\n", pos, match.end("ws")) + 1
        kind = match.lastgroup
        if kind == "ws":  # only trailing space was left
            break
        start, end = match.end("ws"), match.end()
        value = match.group(kind)  # type: ignore[arg-type]
        if kind == "number":
            code = _CODE_AFTER_RE.match(text, end)
            if code and code.group(1).upper() in _currencies() and not _is_keyword(code.group(1)):
                end = code.end()
                kind, value = "money", text[start:end]
        elif kind == "word" and value.isupper() and value in _currencies():
            number = _NUMBER_AFTER_RE.match(text, end)
            if number:
                end = number.end()
                kind, value = "money", text[start:end]
        column = start - line_start + 1
        if kind == "unterminated":
            yield Problem(Position(line, column), "unterminated-string", value)
            value += value[0].replace("“", "”")
            kind = "string"
        if kind == "bad":
            yield Problem(Position(line, column), "bad-character", value)
        else:
            type_ = _SYMBOLS[value] if kind == "symbol" else _TYPES[kind]  # type: ignore[index]
            yield Token(
                type_,
                value,
                line=line,
                column=column,
                end_line=line,
                end_column=column + len(value),
            )
        pos = end


@cache
def _all_keyword_words() -> frozenset[str]:
    return frozenset(w for table in KEYWORDS.values() for phrase in table for w in phrase.split())


def _is_keyword(word: str) -> bool:
    return fold_text(word) in _all_keyword_words()


def detect_language(text: str) -> str:
    """The language of a rule file: that of its first ``ALS``/``REGEL`` or ``IF``/``RULE``."""
    for token in _raw_tokens(text[:100_000]):
        if isinstance(token, Token) and token.type == "WORD":
            word = fold_text(token.value)
            if word in {"als", "regel"}:
                return "nl"
            if word in {"if", "rule"}:
                return "en"
    return "nl"


@cache
def _phrases(language: str) -> dict[str, tuple[tuple[tuple[str, ...], str], ...]]:
    """Keyword phrases by their first word, longest first."""
    index: dict[str, list[tuple[tuple[str, ...], str]]] = {}
    for phrase, type_ in KEYWORDS[language].items():
        words = tuple(phrase.split())
        index.setdefault(words[0], []).append((words, type_))
    return {w: tuple(sorted(p, key=lambda x: -len(x[0]))) for w, p in index.items()}


def _join(tokens: list[Token], type_: str, text: str) -> Token:
    first, last = tokens[0], tokens[-1]
    return Token(
        type_,
        text,
        line=first.line,
        column=first.column,
        end_line=last.end_line,
        end_column=last.end_column,
    )


def _match_phrase(folded: list[str | None], i: int, language: str) -> tuple[str, int] | None:
    """The keyword starting at ``tokens[i]`` (longest match) and its length in words."""
    for words, type_ in _phrases(language).get(folded[i] or "", ()):
        n = len(words)
        if tuple(folded[i : i + n]) == words:
            return type_, n
    return None


def _classify(tokens: list[Token], language: str, *, start_mode: str) -> list[Token]:
    """Turn words into keywords where the mode allows (condition, action, between rules)."""
    folded = [t.value.casefold() if t.type == "WORD" else None for t in tokens]
    out: list[Token] = []
    mode = start_mode
    i = 0
    while i < len(tokens):
        token = tokens[i]
        matched = _match_phrase(folded, i, language) if token.type == "WORD" else None
        if matched is None:
            out.append(token)
            i += 1
            continue
        type_, n = matched
        allowed = (
            mode == "condition" or type_ in {"RULE", "IF"} or (mode == "action" and type_ == "AND")
        )
        if not allowed:
            out.append(token)
            i += 1
            continue
        out.append(_join(tokens[i : i + n], type_, " ".join(t.value for t in tokens[i : i + n])))
        i += n
        if type_ == "IF":
            mode = "condition"
        elif type_ == "RULE":
            mode = "top"
        elif type_ == "THEN":
            mode = "action"
    return out


def _foreign_rules(tokens: list[Token], language: str) -> list[Token]:
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
        token = tokens[i]
        word = token.value.casefold() if token.type == "WORD" else ""
        if word in openers and then_ahead and token.line != tokens[i - 1].line:
            out[i] = _join([token], "FOREIGN", token.value)
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


def _disambiguate(tokens: list[Token]) -> list[Token]:
    """Decide whether OF/EN after a value joins values or conditions (DESIGN §3)."""
    out: list[Token] = []
    in_values = False
    for i, token in enumerate(tokens):
        type_ = token.type
        if type_ in OPERATORS:
            in_values = True
        elif type_ in {"OR", "AND"} and in_values and out and out[-1].type in _VALUE_TOKENS:
            if not _starts_comparison(tokens, i + 1):
                nxt = tokens[i + 1] if i + 1 < len(tokens) else None
                if type_ == "OR" and nxt is not None and nxt.type in _VALUE_TOKENS:
                    out.append(_join([token], "VALUE_OR", token.value))
                    continue
                if (
                    type_ == "AND"
                    and out[-1].type == "WORD"
                    and nxt is not None
                    and nxt.type == "WORD"
                ):
                    # A bare value with "en"/"and" inside: Bosnië en Herzegovina.
                    out.append(_join([token], "WORD", token.value))
                    continue
            in_values = False
        elif type_ in {"LPAR", "RPAR", "NOT", "THEN", "IF", "RULE", "FOREIGN"}:
            in_values = False
        out.append(token)
    return out


def _chunks(tokens: list[Token]) -> list[list[Token]]:
    """Split at each rule's start, so that one rule's syntax error does not hide the next."""
    chunks: list[list[Token]] = []
    current: list[Token] = []
    for token in tokens:
        starts = token.type in {"RULE", "FOREIGN"} or (
            token.type == "IF"
            and not (current and current[0].type == "RULE" and all(t.type != "IF" for t in current))
        )
        if starts and current:
            chunks.append(current)
            current = []
        current.append(token)
    if current:
        chunks.append(current)
    return chunks


def _position(token: Token) -> Position:
    return Position(token.line or 1, token.column or 1)


def _end(token: Token) -> tuple[int, int]:
    return (token.end_line or token.line or 0, token.end_column or token.column or 0)


def _start(token: Token) -> tuple[int, int]:
    return (token.line or 0, token.column or 0)


def lex(text: str, language: str, *, start_mode: str = "top") -> Lexed:
    """Tokenise ``text`` for the grammar and split it into one chunk per rule."""
    raw = list(_raw_tokens(text))
    problems = tuple(t for t in raw if isinstance(t, Problem))
    comments = [t for t in raw if isinstance(t, Token) and t.type == "COMMENT"]
    tokens = [t for t in raw if isinstance(t, Token) and t.type != "COMMENT"]
    if start_mode == "top":
        tokens = _foreign_rules(tokens, language)
    tokens = _disambiguate(_classify(tokens, language, start_mode=start_mode))
    token_chunks = _chunks(tokens) if start_mode == "top" else ([tokens] if tokens else [])
    foreign = [c[0] for c in token_chunks if c[0].type == "FOREIGN"]
    problems += tuple(Problem(_position(t), "wrong-language", t.value) for t in foreign)
    token_chunks = [c for c in token_chunks if c[0].type != "FOREIGN"]
    chunk_comments: list[list[str]] = [[] for _ in token_chunks]
    trailing: list[str] = []
    for comment in comments:
        where = _start(comment)
        for k, chunk in enumerate(token_chunks):
            if where < _end(chunk[-1]):
                chunk_comments[k].append(comment.value[1:].strip())
                break
        else:
            trailing.append(comment.value[1:].strip())
    chunks = tuple(
        Chunk(tuple(c), tuple(m)) for c, m in zip(token_chunks, chunk_comments, strict=True)
    )
    return Lexed(language, chunks, tuple(trailing), problems)
