"""``ReturnRequest.replace``: the aggregate's evolve, which checks only the changed fields.

A request is checked whole when it is built; commands change a few fields through ``replace``.
These tests hold it to what ``attrs.evolve`` (which re-checks everything) would do: the same
request for accepted changes, the same refusal for refused ones.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from retouraanvraag.errors import CurrencyMismatch, InvalidInput, WrongType
from retouraanvraag.model import (
    Label,
    Money,
    PaidFee,
    RefundMethod,
    ReturnItem,
    ReturnRequest,
    Status,
)

from .strategies import aware_datetimes, items, requests, safe_text

CHANGES: dict[str, st.SearchStrategy[Any]] = {
    "status": st.sampled_from(Status),
    "carrier": st.none() | safe_text.filter(lambda t: t.strip() and len(t) <= 100),
    "label_attempt": st.integers(min_value=1, max_value=50),
    "tags": st.frozensets(st.sampled_from(["vip", "b2b", "retour"]), max_size=3),
    "items": st.lists(items, min_size=1, max_size=3).map(tuple),
    "delivered_at": st.none() | aware_datetimes,
    "refund_method": st.sampled_from(RefundMethod),
    "version": st.integers(min_value=0, max_value=10**6),
    "return_fee_asked": st.none() | st.builds(Money, st.integers(0, 10_000)),
}


@given(
    requests(),
    st.dictionaries(st.sampled_from(sorted(CHANGES)), st.none(), min_size=1).flatmap(
        lambda keys: st.fixed_dictionaries({k: CHANGES[k] for k in keys})
    ),
)
def test_replace_makes_what_evolve_makes(request: ReturnRequest, changes: dict[str, Any]) -> None:
    try:
        expected = attrs.evolve(request, **changes)
    except InvalidInput as refused:
        with pytest.raises(type(refused)):
            request.replace(**changes)
        return
    assert request.replace(**changes) == expected


BAD: list[tuple[dict[str, object], type[Exception]]] = [
    ({"carrier": "PostNL\r\nBcc: x@evil.example"}, InvalidInput),
    ({"carrier": "x" * 101}, InvalidInput),
    ({"label_attempt": 0}, ValueError),
    ({"items": ()}, InvalidInput),
    ({"items": ("not an item",)}, InvalidInput),
    ({"delivered_at": dt.datetime(2026, 1, 1)}, InvalidInput),  # noqa: DTZ001 - the point
    ({"tags": ["x" * 200]}, InvalidInput),
    ({"return_fee_asked": Money(100, "USD")}, CurrencyMismatch),
    ({"return_fee": PaidFee(Money(100, "USD"), "pay_1")}, CurrencyMismatch),
    ({"label": "a label"}, TypeError),
    ({"customer": "jan@example.nl"}, WrongType),
    ({"order_number": "1001\n1002"}, InvalidInput),
]


@pytest.mark.parametrize(("changes", "error"), BAD)
def test_replace_refuses_what_the_constructor_refuses(
    changes: dict[str, object], error: type[Exception]
) -> None:
    request = _request()
    with pytest.raises(error):
        attrs.evolve(request, **changes)  # type: ignore[arg-type]
    with pytest.raises(error):
        request.replace(**changes)


def test_replace_converts_as_the_constructor_does() -> None:
    request = _request()
    item = request.items[0]
    changed = request.replace(items=[item, item], tags=["vip", "vip"], refund_method="store_credit")
    assert changed.items == (item, item)
    assert changed.tags == frozenset({"vip"})
    assert changed.refund_method is RefundMethod.STORE_CREDIT
    assert request.items == (item,)  # the original is untouched


def test_replace_names_an_unknown_field() -> None:
    with pytest.raises(TypeError, match="colour"):
        _request().replace(colour="red")


def test_replace_checks_a_field_against_the_new_request_not_the_old() -> None:
    # The label must be a Label; a valid one goes in, beside a history that is kept.
    request = _request()
    label = Label("PostNL", "3S123", b"%PDF-1.4", "application/pdf", "label.pdf")
    assert request.replace(label=label).label == label
    assert request.replace(label=label).history == request.history


def _request() -> ReturnRequest:
    from retouraanvraag.model import Customer  # noqa: PLC0415 - local to the helper

    return ReturnRequest(
        shop_id="shop-1",
        id="r-1",
        order_number="1001",
        customer=Customer("jan@example.nl", "Jan"),
        from_country="NL",
        order_value=Money(5995),
        items=(ReturnItem("TS-1", "T-shirt", 1, Money(1995), "too_small"),),
        created_at=dt.datetime(2026, 3, 1, tzinfo=dt.UTC),
        return_fee=PaidFee(Money(495), "pay_1"),
    )
