"""Rendering customer mails from templates: :class:`MailRenderer` and :class:`MailTemplate`."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import html
import re
import string
from collections.abc import Callable, Mapping
from importlib import resources
from typing import Final

import attrs
from babel.dates import format_date

from retouraanvraag._address import one_line, sender_address
from retouraanvraag.errors import InvalidInput, UnknownReason
from retouraanvraag.mail._headers import display_form
from retouraanvraag.model import Language, MailKind, ReasonCatalogue, ReturnRequest
from retouraanvraag.ports import Attachment, Mail
from retouraanvraag.shop import DEFAULT_TIMEZONE, ShopSettings

__all__ = [
    "PLACEHOLDERS",
    "MailNotRenderable",
    "MailRenderer",
    "MailTemplate",
    "TemplateError",
    "default_template",
    "message_id_for",
]


class TemplateError(InvalidInput):
    """A mail template that cannot be used: a syntax error or a placeholder the kind lacks."""


class MailNotRenderable(InvalidInput):
    """The request lacks what the mail must show (a label-created mail without a label)."""


_COMMON: Final = frozenset(
    {
        "shop_name",
        "customer_name",
        "order_number",
        "request_id",
        "request_date",
        "return_value",
        "items",
        "refund",
    }
)
_EXTRA: Final = {
    MailKind.REQUEST_RECEIVED: frozenset[str](),
    MailKind.LABEL_CREATED: frozenset({"carrier", "tracking_number", "label_filename"}),
    MailKind.APPROVED_WITHOUT_RETURN: frozenset[str](),
    MailKind.REJECTED: frozenset({"reject_reason"}),
    MailKind.CANCELLED: frozenset({"label_void"}),
}
#: Placeholders that render to several lines (or HTML blocks): not allowed in a subject.
_BLOCKS: Final = frozenset({"items", "refund", "label_void"})

#: The placeholders each kind of mail offers its templates (subjects: all but the blocks).
PLACEHOLDERS: Final[Mapping[MailKind, frozenset[str]]] = {
    kind: _COMMON | extra for kind, extra in _EXTRA.items()
}

_PHRASES: Final = {
    Language.NL: {
        "refunded": "We hebben de retourkosten van {amount} aan je terugbetaald.",
        "will_refund": "De retourkosten van {amount} die je hebt betaald, betalen we aan je terug.",
        "fee_paid": (
            "Je hebt {amount} aan retourkosten betaald. Wijzen we je aanvraag af, dan betalen "
            "we dit bedrag automatisch terug."
        ),
        "label_void": (
            "Je retourlabel met trackingnummer {tracking} is ongeldig gemaakt; gebruik het "
            "niet meer."
        ),
    },
    Language.EN: {
        "refunded": "We have refunded the return fee of {amount} to you.",
        "will_refund": "We will refund the return fee of {amount} you paid.",
        "fee_paid": (
            "You paid a return fee of {amount}. Should we decline your request, we will "
            "refund it automatically."
        ),
        "label_void": (
            "Your return label with tracking number {tracking} has been voided; please do not "
            "use it any more."
        ),
    },
}


@attrs.frozen
class MailTemplate:
    """The three parts of one mail, as :class:`string.Template` text (``$order_number``).

    Write ``$$`` for a literal dollar sign. In ``html`` every value arrives HTML-escaped and the
    blocks (``$items``, ``$refund``, ``$label_void``) arrive as HTML; in ``text`` and
    ``subject`` values arrive as plain text. :data:`PLACEHOLDERS` lists what each kind offers.
    """

    subject: str
    text: str
    html: str

    def check(self, kind: MailKind, *, where: str = "template") -> None:
        """Check the syntax and that every placeholder is one ``kind`` offers.

        Raises:
            TemplateError: naming the part and the unknown or malformed placeholder.
        """
        allowed = PLACEHOLDERS[kind]
        for part, allowed_here in (
            ("subject", allowed - _BLOCKS),
            ("text", allowed),
            ("html", allowed),
        ):
            template = string.Template(getattr(self, part))
            field = f"{where}.{part}"
            if not template.is_valid():
                raise TemplateError(
                    "has a malformed placeholder (write $$ for a dollar sign)", field=field
                )
            unknown = sorted(set(template.get_identifiers()) - allowed_here)
            if unknown:
                raise TemplateError(
                    f"uses unknown placeholder(s) {', '.join('$' + u for u in unknown)}; "
                    f"a {kind.value} {part} may use {', '.join(sorted(allowed_here))}",
                    field=field,
                )


def default_template(language: Language | str, kind: MailKind) -> MailTemplate:
    """The template the library ships for ``language`` and ``kind`` (a start for your own).

    Raises:
        ValueError: ``language`` is not ``nl`` or ``en``.
    """
    folder = resources.files("retouraanvraag.mail") / "templates" / Language(language).value
    name = MailKind(kind).value
    return MailTemplate(
        subject=(folder / f"{name}.subject.txt").read_text(encoding="utf-8").strip(),
        text=(folder / f"{name}.txt").read_text(encoding="utf-8"),
        html=(folder / f"{name}.html").read_text(encoding="utf-8"),
    )


def message_id_for(shop_id: str, key: str, domain: str) -> str:
    """The ``Message-ID`` of the mail sent under an effect ``key``: the same on every retry."""
    digest = hashlib.sha256(f"{shop_id}\x00{key}".encode()).hexdigest()[:32]
    return f"<{digest}@{domain}>"


def header_text(text: str) -> str:
    """``text`` as a header may carry it: one line, and taken literally by every mail parser.

    Putting a value on one line is not enough. The stdlib ``email`` package decodes RFC 2047
    encoded words (``=?utf-8?q?…=0D=0A…?=``) in a header value when the header is set, and
    Pythons without its own fix (CVE-2024-6923: before 3.11.10, 3.12.5 and 3.13.0) then write the
    decoded CR LF as a real line break: a header of the attacker's choosing. An encoded word
    must start with ``=?``; a space inside every ``=?`` means no parser (ours, the reader's, or
    a relay's that parses and writes the message again) decodes anything the library did not
    encode itself. Lone surrogates, which no charset can write, become U+FFFD.
    """
    cleaned = "".join("\N{REPLACEMENT CHARACTER}" if _is_surrogate(c) else c for c in text)
    return one_line(cleaned).replace("=?", "= ?")


def _is_surrogate(char: str) -> bool:
    return "\ud800" <= char <= "\udfff"


def display_address(name: str, address: str) -> str:
    """``Name <address>``, the name as literal text, quoted when it must be; never encoded.

    The encoded form (what :func:`email.utils.formataddr` makes of a non-ASCII name) would be
    decoded again when the header is built; the plain text is encoded once, on the way out.
    """
    return display_form(header_text(name), address)


@attrs.frozen
class _Branding:
    """What the mails of one shop show of it, checked once per settings value."""

    name: str
    address: str
    domain: str
    zone: dt.tzinfo
    reasons: ReasonCatalogue

    @property
    def sender(self) -> str:
        return display_address(self.name, self.address)


@functools.lru_cache(maxsize=1024)
def _branding(settings: ShopSettings) -> _Branding:
    if settings.sender is None:
        raise InvalidInput("is needed to send mails", field="sender")
    if settings.name is None:
        raise InvalidInput("is needed to send mails", field="name")
    address = sender_address(settings.sender)
    name = settings.name.strip()
    if one_line(name) != name:
        raise InvalidInput("must be one line of text", field="shop_name")
    return _Branding(
        name, address, address.rpartition("@")[2].lower(), settings.zone, settings.reasons
    )


ShopLookup = Callable[[str], ShopSettings]


class MailRenderer:
    """Renders the customer mails of the return lifecycle in Dutch or English.

    The customer's language picks the templates; amounts are formatted with
    :meth:`~retouraanvraag.model.Money.format` and dates with Babel, both per locale. The
    host may replace the template of any ``(language, kind)``; replacements are checked here,
    so that a typo in a placeholder fails at start-up rather than when a mail is due.

    One renderer serves many shops: give ``shops`` (one
    :class:`~retouraanvraag.shop.ShopSettings` per shop id, as a mapping or a function), and
    each request's mails carry its own shop's name, sender, zone and reasons. For a single
    shop, ``sender``, ``shop_name``, ``reasons`` and ``timezone`` say the same in short.

    Args:
        shops: the shops' settings by shop id, a function from shop id to them, or one
            settings value for every shop.
        sender: the From address (``retouren@shop.example``), optionally with a name.
        shop_name: the shop's name, shown in the mails and as the From name.
        reasons: the shop's reason catalogue, to show reasons by their label.
        templates: replacements keyed by ``(language, kind)``.
        timezone: the IANA zone dates are shown in.

    Raises:
        InvalidInput: ``shops`` given beside the single-shop settings, or neither; the sender
            is not one address, the shop name has control characters or the time zone is
            unknown (for a mapping, every shop's settings are checked here).
        TemplateError: a replacement template is malformed or uses an unknown placeholder.
    """

    def __init__(
        self,
        *,
        shops: ShopSettings | Mapping[str, ShopSettings] | ShopLookup | None = None,
        sender: str | None = None,
        shop_name: str | None = None,
        reasons: ReasonCatalogue | None = None,
        templates: Mapping[tuple[Language | str, MailKind], MailTemplate] | None = None,
        timezone: str | None = None,
    ) -> None:
        """Check the configuration and every template once."""
        self._shops = _lookup(shops, sender, shop_name, reasons, timezone)
        self._templates: dict[tuple[Language, MailKind], MailTemplate] = {}
        for language in Language:
            for kind in MailKind:
                self._templates[language, kind] = default_template(language, kind)
        for (language_key, kind), template in (templates or {}).items():
            where = f"templates[{language_key},{kind}]"
            try:
                key = (Language(language_key), MailKind(kind))
            except ValueError:
                raise TemplateError(
                    "is keyed by an unknown language or mail kind", field=where
                ) from None
            if not isinstance(template, MailTemplate):
                raise TemplateError("must be a MailTemplate", field=where)
            self._templates[key] = template
        for (language, kind), template in self._templates.items():
            template.check(kind, where=f"templates[{language.value},{kind.value}]")

    def sender_for(self, shop_id: str) -> str:
        """The From header of ``shop_id``'s mails (``Shop <a@shop.example>``).

        Raises:
            MailNotRenderable: the renderer has no settings for this shop, or they lack a
                sender or a name.
        """
        return self._brand(shop_id).sender

    @property
    def sender(self) -> str:
        """The From header of a single-shop renderer (see :meth:`sender_for` for many)."""
        if self._single is None:
            raise InvalidInput("this renderer serves many shops: use sender_for(shop_id)")
        return self._brand("").sender

    @property
    def _single(self) -> ShopSettings | None:
        return getattr(self._shops, "settings", None)

    def _brand(self, shop_id: str) -> _Branding:
        try:
            settings = self._shops(shop_id)
        except (KeyError, LookupError):
            raise MailNotRenderable(
                f"no shop settings for shop {shop_id!r}", field="shops"
            ) from None
        if not isinstance(settings, ShopSettings):
            raise MailNotRenderable(
                f"the settings of shop {shop_id!r} are not ShopSettings", field="shops"
            )
        try:
            return _branding(settings)
        except InvalidInput as error:
            raise MailNotRenderable(
                f"shop {shop_id!r}: {error}", field=error.field or "shops"
            ) from None

    def render(self, request: ReturnRequest, kind: MailKind, *, key: str) -> Mail:
        """Render the ``kind`` mail about ``request``, sent under the effect ``key``.

        Returns:
            The mail, in the customer's language; its ``message_id`` derives from the shop and
            ``key`` alone, so a retry carries the same ``Message-ID``. A label-created mail has
            the label attached.

        Raises:
            MailNotRenderable: a label-created mail for a request without a label, or a
                rejected mail without a reason.
        """
        kind = MailKind(kind)
        language = request.customer.language
        brand = self._brand(request.shop_id)
        values = self._values(request, kind, language, brand)
        attachments: tuple[Attachment, ...] = ()
        if kind is MailKind.LABEL_CREATED and request.label is not None:
            label = request.label
            attachments = (Attachment(label.filename, label.content_type, label.document),)
        template = self._templates[language, kind]
        text = _fill(template.text, values, lambda v: v)
        html_body = _fill(template.html, values, _html_value)
        return Mail(
            to=request.customer.email,
            # The whole subject, not each value: a template's "=" and a value's "?" meet here.
            subject=header_text(_fill(template.subject, values, one_line)),
            text=re.sub(r"\n{3,}", "\n\n", text).strip() + "\n",
            html=re.sub(r"\n{2,}", "\n", html_body).strip() + "\n",
            kind=kind,
            request_id=request.id,
            message_id=message_id_for(request.shop_id, key, brand.domain),
            sender=brand.sender,
            language=language.value,
            attachments=attachments,
            shop_id=request.shop_id,
        )

    # -- values -------------------------------------------------------------------------------

    def _values(
        self, request: ReturnRequest, kind: MailKind, language: Language, brand: _Branding
    ) -> dict[str, _Value]:
        phrases = _PHRASES[language]
        created = request.created_at.astimezone(brand.zone)
        values: dict[str, _Value] = {
            "shop_name": brand.name,
            "customer_name": request.customer.name,
            "order_number": request.order_number,
            "request_id": request.id,
            "request_date": format_date(created.date(), format="long", locale=_LOCALES[language]),
            "return_value": request.return_value.format(language),
            "items": self._items(request, language, brand.reasons),
            "refund": _Block.paragraph(self._refund_note(request, kind, language)),
        }
        if kind is MailKind.LABEL_CREATED:
            if request.label is None:
                raise MailNotRenderable(
                    f"request {request.id}: a label-created mail needs the request's label, "
                    "and it has none",
                    field="label",
                )
            values["carrier"] = request.label.carrier
            values["tracking_number"] = request.label.tracking_number
            values["label_filename"] = request.label.filename
        elif kind is MailKind.REJECTED:
            if not request.reject_reason:
                raise MailNotRenderable(
                    f"request {request.id}: a rejected mail needs the reject reason, and it has "
                    "none",
                    field="reject_reason",
                )
            values["reject_reason"] = request.reject_reason
        elif kind is MailKind.CANCELLED:
            note = None
            if request.label is not None:
                note = phrases["label_void"].format(tracking=request.label.tracking_number)
            values["label_void"] = _Block.paragraph(note)
        return values

    @staticmethod
    def _items(request: ReturnRequest, language: Language, reasons: ReasonCatalogue) -> _Block:
        lines: list[str] = []
        rows: list[str] = []
        for item in request.items:
            try:
                reason = reasons.resolve(item.reason).label(language)
            except UnknownReason:
                reason = item.reason
            if item.reason_text and item.reason_text.strip():
                reason = f"{reason}: {one_line(item.reason_text)}"
            amount = item.value.format(language)
            lines.append(f"- {item.quantity} {_TIMES} {one_line(item.name)} — {reason} — {amount}")
            rows.append(
                "<tr>"
                f"<td>{item.quantity} {_TIMES}</td><td>{html.escape(one_line(item.name))}</td>"
                f"<td>{html.escape(reason)}</td>"
                f'<td style="text-align:right">{html.escape(amount)}</td>'
                "</tr>"
            )
        table = '<table cellpadding="4">\n' + "\n".join(rows) + "\n</table>"
        return _Block("\n".join(lines), table)

    @staticmethod
    def _refund_note(request: ReturnRequest, kind: MailKind, language: Language) -> str | None:
        phrases = _PHRASES[language]
        if request.refunds:
            return phrases["refunded"].format(amount=request.refunded.format(language))
        due = request.refund_due
        if not due.amount:
            return None
        if kind is MailKind.REQUEST_RECEIVED:
            return phrases["fee_paid"].format(amount=due.format(language))
        if kind in {MailKind.REJECTED, MailKind.CANCELLED}:
            return phrases["will_refund"].format(amount=due.format(language))
        return None


_TIMES: Final = "\N{MULTIPLICATION SIGN}"
_LOCALES: Final = {Language.NL: "nl_NL", Language.EN: "en_GB"}


@attrs.frozen
class _Block:
    """A value rendered differently in text and in HTML (already safe HTML)."""

    text: str
    html: str

    @classmethod
    def paragraph(cls, sentence: str | None) -> _Block:
        if sentence is None:
            return cls("", "")
        return cls(sentence, f"<p>{html.escape(sentence)}</p>")


_Value = str | _Block


def _html_value(value: str) -> str:
    return html.escape(value).replace("\n", "<br>\n")


def _fill(template: str, values: Mapping[str, _Value], plain: Callable[[str], str]) -> str:
    """Substitute ``values``; plain text goes through ``plain``, blocks pick their form."""
    html_form = plain is _html_value
    prepared = {
        name: (value.html if html_form else value.text)
        if isinstance(value, _Block)
        else plain(value)
        for name, value in values.items()
    }
    return string.Template(template).substitute(prepared)


@attrs.frozen
class _Every:
    """One shop's settings, for every shop id."""

    settings: ShopSettings

    def __call__(self, _shop_id: str) -> ShopSettings:
        return self.settings


def _single_shop(
    sender: str | None,
    shop_name: str | None,
    reasons: ReasonCatalogue | None,
    timezone: str | None,
) -> ShopSettings:
    """The settings that ``sender=``, ``shop_name=``, ``reasons=`` and ``timezone=`` give."""
    if sender is None or shop_name is None:
        raise InvalidInput("give shops=, or sender= and shop_name=", field="shops")
    if not isinstance(shop_name, str) or not shop_name.strip():
        raise InvalidInput("must be one line of text", field="shop_name")
    try:
        settings = ShopSettings(
            name=shop_name.strip(),
            sender=sender,
            timezone=DEFAULT_TIMEZONE if timezone is None else timezone,
            reasons=reasons or ReasonCatalogue(),
        )
    except InvalidInput as error:
        field = "shop_name" if error.field == "name" else error.field
        raise InvalidInput(error.problem, field=field) from None
    _branding(settings)
    return settings


def _lookup(
    shops: ShopSettings | Mapping[str, ShopSettings] | ShopLookup | None,
    sender: str | None,
    shop_name: str | None,
    reasons: ReasonCatalogue | None,
    timezone: str | None,
) -> ShopLookup:
    """The renderer's ``shops`` argument, or its single-shop shorthands, as one lookup."""
    if shops is None:
        return _Every(_single_shop(sender, shop_name, reasons, timezone))
    if any(value is not None for value in (sender, shop_name, reasons, timezone)):
        raise InvalidInput(
            "give the shop's sender, name, reasons and zone in shops=, not beside it",
            field="shops",
        )
    if isinstance(shops, ShopSettings):
        _branding(shops)
        return _Every(shops)
    if isinstance(shops, Mapping):
        table = dict(shops)
        for shop_id, settings in table.items():
            if not isinstance(settings, ShopSettings):
                raise InvalidInput("must be ShopSettings", field=f"shops[{shop_id!r}]")
            try:
                _branding(settings)
            except InvalidInput as error:
                raise error.at(f"shops[{shop_id!r}]") from None
        return table.__getitem__
    if callable(shops):
        return shops
    raise InvalidInput(
        "must be ShopSettings, a mapping or a function of the shop id", field="shops"
    )
