"""The command line on a store: requests, dispatch (once and as a worker) and db migrate."""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import os
import queue
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

import retouraanvraag
from retouraanvraag import cli
from retouraanvraag.adapters.postgres import PostgresStorage
from retouraanvraag.adapters.sqlite import SCHEMA_VERSION, SqliteStorage
from retouraanvraag.cli import main
from retouraanvraag.dispatcher import Dispatcher, DispatchReport
from retouraanvraag.model import Customer, Money, PaidFee
from retouraanvraag.ports import Commit, EffectState
from retouraanvraag.testing import FixedClock
from retouraanvraag.workflow import Desk, NewItem, NewRequest

NOW = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)
SHOP = "my-shop"
MAIL = ("--maildir", "--labels", "fake", "--payments", "fake")


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def fails(code: int, *argv: str) -> str:
    """Run a command that must fail with ``code``: one line on stderr, nothing on stdout."""
    got, out, err = run(*argv)
    assert (got, out) == (code, ""), err
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    return err


class Store:
    """A SQLite file with three requests of one shop (two Dutch, one Belgian)."""

    def __init__(self, tmp_path: Path) -> None:
        self.path = tmp_path / "returns.sqlite3"
        self.db = str(self.path)
        storage = SqliteStorage(self.path)
        clock = FixedClock(NOW)
        desk = Desk(storage, clock=clock)
        self.ids = []
        for i, country in enumerate(("Nederland", "België", "NL")):
            self.ids.append(desk.submit(self.new(str(1001 + i), country, fee=i != 1)).id)
            clock.advance(dt.timedelta(minutes=1))  # listings are oldest first
        storage.close()

    @staticmethod
    def new(order: str, country: str, *, fee: bool) -> NewRequest:
        return NewRequest(
            shop_id=SHOP,
            order_number=order,
            customer=Customer("jan@example.nl", "Jan Jansen", "nl"),
            from_country=country,
            order_value=Money.parse("€59,95"),
            items=(NewItem("TS-M", "T-shirt", 2, Money.parse("€19,95"), "Te klein"),),
            delivered_at=NOW - dt.timedelta(days=3),
            return_fee=PaidFee(Money.parse("€4,95"), f"pay_{order}") if fee else None,
        )

    def on(self, *argv: str) -> tuple[str, ...]:
        """``argv`` followed by this store's --db and --shop."""
        return (*argv, "--db", self.db, "--shop", SHOP)

    def dispatch(self, tmp_path: Path, *extra: str) -> tuple[str, ...]:
        maildir = str(tmp_path / "mail")
        return (
            "dispatch",
            "--db",
            self.db,
            "--maildir",
            maildir,
            "--labels",
            "fake",
            "--payments",
            "fake",
            "--sender",
            "retouren@my-shop.example",
            "--shop-name",
            "My Shop",
            *extra,
        )

    def outbox(self, request_id: str) -> dict[str, EffectState]:
        with SqliteStorage(self.path) as storage:
            return {e.key: e.state for e in storage.outbox(SHOP, request_id)}


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path)


def listing(store: Store, *argv: str) -> dict[str, Any]:
    code, out, err = run(*store.on("requests", "list", "--json", *argv))
    assert (code, err) == (0, ""), err
    data: dict[str, Any] = json.loads(out)
    return data


def ids(data: dict[str, Any]) -> list[str]:
    return [r["id"] for r in data["requests"]]


# -- requests list -----------------------------------------------------------------------------


def test_list_shows_the_requests_tab_as_a_table(store: Store) -> None:
    code, out, err = run(*store.on("requests", "list"))
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == f"requests tab, shop {SHOP}"
    assert lines[1].split() == [
        "id",
        "order",
        "status",
        "from",
        "created",
        "items",
        "value",
        "attention",
    ]
    assert [line.split()[0] for line in lines[2:]] == store.ids
    assert lines[2].split()[1:5] == ["1001", "requested", "NL", "2026-11-26"]
    assert Money.parse("€39,90").format("nl") in lines[2]  # two shirts
    assert "jan@example.nl" not in out
    assert "Jansen" not in out


def test_list_json_names_every_request_without_personal_data(store: Store) -> None:
    data = listing(store)
    assert data["tab"] == "requests"
    assert data["next_cursor"] is None
    first = data["requests"][0]
    assert first == {
        "id": store.ids[0],
        "order_number": "1001",
        "status": "requested",
        "from_country": "NL",
        "created_at": NOW.isoformat(),
        "items": 2,
        "return_value": {"amount": 3990, "currency": "EUR"},
        "needs_attention": False,
        "decided_by": None,
    }


