"""The reference shop subscribes to its own events: ``POST /hooks/events`` and the Events page.

The endpoint is driven through Flask's test client with bodies signed as the library's
``WebhookSink`` signs them (and forged, changed, expired ones); then the shop is started as
``make serve`` starts it — on a free loopback port, its dispatcher posting to it — and an
approval's events appear on the merchant's page.
"""

from __future__ import annotations

import datetime as dt
import http.cookiejar
import io
import logging
import os
import re
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest
from flask import Flask
from flask.testing import FlaskClient

from retouraanvraag import Event, EventType, Status
from retouraanvraag.adapters.webhook import (
    EVENT_ID_HEADER,
    SIGNATURE_HEADER,
    event_body,
    signature_header,
)
from retouraanvraag.ports import EffectState
from retouraanvraag.testing.event_contract import sample_event

from .webshop_support import RunningShop, Services, build, hook_url, log_in, start

FIETS = "fietsenwinkel"
BOOKS = "bookshop"
OTHER_SECRET = "whsec_a-secret-the-shop-does-not-have"  # noqa: S105 - a wrong one


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[tuple[Flask, Services]]:
    app, services = build(tmp_path / "data")
    yield app, services
    services.close()


@pytest.fixture(scope="module")
def refusing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Flask, Services]]:
    """One shop for the tests of what is refused: they record nothing (and check that)."""
    app, services = build(tmp_path_factory.mktemp("refusing"))
    yield app, services
    services.close()


def an_event(
    services: Services,
    shop_id: str = FIETS,
    *,
    n: int = 1,
    kind: EventType = EventType.APPROVED,
    status: Status = Status.APPROVED,
    version: int = 1,
    occurred_at: dt.datetime | None = None,
) -> Event:
    """An event of one of the shop's seeded requests (the library's sample, re-addressed)."""
    request = services.desk.requests_tab(shop_id, limit=1).items[0]
    sample = sample_event()
    return attrs.evolve(
        sample,
        key=f"event:{shop_id}:{request.id}:{kind}:{n}",
        type=kind,
        shop_id=shop_id,
        request_id=request.id,
        order_number=request.order_number,
        status=status,
        version=version,
        occurred_at=occurred_at or sample.occurred_at,
    )


def post(
    client: FlaskClient,
    body: bytes,
    *,
    secret: str | None,
    signed_at: int | None = None,
    event_id: str = "event:x",
) -> tuple[int, str]:
    headers = {EVENT_ID_HEADER: event_id, "Content-Type": "application/json"}
    if secret is not None:
        stamp = int(time.time()) if signed_at is None else signed_at
        headers[SIGNATURE_HEADER] = signature_header(secret, body, stamp)
    response = client.post("/hooks/events", data=body, headers=headers)
    return response.status_code, response.get_data(as_text=True)


def send(client: FlaskClient, app: Flask, event: Event) -> tuple[int, str]:
    return post(client, event_body(event), secret=app.config["WEBHOOK_SECRET"], event_id=event.key)


def events_page(client: FlaskClient) -> str:
    response = client.get("/merchant/events")
    assert response.status_code == 200
    return response.get_data(as_text=True)


# -- the endpoint ----------------------------------------------------------------------------


def test_a_signed_event_is_recorded_once_and_a_repeat_is_acknowledged(
    shop: tuple[Flask, Services], caplog: pytest.LogCaptureFixture
) -> None:
    app, services = shop
    client = app.test_client()
    event = an_event(services)
    with caplog.at_level(logging.INFO, logger="webshop"):
        assert send(client, app, event) == (200, '{"recorded":true}\n')
        assert send(client, app, event) == (200, '{"recorded":false}\n')
    assert [e.key for e in services.db.events(FIETS)] == [event.key]
    # the shared secret lives in the data folder, readable by its owner only
    assert app.config["WEBHOOK_SECRET"] == (services.data / "webhook.key").read_text().strip()
    assert (services.data / "webhook.key").stat().st_mode & 0o077 == 0
    assert [r.getMessage() for r in caplog.records] == [
        "event received",
        "event received again; kept once",
    ]
    assert all(getattr(r, "event_id", None) == event.key for r in caplog.records)
    # no session, no CSRF token: the signature is what lets it in (other forms still need one)
    assert client.post("/merchant/logout").status_code == 400


