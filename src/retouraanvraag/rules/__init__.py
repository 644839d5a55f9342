r"""The return-rules language: ``ALS … DAN …`` (Dutch) and ``IF … THEN …`` (English).

>>> rules = parse('ALS Van land is Nederland\\nDAN Retouraanvraag uitschakelen')
>>> rules.rules[0].display_name("nl")
'regel 1'
>>> print(format(rules, language="en"), end="")
IF From country IS Netherlands
THEN Skip review

Load with :func:`parse` (every problem of the file is reported at once, as
:class:`~retouraanvraag.errors.RuleError`), decide with :meth:`RuleSet.evaluate`, show why with
:meth:`RuleSet.explain`, write canonical text or translate with :func:`format`, and filter
requests with :func:`compile_condition`. The grammar is ``grammar.lark`` in this package (the
parser implements it by hand).
"""

from __future__ import annotations

import bisect
import codecs
from collections.abc import Sequence
from typing import Final

import attrs

from retouraanvraag.errors import InvalidInput, RuleError
from retouraanvraag.model import DEFAULT_REASONS, ReasonCatalogue
from retouraanvraag.rules._checker import MAX_DIAGNOSTICS, Checker
from retouraanvraag.rules._codes import CODES, Explanation, explain_code, find_code
from retouraanvraag.rules._compiler import compile_condition_function, paused_collector
from retouraanvraag.rules._filter import ConditionFilter
from retouraanvraag.rules._format import format_condition, format_rules
from retouraanvraag.rules._lexer import (
    KEYWORDS,
    Chunk,
    DateField,
    Lexed,
    Problem,
    detect_language,
    lex,
)
from retouraanvraag.rules._messages import message, summary
from retouraanvraag.rules._parser import (
    Repair,
    SynCondition,
    SynRule,
    SyntaxProblem,
    parse_chunk,
    repair,
)
from retouraanvraag.rules._ruleset import RuleSet, check_version, load_timezone
from retouraanvraag.rules._warnings import warn
from retouraanvraag.rules.diagnostics import Diagnostic, Position, Severity
from retouraanvraag.rules.fields import (
    DEFAULT_FIELDS,
    ActionKind,
    Choice,
    Field,
    FieldRegistry,
    FieldType,
    Scope,
)
from retouraanvraag.rules.tree import (
    Action,
    And,
    Compare,
    Condition,
    Not,
    Operator,
    Or,
    Rule,
)
from retouraanvraag.shop import DEFAULT_TIMEZONE, ShopSettings

__all__ = [
    "CODES",
    "DEFAULT_FIELDS",
    "MAX_RULES",
    "MAX_SOURCE_CHARS",
    "Action",
    "ActionKind",
    "And",
    "Choice",
    "Compare",
    "Condition",
    "ConditionFilter",
    "Diagnostic",
    "Explanation",
    "Field",
    "FieldRegistry",
    "FieldType",
    "Not",
    "Operator",
    "Or",
    "Position",
    "Rule",
    "RuleError",
    "RuleSet",
    "Scope",
    "Severity",
    "compile_condition",
    "decode",
    "explain_code",
    "find_code",
    "format",
    "format_condition",
    "parse",
]

#: The largest rule text accepted, in characters.
MAX_SOURCE_CHARS: Final = 1_000_000
#: The most rules one file may hold.
MAX_RULES: Final = 5_000
#: How many rules of one file are tried again with a keyword typo put right (a repair costs a
#: few parses of that rule; past this many broken rules the plain syntax error is reported).
_MAX_REPAIRS: Final = 50


def _checker(  # noqa: PLR0917 - private helper
    text: str,
    language: str,
    reasons: ReasonCatalogue | None,
    fields: FieldRegistry | None,
    currency: str,
    source_name: str,
) -> Checker:
    return Checker(
        language,
        fields if fields is not None else FieldRegistry(),
        reasons if reasons is not None else ReasonCatalogue(DEFAULT_REASONS),
        currency,
        source_name,
        text.split("\n"),
    )


def _fail(checker: Checker) -> RuleError:
    listing = checker.listing()
    errors = sum(d.severity is Severity.ERROR for d in listing)
    counted = summary(errors, len(listing) - errors, checker.language)
    return RuleError(listing, source_name=checker.source_name, summary=counted)


