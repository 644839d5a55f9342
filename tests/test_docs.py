"""The docs' code runs, the generated docs are not stale, and the site builds.

Every fenced block whose info string starts with ``python`` (```` ```python ````, ```` ```py ````,
```` ```python title="…" ````) in README.md and docs/ runs, each in a fresh temporary directory
with a fresh namespace. Two HTML comments, as the last line before the fence, change that:
``<!-- continued -->`` runs the block after the one before it on the same page, in its
namespace and directory (a tutorial's steps); ``<!-- fragment: why -->`` marks a block that is
not meant to run (keep those rare).
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import attrs
import pytest

from retouraanvraag import _docs, errors, mail

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
FENCE = re.compile(
    r"^(?P<fence>```+)(?P<info>[^\n`]*)\n(?P<code>.*?)^(?P=fence)[ \t]*$", re.DOTALL | re.MULTILINE
)
MARKER = re.compile(r"<!--\s*(?P<kind>continued|fragment)\b(?P<why>[^>]*)-->")


@attrs.frozen
class Block:
    page: str
    line: int
    code: str


def _marker(text: str, start: int) -> tuple[str, str] | None:
    """The marker on the last non-blank line before ``start``, if any."""
    before = text[:start].rstrip().rsplit("\n", 1)[-1]
    match = MARKER.fullmatch(before.strip())
    return (match["kind"], match["why"].strip(" :")) if match else None


def runnable_chains() -> list[tuple[Block, ...]]:
    """The python blocks of every page, grouped into chains that run one after the other."""
    chains: list[list[Block]] = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        name = page.relative_to(ROOT).as_posix()
        previous: list[Block] | None = None
        for match in FENCE.finditer(text):
            if not match["info"].strip().startswith(("python", "py")):
                continue
            block = Block(name, text.count("\n", 0, match.start()) + 1, match["code"])
            marker = _marker(text, match.start())
            if marker is not None and marker[0] == "fragment":
                if not marker[1]:
                    raise ValueError(f"{name}:{block.line}: say why the fragment does not run")
                continue
            if marker is not None and marker[0] == "continued":
                if previous is None:
                    raise ValueError(f"{name}:{block.line}: nothing before it to continue")
                previous.append(block)
                continue
            previous = [block]
            chains.append(previous)
    return [tuple(chain) for chain in chains]


CHAINS = runnable_chains()


@pytest.mark.parametrize("chain", CHAINS, ids=[f"{c[0].page}:{c[0].line}" for c in CHAINS])
def test_code_in_the_docs_runs(
    chain: tuple[Block, ...], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # each example starts in an empty directory of its own
    namespace: dict[str, object] = {"__name__": f"docs_{Path(chain[0].page).stem}"}
    for block in chain:
        compiled = compile("\n" * block.line + block.code, block.page, "exec", dont_inherit=True)
        exec(compiled, namespace)  # noqa: S102 - our own docs


def test_fragments_and_continuations_are_recognised() -> None:
    text = "x\n<!-- fragment: shown only -->\n\n```python\nboom()\n```\n"
    assert _marker(text, text.index("```")) == ("fragment", "shown only")
    text = '<!-- continued -->\n```python title="step 2"\nnext()\n```\n'
    assert _marker(text, text.index("```")) == ("continued", "")
    assert _marker("Some prose.\n\n```python\n", len("Some prose.\n\n")) is None
    (match,) = FENCE.finditer('```python title="a.py"\nprint(1)\n```\n')
    assert match["info"].strip().startswith("python")
    assert match["code"] == "print(1)\n"


@pytest.mark.parametrize("page", sorted(_docs.PAGES), ids=lambda p: p.as_posix())
def test_generated_pages_are_not_stale(page: Path) -> None:
    assert (ROOT / page).read_text(encoding="utf-8") == _docs.PAGES[page](), (
        f"{page.as_posix()} is stale: run `make docs`"
    )


def test_the_rules_reference_names_every_field_and_action() -> None:
    from retouraanvraag.rules.fields import ACTIONS, DEFAULT_FIELDS  # noqa: PLC0415

    page = _docs.rules_reference_markdown()
    for field in DEFAULT_FIELDS:
        assert f"### {field.nl} · {field.en}" in page
    for action in ACTIONS:
        assert f"### {action.nl} · {action.en}" in page


def test_a_reference_example_that_loads_with_warnings_stops_the_generator() -> None:
    with pytest.raises(ValueError, match="loads with warnings"):
        _docs._checked("ALS Bestelwaarde GROTER DAN 100 USD DAN Retouraanvraag inschakelen")


def test_the_index_shows_the_readmes_five_minutes() -> None:
    index = (ROOT / "docs" / "index.md").read_text(encoding="utf-8")
    shown = _docs.on_page_markdown(index)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Five minutes", 1)[1].split("\n## ", 1)[0].strip()
    assert section in shown
    assert "<!-- readme:" not in shown
    with pytest.raises(ValueError, match="no section"):
        _docs.on_page_markdown("<!-- readme: No such heading -->\n")


def test_docstring_roles_become_optional_links_of_the_api_reference() -> None:
    class File:
        src_uri = "api/ports.md"

    class Page:
        file = File()

    html = (
        "see :class:<code>~retouraanvraag.errors.NotFound</code>, :meth:<code>Storage.get</code>"
        " and :mod:<code>sqlite3</code>"
    )
    assert _docs.on_page_content(html, page=Page()) == (
        'see <autoref identifier="retouraanvraag.errors.NotFound" optional><code>NotFound'
        '</code></autoref>, <autoref identifier="retouraanvraag.ports.Storage.get" '
        'slug="Storage.get" optional><code>Storage.get</code></autoref> and <autoref '
        'identifier="retouraanvraag.ports.sqlite3" slug="sqlite3" optional><code>sqlite3</code>'
        "</autoref>"
    )
    assert _docs.on_page_content("no roles here") == "no roles here"


def _documented_tree() -> dict[str, tuple[str | None, tuple[str, ...]]]:
    """The error tree drawn on docs/errors.md: each class, its parent and its builtin bases."""
    text = (ROOT / "docs" / "errors.md").read_text(encoding="utf-8")
    (tree,) = [m["code"] for m in FENCE.finditer(text) if m["code"].startswith("Retouraanvraag")]
    found: dict[str, tuple[str | None, tuple[str, ...]]] = {}
    parents: list[str] = []
    for line in tree.splitlines():
        name = re.search(r"\w+", line)
        assert name is not None, line
        depth = name.start() // 4
        builtins = re.search(r"\(([^)]*)\)", line)
        extra = tuple(b.strip() for b in builtins[1].split(",")) if builtins else ()
        parents[depth:] = [name[0]]
        found[name[0]] = (parents[depth - 1] if depth else None, extra)
    return found


def test_the_error_tree_on_the_errors_page_is_the_real_one() -> None:
    real: dict[str, tuple[str | None, tuple[str, ...]]] = {}
    for module in (errors, mail):
        for name in getattr(module, "__all__", dir(module)):
            cls = getattr(module, name)
            if isinstance(cls, type) and issubclass(cls, errors.RetouraanvraagError):
                ours = [b for b in cls.__bases__ if issubclass(b, errors.RetouraanvraagError)]
                others = tuple(b.__name__ for b in cls.__bases__ if b not in ours)
                real[name] = (ours[0].__name__ if ours else None, others)
    assert _documented_tree() == real


def _site_tools_missing() -> list[str]:
    return [
        m for m in ("mkdocs", "material", "mkdocstrings") if importlib.util.find_spec(m) is None
    ]


def test_the_site_builds_without_warnings(tmp_path: Path) -> None:
    missing = _site_tools_missing()
    if missing and os.environ.get("CI"):
        pytest.fail(f"CI must build the docs site, but {', '.join(missing)} is not installed")
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (the dev group has them); CI builds it")
    site = tmp_path / "site"
    result = subprocess.run(  # noqa: S603 - our own interpreter and arguments
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    reference = (site / "rules-reference" / "index.html").read_text(encoding="utf-8")
    assert "Dagen sinds levering" in reference
    api = (site / "api" / "workflow" / "index.html").read_text(encoding="utf-8")
    assert 'id="retouraanvraag.workflow.Desk.requests_tab"' in api
    ports = (site / "api" / "ports" / "index.html").read_text(encoding="utf-8")
    assert 'href="../errors/#retouraanvraag.errors.PortUnavailable"' in ports  # a docstring role
    index = (site / "index.html").read_text(encoding="utf-8")
    assert "run_until_idle" in index  # the README's five minutes, included


def test_readme_opens_with_the_two_commands() -> None:
    head = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()[:6]
    assert any(line.startswith("make demo") for line in head)
    assert any(line.startswith("make test") for line in head)