def test_list_filters_by_a_rule_condition(store: Store) -> None:
    assert ids(listing(store, "--rule", "Van land IS Nederland")) == [store.ids[0], store.ids[2]]
    assert ids(listing(store, "--rule", "From country IS Belgium")) == [store.ids[1]]


def test_a_bad_rule_filter_is_one_line_with_the_hint(store: Store) -> None:
    err = fails(2, *store.on("requests", "list", "--rule", "Van lnd IS Nederland"))
    assert err == (
        'retouraanvraag requests list: --rule: column 1: onbekend veld "Van lnd"'
        ' (bedoelde u "Van land"?)\n'
    )


def test_list_pages_with_limit_and_cursor(store: Store) -> None:
    first = listing(store, "--limit", "2")
    assert ids(first) == store.ids[:2]
    assert first["next_cursor"]
    second = listing(store, "--limit", "2", "--cursor", first["next_cursor"])
    assert ids(second) == store.ids[2:]
    assert second["next_cursor"] is None
    code, out, _ = run(*store.on("requests", "list", "--limit", "2"))
    assert code == 0
    assert out.splitlines()[-1] == f"more: add --cursor {first['next_cursor']}"


def test_list_refuses_a_cursor_it_did_not_hand_out_and_a_bad_limit(store: Store) -> None:
    err = fails(2, *store.on("requests", "list", "--cursor", "nonsense"))
    assert "cursor: is not a cursor this store handed out" in err
    for limit in ("0", "501", "ten"):
        err = fails(2, *store.on("requests", "list", "--limit", limit))
        assert "--limit: must be a whole number from 1 to 500" in err
        assert "see `retouraanvraag requests list --help`" in err


def test_each_tab_lists_its_requests(store: Store) -> None:
    first, second, third = store.ids
    assert run(*store.on("requests", "approve", first, "--actor", "anna"))[0] == 0
    assert (
        run(*store.on("requests", "reject", second, "--actor", "anna", "--reason", "Nee"))[0] == 0
    )
    assert run(*store.on("requests", "approve", third, "--actor", "anna", "--no-label"))[0] == 0
    assert ids(listing(store, "--tab", "incoming")) == [first]
    assert ids(listing(store, "--tab", "history")) == [third]
    assert ids(listing(store)) == [second]
    assert ids(listing(store, "--rejected")) == [second]
    assert ids(listing(store, "--waiting")) == []
    assert ids(listing(store, "--tab", "attention")) == []
    assert ids(listing(store, "--tab", "incoming", "--rule", "Van land IS BE")) == []
    code, out, _ = run(*store.on("requests", "list", "--tab", "attention"))
    assert (code, out) == (0, "no requests in the attention tab\n")


def test_filters_that_a_tab_does_not_take_are_refused(store: Store) -> None:
    err = fails(2, *store.on("requests", "list", "--tab", "history", "--rule", "Van land IS NL"))
    assert "--rule filters the requests and incoming tabs only" in err
    err = fails(2, *store.on("requests", "list", "--tab", "incoming", "--rejected"))
    assert "--rejected and --waiting filter the requests tab only" in err
    fails(2, *store.on("requests", "list", "--rejected", "--waiting"))


def test_needing_attention_lists_a_request_whose_effect_failed_for_good(store: Store) -> None:
    with SqliteStorage(store.path) as storage:
        request = storage.get(SHOP, store.ids[0])
        flagged = request.with_attention("label: carrier refused")
        storage.commit(Commit(flagged, request.version))
    data = listing(store, "--tab", "attention")
    assert ids(data) == [store.ids[0]]
    assert data["requests"][0]["needs_attention"] is True
    code, out, _ = run(*store.on("requests", "list", "--tab", "attention"))
    assert code == 0
    assert out.splitlines()[2].rstrip().endswith("yes")


class Terminal(io.StringIO):
    """Output that says it is a terminal, as a shell's is."""

    def isatty(self) -> bool:
        return True


