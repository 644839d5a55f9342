"""No delivered message carries a header the library did not write (issue 7, item 1).

Every field that can reach a header is swept with a corpus of hostile values (RFC 2047 encoded
words that decode to CR/LF, raw line breaks, folding whitespace, NUL, U+2028/2029, very long
and non-ASCII text, quotes and specials), each mail kind is rendered, and the mail is delivered
through the recorder, the Maildir and a real SMTP server. Each delivered message is parsed back
with the stdlib parser: its headers must be exactly the ones the library writes, and subject,
From and To must read as one line. A value the model itself refuses is asserted as refused.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import itertools
import os
from collections.abc import Callable, Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import attrs
import pytest
from aiosmtpd.controller import Controller
from hypothesis import given, settings
from hypothesis import strategies as st

from retouraanvraag._address import one_line
from retouraanvraag.adapters.maildir import MaildirTransport
from retouraanvraag.adapters.smtp import SmtpTransport
from retouraanvraag.errors import InvalidInput, PortRejected
from retouraanvraag.mail import (
    MESSAGE_HEADERS,
    PART_HEADERS,
    PLACEHOLDERS,
    MailRenderer,
    MailTemplate,
    default_template,
    message_bytes,
    to_email_message,
)
from retouraanvraag.mail import _message as message_module
from retouraanvraag.mail._headers import split_mailbox
from retouraanvraag.mail._render import header_text
from retouraanvraag.model import (
    Customer,
    Label,
    Language,
    MailKind,
    Money,
    ReturnItem,
    ReturnRequest,
)
from retouraanvraag.ports import Attachment, Mail
from retouraanvraag.testing import MailRecorder, MemoryStorage

from .conftest import build_world
from .test_smtp import RecordingHandler, free_port

CREATED = dt.datetime(2026, 2, 28, 23, 30, tzinfo=dt.UTC)
PDF = b"%PDF-1.4\n%%EOF\n"
LABEL = Label("PostNL", "3SABCD1234567", PDF, "application/pdf", "retourlabel.pdf")
SENDER = "retouren@shop.example"
CUSTOMER = "jan@example.nl"


def q_word(text: str, charset: str = "utf-8") -> str:
    """``text`` as an RFC 2047 "Q" encoded word."""
    encoded = "".join(
        char
        if char.isascii() and char.isalnum()
        else "_"
        if char == " "
        else "".join(f"={byte:02X}" for byte in char.encode(charset))
        for char in text
    )
    return f"=?{charset}?q?{encoded}?="


def b_word(text: str, charset: str = "utf-8") -> str:
    """``text`` as an RFC 2047 "B" encoded word."""
    return f"=?{charset}?b?{base64.b64encode(text.encode(charset)).decode('ascii')}?="


# -- the corpus -------------------------------------------------------------------------------

CRLF_REPLY_TO = "1001\r\nReply-To: evil@attacker.example"
LF_BCC = "1001\nBcc: evil@attacker.example"
CR_ONLY = "1001\rX-Evil: 1"
BLANK_LINE = "1001\r\n\r\n<p>a body of the attacker's</p>"
CONTINUED = "1001\r\n Bcc: evil@attacker.example"
SECOND_SUBJECT = "1001\r\nSubject: a second subject"
CONTENT_TYPE = "1001\r\nContent-Type: text/html"
OWN_HEADER = "1001\r\nX-Retouraanvraag-Kind: rejected"

HOSTILE: tuple[str, ...] = (
    # The report, verbatim.
    "=?utf-8?q?1001=0D=0AReply-To:_evil@attacker.example?=",
    # Encoded words, Q and B, decoding to CR LF, LF, CR, a blank line, a continuation line.
    *(q_word(text) for text in (CRLF_REPLY_TO, LF_BCC, CR_ONLY, BLANK_LINE, CONTINUED)),
    *(q_word(text) for text in (SECOND_SUBJECT, CONTENT_TYPE, OWN_HEADER)),
    *(b_word(text) for text in (CRLF_REPLY_TO, LF_BCC, CR_ONLY, BLANK_LINE, SECOND_SUBJECT)),
    "=?UTF-8?Q?1001=0D=0ABcc:_evil@attacker.example?=",
    "=?UTF-8?B?MTAwMQ0KQmNjOiBldmlsQGF0dGFja2VyLmV4YW1wbGU=?=",
    q_word(LF_BCC, "iso-8859-1"),
    "=?us-ascii*en?q?1001=0D=0ABcc:_evil@attacker.example?=",  # RFC 2231 language tag
    # Encoded words inside quotes, glued to other text, split over two words.
    f'"{q_word(LF_BCC)}"',
    f'Jan "{b_word(CRLF_REPLY_TO)}" Jansen',
    f"x{q_word(LF_BCC)}y",
    q_word("1001\r") + " " + q_word("\nBcc: evil@attacker.example"),
    q_word("1001\r\n") + q_word("Bcc: evil@attacker.example"),
    f"({q_word(LF_BCC)})",
    f"<{q_word(LF_BCC)}>",
    # Raw line breaks and folding whitespace.
    "1001\r\nBcc: evil@attacker.example",
    "1001\nReply-To: evil@attacker.example",
    "1001\rX-Evil: 1",
    "1001\r\n Bcc: evil@attacker.example",
    "1001\n\tBcc: evil@attacker.example",
    "1001\r\n\r\nbody",
    "1001" + " " * 300 + "Bcc: evil@attacker.example",
    "\t1001\tBcc:\tevil@attacker.example",
    # Other control characters and Unicode line separators.
    "1001\x00Bcc: evil@attacker.example",
    "1001\x0bBcc: evil@attacker.example",
    "1001\x0cBcc: evil@attacker.example",
    "1001\x1cBcc: evil@attacker.example",
    "1001\x85Bcc: evil@attacker.example",
    "1001\u2028Bcc: evil@attacker.example",
    "1001\u2029Reply-To: evil@attacker.example",
    # Very long values: one word, many words, non-ASCII, an encoded word, "=?" over and over.
    "x" * 1200,
    "woord " * 120,
    "é" * 500,
    q_word("a" * 200 + "\r\nBcc: evil@attacker.example"),
    "=?" * 200,
    # Non-ASCII and odd Unicode.
    "Anaïs Ørsted-Łukasiewicz 東京 🎉",
    "مرحبا بالعالم",
    "e\u0301\u0301\u0301",
    "\ufeff1001\u200b",
    "\u202e1001",
    "1001\udc8d\udcff",  # lone surrogates
    # Specials, quoting, RFC 2231, template syntax.
    "<evil@attacker.example>",
    "evil@attacker.example, second@attacker.example",
    '"; filename="evil.exe',
    'a\\"b\\',
    "%0D%0ABcc:%20evil@attacker.example",
    "utf-8''%0D%0ABcc%3A%20evil@attacker.example",
    "?=",
    "=?",
    "=?=?==??",
    "=?utf-8?q?",
    "?utf-8?q?x?=",
    "$order_number ${shop_name} $$",
)

#: The header names the corpus tries to smuggle in.
INJECTED = ("bcc", "reply-to", "x-evil", "cc")
BLOCKS = frozenset({"items", "refund", "label_void"})


# -- building a case --------------------------------------------------------------------------


def request_with(**changes: Any) -> ReturnRequest:
    """A request that every kind can render from: it has a label and a reject reason."""
    base: dict[str, Any] = {
        "shop_id": "shop-1",
        "id": "req-1",
        "order_number": "1001",
        "customer": Customer(CUSTOMER, "Jan Jansen", "nl"),
        "from_country": "NL",
        "order_value": Money(9995),
        "items": (ReturnItem("TS-1", "T-shirt", 1, Money(1995), "other", reason_text="Past niet"),),
        "created_at": CREATED,
        "reject_reason": "Buiten de retourtermijn",
        "label": LABEL,
    }
    base.update(changes)
    return ReturnRequest(**base)


def exposing_templates(subject: str | None = None) -> dict[tuple[Language, MailKind], MailTemplate]:
    """Host templates whose subject shows every value a subject may show (or ``subject``)."""
    templates = {}
    for kind in MailKind:
        shipped = default_template(Language.NL, kind)
        placeholders = " ".join(f"${name}" for name in sorted(PLACEHOLDERS[kind] - BLOCKS))
        text = subject if subject is not None else f"{shipped.subject} · {placeholders}"
        templates[Language.NL, kind] = attrs.evolve(shipped, subject=text)
    return templates


def renderer_with(**changes: Any) -> MailRenderer:
    settings_: dict[str, Any] = {
        "sender": SENDER,
        "shop_name": "Voorbeeldshop",
        "templates": exposing_templates(),
    }
    settings_.update(changes)
    return MailRenderer(**settings_)


def _item(**changes: Any) -> tuple[ReturnItem, ...]:
    fields: dict[str, Any] = {
        "sku": "TS-1",
        "name": "T-shirt",
        "quantity": 1,
        "unit_price": Money(1995),
        "reason": "other",
        "reason_text": "Past niet",
    }
    fields.update(changes)
    return (ReturnItem(**fields),)


Build = Callable[[str], tuple[MailRenderer, ReturnRequest]]

#: Fields of the request and of the renderer's settings, by name: the value → what renders.
RENDERED: dict[str, Build] = {
    "order_number": lambda v: (renderer_with(), request_with(order_number=v)),
    "customer_name": lambda v: (renderer_with(), request_with(customer=Customer(CUSTOMER, v))),
    "request_id": lambda v: (renderer_with(), request_with(id=v)),
    "item_reason": lambda v: (renderer_with(), request_with(items=_item(reason=v))),
    "item_reason_text": lambda v: (renderer_with(), request_with(items=_item(reason_text=v))),
    "reject_reason": lambda v: (renderer_with(), request_with(reject_reason=v)),
    "label_carrier": lambda v: (
        renderer_with(),
        request_with(label=attrs.evolve(LABEL, carrier=v)),
    ),
    "label_tracking_number": lambda v: (
        renderer_with(),
        request_with(label=attrs.evolve(LABEL, tracking_number=v)),
    ),
    "label_filename": lambda v: (
        renderer_with(),
        request_with(label=attrs.evolve(LABEL, filename=v)),
    ),
    "label_content_type": lambda v: (
        renderer_with(),
        request_with(label=attrs.evolve(LABEL, content_type=v)),
    ),
    "shop_name": lambda v: (renderer_with(shop_name=v), request_with()),
    "sender_name": lambda v: (renderer_with(sender=f"{v} <{SENDER}>"), request_with()),
    "sender_local_part": lambda v: (renderer_with(sender=f"{v}@shop.example"), request_with()),
    "subject_template": lambda v: (
        renderer_with(templates=exposing_templates(v.replace("$", "$$") + " ($order_number)")),
        request_with(),
    ),
}

Change = Callable[[str], dict[str, Any]]

#: Fields of a :class:`Mail` a host builds itself and hands to a transport.
MAIL: dict[str, Change] = {
    "mail.subject": lambda v: {"subject": v},
    "mail.sender": lambda v: {"sender": f"{v} <{SENDER}>"},
    "mail.sender_quoted": lambda v: {"sender": f'"{v}" <{SENDER}>'},
    "mail.language": lambda v: {"language": v},
    "mail.attachment_filename": lambda v: {"attachments": (Attachment(v, "application/pdf", PDF),)},
    "mail.attachment_content_type": lambda v: {
        "attachments": (Attachment("retourlabel.pdf", v, PDF),)
    },
    "mail.to": lambda v: {"to": v},
    "mail.to_local_part": lambda v: {"to": f"{v}@example.nl"},
    "mail.message_id": lambda v: {"message_id": f"<{v}@shop.example>"},
}

ALL_FIELDS = sorted(RENDERED) + sorted(MAIL)
#: Where a transport may refuse a value: an address or a Message-ID that is not exactly one.
ADDRESS_FIELDS = frozenset(
    {"sender_local_part", "mail.to", "mail.to_local_part", "mail.message_id"}
)


# -- transports -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def smtp_server() -> Iterator[tuple[Controller, RecordingHandler]]:
    handler = RecordingHandler()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port(), enable_SMTPUTF8=True)
    controller.start()
    yield controller, handler
    controller.stop()


@attrs.define
class Wire:
    """Delivers one mail through one transport; returns the bytes that arrived."""

    name: str
    maildir: Path = attrs.field(repr=False)
    smtp: tuple[Controller, RecordingHandler] = attrs.field(repr=False)
    serial: Iterator[int] = attrs.field(factory=itertools.count, repr=False)
    last_key: str = ""

    def deliver(self, mail: Mail) -> tuple[str, bytes]:
        key = self.last_key = f"mail:shop-1:req-1:{mail.kind}:{next(self.serial)}"
        if self.name == "recorder":
            recorder = MailRecorder()
            recorder.send(key, mail)
            ((_, recorded),) = recorder.sent
            try:
                message = to_email_message(recorded)
            except InvalidInput as exc:  # what every transport makes of it
                raise PortRejected(f"{key}: {exc}") from exc
            try:
                return key, message_bytes(message, key=key)
            except UnicodeEncodeError:  # a non-ASCII address: SMTPUTF8, as the transports do
                return key, message_bytes(message, key=key, utf8=True)
        if self.name == "maildir":
            MaildirTransport(self.maildir).send(key, mail)
            return key, self._maildir_file(key).read_bytes()
        controller, handler = self.smtp
        handler.deliveries.clear()
        SmtpTransport("127.0.0.1", controller.port, timeout=5, local_hostname="test.local").send(
            key, mail
        )
        (delivery,) = handler.deliveries
        assert delivery.rcpt_tos == [mail.to.strip()]
        assert delivery.mail_from == split_mailbox(one_line(mail.sender))[1]
        return key, delivery.data

    def attempt(self, mail: Mail) -> bytes | PortRejected:
        """The bytes that arrived, or the transport's refusal."""
        try:
            return self.deliver(mail)[1]
        except PortRejected as exc:
            return exc

    def delivered_nothing(self) -> bool:
        """Whether the last delivery left nothing behind (the recorder keeps no bytes)."""
        if self.name == "smtp":
            return self.smtp[1].deliveries == []
        if self.name == "maildir":
            return not self._maildir_file(self.last_key).exists()
        return True

    def _maildir_file(self, key: str) -> Path:
        name = f"{hashlib.sha256(key.encode()).hexdigest()[:40]}.retouraanvraag"
        return self.maildir / "new" / name


