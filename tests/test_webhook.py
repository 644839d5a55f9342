"""The webhook event sink against a real HTTP receiver on loopback that checks signatures.

The receiver (``http.server`` in a thread, started here) verifies every request with
``verify_signature``, keeps each event once by the key in its verified body, and answers as a
test tells it: any status, a hang, a connection closed before or after it took the event.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import email.utils
import hashlib
import hmac
import http.client
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from retouraanvraag.adapters.sqlite import SqliteStorage
from retouraanvraag.adapters.webhook import (
    EVENT_ID_HEADER,
    EVENT_TYPE_HEADER,
    SIGNATURE_HEADER,
    WebhookSink,
    _retry_after,
    parse_event,
    signature_header,
    verify_signature,
)
from retouraanvraag.errors import (
    InvalidInput,
    InvalidSignature,
    PortRejected,
    PortUnavailable,
)
from retouraanvraag.model import Actor, Event, EventType, event_key
from retouraanvraag.ports import EffectState, EventSink
from retouraanvraag.testing import FakeLabels
from retouraanvraag.testing.event_contract import EventSinkContract, sample_event
from retouraanvraag.testing.faults import Fault, fail_nth, inject_faults
from retouraanvraag.workflow import Desk

from .conftest import SHOP, build_world
from .test_smtp import certificate, trusting

__all__ = ["certificate"]  # a fixture, used by the TLS tests below

SECRET = b"whsec_0123456789abcdef0123456789"
OTHER_SECRET = b"whsec_fedcba9876543210fedcba9876"
STAFF = Actor.staff("anna")


@attrs.define
class Arrival:
    """One request the receiver got, and what it made of it."""

    path: str
    headers: dict[str, str]
    body: bytes
    verdict: str


@attrs.define
class Behaviour:
    """How the receiver answers one request (the next in its plan)."""

    status: int = 200
    headers: dict[str, str] = attrs.Factory(dict)
    hang: bool = False
    close_before: bool = False  # close without taking the event
    close_after: bool = False  # take the event, then close before answering (a lost ack)


class Receiver:
    """A receiver on 127.0.0.1 that verifies signatures and dedupes by the body's event key."""

    def __init__(self, secret: bytes | Sequence[bytes] = SECRET) -> None:
        self.secret = secret
        self.plan: deque[Behaviour] = deque()
        self.arrivals: list[Arrival] = []
        self.accepted: dict[str, Event] = {}
        self.release = threading.Event()
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                receiver.handle(self)

            def log_message(self, *_args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/returns?shop=1"

    def sink(self, **options: object) -> WebhookSink:
        settings: dict[str, object] = {"timeout": 5.0, **options}
        secret = settings.pop("secret", SECRET)
        return WebhookSink(self.url, secret, **settings)  # type: ignore[arg-type]

    def then(self, *behaviours: Behaviour) -> None:
        self.plan.extend(behaviours)

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        length = int(request.headers.get("Content-Length", "0"))
        body = request.rfile.read(length)
        with self.lock:
            behaviour = self.plan.popleft() if self.plan else Behaviour()
        headers = dict(request.headers.items())
        verdict = self._verdict(behaviour, headers, body)
        with self.lock:
            self.arrivals.append(Arrival(request.path, headers, body, verdict))
        if behaviour.hang:
            self.release.wait(30)
            return
        if behaviour.close_before or behaviour.close_after:
            request.close_connection = True
            request.connection.shutdown(socket.SHUT_RDWR)
            return
        status = 400 if verdict.startswith("refused") else behaviour.status
        request.send_response(status)
        for name, value in behaviour.headers.items():
            request.send_header(name, value)
        request.send_header("Content-Length", "0")
        request.end_headers()

    def _verdict(self, behaviour: Behaviour, headers: dict[str, str], body: bytes) -> str:
        try:
            verify_signature(self.secret, headers.get(SIGNATURE_HEADER), body)
        except InvalidSignature as exc:
            return f"refused: {exc.reason}"
        if behaviour.hang or behaviour.close_before or behaviour.status not in range(200, 300):
            return f"answered {behaviour.status}"
        # By the key in the verified body: the id header is not signed, so a replay could
        # carry any id there.
        event = parse_event(body)
        with self.lock:
            if event.key in self.accepted:
                return "duplicate"
            self.accepted[event.key] = event
        return "accepted"

    def verdicts(self) -> list[str]:
        with self.lock:
            return [a.verdict for a in self.arrivals]

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


# -- delivery and every answer ----------------------------------------------------------------


def test_an_event_arrives_signed_with_its_id_and_type(receiver: Receiver) -> None:
    event = sample_event()
    receiver.sink().deliver(event)
    (arrival,) = receiver.arrivals
    assert arrival.verdict == "accepted"
    assert arrival.path == "/hooks/returns?shop=1"
    assert arrival.headers[EVENT_ID_HEADER] == event.key
    assert arrival.headers["Idempotency-Key"] == event.key
    assert arrival.headers[EVENT_TYPE_HEADER] == "approved"
    assert arrival.headers["Content-Type"] == "application/json; charset=utf-8"
    assert arrival.headers["User-Agent"].startswith("retouraanvraag/")
    assert parse_event(arrival.body) == event
    assert receiver.accepted == {event.key: event}


@pytest.mark.parametrize("status", [200, 201, 202, 204, 299])
def test_any_2xx_is_delivered(receiver: Receiver, status: int) -> None:
    receiver.then(Behaviour(status))
    receiver.sink().deliver(sample_event())
    assert receiver.verdicts() == ["accepted"]


@pytest.mark.parametrize("status", [400, 401, 403, 404, 405, 409, 410, 413, 415, 422, 451, 499])
def test_a_4xx_refuses_for_good(receiver: Receiver, status: int) -> None:
    receiver.then(Behaviour(status))
    with pytest.raises(PortRejected, match=str(status)) as caught:
        receiver.sink().deliver(sample_event())
    assert sample_event().key in str(caught.value)


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504, 599])
def test_408_429_and_5xx_are_transient(receiver: Receiver, status: int) -> None:
    receiver.then(Behaviour(status))
    with pytest.raises(PortUnavailable, match=str(status)) as caught:
        receiver.sink().deliver(sample_event())
    assert caught.value.retry_after is None


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_not_followed(receiver: Receiver, status: int) -> None:
    receiver.then(Behaviour(status, {"Location": "/elsewhere"}))
    with pytest.raises(PortRejected, match="redirect"):
        receiver.sink().deliver(sample_event())
    assert [a.path for a in receiver.arrivals] == ["/hooks/returns?shop=1"]


