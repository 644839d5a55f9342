"""``retouraanvraag dispatch --webhook-url``: a desk's events posted, signed, to a real receiver.

The receiver is ``http.server`` on loopback in a thread of this process; it verifies every
request with :func:`verify_signature` and keeps each event id once, as a host would.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import attrs
import pytest

from retouraanvraag import EventType, Money, PaidFee
from retouraanvraag.adapters.sqlite import SqliteStorage
from retouraanvraag.adapters.webhook import (
    SIGNATURE_HEADER,
    parse_event,
    verify_signature,
)
from retouraanvraag.cli import main
from retouraanvraag.errors import InvalidSignature
from retouraanvraag.model import Customer, Event
from retouraanvraag.workflow import Desk, NewItem, NewRequest

SHOP = "my-shop"
SECRET = "whsec_the-cli-tests-shared-secret"  # noqa: S105 - the tests' own
VARIABLE = "RETOURAANVRAAG_TEST_WEBHOOK_SECRET"
TOGETHER = "--webhook-url URL and --webhook-secret-env NAME go together"


@attrs.define
class Receiver:
    """Verifies each POST; keeps the accepted events by id and counts what it refused."""

    status: int = 204
    accepted: dict[str, Event] = attrs.Factory(dict)
    arrivals: int = 0
    refused: int = 0
    lock: threading.Lock = attrs.Factory(threading.Lock)
    server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                status = receiver.take(self.headers.get(SIGNATURE_HEADER), body)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def take(self, header: str | None, body: bytes) -> int:
        with self.lock:
            self.arrivals += 1
            try:
                verify_signature(SECRET, header, body)
            except InvalidSignature:
                self.refused += 1
                return 400
            if self.status < 300:
                event = parse_event(body)
                self.accepted.setdefault(event.key, event)
            return self.status

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/returns"

    def close(self) -> None:
        assert self.server is not None
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    found.start()
    yield found
    found.close()


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def store(tmp_path: Path, *, events: bool = True) -> tuple[str, str]:
    """A SQLite file with one request, approved with a label and the fee refunded."""
    path = tmp_path / "returns.sqlite3"
    with SqliteStorage(path) as storage:
        desk = Desk(storage, events=events)
        request = desk.submit(
            NewRequest(
                shop_id=SHOP,
                order_number="1001",
                customer=Customer("jan@example.nl", "Jan Jansen", "nl"),
                from_country="NL",
                order_value=Money.parse("€59,95"),
                items=(NewItem("TS-M", "T-shirt", 1, Money.parse("€19,95"), "Te klein"),),
                return_fee=PaidFee(Money.parse("€4,95"), "pay_1001"),
            )
        )
        desk.approve(SHOP, request.id, with_label=True, refund_return_fee=True, actor="anna")
    return str(path), request.id


def dispatch(tmp_path: Path, db: str, *extra: str) -> tuple[str, ...]:
    return (
        "dispatch",
        "--db",
        db,
        "--maildir",
        str(tmp_path / "mail"),
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


def webhook(receiver: Receiver) -> tuple[str, ...]:
    return ("--webhook-url", receiver.url, "--webhook-secret-env", VARIABLE)


def test_dispatch_posts_the_desks_events_signed_once_each(
    tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(VARIABLE, SECRET)
    db, request_id = store(tmp_path)
    code, out, err = run(*dispatch(tmp_path, db, *webhook(receiver)))
    assert code == 0, err
    # confirmation and label mails, the label, the refund, and four events
    assert out == "8 effect(s) done, 0 to retry, 0 failed for good\n"
    assert receiver.server is not None
    port = receiver.server.server_address[1]
    assert f"dispatch: events are posted, signed, to 127.0.0.1:{port}\n" in err
    assert SECRET not in err + out
    assert receiver.refused == 0
    events = sorted(receiver.accepted.values(), key=lambda e: e.version)
    assert [e.type for e in events] == [
        EventType.SUBMITTED,
        EventType.APPROVED,
        EventType.REFUNDED,
        EventType.LABEL_CREATED,
    ]
    assert {e.request_id for e in events} == {request_id}
    assert receiver.arrivals == 4
    # a second run has nothing left to post
    assert run(*dispatch(tmp_path, db, *webhook(receiver)))[1].startswith("0 effect(s) done")
    assert receiver.arrivals == 4


def test_a_receiver_that_refuses_gives_the_event_up_and_the_request_needs_attention(
    tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(VARIABLE, "whsec_not-the-secret-the-receiver-has")
    db, request_id = store(tmp_path)
    code, out, err = run(*dispatch(tmp_path, db, *webhook(receiver)))
    assert code == 0, err
    # every event is refused (400) and given up: a person must look, nothing is dropped
    assert out == "4 effect(s) done, 0 to retry, 4 failed for good\n"
    assert receiver.accepted == {}
    assert receiver.refused == receiver.arrivals == 4
    with SqliteStorage(Path(db)) as storage:
        assert storage.get(SHOP, request_id).needs_attention


def test_without_the_options_the_events_of_an_events_desk_are_given_up_as_today(
    tmp_path: Path, receiver: Receiver
) -> None:
    db, _ = store(tmp_path)
    code, out, _err = run(*dispatch(tmp_path, db))
    assert code == 0
    assert out.endswith(" failed for good\n")
    assert not out.endswith(" 0 failed for good\n")
    assert receiver.arrivals == 0


def test_beside_a_desk_without_events_nothing_is_posted_and_the_run_says_why(
    tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    # docs/events.md: the desk's setting is the switch; a sink beside it hears nothing
    monkeypatch.setenv(VARIABLE, SECRET)
    db, request_id = store(tmp_path, events=False)
    code, out, err = run(*dispatch(tmp_path, db, *webhook(receiver)))
    assert (code, out) == (0, "4 effect(s) done, 0 to retry, 0 failed for good\n"), err
    assert receiver.arrivals == 0
    assert receiver.accepted == {}
    assert err.count("Desk(events=True)") == 1
    assert request_id in err


@pytest.mark.parametrize(
    ("extra", "env", "message"),
    [
        (
            ("--webhook-url", "http://127.0.0.1:9/x"),
            None,
            TOGETHER,
        ),
        (
            ("--webhook-secret-env", VARIABLE),
            SECRET,
            TOGETHER,
        ),
        (
            ("--webhook-url", "http://127.0.0.1:9/x", "--webhook-secret-env", VARIABLE),
            None,
            f"--webhook-secret-env: ${VARIABLE} is not set or empty",
        ),
        (
            ("--webhook-url", "http://127.0.0.1:9/x", "--webhook-secret-env", VARIABLE),
            "",
            f"--webhook-secret-env: ${VARIABLE} is not set or empty",
        ),
        (
            ("--webhook-url", "http://127.0.0.1:9/x", "--webhook-secret-env", VARIABLE),
            "short",
            f"--webhook-secret-env (${VARIABLE}): a secret is at least 16 bytes",
        ),
        (
            ("--webhook-url", "ftp://127.0.0.1/x", "--webhook-secret-env", VARIABLE),
            SECRET,
            "--webhook-url: only http and https URLs are posted to",
        ),
        (
            ("--webhook-url", "https://user:pw@hooks.example/x", "--webhook-secret-env", VARIABLE),
            SECRET,
            "--webhook-url: no credentials in the URL",
        ),
    ],
)
def test_webhook_options_misused_are_one_line_naming_the_option(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    extra: tuple[str, ...],
    env: str | None,
    message: str,
) -> None:
    if env is None:
        monkeypatch.delenv(VARIABLE, raising=False)
    else:
        monkeypatch.setenv(VARIABLE, env)
    db, _ = store(tmp_path)
    code, out, err = run(*dispatch(tmp_path, db, *extra))
    assert (code, out) == (2, ""), err
    assert err.startswith(f"retouraanvraag dispatch: {message}"), err
    assert len(err.splitlines()) == 1
    assert "pw@" not in err


def test_a_secret_given_where_its_variables_name_belongs_is_not_echoed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("whsec_Mixed-Case-Secret-Value", raising=False)
    db, _ = store(tmp_path)
    # --webhook-secret is an abbreviation argparse takes for --webhook-secret-env
    extra = ("--webhook-url", "http://127.0.0.1:9/x", "--webhook-secret")
    code, _out, err = run(*dispatch(tmp_path, db, *extra, "whsec_Mixed-Case-Secret-Value"))
    assert code == 2
    assert "the variable named is not set" in err
    assert "Mixed-Case" not in err