@attrs.frozen
class _Decoded:
    """A file's text, and where its first byte that is not UTF-8 is (if any).

    ``encoding`` is ``utf-8``, ``utf-16`` or ``windows-1252``; empty when nothing fits.
    """

    text: str
    encoding: str
    position: Position | None = None


def _where(prefix: str) -> Position:
    """The position just after ``prefix``, counted as in the text the lexer reads."""
    prefix = _source(prefix)
    return Position(prefix.count("\n") + 1, len(prefix) - (prefix.rfind("\n") + 1) + 1)


def _decode(data: bytes) -> _Decoded:
    """Bytes as merchants' editors save them.

    UTF-8 (with or without a byte-order mark), UTF-16 with one, or Windows-1252 (old Notepad,
    Excel); anything else (or text with NUL bytes) cannot be read.
    """
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    elif data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return _Decoded(data.decode("utf-16"), "utf-16")
        except UnicodeDecodeError:
            pass
    try:
        return _Decoded(data.decode("utf-8"), "utf-8")
    except UnicodeDecodeError as error:
        bad = error.start
    try:
        text = data.decode("cp1252")
    except UnicodeDecodeError:
        text = "\x00"
    if "\x00" not in text:
        return _Decoded(text, "windows-1252", _where(data[:bad].decode("cp1252")))
    lossy = data.decode("utf-8", errors="replace")
    return _Decoded(lossy, "", _where(data[:bad].decode("utf-8", errors="replace")))


def decode(data: bytes, *, source_name: str = "<rules>") -> str:
    """A rule file's bytes as text: UTF-8 (a byte-order mark is dropped), else Windows-1252.

    Args:
        data: the file's contents.
        source_name: the file name shown in diagnostics.

    Raises:
        RuleError: the bytes are neither UTF-8 nor Windows-1252 (nor UTF-16 with a BOM); the
            diagnostic, in the file's language, points at the first byte that is not UTF-8.
    """
    decoded = _decode(data)
    if not decoded.encoding:
        text = _source(decoded.text)
        checker = _checker(text, detect_language(text), None, None, "EUR", source_name)
        _report_encoding(checker, decoded)
        raise _fail(checker)
    return _source(decoded.text)


def _report_encoding(checker: Checker, decoded: _Decoded) -> None:
    if decoded.position is None:
        return
    hint = message("utf8-hint", checker.language)
    if decoded.encoding:
        checker.report(decoded.position, "windows-1252", hint=hint, severity=Severity.WARNING)
    else:
        checker.report(decoded.position, "not-utf8", hint=hint)


def _source(text: str) -> str:
    """The text as the lexer reads it: no byte-order mark, every line ending a line feed.

    Lines and columns then count as an editor shows them.
    """
    return text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")


def _shop_settings(
    shop: ShopSettings | None,
    reasons: ReasonCatalogue | None,
    timezone: str | None,
    currency: str | None,
) -> tuple[ReasonCatalogue | None, str, str]:
    """The reasons, zone and currency to read rules with: the shop's, or those given."""
    if shop is None:
        zone = DEFAULT_TIMEZONE if timezone is None else timezone
        load_timezone(zone)
        return reasons, zone, "EUR" if currency is None else currency
    if not isinstance(shop, ShopSettings):
        raise InvalidInput("must be ShopSettings", field="shop")
    beside = {"reasons": reasons, "timezone": timezone, "currency": currency}
    for name, value in beside.items():
        if value is not None:
            raise InvalidInput(f"give the {name} in shop=, not beside it", field=name)
    return shop.reasons, shop.timezone, shop.currency