def test_on_a_terminal_the_table_is_drawn_by_rich_and_ids_stay_whole(store: Store) -> None:
    out = Terminal()
    assert main(list(store.on("requests", "list")), out=out, err=io.StringIO()) == 0
    text = out.getvalue()
    assert "┃" in text or "│" in text  # a box drawn by rich
    for request_id in store.ids:
        assert request_id in text


def test_without_rich_a_terminal_gets_plain_text(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "rich.console", None)
    out = Terminal()
    assert main(list(store.on("requests", "list")), out=out, err=io.StringIO()) == 0
    assert out.getvalue().splitlines()[1].split()[0] == "id"
    assert "│" not in out.getvalue()


# -- show and the decisions --------------------------------------------------------------------


def test_show_prints_the_request_its_history_and_its_outbox(store: Store) -> None:
    request_id = store.ids[0]
    assert (
        run(*store.on("requests", "approve", request_id, "--actor", "anna", "--refund-fee"))[0] == 0
    )
    code, out, err = run(*store.on("requests", "show", request_id))
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == f"request {request_id} (shop {SHOP}, version 2)"
    assert "  status      approved" in lines
    fee, nothing = Money.parse("€4,95").format("nl"), Money(0).format("nl")
    assert f"  return fee  {fee} paid (pay_1001), {nothing} refunded" in lines
    history = lines[lines.index("history") + 1 : lines.index("outbox")]
    assert [line.split()[2:4] for line in history] == [
        ["customer", "submit"],
        ["staff:anna", "approve_with_label"],
    ]
    assert history[1].endswith("requested -> approved")
    outbox = lines[lines.index("outbox") + 1 :]
    assert sorted(line.split()[0] for line in outbox) == sorted(store.outbox(request_id))
    assert all(line.endswith("pending") for line in outbox)


def test_show_json_has_the_history_with_actors_and_effects(store: Store, tmp_path: Path) -> None:
    request_id = store.ids[0]
    run(*store.on("requests", "approve", request_id, "--actor", "anna", "--refund-fee"))
    assert run(*store.dispatch(tmp_path))[0] == 0
    code, out, _ = run(*store.on("requests", "show", request_id, "--json"))
    assert code == 0
    data = json.loads(out)
    request = data["request"]
    assert request["id"] == request_id
    assert request["status"] == "approved"
    assert request["refunded"] == {"amount": 495, "currency": "EUR"}
    assert request["label"]["carrier"] == "FAKE"
    assert request["label"]["tracking_number"].startswith("FAKE")
    assert request["customer"]["email"] == "jan@example.nl"  # the merchant's own view
    assert request["items"][0]["reason"] == "too_small"
    history = data["history"]
    assert [(h["actor"], h["command"]) for h in history[:2]] == [
        ("customer", "submit"),
        ("staff:anna", "approve_with_label"),
    ]
    effects = {h["command"]: h for h in history[2:]}
    assert set(effects) == {"mail_sent", "refunded", "label_created"}
    assert all(h["actor"] == "system" and h["effect"] for h in history[2:])
    assert effects["refunded"]["note"].startswith("4.95 EUR FAKE-REFUND-")
    assert {e["state"] for e in data["outbox"]} == {"done"}
    assert {e["kind"] for e in data["outbox"]} == {"create_label", "refund", "mail"}


def test_the_lifecycle_from_the_terminal(store: Store) -> None:
    request_id = store.ids[0]
    steps = [
        (("approve", request_id, "--actor", "anna"), "approved"),
        (("receive", request_id, "--actor", "piet"), "received"),
        (("complete", request_id, "--actor", "piet"), "completed"),
    ]
    for argv, status in steps:
        code, out, err = run(*store.on("requests", *argv, "--json"))
        assert (code, err) == (0, "")
        data = json.loads(out)
        assert data["request"]["status"] == status
    assert data["pending_effects"] == [
        key for key, state in store.outbox(request_id).items() if state is EffectState.PENDING
    ]
    code, out, _ = run(*store.on("requests", "cancel", store.ids[1]))
    assert code == 0
    assert out.splitlines()[0] == f"{store.ids[1]}: cancelled"
    decided = json.loads(run(*store.on("requests", "show", store.ids[1], "--json"))[1])
    assert decided["history"][-1]["actor"] == "customer"