TRANSPORTS = ["recorder", "maildir", "smtp"]


@pytest.fixture(scope="module", autouse=True)
def _no_flush_to_disk() -> Iterator[None]:
    """Maildir deliveries skip fsync here: durability is test_maildir's, only bytes count here."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, "fsync", lambda _fd: None)
        yield


@pytest.fixture(params=TRANSPORTS)
def wire(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    smtp_server: tuple[Controller, RecordingHandler],
) -> Wire:
    return Wire(request.param, tmp_path / "Maildir", smtp_server)


# -- what a delivered message must look like --------------------------------------------------


def assert_only_library_headers(data: bytes, mail: Mail) -> EmailMessage:
    """The message in ``data`` has exactly the library's headers, each on one line."""
    message = message_from_bytes(data, policy=policy.default)
    assert isinstance(message, EmailMessage)
    assert sorted(message.keys()) == sorted(MESSAGE_HEADERS)
    parts = list(message.walk())
    assert len(parts) == (3 + 1 + len(mail.attachments) if mail.attachments else 3)
    for part in parts[1:]:
        names = part.keys()
        assert len(names) == len(set(names)), names
        assert set(names) <= PART_HEADERS, names
        assert "Content-Type" in names
    for part in parts:
        for name, value in part.items():
            text = str(value)
            assert len(text.splitlines()) <= 1, (name, text)
            assert "\r" not in text
            assert "\n" not in text
    for line in data.split(b"\n"):
        assert len(line.rstrip(b"\r")) <= 998
    head = data.split(b"\r\n\r\n" if b"\r\n" in data else b"\n\n", 1)[0]
    for line in head.splitlines():
        if line[:1] not in {b" ", b"\t"}:
            name = line.split(b":", 1)[0].decode("ascii").lower()
            assert name not in INJECTED, line
    # The stdlib's folding may add a space (one left before a line break) or drop one (between
    # two encoded words) in 3.11: harmless to the headers, so text is compared without spaces.
    assert unspaced(str(message["Subject"])) == unspaced(header_text(mail.subject))
    name, address = split_mailbox(one_line(mail.sender))
    (sender,) = message["From"].addresses
    assert as_text(sender.addr_spec) == address
    assert unspaced(as_text(sender.display_name)) == unspaced(header_text(name))
    (recipient,) = message["To"].addresses
    assert as_text(recipient.addr_spec) == mail.to.strip()
    for attachment, part in zip(mail.attachments, parts[4:], strict=True):
        filename = part.get_filename()
        assert filename is not None
        assert len(filename.splitlines()) == 1
        assert "=?" not in filename
        assert part.get_content() == attachment.data
    return message


