"""Value objects and the :class:`ReturnRequest` aggregate.

Everything here is a frozen attrs class: a command on a request returns a new request plus the
effects it owes (:class:`Change`); the desk saves both in one transaction. The aggregate guards
its own invariants (legal transitions, a reject reason, refunds never above the paid fee) and
knows nothing of storage, mail or HTTP.
"""

from __future__ import annotations

import datetime as dt
import difflib
import enum
import functools
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal, InvalidOperation
from functools import cache, total_ordering
from typing import Any, Final, TypeVar
from urllib.parse import quote

import attrs
from babel import Locale
from babel.numbers import format_currency, get_currency_precision, list_currencies

from retouraanvraag.errors import (
    CurrencyMismatch,
    InvalidInput,
    InvalidMoney,
    TransitionNotAllowed,
    UnknownCountry,
    UnknownReason,
    WrongType,
)

__all__ = [
    "CUSTOMER",
    "DEFAULT_REASONS",
    "SYSTEM",
    "TRANSITIONS",
    "Actor",
    "ActorKind",
    "Change",
    "Channel",
    "Command",
    "Customer",
    "Decision",
    "Effect",
    "EffectKind",
    "Event",
    "EventItem",
    "EventType",
    "HistoryEntry",
    "HistoryEvent",
    "Label",
    "Language",
    "MailKind",
    "Money",
    "Outcome",
    "PaidFee",
    "PhotoRef",
    "Reason",
    "ReasonCatalogue",
    "RefundMethod",
    "RefundRecord",
    "RefusedItem",
    "ReturnItem",
    "ReturnRequest",
    "Status",
    "Tab",
    "Transition",
    "country_name",
    "event_key",
    "events_since",
    "fold_text",
    "label_key",
    "nearest",
    "resolve_country",
    "staff_actor",
]


class Language(enum.StrEnum):
    """The languages the library speaks to customers and merchants."""

    NL = "nl"
    EN = "en"


# Typed converters: mypy's attrs plugin cannot see through ``converter=tuple``.
def _reason_tuple(value: Iterable[Reason]) -> tuple[Reason, ...]:
    return tuple(value)


def _photo_tuple(value: Iterable[PhotoRef]) -> tuple[PhotoRef, ...]:
    return _collection(value, "photos", "photo references")


def _item_tuple(value: Iterable[ReturnItem]) -> tuple[ReturnItem, ...]:
    return _collection(value, "items", "items")


def _tag_set(value: Iterable[str]) -> frozenset[str]:
    return _texts(value, "tags")


def _product_tag_set(value: Iterable[str]) -> frozenset[str]:
    return _texts(value, "product_tags")


def _texts(value: Iterable[str], field: str) -> frozenset[str]:
    tags = _collection(value, field, "texts")
    for tag in tags:
        if not isinstance(tag, str):  # before hashing: a list as a tag is unhashable
            raise WrongType(expected="text", got=type(tag).__name__, field=field)
    return frozenset(tags)


def _collection(value: object, field: str, what: str) -> tuple[Any, ...]:
    """``value`` as a tuple; what is not a collection is refused by the field's name.

    Text and bytes iterate, but are never a collection here: ``tags="sale"`` would be four
    one-letter tags, and ``photos=data`` thousands of one-byte photos.
    """
    if not isinstance(value, Iterable) or isinstance(
        value, str | bytes | bytearray | memoryview | Mapping
    ):
        raise WrongType(expected=f"a collection of {what}", got=type(value).__name__, field=field)
    return tuple(value)


def _require(value: object, kind: type, field: str, *, optional: bool = False) -> None:
    """Refuse, by the field's name, a value that is not a ``kind`` (or ``None``, if optional)."""
    if optional and value is None:
        return
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise _wrong_type(value, kind, field, optional=optional)