def test_show_prints_the_reject_reason_the_label_and_what_needs_attention(
    store: Store, tmp_path: Path
) -> None:
    first, second, _ = store.ids
    run(*store.on("requests", "approve", first, "--actor", "anna"))
    reason = "Gedragen\nen gewassen."  # a reason may have lines; show keeps to one
    assert (
        run(*store.on("requests", "reject", second, "--actor", "anna", "--reason", reason))[0] == 0
    )
    assert run(*store.dispatch(tmp_path))[0] == 0
    lines = run(*store.on("requests", "show", first))[1].splitlines()
    (label,) = [line for line in lines if line.startswith("  label ")]
    assert label.split()[1:3] == ["FAKE", f"FAKE{label.split()[2][4:]}"]
    assert any(line.split()[3:4] == ["label_created"] for line in lines)
    rejected = run(*store.on("requests", "show", second))[1].splitlines()
    assert "  rejected    Gedragen en gewassen." in rejected
    assert not any(line.startswith("  return fee") for line in rejected)  # none was paid
    with SqliteStorage(store.path) as storage:
        request = storage.get(SHOP, second)
        storage.commit(Commit(request.with_attention("mail: mailbox full"), request.version))
    flagged = run(*store.on("requests", "show", second))[1].splitlines()
    assert "  attention   mail: mailbox full" in flagged


def test_a_decision_says_which_effects_it_owes(store: Store) -> None:
    request_id = store.ids[0]
    code, out, _ = run(
        *store.on("requests", "reject", request_id, "--actor", "anna", "--reason", "Gedragen")
    )
    assert code == 0
    first, second = out.splitlines()
    assert first == f"{request_id}: rejected"
    assert f"refund:{SHOP}:{request_id}" in second
    assert f"mail:{SHOP}:{request_id}:rejected" in second
    assert "retouraanvraag dispatch" in second


def test_an_idempotency_key_replays_the_first_result_and_refuses_other_arguments(
    store: Store,
) -> None:
    request_id = store.ids[0]
    argv = store.on("requests", "approve", request_id, "--actor", "anna", "--json")
    first = run(*argv, "--idempotency-key", "k-1")
    again = run(*argv, "--idempotency-key", "k-1")
    assert first[0] == again[0] == 0
    assert json.loads(first[1])["request"] == json.loads(again[1])["request"]
    err = fails(
        1,
        *store.on(
            "requests",
            "approve",
            request_id,
            "--actor",
            "anna",
            "--no-label",
            "--idempotency-key",
            "k-1",
        ),
    )
    assert "idempotency key 'k-1' was first used with other arguments" in err


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (
            ("approve", "no-such-id", "--actor", "anna"),
            1,
            f"shop {SHOP}: no return request no-such-id",
        ),
        (
            ("receive", "{first}", "--actor", "anna"),
            1,
            "cannot mark_received a request that is requested",
        ),
        (("approve", "{first}", "--actor", "not a staff id"), 2, "actor: a staff id is"),
        (("approve", "{first}", "--actor", "rule:x"), 2, "actor:"),
        (
            ("reject", "{first}", "--actor", "anna", "--reason", "  "),
            2,
            "reason: a reject reason is required",
        ),
        (
            ("approve", "{second}", "--actor", "anna", "--refund-fee"),
            2,
            "has no paid return fee to refund",
        ),
        (("show", "no-such-id"), 1, "no return request no-such-id"),
        (("list", "--timezone", "Mars/Olympus"), 2, "--timezone: unknown IANA time zone"),
    ],
)
def test_every_refused_command_is_one_line_and_a_non_zero_exit(
    store: Store, argv: tuple[str, ...], code: int, message: str
) -> None:
    filled = tuple(a.format(first=store.ids[0], second=store.ids[1]) for a in argv)
    err = fails(code, *store.on("requests", *filled))
    assert message in err
    assert err.startswith(f"retouraanvraag requests {filled[0]}: ")
    assert "jan@example.nl" not in err


def test_a_missing_store_is_one_line_that_says_how_to_make_one(tmp_path: Path) -> None:
    path = tmp_path / "none.sqlite3"
    err = fails(2, "requests", "list", "--db", str(path), "--shop", SHOP)
    assert (
        f"{path}: no such database; create it with `retouraanvraag db migrate --db {path}`" in err
    )
    assert not path.exists()
    err = fails(2, "requests", "list", "--db", str(tmp_path), "--shop", SHOP)
    assert "is a directory, not a database file" in err
    junk = tmp_path / "junk.sqlite3"
    junk.write_bytes(b"this is no database" * 100)
    err = fails(2, "requests", "list", "--db", str(junk), "--shop", SHOP)
    assert "file is not a database" in err


