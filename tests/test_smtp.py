from __future__ import annotations

import shutil
import smtplib
import socket
import ssl
import subprocess
from collections.abc import Iterator, Sequence
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import attrs
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from retouraanvraag.adapters.smtp import SmtpTransport, _translate
from retouraanvraag.errors import InvalidInput, PortRejected, PortUnavailable
from retouraanvraag.ports import MailTransport
from retouraanvraag.testing.mail_contract import MailTransportContract, sample_mail


@attrs.define
class Delivery:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    encrypted: bool = False


@attrs.define
class RecordingHandler:
    """An aiosmtpd handler that keeps what it accepts and answers as told."""

    deliveries: list[Delivery] = attrs.Factory(list)
    rcpt_reply: str | None = None
    data_reply: str | None = None

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook name
        self, _server: Any, _session: Any, envelope: Any, address: str, _options: Any
    ) -> str:
        if self.rcpt_reply:
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, _session: Any, envelope: Any) -> str:  # noqa: N802
        if self.data_reply:
            return self.data_reply
        data = envelope.original_content or envelope.content
        encrypted = server.transport.get_extra_info("ssl_object") is not None
        self.deliveries.append(
            Delivery(envelope.mail_from, list(envelope.rcpt_tos), data, encrypted=encrypted)
        )
        return "250 Message accepted for delivery"

    def messages(self) -> list[EmailMessage]:
        parsed = [message_from_bytes(d.data, policy=policy.default) for d in self.deliveries]
        return [m for m in parsed if isinstance(m, EmailMessage)]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def authenticate(*args: Any) -> AuthResult:
    data = args[-1]
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (b"shop", b"geheim")
    return AuthResult(success=ok, handled=False)


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[Controller, RecordingHandler]]:
    handler = RecordingHandler()
    controller = Controller(
        handler,
        hostname="127.0.0.1",
        port=free_port(),
        enable_SMTPUTF8=True,
        auth_require_tls=False,
        authenticator=authenticate,
    )
    controller.start()
    yield controller, handler
    controller.stop()


@pytest.fixture
def smtp(server: tuple[Controller, RecordingHandler]) -> Iterator[RecordingHandler]:
    _, handler = server
    handler.deliveries.clear()
    handler.rcpt_reply = handler.data_reply = None
    yield handler
    handler.rcpt_reply = handler.data_reply = None


@pytest.fixture
def transport(server: tuple[Controller, RecordingHandler]) -> SmtpTransport:
    controller, _ = server
    return SmtpTransport("127.0.0.1", controller.port, timeout=5, local_hostname="test.local")


class TestSmtpContract(MailTransportContract):
    exactly_once = False
    handler: RecordingHandler
    port: int

    @pytest.fixture(autouse=True)
    def _server(self, smtp: RecordingHandler, server: tuple[Controller, RecordingHandler]) -> None:
        self.handler = smtp
        self.port = server[0].port

    def make_transport(self) -> MailTransport:
        return SmtpTransport("127.0.0.1", self.port, timeout=5)

    def delivered(self, _transport: MailTransport) -> Sequence[EmailMessage]:
        return self.handler.messages()


def test_the_envelope_carries_the_bare_sender_and_recipient(
    smtp: RecordingHandler, transport: SmtpTransport
) -> None:
    transport.send("mail:r1:rejected", sample_mail())
    (delivery,) = smtp.deliveries
    assert delivery.mail_from == "retouren@shop.example"
    assert delivery.rcpt_tos == ["klant@example.nl"]
    (message,) = smtp.messages()
    assert message["Message-ID"] == "<contract-1@shop.example>"
    assert message["Auto-Submitted"] == "auto-generated"
    assert [p.get_filename() for p in message.iter_attachments()] == ["retourlabel.pdf"]


def test_a_non_ascii_recipient_goes_out_with_smtputf8(
    smtp: RecordingHandler, transport: SmtpTransport
) -> None:
    transport.send("k", sample_mail(to="anaïs@example.nl"))
    assert smtp.deliveries[0].rcpt_tos == ["anaïs@example.nl"]


@pytest.mark.parametrize(
    ("where", "reply", "error"),
    [
        ("data", "451 4.3.0 Try again later", PortUnavailable),
        ("data", "550 5.7.1 Message refused", PortRejected),
        ("rcpt", "550 5.1.1 <klant@example.nl>: no such user", PortRejected),
        ("rcpt", "450 4.2.0 Greylisted, come back later", PortUnavailable),
    ],
)
def test_server_replies_map_to_port_errors(
    smtp: RecordingHandler,
    transport: SmtpTransport,
    where: str,
    reply: str,
    error: type[Exception],
) -> None:
    setattr(smtp, f"{where}_reply", reply)
    with pytest.raises(error, match=reply.split(maxsplit=1)[0]) as caught:
        transport.send("mail:r1:rejected", sample_mail())
    assert "klant@example.nl" not in str(caught.value)
    assert str(caught.value).startswith("mail:r1:rejected: ")
    assert smtp.deliveries == []