def unspaced(text: str) -> str:
    return "".join(text.split())


def as_text(parsed: str) -> str:
    """A parsed header value as text (the parser keeps raw UTF-8 as surrogate escapes)."""
    return parsed.encode("utf-8", "surrogateescape").decode("utf-8")


def assert_refusal_names_no_value(error: Exception, value: str) -> None:
    text = str(error)
    assert "attacker" not in text
    if len(value.strip()) >= 6:  # a short value ("=?") may appear in any message by chance
        assert value not in text


# -- the sweep --------------------------------------------------------------------------------


@attrs.define
class Tally:
    delivered: int = 0
    refused_by_model: int = 0
    refused_by_transport: int = 0
    #: Kinds the value does not appear in (a label field in a rejection): the same mail as
    #: without the value, delivered already.
    unchanged: int = 0


def baseline() -> dict[MailKind, Mail]:
    renderer = renderer_with()
    return {
        kind: renderer.render(request_with(), kind, key=f"mail:req-1:{kind}") for kind in MailKind
    }


def sweep_rendered(field: str, wire: Wire) -> Tally:
    tally = Tally()
    plain = baseline()
    for value in HOSTILE:
        try:
            renderer, request = RENDERED[field](value)
        except InvalidInput as exc:  # the model or the renderer's settings refuse it
            assert_refusal_names_no_value(exc, value)
            tally.refused_by_model += 1
            continue
        for kind in MailKind:
            mail = renderer.render(request, kind, key=f"mail:req-1:{kind}")
            if mail == plain[kind]:
                tally.unchanged += 1
                continue
            check_delivery(wire, mail, value, tally)
    return tally


