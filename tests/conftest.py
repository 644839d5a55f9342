"""Shared fixtures: a whole desk wired to in-memory fakes, over each storage adapter."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import settings

from retouraanvraag.adapters.sqlite import SqliteStorage
from retouraanvraag.dispatcher import Dispatcher
from retouraanvraag.mail import MailRenderer
from retouraanvraag.model import Customer, Money, PaidFee
from retouraanvraag.ports import Storage
from retouraanvraag.testing import (
    FakeLabels,
    FakePayments,
    FixedClock,
    MailRecorder,
    MemoryPhotoStore,
    MemoryStorage,
)
from retouraanvraag.workflow import Desk, NewItem, NewRequest, Policy

from . import _postgres

# A busy CI machine must not turn a slow example into a failure: speed is measured by
# `make bench`, never by the tests.
settings.register_profile("retouraanvraag", deadline=None)
settings.load_profile("retouraanvraag")

NOW = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)
SHOP = "shop-1"


def make_storage(kind: str, tmp_path: Path) -> Storage:
    if kind == "memory":
        return MemoryStorage()
    if kind == "postgres":
        return _postgres.storage()  # a schema of its own on the session's server
    return SqliteStorage(tmp_path / "returns.sqlite3")


@pytest.fixture(scope="session")
def postgres_server() -> _postgres.Server:
    """The session's throwaway PostgreSQL cluster (skips, or fails with CI=true, without one)."""
    return _postgres.server()


def pytest_sessionfinish() -> None:
    _postgres.stop()


@pytest.fixture(autouse=True)
def _postgres_for_the_docs(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """A docs example that reads ``RETOURAANVRAAG_POSTGRES_URL`` gets a fresh schema's URL."""
    callspec = getattr(request.node, "callspec", None)
    chain = callspec.params.get("chain") if callspec is not None else None
    if chain and any(_postgres.URL_VARIABLE in block.code for block in chain):
        monkeypatch.setenv(_postgres.URL_VARIABLE, _postgres.server().fresh_url())


@attrs.define
class World:
    storage: Storage
    clock: FixedClock
    labels: FakeLabels
    payments: FakePayments
    mail: MailRecorder
    photos: MemoryPhotoStore
    desk: Desk
    dispatcher: Dispatcher
    policy: Policy
    serial: int = 0

    def new_request(self, **changes: object) -> NewRequest:
        """A Dutch customer's request with one shirt and a paid €4,95 fee."""
        self.serial += 1
        fee = changes.pop("return_fee", PaidFee(Money(495), f"pay_{self.serial}"))
        if isinstance(fee, PaidFee):
            self.payments.charge(fee.payment_reference, fee.amount)
        delivered = changes.get("delivered_at")
        if isinstance(delivered, dt.datetime) and "ordered_at" not in changes:
            # An earlier delivery than the default order date brings the order along with it:
            # the desk refuses a delivery before its order.
            changes["ordered_at"] = min(NOW - dt.timedelta(days=10), delivered)
        base = NewRequest(
            shop_id=SHOP,
            order_number="1001",
            customer=Customer("jan@example.nl", "Jan Jansen", "nl"),
            from_country="Nederland",
            order_value=Money(5995),
            items=(NewItem("TS-1", "T-shirt", 1, Money(1995), "Te klein"),),
            ordered_at=NOW - dt.timedelta(days=10),
            delivered_at=NOW - dt.timedelta(days=5),
            return_fee=fee,  # type: ignore[arg-type]
        )
        return attrs.evolve(base, **changes)  # type: ignore[arg-type]

    def make_dispatcher(self, **changes: Any) -> Dispatcher:
        """A dispatcher over this world's ports; ``changes`` replace any of them."""
        options: dict[str, Any] = {
            "labels": self.labels,
            "payments": self.payments,
            "mail": self.mail,
            "renderer": self.dispatcher._renderer,
            "clock": self.clock,
        }
        options.update(changes)
        storage = options.pop("storage", self.storage)
        return Dispatcher(storage, **options)

    def use_policy(self, policy: Policy) -> None:
        self.policy = policy
        self.desk = Desk(self.storage, photos=self.photos, policy=policy, clock=self.clock)


def build_world(storage: Storage, policy: Policy | None = None) -> World:
    clock = FixedClock(NOW)
    labels, payments, mail, photos = (
        FakeLabels(),
        FakePayments(),
        MailRecorder(),
        MemoryPhotoStore(),
    )
    policy = policy or Policy()
    desk = Desk(storage, photos=photos, policy=policy, clock=clock)
    dispatcher = Dispatcher(
        storage,
        labels=labels,
        payments=payments,
        mail=mail,
        renderer=MailRenderer(sender="retouren@shop.example", shop_name="Voorbeeldshop"),
        clock=clock,
        seed=1,
    )
    return World(storage, clock, labels, payments, mail, photos, desk, dispatcher, policy)


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    storage = make_storage(request.param, tmp_path)
    yield build_world(storage)
    close = getattr(storage, "close", None)
    if close is not None:
        close()