def test_a_closed_port_is_unavailable() -> None:
    transport = SmtpTransport("127.0.0.1", free_port(), timeout=2)
    with pytest.raises(PortUnavailable, match="connection lost or refused"):
        transport.send("k", sample_mail())


def test_a_server_that_never_answers_times_out_as_unavailable() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        transport = SmtpTransport("127.0.0.1", silent.getsockname()[1], timeout=0.2)
        with pytest.raises(PortUnavailable, match="connection lost"):
            transport.send("k", sample_mail())


def test_login_with_the_right_password_delivers(
    smtp: RecordingHandler, server: tuple[Controller, RecordingHandler]
) -> None:
    transport = SmtpTransport(
        "127.0.0.1",
        server[0].port,
        username="shop",
        password="geheim",  # noqa: S106 - the test server's password
        allow_plaintext_auth=True,
        timeout=5,
    )
    transport.send("k", sample_mail())
    assert len(smtp.deliveries) == 1
    assert not smtp.deliveries[0].encrypted
    assert "geheim" not in repr(transport)


def test_a_refused_login_is_rejected(
    smtp: RecordingHandler, server: tuple[Controller, RecordingHandler]
) -> None:
    transport = SmtpTransport(
        "127.0.0.1",
        server[0].port,
        username="shop",
        password="fout",  # noqa: S106 - a wrong one on purpose
        allow_plaintext_auth=True,
        timeout=5,
    )
    with pytest.raises(PortRejected, match="535"):
        transport.send("k", sample_mail())
    assert smtp.deliveries == []


def test_starttls_against_a_server_without_it_is_rejected(
    smtp: RecordingHandler, server: tuple[Controller, RecordingHandler]
) -> None:
    transport = SmtpTransport("127.0.0.1", server[0].port, starttls=True, timeout=5)
    with pytest.raises(PortRejected, match="does not support"):
        transport.send("k", sample_mail())
    assert smtp.deliveries == []


def test_an_invalid_recipient_is_rejected_before_connecting() -> None:
    transport = SmtpTransport("127.0.0.1", free_port(), timeout=1)
    with pytest.raises(PortRejected, match="to: is not a single valid"):
        transport.send("k", sample_mail(to="klant@example.nl\r\nRCPT TO:<x@y.z>"))
    with pytest.raises(PortRejected, match="sender: is not a single valid"):
        transport.send("k", sample_mail(sender="nobody"))


def test_settings_are_checked() -> None:
    with pytest.raises(InvalidInput, match="username"):
        SmtpTransport("localhost", username="shop")
    with pytest.raises(InvalidInput, match="timeout"):
        SmtpTransport("localhost", timeout=0)
    with pytest.raises(InvalidInput, match="tls: choose STARTTLS or implicit TLS, not both"):
        SmtpTransport("localhost", starttls=True, tls=True)


def test_a_login_without_encryption_is_refused_at_construction() -> None:
    with pytest.raises(InvalidInput, match="travel in clear") as caught:
        SmtpTransport("smtp.example.nl", 587, username="shop", password="geheim")  # noqa: S106
    assert caught.value.field == "username"
    assert "geheim" not in str(caught.value)


@pytest.mark.parametrize(
    ("starttls", "tls", "allow_plaintext_auth"),
    [(True, False, False), (False, True, False), (False, False, True)],
)
def test_a_login_is_accepted_with_encryption_or_when_explicitly_allowed(
    *, starttls: bool, tls: bool, allow_plaintext_auth: bool
) -> None:
    transport = SmtpTransport(
        "smtp.example.nl",
        username="shop",
        password="geheim",  # noqa: S106 - not a real one
        starttls=starttls,
        tls=tls,
        allow_plaintext_auth=allow_plaintext_auth,
    )
    assert "geheim" not in repr(transport)


def test_implicit_tls_defaults_to_port_465_and_plain_smtp_to_25() -> None:
    assert SmtpTransport("smtp.example.nl", tls=True).port == 465
    assert SmtpTransport("smtp.example.nl").port == 25
    assert SmtpTransport("smtp.example.nl", 2465, tls=True).port == 2465
    assert repr(SmtpTransport("smtp.example.nl", tls=True)) == (
        "SmtpTransport(host='smtp.example.nl', port=465, starttls=False, tls=True)"
    )


