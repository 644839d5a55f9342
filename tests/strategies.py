"""Shared hypothesis strategies: amounts, customers, items and whole requests."""

from __future__ import annotations

import datetime as dt

from hypothesis import strategies as st

from retouraanvraag.model import (
    DEFAULT_REASONS,
    Channel,
    Customer,
    Language,
    Money,
    PaidFee,
    RefundMethod,
    ReturnItem,
    ReturnRequest,
)

COUNTRIES = ("NL", "BE", "DE", "FR", "GB", "US", "ES", "IT", "AT", "DK")
REASON_CODES = tuple(r.code for r in DEFAULT_REASONS)

safe_text = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cc", "Cs")),
    min_size=1,
    max_size=40,
).filter(lambda s: s.strip() != "")

euros = st.builds(Money, st.integers(min_value=0, max_value=10_000_000))

aware_datetimes = st.datetimes(
    min_value=dt.datetime(2020, 1, 1),  # noqa: DTZ001 - hypothesis wants naive bounds
    max_value=dt.datetime(2030, 12, 31),  # noqa: DTZ001
    timezones=st.just(dt.UTC),
)

customers = st.builds(
    Customer,
    email=st.from_regex(r"[a-z]{1,10}@[a-z]{1,10}\.(nl|com|de)", fullmatch=True),
    name=safe_text,
    language=st.sampled_from(Language),
)

items = st.builds(
    ReturnItem,
    sku=st.from_regex(r"[A-Z0-9\-]{1,12}", fullmatch=True),
    name=safe_text,
    quantity=st.integers(min_value=1, max_value=5),
    unit_price=euros,
    reason=st.sampled_from(REASON_CODES),
    reason_text=st.none() | safe_text,
)


@st.composite
def requests(draw: st.DrawFn, *, shop_id: str | None = None) -> ReturnRequest:
    """A valid, freshly submitted request (status requested, version 0)."""
    created = draw(aware_datetimes)
    fee = draw(
        st.none() | st.builds(PaidFee, euros, st.from_regex(r"pay_[a-z0-9]{6}", fullmatch=True))
    )
    request = ReturnRequest(
        shop_id=shop_id or draw(st.sampled_from(("shop-a", "shop-b"))),
        id=draw(st.uuids()).hex,
        order_number=draw(st.from_regex(r"[0-9]{4,8}", fullmatch=True)),
        customer=draw(customers),
        from_country=draw(st.sampled_from(COUNTRIES)),
        order_value=draw(euros),
        items=draw(st.lists(items, min_size=1, max_size=3)),
        created_at=created,
        ordered_at=draw(st.none() | st.just(created - dt.timedelta(days=10))),
        delivered_at=draw(st.none() | st.just(created - dt.timedelta(days=3))),
        refund_method=draw(st.sampled_from(RefundMethod)),
        return_method=draw(st.none() | st.sampled_from(("drop_off", "pickup"))),
        channel=draw(st.sampled_from(Channel)),
        tags=draw(st.frozensets(st.sampled_from(("vip", "b2b", "sale")), max_size=2)),
        return_fee=fee,
    )
    return request.submitted().request
