"""The ``retouraanvraag`` command: check, explain and format rule files.

    retouraanvraag rules check FILE            # exit 0 when clean, 1 on errors
    retouraanvraag rules explain FILE REQUEST.json [--lang nl|en]
    retouraanvraag rules fmt FILE [--lang nl|en] [--check]

Diagnostics print like a compiler's: ``FILE:LINE:COL: error: …``, the source line, a caret and
a hint. Standard library only.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TextIO

from retouraanvraag.errors import InvalidInput, RuleError

__all__ = ["main"]

#: Exit codes: clean, problems in the rules (or not canonical), bad usage or unreadable input.
OK, PROBLEMS, USAGE = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="retouraanvraag", description="Return requests: tools for the rules language."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    rules = commands.add_parser("rules", help="check, explain and format rule files")
    actions = rules.add_subparsers(dest="action", required=True)

    check = actions.add_parser("check", help="report every problem in a rule file")
    check.add_argument("file", type=Path)
    check.add_argument("--timezone", default="Europe/Amsterdam")

    explain = actions.add_parser("explain", help="show how the rules decide a request")
    explain.add_argument("file", type=Path)
    explain.add_argument("request", type=Path, help="the request as JSON")
    explain.add_argument("--lang", choices=("nl", "en"))
    explain.add_argument("--timezone", default="Europe/Amsterdam")

    fmt = actions.add_parser("fmt", help="print the rules in canonical form (or translate them)")
    fmt.add_argument("file", type=Path)
    fmt.add_argument("--lang", choices=("nl", "en"))
    fmt.add_argument("--check", action="store_true", help="exit 1 when the file is not canonical")
    fmt.add_argument("--timezone", default="Europe/Amsterdam")
    return parser


def _read(path: Path, err: TextIO) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        print(f"{path}: cannot read: {error}", file=err)
        return None


def _load(path: Path, timezone: str, err: TextIO) -> object:
    """The rule set in ``path``, or the exit code: USAGE when unreadable, PROBLEMS when wrong."""
    from retouraanvraag import rules  # noqa: PLC0415 - keep `--help` fast

    text = _read(path, err)
    if text is None:
        return USAGE
    try:
        ruleset = rules.parse(text, source_name=str(path), timezone=timezone)
    except RuleError as error:
        for diagnostic in error.diagnostics:
            print(diagnostic, file=err)
        errors = sum(1 for d in error.diagnostics if d.severity == "error")
        print(f"{path}: {errors} error(s)", file=err)
        return PROBLEMS
    except InvalidInput as error:
        print(f"{path}: {error}", file=err)
        return USAGE
    for warning in ruleset.warnings:
        print(warning, file=err)
    return ruleset


def main(  # noqa: PLR0911 - one exit per outcome
    argv: list[str] | None = None, *, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    """Run the command line; returns the exit code (0 clean, 1 problems, 2 usage)."""
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    from retouraanvraag import rules  # noqa: PLC0415

    ruleset = _load(args.file, args.timezone, err)
    if isinstance(ruleset, int):
        return ruleset
    assert isinstance(ruleset, rules.RuleSet)  # noqa: S101 - _load returns a RuleSet
    if args.action == "check":
        count = len(ruleset.rules)
        print(
            f"{args.file}: {count} rule(s), {len(ruleset.warnings)} warning(s), no errors", file=out
        )
        return OK
    if args.action == "explain":
        return _explain(ruleset, args.request, args.lang, out, err)
    text = rules.format(ruleset, language=args.lang)
    if args.check:
        current = _read(args.file, err) or ""
        if current != text:
            print(f"{args.file}: not in canonical form (run `retouraanvraag rules fmt`)", file=err)
            return PROBLEMS
        return OK
    out.write(text)
    return OK


def _explain(ruleset: object, path: Path, language: str | None, out: TextIO, err: TextIO) -> int:
    from retouraanvraag._codec import request_from_json  # noqa: PLC0415
    from retouraanvraag.rules import RuleSet  # noqa: PLC0415

    assert isinstance(ruleset, RuleSet)  # noqa: S101
    data = _read(path, err)
    if data is None:
        return USAGE
    try:
        request = request_from_json(data)
    except InvalidInput as error:
        print(f"{path}: {error}", file=err)
        return USAGE
    out.write(ruleset.explain(request, language))
    return OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