@pytest.mark.parametrize(("status", "answer"), [(100, "not an answer"), (600, "not an answer")])
def test_an_answer_outside_http_is_refused(status: int, answer: str) -> None:
    sink = WebhookSink("http://127.0.0.1:9/", SECRET)
    with pytest.raises(PortRejected, match=answer):
        sink._judge("event:k", status, None)


def test_retry_after_in_seconds_is_passed_on(receiver: Receiver) -> None:
    receiver.then(Behaviour(429, {"Retry-After": "120"}))
    with pytest.raises(PortUnavailable) as caught:
        receiver.sink().deliver(sample_event())
    assert caught.value.retry_after == dt.timedelta(seconds=120)


def test_retry_after_as_a_date_is_passed_on(receiver: Receiver) -> None:
    later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=10)
    receiver.then(Behaviour(503, {"Retry-After": email.utils.format_datetime(later, usegmt=True)}))
    with pytest.raises(PortUnavailable) as caught:
        receiver.sink().deliver(sample_event())
    wait = caught.value.retry_after
    assert wait is not None
    assert dt.timedelta(minutes=9) <= wait <= dt.timedelta(minutes=10)


@pytest.mark.parametrize("value", ["soon", "-5", "", "1.5", "Mon, 99 Foo 2026", "9" * 40])
def test_an_unreadable_or_huge_retry_after_is_ignored_or_bounded(
    receiver: Receiver, value: str
) -> None:
    receiver.then(Behaviour(503, {"Retry-After": value}))
    with pytest.raises(PortUnavailable) as caught:
        receiver.sink().deliver(sample_event())
    wait = caught.value.retry_after
    assert wait is None or dt.timedelta(0) <= wait <= dt.timedelta(days=30)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("0000000000000120", 120),  # leading zeros are the same number
        ("0" * 40 + "7", 7),
        ("0", 0),
        ("9" * 13, 30 * 24 * 3600),  # beyond 30 days: 30 days
    ],
)
def test_retry_after_in_seconds_is_read_whole(value: str, seconds: int) -> None:
    now = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    assert _retry_after(value, now) == dt.timedelta(seconds=seconds)