def check_delivery(wire: Wire, mail: Mail, value: str, tally: Tally) -> None:
    outcome = wire.attempt(mail)
    if isinstance(outcome, PortRejected):
        assert_refusal_names_no_value(outcome, value)
        assert str(outcome).startswith("mail:shop-1:req-1:")
        assert wire.delivered_nothing()
        tally.refused_by_transport += 1
        return
    assert_only_library_headers(outcome, mail)
    tally.delivered += 1


@pytest.mark.parametrize("field", sorted(RENDERED))
def test_no_hostile_value_in_a_rendered_field_adds_a_header(field: str, wire: Wire) -> None:
    tally = sweep_rendered(field, wire)
    if field == "sender_name":  # the renderer shows the shop's name, never the sender's
        assert tally.delivered == 0
        assert tally.unchanged > 0
    else:
        assert tally.delivered > 0
    # Only the addresses may be refused on the way out; every other value is delivered.
    if field not in ADDRESS_FIELDS:
        assert tally.refused_by_transport == 0


@pytest.mark.parametrize("field", sorted(MAIL))
def test_no_hostile_value_in_a_hosts_mail_adds_a_header(field: str, wire: Wire) -> None:
    # A label-created mail: the one kind with an attachment. The kind only picks the subject
    # text and whether there is an attachment, and these fields replace both themselves.
    rendered = renderer_with().render(request_with(), MailKind.LABEL_CREATED, key="k")
    tally = Tally()
    for value in HOSTILE:
        check_delivery(wire, attrs.evolve(rendered, **MAIL[field](value)), value, tally)
    if field == "mail.message_id":
        assert tally.delivered == 0  # no value of the corpus makes an id of letters and dots
    else:
        assert tally.delivered > 0
    if field not in ADDRESS_FIELDS:
        assert tally.refused_by_transport == 0


