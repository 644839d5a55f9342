"""The docs' code runs, and the generated docs are not stale."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from retouraanvraag import _docs

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def python_blocks() -> list[tuple[str, int, str]]:
    blocks = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for match in BLOCK.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            blocks.append((page.relative_to(ROOT).as_posix(), line, match.group(1)))
    return blocks


@pytest.mark.parametrize(
    ("page", "line", "code"),
    python_blocks(),
    ids=lambda v: str(v)[:40] if isinstance(v, str) else str(v),
)
def test_code_in_the_docs_runs(page: str, line: int, code: str, tmp_path: Path) -> None:
    cwd = Path.cwd()
    os.chdir(tmp_path)
    try:
        compiled = compile("\n" * (line) + code, f"{page}", "exec")
        exec(compiled, {"__name__": f"docs_{Path(page).stem}"})  # noqa: S102 - our own docs
    finally:
        os.chdir(cwd)


def test_the_lifecycle_page_is_generated_from_the_transition_table() -> None:
    page = ROOT / _docs.LIFECYCLE_PAGE
    assert page.read_text(encoding="utf-8") == _docs.lifecycle_markdown(), (
        "docs/lifecycle.md is stale: run `make docs`"
    )


def test_readme_opens_with_the_two_commands() -> None:
    head = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()[:6]
    assert any(line.startswith("make demo") for line in head)
    assert any(line.startswith("make test") for line in head)
