"""A return request as the customer submits it: :class:`NewRequest` and its :class:`NewItem`.

These are the untrusted input of :meth:`~retouraanvraag.workflow.Desk.submit` and
:meth:`~retouraanvraag.workflow.Desk.preview`, which check every field, each error naming it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

import attrs

from retouraanvraag.model import (
    Channel,
    Customer,
    Money,
    PaidFee,
    RefundMethod,
    _collection,
    _product_tag_set,
    _tag_set,
)

__all__ = ["NewItem", "NewRequest"]


def _uploads(value: Iterable[bytes]) -> tuple[bytes, ...]:
    return _collection(value, "photos", "uploads (bytes)")


def _new_items(value: Iterable[NewItem]) -> tuple[NewItem, ...]:
    return _collection(value, "items", "NewItem")


@attrs.frozen
class NewItem:
    """An item as the customer submits it; ``photos`` are raw uploads, validated on submit.

    Fields are checked by :meth:`Desk.submit` and :meth:`Desk.preview`, where an error can name
    the item (``items[1].unit_price``); ``photos`` must be a collection of uploads already here.
    """

    sku: str
    name: str
    quantity: int
    unit_price: Money
    reason: str
    reason_text: str | None = None
    photos: tuple[bytes, ...] = attrs.field(default=(), converter=_uploads)
    product_type: str | None = None
    product_tags: frozenset[str] = attrs.field(default=frozenset(), converter=_product_tag_set)
    vendor: str | None = None


@attrs.frozen
class NewRequest:
    """A return request as the portal or the API submits it.

    ``from_country`` may be an ISO code or a Dutch/English name; ``reason`` of an item a code or
    a label of the shop's catalogue. Fields are checked by :meth:`Desk.submit` and
    :meth:`Desk.preview`, each error naming its field; ``items`` and ``tags`` must be
    collections already here.
    """

    shop_id: str
    order_number: str
    customer: Customer
    from_country: str
    order_value: Money
    items: tuple[NewItem, ...] = attrs.field(converter=_new_items)
    ordered_at: dt.datetime | None = None
    delivered_at: dt.datetime | None = None
    refund_method: RefundMethod = RefundMethod.MONEY_BACK
    return_method: str | None = None
    channel: Channel = Channel.PORTAL
    tags: frozenset[str] = attrs.field(default=frozenset(), converter=_tag_set)
    return_fee: PaidFee | None = None
    discount_code: str | None = None
    earlier_returns: int | None = None
