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
requests with :func:`compile_condition`. The grammar is ``grammar.lark`` in this package.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from retouraanvraag.errors import RuleError
from retouraanvraag.model import DEFAULT_REASONS, ReasonCatalogue, ReturnRequest
from retouraanvraag.rules._checker import Checker, groups_of, implies, never_matches
from retouraanvraag.rules._compiler import compile_condition_function
from retouraanvraag.rules._format import format_condition, format_rules
from retouraanvraag.rules._lexer import KEYWORDS, detect_language, lex
from retouraanvraag.rules._messages import message
from retouraanvraag.rules._parser import SynRule, SyntaxProblem, parse_chunk
from retouraanvraag.rules._ruleset import RuleSet, load_timezone
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
    fields_of,
)

__all__ = [
    "DEFAULT_FIELDS",
    "MAX_RULES",
    "MAX_SOURCE_CHARS",
    "Action",
    "ActionKind",
    "And",
    "Choice",
    "Compare",
    "Condition",
    "Diagnostic",
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
    "format",
    "format_condition",
    "parse",
]

#: The largest rule text accepted, in characters.
MAX_SOURCE_CHARS: Final = 1_000_000
#: The most rules one file may hold.
MAX_RULES: Final = 5_000
#: Above this many rules, "always overridden" is only checked against nearby and identical rules.
_FULL_OVERRIDE_CHECK: Final = 200
_NEARBY: Final = 25


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
        text.splitlines(),
    )


def _fail(checker: Checker) -> RuleError:
    return RuleError(checker.listing(), source_name=checker.source_name)


def parse(
    text: str,
    *,
    reasons: ReasonCatalogue | None = None,
    fields: FieldRegistry | None = None,
    timezone: str = "Europe/Amsterdam",
    source_name: str = "<rules>",
    currency: str = "EUR",
) -> RuleSet:
    """Load a rule file: parse, check and compile it.

    Args:
        text: the rules, in Dutch or English (the first ``ALS``/``IF`` decides).
        reasons: the shop's reason catalogue (default: the library's).
        fields: the fields rules may name (default: DESIGN §3's; hosts add their own).
        timezone: the IANA zone for "days since delivery/order".
        source_name: the file name shown in diagnostics.
        currency: the currency of a plain number compared with an amount.

    Returns:
        The rule set; its ``warnings`` list rules that never match or are always overridden.

    Raises:
        RuleError: the text has errors; ``diagnostics`` lists every one of them.
        InvalidInput: ``timezone`` is not a known time zone.
    """
    load_timezone(timezone)
    language = detect_language(text)
    checker = _checker(text, language, reasons, fields, currency, source_name)
    if len(text) > MAX_SOURCE_CHARS:
        checker.report(Position(1, 1), "too-large", size=len(text), limit=MAX_SOURCE_CHARS)
        raise _fail(checker)
    lexed = lex(text, language)
    for problem in lexed.problems:
        hint = None
        if problem.code == "unterminated-string":
            hint = message("unterminated-hint", language)
        elif problem.code == "wrong-language":
            hint = message("wrong-language-hint", language)
        checker.report(problem.position, problem.code, hint=hint, text=repr(problem.text))
    if len(lexed.chunks) > MAX_RULES:
        first = lexed.chunks[MAX_RULES].tokens[0]
        position = Position(first.line or 1, first.column or 1)
        checker.report(position, "too-many-rules", count=len(lexed.chunks), limit=MAX_RULES)
        raise _fail(checker)
    rules: list[Rule] = []
    for number, chunk in enumerate(lexed.chunks, start=1):
        syntax = parse_chunk(chunk)
        if isinstance(syntax, SyntaxProblem):
            checker.syntax_problem(syntax)
            continue
        assert isinstance(syntax, SynRule)  # noqa: S101 - start="rule" gives rules
        rule = checker.rule(syntax, number)
        if rule is not None:
            rules.append(rule)
    if any(d.severity is Severity.ERROR for d in checker.diagnostics):
        raise _fail(checker)
    _warn(checker, rules)
    warnings = checker.listing()
    return RuleSet(
        tuple(rules),
        timezone,
        language,
        warnings,
        checker.reasons,
        checker.fields,
        lexed.trailing_comments,
    )


