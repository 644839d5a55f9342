"""An event sink that POSTs each event to the host's URL, signed (stdlib :mod:`http.client`).

**The request.** One ``POST`` per try, the event as a JSON object (``docs/events.md``), with
these headers:

- ``Retouraanvraag-Signature: t=<unix seconds>,v1=<hex>``: the HMAC-SHA256, under the shared
  secret, of ``"<t>.<body>"``, as Stripe signs its webhooks. With several secrets (while one
  is being replaced) there is one ``v1`` per secret; a receiver that knows any of them accepts.
  Each try is signed anew, so ``t`` says when the try was sent, not when the event happened.
- ``Retouraanvraag-Event-Id`` (and ``Idempotency-Key``): the event's key, the same on every
  try. **Delivery is at least once**: when the receiver took an event but its answer was lost
  (a dropped connection, a timeout after the body was sent), the retry delivers it again, so a
  receiver keeps the keys it has handled and answers a repeat with ``2xx`` doing nothing.
- ``Retouraanvraag-Event-Type``: the event's type, for routing without parsing the body.

**Only ``t`` and the body are signed.** The id and type headers are unsigned hints (for logs
and routing): whoever saw one request can replay its body and signature, within the
tolerance, under any id header. A receiver dedupes by the ``key`` in the verified body
(:func:`parse_event`), never by a header.

**The answer.** ``2xx`` is delivered. A redirect is not followed (it would take a signed body
to a URL nobody configured) and is permanent, as is any other ``4xx`` except ``408`` and
``429``: the dispatcher gives the event up and the request needs attention. ``408``, ``429``,
``5xx``, a refused or dropped connection and a timeout are transient: the dispatcher retries
with backoff, and waits at least what ``Retry-After`` asks (within its ``backoff_cap``). A
server certificate that does not verify is permanent.

**The receiver** checks the signature with :func:`verify_signature` over the raw body, before
it parses anything, and refuses (``400``) what does not verify.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import email.utils
import hashlib
import hmac
import http.client
import io
import math
import re
import socket
import ssl
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final
from urllib.parse import SplitResult, urlsplit

from retouraanvraag import __version__
from retouraanvraag._codec import event_from_json, event_to_json
from retouraanvraag.errors import InvalidInput, InvalidSignature, PortRejected, PortUnavailable
from retouraanvraag.model import Event
from retouraanvraag.ports import Clock, SystemClock

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

__all__ = [
    "DEFAULT_TOLERANCE",
    "EVENT_ID_HEADER",
    "EVENT_TYPE_HEADER",
    "SIGNATURE_HEADER",
    "WebhookSink",
    "event_body",
    "parse_event",
    "signature_header",
    "verify_signature",
]

#: The header carrying ``t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">``.
SIGNATURE_HEADER: Final = "Retouraanvraag-Signature"
#: The header carrying the event's key, the same on every try; not signed: a hint for logs,
#: a receiver dedupes by the key in the verified body.
EVENT_ID_HEADER: Final = "Retouraanvraag-Event-Id"
#: The header carrying the event's type; not signed: a hint for routing.
EVENT_TYPE_HEADER: Final = "Retouraanvraag-Event-Type"
#: How old (or how far ahead of the receiver's clock) a signature may be.
DEFAULT_TOLERANCE: Final = dt.timedelta(minutes=5)

#: A shorter secret is refused: it could be guessed from signed bodies.
_MIN_SECRET_BYTES: Final = 16
_MAX_HEADER: Final = 4096
_HEX_SIGNATURE: Final = re.compile(r"[0-9a-f]{64}")
_TIMESTAMP: Final = re.compile(r"[0-9]{1,12}")
_HTTP_OK: Final = range(200, 300)
_HTTP_REDIRECT: Final = range(300, 400)
_HTTP_CLIENT_ERROR: Final = range(400, 500)
_HTTP_SERVER_ERROR: Final = range(500, 600)
_TRANSIENT_CLIENT_ERRORS: Final = frozenset({408, 429})
#: The longest ``Retry-After`` taken at its word (the dispatcher caps it further).
_MAX_RETRY_AFTER: Final = dt.timedelta(days=30)

Secret = str | bytes
Secrets = Secret | Sequence[Secret]


def _secrets(value: object, field: str = "secret") -> tuple[bytes, ...]:
    """The secrets as bytes, the first one first; refused by ``field`` when unusable."""
    listed = [value] if isinstance(value, str | bytes) else value
    if not isinstance(listed, Sequence) or not listed:
        raise InvalidInput("give a secret (text or bytes) or a list of them", field=field)
    keys: list[bytes] = []
    for secret in listed:
        if not isinstance(secret, str | bytes):
            raise InvalidInput(
                f"a secret is text or bytes, not {type(secret).__name__}", field=field
            )
        key = secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)
        if len(key) < _MIN_SECRET_BYTES:
            raise InvalidInput(f"a secret is at least {_MIN_SECRET_BYTES} bytes", field=field)
        keys.append(key)
    return tuple(keys)


def _body(value: object) -> bytes:
    if not isinstance(value, bytes | bytearray | memoryview):
        raise InvalidInput(
            f"the body is the raw bytes received, not {type(value).__name__}", field="body"
        )
    return bytes(value)


def _sign(key: bytes, timestamp: int, body: bytes) -> str:
    return hmac.new(key, b"%d." % timestamp + body, hashlib.sha256).hexdigest()


def signature_header(secret: Secrets, body: bytes, timestamp: int) -> str:
    """The signature header's value for ``body`` sent at ``timestamp`` (Unix seconds).

    One ``v1`` per secret, in the order given: ``t=1764158400,v1=5f…,v1=9a…``.

    Raises:
        InvalidInput: a secret shorter than 16 bytes, a body that is not bytes, a timestamp
            that is not a whole number of seconds from 0.
    """
    keys = _secrets(secret)
    data = _body(body)
    if isinstance(timestamp, bool) or not isinstance(timestamp, int) or timestamp < 0:
        raise InvalidInput("must be whole Unix seconds, from 0", field="timestamp")
    return ",".join([f"t={timestamp}", *(f"v1={_sign(key, timestamp, data)}" for key in keys)])


def verify_signature(
    secret: Secrets,
    header: str | None,
    body: bytes,
    *,
    tolerance: dt.timedelta = DEFAULT_TOLERANCE,
    now: dt.datetime | None = None,
) -> dt.datetime:
    """Check that ``body`` was signed by the shop, recently; returns when it was signed.

    For the receiving end of a :class:`WebhookSink`: pass the raw body as received and the
    ``Retouraanvraag-Signature`` header. Every ``v1`` value in the header is compared, in
    constant time, with the signature under every secret given (the new and the old one while
    a secret is replaced); one match is enough. The signature must be at most ``tolerance``
    old and at most ``tolerance`` ahead of ``now``: a header captured and replayed later is
    refused. Within the tolerance a replay verifies; its body carries an event key the
    receiver has seen, so dedupe by that key (:func:`parse_event`), never by the unsigned
    id header. A ``v1`` that is not 64 lowercase hex digits cannot match and is skipped, as
    other schemes are; one must match.

    Args:
        secret: the shared secret, or several.
        header: the header's value (``None`` when the request had none).
        body: the request body, the bytes exactly as received.
        tolerance: how far the signing time may lie from ``now``.
        now: the receiver's time (aware; the system clock by default).

    Returns:
        When the body was signed (aware, UTC).

    Raises:
        InvalidSignature: no header, a malformed one, no ``v1`` that matches, or a signing
            time outside the tolerance; the message says which and shows neither the header
            nor the body.
        InvalidInput: an unusable secret, a body that is not bytes, a tolerance that is not a
            positive timedelta, a naive ``now``.
    """
    keys = _secrets(secret)
    data = _body(body)
    if not isinstance(tolerance, dt.timedelta) or tolerance <= dt.timedelta(0):
        raise InvalidInput("must be a positive timedelta", field="tolerance")
    if now is not None and (not isinstance(now, dt.datetime) or now.utcoffset() is None):
        raise InvalidInput("must be an aware datetime", field="now")
    timestamp, signatures = _parse_header(header)
    moment = now if now is not None else dt.datetime.now(dt.UTC)
    # In seconds, not datetimes: a header may name any moment, even one no datetime holds.
    age = moment.timestamp() - timestamp
    if age > tolerance.total_seconds():
        raise InvalidSignature(f"expired (signed {int(age)} s ago)")
    if -age > tolerance.total_seconds():
        raise InvalidSignature("signed in the future (the clocks disagree beyond the tolerance)")
    matched = False
    for key in keys:
        expected = _sign(key, timestamp, data)
        for candidate in signatures:
            # No early exit: the time taken does not tell which value came close.
            matched |= hmac.compare_digest(expected, candidate)
    if not matched:
        raise InvalidSignature("no matching signature (another secret, or another body)")
    try:
        return dt.datetime.fromtimestamp(timestamp, dt.UTC)
    except (ValueError, OverflowError, OSError):
        raise InvalidSignature("the timestamp lies beyond the dates a clock can show") from None


def _parse_header(header: object) -> tuple[int, list[str]]:
    """The header's timestamp and its ``v1`` signatures; other schemes are skipped."""
    timestamps: list[int] = []
    signatures: list[str] = []
    for part in _header_text(header).split(","):
        name, sep, value = part.strip().partition("=")
        if not sep:
            raise InvalidSignature("malformed header (expected t=<seconds>,v1=<hex>)")
        if name == "t":
            if not _TIMESTAMP.fullmatch(value):
                raise InvalidSignature("the timestamp is not whole Unix seconds")
            timestamps.append(int(value))
        elif name == "v1" and _HEX_SIGNATURE.fullmatch(value):
            # Any other v1 cannot match: skipped, as Stripe's verifiers skip it.
            signatures.append(value)
    if len(timestamps) != 1:
        raise InvalidSignature(
            "the header names two timestamps" if timestamps else "the header has no timestamp"
        )
    if not signatures:
        raise InvalidSignature("the header has no v1 signature of 64 lowercase hex digits")
    return timestamps[0], signatures


