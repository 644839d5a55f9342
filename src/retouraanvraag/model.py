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
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal, InvalidOperation
from functools import cache, total_ordering
from typing import Any, Final

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
)

__all__ = [
    "DEFAULT_REASONS",
    "TRANSITIONS",
    "Change",
    "Channel",
    "Customer",
    "Decision",
    "Effect",
    "EffectKind",
    "HistoryEntry",
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
    "Transition",
    "country_name",
    "fold_text",
    "resolve_country",
]


class Language(enum.StrEnum):
    """The languages the library speaks to customers and merchants."""

    NL = "nl"
    EN = "en"


# Typed converters: mypy's attrs plugin cannot see through ``converter=tuple``.
def _reason_tuple(value: Iterable[Reason]) -> tuple[Reason, ...]:
    return tuple(value)


def _photo_tuple(value: Iterable[PhotoRef]) -> tuple[PhotoRef, ...]:
    return tuple(value)


def _item_tuple(value: Iterable[ReturnItem]) -> tuple[ReturnItem, ...]:
    return tuple(value)


def _tag_set(value: Iterable[str]) -> frozenset[str]:
    return frozenset(value)


# -- money ----------------------------------------------------------------------------------

_MAX_MONEY_TEXT: Final = 64
_CURRENCY_SYMBOLS: Final = {"€": "EUR", "$": "USD", "£": "GBP"}
_MONEY_RE: Final = re.compile(
    r"""^\s*
    (?P<sign>-)?\s*
    (?:(?P<pre>[€$£]|[A-Za-z]{3})\s*)?
    (?P<sign2>-)?\s*
    (?P<number>\d[\d.,\s']*?)
    \s*(?P<post>[€$£]|[A-Za-z]{3})?
    \s*$""",
    re.VERBOSE,
)


@cache
def _known_currencies() -> frozenset[str]:
    return frozenset(list_currencies())


def _check_currency(_instance: object, _attribute: object, value: str) -> None:
    if value not in _known_currencies():
        raise InvalidMoney(f"unknown currency {value!r} (expected an ISO 4217 code such as EUR)")


#: The largest amount the library handles, in minor units: far above any order, and within
#: what every store (SQLite's 64-bit integers, PostgreSQL's bigint) keeps exactly.
MAX_MINOR_UNITS: Final = 10**15


