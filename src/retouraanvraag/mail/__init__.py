"""Customer mails: templates in Dutch and English, rendering, and the MIME message.

:class:`MailRenderer` turns a request and a :class:`~retouraanvraag.model.MailKind` into a
:class:`~retouraanvraag.ports.Mail`; :func:`to_email_message` turns that into a stdlib
:class:`email.message.EmailMessage`, which the SMTP and Maildir transports send. The shipped
templates are package data (``mail/templates/<language>/<kind>.{subject.txt,txt,html}``);
hosts replace any of them with a :class:`MailTemplate`. See ``docs/mail.md``.
"""

from __future__ import annotations

from retouraanvraag.mail._message import envelope_sender, to_email_message
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
    "PLACEHOLDERS",
    "MailNotRenderable",
    "MailRenderer",
    "MailTemplate",
    "TemplateError",
    "default_template",
    "envelope_sender",
    "message_id_for",
    "to_email_message",
]