def _warn(checker: Checker, rules: list[Rule]) -> None:
    """Rules that can never match, are always overridden, or share a name."""
    language = checker.language
    named: dict[str, Rule] = {}
    by_condition: dict[Condition, list[Rule]] = {}
    for rule in rules:
        by_condition.setdefault(rule.condition, []).append(rule)
        if rule.name is not None:
            if rule.name in named:
                checker.report(
                    rule.position,
                    "duplicate-name",
                    severity=Severity.WARNING,
                    name=rule.name,
                    other=named[rule.name].number,
                )
            named.setdefault(rule.name, rule)
        field = never_matches(rule.condition)
        if field is not None:
            checker.report(
                rule.position,
                "never-matches",
                severity=Severity.WARNING,
                field=field.name(language),
            )
    keys = [frozenset(f.key for f in fields_of(r.condition)) for r in rules]
    flat = [_flat(r.condition) for r in rules]
    for index, rule in enumerate(rules):
        groups = groups_of(rule)
        if not groups:
            continue
        later = rules[index + 1 :]
        if len(rules) > _FULL_OVERRIDE_CHECK:
            same = [r for r in by_condition[rule.condition] if r.number > rule.number]
            later = same + later[:_NEARBY]
        for other in later:
            # Implication needs the later rule's fields among this one's, and is only tried on
            # flat conditions (sound, not complete: this is a warning, never an error).
            if groups <= groups_of(other) and (
                other.condition == rule.condition
                or (
                    flat[other.number - 1]
                    and keys[other.number - 1] <= keys[index]
                    and implies(rule.condition, other.condition)
                )
            ):
                name = other.display_name(language)
                checker.report(
                    rule.position,
                    "always-overridden",
                    severity=Severity.WARNING,
                    hint=message("overridden-hint", language, other=name),
                    other=name,
                )
                break


def _flat(condition: Condition) -> bool:
    """A comparison, or comparisons joined by one EN or OF."""
    if isinstance(condition, Compare):
        return True
    return isinstance(condition, (And, Or)) and all(isinstance(p, Compare) for p in condition.parts)


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
    timezone: str = "Europe/Amsterdam",
    language: str | None = None,
    source_name: str = "<condition>",
    currency: str = "EUR",
) -> Callable[[ReturnRequest], bool]:
    """A lone condition as a filter (the requests tab filtered by a rule).

    The filter is true when the condition certainly holds for the request, or, when it names
    item fields, for at least one of its items.

    Args:
        text: the condition, e.g. ``Van land IS Nederland EN Retourreden IS "Te klein"``.
        reasons: the shop's reason catalogue.
        fields: the fields the condition may name.
        timezone: the IANA zone for "days since delivery/order".
        language: ``nl`` or ``en``; guessed from the words when not given.
        source_name: the name shown in diagnostics.
        currency: the currency of a plain number compared with an amount.

    Raises:
        RuleError: the condition has errors (all of them listed).
        InvalidInput: ``timezone`` is not a known time zone.
    """
    tz = load_timezone(timezone)
    target = language or _guess_language(text)
    checker = _checker(text, target, reasons, fields, currency, source_name)
    if len(text) > MAX_SOURCE_CHARS:
        checker.report(Position(1, 1), "too-large", size=len(text), limit=MAX_SOURCE_CHARS)
        raise _fail(checker)
    lexed = lex(text, target, start_mode="condition")
    for problem in lexed.problems:
        checker.report(problem.position, problem.code, text=repr(problem.text))
    if not lexed.chunks:
        checker.report(Position(1, 1), "no-condition")
        raise _fail(checker)
    syntax = parse_chunk(lexed.chunks[0], start="condition_only")
    condition = None
    if isinstance(syntax, SyntaxProblem):
        checker.syntax_problem(syntax)
    else:
        assert not isinstance(syntax, SynRule)  # noqa: S101 - a lone condition
        condition = checker.condition(syntax)
    if condition is None or any(d.severity is Severity.ERROR for d in checker.diagnostics):
        raise _fail(checker)
    return compile_condition_function(condition, tz, checker.reasons)
