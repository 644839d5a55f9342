"""Fault injection: wrap any port so that chosen calls fail before or after the provider acted.

A failure *before* the provider acted is a refused connection: nothing happened. A failure
*after* it acted is the dangerous one: the label was made or the money moved, but the answer was
lost. A correct caller survives both by retrying with the same key::

    labels = inject_faults(FakeLabels(), fail_nth(1, Fault.AFTER))
    labels.create_label("label:r1", request)   # the label is made, then PortUnavailable
    labels.create_label("label:r1", request)   # the same label comes back; still one label
"""

from __future__ import annotations

import enum
import random
import threading
from collections.abc import Callable
from typing import Any, TypeVar, cast

from retouraanvraag.errors import PortError, PortUnavailable

__all__ = ["Fault", "FaultPlan", "FaultyPort", "fail_nth", "fail_randomly", "inject_faults"]

T = TypeVar("T")


class Fault(enum.Enum):
    """When an injected failure strikes, relative to the real call."""

    BEFORE = "before"
    AFTER = "after"


#: Given the call's 1-based number and the method's name, say whether (and when) it fails.
FaultPlan = Callable[[int, str], Fault | None]


def fail_nth(n: int, when: Fault, *, method: str | None = None) -> FaultPlan:
    """Fail the ``n``-th call of ``method`` (or the ``n``-th call of any method), once."""
    seen = 0
    lock = threading.Lock()

    def plan(call: int, name: str) -> Fault | None:
        nonlocal seen
        if method is None:
            return when if call == n else None
        if name != method:
            return None
        with lock:
            seen += 1
            return when if seen == n else None

    return plan


def fail_randomly(rng: random.Random, *, before: float = 0.1, after: float = 0.1) -> FaultPlan:
    """Fail each call before acting with probability ``before``, after with ``after``."""

    def plan(_call: int, _name: str) -> Fault | None:
        roll = rng.random()
        if roll < before:
            return Fault.BEFORE
        if roll < before + after:
            return Fault.AFTER
        return None

    return plan


class FaultyPort:
    """A proxy that forwards every public method call to ``inner`` and injects failures.

    Attributes:
        calls: how many calls went through the proxy.
        injected: the ``(call number, method, fault)`` of every injected failure.
    """

    def __init__(
        self,
        inner: object,
        plan: FaultPlan,
        *,
        error: Callable[[str], PortError] = PortUnavailable,
    ) -> None:
        """Wrap ``inner``; ``error`` builds the exception raised (transient by default)."""
        self._inner = inner
        self._plan = plan
        self._error = error
        self._lock = threading.Lock()
        self.calls = 0
        self.injected: list[tuple[int, str, Fault]] = []

    def __getattr__(self, name: str) -> Any:  # noqa: ANN401 - a transparent proxy
        """Wrap public methods of the inner port; pass other attributes through."""
        target = getattr(self._inner, name)
        if name.startswith("_") or not callable(target):
            return target

        def call(*args: Any, **kwargs: Any) -> Any:  # noqa: ANN401
            with self._lock:
                self.calls += 1
                number = self.calls
                fault = self._plan(number, name)
                if fault is not None:
                    self.injected.append((number, name, fault))
            if fault is Fault.BEFORE:
                raise self._error(f"injected failure before call {number} ({name})")
            result = target(*args, **kwargs)
            if fault is Fault.AFTER:
                raise self._error(f"injected failure after call {number} ({name})")
            return result

        return call


def inject_faults(
    port: T, plan: FaultPlan, *, error: Callable[[str], PortError] = PortUnavailable
) -> T:
    """Wrap ``port`` in a :class:`FaultyPort`, typed as the port itself."""
    return cast("T", FaultyPort(port, plan, error=error))
