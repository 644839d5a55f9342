"""Everything a test suite needs: in-memory adapters of every port, and contract suites.

The fakes are real implementations (thread-safe, idempotent by key, raising the port errors).
The contract suites (``StorageContract``, ``LabelServiceContract``, ``PaymentServiceContract``,
``MailTransportContract``, ``PhotoStoreContract``, ``EventSinkContract``) are pytest base
classes: subclass one, implement its factory methods, and every promise of the port is checked
against your adapter.
They import pytest, so they load only when asked for.
"""

from __future__ import annotations

import contextlib
import importlib
from typing import Any

from retouraanvraag.adapters.memory import MemoryStorage
from retouraanvraag.testing.fakes import (
    EventRecorder,
    FakeLabels,
    FakePayments,
    FixedClock,
    MailRecorder,
    MemoryPhotoStore,
)

__all__ = [
    "EventRecorder",
    "EventSinkContract",
    "FakeLabels",
    "FakePayments",
    "FixedClock",
    "LabelServiceContract",
    "MailRecorder",
    "MailTransportContract",
    "MemoryPhotoStore",
    "MemoryStorage",
    "PaymentServiceContract",
    "PhotoStoreContract",
    "StorageContract",
]

with contextlib.suppress(ImportError):
    import pytest

    # Plain asserts in the contract suites give pytest's detailed failure messages.
    pytest.register_assert_rewrite(
        "retouraanvraag.testing.storage_contract",
        "retouraanvraag.testing.mail_contract",
        "retouraanvraag.testing.photo_contract",
        "retouraanvraag.testing.service_contracts",
        "retouraanvraag.testing.event_contract",
    )

_LAZY = {
    "StorageContract": "retouraanvraag.testing.storage_contract",
    "MailTransportContract": "retouraanvraag.testing.mail_contract",
    "PhotoStoreContract": "retouraanvraag.testing.photo_contract",
    "LabelServiceContract": "retouraanvraag.testing.service_contracts",
    "PaymentServiceContract": "retouraanvraag.testing.service_contracts",
    "EventSinkContract": "retouraanvraag.testing.event_contract",
}


def __getattr__(name: str) -> Any:  # noqa: ANN401 - module-level lazy attribute
    """Load the contract suites on first use (they need pytest)."""
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)
