"""A mail transport over SMTP (stdlib :mod:`smtplib`).

**At least once, not exactly once.** SMTP has no way to ask a server whether it already took a
message. When the server accepted the message but its answer was lost (the connection dropped
after the data was sent, a timeout while waiting for ``250``), :meth:`SmtpTransport.send` cannot
tell that from a failure: it raises :class:`~retouraanvraag.errors.PortUnavailable`, the
dispatcher retries, and the customer may get the mail twice. Both copies carry the same
``Message-ID`` (it derives from the effect key), so mail clients that deduplicate by it show
one. If you need exactly once, deliver into a Maildir (:mod:`retouraanvraag.adapters.maildir`)
and let a local MTA send from there.

**Credentials never travel in clear.** With a username and password the transport needs
either STARTTLS (``starttls=True``, port 587) or implicit TLS (``tls=True``, port 465); both
verify the server's certificate unless you pass another ``ssl_context``. Without either, the
constructor refuses, unless ``allow_plaintext_auth=True`` says you mean it (a test server on
this machine).

Errors map to the port vocabulary: a ``4xx`` reply, a refused or dropped connection and a
timeout are transient (:class:`~retouraanvraag.errors.PortUnavailable`); a ``5xx`` reply, a
refused recipient, failed authentication, a server lacking STARTTLS or AUTH, or a server
certificate that does not verify are permanent (:class:`~retouraanvraag.errors.PortRejected`).
So is a mail that would carry a header the library did not write: the serialised bytes are
parsed back and checked before the connection is opened (``docs/mail.md``, "Headers").
"""

from __future__ import annotations

import contextlib
import re
import smtplib
import ssl
from typing import Final

from retouraanvraag.errors import InvalidInput, PortRejected, PortUnavailable
from retouraanvraag.mail import envelope_sender, message_bytes, to_email_message
from retouraanvraag.ports import Mail

__all__ = ["SmtpTransport"]

_TRANSIENT: Final = range(400, 500)
_SMTP_PORT: Final = 25
_SMTPS_PORT: Final = 465