def _check_minor_units(_instance: object, _attribute: object, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidMoney(f"amount must be a whole number of minor units, not {value!r}")
    if value < 0:
        raise InvalidMoney(f"amount must not be negative ({value} minor units)")
    if value > MAX_MINOR_UNITS:
        raise InvalidMoney(f"amount is above the limit of {MAX_MINOR_UNITS} minor units")


def _read_number(text: str, precision: int) -> Decimal:
    """Read ``1.234,56``, ``1,234.56``, ``4,95`` or ``1 234``; the last separator decides."""
    digits = "".join(text.split()).replace("'", "")
    separators = [c for c in digits if c in ",."]
    if not separators:
        return Decimal(digits)
    last = separators[-1]
    other = "." if last == "," else ","
    if separators.count(last) > 1 and other not in separators:
        # 1.000.000 — only group separators.
        whole, fraction = digits.replace(last, ""), ""
    else:
        whole, _, fraction = digits.rpartition(last)
        whole = whole.replace(other, "")
    if not whole.isdigit() or (fraction and not fraction.isdigit()):
        raise InvalidMoney(f"cannot read the amount {text!r}")
    if len(fraction) > precision:
        raise InvalidMoney(
            f"{text!r} has {len(fraction)} decimals; at most {precision} are allowed"
        )
    return Decimal(f"{whole}.{fraction or 0}")


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
        value = _read_number(match["number"].strip(), precision)
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
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(plain.casefold().replace(".", "").split())


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
    candidates = {fold_text(n): n for lang in names.values() for n in lang.values()}
    close = difflib.get_close_matches(key, list(candidates), n=1, cutoff=0.75)
    raise UnknownCountry(str(text), suggestion=candidates[close[0]] if close else None, field=field)


def country_name(code: str, language: Language | str = Language.NL) -> str:
    """The country's name in ``language``: ``country_name("DE", "nl") == "Duitsland"``."""
    _, names = _country_index()
    return names[Language(language).value].get(code, code)


def _check_country(_instance: object, attribute: attrs.Attribute[Any], value: str) -> None:
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
        close = difflib.get_close_matches(fold_text(str(text)), list(self._index), n=1, cutoff=0.6)
        suggestion = None
        if close:
            hit = self._index[close[0]]
            suggestion = next(
                (s for s in (hit.code, hit.nl, hit.en) if fold_text(s) == close[0]), hit.code
            )
        raise UnknownReason(str(text), suggestion=suggestion, field=field)

    def __contains__(self, code: object) -> bool:
        """Whether ``code`` names a reason of this catalogue (by code or label)."""
        return isinstance(code, str) and fold_text(code) in self._index


# -- the request's parts --------------------------------------------------------------------

# One address, as a mail header and an SMTP envelope can carry it: no spaces, no control
# characters, none of the characters that separate or quote addresses.
_EMAIL_RE: Final = re.compile(
    r'[^@\s<>,;:"()\[\]\\]{1,64}@[^@\s<>,;:"()\[\]\\.]+(\.[^@\s<>,;:"()\[\]\\.]+)+'
)


def _text(
    limit: int, *, empty: bool = False, one_line: bool = False
) -> Callable[[Any, attrs.Attribute[Any], str], None]:
    allowed = "" if one_line else "\n\t"

    def check(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if not isinstance(value, str):
            raise InvalidInput(f"must be text, not {type(value).__name__}", field=attribute.name)
        if not empty and not value.strip():
            raise InvalidInput("must not be empty", field=attribute.name)
        if len(value) > limit:
            raise InvalidInput(f"is longer than {limit} characters", field=attribute.name)
        if any(unicodedata.category(c) == "Cc" and c not in allowed for c in value):
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


def _aware(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is None:
        return
    if not isinstance(value, dt.datetime) or value.tzinfo is None:
        raise InvalidInput("must be a timezone-aware datetime", field=attribute.name)


def _check_email(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if (
        not isinstance(value, str)
        or len(value) > 254  # noqa: PLR2004
        or not _EMAIL_RE.fullmatch(value)
        or any(unicodedata.category(c) in {"Cc", "Cf", "Zl", "Zp"} for c in value)
    ):
        # The address itself stays out of the message: errors end up in logs.
        raise InvalidInput("is not a valid e-mail address", field=attribute.name)


@attrs.frozen
class Customer:
    """Who asks for the return. ``repr`` hides the personal data, as logs must."""

    email: str = attrs.field(validator=_check_email, repr=False)
    name: str = attrs.field(validator=_text(200), repr=False)
    language: Language = attrs.field(default=Language.NL, converter=Language)


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
    unit_price: Money = attrs.field(validator=attrs.validators.instance_of(Money))
    reason: str = attrs.field(validator=_text(64))
    reason_text: str | None = attrs.field(default=None)
    photos: tuple[PhotoRef, ...] = attrs.field(default=(), converter=_photo_tuple)

    @quantity.validator
    def _check_quantity(self, _attribute: object, value: object) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidInput("must be a whole number", field="quantity")
        if not 1 <= value <= 10_000:  # noqa: PLR2004
            raise InvalidInput(f"must be between 1 and 10000, not {value}", field="quantity")

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


@attrs.frozen
class PaidFee:
    """A return fee the customer paid, with the payment it was paid by."""

    amount: Money
    payment_reference: str = attrs.field(validator=_text(200))


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


@attrs.frozen
class Transition:
    """A row of the transition table: ``command`` moves ``sources`` to ``target``."""

    command: str
    sources: frozenset[Status]
    target: Status


#: The lifecycle as data. Code, docs and the diagram read it; nobody repeats it.
TRANSITIONS: Final = (
    Transition("approve_with_label", frozenset({Status.REQUESTED}), Status.APPROVED),
    Transition(
        "approve_without_label", frozenset({Status.REQUESTED}), Status.APPROVED_WITHOUT_RETURN
    ),
    Transition("reject", frozenset({Status.REQUESTED}), Status.REJECTED),
    Transition("cancel", frozenset({Status.REQUESTED, Status.APPROVED}), Status.CANCELLED),
    Transition("mark_received", frozenset({Status.APPROVED}), Status.RECEIVED),
    Transition("complete", frozenset({Status.RECEIVED}), Status.COMPLETED),
)
_BY_COMMAND: Final = {t.command: t for t in TRANSITIONS}


def _check_transitions(table: Iterable[Transition]) -> None:
    """Validate the table at import: unique commands, every status reachable, finals final."""
    rows = list(table)
    commands = [t.command for t in rows]
    if len(set(commands)) != len(commands):
        msg = "transition table: a command appears twice"
        raise AssertionError(msg)
    reachable = {Status.REQUESTED}
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


_check_transitions(TRANSITIONS)


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


class MailKind(enum.StrEnum):
    """The mails the library sends to customers."""

    REQUEST_RECEIVED = "request_received"
    LABEL_CREATED = "label_created"
    APPROVED_WITHOUT_RETURN = "approved_without_return"
    REJECTED = "rejected"
    CANCELLED = "cancelled"


@attrs.frozen
class Effect:
    """A side effect owed by a saved change, with the stable key passed on every try."""

    kind: EffectKind
    key: str
    request_id: str
    mail: MailKind | None = None

    @classmethod
    def create_label(cls, request_id: str) -> Effect:
        """Create the return label (key ``label:<request>``)."""
        return cls(EffectKind.CREATE_LABEL, f"label:{request_id}", request_id)

    @classmethod
    def void_label(cls, request_id: str) -> Effect:
        """Void the label created under ``label:<request>``, if any (key ``void:<request>``)."""
        return cls(EffectKind.VOID_LABEL, f"void:{request_id}", request_id)

    @classmethod
    def refund(cls, request_id: str) -> Effect:
        """Refund what is left of the paid return fee (key ``refund:<request>``)."""
        return cls(EffectKind.REFUND, f"refund:{request_id}", request_id)

    @classmethod
    def send_mail(cls, request_id: str, kind: MailKind) -> Effect:
        """Send the customer a mail (key ``mail:<request>:<kind>``)."""
        return cls(EffectKind.MAIL, f"mail:{request_id}:{kind.value}", request_id, kind)


@attrs.frozen
class HistoryEntry:
    """One accepted command: who, when, what, and the rules trace that decided it."""

    at: dt.datetime
    actor: str
    command: str
    status_from: Status | None
    status_to: Status
    note: str | None = None
    trace: tuple[str, ...] = ()


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
    """

    decision: Decision | None
    reason: str | None = None
    refund_return_fee: bool = False
    return_fee: Money | None = None
    carrier: str | None = None
    refused: tuple[RefusedItem, ...] = ()
    rule: str | None = None
    trace: tuple[str, ...] = ()


@attrs.frozen
class Change:
    """A command's result: the new request and the effects it owes, saved together."""

    request: ReturnRequest
    effects: tuple[Effect, ...]


def _check_items(
    instance: ReturnRequest, _attribute: object, value: tuple[ReturnItem, ...]
) -> None:
    if not value:
        raise InvalidInput("a return request needs at least one item", field="items")
    if len(value) > 500:  # noqa: PLR2004
        raise InvalidInput("a return request holds at most 500 items", field="items")
    for i, item in enumerate(value):
        if item.unit_price.currency != instance.order_value.currency:
            raise CurrencyMismatch(
                f"item price is in {item.unit_price.currency}, "
                f"the order in {instance.order_value.currency}",
                field=f"items[{i}].unit_price",
            )


@attrs.frozen
class ReturnRequest:
    """The return request aggregate.

    Commands (:meth:`approve`, :meth:`reject`, :meth:`cancel`, :meth:`mark_received`,
    :meth:`complete`) return a :class:`Change`; the request itself never changes in place.
    ``version`` is the storage's compare-and-set counter (0 before the first save).
    """

    shop_id: str = attrs.field(validator=_text(100, one_line=True))
    id: str = attrs.field(validator=_text(100, one_line=True))
    order_number: str = attrs.field(validator=_text(100, one_line=True))
    customer: Customer = attrs.field(validator=attrs.validators.instance_of(Customer))
    from_country: str = attrs.field(validator=_check_country)
    order_value: Money = attrs.field(validator=attrs.validators.instance_of(Money))
    items: tuple[ReturnItem, ...] = attrs.field(converter=_item_tuple, validator=_check_items)
    created_at: dt.datetime = attrs.field(validator=_aware)
    ordered_at: dt.datetime | None = attrs.field(default=None, validator=_aware)
    delivered_at: dt.datetime | None = attrs.field(default=None, validator=_aware)
    refund_method: RefundMethod = attrs.field(
        default=RefundMethod.MONEY_BACK, converter=RefundMethod
    )
    return_method: str | None = attrs.field(default=None, validator=_optional_text(100))
    channel: Channel = attrs.field(default=Channel.PORTAL, converter=Channel)
    tags: frozenset[str] = attrs.field(
        default=frozenset(), converter=_tag_set, validator=_check_tags
    )
    return_fee: PaidFee | None = attrs.field(default=None)
    status: Status = Status.REQUESTED
    reject_reason: str | None = None
    label: Label | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.instance_of(Label))
    )
    carrier: str | None = attrs.field(default=None, validator=_optional_text(100))
    refunds: tuple[RefundRecord, ...] = ()
    attention: tuple[str, ...] = ()
    history: tuple[HistoryEntry, ...] = ()
    version: int = 0

    @return_fee.validator
    def _check_fee(self, _attribute: object, value: PaidFee | None) -> None:
        if value is not None and value.amount.currency != self.order_value.currency:
            raise CurrencyMismatch(
                f"return fee is in {value.amount.currency}, the order in "
                f"{self.order_value.currency}",
                field="return_fee",
            )

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
    def decided_by(self) -> str | None:
        """The actor of the decision (approve/reject), if one was taken."""
        for entry in reversed(self.history):
            if entry.command in {"approve_with_label", "approve_without_label", "reject"}:
                return entry.actor
        return None

    # -- commands ---------------------------------------------------------------------------

    def _move(
        self,
        command: str,
        *,
        actor: str,
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
        return attrs.evolve(
            self,
            status=transition.target,
            history=(*self.history, entry),
            carrier=carrier or self.carrier,
            reject_reason=reject_reason or self.reject_reason,
        )

    def submitted(self, *, actor: str = "customer") -> Change:
        """The request as first saved, with its confirmation mail."""
        if self.history or self.version:
            raise TransitionNotAllowed(
                request_id=self.id, status=self.status.value, command="submit"
            )
        entry = HistoryEntry(self.created_at, actor, "submit", None, Status.REQUESTED)
        request = attrs.evolve(self, status=Status.REQUESTED, history=(entry,))
        return Change(request, (Effect.send_mail(self.id, MailKind.REQUEST_RECEIVED),))

    def approve(
        self,
        *,
        with_label: bool,
        refund_return_fee: bool,
        actor: str,
        at: dt.datetime,
        carrier: str | None = None,
        trace: tuple[str, ...] = (),
    ) -> Change:
        """Approve with a label (a parcel is expected) or without (the customer keeps it).

        Raises:
            TransitionNotAllowed: the request is not ``requested``.
        """
        command = "approve_with_label" if with_label else "approve_without_label"
        request = self._move(command, actor=actor, at=at, trace=trace, carrier=carrier)
        # Refunds go first, so that the mail that follows can say the money is back.
        effects: list[Effect] = []
        if refund_return_fee and self.refund_due.amount:
            effects.append(Effect.refund(self.id))
        if with_label:
            # The "label aangemaakt" mail is queued once the label exists (it is attached).
            effects.append(Effect.create_label(self.id))
        else:
            effects.append(Effect.send_mail(self.id, MailKind.APPROVED_WITHOUT_RETURN))
        return Change(request, tuple(effects))

    def reject(
        self, *, reason: str, actor: str, at: dt.datetime, trace: tuple[str, ...] = ()
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
            "reject", actor=actor, at=at, note=reason, trace=trace, reject_reason=reason
        )
        effects = [Effect.refund(self.id)] if self.refund_due.amount else []
        effects.append(Effect.send_mail(self.id, MailKind.REJECTED))
        return Change(request, tuple(effects))

    def cancel(self, *, actor: str, at: dt.datetime) -> Change:
        """Withdraw the request before the parcel arrived; voids the label, refunds the fee.

        Raises:
            TransitionNotAllowed: the request is neither ``requested`` nor ``approved``.
        """
        was_approved = self.status is Status.APPROVED
        request = self._move("cancel", actor=actor, at=at)
        effects = []
        if was_approved:
            effects.append(Effect.void_label(self.id))
        if self.refund_due.amount:
            effects.append(Effect.refund(self.id))
        effects.append(Effect.send_mail(self.id, MailKind.CANCELLED))
        return Change(request, tuple(effects))

    def mark_received(self, *, actor: str, at: dt.datetime) -> Change:
        """Record that the parcel arrived.

        Raises:
            TransitionNotAllowed: the request is not ``approved``.
        """
        return Change(self._move("mark_received", actor=actor, at=at), ())

    def complete(self, *, actor: str, at: dt.datetime) -> Change:
        """Close the return after processing.

        Raises:
            TransitionNotAllowed: the request is not ``received``.
        """
        return Change(self._move("complete", actor=actor, at=at), ())

    # -- effect results (called by the dispatcher) ------------------------------------------

    def with_label(self, label: Label) -> ReturnRequest:
        """The request with the label the carrier created."""
        return attrs.evolve(self, label=label)

    def with_refund(self, refund: RefundRecord) -> ReturnRequest:
        """The request with a confirmed refund added.

        Raises:
            InvalidInput: the refund would exceed the paid fee.
        """
        if refund.amount.amount <= 0 or refund.amount > self.refund_due:
            raise InvalidInput(
                f"request {self.id}: refund {refund.amount} exceeds what is due "
                f"({self.refund_due})",
                field="refunds",
            )
        return attrs.evolve(self, refunds=(*self.refunds, refund))

    def with_attention(self, problem: str) -> ReturnRequest:
        """The request marked as needing a person, with what went wrong."""
        return attrs.evolve(self, attention=(*self.attention, problem))

    def resolve_attention(
        self, *, actor: str, at: dt.datetime, note: str | None = None
    ) -> ReturnRequest:
        """The request with its attention flags cleared by a person, in its history.

        The status does not change; the history entry's command is ``resolve_attention``.
        """
        entry = HistoryEntry(at, actor, "resolve_attention", self.status, self.status, note)
        return attrs.evolve(self, attention=(), history=(*self.history, entry))