# -- TLS against a real server with a self-signed certificate -------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    openssl = shutil.which("openssl")
    if openssl is None:  # pragma: no cover - the CI image has it
        pytest.skip("the openssl command is needed to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(  # noqa: S603 - fixed arguments, our own tool
        [
            openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def trusting(cert: Path) -> ssl.SSLContext:
    """A client context that trusts the test certificate (and checks the host name)."""
    return ssl.create_default_context(cafile=str(cert))


def tls_server(certificate: tuple[Path, Path], *, implicit: bool) -> Controller:
    """Implicit TLS from the first byte, or STARTTLS demanded before anything else."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    if implicit:  # aiosmtpd counts only STARTTLS as TLS for its AUTH check
        settings: dict[str, Any] = {"ssl_context": context, "auth_require_tls": False}
    else:
        settings = {"tls_context": context, "require_starttls": True}
    return Controller(
        RecordingHandler(),
        hostname="127.0.0.1",
        port=free_port(),
        authenticator=authenticate,
        enable_SMTPUTF8=False,
        **settings,
    )


@pytest.fixture(scope="module")
def smtps(certificate: tuple[Path, Path]) -> Iterator[Controller]:
    controller = tls_server(certificate, implicit=True)
    controller.start()
    yield controller
    controller.stop()


@pytest.fixture(scope="module")
def submission(certificate: tuple[Path, Path]) -> Iterator[Controller]:
    controller = tls_server(certificate, implicit=False)
    controller.start()
    yield controller
    controller.stop()


def deliveries(controller: Controller) -> list[Delivery]:
    handler = controller.handler
    assert isinstance(handler, RecordingHandler)
    return handler.deliveries


def test_implicit_tls_logs_in_and_delivers_encrypted(
    smtps: Controller, certificate: tuple[Path, Path]
) -> None:
    transport = SmtpTransport(
        "127.0.0.1",
        smtps.port,
        tls=True,
        username="shop",
        password="geheim",  # noqa: S106 - the test server's password
        ssl_context=trusting(certificate[0]),
        timeout=5,
    )
    before = len(deliveries(smtps))
    transport.send("k", sample_mail())
    (delivery,) = deliveries(smtps)[before:]
    assert delivery.encrypted
    assert delivery.rcpt_tos == ["klant@example.nl"]


def test_starttls_logs_in_after_encrypting_and_delivers(
    submission: Controller, certificate: tuple[Path, Path]
) -> None:
    transport = SmtpTransport(
        "127.0.0.1",
        submission.port,
        starttls=True,
        username="shop",
        password="geheim",  # noqa: S106 - the test server's password
        ssl_context=trusting(certificate[0]),
        timeout=5,
    )
    before = len(deliveries(submission))
    transport.send("k", sample_mail())
    (delivery,) = deliveries(submission)[before:]
    assert delivery.encrypted


@pytest.mark.parametrize("mode", ["tls", "starttls"])
def test_a_certificate_the_system_does_not_trust_is_rejected(
    smtps: Controller, submission: Controller, mode: str
) -> None:
    controller = smtps if mode == "tls" else submission
    transport = SmtpTransport(
        "127.0.0.1", controller.port, tls=mode == "tls", starttls=mode == "starttls", timeout=5
    )
    before = len(deliveries(controller))
    with pytest.raises(PortRejected, match="certificate does not verify"):
        transport.send("k", sample_mail())
    assert deliveries(controller)[before:] == []


def test_a_server_that_demands_starttls_rejects_a_plain_session(submission: Controller) -> None:
    transport = SmtpTransport("127.0.0.1", submission.port, timeout=5)
    with pytest.raises(PortRejected, match="530"):
        transport.send("k", sample_mail())


@pytest.mark.parametrize(
    ("exc", "error", "text"),
    [
        (smtplib.SMTPServerDisconnected("gone"), PortUnavailable, "connection lost"),
        (smtplib.SMTPConnectError(-1, b"closed"), PortUnavailable, "-1"),
        (smtplib.SMTPException("No suitable authentication method found."), PortRejected, "No"),
        (smtplib.SMTPRecipientsRefused({}), PortRejected, "550"),
        (smtplib.SMTPDataError(554, b"<a@b.nl> spam"), PortRejected, "554 <address> spam"),
    ],
)
def test_smtplib_errors_translate_without_addresses(
    exc: Exception, error: type[Exception], text: str
) -> None:
    translated = _translate("k", exc)
    assert isinstance(translated, error)
    assert text in str(translated)


def test_a_non_ascii_recipient_is_rejected_by_a_server_without_smtputf8(
    smtps: Controller, certificate: tuple[Path, Path]
) -> None:
    transport = SmtpTransport(
        "127.0.0.1", smtps.port, tls=True, ssl_context=trusting(certificate[0]), timeout=5
    )
    with pytest.raises(PortRejected, match="SMTPUTF8") as caught:
        transport.send("k", sample_mail(to="anaïs@example.nl"))
    assert "anaïs" not in str(caught.value)
