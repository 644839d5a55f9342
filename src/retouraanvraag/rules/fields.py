"""The fields and actions a rule may name: registries, never ``getattr`` on rule text.

A :class:`Field` has a Dutch and an English name (plus aliases), a :class:`FieldType` that decides
which operators and values fit, a :class:`Scope` (the request, or each item) and an accessor the
host supplies. :data:`DEFAULT_FIELDS` are the fields of DESIGN §3; hosts add their own with
:meth:`FieldRegistry.with_fields`.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Callable, Mapping
from typing import Any, Final

import attrs

from retouraanvraag.model import Channel, RefundMethod, ReturnItem, ReturnRequest, fold_text

__all__ = [
    "DEFAULT_FIELDS",
    "ActionKind",
    "Choice",
    "FastPath",
    "Field",
    "FieldRegistry",
    "FieldType",
    "Scope",
]


class FieldType(enum.Enum):
    """What kind of value a field holds; decides the operators and values that fit."""

    COUNTRY = "country"
    MONEY = "money"
    NUMBER = "number"
    TEXT = "text"
    REASON = "reason"
    CHOICE = "choice"
    YES_NO = "yes_no"
    TAGS = "tags"
    DATE = "date"


class Scope(enum.Enum):
    """Whether a field reads the request or one of its items."""

    REQUEST = "request"
    ITEM = "item"


class FastPath(enum.Enum):
    """How the compiler reads one of the library's fields without calling its accessor.

    Declared on the :class:`Field`; the compiler takes it only while the field keeps the
    library's own accessor (a host that replaces it gets the accessor called).
    """

    #: The sum of the items' quantities, in the one pass over the items.
    ITEM_COUNT = "item_count"
    #: The items' values added up in integer minor units, in the same pass.
    ITEM_TOTAL = "item_total"
    #: Whether any item has a photo, in the same pass.
    ANY_PHOTO = "any_photo"
    #: Calendar days from ``delivered_at`` to the request, in the rules' zone.
    DAYS_SINCE_DELIVERY = "days_since_delivery"
    #: Calendar days from ``ordered_at`` to the request, in the rules' zone.
    DAYS_SINCE_ORDER = "days_since_order"
    #: The request's tags, normalised once per distinct set.
    TAGS = "tags"
    #: The item's quantity, read once for the item's value too.
    QUANTITY = "quantity"
    #: The item's value: unit price times quantity, in integer minor units.
    LINE_VALUE = "line_value"

    @property
    def since(self) -> str | None:
        """For a "days since" path, the request attribute holding the earlier moment."""
        return _SINCE.get(self)


_SINCE: Final = {
    FastPath.DAYS_SINCE_DELIVERY: "delivered_at",
    FastPath.DAYS_SINCE_ORDER: "ordered_at",
}


@attrs.frozen
class Choice:
    """One value of a :attr:`FieldType.CHOICE` field: the stored value and its words."""

    value: object
    nl: str
    en: str
    aliases: tuple[str, ...] = ()

    def name(self, language: str) -> str:
        """The word for this choice in ``language``."""
        return self.nl if language == "nl" else self.en


@attrs.frozen
class Field:
    """A field rules can test.

    Attributes:
        key: a stable identifier (``from_country``); rule sets compare fields by key.
        nl: the Dutch name (``Van land``).
        en: the English name (``From country``).
        type: the kind of value.
        scope: ``REQUEST`` (the accessor takes the request) or ``ITEM`` (it takes an item).
        accessor: reads the value; may return ``None`` for "unknown" when ``optional``.
        aliases: other names accepted in either language.
        choices: the values of a ``CHOICE`` field.
        optional: whether the accessor may return ``None``.
        attribute: for the library's own fields, the attribute the accessor reads, dotted
            when nested (``customer.email``; lets the compiler read it directly).
        timezone_aware: the accessor takes ``(request, tzinfo)`` (days since …).
        fast: for the library's own fields, how the compiler reads it without the accessor.
    """

    key: str
    nl: str = attrs.field(eq=False)
    en: str = attrs.field(eq=False)
    type: FieldType = attrs.field(eq=False)
    scope: Scope = attrs.field(eq=False)
    accessor: Callable[..., Any] = attrs.field(eq=False, repr=False)
    aliases: tuple[str, ...] = attrs.field(default=(), eq=False, converter=tuple)
    choices: tuple[Choice, ...] = attrs.field(default=(), eq=False, converter=tuple)
    optional: bool = attrs.field(default=True, eq=False)
    attribute: str | None = attrs.field(default=None, eq=False, repr=False)
    timezone_aware: bool = attrs.field(default=False, eq=False, repr=False)
    fast: FastPath | None = attrs.field(default=None, eq=False, repr=False)

    def name(self, language: str) -> str:
        """The field's name in ``language``."""
        return self.nl if language == "nl" else self.en

    def choice(self, text: str) -> Choice | None:
        """The choice named ``text`` (either language, any case), if any."""
        key = fold_text(text)
        for choice in self.choices:
            names = (choice.nl, choice.en, str(choice.value), *choice.aliases)
            if key in {fold_text(n) for n in names}:
                return choice
        return None

    def choice_for(self, value: object) -> Choice | None:
        """The choice whose stored value is ``value``."""
        return next((c for c in self.choices if c.value == value), None)