def test_a_receiver_that_answers_a_byte_at_a_time_is_cut_off_at_the_timeout() -> None:
    """``timeout`` bounds the whole delivery, not each read: a drip never holds a worker."""
    stop = threading.Event()
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)

        def drip() -> None:
            connection, _ = server.accept()
            with connection, contextlib.suppress(OSError):
                connection.recv(65536)
                # Each byte comes well within the timeout; the whole answer takes 6 s.
                for byte in b"HTTP/1.1 204 No Content\r\nX-Slow: " + b"a" * 100:
                    if stop.wait(0.05):
                        return
                    connection.sendall(bytes([byte]))
                connection.sendall(b"\r\nContent-Length: 0\r\n\r\n")

        thread = threading.Thread(target=drip, daemon=True)
        thread.start()
        sink = WebhookSink(f"http://127.0.0.1:{server.getsockname()[1]}/", SECRET, timeout=0.5)
        try:
            with pytest.raises(PortUnavailable, match=r"no answer within 0\.5 s"):
                sink.deliver(sample_event())
        finally:
            stop.set()
            thread.join(10)


def test_a_receiver_that_hangs_times_out_as_transient(receiver: Receiver) -> None:
    receiver.then(Behaviour(hang=True))
    with pytest.raises(PortUnavailable, match="no answer") as caught:
        receiver.sink(timeout=0.3).deliver(sample_event())
    assert isinstance(caught.value.__cause__, TimeoutError)


def test_a_receiver_that_closes_the_connection_is_transient(receiver: Receiver) -> None:
    receiver.then(Behaviour(close_before=True))
    with pytest.raises(PortUnavailable, match="no answer"):
        receiver.sink().deliver(sample_event())
    assert receiver.accepted == {}


def test_no_receiver_listening_is_transient() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(PortUnavailable, match="no answer"):
        WebhookSink(f"http://127.0.0.1:{port}/", SECRET, timeout=2).deliver(sample_event())


# -- the overall timeout: connecting and the TLS handshake too -------------------------------

#: Far beyond any timeout these tests set: only there to end a test that would hang.
HANG_GUARD = 5.0


class silent_server:  # noqa: N801 - used as a context manager, reads as one
    """A TCP server on loopback that takes one connection and never answers.

    It reads what comes (a TLS client's hello) until the client goes, or with ``drip`` sends
    a TLS record header and then one byte at a time, each well within any timeout here, so
    that only a bound on the whole handshake ends it.
    """

    def __init__(self, *, drip: bool = False) -> None:
        self.drip = drip
        self.stop = threading.Event()
        self.connected = threading.Event()
        self.server = socket.create_server(("127.0.0.1", 0))
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        connection, _ = self.server.accept()
        self.connected.set()
        with connection, contextlib.suppress(OSError):
            connection.recv(65536)
            if self.drip:
                connection.sendall(b"\x16\x03\x03\x40\x00")  # a 16 KiB handshake record
                while not self.stop.wait(0.05):
                    connection.sendall(b"\x00")
            while not self.stop.is_set() and connection.recv(65536):
                pass

    def __enter__(self) -> int:
        self.thread.start()
        port: int = self.server.getsockname()[1]
        return port

    def __exit__(self, *_exc: object) -> None:
        self.stop.set()
        with contextlib.suppress(OSError):  # a server that was never connected to
            socket.create_connection(self.server.getsockname(), timeout=1).close()
        self.thread.join(10)
        self.server.close()


@pytest.mark.parametrize("drip", [False, True], ids=["silent", "a byte at a time"])
def test_a_receiver_that_never_completes_the_tls_handshake_times_out_as_transient(
    certificate: tuple[Path, Path], *, drip: bool
) -> None:
    """It takes the connection and reads the hello, but the handshake never finishes."""
    with silent_server(drip=drip) as port:
        sink = WebhookSink(
            f"https://127.0.0.1:{port}/hooks",
            SECRET,
            timeout=0.5,
            ssl_context=trusting(certificate[0]),
        )
        started = time.monotonic()
        with pytest.raises(PortUnavailable, match=r"no answer within 0\.5 s") as caught:
            sink.deliver(sample_event())
        assert time.monotonic() - started < 0.5 + HANG_GUARD
    assert isinstance(caught.value.__cause__, TimeoutError)


def _held_back_address() -> tuple[socket.socket, list[socket.socket]]:
    """A listening socket whose queue is full, so that a connect to it waits for good.

    Linux drops the handshake of a connection to a listener whose queue is full (the client
    keeps trying): that is a loopback address that never answers a connect.
    """
    listener = socket.create_server(("127.0.0.1", 0), backlog=0)
    fillers: list[socket.socket] = []
    for _ in range(8):
        try:
            fillers.append(socket.create_connection(listener.getsockname(), timeout=0.3))
        except TimeoutError:
            return listener, fillers
    for sock in (listener, *fillers):
        sock.close()
    pytest.skip("this system refuses or takes connections to a full queue, never holds them")


