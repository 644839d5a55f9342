"""The public JSON form of a return request, as ``triage`` and ``rules explain`` read it.

One request is one JSON object of plain fields, the ones a shop's order system already has;
``retouraanvraag triage`` reads a file of them, one per line (JSON Lines)::

    {"shop_id": "my-shop", "id": "r-1001", "order_number": "1001",
     "customer": {"email": "jan@example.nl", "name": "Jan Jansen", "language": "nl"},
     "from_country": "Nederland", "order_value": "€59,95",
     "items": [{"sku": "TS-M", "name": "T-shirt", "quantity": 1, "unit_price": "€19,95",
                "reason": "Te klein"}],
     "delivered_at": "2026-11-23T14:05:00+01:00"}

Required: ``shop_id``, ``id``, ``order_number``, ``customer`` (``email`` and ``name``;
``language`` ``nl`` or ``en``, default ``nl``), ``from_country`` (an ISO code or a Dutch or
English name), ``order_value`` and ``items`` (at least one, each with ``sku``, ``name``,
``quantity``, ``unit_price`` and ``reason``: a code or a label of the reason catalogue;
``reason_text`` optional). Optional: ``created_at`` (when the request was made; the rules
count "days since delivery" from it; default: now), ``ordered_at``, ``delivered_at``,
``refund_method`` (``money_back``, ``store_credit``, ``exchange``), ``return_method``,
``channel`` (``portal``, ``api``), ``tags`` (a list of texts), ``return_fee``
(``{"amount": …, "payment_reference": "pay_123"}``, the fee the customer paid), and what the
host knows for the rules: ``discount_code`` (text) and ``earlier_returns`` (a whole number);
per item ``product_type``, ``vendor`` (texts) and ``product_tags`` (a list of texts).

An amount is text as a merchant writes it (``"€59,95"``, ``"59.95 EUR"``; without a currency,
the order's) or an object ``{"amount": 5995, "currency": "EUR"}`` whose ``amount`` is whole
minor units (cents), as :class:`~retouraanvraag.model.Money` holds it; a fractional JSON number
is refused, never rounded. Moments are ISO 8601 with a zone (``2026-11-23T14:05:00+01:00``,
``…Z``). A field that is not in this list is an error (a typo must not go unnoticed), and
every error names its field as a path: ``items[1].unit_price``.
"""

from __future__ import annotations

import datetime as dt
import difflib
from collections.abc import Mapping, Sequence
from typing import Any, Final

from retouraanvraag.errors import InvalidInput, WrongType
from retouraanvraag.model import (
    Channel,
    Customer,
    Language,
    Money,
    PaidFee,
    ReasonCatalogue,
    RefundMethod,
    ReturnItem,
    ReturnRequest,
    _check_moment,
    _choice,
    resolve_country,
)

__all__ = ["ITEM_FIELDS", "REQUEST_FIELDS", "request_from_json", "request_to_json"]

#: Every field of a request's JSON form, required ones first.
REQUEST_FIELDS: Final = (
    "shop_id",
    "id",
    "order_number",
    "customer",
    "from_country",
    "order_value",
    "items",
    "created_at",
    "ordered_at",
    "delivered_at",
    "refund_method",
    "return_method",
    "channel",
    "tags",
    "return_fee",
    "discount_code",
    "earlier_returns",
)
#: Every field of an item's JSON form, required ones first.
ITEM_FIELDS: Final = (
    "sku",
    "name",
    "quantity",
    "unit_price",
    "reason",
    "reason_text",
    "product_type",
    "product_tags",
    "vendor",
)

_REQUIRED: Final = frozenset(REQUEST_FIELDS[:7])
_ITEM_REQUIRED: Final = frozenset(ITEM_FIELDS[:5])
_CUSTOMER_FIELDS: Final = ("email", "name", "language")
_FEE_FIELDS: Final = ("amount", "payment_reference")
_MONEY_FIELDS: Final = ("amount", "currency")


