"""The package a stranger installs: the wheel of this tree, in a fresh virtual environment.

The wheel is built with pip (its build backend, hatchling, comes from the package index),
installed with its ``cli`` and ``testing`` extras into a new environment in a temporary folder
outside the repository, and used from there as a stranger would: the README's five-minute
example, the command line, the contract suites. It takes a minute or so, most of it pip
fetching the dependencies; it is one test.
"""

from __future__ import annotations

import email.parser
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import retouraanvraag

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "src" / "retouraanvraag"
README = ROOT / "README.md"
TIMEOUT = 900  # seconds: a slow package index, never a measure of speed

#: What the README's project page may link to: absolute addresses and its own headings.
RELATIVE_LINK = re.compile(r"\]\((?!https?://|mailto:|#)([^)]*)\)")


def _five_minutes() -> str:
    section = README.read_text(encoding="utf-8").split("## Five minutes", 1)[1]
    fence = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)
    (code,) = [str(c) for c in fence.findall(section.split("\n## ", 1)[0])]
    return code


def _environment() -> dict[str, str]:
    """This process's environment without what would point Python back at the repository."""
    drop = {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "COVERAGE_PROCESS_START"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PIP_NO_INPUT"] = "1"
    return env


def _run(*argv: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(  # noqa: S603 - our own interpreters and tools
        [str(a) for a in argv],
        cwd=cwd,
        env=_environment(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, f"{argv}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def _check_contents(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        (metadata_name,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        metadata = email.parser.Parser().parsestr(archive.read(metadata_name).decode())
    data = {
        f"retouraanvraag/{p.relative_to(PACKAGE).as_posix()}"
        for p in PACKAGE.rglob("*")
        if p.is_file() and p.suffix not in {".py", ".pyc"} and "__pycache__" not in p.parts
    }
    assert {
        "retouraanvraag/py.typed",
        "retouraanvraag/rules/grammar.lark",
        "retouraanvraag/__main__.py",
        "retouraanvraag/jsonformat.py",
    } <= names
    templates = {n for n in data if n.startswith("retouraanvraag/mail/templates/")}
    assert len(templates) >= 2 * 5 * 3  # nl and en, five kinds, subject + text + html
    assert data <= names, sorted(data - names)
    assert not any(n.startswith(("tests/", "docs/", "benchmarks/")) for n in names)
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)

    assert metadata["Version"] == retouraanvraag.__version__
    assert metadata["License-Expression"] == "MIT"
    assert metadata["Requires-Python"] == ">=3.11"
    extras = set(metadata.get_all("Provides-Extra") or ())
    assert extras == {"cli", "testing", "postgres"}  # the dev tools are dependency groups
    requires = metadata.get_all("Requires-Dist") or []
    assert any(r.startswith("tzdata") for r in requires)
    for extra, package in (("cli", "rich"), ("testing", "pytest"), ("testing", "hypothesis")):
        marker = re.compile(rf"^{package}\b.*; extra == [\"']{extra}[\"']$")
        assert any(marker.match(r) for r in requires), (package, requires)
    classifiers = set(metadata.get_all("Classifier") or ())
    assert "Development Status :: 3 - Alpha" in classifiers
    assert {f"Programming Language :: Python :: 3.{minor}" for minor in (11, 12, 13)} <= classifiers
    description = metadata.get_payload()
    assert isinstance(description, str)
    assert "pip install retouraanvraag" in description
    assert RELATIVE_LINK.findall(description) == []


def test_a_stranger_installs_the_wheel_and_it_works(tmp_path: Path) -> None:
    dist, work = tmp_path / "dist", tmp_path / "work"
    work.mkdir()
    _run(
        sys.executable, "-m", "pip", "wheel", ROOT, "--no-deps", "--quiet", "-w", dist, cwd=tmp_path
    )
    (wheel,) = dist.glob("retouraanvraag-*.whl")
    _check_contents(wheel)

    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", venv, cwd=tmp_path)
    python, command = venv / "bin" / "python", venv / "bin" / "retouraanvraag"
    _run(python, "-m", "pip", "install", "--quiet", f"{wheel}[cli,testing]", cwd=work)

    where = _run(python, "-c", "import retouraanvraag; print(retouraanvraag.__file__)", cwd=work)
    installed = Path(where.stdout.strip())
    assert installed.is_relative_to(venv)
    assert not installed.is_relative_to(ROOT)

    example = work / "five_minutes.py"
    example.write_text(_five_minutes(), encoding="utf-8")
    _run(python, example, cwd=work)

    version = _run(command, "--version", cwd=work)
    assert version.stdout == f"retouraanvraag {retouraanvraag.__version__}\n"
    rules = work / "retourregels.txt"
    rules.write_text(
        'ALS Van land IS NIET Nederland DAN Afwijzen met reden "Alleen uit Nederland"\n',
        encoding="utf-8",
    )
    checked = _run(command, "rules", "check", rules, cwd=work)
    assert checked.stdout == f"{rules}: 1 regel, geen waarschuwingen, geen fouten\n"
    _run(python, "-m", "retouraanvraag", "db", "migrate", "--db", work / "r.sqlite3", cwd=work)
    _run(
        python,
        "-c",
        "import rich; from retouraanvraag.testing import StorageContract; print(StorageContract)",
        cwd=work,
    )


def test_the_readme_has_no_link_that_breaks_on_the_package_index() -> None:
    # The only relative links are the screenshots, which the package's description turns
    # into text (pyproject.toml, fancy-pypi-readme); the wheel test reads what it became.
    text = README.read_text(encoding="utf-8")
    relative = RELATIVE_LINK.findall(text)
    assert all(link.startswith("docs/screenshots/") for link in relative), relative
    assert all((ROOT / link).is_file() for link in relative)
    screenshots = re.findall(r"!\[[^\]]*\]\(([^)]*)\)", text)
    assert sorted(screenshots) == sorted(relative)
    assert "pip install retouraanvraag" in text
