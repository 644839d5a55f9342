"""The ``retouraanvraag`` command line: rules, triage, the request JSON form, help and version."""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import io
import json
import re
import runpy
import subprocess
import sys
from pathlib import Path

import attrs
import pytest
from hypothesis import given

import retouraanvraag
from retouraanvraag.cli import main
from retouraanvraag.errors import InvalidInput
from retouraanvraag.jsonformat import request_from_json, request_to_json
from retouraanvraag.model import Customer, Money, ReturnItem, ReturnRequest

from .strategies import requests

ROOT = Path(__file__).resolve().parent.parent

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
    assert out.endswith("ok.rules: 1 regel, geen waarschuwingen, geen fouten\n")
    assert err == ""


def test_check_prints_diagnostics_like_a_compiler_and_exits_one(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.rules", BAD)
    code, out, err = run("rules", "check", path)
    assert code == 1
    assert out == ""
    assert err.splitlines() == [
        f'{path}:1:5: fout[R008]: onbekend veld "Van lnd"',
        "    ALS Van lnd IS Nederland",
        "        ^",
        '    bedoelde u "Van land"?',
        f"{path}:3:23: fout[R001]: onverwacht einde van de regel",
        "    ALS Van land IS NL DAN",
        "                          ^",
        "    verwacht een actie",
        f"{path}: 2 fouten",
    ]


def test_check_shows_warnings_but_exits_zero(tmp_path: Path) -> None:
    text = (
        "ALS Van land IS NL DAN Goedkeuren met label\n"
        'ALS Van land IS NL DAN Afwijzen met reden "x"\n'
    )
    code, out, err = run("rules", "check", write(tmp_path, "w.rules", text))
    assert code == 0
    assert "waarschuwing[R028]: deze regel wordt altijd overschreven door regel 2" in err
    assert "1 waarschuwing, geen fouten" in out


def test_check_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    code, _, err = run("rules", "check", str(tmp_path / "nope.rules"))
    assert code == 2
    assert "cannot read" in err


def test_bad_time_zone_is_reported(tmp_path: Path) -> None:
    path = write(tmp_path, "ok.rules", GOOD)
    code, _, err = run("rules", "check", path, "--timezone", "Nowhere/Land")
    assert code == 2
    assert "unknown IANA time zone" in err  # one check for every zone (shop.time_zone)


def test_an_unreadable_rule_file_is_a_usage_error(tmp_path: Path) -> None:
    code, _, err = run("rules", "check", str(tmp_path))  # a directory
    assert code == 2
    assert "cannot read" in err


def test_a_windows_1252_file_loads_with_a_warning_at_its_first_such_byte(tmp_path: Path) -> None:
    # It exited 2 with Python's English UnicodeDecodeError and a byte offset.
    path = tmp_path / "kladblok.rules"
    text = (
        "ALS Van land IS Nederland DAN Goedkeuren met label\n"
        "ALS Van land IS België DAN Retouraanvraag uitschakelen\n"
    )
    path.write_bytes(text.encode("cp1252"))
    code, out, err = run("rules", "check", str(path))
    assert code == 0
    assert err.splitlines()[:2] == [
        (
            f"{path}:2:22: waarschuwing[R036]: het bestand is niet in UTF-8 opgeslagen; het is"
            " gelezen als Windows-1252"
        ),
        "    ALS Van land IS België DAN Retouraanvraag uitschakelen",
    ]
    assert out.endswith("2 regels, 1 waarschuwing, geen fouten\n")


def test_a_file_that_is_no_text_at_all_says_save_as_utf8_in_its_language(tmp_path: Path) -> None:
    path = tmp_path / "binary.rules"
    path.write_bytes(b"IF From country IS NL\nTHEN Skip review \x81\x8d\n")
    code, _, err = run("rules", "check", str(path))
    assert code == 1
    lines = err.splitlines()
    assert lines[0] == (
        f"{path}:2:18: error[R035]: the file is not saved as UTF-8 and cannot be read as"
        " Windows-1252 either"
    )
    assert lines[-2:] == ["    save the file as UTF-8", f"{path}: 1 error"]


def test_a_utf8_bom_and_crlf_line_ends_are_read_as_the_editor_shows_them(tmp_path: Path) -> None:
    path = tmp_path / "bom.rules"
    path.write_bytes(b"\xef\xbb\xbfALS Van lnd IS NL\r\nDAN Goedkeuren met label\r\n")
    code, _, err = run("rules", "check", str(path))
    assert code == 1
    assert err.splitlines()[:3] == [
        f'{path}:1:5: fout[R008]: onbekend veld "Van lnd"',
        "    ALS Van lnd IS NL",
        "        ^",
    ]
    clean = tmp_path / "clean.rules"
    clean.write_bytes(b"\xef\xbb\xbfALS Van land IS NL\r\nDAN Goedkeuren met label\r\n")
    assert run("rules", "check", str(clean))[0] == 0
    code, _, err = run("rules", "fmt", str(clean), "--check")
    assert code == 1  # fmt writes it without the mark and with \n
    canonical = tmp_path / "canonical.rules"
    canonical.write_bytes(run("rules", "fmt", str(clean))[1].encode("utf-8"))
    assert run("rules", "fmt", str(canonical), "--check")[0] == 0


def test_the_summary_line_is_in_an_english_files_language(tmp_path: Path) -> None:
    bad = write(
        tmp_path, "bad.rules", "IF From contry IS NL THEN Skip review\nIF Quantity > 1 THEN\n"
    )
    code, _, err = run("rules", "check", bad)
    assert code == 1
    assert err.splitlines()[-1] == f"{bad}: 2 errors"
    assert "error[R008]: unknown field" in err
    good = write(tmp_path, "good.rules", "IF From country IS NL THEN Skip review\n")
    assert run("rules", "check", good)[1].endswith(": 1 rule, no warnings, no errors\n")


def test_a_warning_in_the_summary_of_a_failing_file(tmp_path: Path) -> None:
    text = (
        "ALS Bestelwaarde > 10 USD DAN Goedkeuren met label\n"
        "ALS Van lnd IS NL DAN Goedkeuren met label\n"
    )
    code, _, err = run("rules", "check", write(tmp_path, "mixed.rules", text))
    assert code == 1
    assert err.splitlines()[-1].endswith(": 1 fout, 1 waarschuwing")


def test_the_currency_option_is_the_shops_currency(tmp_path: Path) -> None:
    path = write(tmp_path, "usd.rules", "ALS Bestelwaarde > 10 USD DAN Goedkeuren met label\n")
    code, out, err = run("rules", "check", path)
    assert code == 0
    assert "waarschuwing[R039]" in err
    code, out, err = run("rules", "check", path, "--currency", "USD")
    assert (code, err) == (0, "")
    assert "geen waarschuwingen" in out


def test_explain_code_prints_the_explanation_with_an_example() -> None:
    code, out, err = run("rules", "explain-code", "R012")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == "R012 (unknown-choice, fout)"
    assert "Bijvoorbeeld:" in lines
    assert "    ALS Kanaal IS winkel DAN Goedkeuren met label" in lines
    code, out, _ = run("rules", "explain-code", "unknown-field", "--lang", "en")
    assert code == 0
    assert out.startswith("R008 (unknown-field, error)\n")
    assert "    IF From contry IS NL THEN Approve with label" in out.splitlines()
    assert run("rules", "explain-code", "r8")[1].startswith("R008 ")


def test_explain_code_of_an_unknown_code_is_a_usage_error() -> None:
    code, out, err = run("rules", "explain-code", "R999")
    assert code == 2
    assert out == ""
    assert "R001 to R0" in err


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
    return write(tmp_path, "request.json", json.dumps(request_to_json(request)))


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
    assert "geen fouten" in result.stdout


# -- the public request JSON form (retouraanvraag.jsonformat) -----------------------------------


def _plain_request(**changes: object) -> dict[str, object]:
    """A request as a shop's order system writes it: labels, names and amounts as text."""
    data: dict[str, object] = {
        "shop_id": "my-shop",
        "id": "r-1001",
        "order_number": "1001",
        "customer": {"email": "jan@example.nl", "name": "Jan Jansen", "language": "en"},
        "from_country": "Nederland",
        "order_value": "€59,95",
        "items": [
            {
                "sku": "TS-M",
                "name": "T-shirt",
                "quantity": 2,
                "unit_price": "€19,95",
                "reason": "Te klein",
            },
            {
                "sku": "LMP-1",
                "name": "Lamp",
                "quantity": 1,
                "unit_price": {"amount": 2000, "currency": "EUR"},
                "reason": "other",
                "reason_text": "Past niet bij de bank",
            },
        ],
        "created_at": "2026-11-26T10:00:00+01:00",
        "delivered_at": "2026-11-23T14:05:00Z",
        "tags": ["vip"],
        "return_fee": {"amount": "€4,95", "payment_reference": "pay_123"},
    }
    data.update(changes)
    return data


def test_the_json_form_reads_what_a_shop_writes() -> None:
    request = request_from_json(_plain_request())
    assert request.from_country == "NL"
    assert request.customer.language.value == "en"
    assert request.order_value == Money(5995)
    assert [i.reason for i in request.items] == ["too_small", "other"]
    assert request.items[1].unit_price == Money(2000)
    assert request.return_fee is not None
    assert request.return_fee.amount == Money(495)
    assert request.created_at == dt.datetime(2026, 11, 26, 9, 0, tzinfo=dt.UTC)
    assert request.delivered_at == dt.datetime(2026, 11, 23, 14, 5, tzinfo=dt.UTC)
    assert request.tags == frozenset({"vip"})
    assert request.status.value == "requested"
    assert (request.history, request.version) == ((), 0)


def test_the_json_form_fills_in_what_it_may_leave_out() -> None:
    data = _plain_request()
    for optional in ("created_at", "delivered_at", "tags", "return_fee"):
        del data[optional]
    data["customer"] = {"email": "jan@example.nl", "name": "Jan Jansen"}
    now = dt.datetime(2026, 11, 26, tzinfo=dt.UTC)
    request = request_from_json(data, now=now)
    assert request.created_at == now
    assert request.customer.language.value == "nl"
    assert (request.delivered_at, request.return_fee, request.tags) == (None, None, frozenset())
    assert request.refund_method.value == "money_back"
    assert request.channel.value == "portal"


@given(requests())
def test_the_json_form_round_trips_every_request(request: ReturnRequest) -> None:
    text = json.dumps(request_to_json(request))
    assert request_from_json(json.loads(text)) == attrs.evolve(request, history=())


def _item(**changes: object) -> list[dict[str, object]]:
    item: dict[str, object] = {
        "sku": "TS-M",
        "name": "T-shirt",
        "quantity": 1,
        "unit_price": "€19,95",
        "reason": "too_small",
    }
    item.update(changes)
    return [item]


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"shop_id": None}, "shop_id", "must be text, not null"),
        ({"delivred_at": "2026-11-23T14:05:00Z"}, "delivred_at", "did you mean 'delivered_at'?"),
        ({"items": _item(unit_price=19.95)}, "items[0].unit_price", "not a number"),
        ({"items": _item(quantity="2")}, "items[0].quantity", "must be a whole number, not text"),
        ({"items": _item(quantity=True)}, "items[0].quantity", "not a boolean"),
        ({"items": _item(quantity=0)}, "items[0].quantity", "between 1 and 10000"),
        ({"items": _item(reason="Te kleine")}, "items[0].reason", "did you mean 'Te klein'?"),
        ({"items": _item(sku="")}, "items[0].sku", "must not be empty"),
        ({"items": _item(reason_text=3)}, "items[0].reason_text", "must be text"),
        ({"items": _item(colour="red")}, "items[0].colour", "is not a field of this object"),
        ({"items": _item(unit_price="$5")}, "items[0].unit_price", "USD"),
        ({"items": []}, "items", "at least one item"),
        ({"items": {"sku": "x"}}, "items", "must be a list of items, not an object"),
        ({"customer": ["jan"]}, "customer", "must be an object, not a list"),
        ({"customer": {"email": "jan@", "name": "Jan Jansen"}}, "customer.email", "not a valid"),
        ({"customer": {"email": "jan@example.nl"}}, "customer.name", "is required"),
        (
            {"customer": {"email": "j@x.nl", "name": "J", "language": "de"}},
            "customer.language",
            "must be one of 'nl', 'en'",
        ),
        ({"from_country": "Nederlnd"}, "from_country", "did you mean"),
        ({"order_value": {"amount": 5995, "currency": "XYZ"}}, "order_value.currency", "XYZ"),
        ({"order_value": {"amount": "59.95"}}, "order_value.amount", "whole number of minor"),
        ({"order_value": {"amount": -1}}, "order_value.amount", "must not be negative"),
        ({"order_value": {"value": 1}}, "order_value.value", "is not a field"),
        ({"delivered_at": "2026-11-23T14:05:00"}, "delivered_at", "has no time zone"),
        ({"delivered_at": "gisteren"}, "delivered_at", "is not an ISO 8601 date and time"),
        ({"delivered_at": "0001-01-01T00:00:00+00:00"}, "delivered_at", "must lie between"),
        ({"tags": "sale"}, "tags", "must be a list of texts, not text"),
        ({"tags": ["sale", 1]}, "tags[1]", "must be text, not a number"),
        ({"channel": "shop"}, "channel", "must be one of 'portal', 'api'"),
        ({"refund_method": "cash"}, "refund_method", "must be one of"),
        ({"return_fee": {"amount": "€4,95"}}, "return_fee.payment_reference", "is required"),
        ({"return_fee": {"amount": "$4", "payment_reference": "p"}}, "return_fee", "USD"),
        (
            {"return_fee": {"amount": "€4,95", "payment_reference": " "}},
            "return_fee.payment_reference",
            "must not be empty",
        ),
    ],
)
def test_every_bad_field_is_named_by_its_path(
    changes: dict[str, object], field: str, words: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        request_from_json(_plain_request(**changes))
    assert caught.value.field == field
    assert words in str(caught.value)
    assert "jan@" not in str(caught.value)
    assert "Jansen" not in str(caught.value)


def test_a_missing_field_and_a_non_object_are_named() -> None:
    data = _plain_request()
    del data["order_number"]
    with pytest.raises(InvalidInput, match=r"^order_number: is required$"):
        request_from_json(data)
    with pytest.raises(InvalidInput, match=r"^must be an object, not a list$"):
        request_from_json([data])


def _cli_page_json_blocks() -> list[str]:
    text = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    return re.findall(r"^```json\n(.*?)^```", text, flags=re.DOTALL | re.MULTILINE)


def test_the_request_examples_in_the_cli_reference_are_valid_requests() -> None:
    blocks = [b for b in _cli_page_json_blocks() if '"order_number"' in b]
    assert blocks
    for block in blocks:
        lines = block.splitlines() if block.lstrip().startswith('{"') else [block]
        for line in lines:
            assert request_from_json(json.loads(line)).items


# -- rules explain and triage on the JSON form -----------------------------------------------


def test_explain_reads_the_public_json_form(tmp_path: Path) -> None:
    rules_path = write(tmp_path, "ok.rules", GOOD)
    request = write(tmp_path, "r.json", json.dumps(_plain_request()))
    code, out, err = run("rules", "explain", rules_path, request)
    assert (code, err) == (0, "")
    assert out.startswith("regel 1: geldt → Retouraanvraag uitschakelen\n")


def test_explain_names_the_file_and_the_problem_on_one_line(tmp_path: Path) -> None:
    rules_path = write(tmp_path, "ok.rules", GOOD)
    broken = write(tmp_path, "broken.json", '{"shop_id": "s",\n "id": }')
    code, out, err = run("rules", "explain", rules_path, broken)
    assert (code, out) == (2, "")
    assert err == f"{broken}:2: not JSON: Expecting value (column 8)\n"
    bad = write(tmp_path, "bad.json", json.dumps(_plain_request(from_country="Atlantis")))
    code, _, err = run("rules", "explain", rules_path, bad)
    assert code == 2
    assert err == f"{bad}: not a valid return request: from_country: unknown country 'Atlantis'\n"
    missing = tmp_path / "missing.json"
    code, _, err = run("rules", "explain", rules_path, str(missing))
    assert (code, err.startswith(f"{missing}: cannot read: ")) == (2, True)
    latin = tmp_path / "latin.json"
    latin.write_bytes(b'{"id": "\xe9"}')
    assert run("rules", "explain", rules_path, str(latin))[2] == (
        f"{latin}: not JSON (UnicodeDecodeError)\n"
    )


TRIAGE_RULES = """\
ALS Van land IS Nederland
DAN Goedkeuren met label
REGEL "Buitenland": ALS Van land IS NIET Nederland
DAN Afwijzen met reden "Alleen retouren uit Nederland"
ALS SKU BEGINT MET "GC-" DAN Artikel niet retourneerbaar
"""


def _requests_file(tmp_path: Path, *lines: str) -> str:
    return write(tmp_path, "requests.jsonl", "".join(f"{line}\n" for line in lines))


def _line(**changes: object) -> str:
    return json.dumps(_plain_request(**changes), ensure_ascii=False)


def test_triage_writes_one_outcome_per_request_and_a_table_per_rule(tmp_path: Path) -> None:
    rules_path = write(tmp_path, "r.rules", TRIAGE_RULES)
    source = _requests_file(
        tmp_path,
        _line(id="r-1"),
        _line(id="r-2", from_country="BE"),
        "",
        _line(id="r-3", items=_item(sku="GC-25", reason="Bedacht")),
        _line(id="r-4"),
    )
    code, out, err = run("triage", rules_path, source)
    assert code == 0
    outcomes = [json.loads(line) for line in out.splitlines()]
    assert [(o["line"], o["id"], o["decision"], o["rule"]) for o in outcomes] == [
        (1, "r-1", "approve_with_label", "regel 1"),
        (2, "r-2", "reject", "Buitenland"),
        (4, "r-3", "not_returnable", "regel 3"),
        (5, "r-4", "approve_with_label", "regel 1"),
    ]
    assert outcomes[1]["reason"] == "Alleen retouren uit Nederland"
    assert outcomes[2]["refused"] == [
        {"item": 0, "message": "This item cannot be returned."}  # the customer's language
    ]
    assert set(outcomes[0]) == {
        "line",
        "id",
        "decision",
        "rule",
        "reason",
        "refund_return_fee",
        "return_fee",
        "carrier",
        "refused",
    }
    # with the outcomes on stdout, the table goes to stderr
    assert [line.split() for line in err.splitlines()] == [
        ["decisions", "per", "rule", "(4", "requests)"],
        ["rule", "decision", "requests"],
        ["regel", "1", "approve_with_label", "2"],
        ["Buitenland", "reject", "1"],
        ["regel", "3", "not_returnable", "1"],
    ]


def test_triage_with_out_writes_the_file_and_prints_the_table(tmp_path: Path) -> None:
    rules_path = write(tmp_path, "r.rules", TRIAGE_RULES)
    source = _requests_file(tmp_path, _line(id="r-1"), _line(id="r-2", from_country="NL"))
    target = tmp_path / "outcomes.jsonl"
    code, out, err = run("triage", rules_path, source, "--out", str(target), "--trace")
    assert (code, err) == (0, "")
    assert out.splitlines()[0] == "decisions per rule (2 requests)"
    outcomes = [json.loads(line) for line in target.read_text(encoding="utf-8").splitlines()]
    assert [o["trace"] for o in outcomes] == [["regel 1: Goedkeuren met label"]] * 2


def test_triage_reports_each_bad_line_and_goes_on(tmp_path: Path) -> None:
    rules_path = write(tmp_path, "r.rules", TRIAGE_RULES)
    source = _requests_file(
        tmp_path,
        _line(id="r-1"),
        '{"shop_id": ',
        _line(id="r-3", items=_item(unit_price=19.95)),
        "[1, 2]",
        _line(id="r-5"),
    )
    with Path(source).open("ab") as file:
        file.write(b'{"id": "\xff"}\n')
    code, out, err = run("triage", rules_path, source)
    assert code == 1
    outcomes = [json.loads(line) for line in out.splitlines()]
    assert [o.get("error") for o in outcomes] == [
        None,
        "not JSON: Expecting value (column 13)",
        (
            'not a valid return request: items[0].unit_price: must be text ("€4,95") or'
            ' {"amount": 495, "currency": "EUR"}, not a number'
        ),
        "not a valid return request: must be an object, not a list",
        None,
        "not JSON: not UTF-8 text, or nested too deeply",
    ]
    assert outcomes[2]["id"] == "r-3"
    problems = [line for line in err.splitlines() if line.startswith(source)]
    assert [p.split(":")[1] for p in problems] == ["2", "3", "4", "6"]
    assert err.splitlines()[-1].split() == ["(not", "read)", "error", "4"]
    assert "jan@example.nl" not in err


def test_triage_undecided_items_take_the_default(tmp_path: Path) -> None:
    rules_path = write(
        tmp_path, "r.rules", 'ALS Van land IS Duitsland DAN Afwijzen met reden "Nee"\n'
    )
    source = _requests_file(tmp_path, _line(id="r-1"))
    for default in ("review", "approve_with_label"):
        code, out, _ = run("triage", rules_path, source, "--default", default)
        assert code == 0
        outcome = json.loads(out)
        assert (outcome["decision"], outcome["rule"]) == (default, None)
    _, _, err = run("triage", rules_path, source)
    assert err.splitlines()[-1].split() == ["(no", "rule:", "the", "default)", "review", "1"]


def test_triage_input_errors_are_one_line(tmp_path: Path) -> None:
    rules_path = write(tmp_path, "r.rules", TRIAGE_RULES)
    missing = tmp_path / "missing.jsonl"
    code, out, err = run("triage", rules_path, str(missing))
    assert (code, out) == (2, "")
    assert err.startswith(f"retouraanvraag triage: {missing}: cannot read: ")
    assert len(err.splitlines()) == 1
    source = _requests_file(tmp_path, _line())
    code, _, err = run("triage", rules_path, source, "--out", str(tmp_path))
    assert code == 2
    assert f"{tmp_path}: cannot write: " in err
    assert len(err.splitlines()) == 1
    code, _, err = run("triage", write(tmp_path, "bad.rules", BAD), source)
    assert code == 1
    assert "fout[R008]" in err


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_triage_on_a_terminal_shows_a_progress_bar_and_a_drawn_table(tmp_path: Path) -> None:
    rules_path = write(tmp_path, "r.rules", TRIAGE_RULES)
    source = _requests_file(tmp_path, *(_line(id=f"r-{i}") for i in range(20)))
    out, err = io.StringIO(), _Terminal()
    assert main(["triage", rules_path, source], out=out, err=err) == 0
    assert len(out.getvalue().splitlines()) == 20
    shown = err.getvalue()
    assert "triage" in shown
    assert "20/20" in shown
    assert "approve_with_label" in shown
    assert "│" in shown


# -- every command: --help with examples, --version, one-line usage errors ----------------------

COMMANDS = [
    ("requests",),
    ("db",),
    ("rules",),
    ("requests", "list"),
    ("requests", "show"),
    ("requests", "approve"),
    ("requests", "reject"),
    ("requests", "cancel"),
    ("requests", "receive"),
    ("requests", "complete"),
    ("triage",),
    ("dispatch",),
    ("db", "migrate"),
    ("rules", "check"),
    ("rules", "explain"),
    ("rules", "fmt"),
    ("rules", "explain-code"),
    (),
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "retouraanvraag")
def test_every_command_has_help_with_examples(command: tuple[str, ...]) -> None:
    code, out, err = run(*command, "--help")
    assert (code, err) == (0, "")
    assert out.startswith(f"usage: retouraanvraag {' '.join(command)}".rstrip())
    examples = out[out.index("examples:\n") :].splitlines()[1:]
    assert examples
    assert all(line.startswith("  ") or not line for line in examples)
    assert any(line.strip().startswith("retouraanvraag ") for line in examples)


def test_version_is_the_packages_one_version() -> None:
    code, out, _ = run("--version")
    assert code == 0
    assert out == f"retouraanvraag {retouraanvraag.__version__}\n"
    assert importlib.metadata.version("retouraanvraag") == retouraanvraag.__version__


def test_python_dash_m_retouraanvraag_is_the_command(tmp_path: Path) -> None:
    result = subprocess.run(  # noqa: S603 - our own interpreter and module
        [
            sys.executable,
            "-m",
            "retouraanvraag",
            "rules",
            "check",
            write(tmp_path, "ok.rules", GOOD),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.endswith("1 regel, geen waarschuwingen, geen fouten\n")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("requests",), "retouraanvraag requests: the following arguments are required: ACTION"),
        (("requests", "approve", "ID", "--db", "x", "--shop", "s"), "required: --actor"),
        (("triage", "r.rules"), "the following arguments are required: REQUESTS.jsonl"),
        (("dispatch", "--db", "x", "--poll", "0"), "--poll: must be a number above 0"),
        (("frobnicate",), "invalid choice: 'frobnicate'"),
    ],
)
def test_usage_errors_are_one_line_pointing_at_help(argv: tuple[str, ...], message: str) -> None:
    code, out, err = run(*argv)
    assert (code, out) == (2, "")
    assert len(err.splitlines()) == 1
    assert message in err
    assert err.rstrip().endswith("--help`)")


def test_the_package_runs_as_a_module_in_process(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "argv", ["retouraanvraag", "--version"])
    with pytest.raises(SystemExit) as exited:
        runpy.run_module("retouraanvraag", run_name="__main__")
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"retouraanvraag {retouraanvraag.__version__}\n"
