"""The ``retouraanvraag`` command line: rules check, explain and fmt."""

from __future__ import annotations

import datetime as dt
import io
import subprocess
import sys
from pathlib import Path

from retouraanvraag._codec import request_to_json
from retouraanvraag.cli import main
from retouraanvraag.model import Customer, Money, ReturnItem, ReturnRequest

GOOD = "ALS Van land is Nederland\nDAN Retouraanvraag uitschakelen\n"
BAD = "ALS Van lnd IS Nederland\nDAN Retouraanvraag uitschakelen\nALS Van land IS NL DAN\n"


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_check_clean_file_exits_zero(tmp_path: Path) -> None:
    code, out, err = run("rules", "check", write(tmp_path, "ok.rules", GOOD))
    assert code == 0
    assert out.endswith("ok.rules: 1 rule(s), 0 warning(s), no errors\n")
    assert err == ""


def test_check_prints_diagnostics_like_a_compiler_and_exits_one(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.rules", BAD)
    code, out, err = run("rules", "check", path)
    assert code == 1
    assert out == ""
    assert err.splitlines() == [
        f'{path}:1:5: error: onbekend veld "Van lnd"',
        "    ALS Van lnd IS Nederland",
        "        ^",
        '    bedoelde u "Van land"?',
        f"{path}:3:23: error: onverwacht einde van de regel",
        "    ALS Van land IS NL DAN",
        "                          ^",
        "    verwacht een actie",
        f"{path}: 2 error(s)",
    ]


def test_check_shows_warnings_but_exits_zero(tmp_path: Path) -> None:
    text = (
        "ALS Van land IS NL DAN Goedkeuren met label\n"
        'ALS Van land IS NL DAN Afwijzen met reden "x"\n'
    )
    code, out, err = run("rules", "check", write(tmp_path, "w.rules", text))
    assert code == 0
    assert "warning: deze regel wordt altijd overschreven door regel 2" in err
    assert "1 warning(s)" in out


def test_check_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    code, _, err = run("rules", "check", str(tmp_path / "nope.rules"))
    assert code == 2
    assert "cannot read" in err


def test_bad_time_zone_is_reported(tmp_path: Path) -> None:
    path = write(tmp_path, "ok.rules", GOOD)
    code, _, err = run("rules", "check", path, "--timezone", "Nowhere/Land")
    assert code == 2
    assert "unknown time zone" in err


def test_an_unreadable_rule_file_is_a_usage_error(tmp_path: Path) -> None:
    assert run("rules", "check", str(tmp_path))[0] == 2  # a directory
    latin1 = tmp_path / "latin1.rules"
    latin1.write_bytes("ALS Van land IS België DAN Retouraanvraag uitschakelen".encode("latin-1"))
    code, _, err = run("rules", "check", str(latin1))
    assert code == 2
    assert "cannot read" in err


def test_usage_errors_exit_two() -> None:
    assert run()[0] == 2
    assert run("rules", "frobnicate")[0] == 2


def _request_json(tmp_path: Path, country: str = "NL") -> str:
    request = ReturnRequest(
        shop_id="shop",
        id="r1",
        order_number="1001",
        customer=Customer(email="k@example.com", name="Klant"),
        from_country=country,
        order_value=Money(5000),
        items=(ReturnItem("S1", "Shirt", 1, Money(1000), "too_small"),),
        created_at=dt.datetime(2024, 6, 1, tzinfo=dt.UTC),
    )
    return write(tmp_path, "request.json", request_to_json(request))


def test_explain_prints_the_report(tmp_path: Path) -> None:
    rules_path = write(tmp_path, "ok.rules", GOOD)
    code, out, _ = run("rules", "explain", rules_path, _request_json(tmp_path))
    assert code == 0
    assert out.splitlines()[:2] == [
        "regel 1: geldt → Retouraanvraag uitschakelen",
        "  Van land IS Nederland → waar (Van land = Nederland (NL))",
    ]
    code, out, _ = run(
        "rules", "explain", rules_path, _request_json(tmp_path, "BE"), "--lang", "en"
    )
    assert "rule 1: does not match → Skip review" in out


def test_explain_with_a_bad_request_is_a_usage_error(tmp_path: Path) -> None:
    rules_path = write(tmp_path, "ok.rules", GOOD)
    code, _, err = run("rules", "explain", rules_path, write(tmp_path, "r.json", "{}"))
    assert code == 2
    assert "not a valid return request" in err
    code, _, _ = run("rules", "explain", rules_path, str(tmp_path / "missing.json"))
    assert code == 2


def test_explain_with_bad_rules_exits_one(tmp_path: Path) -> None:
    code, _, _ = run("rules", "explain", write(tmp_path, "bad.rules", BAD), _request_json(tmp_path))
    assert code == 1


def test_fmt_prints_canonical_text_and_translates(tmp_path: Path) -> None:
    path = write(tmp_path, "ok.rules", "als van land is nederland dan retouraanvraag uitschakelen")
    code, out, _ = run("rules", "fmt", path)
    assert code == 0
    assert out == "ALS Van land IS Nederland\nDAN Retouraanvraag uitschakelen\n"
    code, out, _ = run("rules", "fmt", path, "--lang", "en")
    assert out == "IF From country IS Netherlands\nTHEN Skip review\n"


def test_fmt_check_exits_one_when_not_canonical(tmp_path: Path) -> None:
    messy = write(tmp_path, "messy.rules", "als van land is nederland dan goedkeuren met label")
    code, _, err = run("rules", "fmt", messy, "--check")
    assert code == 1
    assert "not in canonical form" in err
    tidy = write(tmp_path, "tidy.rules", GOOD.replace("is", "IS"))
    assert run("rules", "fmt", tidy, "--check")[0] == 0


def test_entry_point_runs_as_a_module(tmp_path: Path) -> None:
    path = write(tmp_path, "ok.rules", GOOD)
    result = subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "retouraanvraag.cli", "rules", "check", path],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0
    assert "no errors" in result.stdout