@pytest.mark.parametrize(
    ("how", "reason"),
    [
        ("missing", "no Retouraanvraag-Signature header"),
        ("other secret", "no matching signature"),
        ("changed body", "no matching signature"),
        ("expired", "expired"),
        ("from the future", "signed in the future"),
        ("malformed", "malformed header"),
    ],
)
def test_a_bad_signature_is_refused_with_400_and_logged_by_id_only(
    refusing: tuple[Flask, Services], caplog: pytest.LogCaptureFixture, how: str, reason: str
) -> None:
    app, services = refusing
    client = app.test_client()
    event = an_event(services)
    body = event_body(event)
    secret: str = app.config["WEBHOOK_SECRET"]
    now = int(time.time())
    with caplog.at_level(logging.INFO, logger="webshop"):
        if how == "missing":
            status, text = post(client, body, secret=None, event_id=event.key)
        elif how == "other secret":
            status, text = post(client, body, secret=OTHER_SECRET, event_id=event.key)
        elif how == "changed body":
            headers = {
                SIGNATURE_HEADER: signature_header(secret, body, now),
                EVENT_ID_HEADER: event.key,
            }
            changed = body.replace(b'"version":', b'"version": ')
            response = client.post("/hooks/events", data=changed, headers=headers)
            status, text = response.status_code, response.get_data(as_text=True)
        elif how == "malformed":
            headers = {SIGNATURE_HEADER: "nonsense", EVENT_ID_HEADER: event.key}
            response = client.post("/hooks/events", data=body, headers=headers)
            status, text = response.status_code, response.get_data(as_text=True)
        else:
            shift = -600 if how == "expired" else 600
            status, text = post(
                client, body, secret=secret, signed_at=now + shift, event_id=event.key
            )
    assert status == 400
    assert text.startswith(f"the signature does not verify: {reason}")
    assert services.db.events(FIETS) == []
    (record,) = caplog.records
    assert record.getMessage() == "webhook refused"
    assert record.__dict__["event_id"] == event.key
    assert record.__dict__["problem"].startswith("the signature does not verify")
    logged = " ".join(str(v) for v in record.__dict__.values())
    assert event.order_number not in logged
    assert secret not in logged


def test_a_claimed_id_that_is_no_id_is_not_logged(
    refusing: tuple[Flask, Services], caplog: pytest.LogCaptureFixture
) -> None:
    app, _services = refusing
    with caplog.at_level(logging.INFO, logger="webshop"):
        status, _ = post(app.test_client(), b"{}", secret=None, event_id="jan@example.nl <script>")
    assert status == 400
    assert caplog.records[0].__dict__["event_id"] == "-"


def test_a_signed_body_that_is_no_event_or_of_no_shop_served_is_refused(
    refusing: tuple[Flask, Services],
) -> None:
    app, services = refusing
    client = app.test_client()
    secret = app.config["WEBHOOK_SECRET"]
    status, text = post(client, b'{"type": "approved"}', secret=secret)
    assert (status, text.split(" (")[0]) == (400, "the body is not an event")
    stranger = attrs.evolve(
        an_event(services), key="event:elsewhere:r1:approved:1", shop_id="elsewhere"
    )
    assert send(client, app, stranger)[0] == 422
    assert services.db.events(FIETS) == []


def test_a_body_without_length_or_past_the_limit_is_refused_unread(
    refusing: tuple[Flask, Services],
) -> None:
    app, _services = refusing
    client = app.test_client()
    huge = b"{" + b" " * (256 * 1024) + b"}"
    assert post(client, huge, secret=app.config["WEBHOOK_SECRET"])[0] == 413
    chunked = {"Transfer-Encoding": "chunked"}  # no length: the body would be read to its end
    response = client.post("/hooks/events", input_stream=io.BytesIO(b"{}"), headers=chunked)
    assert response.status_code == 411


# -- the Events page -------------------------------------------------------------------------