def _resolving_to(
    monkeypatch: pytest.MonkeyPatch, *ports: int, delay: float = 0.0
) -> list[tuple[str, int]]:
    """Make every name resolve to these loopback ports, in order; returns the look-ups."""
    lookups: list[tuple[str, int]] = []

    def getaddrinfo(host: str, port: int, *_args: object, **_kwargs: object) -> list[object]:
        lookups.append((host, port))
        time.sleep(delay)  # a slow resolver, not a wait for a thread
        return [
            (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("127.0.0.1", p))
            for p in ports
        ]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return lookups


def _connected_to(listener: socket.socket) -> bool:
    """Whether anyone connected to ``listener`` (its queue keeps a connection until taken)."""
    listener.setblocking(False)
    try:
        connection, _ = listener.accept()
    except BlockingIOError:
        return False
    connection.close()
    return True


def test_a_connect_that_hangs_spends_the_whole_timeout_not_one_per_address(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two addresses, the first never answering: the second would be too late, so none is."""
    held, fillers = _held_back_address()
    with held, socket.create_server(("127.0.0.1", 0)) as second:
        try:
            _resolving_to(monkeypatch, held.getsockname()[1], second.getsockname()[1])
            started = time.monotonic()
            with pytest.raises(PortUnavailable, match=r"no answer within 0\.5 s") as caught:
                WebhookSink("http://hooks.example/", SECRET, timeout=0.5).deliver(sample_event())
            assert time.monotonic() - started < 0.5 + HANG_GUARD
        finally:
            for sock in fillers:
                sock.close()
        assert isinstance(caught.value.__cause__, TimeoutError)
        assert not _connected_to(second)


def test_an_address_that_refuses_is_skipped_for_the_next(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    lookups = _resolving_to(monkeypatch, closed, receiver.server.server_address[1])
    WebhookSink("http://hooks.example:8443/", SECRET, timeout=5).deliver(sample_event())
    assert lookups == [("hooks.example", 8443)]
    assert receiver.verdicts() == ["accepted"]


def test_a_name_lookup_that_returns_too_late_ends_the_try_without_connecting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The lookup itself cannot be cut short; once it returns, a spent timeout ends the try."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        _resolving_to(monkeypatch, listener.getsockname()[1], delay=0.4)
        with pytest.raises(PortUnavailable, match=r"no answer within 0\.2 s") as caught:
            WebhookSink("http://hooks.example/", SECRET, timeout=0.2).deliver(sample_event())
        assert isinstance(caught.value.__cause__, TimeoutError)
        assert not _connected_to(listener)


def test_a_retry_after_a_lost_ack_is_recognised_by_its_event_id(receiver: Receiver) -> None:
    receiver.then(Behaviour(close_after=True))
    sink = receiver.sink()
    event = sample_event()
    with pytest.raises(PortUnavailable):
        sink.deliver(event)  # the receiver took it; its answer never came
    sink.deliver(event)
    assert receiver.verdicts() == ["accepted", "duplicate"]
    first, again = receiver.arrivals
    assert first.headers[EVENT_ID_HEADER] == again.headers[EVENT_ID_HEADER] == event.key
    assert first.body == again.body
    assert receiver.accepted == {event.key: event}


def test_a_replay_under_another_event_id_header_is_still_the_same_event(
    receiver: Receiver,
) -> None:
    """The id header is not signed: a receiver dedupes by the key in the verified body."""
    event = sample_event()
    receiver.sink().deliver(event)
    (arrival,) = receiver.arrivals
    for forged_id in ("event:x:1", "event:x:2"):
        connection = http.client.HTTPConnection("127.0.0.1", receiver.server.server_address[1])
        headers = {
            SIGNATURE_HEADER: arrival.headers[SIGNATURE_HEADER],
            EVENT_ID_HEADER: forged_id,
            "Content-Type": "application/json",
        }
        connection.request("POST", "/hooks/returns", body=arrival.body, headers=headers)
        assert connection.getresponse().status == 200  # it verifies: body and t are unchanged
        connection.close()
    assert receiver.verdicts() == ["accepted", "duplicate", "duplicate"]
    assert receiver.accepted == {event.key: event}


# -- signatures at the receiver ---------------------------------------------------------------


def test_a_sink_with_another_secret_is_refused_by_the_receiver(receiver: Receiver) -> None:
    with pytest.raises(PortRejected, match="400"):
        receiver.sink(secret=OTHER_SECRET).deliver(sample_event())
    assert receiver.verdicts() == [
        "refused: no matching signature (another secret, or another body)"
    ]
    assert receiver.accepted == {}


def test_a_replayed_signature_is_refused_once_it_is_old(receiver: Receiver) -> None:
    receiver.sink().deliver(sample_event())
    (arrival,) = receiver.arrivals
    header = arrival.headers[SIGNATURE_HEADER]
    signed = verify_signature(SECRET, header, arrival.body)
    later = signed + dt.timedelta(minutes=5, seconds=1)
    with pytest.raises(InvalidSignature, match="expired"):
        verify_signature(SECRET, header, arrival.body, now=later)
    # Within the tolerance a replay verifies: the receiver knows the key in its body already.
    assert verify_signature(SECRET, header, arrival.body, now=signed + dt.timedelta(minutes=4))


def test_a_replayed_signature_over_another_body_is_refused(receiver: Receiver) -> None:
    receiver.sink().deliver(sample_event())
    (arrival,) = receiver.arrivals
    forged = parse_event(arrival.body)
    body = arrival.body.replace(b'"version":2', b'"version":9')
    assert body != arrival.body
    assert forged.version == 2
    with pytest.raises(InvalidSignature, match="no matching signature"):
        verify_signature(SECRET, arrival.headers[SIGNATURE_HEADER], body)


def test_a_forged_post_to_the_receiver_is_refused(receiver: Receiver) -> None:
    body = b'{"type":"refunded"}'
    stamp = int(dt.datetime.now(dt.UTC).timestamp())
    forged = f"t={stamp},v1={hmac.new(b'guess' * 4, body, hashlib.sha256).hexdigest()}"
    for header in (None, forged, f"t={stamp}", "v1=" + "0" * 64):
        connection = http.client.HTTPConnection("127.0.0.1", receiver.server.server_address[1])
        headers = {"Content-Type": "application/json", EVENT_ID_HEADER: "event:x"}
        if header is not None:
            headers[SIGNATURE_HEADER] = header
        connection.request("POST", "/hooks/returns", body=body, headers=headers)
        assert connection.getresponse().status == 400
        connection.close()
    assert all(v.startswith("refused") for v in receiver.verdicts())
    assert receiver.accepted == {}


def test_a_signature_from_the_future_is_refused() -> None:
    body = b"{}"
    now = dt.datetime(2026, 11, 26, 12, tzinfo=dt.UTC)
    header = signature_header(SECRET, body, int(now.timestamp()) + 301)
    with pytest.raises(InvalidSignature, match="future"):
        verify_signature(SECRET, header, body, now=now)


def test_rotating_secrets_signs_under_each_and_verifies_with_either(receiver: Receiver) -> None:
    """While a secret is replaced, the sink signs with both; a receiver knowing one accepts."""
    receiver.sink(secret=[OTHER_SECRET, SECRET]).deliver(sample_event())
    (arrival,) = receiver.arrivals
    header = arrival.headers[SIGNATURE_HEADER]
    assert header.count("v1=") == 2
    assert arrival.verdict == "accepted"
    assert verify_signature(OTHER_SECRET, header, arrival.body)
    assert verify_signature([b"x" * 16, OTHER_SECRET], header, arrival.body)
    with pytest.raises(InvalidSignature):
        verify_signature(b"y" * 16, header, arrival.body)


BODY = st.binary(max_size=2048)
SECRETS = st.binary(min_size=16, max_size=64)
STAMPS = st.integers(min_value=0, max_value=4_102_444_800)  # 1970 to 2100


def _at(stamp: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(stamp, dt.UTC)


@given(secret=SECRETS, body=BODY, stamp=STAMPS)
@settings(max_examples=200)
def test_any_body_and_secret_round_trip(secret: bytes, body: bytes, stamp: int) -> None:
    header = signature_header(secret, body, stamp)
    assert verify_signature(secret, header, body, now=_at(stamp)) == _at(stamp)
    text_secret = secret.hex()
    header = signature_header(text_secret, body, stamp)
    assert verify_signature(text_secret, header, body, now=_at(stamp)) == _at(stamp)


@given(secret=SECRETS, body=BODY.filter(bool), stamp=STAMPS, data=st.data())
@settings(max_examples=200)
def test_any_single_byte_change_of_the_body_is_refused(
    secret: bytes, body: bytes, stamp: int, data: st.DataObject
) -> None:
    header = signature_header(secret, body, stamp)
    index = data.draw(st.integers(0, len(body) - 1))
    value = data.draw(st.integers(0, 255).filter(lambda b: b != body[index]))
    changed = body[:index] + bytes([value]) + body[index + 1 :]
    with pytest.raises(InvalidSignature):
        verify_signature(secret, header, changed, now=_at(stamp))


@given(secret=SECRETS, body=BODY, stamp=STAMPS, data=st.data())
@settings(max_examples=200)
def test_any_single_character_change_of_the_header_is_refused(
    secret: bytes, body: bytes, stamp: int, data: st.DataObject
) -> None:
    header = signature_header(secret, body, stamp)
    index = data.draw(st.integers(0, len(header) - 1))
    char = data.draw(st.characters(codec="ascii").filter(lambda c: c != header[index]))
    changed = header[:index] + char + header[index + 1 :]
    with pytest.raises(InvalidSignature):
        verify_signature(secret, changed, body, now=_at(stamp), tolerance=dt.timedelta(days=1))


@given(secret=SECRETS, other=SECRETS, body=BODY, stamp=STAMPS)
def test_another_secret_never_verifies(
    secret: bytes, other: bytes, body: bytes, stamp: int
) -> None:
    header = signature_header(secret, body, stamp)
    if other != secret:
        with pytest.raises(InvalidSignature):
            verify_signature(other, header, body, now=_at(stamp))


@given(header=st.text(max_size=300))
def test_any_text_as_a_header_is_refused_as_a_signature_problem(header: str) -> None:
    with pytest.raises(InvalidSignature):
        verify_signature(SECRET, header, b"{}", now=_at(10**9))


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, "no Retouraanvraag-Signature header"),
        ("", "no Retouraanvraag-Signature header"),
        ("t=1", "no v1 signature"),
        ("v1=" + "a" * 64, "no timestamp"),
        ("t=1,t=2,v1=" + "a" * 64, "two timestamps"),
        ("t=-1,v1=" + "a" * 64, "whole Unix seconds"),
        ("t=1.5,v1=" + "a" * 64, "whole Unix seconds"),
        ("t=١٢,v1=" + "a" * 64, "whole Unix seconds"),
        ("t=1,v1=" + "A" * 64, "64 lowercase hex"),
        ("t=1,v1=abc", "64 lowercase hex"),
        ("t=1,v1", "malformed"),
        ("t=1," + "v0=x," * 1000, "longer than"),
        ("t=999999999999,v1=" + "a" * 64, "future"),  # beyond any datetime: still refused
    ],
)
def test_a_malformed_header_is_refused_saying_why(header: str | None, reason: str) -> None:
    with pytest.raises(InvalidSignature, match=reason) as caught:
        verify_signature(SECRET, header, b"{}", now=_at(1))
    if header:
        assert header[:20] not in str(caught.value) or header[:20] == "t=1"


def test_a_timestamp_no_clock_can_show_is_refused_even_with_a_vast_tolerance() -> None:
    header = signature_header(SECRET, b"{}", 999_999_999_999)
    with pytest.raises(InvalidSignature, match="beyond the dates"):
        verify_signature(SECRET, header, b"{}", tolerance=dt.timedelta(days=10**8))


def test_unknown_schemes_beside_v1_are_skipped() -> None:
    header = signature_header(SECRET, b"{}", 1) + ",v0=whatever,v2=later"
    assert verify_signature(SECRET, header, b"{}", now=_at(1)) == _at(1)


@pytest.mark.parametrize("malformed", ["zz", "", "A" * 64, "a" * 63])
def test_a_malformed_v1_beside_one_that_matches_is_skipped(malformed: str) -> None:
    """As Stripe's parser does: a v1 that cannot be a signature cannot match, so it is skipped."""
    good = signature_header(SECRET, b"{}", 1)
    for header in (f"{good},v1={malformed}", f"t=1,v1={malformed},{good[4:]}"):
        assert verify_signature(SECRET, header, b"{}", now=_at(1)) == _at(1)
    with pytest.raises(InvalidSignature, match="no v1 signature of 64 lowercase hex"):
        verify_signature(SECRET, f"t=1,v1={malformed}", b"{}", now=_at(1))


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"secret": b"short"}, "secret"),
        ({"secret": []}, "secret"),
        ({"secret": [SECRET, 5]}, "secret"),
        ({"body": "text"}, "body"),
        ({"tolerance": dt.timedelta(0)}, "tolerance"),
        ({"tolerance": 300}, "tolerance"),
        ({"now": dt.datetime(2026, 1, 1)}, "now"),  # noqa: DTZ001 - naive on purpose
    ],
)
def test_a_verifier_misused_is_told_by_the_argument(
    arguments: dict[str, object], field: str
) -> None:
    options: dict[str, object] = {"secret": SECRET, "header": "t=1", "body": b"{}"}
    options.update(arguments)
    with pytest.raises(InvalidInput) as caught:
        verify_signature(**options)  # type: ignore[arg-type]
    assert caught.value.field == field


