"""Contract suites for the carrier (labels) and payment ports.

Subclass one in your test suite, implement the factory methods, and pytest checks your adapter
against every promise of :class:`~retouraanvraag.ports.LabelService` or
:class:`~retouraanvraag.ports.PaymentService` — above all, that a retry under the same key never
makes a second label or moves money twice::

    class TestMyCarrier(LabelServiceContract):
        def make_labels(self) -> LabelService:
            return MyCarrierAdapter(sandbox_credentials())
"""

# The checks are pytest tests: bare asserts are the point.
# ruff: noqa: S101

from __future__ import annotations

import abc
import datetime as dt
import threading
from collections.abc import Callable

import pytest

from retouraanvraag.errors import PortRejected
from retouraanvraag.model import Customer, Label, Money, PaidFee, ReturnItem, ReturnRequest
from retouraanvraag.ports import LabelService, PaymentService
from retouraanvraag.testing._threads import run_at_once

__all__ = ["LabelServiceContract", "PaymentServiceContract", "contract_request"]

_THREADS = 8


def contract_request(request_id: str = "contract-1") -> ReturnRequest:
    """An approved-looking request from the Netherlands, for carriers to make a label for."""
    created = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)
    return (
        ReturnRequest(
            shop_id="contract-shop",
            id=request_id,
            order_number="1001",
            customer=Customer("klant@example.com", "Klant", "nl"),
            from_country="NL",
            order_value=Money(5995),
            items=(ReturnItem("TS-1", "T-shirt", 1, Money(1995), "too_small"),),
            created_at=created,
            return_fee=PaidFee(Money(495), "pay_contract"),
        )
        .submitted()
        .request
    )


def _race(work: Callable[[], object]) -> list[object]:
    """Run ``work`` in several threads released at once; return what each returned or raised."""
    return run_at_once(_THREADS, lambda _n: work())


class LabelServiceContract(abc.ABC):
    """Every promise of :class:`~retouraanvraag.ports.LabelService`."""

    @abc.abstractmethod
    def make_labels(self) -> LabelService:
        """A fresh carrier adapter (a sandbox account, or a fake) that accepts NL returns."""

    @pytest.fixture
    def labels(self) -> LabelService:
        """The adapter under test."""
        return self.make_labels()

    def test_a_label_has_a_carrier_a_tracking_number_and_a_document(
        self, labels: LabelService
    ) -> None:
        """What the customer prints: never empty."""
        label = labels.create_label("label:contract-1", contract_request())
        assert isinstance(label, Label)
        assert label.carrier
        assert label.tracking_number
        assert label.document
        assert label.content_type
        assert label.filename

    def test_the_same_key_returns_the_same_label(self, labels: LabelService) -> None:
        """A retry under one key makes nothing new."""
        request = contract_request()
        first = labels.create_label("label:contract-1", request)
        assert labels.create_label("label:contract-1", request) == first

    def test_other_keys_make_other_labels(self, labels: LabelService) -> None:
        """Two requests, two tracking numbers."""
        one = labels.create_label("label:contract-1", contract_request("contract-1"))
        two = labels.create_label("label:contract-2", contract_request("contract-2"))
        assert one.tracking_number != two.tracking_number

    def test_racing_retries_of_one_key_make_one_label(self, labels: LabelService) -> None:
        """Concurrent calls with one key all get the one label."""
        request = contract_request()
        results = _race(lambda: labels.create_label("label:contract-1", request))
        assert all(isinstance(r, Label) for r in results), results
        assert len({r.tracking_number for r in results if isinstance(r, Label)}) == 1

    def test_voiding_is_idempotent_and_a_no_op_without_a_label(self, labels: LabelService) -> None:
        """Void what exists, as often as asked; voiding nothing is fine."""
        labels.void_label("label:never-made")
        labels.create_label("label:contract-1", contract_request())
        labels.void_label("label:contract-1")
        labels.void_label("label:contract-1")

    def test_a_voided_key_never_gives_a_label_again(self, labels: LabelService) -> None:
        """After a void, the key is spent: asking under it again is refused for good.

        The library never asks under a voided key (a retry asks under the next attempt's key),
        but a worker whose call was slow can: it must not get back the voided label, nor a new
        active one, or a customer would be mailed a label that does not work.
        """
        request = contract_request()
        labels.create_label("label:contract-1", request)
        labels.void_label("label:contract-1")
        with pytest.raises(PortRejected):
            labels.create_label("label:contract-1", request)

    def test_a_void_before_the_label_is_final(self, labels: LabelService) -> None:
        """A void that comes before the label (a cancel racing a slow carrier) still wins."""
        labels.void_label("label:contract-1")
        with pytest.raises(PortRejected):
            labels.create_label("label:contract-1", contract_request())
        # Another key is untouched by it.
        assert labels.create_label("label:contract-2", contract_request("contract-2"))