def test_the_events_page_shows_the_merchants_shop_only(shop: tuple[Flask, Services]) -> None:
    app, services = shop
    hooks = app.test_client()
    own = an_event(services, FIETS, version=2)
    theirs = an_event(services, BOOKS, kind=EventType.REJECTED, status=Status.REJECTED)
    assert send(hooks, app, own)[0] == 200
    assert send(hooks, app, theirs)[0] == 200

    anna = app.test_client()
    log_in(anna)
    page = events_page(anna)
    assert 'href="/merchant/events" aria-current="page">Events</a>' in page
    assert f'data-key="{own.key}"' in page
    assert f'href="/merchant/requests/{own.request_id}"' in page
    assert "<td>2</td>" in page  # the version
    assert theirs.request_id not in page
    # the link leads to the request; the other shop's request stays a 404 by id
    assert anna.get(f"/merchant/requests/{own.request_id}").status_code == 200
    assert anna.get(f"/merchant/requests/{theirs.request_id}").status_code == 404

    emma = app.test_client()
    log_in(emma, "emma", "books-2026")
    page = events_page(emma)
    assert f'data-key="{theirs.key}"' in page
    assert own.request_id not in page


def test_the_events_page_pages_newest_first_without_gaps_or_repeats(
    shop: tuple[Flask, Services],
) -> None:
    app, services = shop
    hooks = app.test_client()
    start_at = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)
    sent = []
    for n in range(1, 58):
        # pairs of events share a moment: the key breaks the tie
        event = an_event(
            services, n=n, occurred_at=start_at + dt.timedelta(minutes=n // 2), version=n
        )
        assert send(hooks, app, event)[0] == 200
        sent.append(event.key)
    anna = app.test_client()
    log_in(anna)
    seen: list[str] = []
    path = "/merchant/events"
    while True:
        page = anna.get(path).get_data(as_text=True)
        seen += re.findall(r'data-key="([^"]+)"', page)
        following = re.search(r'href="(\?cursor=[^"]+)">Older events', page)
        if following is None:
            break
        path = "/merchant/events" + following.group(1).replace("&amp;", "&")
    assert len(seen) == len(set(seen)) == len(sent)
    by_time = sorted(
        services.db.events(FIETS, limit=100), key=lambda e: (e.occurred_at, e.key), reverse=True
    )
    assert seen == [e.key for e in by_time]
    assert anna.get("/merchant/events?cursor=nonsense").status_code == 400


def test_the_events_page_needs_a_login(refusing: tuple[Flask, Services]) -> None:
    app, _services = refusing
    response = app.test_client().get("/merchant/events")
    assert response.status_code == 302
    assert "/merchant/login" in response.headers["Location"]


# -- as make serve runs it -------------------------------------------------------------------


@pytest.fixture
def running(tmp_path: Path) -> Iterator[RunningShop]:
    shop = start(tmp_path / "served", port=0, worker=False)
    yield shop
    shop.stop()


def test_the_served_shop_hears_its_own_events_on_its_real_port(running: RunningShop) -> None:
    services = running.services
    assert services.events is not None
    assert running.url.startswith("http://127.0.0.1:")
    assert repr(services.events) == f"WebhookSink({running.url}/…)"
    # Seeding ran the dispatcher: the seeded requests' events arrived, every entry done.
    seeded = {e.type for e in services.db.events(FIETS, limit=100)}
    assert {"submitted", "approved", "received", "rejected", "label_created"} <= seeded
    assert "needs_attention" in seeded  # the Swiss label the demo carrier refuses
    waiting = services.desk.requests_tab(FIETS, rejected=False, limit=500).items[0]
    services.desk.approve(FIETS, waiting.id, with_label=True, actor="anna")
    services.dispatcher.run_until_idle()
    outbox = services.storage.outbox(FIETS, waiting.id)
    events = [e for e in outbox if e.key.startswith("event:")]
    assert {e.state for e in events} == {EffectState.DONE}
    assert not services.desk.get(FIETS, waiting.id).needs_attention

    client = running.app.test_client()
    log_in(client)
    page = events_page(client)
    for kind in ("submitted", "approved", "label_created"):
        assert f'data-type="{kind}" data-request="{waiting.id}"' in page
    # the webhook refuses what is not signed, over real HTTP too
    refused = urllib.request.Request(  # noqa: S310 - the test's own loopback server
        running.url + "/hooks/events", data=b"{}", method="POST"
    )
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(refused, timeout=10)  # noqa: S310
    assert caught.value.code == 400


@pytest.mark.parametrize(
    ("address", "url"),
    [
        (("127.0.0.1", 8000), "http://127.0.0.1:8000/hooks/events"),
        (("0.0.0.0", 8000), "http://127.0.0.1:8000/hooks/events"),  # noqa: S104
        (("::", 8001, 0, 0), "http://[::1]:8001/hooks/events"),
        (("::1", 8002, 0, 0), "http://[::1]:8002/hooks/events"),
        (("192.168.1.20", 80), "http://192.168.1.20:80/hooks/events"),
    ],
)
def test_the_webhook_url_is_the_address_served_with_every_interface_as_loopback(
    address: tuple[str, int], url: str
) -> None:
    assert hook_url(address) == url


# -- python -m webshop, as make serve runs it ---------------------------------------------------


class Browser:
    """A cookie-keeping HTTP client for the shop served by another process."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        )

    def get(self, path: str) -> str:
        with self.opener.open(self.base + path, timeout=20) as response:
            text: str = response.read().decode("utf-8")
        return text

    def post(self, path: str, fields: dict[str, str]) -> str:
        data = urllib.parse.urlencode(fields).encode()
        with self.opener.open(self.base + path, data=data, timeout=20) as response:
            text: str = response.read().decode("utf-8")
        return text

    def token(self, page: str) -> str:
        found = re.search(r'name="csrf_token" value="([^"]+)"', page)
        assert found is not None
        return found.group(1)


def test_make_serve_runs_the_worker_that_posts_a_web_approvals_events_to_the_shop(
    tmp_path: Path,
) -> None:
    root = Path(__file__).resolve().parents[1]
    environment = {**os.environ, "PYTHONPATH": str(root / "examples"), "PYTHONUNBUFFERED": "1"}
    argv = [sys.executable, "-m", "webshop", "--data", str(tmp_path / "data"), "--port", "0"]
    log = tmp_path / "server.log"  # a file, not a pipe: a full pipe would stall the server
    with (
        log.open("w") as server_log,
        subprocess.Popen(  # noqa: S603 - this interpreter, the shop's own module
            argv, env=environment, stdout=subprocess.PIPE, stderr=server_log, text=True
        ) as shop,
    ):
        try:
            assert shop.stdout is not None
            banner = shop.stdout.readline()
            found = re.match(r"Reference shop on (http://127\.0\.0\.1:\d+)/", banner)
            assert found is not None, banner + log.read_text()
            base = found.group(1)
            anna = Browser(base)
            token = anna.token(anna.get("/merchant/login"))
            anna.post(
                "/merchant/login",
                {"username": "anna", "password": "fiets-2026", "csrf_token": token},
            )
            tab = anna.get("/merchant/?view=waiting")
            request_id = re.findall(r'<tr id="row-([0-9a-f]+)"', tab)[0]
            detail = anna.get(f"/merchant/requests/{request_id}")
            approved = anna.post(
                f"/merchant/requests/{request_id}/approve",
                {"csrf_token": anna.token(detail), "with_label": "yes", "op": "t1"},
            )
            assert "Approved with a label." in approved
            # The worker thread posts the approval's events to the server's own port.
            wanted = [
                f'data-type="{kind}" data-request="{request_id}"'
                for kind in ("approved", "label_created")
            ]
            deadline = time.monotonic() + 30
            page = ""
            while time.monotonic() < deadline:
                page = anna.get("/merchant/events")
                if all(w in page for w in wanted):
                    break
                time.sleep(0.2)
            assert all(w in page for w in wanted), page
        finally:
            shop.send_signal(signal.SIGINT)
            shop.communicate(timeout=30)
    errors = log.read_text()
    assert shop.returncode == 0, errors
    assert '"POST /hooks/events" 200' in errors
    assert "Traceback" not in errors
    assert "view=waiting" not in errors  # the request log leaves query strings out