def _number_of_items(request: ReturnRequest) -> int:
    return sum(item.quantity for item in request.items)


def _has_photos(request: ReturnRequest) -> bool:
    return any(item.photos for item in request.items)


def _days_between(later: dt.datetime, earlier: dt.datetime | None, tz: dt.tzinfo) -> int | None:
    if earlier is None:
        return None
    return (later.astimezone(tz).date() - earlier.astimezone(tz).date()).days


def _days_since_delivery(request: ReturnRequest, tz: dt.tzinfo) -> int | None:
    return _days_between(request.created_at, request.delivered_at, tz)


def _days_since_order(request: ReturnRequest, tz: dt.tzinfo) -> int | None:
    return _days_between(request.created_at, request.ordered_at, tz)


def _local_date(moment: dt.datetime | None, tz: dt.tzinfo) -> dt.date | None:
    return None if moment is None else moment.astimezone(tz).date()


def _order_date(request: ReturnRequest, tz: dt.tzinfo) -> dt.date | None:
    return _local_date(request.ordered_at, tz)


def _delivery_date(request: ReturnRequest, tz: dt.tzinfo) -> dt.date | None:
    return _local_date(request.delivered_at, tz)


def _request_date(request: ReturnRequest, tz: dt.tzinfo) -> dt.date | None:
    return _local_date(request.created_at, tz)


def _request_field(
    key: str,
    nl: str,
    en: str,
    type_: FieldType,
    accessor: Callable[..., Any],
    **extra: Any,  # noqa: ANN401
) -> Field:
    return Field(key, nl, en, type_, Scope.REQUEST, accessor, **extra)


def _item_field(
    key: str,
    nl: str,
    en: str,
    type_: FieldType,
    accessor: Callable[[ReturnItem], Any],
    **extra: Any,  # noqa: ANN401
) -> Field:
    return Field(key, nl, en, type_, Scope.ITEM, accessor, **extra)


