"""The carrier and payment contract suites, run against the in-memory fakes."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from retouraanvraag.errors import PortRejected, PortUnavailable
from retouraanvraag.model import Money
from retouraanvraag.ports import LabelService, PaymentService
from retouraanvraag.testing import FakeLabels, FakePayments
from retouraanvraag.testing.faults import Fault, fail_nth, inject_faults
from retouraanvraag.testing.service_contracts import (
    LabelServiceContract,
    PaymentServiceContract,
    contract_request,
)

from ._reliability_support import Ledger, LedgerLabels


class TestFakeLabels(LabelServiceContract):
    def make_labels(self) -> LabelService:
        return FakeLabels()


class TestLedgerLabels(LabelServiceContract):
    """The file-ledger carrier of the crash and process tests keeps the same promises."""

    def make_labels(self) -> LabelService:
        root = Path(tempfile.mkdtemp(prefix="retouraanvraag-ledger-"))
        return LedgerLabels(Ledger(root / "ledger.jsonl"))


class TestFakePayments(PaymentServiceContract):
    serial = 0

    def make_payments(self) -> PaymentService:
        return FakePayments()

    def pay(self, payments: PaymentService, amount: Money) -> str:
        assert isinstance(payments, FakePayments)
        TestFakePayments.serial += 1
        reference = f"pay_{self.serial}"
        payments.charge(reference, amount)
        return reference

    def refunded(self, payments: PaymentService, reference: str) -> Money:
        assert isinstance(payments, FakePayments)
        total = payments.refunded(reference)
        assert total is not None
        return total


def test_a_carrier_refusing_a_country_is_a_permanent_failure() -> None:
    labels = FakeLabels(refuse_countries=frozenset({"NL"}))
    with pytest.raises(PortRejected, match="does not collect from NL"):
        labels.create_label("label:x", contract_request())


def test_a_failure_after_acting_leaves_the_label_made_and_a_retry_returns_it() -> None:
    inner = FakeLabels()
    labels = inject_faults(inner, fail_nth(1, Fault.AFTER))
    request = contract_request()
    with pytest.raises(PortUnavailable, match="injected failure after"):
        labels.create_label("label:x", request)
    assert list(inner.created) == ["label:x"]
    assert labels.create_label("label:x", request) == inner.created["label:x"]
    assert len(inner.created) == 1