# -- the sink's own settings ------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "ftp://hooks.example/x",
        "file:///etc/passwd",
        "gopher://hooks.example/",
        "hooks.example/x",
        "https://",
        "https://user:pw@hooks.example/x",
        "https://token@hooks.example/x",
        "https://hooks.example/x#frag",
        "https://hooks.example:99999/x",
        "https://hooks.example:port/x",
        "https://hooks.example/x\r\nX-Evil: 1",
        "https://hooks.example/a b",
        "https://hooks.example/\x00",
        "",
        "http://[notipv6]/x",  # urlsplit's own ValueError, as InvalidInput
        "http://[::1/x",
        "https://hooks.example:0/x",  # no receiver listens on port 0
        "http://127.0.0.1/p\u00e4th",  # a request line is ASCII: percent-encode it
        "http://127.0.0.1/?q=\u00e4",
        f"http://\u00e4{'a' * 70}.example/",  # no IDNA name: a label over 63 characters
    ],
)
def test_a_url_that_is_not_plain_http_is_refused(url: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        WebhookSink(url, SECRET)
    assert caught.value.field == "url"
    assert "pw" not in str(caught.value)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://[::1]:8080/hook", "WebhookSink(http://[::1]:8080/…)"),
        ("https://hooks.example/x", "WebhookSink(https://hooks.example:443/…)"),
        ("http://b\u00fccher.example/x", "WebhookSink(http://b\u00fccher.example:80/…)"),
        ("http://127.0.0.1/p%C3%A4th", "WebhookSink(http://127.0.0.1:80/…)"),
    ],
)
def test_a_url_it_takes_is_shown_by_host_and_port_as_a_url(url: str, shown: str) -> None:
    assert repr(WebhookSink(url, SECRET)) == shown


