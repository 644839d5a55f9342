"""The contract every :class:`~retouraanvraag.ports.EventSink` must keep, as a test suite.

Subclass :class:`EventSinkContract` in a test module, name the subclass ``Test…``, and
implement :meth:`~EventSinkContract.make_sink` and :meth:`~EventSinkContract.received` (every
event that reached the host's side, repeats included)::

    class TestMySink(EventSinkContract):
        exactly_once = False  # over HTTP: a retry after a lost answer arrives again

        def make_sink(self) -> EventSink:
            return MySink(...)

        def received(self, sink: EventSink) -> Sequence[Event]:
            return [...]

With ``exactly_once = True`` (a sink that deduplicates by key itself) a retry must arrive once;
otherwise it may arrive again, but always as the same event under the same key.
"""

from __future__ import annotations

import abc
import datetime as dt
from collections import Counter
from collections.abc import Sequence
from typing import ClassVar

import attrs

from retouraanvraag.model import (
    Actor,
    Customer,
    Event,
    EventType,
    Money,
    PaidFee,
    ReturnItem,
    ReturnRequest,
    events_since,
)
from retouraanvraag.ports import EventSink
from retouraanvraag.testing._threads import errors_of, run_at_once

__all__ = ["EventSinkContract", "sample_event"]

_THREADS = 8


def _sample_request(request_id: str) -> ReturnRequest:
    created = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)
    return ReturnRequest(
        shop_id="contract-shop",
        id=request_id,
        order_number="1001",
        customer=Customer("klant@example.com", "Anaïs de Klant", "nl"),
        from_country="NL",
        order_value=Money(5995),
        items=(ReturnItem("TS-1", "T-shirt", 2, Money(1995), "too_small"),),
        created_at=created,
        return_fee=PaidFee(Money(495), "pay_contract"),
    )


def sample_event(request_id: str = "contract-1", **changes: object) -> Event:
    """An ``approved`` event of a request with a paid fee, as the library makes it.

    Any field can be overridden (``sample_event(type=EventType.REFUNDED)``).
    """
    draft = _sample_request(request_id)
    submitted = attrs.evolve(draft.submitted().request, version=1)
    approved = submitted.approve(
        with_label=True,
        refund_return_fee=True,
        actor=Actor.staff("anna"),
        at=draft.created_at + dt.timedelta(hours=1),
    ).request
    (event,) = events_since(submitted, approved)
    return attrs.evolve(event, **changes)  # type: ignore[arg-type]


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(message)


class EventSinkContract(abc.ABC):
    """Checks of the :class:`~retouraanvraag.ports.EventSink` contract; subclass to run them."""

    exactly_once: ClassVar[bool] = False

    @abc.abstractmethod
    def make_sink(self) -> EventSink:
        """A sink for one test, delivering somewhere :meth:`received` can read."""

    @abc.abstractmethod
    def received(self, sink: EventSink) -> Sequence[Event]:
        """Every event that reached the host through ``sink`` in this test, repeats included."""

    def test_a_delivered_event_arrives_whole(self) -> None:
        """What arrives is the event as the library made it, field for field."""
        sink = self.make_sink()
        event = sample_event()
        sink.deliver(event)
        arrived = list(self.received(sink))
        _check(arrived == [event], f"arrived: {[e.key for e in arrived]}")

    def test_every_type_arrives(self) -> None:
        """Each event type is delivered (none is refused by the sink itself)."""
        sink = self.make_sink()
        for n, kind in enumerate(EventType, start=1):
            sink.deliver(sample_event(f"contract-{n}", type=kind, key=f"event:contract:{n}"))
        types = Counter(e.type for e in self.received(sink))
        _check(set(types) == set(EventType), f"types that arrived: {sorted(types)}")

    def test_a_retry_arrives_as_the_same_event(self) -> None:
        """A second delivery of one key is the same event; exactly-once sinks keep one."""
        sink = self.make_sink()
        event = sample_event()
        sink.deliver(event)
        sink.deliver(event)
        arrived = list(self.received(sink))
        _check(all(e == event for e in arrived), "a retry arrived with other content")
        if self.exactly_once:
            _check(len(arrived) == 1, f"{len(arrived)} deliveries of one key")
        else:
            _check(1 <= len(arrived) <= 2, f"{len(arrived)} deliveries of one key")  # noqa: PLR2004

    def test_racing_deliveries_all_arrive(self) -> None:
        """Events delivered from several threads at once each arrive."""
        sink = self.make_sink()
        events = [sample_event(f"contract-{n}") for n in range(_THREADS)]
        failures = errors_of(run_at_once(_THREADS, lambda n: sink.deliver(events[n])))
        _check(not failures, f"deliveries failed: {failures}")
        keys = {e.key for e in self.received(sink)}
        _check(keys == {e.key for e in events}, f"{len(keys)} of {_THREADS} keys arrived")

    def test_racing_retries_of_one_key_arrive_as_one_event(self) -> None:
        """Retries of one key from several threads: the same event; once if exactly once."""
        sink = self.make_sink()
        event = sample_event()
        failures = errors_of(run_at_once(_THREADS, lambda _n: sink.deliver(event)))
        _check(not failures, f"deliveries failed: {failures}")
        arrived = list(self.received(sink))
        _check(bool(arrived) and all(e == event for e in arrived), "not the same event")
        if self.exactly_once:
            _check(len(arrived) == 1, f"{len(arrived)} deliveries of one key")