DEFAULT_FIELDS: Final[tuple[Field, ...]] = (
    _request_field(
        "from_country", "Van land", "From country", FieldType.COUNTRY,
        lambda r: r.from_country, aliases=("Land", "Country"), optional=False,
        attribute="from_country",
    ),
    _request_field(
        "order_value", "Bestelwaarde", "Order value", FieldType.MONEY,
        lambda r: r.order_value, optional=False, attribute="order_value",
    ),
    _request_field(
        "return_value", "Retourwaarde", "Return value", FieldType.MONEY,
        lambda r: r.return_value, optional=False, fast=FastPath.ITEM_TOTAL,
    ),
    _request_field(
        "number_of_items", "Aantal artikelen", "Number of items", FieldType.NUMBER,
        _number_of_items, optional=False, fast=FastPath.ITEM_COUNT,
    ),
    _request_field(
        "days_since_delivery", "Dagen sinds levering", "Days since delivery", FieldType.NUMBER,
        _days_since_delivery, timezone_aware=True, fast=FastPath.DAYS_SINCE_DELIVERY,
    ),
    _request_field(
        "days_since_order", "Dagen sinds bestelling", "Days since order", FieldType.NUMBER,
        _days_since_order, timezone_aware=True, fast=FastPath.DAYS_SINCE_ORDER,
    ),
    _request_field(
        "refund_method", "Terugbetaalwijze", "Refund method", FieldType.CHOICE,
        lambda r: r.refund_method, optional=False, attribute="refund_method",
        choices=(
            Choice(RefundMethod.MONEY_BACK, "geld terug", "money back", ("refund",)),
            Choice(RefundMethod.STORE_CREDIT, "winkeltegoed", "store credit", ("tegoed",)),
            Choice(RefundMethod.EXCHANGE, "ruilen", "exchange", ("ruil",)),
        ),
    ),
    _request_field(
        "return_method", "Retourmethode", "Return method", FieldType.TEXT,
        lambda r: r.return_method, attribute="return_method",
    ),
    _request_field(
        "channel", "Kanaal", "Channel", FieldType.CHOICE,
        lambda r: r.channel, optional=False, attribute="channel",
        choices=(
            Choice(Channel.PORTAL, "portal", "portal", ("portaal", "retourportaal")),
            Choice(Channel.API, "api", "api"),
        ),
    ),
    _request_field(
        "has_photos", "Heeft foto's", "Has photos", FieldType.YES_NO, _has_photos,
        aliases=("Heeft fotos", "Foto's", "Photos"), optional=False, fast=FastPath.ANY_PHOTO,
    ),
    _request_field(
        "customer_email", "Klant e-mail", "Customer e-mail", FieldType.TEXT,
        lambda r: r.customer.email, aliases=("Klant email", "Customer email", "E-mail"),
        optional=False, attribute="customer.email",
    ),
    _request_field(
        "order_number", "Bestelnummer", "Order number", FieldType.TEXT,
        lambda r: r.order_number, optional=False, attribute="order_number",
    ),
    _request_field(
        "tags", "Tags", "Tags", FieldType.TAGS, lambda r: r.tags, aliases=("Tag", "Labels"),
        optional=False, attribute="tags", fast=FastPath.TAGS,
    ),
    _request_field(
        "discount_code", "Kortingscode", "Discount code", FieldType.TEXT,
        lambda r: r.discount_code, aliases=("Actiecode", "Coupon code"),
        attribute="discount_code",
    ),
    _request_field(
        "earlier_returns", "Eerdere retouren", "Earlier returns", FieldType.NUMBER,
        lambda r: r.earlier_returns, aliases=("Aantal eerdere retouren", "Previous returns"),
        attribute="earlier_returns",
    ),
    _request_field(
        "order_date", "Besteldatum", "Order date", FieldType.DATE, _order_date,
        timezone_aware=True,
    ),
    _request_field(
        "delivery_date", "Leverdatum", "Delivery date", FieldType.DATE, _delivery_date,
        aliases=("Leveringsdatum",), timezone_aware=True,
    ),
    _request_field(
        "request_date", "Aanvraagdatum", "Request date", FieldType.DATE, _request_date,
        optional=False, timezone_aware=True,
    ),
    _item_field(
        "reason", "Retourreden", "Return reason", FieldType.REASON, lambda i: i.reason,
        aliases=("Reden", "Reason"), optional=False, attribute="reason",
    ),
    _item_field(
        "item_name", "Artikelnaam", "Item name", FieldType.TEXT, lambda i: i.name,
        aliases=("Productnaam", "Product name"), optional=False, attribute="name",
    ),
    _item_field(
        "sku", "SKU", "SKU", FieldType.TEXT, lambda i: i.sku, aliases=("Artikelnummer",),
        optional=False, attribute="sku",
    ),
    _item_field(
        "item_value", "Artikelwaarde", "Item value", FieldType.MONEY, lambda i: i.value,
        aliases=("Productwaarde", "Product value"), optional=False, fast=FastPath.LINE_VALUE,
    ),
    _item_field(
        "quantity", "Aantal", "Quantity", FieldType.NUMBER, lambda i: i.quantity,
        optional=False, attribute="quantity", fast=FastPath.QUANTITY,
    ),
    _item_field(
        "product_type", "Producttype", "Product type", FieldType.TEXT, lambda i: i.product_type,
        aliases=("Productsoort",), attribute="product_type",
    ),
    _item_field(
        "product_tags", "Producttags", "Product tags", FieldType.TAGS, lambda i: i.product_tags,
        aliases=("Productlabels", "Product labels"), optional=False, attribute="product_tags",
    ),
    _item_field(
        "vendor", "Leverancier", "Vendor", FieldType.TEXT, lambda i: i.vendor,
        attribute="vendor",
    ),
)  # fmt: skip


