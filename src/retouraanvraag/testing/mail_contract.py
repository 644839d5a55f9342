"""The contract every :class:`~retouraanvraag.ports.MailTransport` must keep, as a test suite.

Subclass :class:`MailTransportContract` in a test module, name the subclass ``Test…``, and
implement :meth:`~MailTransportContract.make_transport` and
:meth:`~MailTransportContract.delivered` (what reached the other side, as parsed messages)::

    class TestMyTransport(MailTransportContract):
        exactly_once = False  # plain SMTP: a retry may deliver again

        def make_transport(self) -> MailTransport:
            return MyTransport(...)

        def delivered(self, transport: MailTransport) -> Sequence[EmailMessage]:
            return [...]

Set ``exactly_once = True`` for a transport that deduplicates by key; the retry check then
demands one delivery instead of "at least one, all with the same ``Message-ID``".
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from email.message import EmailMessage
from typing import ClassVar

import attrs

from retouraanvraag.errors import PortRejected
from retouraanvraag.model import MailKind
from retouraanvraag.ports import Attachment, Mail, MailTransport
from retouraanvraag.testing._threads import errors_of, run_at_once

__all__ = ["ENCODED_INJECTIONS", "MailTransportContract", "sample_mail"]

#: A body that trips naive transports: non-ASCII, a lone dot, a "From " line, a long line.
SAMPLE_TEXT = (
    "Beste Anaïs,\n\n"
    "We betalen € 4,95 aan je terug.\n"
    ".\n"
    "From here on: niets meer.\n"
    "..twee punten\n" + "x" * 990 + "\n"
)
SAMPLE_HTML = "<p>Beste Anaïs,</p>\n<p>We betalen &euro; 4,95 aan je terug.</p>\n"
SAMPLE_PDF = b"%PDF-1.4\n" + bytes(range(256)) + b"\r\n.\r\n%%EOF\n"

#: RFC 2047 encoded words (q and b) that decode to a line break and a header of their own.
ENCODED_INJECTIONS = (
    "=?utf-8?q?1001=0D=0AReply-To:_evil@attacker.example?=",
    "=?utf-8?q?1001=0ABcc:_evil@attacker.example?=",
    "=?UTF-8?B?MTAwMQ0KQmNjOiBldmlsQGF0dGFja2VyLmV4YW1wbGU=?=",
    "=?utf-8?b?MTAwMQpYLUV2aWw6IDE=?=",
)


def sample_mail(**changes: object) -> Mail:
    """A rendered mail with a PDF attachment and a body full of edge cases; override any field."""
    mail = Mail(
        to="klant@example.nl",
        subject="Label aangemaakt: je retour voor bestelling 1001 — €",
        text=SAMPLE_TEXT,
        html=SAMPLE_HTML,
        kind=MailKind.LABEL_CREATED,
        request_id="req-1",
        message_id="<contract-1@shop.example>",
        sender="Voorbeeldshop <retouren@shop.example>",
        language="nl",
        attachments=(Attachment("retourlabel.pdf", "application/pdf", SAMPLE_PDF),),
    )
    return attrs.evolve(mail, **changes)  # type: ignore[arg-type]


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(message)


def _lines(text: str) -> list[str]:
    return [line.rstrip() for line in text.replace("\r\n", "\n").strip("\n").split("\n")]


class MailTransportContract(abc.ABC):
    """Checks of the :class:`~retouraanvraag.ports.MailTransport` contract; subclass to run them."""

    exactly_once: ClassVar[bool] = False

    @abc.abstractmethod
    def make_transport(self) -> MailTransport:
        """A transport for one test, delivering somewhere :meth:`delivered` can read."""

    @abc.abstractmethod
    def delivered(self, transport: MailTransport) -> Sequence[EmailMessage]:
        """Every message ``transport`` delivered during this test, in any order."""

    def test_a_sent_mail_arrives_with_its_headers(self) -> None:
        """From, To, Subject and Message-ID arrive as rendered."""
        transport = self.make_transport()
        mail = sample_mail()
        transport.send("mail:req-1:label_created", mail)
        (message,) = self._all(transport, 1)
        _check(message["Subject"] == mail.subject, f"subject is {message['Subject']!r}")
        _check(message["To"] == mail.to, "the recipient differs")
        _check(message["From"] == mail.sender, f"sender is {message['From']!r}")
        _check(message["Message-ID"] == mail.message_id, "the Message-ID differs")

    def test_text_and_html_arrive_as_alternatives(self) -> None:
        """The plain and the HTML body both arrive, unchanged, dots and all."""
        transport = self.make_transport()
        mail = sample_mail()
        transport.send("mail:req-1:label_created", mail)
        (message,) = self._all(transport, 1)
        plain = message.get_body(("plain",))
        rich = message.get_body(("html",))
        if plain is None or rich is None:
            raise AssertionError("a body part is missing")
        _check(_lines(plain.get_content()) == _lines(mail.text), "the text body differs")
        _check(_lines(rich.get_content()) == _lines(mail.html), "the HTML body differs")

    def test_attachments_arrive_byte_for_byte(self) -> None:
        """Each attachment keeps its name, content type and bytes."""
        transport = self.make_transport()
        png = Attachment("foto.png", "image/png", b"\x89PNG\r\n\x1a\n\x00\xff")
        mail = sample_mail(attachments=(*sample_mail().attachments, png))
        transport.send("mail:req-1:label_created", mail)
        (message,) = self._all(transport, 1)
        parts = list(message.iter_attachments())
        arrived = [(p.get_filename(), p.get_content_type(), p.get_content()) for p in parts]
        expected = [(a.filename, a.content_type, a.data) for a in mail.attachments]
        _check(arrived == expected, f"attachments differ: {[a[:2] for a in arrived]}")

    def test_each_key_delivers_its_own_mail(self) -> None:
        """Two keys, two mails."""
        transport = self.make_transport()
        transport.send("mail:req-1:request_received", sample_mail(message_id="<a@shop.example>"))
        transport.send("mail:req-2:request_received", sample_mail(message_id="<b@shop.example>"))
        ids = sorted(m["Message-ID"] for m in self._all(transport, 2))
        _check(ids == ["<a@shop.example>", "<b@shop.example>"], f"Message-IDs are {ids}")

    def test_a_retry_of_one_key_carries_the_same_message_id(self) -> None:
        """A retry may deliver again (never if exactly once), always with the same Message-ID."""
        transport = self.make_transport()
        mail = sample_mail()
        transport.send("mail:req-1:label_created", mail)
        transport.send("mail:req-1:label_created", mail)
        messages = self.delivered(transport)
        expected = {1} if self.exactly_once else {1, 2}
        _check(len(messages) in expected, f"{len(messages)} deliveries for one key")
        _check(
            {m["Message-ID"] for m in messages} == {mail.message_id},
            "a retry carried another Message-ID",
        )

    def test_a_line_break_in_the_subject_cannot_add_a_header(self) -> None:
        """CR/LF in a subject is neutralised: no injected Bcc, the subject stays one line."""
        transport = self.make_transport()
        mail = sample_mail(subject="Hallo\r\nBcc: evil@example.com\nX-Evil: 1")
        transport.send("mail:req-1:label_created", mail)
        (message,) = self._all(transport, 1)
        _check(message["Bcc"] is None and message["X-Evil"] is None, "a header was injected")
        _check(
            message["Subject"] == "Hallo Bcc: evil@example.com X-Evil: 1",
            f"subject is {message['Subject']!r}",
        )

    def test_an_encoded_word_in_a_header_value_cannot_add_a_header(self) -> None:
        """RFC 2047 words that decode to CR LF (subject, sender name, file name) add no header."""
        transport = self.make_transport()
        injected = {"bcc", "reply-to", "x-evil", "cc"}
        for index, word in enumerate(ENCODED_INJECTIONS):
            mail = sample_mail(
                subject=f"Bestelling {word}",
                sender=f'"Shop {word}" <retouren@shop.example>',
                message_id=f"<ew-{index}@shop.example>",
                attachments=(Attachment(f"{word}.pdf", "application/pdf", SAMPLE_PDF),),
            )
            try:
                transport.send(f"mail:req-1:ew-{index}", mail)
            except PortRejected as exc:  # refusing is allowed; leaking the value is not
                _check("attacker" not in str(exc), "the error message quotes the header value")
        for message in self.delivered(transport):
            for part in message.walk():
                names = {name.lower() for name in part}
                _check(not names & injected, f"a header was injected: {sorted(names & injected)}")
                for name, value in part.items():
                    _check(len(str(value).splitlines()) <= 1, f"{name} reads as several lines")

    def test_concurrent_sends_of_different_keys_all_arrive(self) -> None:
        """Sends from several threads at once each deliver their own mail."""
        transport = self.make_transport()
        threads = 6

        def send(i: int) -> None:
            transport.send(f"mail:req-{i}:x", sample_mail(message_id=f"<c{i}@shop.example>"))

        errors = errors_of(run_at_once(threads, send))
        _check(not errors, f"sends failed: {errors!r}")
        ids = {m["Message-ID"] for m in self._all(transport, threads)}
        _check(ids == {f"<c{i}@shop.example>" for i in range(threads)}, "a mail is missing")

    def _all(self, transport: MailTransport, count: int) -> Sequence[EmailMessage]:
        messages = self.delivered(transport)
        _check(len(messages) == count, f"{len(messages)} messages delivered, expected {count}")
        return messages
