"""From a rendered :class:`~retouraanvraag.ports.Mail` to a stdlib ``EmailMessage``, and to bytes.

Two layers keep a header the library did not write out of every delivered message:

1. :func:`to_email_message` builds each header from text no parser reads as anything but text
   (:func:`~retouraanvraag.mail._render.header_text`: one line, no ``=?`` that could open an
   RFC 2047 encoded word), from addresses and ids matched against strict patterns, and from
   values the library chose itself (the date, the kind, a checked content type). ``From``,
   ``To`` and ``Subject`` it encodes and folds itself (:mod:`~retouraanvraag.mail._headers`),
   so the stdlib neither parses nor refolds the text in them.
2. :func:`message_bytes`, which every transport calls for the bytes it hands on, parses the
   serialised message back and compares its headers, part by part, with the ones the message
   was built with: anything more or fewer, a value that reads as two lines, a ``From`` or
   ``To`` that is not the one mailbox written, or a line over 998 characters is refused. This
   does not depend on the Python release: the stdlib's own check
   (``verify_generated_headers``, CVE-2024-6923) is missing from older patch releases.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from email import message_from_bytes, policy
from email.errors import HeaderParseError, MessageError
from email.message import EmailMessage, Message
from email.utils import format_datetime
from typing import Any, Final

from retouraanvraag._address import one_line
from retouraanvraag.errors import InvalidInput, PortRejected
from retouraanvraag.mail._headers import (
    WrittenHeader,
    checked_address,
    mailbox_header,
    split_mailbox,
    unstructured_header,
)
from retouraanvraag.mail._render import header_text
from retouraanvraag.model import MailKind
from retouraanvraag.ports import Mail

__all__ = [
    "MESSAGE_HEADERS",
    "PART_HEADERS",
    "envelope_sender",
    "message_bytes",
    "to_email_message",
]

#: Every header the library writes on a message; a delivered message carries these and no other.
MESSAGE_HEADERS: Final = (
    "From",
    "To",
    "Subject",
    "Message-ID",
    "Date",
    "Auto-Submitted",
    "X-Retouraanvraag-Kind",
    "MIME-Version",
    "Content-Type",
    "Content-Language",
)
#: The headers a part inside the message may carry (which of them depends on the part).
PART_HEADERS: Final = frozenset(
    {"Content-Type", "Content-Transfer-Encoding", "Content-Disposition", "MIME-Version"}
)

_MESSAGE_ID_RE: Final = re.compile(r"^<[A-Za-z0-9._%+-]{1,200}@[A-Za-z0-9.-]{1,253}>$")
_MIME_NAME: Final = r"[a-z0-9][a-z0-9!#$&^_.+-]{0,126}"
_CONTENT_TYPE_RE: Final = re.compile(rf"^{_MIME_NAME}/{_MIME_NAME}$")
_LANGUAGE_RE: Final = re.compile(r"^[A-Za-z]{2,8}(?:-[A-Za-z0-9]{1,8}){0,4}$")
# Containers: an attachment declared as one would make the parser read its bytes as MIME.
_CONTAINERS: Final = frozenset({"multipart", "message"})
_ATTACHMENT_TYPE: Final = "application/octet-stream"
_MAX_FILENAME: Final = 200
#: RFC 5322 §2.1.1: a line of a message is at most 998 characters, CRLF not counted.
_MAX_LINE: Final = 998
_SURROGATES: Final = re.compile("[\ud800-\udfff]")


def to_email_message(mail: Mail, *, date: dt.datetime | None = None) -> EmailMessage:
    """Build the MIME message for ``mail``: text and HTML as alternatives, then attachments.

    Every header value is taken as literal text: put on one line (a CR or LF cannot start a
    header of its own) and with every ``=?`` broken up (an RFC 2047 encoded word in a subject,
    a name or a file name is never decoded into one). The subject and the sender's name are
    encoded by the library (plain ASCII words as they are, anything else as encoded words);
    an attachment's name by the stdlib (RFC 2231).

    Args:
        mail: the rendered mail.
        date: the ``Date`` header (aware); now, in UTC, when not given.

    Raises:
        InvalidInput: the recipient, the sender or the ``Message-ID`` is not one valid
            address or id, or the kind is unknown (``field`` says which); transports treat
            this as permanent.
    """
    message = EmailMessage(policy=policy.default)
    # The library writes these three itself (see _headers): the stdlib's parsing and folding
    # of them has turned text into structure before.
    name, address = _sender(mail.sender)
    _set(message, "From", mailbox_header("From", name, address), field="sender")
    _set(message, "To", mailbox_header("To", "", _address(mail.to, field="to")), field="to")
    subject = header_text(mail.subject) if isinstance(mail.subject, str) else ""
    _set(message, "Subject", unstructured_header("Subject", subject), field="subject")
    message_id = mail.message_id.strip() if isinstance(mail.message_id, str) else ""
    if not _MESSAGE_ID_RE.match(message_id):
        raise InvalidInput("is not a valid Message-ID (<id@domain>)", field="message_id")
    _set(message, "Message-ID", message_id, field="message_id")
    _set(message, "Date", format_datetime(date or dt.datetime.now(dt.UTC)), field="date")
    _set(message, "Auto-Submitted", "auto-generated", field="auto_submitted")
    _set(message, "X-Retouraanvraag-Kind", _kind(mail.kind), field="kind")
    message.set_content(_encodable(mail.text))
    message.add_alternative(_encodable(mail.html), subtype="html")
    for index, attachment in enumerate(mail.attachments):
        maintype, _, subtype = _content_type(attachment.content_type).partition("/")
        try:
            message.add_attachment(
                bytes(attachment.data),
                maintype=maintype,
                subtype=subtype,
                filename=_filename(attachment.filename),
            )
        except (HeaderParseError, ValueError, TypeError) as exc:
            raise InvalidInput("cannot be attached", field=f"attachments[{index}]") from exc
    # Last: set_content and add_attachment move or drop every Content-* header.
    _set(message, "Content-Language", _language(mail.language), field="language")
    return message


def message_bytes(
    message: EmailMessage, *, key: str, linesep: str = "\r\n", utf8: bool = False
) -> bytes:
    r"""Serialise ``message`` for a transport, and prove that it carries only its own headers.

    The bytes are parsed back with the stdlib parser (as a reader or MTA would). Their headers,
    part by part, must be exactly those ``message`` was built with, and those only from
    :data:`MESSAGE_HEADERS` (the message) and :data:`PART_HEADERS` (its parts); each header's
    value must read as one line, and no line of the message may exceed 998 characters. This
    is the last line of defence, should a header value ever reach the stdlib in a form it
    turns into a line break.

    Args:
        message: a message from :func:`to_email_message`.
        key: the effect key, for the error message.
        linesep: ``"\r\n"`` for SMTP, ``"\n"`` for a file.
        utf8: write non-ASCII header text raw (RFC 6532, SMTPUTF8) instead of encoding it.

    Raises:
        PortRejected: the serialised message would carry another header than the library
            wrote, or a header the stdlib refuses to write. The message names the key and
            counts, never a header's value.
        UnicodeEncodeError: ``utf8`` is false and an address is not ASCII.
    """
    chosen = policy.default.clone(linesep=linesep, utf8=utf8)
    try:
        data = message.as_bytes(policy=chosen)
    except MessageError as exc:  # HeaderWriteError, on Pythons that check this themselves
        raise PortRejected(
            f"{key}: the mail was refused, a header would not serialise on one line"
        ) from exc
    problem = _header_problem(message, data)
    if problem is not None:
        raise PortRejected(f"{key}: the mail was refused, {problem}")
    return data


def envelope_sender(mail: Mail) -> str:
    """The bare address of ``mail.sender``, for the SMTP envelope (``MAIL FROM``).

    Raises:
        InvalidInput: the sender is not one valid address.
    """
    return _sender(mail.sender)[1]


# -- building -------------------------------------------------------------------------------


def _set(message: EmailMessage, name: str, value: str, *, field: str) -> None:
    try:
        message[name] = value
    except (HeaderParseError, ValueError, TypeError) as exc:
        raise InvalidInput("cannot be written as a mail header", field=field) from exc


def _address(text: str, *, field: str) -> str:
    return checked_address(text.strip() if isinstance(text, str) else "", field=field)


def _sender(text: str) -> tuple[str, str]:
    """The display name (as literal text) and the checked address of ``Name <address>``."""
    name, address = split_mailbox(one_line(text) if isinstance(text, str) else "")
    return header_text(name), checked_address(address, field="sender")


def _kind(kind: str) -> str:
    try:
        return MailKind(kind).value
    except ValueError:
        raise InvalidInput("is not a mail kind", field="kind") from None


def _language(text: str) -> str:
    tag = text.strip() if isinstance(text, str) else ""
    return tag if _LANGUAGE_RE.match(tag) else "nl"


def _content_type(text: str) -> str:
    content_type = one_line(text).lower() if isinstance(text, str) else ""
    if not _CONTENT_TYPE_RE.match(content_type):
        return _ATTACHMENT_TYPE
    if content_type.partition("/")[0] in _CONTAINERS:
        return _ATTACHMENT_TYPE
    return content_type


def _filename(name: str) -> str:
    cleaned = header_text(name if isinstance(name, str) else "")
    cleaned = cleaned.replace("/", "_").replace("\\", "_").strip(". ")
    return cleaned[:_MAX_FILENAME].rstrip(". ") or "bijlage"


def _encodable(text: str) -> str:
    """A body as UTF-8 can carry it: lone surrogates (which no charset writes) become U+FFFD."""
    return _SURROGATES.sub("\N{REPLACEMENT CHARACTER}", text)


# -- checking -------------------------------------------------------------------------------


def _header_names(part: Message) -> Counter[str]:
    return Counter(name.lower() for name in part)  # iterating a message yields repeats too


_ALLOWED_ON_MESSAGE: Final = frozenset(name.lower() for name in MESSAGE_HEADERS)
_ALLOWED_ON_PARTS: Final = frozenset(name.lower() for name in PART_HEADERS)


def _reads_as_written(header: WrittenHeader, parsed: Message) -> bool:
    """Whether a reader parses ``header`` back to the text or the one mailbox it holds.

    Text is compared without its spaces: readers differ in the space between two encoded
    words of a display name (RFC 2047 drops it, the stdlib's parser keeps one), which changes
    no structure.
    """
    found = parsed[header.name]
    if header.mailbox is None:
        return _unspaced(str(found)) == _unspaced(str(header))
    addresses: tuple[Any, ...] = getattr(found, "addresses", ())
    if len(addresses) != 1:
        return False
    (address,) = addresses
    name, addr_spec = header.mailbox
    return _text(address.addr_spec) == addr_spec and _unspaced(
        _text(address.display_name)
    ) == _unspaced(name)


def _text(value: str) -> str:
    """A parsed value as text: the parser keeps raw UTF-8 (RFC 6532) as surrogate escapes."""
    return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _unspaced(text: str) -> str:
    return "".join(text.split())


def _header_problem(built: EmailMessage, data: bytes) -> str | None:
    """Why ``data`` does not carry exactly the headers of ``built``, or ``None``."""
    parsed = message_from_bytes(data, policy=policy.default)
    expected = [_header_names(part) for part in built.walk()]
    found = [_header_names(part) for part in parsed.walk()]
    if len(found) != len(expected):
        return f"it serialises to {len(found)} MIME parts instead of {len(expected)}"
    for index, (wanted, got) in enumerate(zip(expected, found, strict=True)):
        allowed = _ALLOWED_ON_MESSAGE if index == 0 else _ALLOWED_ON_PARTS
        # Headers the bytes have and the message has not, and headers not of the library's
        # set at all (written onto the message after it was built, say).
        unexpected = sum((got - wanted).values())
        unexpected += sum(count for name, count in (got & wanted).items() if name not in allowed)
        missing = sum((wanted - got).values())
        if unexpected or missing:
            return (
                f"part {index} would carry {unexpected} header(s) the library did not write "
                f"and miss {missing}"
            )
    for index, part in enumerate(parsed.walk()):
        for name, value in part.items():
            if len(str(value).splitlines()) > 1:
                return f"header {name} of part {index} would read as more than one line"
    for header in built.values():
        if isinstance(header, WrittenHeader) and not _reads_as_written(header, parsed):
            return f"header {header.name} would not read back as it was written"
    if any(len(line.rstrip(b"\r")) > _MAX_LINE for line in data.split(b"\n")):
        # A relay may break such a line, and the break could start a header.
        return f"a line would be longer than {_MAX_LINE} characters"
    return None