def parse(
    text: str | bytes,
    *,
    reasons: ReasonCatalogue | None = None,
    fields: FieldRegistry | None = None,
    timezone: str | None = None,
    source_name: str = "<rules>",
    currency: str | None = None,
    shop: ShopSettings | None = None,
    version: str | None = None,
) -> RuleSet:
    """Load a rule file: parse, check and compile it.

    Args:
        text: the rules, in Dutch or English (the first ``ALS``/``IF`` decides); bytes are
            read as UTF-8 or, failing that, as Windows-1252 (with a warning).
        reasons: the shop's reason catalogue (default: the library's).
        fields: the fields rules may name (default: DESIGN §3's; hosts add their own).
        timezone: the IANA zone for "days since delivery/order" (default
            ``Europe/Amsterdam``).
        source_name: the file name shown in diagnostics.
        currency: the shop's currency (ISO 4217, default ``EUR``): a plain number in a
            comparison with an amount is in it, and an amount in another currency gets a
            warning.
        shop: the shop's settings, giving ``reasons``, ``timezone`` and ``currency`` at once
            (then give none of those three).
        version: what the host calls this edition of the file (``"7"``, a date): every
            outcome carries it, and the desk records it with the decision in the history.

    Returns:
        The rule set; its ``warnings`` list rules that never match or are always overridden.

    Raises:
        RuleError: the text has errors; ``diagnostics`` lists every one of them.
        InvalidInput: ``timezone`` is not a known time zone, ``shop`` is given beside
            ``reasons``, ``timezone`` or ``currency``, or ``version`` is not one short line.
    """
    reasons, timezone, currency = _shop_settings(shop, reasons, timezone, currency)
    check_version(version)
    decoded = _decode(text) if isinstance(text, bytes) else _Decoded(text, "utf-8")
    # A big file makes hundreds of thousands of tokens and nodes, none of them in a cycle: the
    # collector's full passes over them would cost as much as the loading itself.
    with paused_collector():
        return _load(decoded, reasons, fields, timezone, source_name, currency, version)


def _load(  # noqa: PLR0917 - parse's arguments, checked
    decoded: _Decoded,
    reasons: ReasonCatalogue | None,
    fields: FieldRegistry | None,
    timezone: str,
    source_name: str,
    currency: str,
    version: str | None,
) -> RuleSet:
    text = _source(decoded.text)
    language = detect_language(text)
    checker = _checker(text, language, reasons, fields, currency, source_name)
    _report_encoding(checker, decoded)
    if not decoded.encoding:
        raise _fail(checker)
    if len(text) > MAX_SOURCE_CHARS:
        checker.report(Position(1, 1), "too-large", size=len(text), limit=MAX_SOURCE_CHARS)
        raise _fail(checker)
    date_field = _date_field(checker.fields)
    lexed = lex(text, language, date_field=date_field)
    _report_problems(checker, lexed.problems)
    if len(lexed.chunks) > MAX_RULES:
        first = lexed.chunks[MAX_RULES].tokens[0]
        position = Position(first.line or 1, first.column or 1)
        checker.report(position, "too-many-rules", count=len(lexed.chunks), limit=MAX_RULES)
        raise _fail(checker)
    rules: list[Rule] = []
    loader = _Loader(checker, lexed, date_field)
    for number, chunk in enumerate(lexed.chunks, start=1):
        rule = loader.rule(chunk, number)
        if rule is not None:
            rules.append(rule)
    if any(d.severity is Severity.ERROR for d in checker.diagnostics):
        raise _fail(checker)
    warn(checker, rules, lexed.chunks)
    warnings = checker.listing()
    return RuleSet(
        tuple(rules),
        timezone,
        language,
        warnings,
        checker.reasons,
        checker.fields,
        lexed.trailing_comments,
        version=version,
    )


def _date_field(fields: FieldRegistry) -> DateField:
    """Whether words name one of ``fields``' date fields (``Besteldatum``, ``Order date``)."""

    def names_a_date_field(words: str) -> bool:
        field = fields.lookup(words)
        return field is not None and field.type is FieldType.DATE

    return names_a_date_field


def _report_problems(checker: Checker, problems: Sequence[Problem]) -> None:
    """Stray characters, unterminated text, unknown operators, rules in the other language."""
    language = checker.language
    for problem in problems:
        hint = None
        text = repr(problem.text)
        if problem.code == "unterminated-string":
            hint = message("unterminated-hint", language, quote=problem.detail)
        elif problem.code == "wrong-language":
            hint = message("wrong-language-hint", language)
        elif problem.code == "unknown-operator":
            hint = message("did-you-mean", language, suggestion=problem.detail)
            text = problem.text
        checker.report(problem.position, problem.code, hint=hint, text=text)