def test_every_command_opens_a_postgresql_database_and_never_repeats_its_password(
    postgres_server: Any, tmp_path: Path
) -> None:
    url = postgres_server.fresh_url()
    assert run("db", "migrate", "--db", url)[0] == 0
    storage = PostgresStorage(url)
    desk = Desk(storage, clock=FixedClock(NOW))
    ids = [desk.submit(Store.new(str(2001 + i), "NL", fee=True)).id for i in range(2)]
    storage.close()
    code, out, err = run("requests", "list", "--json", "--db", url, "--shop", SHOP)
    assert (code, err) == (0, "")
    assert sorted(ids) == sorted(r["id"] for r in json.loads(out)["requests"])
    assert (
        run("requests", "approve", ids[0], "--actor", "anna", "--db", url, "--shop", SHOP)[0] == 0
    )
    store = Store.__new__(Store)
    store.db = url
    code, out, _ = run(*store.dispatch(tmp_path))
    assert code == 0
    # two confirmation mails, the label and the label mail
    assert out == "4 effect(s) done, 0 to retry, 0 failed for good\n"
    with PostgresStorage(url) as reopened:
        assert reopened.get(SHOP, ids[0]).label is not None


def test_a_postgresql_database_without_its_schema_says_to_migrate(postgres_server: Any) -> None:
    err = fails(2, "requests", "list", "--db", postgres_server.fresh_url(), "--shop", SHOP)
    assert "db migrate" in err


@pytest.mark.parametrize(
    "dsn",
    [
        "postgresql://anna:s3cret@127.0.0.1:{port}/returns?connect_timeout=1",
        "postgres://anna:s3cret@127.0.0.1:{port}/returns?connect_timeout=1",
        "host=127.0.0.1 port={port} dbname=returns password=s3cret connect_timeout=1",
    ],
)
def test_an_unreachable_postgresql_database_is_named_without_its_password(dsn: str) -> None:
    with socket.socket() as closed:  # bound, not listening: nothing answers there
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        err = fails(1, "requests", "list", "--db", dsn.format(port=port), "--shop", SHOP)
    assert f"127.0.0.1:{port}/returns" in err
    assert "s3cret" not in err


def test_another_database_url_is_refused() -> None:
    err = fails(2, "requests", "list", "--db", "mysql://root@localhost/x", "--shop", SHOP)
    assert "mysql:// is not a store this version can open" in err