@pytest.mark.parametrize("key", ["event:\u20ac", "event:a\r\nX-Evil: 1"])
def test_an_event_no_request_can_carry_is_refused_for_good(receiver: Receiver, key: str) -> None:
    """Not retried for two days: the same event can never be written as a request."""
    with pytest.raises(PortRejected, match="cannot be sent"):
        receiver.sink().deliver(sample_event(key=key))
    assert receiver.arrivals == []


@pytest.mark.parametrize("timeout", [0, -1, float("nan"), float("inf"), True, "10"])
def test_a_timeout_that_is_not_positive_seconds_is_refused(timeout: object) -> None:
    with pytest.raises(InvalidInput, match="timeout"):
        WebhookSink("https://hooks.example/", SECRET, timeout=timeout)  # type: ignore[arg-type]


def test_the_sink_shows_neither_secret_nor_path() -> None:
    sink = WebhookSink("https://hooks.example/secret-path?token=abc", SECRET)
    shown = repr(sink)
    assert "hooks.example:443" in shown
    assert "secret-path" not in shown
    assert "token" not in shown
    assert SECRET.decode() not in shown


def test_https_with_a_certificate_that_does_not_verify_is_refused(
    certificate: tuple[Path, Path],
) -> None:
    with tls_receiver(certificate) as url:
        with pytest.raises(PortRejected, match="certificate"):
            WebhookSink(url, SECRET, timeout=5).deliver(sample_event())
        context = trusting(certificate[0])
        WebhookSink(url, SECRET, timeout=5, ssl_context=context).deliver(sample_event())


