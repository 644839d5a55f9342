"""Diagnostics: what is wrong with a rule file, where, and what was expected."""

from __future__ import annotations

import enum
from typing import Final

import attrs

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
        code: a stable identifier of the kind of problem (``unknown-field``, ``syntax``, …).
        source_name: the file name (or ``<rules>``).
    """

    line: int
    column: int
    severity: Severity
    message: str
    source_line: str = ""
    hint: str | None = None
    code: str = "error"
    source_name: str = "<rules>"

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
        """``FILE:LINE:COL: error: message``, the source line, a caret and the hint."""
        lines = [f"{self.source_name}:{self.line}:{self.column}: {self.severity}: {self.message}"]
        if self.source_line:
            source, caret = self._excerpt()
            lines += [f"    {source}", f"    {caret}"]
        if self.hint:
            lines.append(f"    {self.hint}")
        return "\n".join(lines)