def test_the_model_refuses_control_characters_in_one_line_fields() -> None:
    refused = [v for v in HOSTILE if any(c in v for c in "\r\n\x00\x0b\x0c\x1c\x85")]
    assert len(refused) >= 10
    for value in refused:
        with pytest.raises(InvalidInput, match="control characters") as caught:
            request_with(order_number=value)
        assert caught.value.field == "order_number"
        assert_refusal_names_no_value(caught.value, value)


# -- the reported case, with the shipped templates --------------------------------------------

REPORTED = "=?utf-8?q?1001=0D=0AReply-To:_evil@attacker.example?="


def header_block(data: bytes) -> bytes:
    """The message's own header lines, unfolded (continuation lines joined)."""
    text = data.replace(b"\r\n", b"\n")
    head = text.split(b"\n\n", 1)[0]
    return head.replace(b"\n ", b" ").replace(b"\n\t", b"\t")


@pytest.mark.parametrize("language", ["nl", "en"])
@pytest.mark.parametrize("kind", list(MailKind))
def test_the_reported_order_number_shows_as_text_in_every_default_subject(
    wire: Wire, kind: MailKind, language: str
) -> None:
    renderer = MailRenderer(sender=SENDER, shop_name="Voorbeeldshop")
    request = request_with(order_number=REPORTED, customer=Customer(CUSTOMER, "Jan", language))
    mail = renderer.render(request, kind, key=f"mail:req-1:{kind}")
    _key, data = wire.deliver(mail)
    message = assert_only_library_headers(data, mail)
    assert message["Reply-To"] is None
    names = [line.split(b":", 1)[0] for line in header_block(data).split(b"\n")]
    assert b"Reply-To" not in names
    assert "1001" in str(message["Subject"])
    assert "= ?utf-8?q?1001=0D=0AReply-To:_evil@attacker.example?=" in str(message["Subject"])