class tls_receiver:  # noqa: N801 - used as a context manager, reads as one
    """A receiver speaking TLS with the test certificate."""

    def __init__(self, certificate: tuple[Path, Path]) -> None:
        self.receiver = Receiver()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(*certificate)
        server = self.receiver.server
        server.socket = context.wrap_socket(server.socket, server_side=True)

    def __enter__(self) -> str:
        return self.receiver.url.replace("http://", "https://")

    def __exit__(self, *_exc: object) -> None:
        self.receiver.close()


# -- the contract, against the real receiver --------------------------------------------------


class TestWebhookSink(EventSinkContract):
    """Every arrival that verified, repeats included: over HTTP a retry may arrive again."""

    def setup_method(self) -> None:
        self.receivers: list[Receiver] = []

    def teardown_method(self) -> None:
        for receiver in self.receivers:
            receiver.close()

    def make_sink(self) -> EventSink:
        receiver = Receiver()
        self.receivers.append(receiver)
        return receiver.sink()

    def received(self, sink: EventSink) -> Sequence[Event]:
        assert isinstance(sink, WebhookSink)
        (receiver,) = [
            r for r in self.receivers if r.url.startswith(f"http://{sink.host}:{sink.port}/")
        ]
        return [
            parse_event(a.body) for a in receiver.arrivals if a.verdict in {"accepted", "duplicate"}
        ]