class _Loader:
    """Parses and checks one chunk at a time, reporting each mistake once.

    A chunk with a lexical problem (a stray character, an unterminated text) is not parsed
    further: what goes wrong after it follows from it. A chunk that does not parse, or does not
    check, is tried with a keyword typo put right or a missing keyword put in (``repair``);
    when that makes it whole, the typo is the one message.
    """

    def __init__(self, checker: Checker, lexed: Lexed, date_field: DateField) -> None:
        self.checker = checker
        self.problems = sorted((p.position.line, p.position.column) for p in lexed.problems)
        self.repairs = 0
        self.date_field = date_field

    def _troubled(self, tokens: Sequence[object]) -> bool:
        """Whether a lexical problem lies inside these tokens' stretch of text."""
        first, last = tokens[0], tokens[-1]
        start = (getattr(first, "line", 0) or 0, getattr(first, "column", 0) or 0)
        end = (getattr(last, "end_line", 0) or 0, getattr(last, "end_column", 0) or 0)
        k = bisect.bisect_left(self.problems, start)
        return k < len(self.problems) and self.problems[k] < end

    def _may_repair(self) -> bool:
        return self.repairs < _MAX_REPAIRS and len(self.checker.diagnostics) < MAX_DIAGNOSTICS

    def _errors(self, parsed: tuple[SynRule | SynCondition, ...]) -> int:
        """How many errors parsed rules have, checked apart from the file's diagnostics."""
        scratch = attrs.evolve(self.checker, diagnostics=[], dropped=0)
        for number, syntax in enumerate(parsed, start=1):
            if isinstance(syntax, SynRule):
                scratch.rule(syntax, number)
            else:
                scratch.condition(syntax)
        return scratch.dropped + sum(d.severity is Severity.ERROR for d in scratch.diagnostics)

    def _report(self, fixed: Repair, number: int) -> None:
        checker = self.checker
        language = checker.language
        for fix in (fixed.fix, *fixed.more):
            if fix.code == "keyword-typo":
                hint = message("did-you-mean", language, suggestion=fix.keyword)
                checker.report(fix.position, fix.code, hint=hint, text=fix.text)
            else:
                hint = message("missing-keyword-hint", language, keyword=fix.keyword, text=fix.text)
                checker.report(
                    fix.position, fix.code, hint=hint, keyword=fix.keyword, text=fix.text
                )
        if fixed.errors:  # the rule's other mistakes, now that it parses
            for syntax in fixed.parsed:
                if isinstance(syntax, SynRule):
                    checker.rule(syntax, number)
                else:
                    checker.condition(syntax)

    def _repair(self, chunk: Chunk, problem: SyntaxProblem | None, start: str) -> Repair | None:
        if not self._may_repair():
            return None
        self.repairs += 1
        return repair(
            chunk,
            problem,
            self.checker.language,
            self._errors,
            start=start,
            date_field=self.date_field,
        )

    def parsed(self, chunk: Chunk, number: int, start: str) -> SynRule | SynCondition | None:
        """The chunk's syntax tree, or ``None`` when its mistake has been reported."""
        if self._troubled(chunk.tokens):
            return None
        syntax = parse_chunk(chunk, start=start)
        if not isinstance(syntax, SyntaxProblem):
            return syntax
        fixed = self._repair(chunk, syntax, start) if syntax.code == "syntax" else None
        if fixed is not None:
            self._report(fixed, number)
        else:
            self.checker.syntax_problem(syntax)
        return None

    def rule(self, chunk: Chunk, number: int) -> Rule | None:
        """Check one rule; ``None`` when it has errors (they are reported)."""
        syntax = self.parsed(chunk, number, "rule")
        if syntax is None:
            return None
        assert isinstance(syntax, SynRule)  # noqa: S101 - start="rule" gives rules
        checker = self.checker
        mark, dropped = len(checker.diagnostics), checker.dropped
        rule = checker.rule(syntax, number)
        if rule is None and self._had_errors(mark, dropped):
            fixed = self._repair(chunk, None, "rule")
            if fixed is not None:
                del checker.diagnostics[mark:]
                checker.dropped = dropped
                self._report(fixed, number)
        return rule

    def condition(self, chunk: Chunk) -> Condition | None:
        """Check a lone condition; ``None`` when it has errors (they are reported)."""
        syntax = self.parsed(chunk, 1, "condition_only")
        if syntax is None:
            return None
        assert not isinstance(syntax, SynRule)  # noqa: S101 - a lone condition
        checker = self.checker
        mark, dropped = len(checker.diagnostics), checker.dropped
        condition = checker.condition(syntax)
        if self._had_errors(mark, dropped):
            fixed = self._repair(chunk, None, "condition_only")
            if fixed is not None:
                del checker.diagnostics[mark:]
                checker.dropped = dropped
                self._report(fixed, 1)
        return condition

    def _had_errors(self, mark: int, dropped: int) -> bool:
        new = self.checker.diagnostics[mark:]
        return self.checker.dropped > dropped or any(d.severity is Severity.ERROR for d in new)