def test_a_request_through_the_desk_and_dispatcher_delivers_no_injected_header(
    tmp_path: Path,
) -> None:
    world = build_world(MemoryStorage())
    maildir = MaildirTransport(tmp_path / "Maildir")
    world.dispatcher = world.make_dispatcher(mail=maildir)
    new = world.new_request(
        order_number=REPORTED,
        customer=Customer(CUSTOMER, f"Jan {b_word(LF_BCC)} Jansen", "nl"),
    )
    request = world.desk.submit(new)
    world.desk.approve(request.shop_id, request.id, with_label=True, actor="staff-7")
    world.dispatcher.run_until_idle()
    messages = maildir.messages()
    assert len(messages) == 2
    for message in messages:
        assert sorted(message.keys()) == sorted(MESSAGE_HEADERS)
        assert all(len(str(v).splitlines()) == 1 for v in message.values())
        assert "= ?utf-8?q?1001" in str(message["Subject"])


# -- any text at all --------------------------------------------------------------------------

PIECES = st.sampled_from(
    [
        "=?", "?=", "utf-8", "UTF-8", "?q?", "?Q?", "?b?", "?B?", "=0D", "=0A", "=0D=0A", "_",
        "DQo", "Cg", "Bcc:", "Reply-To:", "Subject:", " ", "\t", "\r", "\n", "\r\n", "\x00",
        "\u2028", "\u2029", "\x85", '"', "\\", "<", ">", "@", ",", ";", "(", ")", "é", "東",
        "🎉", "\udcff", "$", "%0D%0A", "*", "'", "x" * 80,
    ]
)  # fmt: skip
HOSTILE_TEXT = st.one_of(
    st.text(max_size=120),
    st.lists(PIECES, max_size=30).map("".join),
    st.lists(st.one_of(PIECES, st.text(max_size=5)), max_size=20).map("".join),
)