def test_db_and_shop_come_from_the_environment_when_not_given(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(cli.DB_VARIABLE, store.db)
    monkeypatch.setenv(cli.SHOP_VARIABLE, SHOP)
    code, out, _ = run("requests", "list", "--json")
    assert code == 0
    assert ids(json.loads(out)) == store.ids
    monkeypatch.delenv(cli.SHOP_VARIABLE)
    err = fails(2, "requests", "list")
    assert "the following arguments are required: --shop" in err


# -- db migrate --------------------------------------------------------------------------------


def test_db_migrate_creates_the_database_and_reports_its_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "new.sqlite3"
    code, out, err = run("db", "migrate", "--db", str(path))
    assert (code, err) == (0, "")
    assert out == f"{path}: schema version {SCHEMA_VERSION} (created)\n"
    assert run("db", "migrate", "--db", str(path))[1] == (
        f"{path}: schema version {SCHEMA_VERSION} (up to date)\n"
    )
    with SqliteStorage(path) as storage:
        assert storage.query(SHOP, retouraanvraag.Query()).items == ()


def test_db_migrate_refuses_what_it_cannot_migrate(tmp_path: Path) -> None:
    newer = tmp_path / "newer.sqlite3"
    with sqlite3.connect(newer) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    err = fails(2, "db", "migrate", "--db", str(newer))
    assert f"newer than the {SCHEMA_VERSION} this version of retouraanvraag knows" in err
    junk = tmp_path / "junk"
    junk.write_bytes(b"\x00garbage" * 200)
    assert "not a SQLite database" in fails(2, "db", "migrate", "--db", str(junk))
    assert "is a directory" in fails(2, "db", "migrate", "--db", str(tmp_path))
    with socket.socket() as closed:  # bound, not listening: nothing answers there
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        url = f"postgresql://anna:s3cret@127.0.0.1:{port}/x?connect_timeout=1"
        err = fails(1, "db", "migrate", "--db", url)
    assert f"PostgreSQL 127.0.0.1:{port}/x" in err
    assert "s3cret" not in err
    nowhere = tmp_path / "no" / "such" / "folder.sqlite3"
    assert f"the folder {nowhere.parent} does not exist" in fails(
        2, "db", "migrate", "--db", str(nowhere)
    )


# -- dispatch ----------------------------------------------------------------------------------


def test_dispatch_runs_the_effects_once_into_the_maildir(store: Store, tmp_path: Path) -> None:
    run(*store.on("requests", "approve", store.ids[0], "--actor", "anna", "--refund-fee"))
    code, out, err = run(*store.dispatch(tmp_path))
    assert code == 0
    # three confirmation mails, a label, a refund and the label mail
    assert out == "6 effect(s) done, 0 to retry, 0 failed for good\n"
    assert "labels are marked FAKE and refunds move no money" in err
    assert len(list((tmp_path / "mail" / "new").iterdir())) == 4
    assert set(store.outbox(store.ids[0]).values()) == {EffectState.DONE}
    assert run(*store.dispatch(tmp_path))[1] == "0 effect(s) done, 0 to retry, 0 failed for good\n"


def test_dispatch_without_a_carrier_and_payment_choice_says_what_is_there(store: Store) -> None:
    err = fails(2, "dispatch", "--db", store.db, "--maildir", "m")
    assert "no carrier or payment adapter ships with retouraanvraag yet" in err
    assert "--labels fake --payments fake" in err
    err = fails(2, "dispatch", "--db", store.db, "--labels", "fake", "--payments", "fake")
    assert "--maildir DIR is required" in err
    argv = (
        "dispatch",
        "--db",
        store.db,
        "--labels",
        "fake",
        "--payments",
        "fake",
        "--maildir",
        "m",
    )
    assert "--sender ADDRESS and --shop-name NAME are required" in fails(2, *argv)
    err = fails(2, *argv, "--sender", "not an address", "--shop-name", "My Shop")
    assert err.startswith("retouraanvraag dispatch: --sender: ")
    assert "invalid choice: 'dhl'" in fails(2, "dispatch", "--db", store.db, "--labels", "dhl")
    for poll in ("0", "-1", "soon"):
        assert "--poll: must be a number above 0" in fails(2, *argv, "--poll", poll)


def test_the_try_out_adapters_answer_the_same_for_the_same_key(store: Store) -> None:
    with SqliteStorage(store.path) as storage:
        request = storage.get(SHOP, store.ids[0])
    labels = cli._TryOutLabels()
    first = labels.create_label("label:k:1", request)
    assert labels.create_label("label:k:1", request) == cli._TryOutLabels().create_label(
        "label:k:1", request
    )
    assert first.tracking_number.startswith("FAKE")
    assert b"not valid for shipping" in first.document
    labels.void_label("label:k:1")
    with pytest.raises(retouraanvraag.PortRejected):
        labels.create_label("label:k:1", request)
    payments = cli._TryOutPayments()
    assert payments.refund("refund:k", "pay_1", Money(495)).startswith("FAKE-REFUND-")
    assert payments.refund("refund:k", "pay_1", Money(495)) == payments.refund(
        "refund:k", "pay_2", Money(1)
    )


def test_the_worker_finishes_the_entry_in_hand_and_stops_on_sigterm(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run(*store.on("requests", "approve", store.ids[0], "--actor", "anna", "--refund-fee"))
    original = Dispatcher.run_once
    calls: list[int] = []

    def signalled(self: Dispatcher, limit: int = 100) -> DispatchReport:
        calls.append(limit)
        if len(calls) == 1:
            signal.raise_signal(signal.SIGTERM)  # arrives before the first entry is claimed
        return original(self, limit)

    monkeypatch.setattr(Dispatcher, "run_once", signalled)
    previous = signal.getsignal(signal.SIGTERM)
    code, out, err = run(*store.dispatch(tmp_path, "--worker", "--poll", "600"))
    assert code == 0
    assert calls == [1]
    assert out == "1 effect(s) done, 0 to retry, 0 failed for good\n"
    assert "started" in err
    assert err.splitlines()[-1] == "dispatch: worker stopped"
    with SqliteStorage(store.path) as storage:
        pending = [
            e
            for request_id in store.ids
            for e in storage.outbox(SHOP, request_id)
            if e.state is EffectState.PENDING
        ]
    assert len(pending) == 4  # the oldest (a confirmation mail) done, the rest not even claimed
    assert all(e.lease_owner is None for e in pending)
    assert signal.getsignal(signal.SIGTERM) == previous


def test_a_second_ctrl_c_aborts_the_worker_at_once(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(self: Dispatcher, limit: int = 100) -> DispatchReport:  # noqa: ARG001
        signal.raise_signal(signal.SIGINT)
        signal.raise_signal(signal.SIGINT)
        return DispatchReport()

    monkeypatch.setattr(Dispatcher, "run_once", interrupted)
    code, out, err = run(*store.dispatch(tmp_path, "--worker"))
    assert (code, out) == (130, "")
    assert err.splitlines()[-1] == "retouraanvraag dispatch: interrupted"


def test_a_failing_round_does_not_end_the_worker(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rounds: list[str] = []

    def flaky(self: Dispatcher, limit: int = 100) -> DispatchReport:  # noqa: ARG001
        rounds.append("round")
        if len(rounds) == 1:
            raise retouraanvraag.PortUnavailable("database is locked")
        signal.raise_signal(signal.SIGTERM)
        return DispatchReport(done=1)

    monkeypatch.setattr(Dispatcher, "run_once", flaky)
    code, out, err = run(*store.dispatch(tmp_path, "--worker", "--poll", "0.001"))
    assert code == 0
    assert rounds == ["round", "round"]
    assert "warning: dispatch round failed; waiting [error=PortUnavailable]" in err
    assert out.startswith("1 effect(s) done")


def _stderr_lines(process: subprocess.Popen[str]) -> queue.Queue[str]:
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            lines.put(line)
        lines.put("")  # the end

    threading.Thread(target=read, daemon=True).start()
    return lines


def _wait_for(lines: queue.Queue[str], text: str, seen: list[str]) -> None:
    while True:
        line = lines.get(timeout=60)
        seen.append(line)
        assert line, f"the worker ended before printing {text!r}: {seen}"
        if text in line:
            return


@pytest.fixture
def worker_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RETOURAANVRAAG_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_the_worker_process_does_its_work_then_stops_cleanly_on_a_signal(
    store: Store, tmp_path: Path, signum: signal.Signals, worker_env: dict[str, str]
) -> None:
    run(*store.on("requests", "approve", store.ids[0], "--actor", "anna", "--refund-fee"))
    argv = [sys.executable, "-m", "retouraanvraag", *store.dispatch(tmp_path, "--worker", "-v")]
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [*argv, "--poll", "600"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=worker_env,
    )
    try:
        lines, seen = _stderr_lines(process), list[str]()
        _wait_for(lines, "worker worker-", seen)
        for _ in range(6):  # six effects, each logged as done; then it idles for 600 s
            _wait_for(lines, "info: effect done", seen)
        process.send_signal(signum)
        assert process.wait(timeout=60) == 0
        _wait_for(lines, "dispatch: worker stopped", seen)
        assert process.stdout is not None
        assert process.stdout.read() == "6 effect(s) done, 0 to retry, 0 failed for good\n"
        assert not any("Traceback" in line for line in seen)
        assert not any("jan@example.nl" in line for line in seen)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=60)
    assert len(list((tmp_path / "mail" / "new").iterdir())) == 4


def test_dispatch_logs_ids_on_one_line_and_never_a_traceback() -> None:
    record = logging.LogRecord(
        "retouraanvraag", logging.ERROR, __file__, 1, "effect could not be handled", None, None
    )
    try:
        raise ValueError("jan@example.nl is broken")  # noqa: TRY301 - a logged exception
    except ValueError:
        record.exc_info = sys.exc_info()
    record.request_id = "r-1"
    record.effect = "mail:s:r-1:rejected"
    line = cli._LineFormatter().format(record)
    assert line == (
        "error: effect could not be handled (ValueError)"
        " [request_id=r-1 effect=mail:s:r-1:rejected]"
    )


def test_a_closed_output_pipe_ends_the_command_quietly(store: Store) -> None:
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "retouraanvraag", *store.on("requests", "list", "--json")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    process.stdout.close()
    assert process.wait(timeout=60) in {0, 1}
    assert process.stderr is not None
    err = process.stderr.read()
    assert "Traceback" not in err
    assert "Exception ignored" not in err
