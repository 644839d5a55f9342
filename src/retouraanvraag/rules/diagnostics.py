"""Diagnostics: what is wrong with a rule file, where, and what was expected."""

from __future__ import annotations

import enum
from typing import Final

import attrs

from retouraanvraag.rules._codes import stable_code
from retouraanvraag.rules._messages import SEVERITY_WORDS, word

__all__ = ["Diagnostic", "Position", "Severity"]

#: A source line longer than this is shown as an excerpt around the column.
_SHOWN: Final = 120


class Severity(enum.StrEnum):
    """An error stops the file from loading; a warning does not."""

    ERROR = "error"
    WARNING = "warning"


@attrs.frozen(order=True)
class Position:
    """A place in the source: 1-based line and column."""

    line: int
    column: int


@attrs.frozen
class Diagnostic:
    """One problem in a rule file, printed like a compiler's.

    Attributes:
        line: 1-based line.
        column: 1-based column.
        severity: error or warning.
        message: what is wrong, in the file's language.
        source_line: the line of the file the problem is on.
        hint: what was expected, or "bedoelde u …?", if anything.
        code: the kind of problem (``unknown-field``, ``syntax``, …); see :attr:`stable_code`.
        source_name: the file name (or ``<rules>``).
        language: the file's language (``nl`` or ``en``), in which the diagnostic is printed.
    """

    line: int
    column: int
    severity: Severity
    message: str
    source_line: str = ""
    hint: str | None = None
    code: str = "error"
    source_name: str = "<rules>"
    language: str = "nl"

    @property
    def stable_code(self) -> str | None:
        """The kind of problem as a stable code such as ``R008``.

        ``retouraanvraag rules explain-code R008`` explains it with an example.
        """
        return stable_code(self.code)

    @property
    def caret(self) -> str:
        """A caret under the column, keeping the source line's tabs so it lines up."""
        prefix = self.source_line[: max(self.column - 1, 0)]
        return "".join("\t" if c == "\t" else " " for c in prefix) + "^"

    def _excerpt(self) -> tuple[str, str]:
        """The source line and its caret; a long line only around the column (… marks cuts)."""
        source = self.source_line
        if len(source) <= _SHOWN:
            return source, self.caret
        start = max(self.column - 1 - _SHOWN // 2, 0)
        end = start + _SHOWN
        head = "…" if start > 0 else ""
        tail = "…" if end < len(source) else ""
        shown = attrs.evolve(self, source_line=source[start:end], column=self.column - start)
        return f"{head}{shown.source_line}{tail}", " " * len(head) + shown.caret

    def __str__(self) -> str:
        """``FILE:LINE:COL: fout[R008]: message``, the source line, a caret and the hint."""
        severity = word(SEVERITY_WORDS, self.severity.value, self.language)
        code = self.stable_code
        label = f"{severity}[{code}]" if code else severity
        lines = [f"{self.source_name}:{self.line}:{self.column}: {label}: {self.message}"]
        if self.source_line:
            source, caret = self._excerpt()
            lines += [f"    {source}", f"    {caret}"]
        if self.hint:
            lines.append(f"    {self.hint}")
        return "\n".join(lines)