def _kind(value: object) -> str:
    """A decoded JSON value's kind in JSON's words; the value itself stays out of messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "text"
    return "a list" if isinstance(value, list) else "an object"


def _path(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _fields(
    value: object, path: str, known: Sequence[str], required: frozenset[str]
) -> Mapping[str, object]:
    """``value`` as a JSON object holding only ``known`` fields and every ``required`` one."""
    if not isinstance(value, Mapping):
        raise WrongType(expected="an object", got=_kind(value), field=path or None)
    for name in value:
        if name not in known:
            close = difflib.get_close_matches(str(name), known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise InvalidInput(f"is not a field of this object{hint}", field=_path(path, name))
    for name in known:
        if name in required and name not in value:
            raise InvalidInput("is required", field=_path(path, name))
    return value


def _text(value: object, path: str) -> str:
    if not isinstance(value, str):
        raise WrongType(expected="text", got=_kind(value), field=path)
    return value


def _optional_text(value: object, path: str) -> str | None:
    return None if value is None else _text(value, path)


def _money(value: object, path: str, currency: str) -> Money:
    """Text (``"€4,95"``; ``currency`` when it names none) or ``{"amount", "currency"}``."""
    try:
        if isinstance(value, str):
            return Money.parse(value, currency=currency)
        if not isinstance(value, Mapping):
            raise WrongType(
                expected='text ("€4,95") or {"amount": 495, "currency": "EUR"}', got=_kind(value)
            )
        fields = _fields(value, "", _MONEY_FIELDS, frozenset({"amount"}))
        amount = fields["amount"]
        if isinstance(amount, bool) or not isinstance(amount, int):
            raise WrongType(
                expected="a whole number of minor units (495 for €4,95)",
                got=_kind(amount),
                field="amount",
            )
        code = _text(fields.get("currency", currency), "currency")
        try:
            Money.zero(code)
        except InvalidInput as exc:
            raise exc.at("currency") from exc
        try:
            return Money(amount, code)
        except InvalidInput as exc:
            raise exc.at("amount") from exc
    except InvalidInput as exc:
        raise exc.at(path) from exc


def _moment(value: object, path: str) -> dt.datetime | None:
    if value is None:
        return None
    text = _text(value, path)
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(
            "is not an ISO 8601 date and time (2026-11-23T14:05:00+01:00)", field=path
        ) from None
    if moment.tzinfo is None:
        raise InvalidInput("has no time zone: end it with Z or an offset (+01:00)", field=path)
    _check_moment(moment, path)
    return moment


def _customer(value: object) -> Customer:
    fields = _fields(value, "customer", _CUSTOMER_FIELDS, frozenset({"email", "name"}))
    language = fields.get("language", Language.NL.value)
    try:
        return Customer(
            email=_text(fields["email"], "email"),
            name=_text(fields["name"], "name"),
            language=_choice(Language, _text(language, "language"), "language"),
        )
    except InvalidInput as exc:
        raise exc.at("customer") from exc


def _item(value: object, index: int, currency: str, reasons: ReasonCatalogue) -> ReturnItem:
    path = f"items[{index}]"
    fields = _fields(value, path, ITEM_FIELDS, _ITEM_REQUIRED)
    quantity = fields["quantity"]
    if isinstance(quantity, bool) or not isinstance(quantity, int):
        raise WrongType(expected="a whole number", got=_kind(quantity), field=f"{path}.quantity")
    reason = reasons.resolve(_text(fields["reason"], f"{path}.reason"), field=f"{path}.reason")
    try:
        return ReturnItem(
            sku=_text(fields["sku"], "sku"),
            name=_text(fields["name"], "name"),
            quantity=quantity,
            unit_price=_money(fields["unit_price"], "unit_price", currency),
            reason=reason.code,
            reason_text=_optional_text(fields.get("reason_text"), "reason_text"),
            product_type=_optional_text(fields.get("product_type"), "product_type"),
            product_tags=_tags(fields.get("product_tags", []), "product_tags"),
            vendor=_optional_text(fields.get("vendor"), "vendor"),
        )
    except InvalidInput as exc:
        raise exc.at(path) from exc


def _items(value: object, currency: str, reasons: ReasonCatalogue) -> tuple[ReturnItem, ...]:
    if not isinstance(value, list):
        raise WrongType(expected="a list of items", got=_kind(value), field="items")
    if not value:
        raise InvalidInput("a return request needs at least one item", field="items")
    return tuple(_item(item, i, currency, reasons) for i, item in enumerate(value))


def _tags(value: object, path: str = "tags") -> frozenset[str]:
    if not isinstance(value, list):
        raise WrongType(expected="a list of texts", got=_kind(value), field=path)
    return frozenset(_text(tag, f"{path}[{i}]") for i, tag in enumerate(value))


def _count(value: object, path: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise WrongType(expected="a whole number", got=_kind(value), field=path)
    return value


def _fee(value: object, currency: str) -> PaidFee | None:
    if value is None:
        return None
    fields = _fields(value, "return_fee", _FEE_FIELDS, frozenset(_FEE_FIELDS))
    amount = _money(fields["amount"], "return_fee.amount", currency)
    reference = _text(fields["payment_reference"], "return_fee.payment_reference")
    try:
        return PaidFee(amount, reference)
    except InvalidInput as exc:
        raise exc.at("return_fee") from exc


def request_from_json(
    data: object, *, reasons: ReasonCatalogue | None = None, now: dt.datetime | None = None
) -> ReturnRequest:
    """Build a request, as the rules see it, from its JSON form (see the module's docs).

    What is built is a request to evaluate or explain, not a submission: the return window,
    the fee the rules ask and photos are the desk's business (:meth:`Desk.submit`).

    Args:
        data: one decoded JSON object (``json.loads(line)``).
        reasons: the shop's reason catalogue (default: the library's ten reasons); an item's
            ``reason`` may be a code or a Dutch or English label of it.
        now: the ``created_at`` of a request that names none (default: the current time).

    Returns:
        The request, ``requested`` and never saved (version 0, no history).

    Raises:
        InvalidInput: a field is missing, unknown, of the wrong type or invalid; ``field``
            is its path (``items[1].unit_price``), and the message never repeats a customer's
            name or address.
    """
    fields = _fields(data, "", REQUEST_FIELDS, _REQUIRED)
    order_value = _money(fields["order_value"], "order_value", "EUR")
    currency = order_value.currency
    catalogue = reasons if reasons is not None else ReasonCatalogue()
    items = _items(fields["items"], currency, catalogue)
    created = _moment(fields.get("created_at"), "created_at") or now or dt.datetime.now(dt.UTC)
    country = resolve_country(_text(fields["from_country"], "from_country"), field="from_country")
    return ReturnRequest(
        shop_id=_text(fields["shop_id"], "shop_id"),
        id=_text(fields["id"], "id"),
        order_number=_text(fields["order_number"], "order_number"),
        customer=_customer(fields["customer"]),
        from_country=country,
        order_value=order_value,
        items=items,
        created_at=created,
        ordered_at=_moment(fields.get("ordered_at"), "ordered_at"),
        delivered_at=_moment(fields.get("delivered_at"), "delivered_at"),
        refund_method=_choice(
            RefundMethod,
            _text(fields.get("refund_method", RefundMethod.MONEY_BACK.value), "refund_method"),
            "refund_method",
        ),
        return_method=_optional_text(fields.get("return_method"), "return_method"),
        channel=_choice(
            Channel, _text(fields.get("channel", Channel.PORTAL.value), "channel"), "channel"
        ),
        tags=_tags(fields.get("tags", [])),
        return_fee=_fee(fields.get("return_fee"), currency),
        discount_code=_optional_text(fields.get("discount_code"), "discount_code"),
        earlier_returns=_count(fields.get("earlier_returns"), "earlier_returns"),
    )


def _money_json(money: Money) -> dict[str, Any]:
    return {"amount": money.amount, "currency": money.currency}


def _moment_json(moment: dt.datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def request_to_json(request: ReturnRequest) -> dict[str, Any]:
    """A request's JSON form: every field :func:`request_from_json` reads, and no other.

    Amounts are written as ``{"amount": minor units, "currency": …}``, reasons as codes,
    countries as ISO codes; what the lifecycle added (status, history, label, refunds) is
    not part of the form.
    """
    fee = request.return_fee
    return {
        "shop_id": request.shop_id,
        "id": request.id,
        "order_number": request.order_number,
        "customer": {
            "email": request.customer.email,
            "name": request.customer.name,
            "language": request.customer.language.value,
        },
        "from_country": request.from_country,
        "order_value": _money_json(request.order_value),
        "items": [
            {
                "sku": item.sku,
                "name": item.name,
                "quantity": item.quantity,
                "unit_price": _money_json(item.unit_price),
                "reason": item.reason,
                "reason_text": item.reason_text,
                "product_type": item.product_type,
                "product_tags": sorted(item.product_tags),
                "vendor": item.vendor,
            }
            for item in request.items
        ],
        "created_at": request.created_at.isoformat(),
        "ordered_at": _moment_json(request.ordered_at),
        "delivered_at": _moment_json(request.delivered_at),
        "refund_method": request.refund_method.value,
        "return_method": request.return_method,
        "channel": request.channel.value,
        "tags": sorted(request.tags),
        "return_fee": (
            None
            if fee is None
            else {"amount": _money_json(fee.amount), "payment_reference": fee.payment_reference}
        ),
        "discount_code": request.discount_code,
        "earlier_returns": request.earlier_returns,
    }