def _header_text(header: object) -> str:
    if header is None or (isinstance(header, str) and not header.strip()):
        raise InvalidSignature(f"no {SIGNATURE_HEADER} header")
    if not isinstance(header, str):
        raise InvalidSignature("the header is not text")
    if len(header) > _MAX_HEADER:
        raise InvalidSignature(f"the header is longer than {_MAX_HEADER} characters")
    return header


def event_body(event: Event) -> bytes:
    """The JSON the sink posts for ``event`` (UTF-8; ``docs/events.md`` lists its fields)."""
    return event_to_json(event).encode("utf-8")


def parse_event(body: bytes | str) -> Event:
    """Read an event from its JSON: a webhook's body, after :func:`verify_signature` took it.

    Raises:
        InvalidInput: the body is not an event's JSON.
    """
    return event_from_json(body if isinstance(body, str) else _body(body))


def _retry_after(value: str | None, now: dt.datetime) -> dt.timedelta | None:
    """A ``Retry-After`` value (seconds, or an HTTP date) as a wait; ``None`` if unreadable."""
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        # Read whole (leading zeros included), but never a number long enough to be costly.
        digits = value.lstrip("0") or "0"
        longest = int(_MAX_RETRY_AFTER.total_seconds())
        seconds = longest if len(digits) > len(str(longest)) else min(int(digits), longest)
        return dt.timedelta(seconds=seconds)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        return None
    return min(max(when - now, dt.timedelta(0)), _MAX_RETRY_AFTER)


