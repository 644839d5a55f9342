"""From a rendered :class:`~retouraanvraag.ports.Mail` to a stdlib ``EmailMessage``."""

from __future__ import annotations

import datetime as dt
import re
from email import policy
from email.errors import HeaderParseError
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from typing import Final

from retouraanvraag.errors import InvalidInput
from retouraanvraag.mail._render import one_line
from retouraanvraag.ports import Mail

__all__ = ["envelope_sender", "to_email_message"]

_ADDRESS_RE: Final = re.compile(r'^[^@\s<>()",;:\\\[\]]{1,64}@[^@\s<>()",;:\\\[\]]{1,253}$')
_MESSAGE_ID_RE: Final = re.compile(r"^<[^<>@\s]{1,200}@[^<>@\s]{1,253}>$")
_MIME_NAME: Final = r"[a-z0-9][a-z0-9!#$&^_.+-]{0,126}"
_CONTENT_TYPE_RE: Final = re.compile(rf"^{_MIME_NAME}/{_MIME_NAME}$")


def to_email_message(mail: Mail, *, date: dt.datetime | None = None) -> EmailMessage:
    """Build the MIME message for ``mail``: text and HTML as alternatives, then attachments.

    Every header value is put on one line first, so a CR or LF in a subject, a name or a
    file name cannot start a header of its own.

    Args:
        mail: the rendered mail.
        date: the ``Date`` header (aware); now, in UTC, when not given.

    Raises:
        InvalidInput: the recipient, the sender or the ``Message-ID`` is not one valid
            address or id (``field`` says which); transports treat this as permanent.
    """
    message = EmailMessage(policy=policy.default)
    message["From"] = _sender(mail.sender)
    message["To"] = _address(mail.to, field="to")
    message["Subject"] = one_line(mail.subject)
    message_id = one_line(mail.message_id)
    if not _MESSAGE_ID_RE.match(message_id):
        raise InvalidInput("is not a valid Message-ID (<id@domain>)", field="message_id")
    message["Message-ID"] = message_id
    message["Date"] = format_datetime(date or dt.datetime.now(dt.UTC))
    message["Auto-Submitted"] = "auto-generated"
    message["X-Retouraanvraag-Kind"] = one_line(mail.kind.value)
    message.set_content(mail.text)
    message.add_alternative(mail.html, subtype="html")
    for attachment in mail.attachments:
        content_type = one_line(attachment.content_type).lower()
        if not _CONTENT_TYPE_RE.match(content_type):
            content_type = "application/octet-stream"
        maintype, _, subtype = content_type.partition("/")
        message.add_attachment(
            attachment.data,
            maintype=maintype,
            subtype=subtype,
            filename=_filename(attachment.filename),
        )
    # Last: set_content and add_attachment move or drop every Content-* header.
    message["Content-Language"] = one_line(mail.language) or "nl"
    return message


def envelope_sender(mail: Mail) -> str:
    """The bare address of ``mail.sender``, for the SMTP envelope (``MAIL FROM``).

    Raises:
        InvalidInput: the sender is not one valid address.
    """
    _name, address = parseaddr(one_line(mail.sender))
    return _address(address, field="sender")


def _address(text: str, *, field: str) -> str:
    address = text.strip()
    if one_line(address) != address or not _ADDRESS_RE.match(address):
        raise InvalidInput("is not a single valid e-mail address", field=field)
    return address


def _sender(text: str) -> Address:
    name, address = parseaddr(one_line(text))
    address = _address(address, field="sender")
    try:
        return Address(display_name=name, addr_spec=address)
    except (HeaderParseError, ValueError, IndexError) as exc:
        raise InvalidInput("is not a single valid e-mail address", field="sender") from exc


def _filename(name: str) -> str:
    cleaned = one_line(name).replace("/", "_").replace("\\", "_").strip(". ")
    return cleaned[:200] or "bijlage"