@pytest.fixture(scope="module")
def wires(
    tmp_path_factory: pytest.TempPathFactory, smtp_server: tuple[Controller, RecordingHandler]
) -> dict[str, Wire]:
    folder = tmp_path_factory.mktemp("property")
    return {name: Wire(name, folder / "Maildir", smtp_server) for name in TRANSPORTS}


@settings(max_examples=300, deadline=None)
@given(
    field=st.sampled_from(ALL_FIELDS),
    value=HOSTILE_TEXT,
    kind=st.sampled_from(list(MailKind)),
    transport=st.sampled_from(TRANSPORTS),
)
def test_no_text_in_any_field_adds_a_header_on_any_transport(
    wires: dict[str, Wire], field: str, value: str, kind: MailKind, transport: str
) -> None:
    try:
        if field in RENDERED:
            renderer, request = RENDERED[field](value)
            mail = renderer.render(request, kind, key=f"mail:req-1:{kind}")
        else:
            rendered = renderer_with().render(request_with(), kind, key="k")
            mail = attrs.evolve(rendered, **MAIL[field](value))
    except InvalidInput:
        return  # the model, the renderer's settings or the renderer refuse it: nothing is sent
    wire = wires[transport]
    outcome = wire.attempt(mail)
    if isinstance(outcome, PortRejected):
        assert field in ADDRESS_FIELDS, str(outcome)
        assert str(outcome).startswith("mail:shop-1:req-1:")
        assert wire.delivered_nothing()
    else:
        assert_only_library_headers(outcome, mail)


# -- the last line of defence -----------------------------------------------------------------


def _stdlib_subject(_name: str, text: str) -> str:
    """The subject as a plain string: the stdlib parses and folds it, as before this fix."""
    return text