class PaymentServiceContract(abc.ABC):
    """Every promise of :class:`~retouraanvraag.ports.PaymentService`."""

    @abc.abstractmethod
    def make_payments(self) -> PaymentService:
        """A fresh payment adapter (a sandbox account, or a fake)."""

    @abc.abstractmethod
    def pay(self, payments: PaymentService, amount: Money) -> str:
        """Make a payment of ``amount`` that can be refunded; return its reference."""

    @abc.abstractmethod
    def refunded(self, payments: PaymentService, reference: str) -> Money:
        """What the provider says has been refunded on payment ``reference`` in total."""

    @pytest.fixture
    def payments(self) -> PaymentService:
        """The adapter under test."""
        return self.make_payments()

    def test_a_refund_moves_the_money_and_returns_a_reference(
        self, payments: PaymentService
    ) -> None:
        """The refund is made and can be found by its reference."""
        paid = self.pay(payments, Money(495))
        reference = payments.refund("refund:1", paid, Money(495))
        assert isinstance(reference, str)
        assert reference
        assert self.refunded(payments, paid) == Money(495)

    def test_the_same_key_moves_money_once(self, payments: PaymentService) -> None:
        """A retry under one key returns the first refund's reference and moves nothing."""
        paid = self.pay(payments, Money(1000))
        first = payments.refund("refund:1", paid, Money(400))
        assert payments.refund("refund:1", paid, Money(400)) == first
        assert self.refunded(payments, paid) == Money(400)

    def test_racing_retries_of_one_key_move_money_once(self, payments: PaymentService) -> None:
        """Concurrent calls with one key: one refund, one reference."""
        paid = self.pay(payments, Money(1000))
        results = _race(lambda: payments.refund("refund:1", paid, Money(400)))
        assert all(isinstance(r, str) for r in results), results
        assert len(set(results)) == 1
        assert self.refunded(payments, paid) == Money(400)

    def test_refunds_never_exceed_the_payment(self, payments: PaymentService) -> None:
        """More than what is left of the payment is refused for good."""
        paid = self.pay(payments, Money(500))
        payments.refund("refund:1", paid, Money(300))
        with pytest.raises(PortRejected):
            payments.refund("refund:2", paid, Money(201))
        payments.refund("refund:3", paid, Money(200))
        assert self.refunded(payments, paid) == Money(500)

    def test_racing_refunds_under_other_keys_never_exceed_the_payment(
        self, payments: PaymentService
    ) -> None:
        """Concurrent refunds of the whole amount under different keys: one goes through."""
        paid = self.pay(payments, Money(500))
        counter = iter(range(_THREADS))
        lock = threading.Lock()

        def refund() -> str:
            with lock:
                n = next(counter)
            return payments.refund(f"refund:{n}", paid, Money(500))

        results = _race(refund)
        assert sum(isinstance(r, str) for r in results) == 1
        assert all(isinstance(r, str | PortRejected) for r in results), results
        assert self.refunded(payments, paid) == Money(500)

    def test_an_unknown_payment_is_refused(self, payments: PaymentService) -> None:
        """Refunding a payment the provider does not know is a permanent failure."""
        with pytest.raises(PortRejected):
            payments.refund("refund:1", "pay_does_not_exist", Money(100))