class TestWebhookSinkWithADeduplicatingReceiver(TestWebhookSink):
    """What a receiver that keeps each event key once ends up with: exactly once."""

    exactly_once = True

    def received(self, sink: EventSink) -> Sequence[Event]:
        assert isinstance(sink, WebhookSink)
        (receiver,) = [
            r for r in self.receivers if r.url.startswith(f"http://{sink.host}:{sink.port}/")
        ]
        return list(receiver.accepted.values())


# -- end to end: desk, dispatcher, SQLite, webhook --------------------------------------------


def test_a_whole_lifecycle_reaches_the_receiver_once_per_key(
    tmp_path: Path, receiver: Receiver
) -> None:
    """Including a label given up and retried, a busy receiver and a lost acknowledgement."""
    with SqliteStorage(tmp_path / "returns.sqlite3") as storage:
        world = build_world(storage)
        desk = Desk(storage, photos=world.photos, clock=world.clock, events=True)
        labels = inject_faults(
            FakeLabels(), fail_nth(1, Fault.BEFORE, method="create_label"), error=PortRejected
        )
        dispatcher = world.make_dispatcher(labels=labels, events=receiver.sink())

        def drain() -> None:
            for _ in range(20):
                dispatcher.run_until_idle()
                outbox = storage.outbox(SHOP, request.id)
                if all(e.state is not EffectState.PENDING for e in outbox):
                    return
                world.clock.advance(dt.timedelta(hours=7))
            raise AssertionError("the outbox did not drain")

        # The receiver is busy once, and loses its answer once.
        receiver.then(
            Behaviour(), Behaviour(503, {"Retry-After": "60"}), Behaviour(close_after=True)
        )
        request = desk.submit(world.new_request(), idempotency_key="submit-1")
        desk.approve(SHOP, request.id, with_label=True, refund_return_fee=True, actor=STAFF)
        drain()
        assert desk.get(SHOP, request.id).needs_attention  # the carrier refused the label
        desk.resolve_attention(SHOP, request.id, actor=STAFF, retry=True)
        drain()
        desk.mark_received(SHOP, request.id, actor=STAFF)
        desk.complete(SHOP, request.id, actor=STAFF)
        drain()
        stored = desk.get(SHOP, request.id)

    expected = {
        event_key(SHOP, request.id, kind, 1)
        for kind in (
            EventType.SUBMITTED,
            EventType.APPROVED,
            EventType.REFUNDED,
            EventType.NEEDS_ATTENTION,
            EventType.LABEL_CREATED,
            EventType.RECEIVED,
            EventType.COMPLETED,
        )
    }
    assert set(receiver.accepted) == expected
    verdicts = receiver.verdicts()
    assert verdicts.count("accepted") == len(expected)
    assert verdicts.count("duplicate") == 1  # the lost acknowledgement, recognised by its id
    assert verdicts.count("answered 503") == 1
    assert not any(v.startswith("refused") for v in verdicts)
    events = sorted(receiver.accepted.values(), key=lambda e: (e.version, e.occurred_at))
    assert events[0].type is EventType.SUBMITTED
    assert events[-1].type is EventType.COMPLETED
    assert events[-1].version == stored.version
    label = receiver.accepted[event_key(SHOP, request.id, EventType.LABEL_CREATED, 1)]
    assert stored.label is not None
    assert label.tracking_number == stored.label.tracking_number
    assert label.effect == stored.label_key  # the second attempt's key
    attention = receiver.accepted[event_key(SHOP, request.id, EventType.NEEDS_ATTENTION, 1)]
    assert attention.effect is not None
    assert attention.effect.endswith(":1")  # the first attempt's label
    # No body names the customer.
    assert all(
        b"jan@example.nl" not in a.body and b"Jansen" not in a.body for a in receiver.arrivals
    )


def test_a_receiver_refusing_an_event_flags_the_request_once(
    tmp_path: Path, receiver: Receiver
) -> None:
    """A 410 gives that event up; the request needs attention; no event chases it."""
    with SqliteStorage(tmp_path / "returns.sqlite3") as storage:
        world = build_world(storage)
        desk = Desk(storage, photos=world.photos, clock=world.clock, events=True)
        receiver.then(Behaviour(410))
        request = desk.submit(world.new_request())
        world.make_dispatcher(events=receiver.sink()).run_until_idle()
        stored = desk.get(SHOP, request.id)
        outbox = {e.key: e.state for e in storage.outbox(SHOP, request.id)}
    submitted = event_key(SHOP, request.id, EventType.SUBMITTED, 1)
    assert stored.needs_attention
    assert outbox[submitted] is EffectState.DEAD
    assert "410" in stored.attention[0]
    assert len(receiver.arrivals) == 1
    assert not any(":needs_attention:" in k for k in outbox)