def _split_url(url: object) -> tuple[bool, str, int, str]:
    """Whether ``url`` is https, its host, port and request target; refused if unusable."""
    if not isinstance(url, str) or any(c.isspace() or not c.isprintable() for c in url):
        raise InvalidInput("must be a URL without spaces or control characters", field="url")
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # a bracketed host that is not an IPv6 address
        raise InvalidInput(
            "the URL's host in brackets is not an IPv6 address", field="url"
        ) from exc
    if parts.scheme not in {"http", "https"}:
        raise InvalidInput("only http and https URLs are posted to", field="url")
    https = parts.scheme == "https"
    port = _port(parts, https=https)
    host = parts.hostname
    if not host:
        raise InvalidInput("the URL names no host", field="url")
    try:
        host.encode("idna")
    except UnicodeError as exc:
        raise InvalidInput(
            "the URL's host is not a name DNS can carry (IDNA)", field="url"
        ) from exc
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    if not target.isascii():
        raise InvalidInput(
            "the URL's path and query must be ASCII: percent-encode other characters",
            field="url",
        )
    if parts.username is not None or parts.password is not None:
        raise InvalidInput("no credentials in the URL: the signature proves who sends", field="url")
    if parts.fragment:
        raise InvalidInput("a URL with a fragment (#…) is not posted to", field="url")
    return https, host, port, target


def _port(parts: SplitResult, *, https: bool) -> int:
    """The URL's port, or the scheme's; port 0 is refused (no receiver listens there)."""
    problem = "the URL's port is not a number from 1 to 65535"
    try:
        port = parts.port
    except ValueError as exc:
        raise InvalidInput(problem, field="url") from exc
    if port == 0:
        raise InvalidInput(problem, field="url")
    return port or (http.client.HTTPS_PORT if https else http.client.HTTP_PORT)


