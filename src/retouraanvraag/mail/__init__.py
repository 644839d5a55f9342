"""Customer mails: templates in Dutch and English, rendering, and the MIME message.

:class:`MailRenderer` turns a request and a :class:`~retouraanvraag.model.MailKind` into a
:class:`~retouraanvraag.ports.Mail`; :func:`to_email_message` turns that into a stdlib
:class:`email.message.EmailMessage`, and :func:`message_bytes` into the bytes the SMTP and Maildir
transports send, checked to carry only the headers the library writes. The shipped
templates are package data (``mail/templates/<language>/<kind>.{subject.txt,txt,html}``);
hosts replace any of them with a :class:`MailTemplate`. See ``docs/mail.md``.
"""

from __future__ import annotations

from retouraanvraag.mail._message import (
    MESSAGE_HEADERS,
    PART_HEADERS,
    envelope_sender,
    message_bytes,
    to_email_message,
)
from retouraanvraag.mail._render import (
    PLACEHOLDERS,
    MailNotRenderable,
    MailRenderer,
    MailTemplate,
    TemplateError,
    default_template,
    message_id_for,
)

__all__ = [
    "MESSAGE_HEADERS",
    "PART_HEADERS",
    "PLACEHOLDERS",
    "MailNotRenderable",
    "MailRenderer",
    "MailTemplate",
    "TemplateError",
    "default_template",
    "envelope_sender",
    "message_bytes",
    "message_id_for",
    "to_email_message",
]