class SmtpTransport:
    """Delivers each mail over a fresh SMTP connection.

    Args:
        host: the SMTP server.
        port: its port (default 465 with ``tls=True``, else 25; 587 for submission with
            ``starttls=True``).
        username: log in with this user (and ``password``) once the connection is encrypted.
        password: the password for ``username``.
        starttls: upgrade the connection with STARTTLS before anything else is sent.
        tls: speak TLS from the first byte (implicit TLS, "SMTPS", port 465).
        allow_plaintext_auth: allow a login without STARTTLS or TLS; only for a server on this
            machine (tests), never across a network.
        timeout: seconds to wait for the server at each step.
        local_hostname: the name sent in EHLO (default: this machine's FQDN).
        ssl_context: the TLS settings for STARTTLS or TLS (default: verify the server's
            certificate against the system's trusted authorities).

    Raises:
        InvalidInput: a username without a password (or the reverse), a login that would
            travel in clear, both ``starttls`` and ``tls``, or a timeout that is not positive.
    """

    def __init__(
        self,
        host: str,
        port: int | None = None,
        *,
        username: str | None = None,
        password: str | None = None,
        starttls: bool = False,
        tls: bool = False,
        allow_plaintext_auth: bool = False,
        timeout: float = 10.0,
        local_hostname: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        """Check and keep the settings; nothing connects before the first send."""
        if (username is None) != (password is None):
            raise InvalidInput("give both a username and a password, or neither", field="username")
        if starttls and tls:
            raise InvalidInput("choose STARTTLS or implicit TLS, not both", field="tls")
        if username is not None and not (starttls or tls or allow_plaintext_auth):
            raise InvalidInput(
                "the login would travel in clear: use starttls=True or tls=True",
                field="username",
            )
        if timeout <= 0:
            raise InvalidInput("must be positive", field="timeout")
        self.host = host
        self.port = port if port is not None else _SMTPS_PORT if tls else _SMTP_PORT
        self.starttls = starttls
        self.tls = tls
        self.timeout = timeout
        self.local_hostname = local_hostname
        self._username = username
        self._password = password
        self._ssl_context = ssl_context

    def __repr__(self) -> str:
        """Show where mail goes, never the password."""
        return (
            f"SmtpTransport(host={self.host!r}, port={self.port}, starttls={self.starttls}, "
            f"tls={self.tls})"
        )

    def send(self, key: str, mail: Mail) -> None:
        """Deliver ``mail`` to its recipient. Retries of ``key`` may deliver it again.

        The message is built and serialised before connecting, and the bytes are checked to
        carry only the headers the library writes (:func:`~retouraanvraag.mail.message_bytes`).

        Raises:
            PortUnavailable: a 4xx reply, no connection, a dropped connection or a timeout.
            PortRejected: a 5xx reply, the recipient refused, the login refused, a missing
                STARTTLS or AUTH, a server certificate that does not verify, or a mail that cannot
                be built (an invalid address) or would carry a header the library did not write.
        """
        try:
            message = to_email_message(mail)
            sender = envelope_sender(mail)
        except InvalidInput as exc:
            raise PortRejected(f"{key}: {exc}") from exc
        to = mail.to.strip()
        international = not (sender.isascii() and to.isascii())
        data = message_bytes(message, key=key, utf8=international)
        try:
            client = self._connect()
        except (smtplib.SMTPException, OSError) as exc:
            raise _translate(key, exc) from exc
        try:
            self._hello(client)
            self._transmit(client, data, sender, to, international=international)
        except (smtplib.SMTPException, OSError) as exc:
            raise _translate(key, exc) from exc
        finally:
            # The message is in (or not): a failing goodbye must not turn success into a retry.
            with contextlib.suppress(smtplib.SMTPException, OSError):
                client.quit()
            client.close()

    @staticmethod
    def _transmit(
        client: smtplib.SMTP, data: bytes, sender: str, to: str, *, international: bool
    ) -> None:
        # Bytes serialised by message_bytes rather than by send_message, whose generator turns
        # a body line "From …" into ">From …" (mbox quoting has no place in SMTP).
        options: list[str] = []
        if international:
            if not client.has_extn("smtputf8"):
                msg = "a non-ASCII address needs SMTPUTF8, which the server lacks"
                raise smtplib.SMTPNotSupportedError(msg)
            options = ["SMTPUTF8", "BODY=8BITMIME"]
        client.sendmail(sender, [to], data, mail_options=options)

    def _connect(self) -> smtplib.SMTP:
        if self.tls:
            return smtplib.SMTP_SSL(
                self.host,
                self.port,
                local_hostname=self.local_hostname,
                timeout=self.timeout,
                context=self._context(),
            )
        return smtplib.SMTP(
            self.host, self.port, local_hostname=self.local_hostname, timeout=self.timeout
        )

    def _context(self) -> ssl.SSLContext:
        return self._ssl_context or ssl.create_default_context()

    def _hello(self, client: smtplib.SMTP) -> None:
        client.ehlo_or_helo_if_needed()
        if self.starttls:
            client.starttls(context=self._context())
            client.ehlo()
        if self._username is not None and self._password is not None:
            client.login(self._username, self._password)


def _translate(key: str, exc: Exception) -> PortUnavailable | PortRejected:
    """Map an smtplib or socket error to the port vocabulary; messages name no address."""
    transient = True
    if isinstance(exc, ssl.SSLCertVerificationError):
        transient = False
        problem = f"the server's certificate does not verify ({_text(exc.verify_message or '')})"
    elif isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = sorted({code for code, _ in exc.recipients.values()}) or [550]
        transient = all(code in _TRANSIENT for code in codes)
        problem = f"the server refused the recipient ({codes[-1]})"
    elif isinstance(exc, smtplib.SMTPNotSupportedError):
        transient = False
        problem = f"the server does not support what is asked ({exc})"
    elif isinstance(exc, smtplib.SMTPResponseException):
        transient = exc.smtp_code in _TRANSIENT or exc.smtp_code < 0
        problem = f"the server answered {exc.smtp_code} {_text(exc.smtp_error)}".strip()
    elif isinstance(exc, smtplib.SMTPServerDisconnected) or not isinstance(
        exc, smtplib.SMTPException
    ):
        problem = f"connection lost or refused ({type(exc).__name__})"
    else:  # smtplib's own refusals: no usable login method, say
        transient = False
        problem = f"{type(exc).__name__}: {_text(str(exc))}"
    error = PortUnavailable if transient else PortRejected
    return error(f"{key}: {problem}")


_ADDRESS_IN_REPLY: Final = re.compile(r"\S+@\S+")


def _text(value: bytes | str) -> str:
    """The server's reply text, short, on one line, with any address in it blanked out."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return _ADDRESS_IN_REPLY.sub("<address>", " ".join(value.split()))[:200]
