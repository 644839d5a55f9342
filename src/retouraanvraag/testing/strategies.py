"""Hypothesis strategies for return requests, for the library's tests and its contract suites.

The one source both draw requests from (needs ``hypothesis``, in the ``testing`` extra).

:func:`return_requests` gives requests a host could really hold: in any state with every
optional part (what a store must round-trip), or freshly submitted with realistic values
(what the desk and the rules see). The building blocks (:data:`texts`, :data:`moments`,
:data:`euros`, :data:`customers`, :data:`items`, …) are public for tests that need a part.
"""

from __future__ import annotations

import datetime as dt
from typing import Final

from hypothesis import strategies as st

from retouraanvraag.model import (
    CUSTOMER,
    DEFAULT_REASONS,
    SYSTEM,
    Actor,
    Channel,
    Customer,
    HistoryEntry,
    Label,
    Language,
    Money,
    PaidFee,
    RefundMethod,
    RefundRecord,
    ReturnItem,
    ReturnRequest,
    Status,
)

__all__ = [
    "COUNTRIES",
    "REASON_CODES",
    "actors",
    "aware_datetimes",
    "customers",
    "euros",
    "history_entries",
    "items",
    "labels",
    "moments",
    "return_requests",
    "safe_text",
    "texts",
]

#: Countries drawn for realistic requests.
COUNTRIES: Final = ("NL", "BE", "DE", "FR", "GB", "US", "ES", "IT", "AT", "DK")
#: The library's reason codes.
REASON_CODES: Final = tuple(r.code for r in DEFAULT_REASONS)

#: Any printable text a field takes: one line, no controls, no lone surrogates.
texts = st.text(st.characters(exclude_categories=("Cc", "Cs")), min_size=1, max_size=30).filter(
    str.strip
)
#: Short text from the whole of UTF-8 (names, free text).
safe_text = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cc", "Cs")),
    min_size=1,
    max_size=40,
).filter(lambda s: s.strip() != "")
#: Euro amounts from nothing to €100,000.
euros = st.builds(Money, st.integers(min_value=0, max_value=10_000_000))
#: Moments in UTC around now.
aware_datetimes = st.datetimes(
    min_value=dt.datetime(2020, 1, 1),  # noqa: DTZ001 - hypothesis wants naive bounds
    max_value=dt.datetime(2030, 12, 31),  # noqa: DTZ001
    timezones=st.just(dt.UTC),
)
#: Moments over two centuries, in zones east and west of UTC (what a store must keep exact).
moments = st.datetimes(
    min_value=dt.datetime(2000, 1, 1),  # noqa: DTZ001 - hypothesis wants naive bounds
    max_value=dt.datetime(2100, 1, 1),  # noqa: DTZ001
    timezones=st.sampled_from(
        (dt.UTC, dt.timezone(dt.timedelta(hours=2)), dt.timezone(-dt.timedelta(hours=9.5)))
    ),
)
customers = st.builds(
    Customer,
    email=st.from_regex(r"[a-z]{1,10}@[a-z]{1,10}\.(nl|com|de)", fullmatch=True),
    name=safe_text,
    language=st.sampled_from(Language),
)
#: Items as a customer returns them (realistic SKUs, the library's reasons).
items = st.builds(
    ReturnItem,
    sku=st.from_regex(r"[A-Z0-9\-]{1,12}", fullmatch=True),
    name=safe_text,
    quantity=st.integers(min_value=1, max_value=5),
    unit_price=euros,
    reason=st.sampled_from(REASON_CODES),
    reason_text=st.none() | safe_text,
)
_any_items = st.builds(
    ReturnItem,
    sku=texts,
    name=texts,
    quantity=st.integers(1, 10_000),
    unit_price=st.builds(Money, st.integers(0, 10**9)),
    reason=st.sampled_from(("damaged", "too_small", "other")),
    reason_text=st.none() | texts,
)
_staff_ids = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,20}", fullmatch=True).filter(
    lambda name: name.casefold() not in {"customer", "system", "policy", "rule", "staff"}
)
#: Every kind of actor: the customer, the system, staff, and rules by name.
actors = (
    st.sampled_from((CUSTOMER, SYSTEM))
    | _staff_ids.map(Actor.staff)
    | texts.filter(lambda name: name.isprintable()).map(Actor.rule)
)
history_entries = st.builds(
    HistoryEntry,
    at=moments,
    actor=actors,
    command=st.sampled_from(("submit", "approve_with_label", "reject")),
    status_from=st.none() | st.sampled_from(Status),
    status_to=st.sampled_from(Status),
    note=st.none() | texts,
    trace=st.lists(texts, max_size=2).map(tuple),
)
labels = st.builds(Label, carrier=texts, tracking_number=texts, document=st.binary(max_size=64))


def return_requests(
    *, shop_id: str | None = None, submitted: bool = False
) -> st.SearchStrategy[ReturnRequest]:
    """Valid requests.

    Args:
        shop_id: the shop every request belongs to (default: drawn).
        submitted: ``False`` (the default) draws requests in any state with every optional
            part — any text for ids, refunds up to the paid fee, labels, attention and
            history — each one a store must accept and give back equal. ``True`` draws
            freshly submitted requests (status requested, version 0, one history entry)
            with realistic values: unique ids, shops ``shop-a``/``shop-b``, real countries.
    """
    return _submitted(shop_id) if submitted else _in_any_state(shop_id)


@st.composite
def _submitted(draw: st.DrawFn, shop_id: str | None) -> ReturnRequest:
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


@st.composite
def _in_any_state(draw: st.DrawFn, shop_id: str | None) -> ReturnRequest:
    fee = draw(st.none() | st.integers(0, 10_000))
    refunds: list[RefundRecord] = []
    left = fee or 0
    for n in range(draw(st.integers(0, 2)) if left else 0):
        amount = draw(st.integers(1, left)) if left else 0
        if amount:
            refunds.append(RefundRecord(f"refund:{n}", Money(amount), draw(texts), draw(moments)))
            left -= amount
    return ReturnRequest(
        shop_id=shop_id or draw(texts),
        id=draw(texts),
        order_number=draw(texts),
        customer=Customer(draw(st.sampled_from(("a@b.nl", "klant.x@example.com"))), draw(texts)),
        from_country=draw(st.sampled_from(("NL", "BE", "DE", "GB"))),
        order_value=draw(st.builds(Money, st.integers(0, 10**9))),
        items=tuple(draw(st.lists(_any_items, min_size=1, max_size=3))),
        created_at=draw(moments),
        ordered_at=draw(st.none() | moments),
        delivered_at=draw(st.none() | moments),
        return_method=draw(st.none() | texts),
        tags=draw(st.frozensets(texts, max_size=3)),
        return_fee=None if fee is None else PaidFee(Money(fee), draw(texts)),
        status=draw(st.sampled_from(Status)),
        reject_reason=draw(st.none() | texts),
        label=draw(st.none() | labels),
        carrier=draw(st.none() | texts),
        refunds=tuple(refunds),
        attention=tuple(draw(st.lists(texts, max_size=2))),
        history=tuple(draw(st.lists(history_entries, max_size=3))),
    )
