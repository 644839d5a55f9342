"""Shared hypothesis strategies: amounts, customers, items and whole requests.

They live in the package (:mod:`retouraanvraag.testing.strategies`), where the contract
suites draw from them too; this module names them for the tests.
"""

from __future__ import annotations

from hypothesis import strategies as st

from retouraanvraag.model import ReturnRequest
from retouraanvraag.testing.strategies import (
    COUNTRIES,
    REASON_CODES,
    aware_datetimes,
    customers,
    euros,
    items,
    return_requests,
    safe_text,
)

__all__ = [
    "COUNTRIES",
    "REASON_CODES",
    "aware_datetimes",
    "customers",
    "euros",
    "items",
    "requests",
    "safe_text",
]


def requests(*, shop_id: str | None = None) -> st.SearchStrategy[ReturnRequest]:
    """A valid, freshly submitted request (status requested, version 0)."""
    return return_requests(shop_id=shop_id, submitted=True)