def _of(kind: type, *, optional: bool = False) -> Callable[[Any, attrs.Attribute[Any], Any], None]:
    """A validator refusing what is not a ``kind`` by the attribute's name (see ``_require``)."""

    def check(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
        _require(value, kind, attribute.name, optional=optional)

    return check


def _wrong_type(value: object, kind: type, field: str, *, optional: bool = False) -> WrongType:
    """The error for ``value`` where a ``kind`` belongs.

    A text where an amount belongs gets a hint: amounts are ``Money``, read with ``parse``.
    """
    expected = "text" if kind is str else kind.__name__
    hint = None
    if kind is Money and isinstance(value, str):
        shown = repr(value) if len(value) <= _MAX_MONEY_TEXT else "text"
        hint = f"pass Money.parse({shown})"
    elif kind is Money:
        hint = "pass Money(<minor units>) or Money.parse(<text>)"
    return WrongType(
        expected=f"{expected} or None" if optional else expected,
        got=type(value).__name__,
        field=field,
        hint=hint,
    )


# -- money ----------------------------------------------------------------------------------

_MAX_MONEY_TEXT: Final = 64
# "US$" is how babel writes dollars in both nl and en: what ``format`` writes, ``parse`` reads.
_CURRENCY_SYMBOLS: Final = {"€": "EUR", "$": "USD", "US$": "USD", "£": "GBP"}
_MONEY_RE: Final = re.compile(
    r"""^\s*
    (?P<sign>-)?\s*
    (?:(?P<pre>US\$|[€$£]|[A-Za-z]{3})\s*)?
    (?P<sign2>-)?\s*
    (?P<number>\d[\d.,\s']*?)
    \s*(?P<post>US\$|[€$£]|[A-Za-z]{3})?
    \s*$""",
    re.VERBOSE,
)


@cache
def _known_currencies() -> frozenset[str]:
    return frozenset(list_currencies())


def _check_currency(_instance: object, _attribute: object, value: str) -> None:
    if not isinstance(value, str):  # before the set look-up: a list is unhashable
        raise InvalidMoney(f"currency must be an ISO 4217 code, not {type(value).__name__}")
    if value not in _known_currencies():
        raise InvalidMoney(f"unknown currency {value!r} (expected an ISO 4217 code such as EUR)")


#: The largest amount the library handles, in minor units: far above any order, and within
#: what every store (SQLite's 64-bit integers, PostgreSQL's bigint) keeps exactly.
MAX_MINOR_UNITS: Final = 10**15


def _check_minor_units(_instance: object, _attribute: object, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        hint = f"; to read text, use Money.parse({value!r})" if isinstance(value, str) else ""
        shown = repr(value) if len(repr(value)) <= _MAX_MONEY_TEXT else type(value).__name__
        raise InvalidMoney(f"amount must be a whole number of minor units, not {shown}{hint}")
    if value < 0:
        raise InvalidMoney(f"amount must not be negative ({value} minor units)")
    if value > MAX_MINOR_UNITS:
        raise InvalidMoney(f"amount is above the limit of {MAX_MINOR_UNITS} minor units")


_GROUP_SEPARATORS: Final = frozenset({".", ",", "'", " "})
_DIGIT_RUNS: Final = re.compile(r"(\D+)")


def _read_number(number: str, precision: int, text: str) -> Decimal:
    """Read the ``number`` of the amount ``text``: ``4,95``, ``1.234.567,89``, ``1 234``.

    The last separator is the decimal one when it is a ``.`` or ``,`` that appears once; every
    other separator groups digits: one kind per amount, the first group of one to three
    digits, each further group of exactly three. ``4,9,5`` and ``4,95,00`` are refused, never
    read as 495 or 49500.

    Raises:
        InvalidMoney: saying why the number cannot be read.
    """

    def refuse(why: str) -> InvalidMoney:
        return InvalidMoney(f"cannot read the amount {text!r}: {why}")

    pieces = _DIGIT_RUNS.split(number)
    groups = pieces[0::2]
    separators = [" " if p.isspace() else p for p in pieces[1::2]]
    if not all(p in _GROUP_SEPARATORS for p in separators):
        raise refuse("digits are separated by one '.', ',', \"'\" or space at a time")
    if not groups[-1]:
        raise refuse("it ends with a separator")
    fraction = ""
    if separators and separators[-1] in ".," and separators.count(separators[-1]) == 1:
        fraction = groups.pop()
        separators.pop()
    if len(set(separators)) > 1:
        kinds = " and ".join(repr(c) for c in sorted(set(separators)))
        raise refuse(f"it groups digits with both {kinds}")
    if separators and (len(groups[0]) > 3 or any(len(g) != 3 for g in groups[1:])):  # noqa: PLR2004
        raise refuse(
            "a group separator stands between groups of three digits "
            "(1.234.567,89 or 1,234.56 or 1 234)"
        )
    if len(fraction) > precision:
        hint = ""
        if not separators and len(fraction) == 3:  # noqa: PLR2004
            hint = "; as a thousands separator, write 1.234,00 or 1234"
        raise InvalidMoney(
            f"{text!r} has {len(fraction)} decimals; at most {precision} are allowed{hint}"
        )
    return Decimal(f"{''.join(groups)}.{fraction or 0}")


@total_ordering
@attrs.frozen(eq=True, order=False)
class Money:
    """An amount of money in integer minor units (cents) of an ISO 4217 currency.

    Never negative, never a float. Amounts of different currencies cannot be added or compared.
    """

    amount: int = attrs.field(validator=_check_minor_units)
    currency: str = attrs.field(default="EUR", validator=_check_currency)

    @classmethod
    def parse(cls, text: str, *, currency: str = "EUR") -> Money:
        """Read a merchant's or customer's amount: ``€4,95``, ``4.95 EUR``, ``EUR 1.234,56``.

        Args:
            text: the amount as typed.
            currency: the currency when the text names none.

        Raises:
            InvalidMoney: unreadable, negative, too many decimals, or two different currencies.
        """
        if not isinstance(text, str) or len(text) > _MAX_MONEY_TEXT:
            raise InvalidMoney(f"cannot read the amount {text!r}")
        match = _MONEY_RE.match(text)
        if match is None:
            raise InvalidMoney(f"cannot read the amount {text!r}")
        if match["sign"] or match["sign2"]:
            raise InvalidMoney(f"amount must not be negative: {text!r}")
        codes = {
            _CURRENCY_SYMBOLS.get(part, part.upper())
            for part in (match["pre"], match["post"])
            if part
        }
        if len(codes) > 1:
            raise InvalidMoney(f"{text!r} names two currencies: {', '.join(sorted(codes))}")
        code = codes.pop() if codes else currency
        if code not in _known_currencies():
            raise InvalidMoney(f"unknown currency {code!r} in {text!r}")
        precision = get_currency_precision(code)
        value = _read_number(match["number"].strip(), precision, text)
        return cls(int(value.scaleb(precision)), code)

    @classmethod
    def of(cls, value: Decimal | int | str, currency: str = "EUR") -> Money:
        """Make an amount from a decimal value in major units (``Money.of("4.95")``).

        Raises:
            InvalidMoney: negative, a float, or more decimals than the currency has.
        """
        if isinstance(value, float):
            raise InvalidMoney("amounts are never floats; pass a Decimal or a string")
        shown = repr(value)[:40]
        try:
            number = Decimal(value)
            finite = number.is_finite() and abs(number.adjusted()) <= _MAX_MONEY_TEXT
        except (InvalidOperation, ValueError, TypeError) as exc:
            raise InvalidMoney(f"cannot read the amount {shown}") from exc
        if not finite:
            raise InvalidMoney(f"cannot read the amount {shown}")
        precision = get_currency_precision(currency) if currency in _known_currencies() else 2
        scaled = number.scaleb(precision)
        if scaled != scaled.to_integral_value():
            raise InvalidMoney(f"{shown} has more than {precision} decimals for {currency}")
        return cls(int(scaled), currency)

    @classmethod
    def zero(cls, currency: str = "EUR") -> Money:
        """Nothing, in ``currency``."""
        return cls(0, currency)

    @property
    def decimal(self) -> Decimal:
        """The amount in major units, exactly."""
        return Decimal(self.amount).scaleb(-get_currency_precision(self.currency))

    def _same(self, other: Money) -> None:
        if self.currency != other.currency:
            raise CurrencyMismatch(f"cannot combine {self.currency} with {other.currency}")

    def __add__(self, other: Money) -> Money:
        """Add two amounts of one currency."""
        self._same(other)
        return Money(self.amount + other.amount, self.currency)

    def __sub__(self, other: Money) -> Money:
        """Subtract; the result must not be negative."""
        self._same(other)
        return Money(self.amount - other.amount, self.currency)

    def __mul__(self, factor: int) -> Money:
        """Multiply by a whole number (a quantity)."""
        return Money(self.amount * factor, self.currency)

    def __lt__(self, other: Money) -> bool:
        """Order amounts of one currency."""
        self._same(other)
        return self.amount < other.amount

    def format(self, language: Language | str = Language.NL) -> str:
        """Format for people, per locale: ``€ 4,95`` (nl), ``€4.95`` (en)."""
        locale = "nl_NL" if Language(language) is Language.NL else "en_GB"
        return format_currency(self.decimal, self.currency, locale=locale)

    def __str__(self) -> str:
        """The canonical, locale-free form: ``4.95 EUR``."""
        return f"{self.decimal} {self.currency}"


# -- countries ------------------------------------------------------------------------------

_NOT_COUNTRIES: Final = frozenset({"EU", "EZ", "UN", "ZZ", "QO", "XA", "XB"})
_COUNTRY_ALIASES: Final = {
    "holland": "NL",
    "uk": "GB",
    "great britain": "GB",
    "groot-brittannie": "GB",
    "engeland": "GB",
    "england": "GB",
    "usa": "US",
    "vs": "US",
    "verenigde staten van amerika": "US",
}


def fold_text(text: str) -> str:
    """A case-, accent- and space-insensitive key: ``fold_text("  België ") == "belgie"``.

    Countries, reasons and rule-language words all match through it.
    """
    if type(text) is str and text.isascii():
        # NFKD leaves ASCII as it is, no ASCII character combines, and ASCII casefolds to
        # lower case: the same key, without the per-character pass (rule files are mostly
        # ASCII, and every word of one is folded).
        return " ".join(text.lower().replace(".", "").split())
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(plain.casefold().replace(".", "").split())


def nearest(text: str, names: Iterable[str], *, cutoff: float = 0.6) -> str | None:
    """The name in ``names`` closest to ``text`` (as :func:`fold_text` compares), or ``None``.

    The "did you mean …?" of every look-up by name (countries, reasons, rule fields): the
    name comes back as written in ``names``, never folded.
    """
    by_fold = {fold_text(name): name for name in names}
    key = fold_text(text) if isinstance(text, str) else fold_text(str(text))
    close = difflib.get_close_matches(key, list(by_fold), n=1, cutoff=cutoff)
    return by_fold[close[0]] if close else None


@cache
def _country_index() -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    index: dict[str, str] = dict(_COUNTRY_ALIASES)
    names: dict[str, dict[str, str]] = {}
    for language in ("en", "nl"):
        territories = Locale(language).territories
        names[language] = {}
        for code, name in territories.items():
            if len(code) == 2 and code.isalpha() and code not in _NOT_COUNTRIES:  # noqa: PLR2004
                names[language][code] = name
                index[fold_text(name)] = code
                index[code.casefold()] = code
    return index, names


def resolve_country(text: str, *, field: str | None = None) -> str:
    """Resolve an ISO 3166 alpha-2 code or a Dutch/English name to the code.

    ``resolve_country("Nederland") == "NL"``; ``resolve_country("belgie") == "BE"``.

    Raises:
        UnknownCountry: with the nearest known name as ``suggestion``.
    """
    index, names = _country_index()
    key = fold_text(text) if isinstance(text, str) else ""
    code = index.get(key) or index.get(key.removeprefix("the ").removeprefix("de "))
    if code is not None:
        return code
    every = (name for language in names.values() for name in language.values())
    raise UnknownCountry(str(text), suggestion=nearest(key, every, cutoff=0.75), field=field)


def country_name(code: str, language: Language | str = Language.NL) -> str:
    """The country's name in ``language``: ``country_name("DE", "nl") == "Duitsland"``."""
    _, names = _country_index()
    return names[Language(language).value].get(code, code)


def _check_country(_instance: object, attribute: attrs.Attribute[Any], value: str) -> None:
    _require(value, str, attribute.name)
    _, names = _country_index()
    if value not in names["en"]:
        raise UnknownCountry(value, field=attribute.name)


# -- reasons --------------------------------------------------------------------------------


@attrs.frozen
class Reason:
    """A return reason: a stable code and the labels customers and merchants see."""

    code: str
    nl: str
    en: str
    needs_text: bool = False

    def label(self, language: Language | str) -> str:
        """The label in ``language``."""
        return self.nl if Language(language) is Language.NL else self.en


DEFAULT_REASONS: Final = (
    Reason("damaged", "Product beschadigd", "Product damaged"),
    Reason("wrong_product_sent", "Verkeerd product verzonden", "Wrong product sent"),
    Reason("wrong_product_ordered", "Verkeerd product besteld", "Wrong product ordered"),
    Reason("too_small", "Te klein", "Too small"),
    Reason("too_large", "Te groot", "Too large"),
    Reason("defective", "Werkt niet", "Does not work"),
    Reason("not_as_described", "Anders dan beschreven", "Not as described"),
    Reason("changed_mind", "Bedacht", "Changed my mind"),
    Reason("arrived_late", "Te laat geleverd", "Arrived too late"),
    Reason("other", "Anders", "Other", needs_text=True),
)


@attrs.frozen
class ReasonCatalogue:
    """The reasons a shop offers. Reasons match by code or by Dutch/English label."""

    reasons: tuple[Reason, ...] = attrs.field(default=DEFAULT_REASONS, converter=_reason_tuple)
    _index: Mapping[str, Reason] = attrs.field(init=False, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        """Index codes and labels; a label or code used twice is an error."""
        index: dict[str, Reason] = {}
        for reason in self.reasons:
            if not re.fullmatch(r"[a-z][a-z0-9_]{0,63}", reason.code):
                raise InvalidInput(f"reason code {reason.code!r} must be lower_snake_case")
            for key in {fold_text(reason.code), fold_text(reason.nl), fold_text(reason.en)}:
                if key in index and index[key] is not reason:
                    raise InvalidInput(f"reason {key!r} is defined twice in the catalogue")
                index[key] = reason
        object.__setattr__(self, "_index", index)

    def with_reasons(self, *extra: Reason) -> ReasonCatalogue:
        """A catalogue with the merchant's own reasons added."""
        return ReasonCatalogue(self.reasons + extra)

    def resolve(self, text: str, *, field: str | None = None) -> Reason:
        """Find a reason by code or label, ignoring case, accents and surrounding space.

        Raises:
            UnknownReason: with the nearest code or label as ``suggestion``.
        """
        reason = self._index.get(fold_text(text)) if isinstance(text, str) else None
        if reason is not None:
            return reason
        names = (name for r in self.reasons for name in (r.code, r.nl, r.en))
        raise UnknownReason(str(text), suggestion=nearest(str(text), names), field=field)

    def __contains__(self, code: object) -> bool:
        """Whether ``code`` names a reason of this catalogue (by code or label)."""
        return isinstance(code, str) and fold_text(code) in self._index


# -- the request's parts --------------------------------------------------------------------

# One address, as a mail header and an SMTP envelope can carry it: no spaces, no control
# characters, none of the characters that separate or quote addresses.
_EMAIL_RE: Final = re.compile(
    r'[^@\s<>,;:"()\[\]\\]{1,64}@[^@\s<>,;:"()\[\]\\.]+(\.[^@\s<>,;:"()\[\]\\.]+)+'
)


# Unicode's control characters (category Cc) are exactly U+0000 to U+001F and U+007F to U+009F; a
# compiled class finds one without a per-character category look-up (a validator runs on every
# request built). Lone surrogates (category Cs) are refused with them: no encoder can store them.
_CONTROL: Final = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_CONTROL_BUT_LINES: Final = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")


def _text(
    limit: int, *, empty: bool = False, one_line: bool = False
) -> Callable[[Any, attrs.Attribute[Any], str], None]:
    control = _CONTROL if one_line else _CONTROL_BUT_LINES

    def check(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if not isinstance(value, str):
            raise InvalidInput(f"must be text, not {type(value).__name__}", field=attribute.name)
        if not empty and not value.strip():
            raise InvalidInput("must not be empty", field=attribute.name)
        if len(value) > limit:
            raise InvalidInput(f"is longer than {limit} characters", field=attribute.name)
        if control.search(value):
            raise InvalidInput("contains control characters", field=attribute.name)

    return check


def _optional_text(limit: int) -> Callable[[Any, attrs.Attribute[Any], str | None], None]:
    check = _text(limit, one_line=True)

    def optional(instance: object, attribute: attrs.Attribute[Any], value: str | None) -> None:
        if value is not None:
            check(instance, attribute, value)

    return optional


def _check_tags(_instance: object, attribute: attrs.Attribute[Any], value: frozenset[str]) -> None:
    if len(value) > _MAX_TAGS:
        raise InvalidInput(f"at most {_MAX_TAGS} tags", field=attribute.name)
    check = _text(100, one_line=True)
    for tag in value:
        check(None, attribute, tag)


_MAX_TAGS: Final = 50

#: The most earlier returns a host may report for one customer.
MAX_EARLIER_RETURNS: Final = 1_000_000


def _check_earlier_returns(
    _instance: object, attribute: attrs.Attribute[Any], value: object
) -> None:
    _require(value, int, attribute.name, optional=True)
    if value is not None and not 0 <= value <= MAX_EARLIER_RETURNS:  # type: ignore[operator]
        raise InvalidInput(
            f"must be between 0 and {MAX_EARLIER_RETURNS}, not {value}", field=attribute.name
        )


#: The moments a request may name (created, ordered, delivered): far wider than any shop
#: needs, and narrow enough that moving one to any time zone and adding a return window (at
#: most ten years) stays inside what ``datetime`` can hold.
EARLIEST_MOMENT: Final = dt.datetime(1900, 1, 1, tzinfo=dt.UTC)
LATEST_MOMENT: Final = dt.datetime(9000, 1, 1, tzinfo=dt.UTC)


def _check_moment(value: object, field: str) -> None:
    """Refuse, by the field's name, what is not an aware datetime between the two bounds."""
    if not isinstance(value, dt.datetime):
        raise WrongType(expected="a timezone-aware datetime", got=type(value).__name__, field=field)
    try:
        offset = value.utcoffset()
    except (ValueError, TypeError, OverflowError) as exc:  # a tzinfo that cannot say
        raise InvalidInput("has a time zone without a valid UTC offset", field=field) from exc
    if offset is None:
        raise InvalidInput("must be a timezone-aware datetime", field=field)
    if not EARLIEST_MOMENT <= value <= LATEST_MOMENT:
        raise InvalidInput(
            f"must lie between {EARLIEST_MOMENT.year} and {LATEST_MOMENT.year}", field=field
        )


def _aware(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None:
        _check_moment(value, attribute.name)


def _check_email(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if (
        not isinstance(value, str)
        or len(value) > 254  # noqa: PLR2004
        or not _EMAIL_RE.fullmatch(value)
        # "=?" opens an encoded word in a header: no address needs it, and a mail reader
        # would decode it.
        or "=?" in value
        or any(unicodedata.category(c) in {"Cc", "Cf", "Cs", "Zl", "Zp"} for c in value)
    ):
        # The address itself stays out of the message: errors end up in logs.
        raise InvalidInput("is not a valid e-mail address", field=attribute.name)


_Choice = TypeVar("_Choice", bound=enum.Enum)


def _choice(kind: type[_Choice], value: object, field: str) -> _Choice:
    """``value`` as a member of the enum ``kind`` (a member or its value); others by name."""
    if isinstance(value, kind):
        return value
    if isinstance(value, str):
        try:
            return kind(value)
        except ValueError:
            pass
    accepted = ", ".join(repr(member.value) for member in kind)
    short = isinstance(value, str) and len(value) <= _MAX_MONEY_TEXT
    shown = repr(value) if short else type(value).__name__
    raise InvalidInput(f"must be one of {accepted}, not {shown}", field=field)


def _language(value: object) -> Language:
    return _choice(Language, value, "language")


@attrs.frozen
class Customer:
    """Who asks for the return. ``repr`` hides the personal data, as logs must."""

    email: str = attrs.field(validator=_check_email, repr=False)
    name: str = attrs.field(validator=_text(200), repr=False)
    language: Language = attrs.field(default=Language.NL, converter=_language)


@attrs.frozen
class PhotoRef:
    """A validated photo stored through the photo port under a generated key."""

    key: str
    content_type: str
    size: int


@attrs.frozen
class ReturnItem:
    """One order line the customer wants to return, with the reason and photos."""

    sku: str = attrs.field(validator=_text(100, one_line=True))
    name: str = attrs.field(validator=_text(300))
    quantity: int = attrs.field()
    unit_price: Money = attrs.field()
    reason: str = attrs.field(validator=_text(64))
    reason_text: str | None = attrs.field(default=None)
    photos: tuple[PhotoRef, ...] = attrs.field(default=(), converter=_photo_tuple)
    #: What the shop's catalogue says of the product (``Producttype``, ``Producttags``,
    #: ``Merk``); the host passes them, ``None`` / empty when it does not know.
    product_type: str | None = attrs.field(default=None, validator=_optional_text(100))
    product_tags: frozenset[str] = attrs.field(
        default=frozenset(), converter=_product_tag_set, validator=_check_tags
    )
    vendor: str | None = attrs.field(default=None, validator=_optional_text(100))

    @quantity.validator
    def _check_quantity(self, _attribute: object, value: object) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            raise WrongType(expected="a whole number", got=type(value).__name__, field="quantity")
        if not 1 <= value <= 10_000:  # noqa: PLR2004
            raise InvalidInput(f"must be between 1 and 10000, not {value}", field="quantity")

    @unit_price.validator
    def _check_unit_price(self, _attribute: object, value: object) -> None:
        # Runs after the quantity's check: the item's value must be an amount too, or its mail
        # and the return value would fail long after the request was stored.
        if not isinstance(value, Money):
            raise _wrong_type(value, Money, "unit_price")
        if value.amount * self.quantity > MAX_MINOR_UNITS:
            raise InvalidMoney(
                f"unit price times quantity {self.quantity} is above the limit of "
                f"{MAX_MINOR_UNITS} minor units",
                field="unit_price",
            )

    @photos.validator
    def _check_photos(self, _attribute: object, value: tuple[object, ...]) -> None:
        for j, photo in enumerate(value):
            _require(photo, PhotoRef, f"photos[{j}]")

    @reason_text.validator
    def _check_reason_text(self, attribute: attrs.Attribute[Any], value: object) -> None:
        if value is not None:
            _text(2000, empty=True)(self, attribute, value)  # type: ignore[arg-type]

    @property
    def value(self) -> Money:
        """Unit price times quantity."""
        return self.unit_price * self.quantity


class RefundMethod(enum.StrEnum):
    """How the customer wants the goods' value back (``Terugbetaalwijze``)."""

    MONEY_BACK = "money_back"
    STORE_CREDIT = "store_credit"
    EXCHANGE = "exchange"


class Channel(enum.StrEnum):
    """Where the request came from (``Kanaal``)."""

    PORTAL = "portal"
    API = "api"


def _refund_method(value: object) -> RefundMethod:
    return _choice(RefundMethod, value, "refund_method")


def _channel(value: object) -> Channel:
    return _choice(Channel, value, "channel")


@attrs.frozen
class PaidFee:
    """A return fee the customer paid, with the payment it was paid by."""

    amount: Money = attrs.field()
    payment_reference: str = attrs.field(validator=_text(200))

    @amount.validator
    def _check_amount(self, _attribute: object, value: object) -> None:
        _require(value, Money, "amount")


@attrs.frozen
class Label:
    """A carrier's return label: what the customer prints and sticks on the parcel."""

    carrier: str
    tracking_number: str
    document: bytes = attrs.field(repr=lambda d: f"<{len(d)} bytes>")
    content_type: str = "application/pdf"
    filename: str = "retourlabel.pdf"


@attrs.frozen
class RefundRecord:
    """A refund the payment provider confirmed."""

    key: str
    amount: Money
    reference: str
    at: dt.datetime


# -- lifecycle ------------------------------------------------------------------------------


class Status(enum.StrEnum):
    """Where a request is in its lifecycle (DESIGN §2)."""

    REQUESTED = "requested"
    APPROVED = "approved"
    APPROVED_WITHOUT_RETURN = "approved_without_return"
    REJECTED = "rejected"
    CANCELLED = "cancelled"
    RECEIVED = "received"
    COMPLETED = "completed"

    @property
    def is_final(self) -> bool:
        """No command leads out of a final status."""
        return not any(self in t.sources for t in TRANSITIONS)


class Command(enum.StrEnum):
    """What a person, a rule or the library can do to a request; recorded in its history."""

    SUBMIT = "submit"
    APPROVE_WITH_LABEL = "approve_with_label"
    APPROVE_WITHOUT_LABEL = "approve_without_label"
    REJECT = "reject"
    CANCEL = "cancel"
    MARK_RECEIVED = "mark_received"
    COMPLETE = "complete"
    RESOLVE_ATTENTION = "resolve_attention"


class Tab(enum.StrEnum):
    """The merchant's tabs (DESIGN §2); which one lists a status is in the transition table."""

    REQUESTS = "requests"
    INCOMING = "incoming"
    HISTORY = "history"

    @property
    def statuses(self) -> frozenset[Status]:
        """The statuses listed in this tab."""
        return _TAB_STATUSES[self]


@attrs.frozen
class Transition:
    """A row of the transition table: ``command`` moves ``sources`` to ``target``.

    Attributes:
        command: the command.
        sources: the statuses it may start from (none: it creates the request).
        target: where it leaves the request.
        tab: the merchant's tab that lists ``target``.
        decides: whether it is the decision on the request (approve or reject).
        effects: what it owes, in words (the docs' lifecycle table shows them).
    """

    command: Command
    sources: frozenset[Status]
    target: Status
    tab: Tab
    decides: bool = False
    effects: str = "—"


_ASKED_REFUND: Final = "refund the paid fee if asked"

#: The lifecycle as data. Code, docs and the diagram read it; nobody repeats it.
TRANSITIONS: Final = (
    Transition(
        Command.SUBMIT,
        frozenset(),
        Status.REQUESTED,
        Tab.REQUESTS,
        effects="mail *aanvraag ontvangen*; a rule's decision may follow at once",
    ),
    Transition(
        Command.APPROVE_WITH_LABEL,
        frozenset({Status.REQUESTED}),
        Status.APPROVED,
        Tab.INCOMING,
        decides=True,
        effects="create label, then mail *label aangemaakt* with the label attached; "
        + _ASKED_REFUND,
    ),
    Transition(
        Command.APPROVE_WITHOUT_LABEL,
        frozenset({Status.REQUESTED}),
        Status.APPROVED_WITHOUT_RETURN,
        Tab.HISTORY,
        decides=True,
        effects=f"mail *goedgekeurd, niet terugsturen*; {_ASKED_REFUND}",
    ),
    Transition(
        Command.REJECT,
        frozenset({Status.REQUESTED}),
        Status.REJECTED,
        Tab.REQUESTS,
        decides=True,
        effects="mail with the reason; a paid fee is refunded automatically",
    ),
    Transition(
        Command.CANCEL,
        frozenset({Status.REQUESTED, Status.APPROVED}),
        Status.CANCELLED,
        Tab.HISTORY,
        effects="void the label if one exists; refund a paid fee; mail *geannuleerd*",
    ),
    Transition(Command.MARK_RECEIVED, frozenset({Status.APPROVED}), Status.RECEIVED, Tab.INCOMING),
    Transition(Command.COMPLETE, frozenset({Status.RECEIVED}), Status.COMPLETED, Tab.HISTORY),
)
_BY_COMMAND: Final = {t.command: t for t in TRANSITIONS}
_TAB_STATUSES: Final = {
    tab: frozenset(t.target for t in TRANSITIONS if t.tab is tab) for tab in Tab
}
_DECISIONS: Final = frozenset(t.command for t in TRANSITIONS if t.decides)


def _check_transitions(table: Iterable[Transition]) -> None:
    """Validate the table at import: unique commands, every status reachable and in one tab."""
    rows = list(table)
    commands = [t.command for t in rows]
    if len(set(commands)) != len(commands):
        msg = "transition table: a command appears twice"
        raise AssertionError(msg)
    reachable = {t.target for t in rows if not t.sources}
    changed = True
    while changed:
        before = len(reachable)
        reachable |= {t.target for t in rows if t.sources & reachable}
        changed = len(reachable) != before
    if reachable != set(Status):
        msg = f"transition table: unreachable statuses {set(Status) - reachable}"
        raise AssertionError(msg)
    for row in rows:
        if row.target in row.sources:
            msg = f"transition table: {row.command} loops on {row.target}"
            raise AssertionError(msg)
    tabs = {(t.target, t.tab) for t in rows}
    if len(tabs) != len(Status):
        msg = "transition table: a status is listed in two tabs"
        raise AssertionError(msg)


_check_transitions(TRANSITIONS)


def _command(value: object) -> Command | HistoryEvent:
    """A history entry's ``command``: a :class:`Command` or an effect's :class:`HistoryEvent`."""
    if isinstance(value, str):
        for kind in (Command, HistoryEvent):
            try:
                return kind(value)
            except ValueError:
                continue
    raise InvalidInput("not a command or an effect event", field="command")


class Decision(enum.StrEnum):
    """What the merchant or the rules decided, strictest first."""

    NOT_RETURNABLE = "not_returnable"
    REJECT = "reject"
    REVIEW = "review"
    APPROVE_WITH_LABEL = "approve_with_label"
    APPROVE_WITHOUT_LABEL = "approve_without_label"

    @property
    def strictness(self) -> int:
        """Higher is stricter: not returnable > reject > review > with label > without."""
        return len(_DECISION_ORDER) - _DECISION_ORDER.index(self)


_DECISION_ORDER: Final = tuple(Decision)


class EffectKind(enum.StrEnum):
    """The side effects a command can owe."""

    CREATE_LABEL = "create_label"
    VOID_LABEL = "void_label"
    REFUND = "refund"
    MAIL = "mail"
    #: Tell the host what happened: an :class:`Event`, to its event sink.
    EVENT = "event"


class MailKind(enum.StrEnum):
    """The mails the library sends to customers."""

    REQUEST_RECEIVED = "request_received"
    LABEL_CREATED = "label_created"
    APPROVED_WITHOUT_RETURN = "approved_without_return"
    REJECTED = "rejected"
    CANCELLED = "cancelled"


def _key_part(text: str) -> str:
    # Shop and request ids may hold ":" (the key's separator) and any other character; quoting
    # them keeps every key unambiguous: ("a:b", "c") and ("a", "b:c") never share a key.
    return quote(text, safe="")


@attrs.frozen
class Effect:
    """A side effect owed by a saved change, with the stable key passed on every try.

    Keys name the shop as well as the request, so that two shops holding the same request id
    never share a label, a refund or a mail at a provider. A label key also carries the
    attempt: once a label is voided, its key is never asked for a label again (a retry after a
    void asks under the next attempt's key).

    Attributes:
        kind: what to do.
        key: the stable key (``label:<shop>:<request>:<attempt>``, ``void:…``,
            ``refund:<shop>:<request>``, ``mail:<shop>:<request>:<kind>``).
        request_id: the request the effect belongs to.
        mail: the mail to send, for mail effects.
        label_key: for a void, the key of the label to void.
        event: for an event effect, the event to deliver (its key is the effect's).
    """

    kind: EffectKind
    key: str
    request_id: str
    mail: MailKind | None = None
    label_key: str | None = None
    event: Event | None = None

    def __attrs_post_init__(self) -> None:
        """An event effect carries its event under the event's key; no other effect has one."""
        if (self.kind is EffectKind.EVENT) != (self.event is not None) or (
            self.event is not None
            and (self.event.key, self.event.request_id) != (self.key, self.request_id)
        ):
            raise InvalidInput(
                "an event effect carries its own event (same key and request), and only it",
                field="event",
            )

    @classmethod
    def create_label(cls, shop_id: str, request_id: str, attempt: int = 1) -> Effect:
        """Create the return label (key ``label:<shop>:<request>:<attempt>``)."""
        key = label_key(shop_id, request_id, attempt)
        return cls(EffectKind.CREATE_LABEL, key, request_id)

    @classmethod
    def void_label(cls, shop_id: str, request_id: str, attempt: int = 1) -> Effect:
        """Void the label of ``attempt``, if one was made (key ``void:<shop>:<request>:<n>``)."""
        return cls.void_of(label_key(shop_id, request_id, attempt), request_id)

    @classmethod
    def void_of(cls, target: str, request_id: str) -> Effect:
        """Void the label made under the label key ``target`` (key ``void:…`` after it)."""
        return cls(
            EffectKind.VOID_LABEL,
            f"void:{target.removeprefix('label:')}",
            request_id,
            label_key=target,
        )

    @classmethod
    def refund(cls, shop_id: str, request_id: str) -> Effect:
        """Refund what is left of the paid return fee (key ``refund:<shop>:<request>``)."""
        return cls(
            EffectKind.REFUND, f"refund:{_key_part(shop_id)}:{_key_part(request_id)}", request_id
        )

    @classmethod
    def send_mail(cls, shop_id: str, request_id: str, kind: MailKind) -> Effect:
        """Send the customer a mail (key ``mail:<shop>:<request>:<kind>``)."""
        key = f"mail:{_key_part(shop_id)}:{_key_part(request_id)}:{kind.value}"
        return cls(EffectKind.MAIL, key, request_id, kind)

    @classmethod
    def deliver(cls, event: Event) -> Effect:
        """Deliver ``event`` to the host's event sink (key: the event's, ``event:…``)."""
        return cls(EffectKind.EVENT, event.key, event.request_id, event=event)


def label_key(shop_id: str, request_id: str, attempt: int = 1) -> str:
    """The carrier key of a request's label attempt: ``label:<shop>:<request>:<attempt>``."""
    return f"label:{_key_part(shop_id)}:{_key_part(request_id)}:{attempt}"


# -- events for the host ----------------------------------------------------------------------


class EventType(enum.StrEnum):
    """What a host hears about: each transition, and the effects a host acts on."""

    SUBMITTED = "submitted"
    APPROVED = "approved"
    APPROVED_WITHOUT_RETURN = "approved_without_return"
    REJECTED = "rejected"
    CANCELLED = "cancelled"
    RECEIVED = "received"
    COMPLETED = "completed"
    LABEL_CREATED = "label_created"
    REFUNDED = "refunded"
    NEEDS_ATTENTION = "needs_attention"


#: The event each command emits (``resolve_attention`` changes nothing a host keeps).
_COMMAND_EVENTS: Final = {
    Command.SUBMIT: EventType.SUBMITTED,
    Command.APPROVE_WITH_LABEL: EventType.APPROVED,
    Command.APPROVE_WITHOUT_LABEL: EventType.APPROVED_WITHOUT_RETURN,
    Command.REJECT: EventType.REJECTED,
    Command.CANCEL: EventType.CANCELLED,
    Command.MARK_RECEIVED: EventType.RECEIVED,
    Command.COMPLETE: EventType.COMPLETED,
}
if {t.command for t in TRANSITIONS} - _COMMAND_EVENTS.keys():  # pragma: no cover
    msg = "transition table: a command without an event"
    raise AssertionError(msg)


_EVENT_PREFIX: Final = "event:"


def event_key(shop_id: str, request_id: str, kind: EventType, n: int) -> str:
    """The key of a request's ``n``-th event of ``kind``: ``event:<shop>:<request>:<kind>:<n>``.

    ``n`` is the emitting history entry's place among the request's entries of its kind,
    whether or not those emit: every effect given up counts, an event's too (which emits no
    ``needs_attention``), so ``n`` may skip but never repeats; applying the same change twice
    gives the same key. Counting only the entries that emit would hand a later entry an ``n``
    an event already stored holds: keys written keep their meaning.
    """
    return f"{_EVENT_PREFIX}{_key_part(shop_id)}:{_key_part(request_id)}:{kind.value}:{n}"


def _check_event_key(_instance: object, _attribute: object, value: str) -> None:
    if not isinstance(value, str) or not value.startswith(_EVENT_PREFIX):
        raise InvalidInput("an event key starts with 'event:'", field="key")


@attrs.frozen
class EventItem:
    """An item of the request, as events name it: its SKU, quantity and reason code."""

    sku: str
    quantity: int
    reason: str


@attrs.frozen
class Event:
    """Something that happened to a request, for the host's own systems.

    It carries ids, statuses and amounts, never the customer's name, e-mail or address, nor
    free text a person typed (a reject reason stays in the request's history). It is made in
    the commit that records what happened and queued in the same transaction, so the host
    hears of exactly what was saved, once per key (:func:`event_key`).

    Attributes:
        key: the stable key (``event:<shop>:<request>:<type>:<n>``); a receiver deduplicates by it.
        type: what happened.
        shop_id: the shop.
        request_id: the request.
        order_number: the order the return belongs to.
        status: the request's status after it happened.
        version: the request's version saved with it (later events of a request have higher
            or equal versions: a receiver can ignore an older state that arrives late).
        occurred_at: when it happened (aware, UTC).
        actor: who did it (``staff:anna``, ``customer``, ``rule:<name>``, ``system``).
        items: the items being returned.
        return_value: the value of the items being returned.
        return_fee: the return fee the customer paid, if any.
        refunded: what has been refunded of that fee so far.
        effect: for ``label_created``, ``refunded`` and ``needs_attention``, the effect's key.
        carrier: for ``label_created``, the carrier.
        tracking_number: for ``label_created``, the label's tracking number.
        amount: for ``refunded``, the amount refunded.
        reference: for ``refunded``, the payment provider's refund reference.
    """

    key: str = attrs.field(validator=_check_event_key)
    type: EventType = attrs.field(converter=EventType)
    shop_id: str
    request_id: str
    order_number: str
    status: Status = attrs.field(converter=Status)
    version: int = attrs.field(validator=attrs.validators.ge(1))
    occurred_at: dt.datetime = attrs.field(validator=_aware)
    actor: Actor
    items: tuple[EventItem, ...]
    return_value: Money
    return_fee: Money | None
    refunded: Money
    effect: str | None = None
    carrier: str | None = None
    tracking_number: str | None = None
    amount: Money | None = None
    reference: str | None = None


def _entry_event(entry: HistoryEntry, after: ReturnRequest) -> EventType | None:
    """The event a history entry emits, if any."""
    if isinstance(entry.command, Command):
        return _COMMAND_EVENTS.get(entry.command)
    match entry.command:
        case HistoryEvent.LABEL_CREATED:
            # Only a label the request kept; one made after a cancel was voided at once.
            kept = after.label is not None and entry.effect == after.label_key
            return EventType.LABEL_CREATED if kept else None
        case HistoryEvent.REFUNDED:
            return EventType.REFUNDED
        case HistoryEvent.GIVEN_UP if not (entry.effect or "").startswith(_EVENT_PREFIX):
            # An event that could not be delivered emits none: it would go to the same sink.
            return EventType.NEEDS_ATTENTION
    return None


def events_since(before: ReturnRequest | None, after: ReturnRequest) -> tuple[Event, ...]:
    """The events of what ``after`` records beyond ``before`` (``None``: a new request).

    One event per history entry added that a host hears of (every transition; a label kept;
    a refund; an effect given up), in order, as saved by the commit that stores ``after`` in
    place of ``before``.
    """
    start = len(before.history) if before is not None else 0
    version = (before.version if before is not None else 0) + 1
    events: list[Event] = []
    items = tuple(EventItem(i.sku, i.quantity, i.reason) for i in after.items)
    fee = after.return_fee.amount if after.return_fee is not None else None
    for index in range(start, len(after.history)):
        entry = after.history[index]
        kind = _entry_event(entry, after)
        if kind is None:
            continue
        n = sum(1 for e in after.history[: index + 1] if e.command == entry.command)
        extra: dict[str, Any] = {}
        if kind is EventType.LABEL_CREATED and after.label is not None:
            label = after.label
            extra = {"carrier": label.carrier, "tracking_number": label.tracking_number}
        elif kind is EventType.REFUNDED:
            refund = next((r for r in reversed(after.refunds) if r.key == entry.effect), None)
            if refund is not None:
                extra = {"amount": refund.amount, "reference": refund.reference}
        events.append(
            Event(
                key=event_key(after.shop_id, after.id, kind, n),
                type=kind,
                shop_id=after.shop_id,
                request_id=after.id,
                order_number=after.order_number,
                status=entry.status_to,
                version=version,
                occurred_at=entry.at,
                actor=entry.actor,
                items=items,
                return_value=after.return_value,
                return_fee=fee,
                refunded=after.refunded,
                effect=entry.effect,
                **extra,
            )
        )
    return tuple(events)


class ActorKind(enum.StrEnum):
    """Who can change a request."""

    STAFF = "staff"
    CUSTOMER = "customer"
    RULE = "rule"
    SYSTEM = "system"


# A staff id is an id, not a name: it goes into the history and the logs, so it is short,
# one token, and cannot pass for another kind of actor ("rule:…", "customer").
_STAFF_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_RESERVED_STAFF_IDS: Final = frozenset({"customer", "system", "policy", "rule", "staff"})
_MAX_RULE_NAME: Final = 200


def _check_actor_name(instance: Actor, _attribute: object, value: str | None) -> None:
    match instance.kind:
        case ActorKind.STAFF:
            if (
                not isinstance(value, str)
                or not _STAFF_ID.fullmatch(value)
                or value.casefold() in _RESERVED_STAFF_IDS
            ):
                raise InvalidInput(
                    "a staff id is 1 to 64 letters, digits, '.', '_' or '-', starting with a "
                    "letter or digit (and not a reserved word such as 'customer' or 'rule')",
                    field="actor",
                )
        case ActorKind.RULE:
            if (
                not isinstance(value, str)
                or not value.strip()
                or len(value) > _MAX_RULE_NAME
                or any(unicodedata.category(c) in {"Cc", "Cf", "Zl", "Zp"} for c in value)
            ):
                raise InvalidInput("a rule actor needs the rule's one-line name", field="actor")
        case _:
            if value is not None:
                raise InvalidInput(f"a {instance.kind.value} actor has no name", field="actor")


@attrs.frozen
class Actor:
    """Who made a change: a staff member (by id), the customer, a rule, or the system.

    The desk takes staff (and, for a cancel, the customer) from its callers; a rule actor
    enters the history only through a rule set's decision at submission, and the system acts
    for the policy's default and for the dispatcher's effects. ``str(actor)`` is the form the
    history shows and stores: ``staff:anna``, ``customer``, ``rule:Buitenland``, ``system``.
    """

    kind: ActorKind = attrs.field(converter=ActorKind)
    name: str | None = attrs.field(default=None, validator=_check_actor_name)

    @classmethod
    def staff(cls, staff_id: str) -> Actor:
        """A staff member by id (``Actor.staff("anna")``).

        Raises:
            InvalidInput: not a valid staff id.
        """
        return cls(ActorKind.STAFF, staff_id)

    @classmethod
    def rule(cls, name: str) -> Actor:
        """The rule named ``name`` (the desk makes these from a rule set's outcome)."""
        return cls(ActorKind.RULE, name)

    @classmethod
    def parse(cls, text: str) -> Actor:
        """Read the stored form back (``str(actor)``).

        Raises:
            InvalidInput: not an actor's stored form.
        """
        if not isinstance(text, str):
            raise InvalidInput("an actor is stored as text", field="actor")
        if text in {"customer", "system"}:
            return cls(ActorKind(text))
        if text == "policy":  # how versions before 0.2 recorded the policy's default
            return SYSTEM
        kind, sep, name = text.partition(":")
        if sep and kind in {"staff", "rule"}:
            return cls(ActorKind(kind), name)
        if _STAFF_ID.fullmatch(text) and text.casefold() not in _RESERVED_STAFF_IDS:
            return cls.staff(text)  # versions before 0.2 stored a staff id as it was given
        raise InvalidInput("not a stored actor (staff:<id>, customer, rule:<name>, system)")

    def __str__(self) -> str:
        """``staff:anna``, ``customer``, ``rule:Buitenland`` or ``system``."""
        return f"{self.kind.value}:{self.name}" if self.name is not None else self.kind.value


#: The customer who asked for the return.
CUSTOMER: Final = Actor(ActorKind.CUSTOMER)
#: The library itself: the policy's default decision, the dispatcher's effects.
SYSTEM: Final = Actor(ActorKind.SYSTEM)


def staff_actor(actor: Actor | str, *, allow_customer: bool = False) -> Actor:
    """The actor of a desk command: staff by id (``"anna"`` or ``"staff:anna"``).

    Raises:
        InvalidInput: not a staff id, or a kind of actor a caller cannot act as (a rule, the
            system; the customer unless ``allow_customer``).
    """
    if isinstance(actor, Actor):
        allowed = {ActorKind.STAFF} | ({ActorKind.CUSTOMER} if allow_customer else set())
        if actor.kind not in allowed:
            raise InvalidInput(
                f"a {actor.kind.value} actor cannot run this command; "
                + (
                    "rules decide only through the rule set"
                    if actor.kind is ActorKind.RULE
                    else "pass Actor.staff(<id>)"
                ),
                field="actor",
            )
        return actor
    if not isinstance(actor, str):
        raise InvalidInput(
            f"must be an Actor or a staff id, not {type(actor).__name__}", field="actor"
        )
    if allow_customer and actor == "customer":
        return CUSTOMER
    return Actor.staff(actor.removeprefix("staff:"))


class HistoryEvent(enum.StrEnum):
    """What the dispatcher records in a request's history, beside the commands."""

    LABEL_CREATED = "label_created"
    LABEL_VOIDED = "label_voided"
    REFUNDED = "refunded"
    MAIL_SENT = "mail_sent"
    GIVEN_UP = "effect_given_up"


def _actor(value: Actor | str) -> Actor:
    return value if isinstance(value, Actor) else Actor.parse(value)


@attrs.frozen
class HistoryEntry:
    """One thing that happened to a request: who, when, what.

    A command (``submit``, ``approve_with_label``, …) moves the status and may carry the rules
    trace that decided it; an effect the dispatcher did or gave up (a :class:`HistoryEvent`:
    label created or voided, refund, mail sent, given up) keeps the status and names its key
    in ``effect``, with what the provider answered in ``note`` (carrier and tracking number,
    amount and refund reference, mail kind, the error).
    """

    at: dt.datetime
    actor: Actor = attrs.field(converter=_actor)
    command: Command | HistoryEvent = attrs.field(converter=_command)
    status_from: Status | None
    status_to: Status
    note: str | None = None
    trace: tuple[str, ...] = ()
    effect: str | None = None
    #: The version of the shop's rules that decided (``rules.parse(…, version=…)``), if any.
    rules_version: str | None = None

    @property
    def is_command(self) -> bool:
        """Whether this entry is a command (not an effect's record)."""
        return self.effect is None


@attrs.frozen
class RefusedItem:
    """An item the rules will not take back, with the customer-facing message."""

    index: int | None
    message: str


@attrs.frozen
class Outcome:
    """What a rule set decided for a request (the seam between rules and the desk).

    Attributes:
        decision: the request's decision (the strictest of its items').
        reason: the customer-facing reject reason, for ``Decision.REJECT``.
        refund_return_fee: whether a paid fee is refunded with the decision.
        return_fee: the fee the rules set for this return, if any.
        carrier: the carrier the rules chose, if any.
        refused: items (or the whole order, index ``None``) that cannot be returned.
        rule: the name of the rule that decided, or ``None`` for the policy default.
        trace: one line per matching rule, overridden ones marked.
        return_window_days: the return window the rules set (``Retourtermijn 60 dagen``), or
            ``None``: the policy's window applies.
        rules_version: the version of the rules that decided, as the host named it when it
            loaded them (``rules.parse(…, version="7")``); the desk records it in the history.
    """

    decision: Decision | None
    reason: str | None = None
    refund_return_fee: bool = False
    return_fee: Money | None = None
    carrier: str | None = None
    refused: tuple[RefusedItem, ...] = ()
    rule: str | None = None
    trace: tuple[str, ...] = ()
    return_window_days: int | None = None
    rules_version: str | None = None


@attrs.frozen
class Change:
    """A command's result: the new request and the effects it owes, saved together."""

    request: ReturnRequest
    effects: tuple[Effect, ...]

    def with_events(self, before: ReturnRequest | None) -> Change:
        """This change with the events it owes the host appended (see :func:`events_since`).

        ``before`` is the request the change was made from, as stored (``None`` for a new
        request): the events are those of the history entries the change adds to it.
        """
        events = events_since(before, self.request)
        if not events:
            return self
        return Change(self.request, self.effects + tuple(Effect.deliver(e) for e in events))


def _check_items(
    instance: ReturnRequest, _attribute: object, value: tuple[ReturnItem, ...]
) -> None:
    if not value:
        raise InvalidInput("a return request needs at least one item", field="items")
    if len(value) > 500:  # noqa: PLR2004
        raise InvalidInput("a return request holds at most 500 items", field="items")
    total = 0
    for i, item in enumerate(value):
        _require(item, ReturnItem, f"items[{i}]")
        if item.unit_price.currency != instance.order_value.currency:
            raise CurrencyMismatch(
                f"item price is in {item.unit_price.currency}, "
                f"the order in {instance.order_value.currency}",
                field=f"items[{i}].unit_price",
            )
        total += item.unit_price.amount * item.quantity
    if total > MAX_MINOR_UNITS:
        # The return value (the rules' "Retourwaarde", the mails) must be an amount too.
        raise InvalidMoney(
            f"the items' total value is above the limit of {MAX_MINOR_UNITS} minor units",
            field="items",
        )


@attrs.frozen
class ReturnRequest:
    """The return request aggregate.

    Commands (:meth:`approve`, :meth:`reject`, :meth:`cancel`, :meth:`mark_received`,
    :meth:`complete`) return a :class:`Change`; the request itself never changes in place.
    ``version`` is the storage's compare-and-set counter (0 before the first save).
    ``return_fee`` is the fee the customer paid, ``return_fee_asked`` the one the shop's rules
    asked at submission (``None``: the rules asked none). Every amount the request derives
    (each item's value, the return value) is an amount the library can hold.
    """

    shop_id: str = attrs.field(validator=_text(100, one_line=True))
    id: str = attrs.field(validator=_text(100, one_line=True))
    order_number: str = attrs.field(validator=_text(100, one_line=True))
    customer: Customer = attrs.field(validator=_of(Customer))
    from_country: str = attrs.field(validator=_check_country)
    order_value: Money = attrs.field(validator=_of(Money))
    items: tuple[ReturnItem, ...] = attrs.field(converter=_item_tuple, validator=_check_items)
    created_at: dt.datetime = attrs.field(validator=_aware)
    ordered_at: dt.datetime | None = attrs.field(default=None, validator=_aware)
    delivered_at: dt.datetime | None = attrs.field(default=None, validator=_aware)
    refund_method: RefundMethod = attrs.field(
        default=RefundMethod.MONEY_BACK, converter=_refund_method
    )
    return_method: str | None = attrs.field(default=None, validator=_optional_text(100))
    channel: Channel = attrs.field(default=Channel.PORTAL, converter=_channel)
    tags: frozenset[str] = attrs.field(
        default=frozenset(), converter=_tag_set, validator=_check_tags
    )
    #: The discount code of the order and the customer's earlier returns, as the host knows
    #: them (``Kortingscode``, ``Eerdere retouren``); ``None``: not known.
    discount_code: str | None = attrs.field(default=None, validator=_optional_text(100))
    earlier_returns: int | None = attrs.field(default=None, validator=_check_earlier_returns)
    return_fee: PaidFee | None = attrs.field(default=None)
    return_fee_asked: Money | None = attrs.field(default=None)
    status: Status = Status.REQUESTED
    reject_reason: str | None = None
    label: Label | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.instance_of(Label))
    )
    label_attempt: int = attrs.field(default=1, validator=attrs.validators.ge(1))
    carrier: str | None = attrs.field(default=None, validator=_optional_text(100))
    refunds: tuple[RefundRecord, ...] = ()
    attention: tuple[str, ...] = ()
    history: tuple[HistoryEntry, ...] = ()
    version: int = 0

    @return_fee.validator
    def _check_fee(self, _attribute: object, value: PaidFee | None) -> None:
        _require(value, PaidFee, "return_fee", optional=True)
        if value is not None and value.amount.currency != self.order_value.currency:
            raise CurrencyMismatch(
                f"return fee is in {value.amount.currency}, the order in "
                f"{self.order_value.currency}",
                field="return_fee",
            )

    @return_fee_asked.validator
    def _check_fee_asked(self, _attribute: object, value: Money | None) -> None:
        _require(value, Money, "return_fee_asked", optional=True)
        if value is not None and value.currency != self.order_value.currency:
            raise CurrencyMismatch(
                f"the rules ask a return fee in {value.currency}, the order is in "
                f"{self.order_value.currency}",
                field="return_fee_asked",
            )

    def replace(self, **changes: object) -> ReturnRequest:
        """The request with ``changes``, as :func:`attrs.evolve` makes it, checking only those.

        A request is checked whole once, when it is built from outside (a submission, a
        stored row); a command then changes a few fields, and only they are converted and
        checked again — against the whole new request, so a check that reads another field
        (a fee's currency against the order's) still sees it.

        Raises:
            InvalidInput: a changed value is refused, as the constructor would refuse it.
            TypeError: ``changes`` names no field of the request.
        """
        fields = _request_fields()
        unknown = changes.keys() - fields.keys()
        if unknown:
            raise TypeError(f"ReturnRequest has no field {min(unknown)!r}")
        new = object.__new__(ReturnRequest)
        setter = object.__setattr__
        for name in fields:
            setter(new, name, changes[name] if name in changes else getattr(self, name))
        for name, given in changes.items():
            field = fields[name]
            value = given
            if field.converter is not None:
                value = field.converter(given)  # type: ignore[operator]  # a plain function
                setter(new, name, value)
            if field.validator is not None:
                field.validator(new, field, value)
        return new

    # -- derived ----------------------------------------------------------------------------

    @property
    def return_value(self) -> Money:
        """The value of all items being returned."""
        total = Money.zero(self.order_value.currency)
        for item in self.items:
            total += item.value
        return total

    @property
    def refunded(self) -> Money:
        """What has been refunded of the return fee so far."""
        total = Money.zero(self.order_value.currency)
        for refund in self.refunds:
            total += refund.amount
        return total

    @property
    def refund_due(self) -> Money:
        """What is left of the paid fee to refund (never negative)."""
        if self.return_fee is None:
            return Money.zero(self.order_value.currency)
        return self.return_fee.amount - self.refunded

    @property
    def needs_attention(self) -> bool:
        """Whether an effect failed permanently and a person must look."""
        return bool(self.attention)

    @property
    def decided_by(self) -> Actor | None:
        """The actor of the decision (approve/reject), if one was taken."""
        for entry in reversed(self.history):
            if entry.command in _DECISIONS:
                return entry.actor
        return None

    @property
    def label_key(self) -> str:
        """The carrier key of the current label attempt."""
        return label_key(self.shop_id, self.id, self.label_attempt)

    # -- commands ---------------------------------------------------------------------------

    def _move(
        self,
        command: Command,
        *,
        actor: Actor,
        at: dt.datetime,
        note: str | None = None,
        trace: tuple[str, ...] = (),
        carrier: str | None = None,
        reject_reason: str | None = None,
    ) -> ReturnRequest:
        transition = _BY_COMMAND[command]
        if self.status not in transition.sources:
            raise TransitionNotAllowed(
                request_id=self.id, status=self.status.value, command=command
            )
        entry = HistoryEntry(at, actor, command, self.status, transition.target, note, trace)
        return self.replace(
            status=transition.target,
            history=(*self.history, entry),
            carrier=carrier or self.carrier,
            reject_reason=reject_reason or self.reject_reason,
        )

    def _mail(self, kind: MailKind) -> Effect:
        return Effect.send_mail(self.shop_id, self.id, kind)

    def submitted(self, *, actor: Actor = CUSTOMER) -> Change:
        """The request as first saved, with its confirmation mail."""
        if self.history or self.version:
            raise TransitionNotAllowed(
                request_id=self.id, status=self.status.value, command=Command.SUBMIT
            )
        entry = HistoryEntry(self.created_at, actor, Command.SUBMIT, None, Status.REQUESTED)
        request = self.replace(status=Status.REQUESTED, history=(entry,))
        return Change(request, (self._mail(MailKind.REQUEST_RECEIVED),))

    def approve(
        self,
        *,
        with_label: bool,
        refund_return_fee: bool,
        actor: Actor,
        at: dt.datetime,
        carrier: str | None = None,
        trace: tuple[str, ...] = (),
    ) -> Change:
        """Approve with a label (a parcel is expected) or without (the customer keeps it).

        Raises:
            TransitionNotAllowed: the request is not ``requested``.
        """
        command = Command.APPROVE_WITH_LABEL if with_label else Command.APPROVE_WITHOUT_LABEL
        request = self._move(command, actor=actor, at=at, trace=trace, carrier=carrier)
        # Refunds go first, so that the mail that follows can say the money is back.
        effects: list[Effect] = []
        if refund_return_fee and self.refund_due.amount:
            effects.append(Effect.refund(self.shop_id, self.id))
        if with_label:
            # The "label aangemaakt" mail is queued once the label exists (it is attached).
            effects.append(Effect.create_label(self.shop_id, self.id, self.label_attempt))
        else:
            effects.append(self._mail(MailKind.APPROVED_WITHOUT_RETURN))
        return Change(request, tuple(effects))

    def reject(
        self, *, reason: str, actor: Actor, at: dt.datetime, trace: tuple[str, ...] = ()
    ) -> Change:
        """Reject with a reason the customer will read; a paid fee is refunded.

        Raises:
            InvalidInput: the reason is empty.
            TransitionNotAllowed: the request is not ``requested``.
        """
        if not isinstance(reason, str) or not reason.strip():
            raise InvalidInput("a reject reason is required", field="reason")
        if len(reason) > 2000:  # noqa: PLR2004
            raise InvalidInput("a reject reason is at most 2000 characters", field="reason")
        reason = reason.strip()
        request = self._move(
            Command.REJECT, actor=actor, at=at, note=reason, trace=trace, reject_reason=reason
        )
        effects = [Effect.refund(self.shop_id, self.id)] if self.refund_due.amount else []
        effects.append(self._mail(MailKind.REJECTED))
        return Change(request, tuple(effects))

    def cancel(self, *, actor: Actor, at: dt.datetime) -> Change:
        """Withdraw the request before the parcel arrived; voids the label, refunds the fee.

        Raises:
            TransitionNotAllowed: the request is neither ``requested`` nor ``approved``.
        """
        was_approved = self.status is Status.APPROVED
        request = self._move(Command.CANCEL, actor=actor, at=at)
        effects = []
        if was_approved:
            effects.append(Effect.void_label(self.shop_id, self.id, self.label_attempt))
        if self.refund_due.amount:
            effects.append(Effect.refund(self.shop_id, self.id))
        effects.append(self._mail(MailKind.CANCELLED))
        return Change(request, tuple(effects))

    def mark_received(self, *, actor: Actor, at: dt.datetime) -> Change:
        """Record that the parcel arrived.

        Raises:
            TransitionNotAllowed: the request is not ``approved``.
        """
        return Change(self._move(Command.MARK_RECEIVED, actor=actor, at=at), ())

    def complete(self, *, actor: Actor, at: dt.datetime) -> Change:
        """Close the return after processing.

        Raises:
            TransitionNotAllowed: the request is not ``received``.
        """
        return Change(self._move(Command.COMPLETE, actor=actor, at=at), ())

    # -- effect results (the dispatcher calls the port, the aggregate says what follows) ----

    def _record(
        self, event: HistoryEvent, key: str, at: dt.datetime, note: str | None
    ) -> tuple[HistoryEntry, ...]:
        """The history with the system's record of the effect under ``key`` added."""
        entry = HistoryEntry(at, SYSTEM, event, self.status, self.status, note, effect=key)
        return (*self.history, entry)

    def wants_label(self, key: str) -> bool:
        """Whether a label made under ``key`` belongs on this request.

        Only the current attempt's label of a request approved with a label does: after a
        cancel, or under a key that was given up (and so voided), a label must not exist.
        """
        return key == self.label_key and self.status in _WITH_LABEL

    def can_retry(self, effect: Effect) -> bool:
        """Whether a given-up ``effect`` can run again (see :meth:`resolve_attention`).

        A label can, as a new attempt, only while the request waits for its parcel and only
        for the current attempt (an older one was superseded); every other effect can.
        """
        if effect.kind is not EffectKind.CREATE_LABEL:
            return True
        return effect.key == self.label_key and self.status is Status.APPROVED

    def label_created(self, effect: Effect, label: Label, *, at: dt.datetime) -> Change:
        """The carrier made ``label`` under ``effect.key``: keep it and mail it, or void it.

        A label that is no longer wanted (see :meth:`wants_label`: the request was cancelled
        while the carrier worked, say) is voided at once under its own key.
        """
        note = f"{label.carrier} {label.tracking_number}"
        history = self._record(HistoryEvent.LABEL_CREATED, effect.key, at, note)
        if not self.wants_label(effect.key):
            return Change(self.replace(history=history), (Effect.void_of(effect.key, self.id),))
        follow = (self._mail(MailKind.LABEL_CREATED),)
        if self.label is not None:
            return Change(self, follow)  # recorded by an earlier try: only the mail may be owed
        return Change(self.replace(label=label, history=history), follow)

    def label_voided(self, effect: Effect, *, at: dt.datetime) -> ReturnRequest:
        """The carrier voided the label under ``effect.label_key`` (or had none to void)."""
        return self.replace(
            history=self._record(HistoryEvent.LABEL_VOIDED, effect.key, at, effect.label_key)
        )

    def with_refund(self, refund: RefundRecord, effect: Effect | None = None) -> ReturnRequest:
        """The request with a confirmed refund added (and recorded, given its effect).

        Raises:
            InvalidInput: the refund would exceed the paid fee.
        """
        if refund.amount.amount <= 0 or refund.amount > self.refund_due:
            raise InvalidInput(
                f"request {self.id}: refund {refund.amount} exceeds what is due "
                f"({self.refund_due})",
                field="refunds",
            )
        history = self.history
        if effect is not None:
            note = f"{refund.amount} {refund.reference}"
            history = self._record(HistoryEvent.REFUNDED, effect.key, refund.at, note)
        return self.replace(refunds=(*self.refunds, refund), history=history)

    def mail_sent(self, effect: Effect, *, at: dt.datetime) -> ReturnRequest:
        """The transport took the mail owed under ``effect``."""
        kind = effect.mail.value if effect.mail else None
        return self.replace(history=self._record(HistoryEvent.MAIL_SENT, effect.key, at, kind))

    def given_up(self, effect: Effect, problem: str, *, at: dt.datetime) -> Change:
        """``effect`` failed for good: a person must look; a label it may have made is voided."""
        request = self.set_aside(effect.key, problem, at=at)
        if effect.kind is EffectKind.CREATE_LABEL:
            # The carrier may have made the label before its answer was lost.
            return Change(request, (Effect.void_of(effect.key, self.id),))
        return Change(request, ())

    def set_aside(self, key: str, problem: str, *, at: dt.datetime) -> ReturnRequest:
        """The store set the outbox entry under ``key`` aside (its row is damaged): flag it.

        :meth:`given_up` uses it too, and adds what giving the effect up owes.
        """
        return self.replace(
            attention=(*self.attention, f"{key}: {problem}"),
            history=self._record(HistoryEvent.GIVEN_UP, key, at, problem),
        )

    def with_attention(self, problem: str) -> ReturnRequest:
        """The request marked as needing a person, with what went wrong."""
        return self.replace(attention=(*self.attention, problem))

    def resolve_attention(
        self,
        *,
        actor: Actor,
        at: dt.datetime,
        retry: tuple[Effect, ...] = (),
    ) -> Change:
        """Clear the attention flags, in the history; ``retry`` are given-up effects to redo.

        A given-up label is never asked for again under its key (it was voided): the retry
        asks for the next attempt's label under a new key, while the request still waits for
        its parcel. Every other effect is redone under its own key (the returned change's
        ``effects`` hold only the new label effect; the store revives the others). The status
        does not change.
        """
        note = f"retry {', '.join(e.key for e in retry)}" if retry else None
        entry = HistoryEntry(at, actor, Command.RESOLVE_ATTENTION, self.status, self.status, note)
        request = self.replace(attention=(), history=(*self.history, entry))
        effects: tuple[Effect, ...] = ()
        if any(e.kind is EffectKind.CREATE_LABEL and self.can_retry(e) for e in retry):
            attempt = self.label_attempt + 1
            request = request.replace(label_attempt=attempt)
            effects = (Effect.create_label(self.shop_id, self.id, attempt),)
        return Change(request, effects)


_WITH_LABEL: Final = frozenset({Status.APPROVED, Status.RECEIVED, Status.COMPLETED})


@functools.cache
def _request_fields() -> dict[str, attrs.Attribute[Any]]:
    return {field.name: field for field in attrs.fields(ReturnRequest)}