def format(ruleset: RuleSet, language: str | None = None) -> str:  # noqa: A001
    """Canonical text for a rule set, in its own language or translated.

    ``parse(format(rules)) == rules`` and ``parse(format(rules, language="en")) == rules``.

    Args:
        ruleset: the rules to write.
        language: ``nl`` or ``en``; defaults to the language they were written in.
    """
    target = language or ruleset.language
    if target not in KEYWORDS:
        raise ValueError(f"language must be 'nl' or 'en', not {language!r}")
    return format_rules(ruleset.rules, target, ruleset.reasons, ruleset.trailing_comments)


def _guess_language(text: str) -> str:
    words = {w.casefold() for w in text.split()}
    english = len(words & {"is", "not", "and", "or", "contains", "than", "from", "country"})
    dutch = len(words & {"niet", "en", "of", "bevat", "dan", "van", "land", "minstens"})
    return "en" if english > dutch else "nl"


def compile_condition(
    text: str,
    *,
    reasons: ReasonCatalogue | None = None,
    fields: FieldRegistry | None = None,
    timezone: str | None = None,
    language: str | None = None,
    source_name: str = "<condition>",
    currency: str | None = None,
    shop: ShopSettings | None = None,
) -> ConditionFilter:
    """A lone condition as a filter (the requests tab filtered by a rule).

    The filter is true when the condition certainly holds for the request, or, when it names
    item fields, for at least one of its items. It is a predicate on requests that also
    carries the checked condition, zone and catalogue, so that a store can run it in its
    database (``Query(condition=...)``).

    Args:
        text: the condition, e.g. ``Van land IS Nederland EN Retourreden IS "Te klein"``.
        reasons: the shop's reason catalogue.
        fields: the fields the condition may name.
        timezone: the IANA zone for "days since delivery/order".
        language: ``nl`` or ``en``; guessed from the words when not given.
        source_name: the name shown in diagnostics.
        currency: the currency of a plain number compared with an amount.
        shop: the shop's settings, giving ``reasons``, ``timezone`` and ``currency`` at once.

    Raises:
        RuleError: the condition has errors (all of them listed).
        InvalidInput: ``timezone`` is not a known time zone, or ``shop`` is given beside
            ``reasons``, ``timezone`` or ``currency``.
    """
    reasons, timezone, currency = _shop_settings(shop, reasons, timezone, currency)
    tz = load_timezone(timezone)
    text = _source(text)
    target = language or _guess_language(text)
    checker = _checker(text, target, reasons, fields, currency, source_name)
    if len(text) > MAX_SOURCE_CHARS:
        checker.report(Position(1, 1), "too-large", size=len(text), limit=MAX_SOURCE_CHARS)
        raise _fail(checker)
    date_field = _date_field(checker.fields)
    lexed = lex(text, target, start_mode="condition", date_field=date_field)
    _report_problems(checker, lexed.problems)
    if not lexed.chunks:
        checker.report(Position(1, 1), "no-condition")
        raise _fail(checker)
    condition = _Loader(checker, lexed, date_field).condition(lexed.chunks[0])
    if condition is None or any(d.severity is Severity.ERROR for d in checker.diagnostics):
        raise _fail(checker)
    predicate = compile_condition_function(condition, tz, checker.reasons)
    return ConditionFilter(condition, timezone, checker.reasons, predicate)