@pytest.mark.parametrize("value", [REPORTED, q_word(LF_BCC), b_word(CRLF_REPLY_TO)])
def test_should_the_cleaning_regress_the_transports_refuse_rather_than_deliver(
    wire: Wire, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    # The construction before this fix: one line, encoded words left as they are, and the
    # stdlib building the subject (on 3.11.7 and 3.12.1 it then writes a real Reply-To or Bcc;
    # on 3.13 it refuses to write it).
    monkeypatch.setattr(message_module, "header_text", one_line)
    monkeypatch.setattr(message_module, "unstructured_header", _stdlib_subject)
    mail = attrs.evolve(
        renderer_with().render(request_with(), MailKind.REQUEST_RECEIVED, key="k"),
        subject=f"Bestelling {value}",
    )
    with pytest.raises(PortRejected) as caught:
        wire.deliver(mail)
    text = str(caught.value)
    assert text.startswith("mail:shop-1:req-1:request_received:")
    assert "the mail was refused" in text
    assert "attacker" not in text
    assert "1001" not in text
    assert wire.delivered_nothing()


@pytest.mark.parametrize("value", [REPORTED, q_word(LF_BCC), b_word(CRLF_REPLY_TO)])
def test_the_subject_writer_encodes_an_encoded_word_it_is_handed(
    wire: Wire, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    # Without the "=?" breaking, the library's own subject writer still makes the word one of
    # its encoded words: the reader sees the text typed, on one line, and no header of it.
    monkeypatch.setattr(message_module, "header_text", one_line)
    mail = attrs.evolve(
        renderer_with().render(request_with(), MailKind.REQUEST_RECEIVED, key="k"),
        subject=f"Bestelling {value}",
    )
    _key, data = wire.deliver(mail)
    assert f"Subject: Bestelling {value}".encode() not in data
    message = message_from_bytes(data, policy=policy.default)
    assert sorted(message.keys()) == sorted(MESSAGE_HEADERS)
    assert message["Subject"] == f"Bestelling {value}"


def built() -> EmailMessage:
    mail = renderer_with().render(request_with(), MailKind.LABEL_CREATED, key="k")
    return to_email_message(attrs.evolve(mail, subject="Bestelling 1001"))


def test_a_header_added_after_building_is_refused() -> None:
    message = built()
    message["Reply-To"] = "evil@attacker.example"
    with pytest.raises(PortRejected, match=r"^mail:k: the mail was refused, part 0 would carry 1"):
        message_bytes(message, key="mail:k")


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ((b"\r\nDate:", b"\r\nBcc: evil@attacker.example\r\nDate:"), "part 0 would carry 1"),
        ((b"\r\nDate:", b"\r\nSubject: again\r\nDate:"), "part 0 would carry 1"),
        ((b"\r\nDate:", b"\r\nSubject: x\r\n =?utf-8?q?=0D=0A?=\r\nDate:"), "part 0"),
        ((b"\r\nX-Retouraanvraag-Kind:", b"\r\nX-Retouraanvraag-Kind:"), None),
        (
            (b"Content-Disposition:", b"Bcc: evil@attacker.example\r\nContent-Disposition:"),
            "part 4",
        ),
        ((b"\r\nDate:", b"\r\nX-Long: " + b"x" * 1000 + b"\r\nDate:"), "part 0"),
    ],
)
def test_bytes_that_differ_from_the_built_message_are_caught(
    change: tuple[bytes, bytes], problem: str | None
) -> None:
    message = built()
    data = message.as_bytes(policy=policy.SMTP).replace(*change, 1)
    found = message_module._header_problem(message, data)
    if problem is None:
        assert found is None
    else:
        assert found is not None
        assert problem in found
        assert "attacker" not in found


def test_a_subject_that_decodes_to_two_lines_is_caught() -> None:
    message = built()
    data = message.as_bytes(policy=policy.SMTP)
    assert b"\r\nSubject: Bestelling 1001\r\n" in data
    hostile = data.replace(b"Bestelling 1001", q_word("1001\r\nnot a header").encode(), 1)
    found = message_module._header_problem(message, hostile)
    assert found == "header Subject of part 0 would read as more than one line"


def test_an_overlong_line_is_caught() -> None:
    message = built()
    data = message.as_bytes(policy=policy.SMTP)
    hostile = data.replace(b"\r\nContent-Language: nl", b"\r\nContent-Language: " + b"n" * 1200)
    assert message_module._header_problem(message, hostile) == (
        "a line would be longer than 998 characters"
    )


#: Each text a subject may show, and the field of the sweep that puts hostile text in it.
SUBJECT_FIELDS = {
    "shop_name": "shop_name",
    "customer_name": "customer_name",
    "order_number": "order_number",
    "request_id": "request_id",
    "reject_reason": "reject_reason",
    "carrier": "label_carrier",
    "tracking_number": "label_tracking_number",
    "label_filename": "label_filename",
}
#: Formatted by the library itself, from a date and an amount.
DERIVED = {"request_date", "return_value"}


def test_every_text_a_subject_may_show_is_swept() -> None:
    in_subjects = set().union(*(PLACEHOLDERS[kind] - BLOCKS for kind in MailKind))
    assert in_subjects - DERIVED == set(SUBJECT_FIELDS)
    assert set(SUBJECT_FIELDS.values()) <= set(RENDERED)
    assert len(HOSTILE) == len(set(HOSTILE))