def _left(deadline: float) -> float:
    """What is left of the delivery's time; none left is a timeout, as a read's would be."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("the delivery's time ran out")
    return left


def _connected(host: str, port: int, deadline: float) -> socket.socket:
    """A TCP connection to ``host``, its addresses tried in turn within what is left.

    As :func:`socket.create_connection` does, except that all the tries together get what is
    left of the delivery's time, not each try all of it. The name lookup cannot be
    interrupted: it takes what the system's resolver takes, and only afterwards does a spent
    deadline end the try.

    Raises:
        OSError: no address answered (the last one's error), the name does not resolve
            (:class:`socket.gaierror`), or the time ran out (:class:`TimeoutError`).
    """
    addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    error: OSError = OSError(f"{host} resolves to no address")
    for family, kind, protocol, _name, address in addresses:
        left = _left(deadline)
        sock = socket.socket(family, kind, protocol)
        try:
            sock.settimeout(left)
            sock.connect(address)
        except OSError as exc:
            sock.close()
            error = exc
            continue
        # As http.client does: the request goes out without waiting on Nagle's algorithm
        # (a system without TCP_NODELAY only sends it a little later).
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock
    raise error


class _Connection(http.client.HTTPConnection):
    """A plain connection whose connect takes what is left of the delivery's time."""

    def __init__(self, host: str, port: int, deadline: float) -> None:
        super().__init__(host, port)
        self._deadline = deadline

    def connect(self) -> None:
        """Connect by the deadline: the name lookup, then each address in turn."""
        sys.audit("http.client.connect", self, self.host, self.port)
        self.sock = _connected(self.host, self.port, self._deadline)


class _TlsConnection(http.client.HTTPSConnection):
    """A TLS connection whose connect and handshake take what is left of the delivery's time."""

    def __init__(self, host: str, port: int, deadline: float, context: ssl.SSLContext) -> None:
        super().__init__(host, port, context=context)
        self._deadline = deadline
        self._tls = context

    def connect(self) -> None:
        """Connect by the deadline, then shake hands with what is left of it.

        The ssl module bounds a whole handshake by the socket's timeout when it starts, not
        each of its reads, so a receiver that takes the connection and never answers (or
        answers a byte at a time) is cut off at the deadline.
        """
        sys.audit("http.client.connect", self, self.host, self.port)
        sock = _connected(self.host, self.port, self._deadline)
        try:
            sock.settimeout(_left(self._deadline))
            self.sock = self._tls.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise


class _DeadlineReader(io.RawIOBase):
    """Reads a socket with whatever is left of the delivery's time as each read's timeout."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        super().__init__()
        self._sock = sock
        self._deadline = deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the delivery's time ran out")
        self._sock.settimeout(left)
        return self._sock.recv_into(buffer)


def _answer_by(deadline: float) -> type[http.client.HTTPResponse]:
    """A response class that reads its status line and headers by ``deadline``."""

    class Answer(http.client.HTTPResponse):
        def __init__(
            self,
            sock: socket.socket,
            debuglevel: int = 0,
            method: str | None = None,
            url: str | None = None,
        ) -> None:
            super().__init__(sock, debuglevel, method, url)
            self.fp.close()  # the plain reader it made: its socket stays open
            self.fp = io.BufferedReader(_DeadlineReader(sock, deadline))

    return Answer


class WebhookSink:
    """Delivers each event as a signed ``POST`` over a fresh connection.

    Args:
        url: where to post: ``https://…``, or ``http://…`` for any host, which sends the
            body readable (meant for a receiver on this machine or a network you trust; the
            signature proves who sent it, it hides nothing); no user or password in it, no
            fragment, a host DNS can carry (IDNA), a port from 1, and an ASCII path and query
            (percent-encode other characters).
        secret: the shared secret (at least 16 bytes), or several while one is replaced: the
            body is signed under each.
        timeout: seconds a whole delivery may take: connecting (every address of the host
            in turn), the TLS handshake, sending, the answer's status line and headers; beyond
            it the try ends as transient. The one step it cannot cut short is the name lookup
            (``getaddrinfo`` cannot be interrupted): that takes what the system's resolver
            takes (its own timeouts and attempts, ``/etc/resolv.conf``), and a lookup that
            returns after the time ran out ends the try then, without connecting. A host
            given as an IP address is looked up at once. Keep it well under the dispatcher's
            lease, or another worker delivers again.
        ssl_context: the TLS settings for ``https`` (default: verify the receiver's
            certificate against the system's trusted authorities).
        clock: the time the signatures carry (the system clock by default).

    Raises:
        InvalidInput: a URL that is not ``http`` or ``https``, has no host or one no request
            can reach, port 0, credentials, a fragment, a path or query that is not ASCII; an
            unusable secret; a timeout that is not positive.
    """

    def __init__(
        self,
        url: str,
        secret: Secrets,
        *,
        timeout: float = 10.0,
        ssl_context: ssl.SSLContext | None = None,
        clock: Clock | None = None,
    ) -> None:
        """Check and keep the settings; nothing connects before the first delivery."""
        https, host, port, target = _split_url(url)
        if (
            isinstance(timeout, bool)
            or not isinstance(timeout, int | float)
            or not math.isfinite(timeout)
            or timeout <= 0
        ):
            raise InvalidInput("must be a positive number of seconds", field="timeout")
        self._secrets = _secrets(secret)
        self._https = https
        self.host = host
        self.port = port
        self._target = target
        self.timeout = float(timeout)
        self._ssl_context = ssl_context
        self._clock = clock or SystemClock()

    def __repr__(self) -> str:
        """Show the receiver's host, never the secret or the URL's path and query."""
        scheme = "https" if self._https else "http"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"WebhookSink({scheme}://{host}:{self.port}/…)"

    def deliver(self, event: Event) -> None:
        """Post ``event``; return once the receiver answered ``2xx``.

        The whole delivery takes at most ``timeout`` seconds, however the receiver paces its
        handshake and its answer: the connect, the handshake, the sending and each read get
        what is left of it. Only a slow name lookup can take longer (the system's resolver
        cannot be interrupted); the try then ends as soon as the lookup returns.

        Raises:
            PortUnavailable: ``408``, ``429`` or ``5xx`` (with the receiver's ``Retry-After``
                as ``retry_after``), no connection, a dropped connection or a timeout.
            PortRejected: a redirect, any other ``4xx``, another answer the library does not
                know, a certificate that does not verify, or an event no HTTP request can
                carry (a key that is not printable ASCII): no retry would send it.
        """
        body = event_body(event)
        now = self._clock.now()
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": f"retouraanvraag/{__version__}",
            SIGNATURE_HEADER: signature_header(list(self._secrets), body, int(now.timestamp())),
            EVENT_ID_HEADER: event.key,
            EVENT_TYPE_HEADER: event.type.value,
            "Idempotency-Key": event.key,
        }
        # A socket's timeout bounds each operation, and a receiver sending a byte at a time
        # never trips it: every step (the connect, the handshake, the sending, each read of
        # the answer) gets only what is left of the whole.
        deadline = time.monotonic() + self.timeout
        connection = self._connection(deadline)
        connection.response_class = _answer_by(deadline)
        try:
            connection.connect()
            connection.sock.settimeout(_left(deadline))  # sending: one sendall, as a whole
            connection.request("POST", self._target, body=body, headers=headers)
            response = connection.getresponse()
            status, wait = response.status, response.getheader("Retry-After")
        except ssl.SSLCertVerificationError as exc:
            problem = f"the receiver's certificate does not verify ({exc.verify_message})"
            raise PortRejected(f"{event.key}: {problem}") from exc
        except ValueError as exc:  # UnicodeError and "Invalid header value" among them
            problem = f"the event cannot be sent as an HTTP request ({type(exc).__name__})"
            raise PortRejected(f"{event.key!r}: {problem}") from exc
        except TimeoutError as exc:
            problem = f"no answer within {self.timeout:g} s from {self.host}"
            raise PortUnavailable(f"{event.key}: {problem}") from exc
        except (OSError, http.client.HTTPException) as exc:
            problem = f"no answer from {self.host} ({type(exc).__name__})"
            raise PortUnavailable(f"{event.key}: {problem}") from exc
        finally:
            # The status line is the answer; the rest of the response is not read.
            connection.close()
        self._judge(event.key, status, _retry_after(wait, self._clock.now()))

    def _connection(self, deadline: float) -> http.client.HTTPConnection:
        if self._https:
            context = self._ssl_context or ssl.create_default_context()
            return _TlsConnection(self.host, self.port, deadline, context)
        return _Connection(self.host, self.port, deadline)

    def _judge(self, key: str, status: int, wait: dt.timedelta | None) -> None:
        """Map the receiver's status to delivered, transient or permanent."""
        if status in _HTTP_OK:
            return
        if status in _HTTP_REDIRECT:
            raise PortRejected(
                f"{key}: the receiver redirects ({status}); redirects are not followed, "
                "configure the final URL"
            )
        if status in _HTTP_CLIENT_ERROR and status not in _TRANSIENT_CLIENT_ERRORS:
            raise PortRejected(f"{key}: the receiver refused the event ({status})")
        if status in _TRANSIENT_CLIENT_ERRORS or status in _HTTP_SERVER_ERROR:
            raise PortUnavailable(f"{key}: the receiver answered {status}", retry_after=wait)
        raise PortRejected(f"{key}: the receiver answered {status}, which is not an answer")
