"""A shop's settings: one value read by the policy, the rule parser and the mail renderer.

A shop's time zone, language, currency, return reasons, preset reject reasons, name and mail
sender used to be given separately to :class:`~retouraanvraag.Policy`,
:func:`retouraanvraag.rules.parse` and :class:`~retouraanvraag.mail.MailRenderer`, each
checking the zone its own way. :class:`ShopSettings` holds them once, checked once; the three
read it. :func:`time_zone` is the one place a zone name is checked.
"""

from __future__ import annotations

import datetime as dt
import functools
import zoneinfo
from collections.abc import Callable
from typing import Final

import attrs

from retouraanvraag._address import sender_address
from retouraanvraag.errors import InvalidInput
from retouraanvraag.model import Language, Money, Reason, ReasonCatalogue

__all__ = [
    "DEFAULT_REJECT_REASONS",
    "DEFAULT_TIMEZONE",
    "ShopSettings",
    "time_zone",
]

#: The zone a shop has unless it says otherwise.
DEFAULT_TIMEZONE: Final = "Europe/Amsterdam"

# Names in the zone database that are not a place: "localtime" is whatever zone the server
# runs in (so the return window would move with the host), "Factory" is no zone at all.
_NOT_PLACES: Final = frozenset({"localtime", "Factory", "posixrules", "posix", "right"})

#: Reasons a merchant can pick when rejecting, beside typing their own (DESIGN §2).
DEFAULT_REJECT_REASONS: Final = (
    Reason(
        "outside_window",
        "De retourtermijn is verstreken",
        "The return period has passed",
    ),
    Reason("used", "Het product is gebruikt", "The product has been used"),
    Reason(
        "not_returnable",
        "Dit product kan niet worden geretourneerd",
        "This product cannot be returned",
    ),
    Reason(
        "photo_unclear",
        "Op de foto is het probleem niet te zien",
        "The photo does not show the problem",
    ),
    Reason(
        "incomplete",
        "Het product is niet compleet of zit niet in de originele verpakking",
        "The product is incomplete or not in its original packaging",
    ),
)


#: Longer names are not echoed in the error.
_SHOWN: Final = 64


@functools.cache
def _places() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones()) - _NOT_PLACES


def time_zone(name: object, *, field: str = "timezone") -> zoneinfo.ZoneInfo:
    """The IANA time zone called ``name`` (``Europe/Amsterdam``).

    Only the zone database's place names are taken, from the system or, where it has none,
    from the ``tzdata`` package. An empty name, ``localtime`` (the server's own zone) and
    POSIX strings such as ``UTC+3`` (which means three hours *behind* UTC) are refused: each
    would silently move a return window.

    Raises:
        InvalidInput: ``name`` is not a place name of the zone database; ``field`` names
            where it came from.
    """
    if not isinstance(name, str) or name not in _places():
        shown = repr(name) if isinstance(name, str) and len(name) <= _SHOWN else "the value"
        raise InvalidInput(
            f"unknown IANA time zone {shown} (write a place name such as 'Europe/Amsterdam')",
            field=field,
        )
    return zoneinfo.ZoneInfo(name)


def _check_zone(_instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    time_zone(value, field=attribute.name)


def _check_currency(_instance: object, _attribute: object, value: str) -> None:
    try:
        Money(0, value)  # the model's one check of an ISO 4217 code
    except InvalidInput as error:
        raise InvalidInput(error.problem, field="currency") from None


def _optional_line(limit: int) -> Callable[[object, attrs.Attribute[str | None], object], None]:
    def check(_instance: object, attribute: attrs.Attribute[str | None], value: object) -> None:
        if value is None:
            return
        if not isinstance(value, str) or not value.strip() or len(value) > limit:
            raise InvalidInput(f"must be text of 1 to {limit} characters", field=attribute.name)
        if any(ch < " " or "\x7f" <= ch <= "\x9f" or "\u2028" <= ch <= "\u2029" for ch in value):
            raise InvalidInput("must be one line of text", field=attribute.name)

    return check


def _sender(_instance: object, attribute: attrs.Attribute[str | None], value: object) -> None:
    if value is None:
        return
    sender_address(value, field=attribute.name)


def _language(value: Language | str) -> Language:
    try:
        return Language(value)
    except ValueError:
        raise InvalidInput("must be 'nl' or 'en'", field="language") from None


def _catalogue(value: ReasonCatalogue | tuple[Reason, ...]) -> ReasonCatalogue:
    return value if isinstance(value, ReasonCatalogue) else ReasonCatalogue(value)


def _reject_catalogue(value: ReasonCatalogue | tuple[Reason, ...]) -> ReasonCatalogue:
    return _catalogue(value)


@attrs.frozen
class ShopSettings:
    """What a shop has set once for everything the library does for it.

    Give it to :class:`~retouraanvraag.Policy` (``Policy(shop=...)``), to
    :func:`retouraanvraag.rules.parse` (``shop=``) and to
    :class:`~retouraanvraag.mail.MailRenderer` (one settings value per shop id), so that the
    three never disagree about the zone, the reasons or the currency.

    Attributes:
        name: the shop's name, shown in mails and as the From name.
        sender: the address mails come from (``retouren@shop.example``); the renderer needs
            it, the policy does not.
        timezone: the merchant's IANA zone: return windows, "days since delivery" and the
            dates in mails count calendar days there.
        language: the merchant's language (``nl`` or ``en``), for what the merchant reads;
            customers are written to in their own language.
        currency: the shop's ISO 4217 currency: a plain amount in a rule is in it.
        reasons: the return reasons customers pick from.
        reject_reasons: the reasons a merchant can pick when rejecting (code, nl, en); a
            picked one reaches the customer in the customer's language.

    Raises:
        InvalidInput: a setting is malformed; ``field`` names it.
    """

    name: str | None = attrs.field(default=None, validator=_optional_line(200))
    sender: str | None = attrs.field(default=None, validator=_sender)
    timezone: str = attrs.field(default=DEFAULT_TIMEZONE, validator=_check_zone)
    language: Language = attrs.field(default=Language.NL, converter=_language)
    currency: str = attrs.field(default="EUR", validator=_check_currency)
    reasons: ReasonCatalogue = attrs.field(factory=ReasonCatalogue, converter=_catalogue)
    reject_reasons: ReasonCatalogue = attrs.field(
        factory=lambda: ReasonCatalogue(DEFAULT_REJECT_REASONS), converter=_reject_catalogue
    )

    @property
    def zone(self) -> dt.tzinfo:
        """The shop's time zone."""
        return time_zone(self.timezone)

    def reject_reason(self, code: str) -> Reason:
        """The preset reject reason ``code`` (or its nl/en label).

        Raises:
            UnknownReason: no such preset, with the nearest one as ``suggestion``.
        """
        return self.reject_reasons.resolve(code, field="reason")