@attrs.frozen
class FieldRegistry:
    """The fields a rule set may name, looked up by Dutch or English name or alias."""

    fields: tuple[Field, ...] = DEFAULT_FIELDS
    _index: Mapping[str, Field] = attrs.field(init=False, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        """Index every name; a name or key used by two fields is an error."""
        index: dict[str, Field] = {}
        keys: set[str] = set()
        for field in self.fields:
            if field.key in keys:
                raise ValueError(f"field key {field.key!r} is registered twice")
            keys.add(field.key)
            if field.type is FieldType.CHOICE and not field.choices:
                raise ValueError(f"choice field {field.key!r} needs choices")
            for name in {field.nl, field.en, *field.aliases}:
                key = fold_text(name)
                if key in index and index[key] is not field:
                    raise ValueError(f"field name {name!r} is registered twice")
                index[key] = field
        object.__setattr__(self, "_index", index)

    def with_fields(self, *extra: Field) -> FieldRegistry:
        """A registry with the host's own fields added."""
        return FieldRegistry((*self.fields, *extra))

    def lookup(self, name: str) -> Field | None:
        """The field called ``name`` (either language, any case), or ``None``."""
        return self._index.get(fold_text(name))

    def names(self, language: str) -> list[str]:
        """Every field's name in ``language`` (for suggestions)."""
        return [field.name(language) for field in self.fields]


class ActionKind(enum.Enum):
    """The actions a rule can take. ``group`` says which actions override each other."""

    REQUIRE_REVIEW = "require_review"
    SKIP_REVIEW = "skip_review"
    APPROVE_WITH_LABEL = "approve_with_label"
    APPROVE_WITHOUT_LABEL = "approve_without_label"
    REJECT = "reject"
    REFUND_FEE = "refund_fee"
    RETURN_FEE = "return_fee"
    SHIP_WITH = "ship_with"
    ORDER_NOT_RETURNABLE = "order_not_returnable"
    ITEM_NOT_RETURNABLE = "item_not_returnable"
    RETURN_WINDOW = "return_window"

    @property
    def group(self) -> str:
        """``decision``, ``refund``, ``fee``, ``carrier`` or ``window``: the last rule wins."""
        return _GROUPS.get(self, "decision")


_GROUPS: Final = {
    ActionKind.REFUND_FEE: "refund",
    ActionKind.RETURN_FEE: "fee",
    ActionKind.SHIP_WITH: "carrier",
    ActionKind.RETURN_WINDOW: "window",
}


class Argument(enum.Enum):
    """What follows an action's words."""

    NONE = "none"
    TEXT = "text"
    OPTIONAL_TEXT = "optional_text"
    MONEY = "money"
    DAYS = "days"


#: The longest return window a rule may give, in days (the policy's own limit: ten years).
MAX_WINDOW_DAYS: Final = 3650
#: The words allowed after a return window's number, per language (either is accepted).
DAY_WORDS: Final = {"nl": ("dagen", "dag"), "en": ("days", "day")}


@attrs.frozen
class ActionSpec:
    """How an action is written in each language and what argument it takes."""

    kind: ActionKind
    nl: str
    en: str
    argument: Argument = Argument.NONE
    aliases: tuple[str, ...] = ()

    def name(self, language: str) -> str:
        """The action's words in ``language``."""
        return self.nl if language == "nl" else self.en


ACTIONS: Final[tuple[ActionSpec, ...]] = (
    ActionSpec(ActionKind.REQUIRE_REVIEW, "Retouraanvraag inschakelen", "Require review"),
    ActionSpec(ActionKind.SKIP_REVIEW, "Retouraanvraag uitschakelen", "Skip review"),
    ActionSpec(ActionKind.APPROVE_WITH_LABEL, "Goedkeuren met label", "Approve with label"),
    ActionSpec(
        ActionKind.APPROVE_WITHOUT_LABEL, "Goedkeuren zonder label", "Approve without label"
    ),
    ActionSpec(ActionKind.REJECT, "Afwijzen met reden", "Reject with reason", Argument.TEXT),
    ActionSpec(ActionKind.REFUND_FEE, "Retourkosten terugbetalen", "Refund return fee"),
    ActionSpec(ActionKind.RETURN_FEE, "Retourkosten", "Return fee", Argument.MONEY),
    ActionSpec(ActionKind.SHIP_WITH, "Verzenden met", "Ship with", Argument.TEXT),
    ActionSpec(
        ActionKind.ORDER_NOT_RETURNABLE,
        "Retour niet mogelijk",
        "Unable to return order",
        Argument.OPTIONAL_TEXT,
    ),
    ActionSpec(
        ActionKind.ITEM_NOT_RETURNABLE,
        "Artikel niet retourneerbaar",
        "Unable to return item",
        Argument.OPTIONAL_TEXT,
    ),
    ActionSpec(ActionKind.RETURN_WINDOW, "Retourtermijn", "Return window", Argument.DAYS),
)
ACTIONS_BY_KIND: Final = {spec.kind: spec for spec in ACTIONS}
