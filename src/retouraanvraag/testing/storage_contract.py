"""The contract every :class:`~retouraanvraag.ports.Storage` must keep, as a test suite.

Subclass :class:`StorageContract` in a test module, name the subclass ``Test…`` and implement
:meth:`~StorageContract.make_storage`; pytest runs every check against your adapter::

    class TestMyStorage(StorageContract):
        def make_storage(self) -> Storage:
            return MyStorage(...)

Each test gets a fresh, empty store from ``make_storage`` and hands it to
:meth:`~StorageContract.close_storage` afterwards (which calls ``close()`` when the store has
one). The checks follow the docstrings of :class:`~retouraanvraag.ports.Storage` one by one:
round trip, compare-and-set, shop isolation, idempotency records, the outbox and its leases,
the money cap, listings and their cursors, atomicity, races between threads, and damaged rows.
The damaged-row checks run when the subclass implements :meth:`~StorageContract.damage_request`,
:meth:`~StorageContract.damage_outbox_entry` and :meth:`~StorageContract.damage_idempotency_record`
(raw SQL on the file, say); otherwise they are skipped. The module needs pytest and hypothesis
(both development dependencies).
"""

# The checks are pytest tests: bare asserts and literal values are the point.
# ruff: noqa: S101, PLR2004

from __future__ import annotations

import abc
import datetime as dt
import itertools
import logging
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any, ClassVar, Final

import attrs
import pytest

from retouraanvraag.errors import (
    ConcurrentModification,
    InvalidInput,
    LeaseLost,
    NotFound,
    PortRejected,
)
from retouraanvraag.model import (
    Actor,
    Customer,
    Effect,
    MailKind,
    Money,
    PaidFee,
    RefundRecord,
    ReturnItem,
    ReturnRequest,
    Status,
)
from retouraanvraag.ports import (
    Commit,
    EffectState,
    IdempotencyRecord,
    OutboxEntry,
    Query,
    Settlement,
    Storage,
    Tab,
)
from retouraanvraag.testing._threads import errors_of, run_at_once

__all__ = ["SHOP", "T0", "StorageContract", "return_requests", "sample_request"]

#: The shop most checks use; ``OTHER_SHOP`` is the one that must not see its requests.
SHOP: Final = "shop-a"
OTHER_SHOP: Final = "shop-b"
#: The instant the checks start at.
T0: Final = dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC)
_LEASE: Final = dt.timedelta(seconds=30)


def sample_request(
    request_id: str | None = None,
    *,
    shop_id: str = SHOP,
    created_at: dt.datetime = T0,
    fee: int | None = 495,
) -> ReturnRequest:
    """A small valid request, not yet submitted (version 0, no history)."""
    return ReturnRequest(
        shop_id=shop_id,
        id=request_id or uuid.uuid4().hex,
        order_number="1001",
        customer=Customer("klant@example.nl", "K. Lant"),
        from_country="NL",
        order_value=Money(5995),
        items=(ReturnItem("TS-1", "T-shirt", 1, Money(1995), "too_small"),),  # type: ignore[arg-type, unused-ignore]
        created_at=created_at,
        return_fee=None if fee is None else PaidFee(Money(fee), "pay_1"),
    )


def return_requests() -> Any:  # noqa: ANN401 - a hypothesis strategy, typed by hypothesis
    """A hypothesis strategy of valid requests in any state, with every optional part.

    The same as :func:`retouraanvraag.testing.strategies.return_requests`; here so that this
    module asks for hypothesis only when a test draws requests.
    """
    from retouraanvraag.testing.strategies import (  # noqa: PLC0415 - hypothesis when asked
        return_requests as any_state,
    )

    return any_state()


class StorageSuite(abc.ABC):
    """What every part of the storage contract shares: the store under test and helpers.

    The contract is split by concern — :class:`RequestsContract`, :class:`IdempotencyContract`,
    :class:`OutboxContract`, :class:`ListingsContract`, :class:`DamageContract` — so that a
    store can be checked one concern at a time; :class:`StorageContract` is all of them.
    Subclass a part (or the whole), implement :meth:`make_storage`, and pytest runs it.

    Attributes:
        hypothesis_examples: examples per property (lower it for slow, remote stores).
        threads: how many threads the race checks run at once.
    """

    hypothesis_examples: ClassVar[int] = 40
    threads: ClassVar[int] = 8

    @abc.abstractmethod
    def make_storage(self) -> Storage:
        """A new, empty store (called once per test)."""

    def close_storage(self, storage: Storage) -> None:
        """Release what :meth:`make_storage` opened; calls ``close()`` when there is one."""
        close: Callable[[], object] | None = getattr(storage, "close", None)
        if close is not None:
            close()

    @pytest.fixture
    def storage(self) -> Iterator[Storage]:
        """The store under test, fresh for each test."""
        storage = self.make_storage()
        try:
            yield storage
        finally:
            self.close_storage(storage)

    # -- helpers ----------------------------------------------------------------------------

    @staticmethod
    def submit(storage: Storage, request: ReturnRequest) -> ReturnRequest:
        """Save ``request`` as submitted, with its confirmation mail queued."""
        change = request.submitted()
        return storage.commit(Commit(change.request, None, change.effects))

    @staticmethod
    def listed(
        storage: Storage,
        query: Query,
        *,
        shop_id: str = SHOP,
        between: Callable[[], None] | None = None,
    ) -> list[ReturnRequest]:
        """Every request the listing shows, page by page (``between`` runs between pages)."""
        seen: list[ReturnRequest] = []
        cursor = None
        for _ in range(10_000):
            page = storage.query(shop_id, attrs.evolve(query, cursor=cursor))
            assert len(page.items) <= query.limit
            seen.extend(page.items)
            if page.next_cursor is None:
                return seen
            cursor = page.next_cursor
            if between is not None:
                between()
        pytest.fail("the listing never ended")  # pragma: no cover

    def _queue(self, storage: Storage, count: int, *, shop_id: str = SHOP) -> list[str]:
        """Save ``count`` requests, created a minute apart; return their mail keys in order."""
        keys = []
        for n in range(count):
            saved = self.submit(
                storage, sample_request(shop_id=shop_id, created_at=T0 + dt.timedelta(minutes=n))
            )
            keys.append(storage.outbox(shop_id, saved.id)[0].key)
        return keys

    def _claimed(self, storage: Storage, owner: str = "w1") -> tuple[ReturnRequest, OutboxEntry]:
        self._queue(storage, 1)
        (entry,) = storage.claim(owner=owner, now=T0, lease=_LEASE, limit=1)
        return storage.get(entry.shop_id, entry.effect.request_id), entry

    @staticmethod
    def _run_threads(count: int, target: Callable[[int], None]) -> list[BaseException]:
        return errors_of(run_at_once(count, target))


class RequestsContract(StorageSuite):
    """Requests: saving, versions, shops, the money cap, atomicity and racing saves."""

    # -- round trip and versions ------------------------------------------------------------

    def test_adapter_satisfies_the_storage_protocol(self, storage: Storage) -> None:
        """The adapter has every method of the port."""
        assert isinstance(storage, Storage)

    def test_saved_request_loads_equal_to_what_was_saved(self, storage: Storage) -> None:
        """Any valid request, saved and loaded, equals what was saved (version 1)."""
        from hypothesis import given, settings  # noqa: PLC0415

        @settings(max_examples=self.hypothesis_examples, deadline=None, database=None)
        @given(return_requests())
        def round_trip(request: ReturnRequest) -> None:
            # A shop of its own per example: shrinking replays the same ids.
            request = attrs.evolve(request, shop_id=f"{request.shop_id[:40]}-{uuid.uuid4().hex}")
            saved = storage.commit(Commit(request, None))
            assert saved == attrs.evolve(request, version=1)
            assert storage.get(request.shop_id, request.id) == saved

        round_trip()

    def test_new_request_is_saved_with_version_1_whatever_it_carries(
        self, storage: Storage
    ) -> None:
        """A new request gets version 1; the version it carries is ignored."""
        request = attrs.evolve(sample_request().submitted().request, version=42)
        saved = storage.commit(Commit(request, None))
        assert saved.version == 1
        assert request.version == 42
        assert storage.get(SHOP, request.id).version == 1

    def test_update_saves_the_next_version(self, storage: Storage) -> None:
        """An update saves ``expected_version + 1``."""
        saved = self.submit(storage, sample_request())
        change = saved.reject(reason="Buiten de termijn", actor=Actor.staff("staff-1"), at=T0)
        updated = storage.commit(Commit(change.request, saved.version, change.effects))
        assert updated.version == 2
        assert updated.status is Status.REJECTED
        assert storage.get(SHOP, saved.id) == updated

    def test_get_of_an_unknown_id_raises_not_found(self, storage: Storage) -> None:
        """Loading an id that was never saved raises NotFound naming shop and id."""
        with pytest.raises(NotFound) as caught:
            storage.get(SHOP, "nope")
        assert (caught.value.shop_id, caught.value.request_id) == (SHOP, "nope")

    def test_update_of_an_unknown_request_raises_not_found(self, storage: Storage) -> None:
        """An update of a request that does not exist raises NotFound and saves nothing."""
        request = sample_request().submitted().request
        with pytest.raises(NotFound):
            storage.commit(Commit(request, 1))
        with pytest.raises(NotFound):
            storage.get(SHOP, request.id)

    def test_stale_expected_version_raises_concurrent_modification(self, storage: Storage) -> None:
        """Compare-and-set: a stale expected version is refused with both versions."""
        saved = self.submit(storage, sample_request())
        storage.commit(Commit(saved, saved.version))
        with pytest.raises(ConcurrentModification) as caught:
            storage.commit(Commit(attrs.evolve(saved, carrier="PostNL"), saved.version))
        assert (caught.value.request_id, caught.value.expected, caught.value.actual) == (
            saved.id,
            1,
            2,
        )
        assert storage.get(SHOP, saved.id).carrier is None

    def test_new_request_with_an_existing_id_raises_concurrent_modification(
        self, storage: Storage
    ) -> None:
        """Inserting an id that exists is a lost race, not an overwrite."""
        saved = self.submit(storage, sample_request("r-1"))
        with pytest.raises(ConcurrentModification):
            storage.commit(Commit(attrs.evolve(saved, carrier="DHL"), None))
        assert storage.get(SHOP, "r-1") == saved

    def test_loaded_requests_are_frozen_copies(self, storage: Storage) -> None:
        """What a caller gets back cannot change what is stored."""
        saved = self.submit(storage, sample_request())
        loaded = storage.get(SHOP, saved.id)
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            loaded.carrier = "x"  # type: ignore[misc]
        assert storage.get(SHOP, saved.id).carrier is None

    # -- shops ------------------------------------------------------------------------------

    def test_another_shops_request_is_not_found(self, storage: Storage) -> None:
        """Another shop's id behaves as not found, for reads and for updates."""
        saved = self.submit(storage, sample_request("r-1"))
        with pytest.raises(NotFound):
            storage.get(OTHER_SHOP, saved.id)
        with pytest.raises(NotFound):
            storage.commit(Commit(attrs.evolve(saved, shop_id=OTHER_SHOP), saved.version))
        assert storage.get(SHOP, "r-1") == saved

    def test_one_id_in_two_shops_is_two_requests(self, storage: Storage) -> None:
        """Ids are unique per shop: two shops may use one id independently."""
        mine = self.submit(storage, sample_request("r-1"))
        theirs = self.submit(storage, sample_request("r-1", shop_id=OTHER_SHOP, fee=None))
        assert storage.get(SHOP, "r-1") == mine
        assert storage.get(OTHER_SHOP, "r-1") == theirs
        assert mine != theirs
        assert [e.shop_id for e in storage.outbox(SHOP, "r-1")] == [SHOP]
        assert [e.shop_id for e in storage.outbox(OTHER_SHOP, "r-1")] == [OTHER_SHOP]

    def test_listings_show_only_the_shops_own_requests(self, storage: Storage) -> None:
        """A listing shows the shop's own requests only."""
        mine = {self.submit(storage, sample_request()).id for _ in range(3)}
        for _ in range(2):
            self.submit(storage, sample_request(shop_id=OTHER_SHOP))
        assert {r.id for r in self.listed(storage, Query())} == mine
        assert storage.query("shop-none", Query()).items == ()

    def test_outbox_is_scoped_to_the_shop(self, storage: Storage) -> None:
        """A request's outbox is not visible from another shop."""
        saved = self.submit(storage, sample_request())
        assert len(storage.outbox(SHOP, saved.id)) == 1
        assert storage.outbox(OTHER_SHOP, saved.id) == ()

    def test_idempotency_records_are_scoped_to_the_shop(self, storage: Storage) -> None:
        """Idempotency keys are unique per shop, not across shops."""
        a = sample_request().submitted().request
        b = sample_request(shop_id=OTHER_SHOP).submitted().request
        record_a = IdempotencyRecord(SHOP, "key-1", "fp-a", a.id, a)
        record_b = IdempotencyRecord(OTHER_SHOP, "key-1", "fp-b", b.id, b)
        saved_a = storage.commit(Commit(a, None, idempotency=record_a))
        saved_b = storage.commit(Commit(b, None, idempotency=record_b))
        assert storage.idempotency_record(SHOP, "key-1") == attrs.evolve(record_a, result=saved_a)
        assert storage.idempotency_record(OTHER_SHOP, "key-1") == attrs.evolve(
            record_b, result=saved_b
        )
        assert storage.idempotency_record("shop-none", "key-1") is None

    # -- the money cap ----------------------------------------------------------------------

    @staticmethod
    def _refunded(request: ReturnRequest, *amounts: int) -> ReturnRequest:
        # Built without ``with_refund``: the store must hold the cap on its own.
        refunds = tuple(
            RefundRecord(f"refund:{n}", Money(a), f"re_{n}", T0) for n, a in enumerate(amounts)
        )
        return attrs.evolve(request, refunds=request.refunds + refunds)

    def test_refunds_up_to_the_paid_fee_are_saved(self, storage: Storage) -> None:
        """Refunds adding up to exactly the paid fee are accepted."""
        saved = self.submit(storage, sample_request(fee=495))
        updated = storage.commit(Commit(self._refunded(saved, 200, 295), saved.version))
        assert storage.get(SHOP, saved.id).refunded == Money(495)
        assert updated.refund_due == Money(0)

    def test_refunds_above_the_paid_fee_are_rejected(self, storage: Storage) -> None:
        """The store itself refuses refunds above the paid fee."""
        saved = self.submit(storage, sample_request(fee=495))
        with pytest.raises(PortRejected):
            storage.commit(Commit(self._refunded(saved, 300, 196), saved.version))
        with pytest.raises(PortRejected):
            storage.commit(Commit(self._refunded(sample_request(fee=100), 101), None))
        assert storage.get(SHOP, saved.id) == saved

    def test_the_paid_fee_cannot_be_raised_after_submission(self, storage: Storage) -> None:
        """Raising the stored fee would lift the money cap: the store refuses it."""
        saved = self.submit(storage, sample_request(fee=495))
        assert saved.return_fee is not None
        raised = attrs.evolve(
            saved, return_fee=attrs.evolve(saved.return_fee, amount=Money(10_000))
        )
        with pytest.raises(PortRejected, match="fee"):
            storage.commit(Commit(raised, saved.version))
        assert storage.get(SHOP, saved.id) == saved

    def test_the_paid_fee_is_fixed_whole_after_submission(self, storage: Storage) -> None:
        """Not only the amount: a refund must go to the payment the customer paid by.

        A commit that changes only the payment reference, only the currency, or adds or drops
        a fee of nothing (the amount, which the money cap reads, stays 0) is refused, naming
        the request and nothing it holds, and the stored request is unchanged.
        """
        saved = self.submit(storage, sample_request(fee=495))
        fee = saved.return_fee
        assert fee is not None
        # A fee's currency is its order's: another currency is another order value too.
        dollars = attrs.evolve(
            saved,
            order_value=Money(saved.order_value.amount, "USD"),
            items=tuple(
                attrs.evolve(item, unit_price=Money(item.unit_price.amount, "USD"))
                for item in saved.items
            ),
            return_fee=attrs.evolve(fee, amount=Money(fee.amount.amount, "USD")),
        )
        changed = (
            attrs.evolve(saved, return_fee=attrs.evolve(fee, payment_reference="pay_other")),
            dollars,
            attrs.evolve(saved, return_fee=None),
        )
        for other in changed:
            with pytest.raises(PortRejected, match="fee") as refused:
                storage.commit(Commit(other, saved.version))
            assert saved.id in str(refused.value)
            assert "pay_" not in str(refused.value)
            assert storage.get(SHOP, saved.id) == saved
        free = self.submit(storage, sample_request(fee=0))
        unpaid = self.submit(storage, sample_request(fee=None))
        for before, after in ((free, None), (unpaid, PaidFee(Money(0), "pay_1"))):
            with pytest.raises(PortRejected, match="fee"):
                storage.commit(Commit(attrs.evolve(before, return_fee=after), before.version))
            assert storage.get(SHOP, before.id) == before
        # The same fee, rebuilt rather than carried over, is no change.
        same = attrs.evolve(saved, return_fee=PaidFee(Money(495), "pay_1"), carrier="DHL")
        assert storage.commit(Commit(same, saved.version)).return_fee == fee

    def test_a_refund_without_a_paid_fee_is_rejected(self, storage: Storage) -> None:
        """Without a paid fee there is nothing to refund."""
        saved = self.submit(storage, sample_request(fee=None))
        with pytest.raises(PortRejected):
            storage.commit(Commit(self._refunded(saved, 1), saved.version))
        assert storage.get(SHOP, saved.id).refunds == ()

    def test_racing_refunds_never_exceed_the_paid_fee(self, storage: Storage) -> None:
        """Threads refunding one request at once: one wins, the cap holds."""
        saved = self.submit(storage, sample_request(fee=495))
        barrier = threading.Barrier(self.threads)
        winners: list[int] = []

        def refund(n: int) -> None:
            current = storage.get(SHOP, saved.id)
            barrier.wait()
            try:
                storage.commit(Commit(self._refunded(current, 300), current.version))
            except (ConcurrentModification, PortRejected):
                return
            winners.append(n)

        assert self._run_threads(self.threads, refund) == []
        assert len(winners) == 1
        assert storage.get(SHOP, saved.id).refunded == Money(300)

    # -- atomicity --------------------------------------------------------------------------

    @pytest.mark.parametrize("failure", ["stale", "money", "key", "lease"])
    def test_a_failed_commit_changes_nothing(self, storage: Storage, failure: str) -> None:
        """A refused commit leaves request, outbox, idempotency and lease as they were."""
        taken = self.submit(storage, sample_request())
        record = IdempotencyRecord(SHOP, "taken", "fp", taken.id, taken)
        storage.commit(Commit(taken, taken.version, idempotency=record))
        request, entry = self._claimed(storage)
        before = (
            storage.get(SHOP, request.id),
            tuple(storage.outbox(SHOP, request.id)),
            storage.idempotency_record(SHOP, "fresh"),
        )
        changed = attrs.evolve(request.with_attention("x"), carrier="DHL")
        version, key, owner = request.version, "fresh", "w1"
        if failure == "stale":
            version = request.version + 1
        elif failure == "money":
            changed = self._refunded(changed, 10_000)
        elif failure == "key":
            key = "taken"
        else:
            owner = "w2"
        commit = Commit(
            changed,
            version,
            (Effect.create_label(SHOP, request.id), Effect.refund(SHOP, request.id)),
            IdempotencyRecord(SHOP, key, "fp-2", request.id, changed),
            Settlement(entry.key, owner, EffectState.DONE),
        )
        with pytest.raises((ConcurrentModification, PortRejected)):
            storage.commit(commit)
        after = (
            storage.get(SHOP, request.id),
            tuple(storage.outbox(SHOP, request.id)),
            storage.idempotency_record(SHOP, "fresh"),
        )
        assert after == before
        stored = storage.idempotency_record(SHOP, "taken")
        assert stored is not None
        assert stored.fingerprint == "fp"
        # The entry is still leased to w1, who can settle it as if nothing had happened.
        storage.commit(
            Commit(request, request.version, settle=Settlement(entry.key, "w1", EffectState.DONE))
        )

    # -- races ------------------------------------------------------------------------------

    def test_racing_saves_have_one_winner_per_version(self, storage: Storage) -> None:
        """Threads saving one version at once: exactly one wins each round."""
        saved = self.submit(storage, sample_request())
        for _ in range(3):
            current = storage.get(SHOP, saved.id)
            winner = self._race_for(storage, current)
            after = storage.get(SHOP, saved.id)
            assert after.version == current.version + 1
            assert after.tags == {f"winner-{winner}"}

    def _race_for(self, storage: Storage, current: ReturnRequest) -> int:
        barrier = threading.Barrier(self.threads)
        winners: list[int] = []

        def save(n: int) -> None:
            change = attrs.evolve(current, tags=frozenset({f"winner-{n}"}))  # type: ignore[arg-type, unused-ignore]
            barrier.wait()
            try:
                storage.commit(Commit(change, current.version))
            except ConcurrentModification:
                return
            winners.append(n)

        assert self._run_threads(self.threads, save) == []
        assert len(winners) == 1
        return winners[0]

    def test_racing_inserts_of_one_id_have_one_winner(self, storage: Storage) -> None:
        """Threads inserting one id at once: exactly one wins."""
        barrier = threading.Barrier(self.threads)
        winners: list[int] = []

        def insert(n: int) -> None:
            request = attrs.evolve(sample_request("r-1").submitted().request, carrier=f"c{n}")
            barrier.wait()
            try:
                storage.commit(Commit(request, None))
            except ConcurrentModification:
                return
            winners.append(n)

        assert self._run_threads(self.threads, insert) == []
        assert len(winners) == 1
        assert storage.get(SHOP, "r-1").carrier == f"c{winners[0]}"


class IdempotencyContract(StorageSuite):
    """Idempotency records: stored with their change, scoped to the shop, taken once."""

    # -- idempotency records ----------------------------------------------------------------

    def test_idempotency_record_is_stored_with_the_change(self, storage: Storage) -> None:
        """The record is stored in the same commit as the change, its result as saved.

        The caller's ``result`` does not matter: the store records the request it saved, at the
        version it gave it, so no caller has to predict the version.
        """
        change = sample_request().submitted()
        record = IdempotencyRecord(
            SHOP, "submit-1", "sha256:abc", change.request.id, change.request
        )
        saved = storage.commit(Commit(change.request, None, change.effects, idempotency=record))
        assert saved.version == 1
        assert storage.idempotency_record(SHOP, "submit-1") == attrs.evolve(record, result=saved)
        assert storage.get(SHOP, saved.id) == saved

    def test_unknown_idempotency_key_has_no_record(self, storage: Storage) -> None:
        """A key never used has no record."""
        assert storage.idempotency_record(SHOP, "never-used") is None

    def test_taken_idempotency_key_raises_concurrent_modification(self, storage: Storage) -> None:
        """A taken key refuses the whole commit and keeps the first record."""
        first = sample_request().submitted().request
        storage.commit(
            Commit(first, None, idempotency=IdempotencyRecord(SHOP, "k", "fp", first.id, first))
        )
        second = sample_request().submitted()
        record = IdempotencyRecord(SHOP, "k", "fp-2", second.request.id, second.request)
        with pytest.raises(ConcurrentModification):
            storage.commit(Commit(second.request, None, second.effects, idempotency=record))
        with pytest.raises(NotFound):
            storage.get(SHOP, second.request.id)
        assert storage.outbox(SHOP, second.request.id) == ()
        stored = storage.idempotency_record(SHOP, "k")
        assert stored is not None
        assert stored.fingerprint == "fp"


class OutboxContract(StorageSuite):
    """The outbox: queueing, claims and leases, settling and reviving entries."""

    # -- the outbox -------------------------------------------------------------------------

    def test_effects_are_queued_pending_in_order(self, storage: Storage) -> None:
        """Effects are queued pending, unleased, in the order given."""
        request = sample_request().submitted().request
        effects = (
            Effect.create_label(SHOP, request.id),
            Effect.refund(SHOP, request.id),
            Effect.send_mail(SHOP, request.id, MailKind.REQUEST_RECEIVED),
        )
        storage.commit(Commit(request, None, effects))
        entries = storage.outbox(SHOP, request.id)
        assert [e.effect for e in entries] == list(effects)
        assert all(
            (e.state, e.attempts, e.lease_owner, e.lease_until, e.shop_id)
            == (EffectState.PENDING, 0, None, None, SHOP)
            for e in entries
        )
        assert [e.key for e in entries] == [e.key for e in effects]

    def test_an_effect_already_queued_is_not_added_again(self, storage: Storage) -> None:
        """A queued key is never queued again, also once it is done."""
        saved = self.submit(storage, sample_request())
        mail = storage.outbox(SHOP, saved.id)[0].effect
        again = storage.commit(Commit(saved, saved.version, (mail, Effect.refund(SHOP, saved.id))))
        refund = Effect.refund(SHOP, saved.id).key
        assert [e.key for e in storage.outbox(SHOP, saved.id)] == [mail.key, refund]
        # Also once it is done: a key is queued once, whatever became of it.
        (entry,) = [
            e for e in storage.claim(owner="w", now=T0, lease=_LEASE, limit=10) if e.key == mail.key
        ]
        settle = Settlement(entry.key, "w", EffectState.DONE)
        settled = storage.commit(Commit(again, again.version, settle=settle))
        storage.commit(Commit(settled, settled.version, (mail,)))
        entries = storage.outbox(SHOP, saved.id)
        assert [(e.key, e.state) for e in entries] == [
            (mail.key, EffectState.DONE),
            (Effect.refund(SHOP, saved.id).key, EffectState.PENDING),
        ]

    def test_outbox_of_an_unknown_request_is_empty(self, storage: Storage) -> None:
        """An unknown request has an empty outbox."""
        assert list(storage.outbox(SHOP, "nope")) == []

    # -- claims and leases ------------------------------------------------------------------

    def test_claim_leases_due_entries_oldest_first(self, storage: Storage) -> None:
        """A claim leases due entries, oldest first, up to the limit."""
        keys = self._queue(storage, 5)
        claimed = storage.claim(owner="w1", now=T0, lease=_LEASE, limit=3)
        assert [e.key for e in claimed] == keys[:3]
        assert all(
            e.lease_owner == "w1"
            and e.lease_until == T0 + _LEASE
            and e.state is EffectState.PENDING
            for e in claimed
        )
        rest = storage.claim(owner="w2", now=T0, lease=_LEASE, limit=10)
        assert [e.key for e in rest] == keys[3:]
        assert storage.claim(owner="w3", now=T0, lease=_LEASE, limit=10) == ()

    def test_claim_is_recorded_in_the_outbox(self, storage: Storage) -> None:
        """The lease is stored: the outbox shows owner and expiry."""
        (key,) = self._queue(storage, 1)
        (entry,) = storage.claim(owner="w1", now=T0, lease=_LEASE, limit=1)
        (stored,) = storage.outbox(SHOP, entry.effect.request_id)
        assert (stored.key, stored.lease_owner, stored.lease_until, stored.attempts) == (
            key,
            "w1",
            T0 + _LEASE,
            0,
        )

    def test_claim_of_zero_entries_takes_nothing(self, storage: Storage) -> None:
        """A claim with limit 0 leases nothing."""
        self._queue(storage, 1)
        assert list(storage.claim(owner="w1", now=T0, lease=_LEASE, limit=0)) == []
        assert len(storage.claim(owner="w2", now=T0, lease=_LEASE, limit=5)) == 1

    def test_a_leased_entry_is_not_claimed_again_before_its_lease_runs_out(
        self, storage: Storage
    ) -> None:
        """A leased entry stays with its owner until the lease runs out."""
        self._queue(storage, 1)
        storage.claim(owner="w1", now=T0, lease=_LEASE, limit=1)
        just_before = T0 + _LEASE - dt.timedelta(microseconds=1)
        assert list(storage.claim(owner="w2", now=just_before, lease=_LEASE, limit=1)) == []

    def test_an_expired_lease_can_be_claimed_by_another_owner(self, storage: Storage) -> None:
        """An expired lease is claimable again (a worker died)."""
        (key,) = self._queue(storage, 1)
        storage.claim(owner="w1", now=T0, lease=_LEASE, limit=1)
        later = T0 + _LEASE
        (entry,) = storage.claim(owner="w2", now=later, lease=_LEASE, limit=1)
        assert (entry.key, entry.lease_owner, entry.lease_until) == (key, "w2", later + _LEASE)

    def test_claims_take_entries_of_every_shop(self, storage: Storage) -> None:
        """Workers serve every shop: claims are not scoped to one."""
        mine = self._queue(storage, 1)
        theirs = self._queue(storage, 1, shop_id=OTHER_SHOP)
        claimed = storage.claim(owner="w1", now=T0, lease=_LEASE, limit=10)
        assert sorted((e.shop_id, e.key) for e in claimed) == sorted(
            [(SHOP, mine[0]), (OTHER_SHOP, theirs[0])]
        )

    def test_an_entry_waiting_for_its_retry_is_not_claimed_early(self, storage: Storage) -> None:
        """An entry settled for a retry is due again at ``retry_at``, not before."""
        (key,) = self._queue(storage, 1)
        (entry,) = storage.claim(owner="w1", now=T0, lease=_LEASE, limit=1)
        request = storage.get(SHOP, entry.effect.request_id)
        retry_at = T0 + dt.timedelta(minutes=5)
        settle = Settlement(key, "w1", EffectState.PENDING, error="timeout", retry_at=retry_at)
        storage.commit(Commit(request, request.version, settle=settle))
        early = retry_at - dt.timedelta(microseconds=1)
        assert list(storage.claim(owner="w2", now=early, lease=_LEASE, limit=1)) == []
        (again,) = storage.claim(owner="w2", now=retry_at, lease=_LEASE, limit=1)
        assert (again.key, again.attempts, again.last_error) == (key, 1, "timeout")

    def test_racing_claims_never_share_an_entry(self, storage: Storage) -> None:
        """Threads claiming at once never get the same entry."""
        keys = self._queue(storage, 3 * self.threads)
        barrier = threading.Barrier(self.threads)
        taken: list[list[OutboxEntry]] = []

        def claim(n: int) -> None:
            barrier.wait()
            taken.append(list(storage.claim(owner=f"w{n}", now=T0, lease=_LEASE, limit=5)))

        assert self._run_threads(self.threads, claim) == []
        claimed = [e.key for batch in taken for e in batch]
        assert len(claimed) == len(set(claimed)) == len(keys)
        assert all(len({e.lease_owner for e in batch}) <= 1 for batch in taken)

    # -- settling ---------------------------------------------------------------------------

    def test_settling_done_releases_the_entry_for_good(self, storage: Storage) -> None:
        """A done entry loses its lease and is never claimed again."""
        request, entry = self._claimed(storage)
        settle = Settlement(entry.key, "w1", EffectState.DONE)
        storage.commit(Commit(request, request.version, settle=settle))
        (stored,) = storage.outbox(SHOP, request.id)
        assert (stored.state, stored.lease_owner, stored.lease_until, stored.attempts) == (
            EffectState.DONE,
            None,
            None,
            0,
        )
        later = T0 + 10 * _LEASE
        assert list(storage.claim(owner="w2", now=later, lease=_LEASE, limit=5)) == []

    def test_settling_for_a_retry_counts_an_attempt(self, storage: Storage) -> None:
        """A retry counts an attempt, keeps the error and waits until ``retry_at``."""
        request, entry = self._claimed(storage)
        retry_at = T0 + dt.timedelta(minutes=1)
        for attempt in (1, 2):
            settle = Settlement(
                entry.key, entry.lease_owner or "", EffectState.PENDING, f"try {attempt}", retry_at
            )
            request = storage.commit(Commit(request, request.version, settle=settle))
            (stored,) = storage.outbox(SHOP, request.id)
            assert (stored.state, stored.attempts, stored.available_at, stored.last_error) == (
                EffectState.PENDING,
                attempt,
                retry_at,
                f"try {attempt}",
            )
            assert (stored.lease_owner, stored.lease_until) == (None, None)
            (entry,) = storage.claim(owner=f"w{attempt}", now=retry_at, lease=_LEASE, limit=1)

    def test_settling_dead_keeps_the_error_and_is_never_claimed(self, storage: Storage) -> None:
        """A dead entry keeps its error and is never claimed again."""
        request, entry = self._claimed(storage)
        settle = Settlement(
            entry.key, "w1", EffectState.DEAD, error="PortRejected: no such payment"
        )
        storage.commit(
            Commit(request.with_attention("refund failed"), request.version, settle=settle)
        )
        (stored,) = storage.outbox(SHOP, request.id)
        assert (stored.state, stored.attempts, stored.last_error, stored.lease_owner) == (
            EffectState.DEAD,
            1,
            "PortRejected: no such payment",
            None,
        )
        assert storage.get(SHOP, request.id).needs_attention
        assert list(storage.claim(owner="w2", now=T0 + 10 * _LEASE, lease=_LEASE, limit=5)) == []

    def test_settling_by_a_worker_without_the_lease_is_refused(self, storage: Storage) -> None:
        """Only the lease owner may settle; a refused commit changes nothing."""
        request, entry = self._claimed(storage)
        settle = Settlement(entry.key, "intruder", EffectState.DONE)
        with pytest.raises(ConcurrentModification):
            storage.commit(Commit(request.with_attention("x"), request.version, settle=settle))
        assert storage.get(SHOP, request.id) == request
        assert storage.outbox(SHOP, request.id) == (entry,)

    def test_settling_after_the_lease_was_taken_over_is_refused(self, storage: Storage) -> None:
        """Once another worker took the expired lease, the first may not settle."""
        request, entry = self._claimed(storage)
        (taken,) = storage.claim(owner="w2", now=T0 + _LEASE, lease=_LEASE, limit=1)
        with pytest.raises(ConcurrentModification):
            storage.commit(
                Commit(
                    request, request.version, settle=Settlement(entry.key, "w1", EffectState.DONE)
                )
            )
        assert storage.outbox(SHOP, request.id) == (taken,)
        settle = Settlement(entry.key, "w2", EffectState.DONE)
        storage.commit(Commit(request, request.version, settle=settle))
        assert storage.outbox(SHOP, request.id)[0].state is EffectState.DONE

    def test_settling_an_unclaimed_or_settled_entry_is_refused(self, storage: Storage) -> None:
        """Unclaimed, unknown and already settled entries cannot be settled."""
        saved = self.submit(storage, sample_request())
        (entry,) = storage.outbox(SHOP, saved.id)
        for key in (entry.key, "mail:nope:request_received"):
            with pytest.raises(ConcurrentModification):
                storage.commit(
                    Commit(saved, saved.version, settle=Settlement(key, "w1", EffectState.DONE))
                )
        (claimed,) = storage.claim(owner="w1", now=T0, lease=_LEASE, limit=1)
        done = Settlement(claimed.key, "w1", EffectState.DONE)
        settled = storage.commit(Commit(saved, saved.version, settle=done))
        with pytest.raises(ConcurrentModification):
            storage.commit(Commit(settled, settled.version, settle=done))

    def test_settle_alone_leaves_the_request_untouched(self, storage: Storage) -> None:
        """``settle`` settles the entry without saving (or versioning) the request."""
        request, entry = self._claimed(storage)
        retry_at = T0 + dt.timedelta(minutes=1)
        storage.settle(SHOP, Settlement(entry.key, "w1", EffectState.PENDING, "busy", retry_at))
        (stored,) = storage.outbox(SHOP, request.id)
        assert (stored.state, stored.attempts, stored.available_at, stored.lease_owner) == (
            EffectState.PENDING,
            1,
            retry_at,
            None,
        )
        (again,) = storage.claim(owner="w2", now=retry_at, lease=_LEASE, limit=1)
        storage.settle(SHOP, Settlement(again.key, "w2", EffectState.DONE))
        assert storage.outbox(SHOP, request.id)[0].state is EffectState.DONE
        assert storage.get(SHOP, request.id) == request

    def test_settle_alone_needs_the_lease(self, storage: Storage) -> None:
        """``settle`` by a non-owner, of a settled entry or of another shop's entry is refused."""
        request, entry = self._claimed(storage)
        for shop, owner in ((SHOP, "intruder"), ("another-shop", "w1")):
            with pytest.raises(LeaseLost):
                storage.settle(shop, Settlement(entry.key, owner, EffectState.DONE))
        storage.settle(SHOP, Settlement(entry.key, "w1", EffectState.DONE))
        with pytest.raises(LeaseLost):
            storage.settle(SHOP, Settlement(entry.key, "w1", EffectState.DONE))
        assert storage.get(SHOP, request.id) == request

    def test_settling_another_requests_entry_is_refused(self, storage: Storage) -> None:
        """A commit settles only an entry of its own request."""
        request, entry = self._claimed(storage)
        other = self.submit(storage, sample_request())
        settle = Settlement(entry.key, "w1", EffectState.DONE)
        with pytest.raises(ConcurrentModification):
            storage.commit(Commit(other, other.version, settle=settle))
        assert storage.outbox(SHOP, request.id) == (entry,)

    # -- reviving dead entries --------------------------------------------------------------

    def _dead(
        self, storage: Storage, request: ReturnRequest, effect: Effect, *, error: str = "refused"
    ) -> ReturnRequest:
        """Queue ``effect`` for the saved ``request`` and let it die; the request as saved."""
        request = storage.commit(Commit(request, request.version, (effect,)))
        later = T0 + dt.timedelta(days=1)
        (entry,) = [
            e
            for e in storage.claim(owner="w-dead", now=later, lease=_LEASE, limit=100)
            if e.key == effect.key
        ]
        settle = Settlement(entry.key, "w-dead", EffectState.DEAD, error)
        return storage.commit(Commit(request, request.version, settle=settle))

    def test_a_revived_entry_is_pending_due_at_once_and_claimed(self, storage: Storage) -> None:
        """Reviving a dead entry makes it pending, due at once, attempts 0, error kept."""
        saved = self.submit(storage, sample_request())
        (mail,) = storage.claim(owner="w1", now=T0, lease=_LEASE, limit=1)
        storage.settle(SHOP, Settlement(mail.key, "w1", EffectState.DONE))
        label = Effect.create_label(SHOP, saved.id)
        saved = storage.commit(Commit(saved, saved.version, (label,)))
        # Two failures: a retry an hour on, then dead; the entry keeps that retry time.
        retry_at = T0 + dt.timedelta(hours=1)
        (entry,) = storage.claim(owner="w1", now=T0, lease=_LEASE, limit=1)
        retry = Settlement(label.key, "w1", EffectState.PENDING, "timeout", retry_at)
        saved = storage.commit(Commit(saved, saved.version, settle=retry))
        (entry,) = storage.claim(owner="w2", now=retry_at, lease=_LEASE, limit=1)
        assert (entry.key, entry.attempts) == (label.key, 1)
        dead = Settlement(label.key, "w2", EffectState.DEAD, "PortRejected: no such address")
        flagged = saved.with_attention("label failed")
        saved = storage.commit(Commit(flagged, saved.version, settle=dead))
        (stored,) = [e for e in storage.outbox(SHOP, saved.id) if e.key == label.key]
        assert (stored.state, stored.attempts, stored.available_at) == (
            EffectState.DEAD,
            2,
            retry_at,
        )

        revived = storage.commit(Commit(saved, saved.version, revive=(label.key,)))
        assert revived.version == saved.version + 1
        (stored,) = [e for e in storage.outbox(SHOP, saved.id) if e.key == label.key]
        assert (stored.state, stored.attempts, stored.available_at) == (
            EffectState.PENDING,
            0,
            None,
        )
        assert (stored.lease_owner, stored.lease_until) == (None, None)
        assert stored.last_error == "PortRejected: no such address"
        # Due at once: before the retry time it last had.
        (again,) = storage.claim(owner="w3", now=T0, lease=_LEASE, limit=1)
        assert (again.key, again.lease_owner, again.attempts) == (label.key, "w3", 0)
        storage.settle(SHOP, Settlement(label.key, "w3", EffectState.DONE))
        assert [e.state for e in storage.outbox(SHOP, saved.id) if e.key == label.key] == [
            EffectState.DONE
        ]

    def test_reviving_saves_the_request_and_its_other_changes_with_it(
        self, storage: Storage
    ) -> None:
        """Revived keys, new effects and the request's changes are one commit."""
        saved = self.submit(storage, sample_request())
        saved = self._dead(storage, saved, Effect.refund(SHOP, saved.id))
        saved = self._dead(storage, saved, Effect.create_label(SHOP, saved.id))
        keys = (Effect.refund(SHOP, saved.id).key, Effect.create_label(SHOP, saved.id).key)
        revived = storage.commit(
            Commit(
                attrs.evolve(saved, carrier="DHL"),
                saved.version,
                (Effect.void_label(SHOP, saved.id),),
                revive=keys,
            )
        )
        assert storage.get(SHOP, saved.id) == revived
        assert revived.carrier == "DHL"
        states = {e.key: e.state for e in storage.outbox(SHOP, saved.id)}
        assert [states[key] for key in keys] == [EffectState.PENDING, EffectState.PENDING]
        assert states[Effect.void_label(SHOP, saved.id).key] is EffectState.PENDING

    @pytest.mark.parametrize("which", ["pending", "done", "unknown", "other request", "other shop"])
    def test_reviving_a_key_that_is_not_a_dead_entry_of_the_request_is_refused_atomically(
        self, storage: Storage, which: str
    ) -> None:
        """A revive key that is not a dead entry of the request: InvalidInput, nothing changes."""
        saved = self.submit(storage, sample_request("r-1"))
        saved = self._dead(storage, saved, Effect.create_label(SHOP, "r-1"))
        mail = Effect.send_mail(SHOP, saved.id, MailKind.REQUEST_RECEIVED).key
        if which == "pending":
            key = mail
        elif which == "done":
            # ``_dead`` leased the mail too, a day on; its lease has run out two days on.
            (entry,) = storage.claim(
                owner="w1", now=T0 + dt.timedelta(days=2), lease=_LEASE, limit=1
            )
            storage.settle(SHOP, Settlement(entry.key, "w1", EffectState.DONE))
            key = mail
        elif which == "unknown":
            key = Effect.refund(SHOP, "r-1").key
        elif which == "other request":
            other = self.submit(storage, sample_request("r-2"))
            self._dead(storage, other, Effect.refund(SHOP, "r-2"))
            key = Effect.refund(SHOP, "r-2").key
        else:
            # The same request id in another shop, whose refund died: not this shop's entry.
            theirs = self.submit(storage, sample_request("r-1", shop_id=OTHER_SHOP))
            self._dead(storage, theirs, Effect.refund(OTHER_SHOP, "r-1"))
            key = Effect.refund(OTHER_SHOP, "r-1").key
        saved = storage.get(SHOP, "r-1")
        before = (
            saved,
            tuple(storage.outbox(SHOP, "r-1")),
            tuple(storage.outbox(OTHER_SHOP, "r-1")),
        )
        commit = Commit(
            attrs.evolve(saved, carrier="DHL"),
            saved.version,
            (Effect.void_label(SHOP, "r-1"),),
            IdempotencyRecord(SHOP, "revive-1", "fp", "r-1", saved),
            revive=(Effect.create_label(SHOP, saved.id).key, key),
        )
        with pytest.raises(InvalidInput, match=re.escape(repr(key))) as caught:
            storage.commit(commit)
        assert caught.value.field == "revive"
        after = (
            storage.get(SHOP, "r-1"),
            tuple(storage.outbox(SHOP, "r-1")),
            tuple(storage.outbox(OTHER_SHOP, "r-1")),
        )
        assert after == before
        assert storage.idempotency_record(SHOP, "revive-1") is None

    def test_reviving_with_a_stale_version_is_a_lost_race(self, storage: Storage) -> None:
        """The version is checked before the revived keys: a stale read loses the race."""
        saved = self.submit(storage, sample_request())
        saved = self._dead(storage, saved, Effect.refund(SHOP, saved.id))
        key = Effect.refund(SHOP, saved.id).key
        storage.commit(Commit(saved, saved.version, revive=(key,)))
        with pytest.raises(ConcurrentModification):
            storage.commit(Commit(saved, saved.version, revive=(key,)))
        (entry,) = [e for e in storage.outbox(SHOP, saved.id) if e.key == key]
        assert entry.state is EffectState.PENDING


class ListingsContract(StorageSuite):
    """Listings: order, keyset pages, tabs, ranges, attention and predicates."""

    # -- listings ---------------------------------------------------------------------------

    def test_listing_is_ordered_by_instant_of_creation_then_id(self, storage: Storage) -> None:
        """Listings order by the instant of creation (any offset), then id."""
        plus_two = dt.timezone(dt.timedelta(hours=2))
        # 10:30 at UTC+2 is 08:30 UTC: before T0 (09:00 UTC) although its clock reads later.
        early = T0.astimezone(plus_two) + dt.timedelta(hours=-0.5)
        made = [
            ("b", T0),
            ("a", T0),
            ("c", early),
            ("d", T0 + dt.timedelta(microseconds=1)),
            ("e", T0 - dt.timedelta(days=400)),
        ]
        for request_id, created_at in made:
            self.submit(storage, sample_request(request_id, created_at=created_at))
        assert [r.id for r in self.listed(storage, Query(limit=2))] == ["e", "c", "a", "b", "d"]

    def test_pages_together_list_every_match_once_in_order(self, storage: Storage) -> None:
        """Paging through any filter lists every match exactly once, in order."""
        from hypothesis import given, settings  # noqa: PLC0415
        from hypothesis import strategies as st  # noqa: PLC0415

        requests = st.lists(
            st.tuples(st.integers(0, 5), st.sampled_from(Status), st.booleans()),
            max_size=25,
        )
        statuses = st.none() | st.frozensets(st.sampled_from(Status))

        @settings(max_examples=self.hypothesis_examples, deadline=None, database=None)
        @given(requests, statuses, st.none() | st.booleans(), st.integers(1, 6), st.booleans())
        def paged(
            made: list[tuple[int, Status, bool]],
            wanted: frozenset[Status] | None,
            attention: bool | None,
            limit: int,
            odd_only: bool,
        ) -> None:
            shop = f"shop-{uuid.uuid4().hex}"
            stored = []
            for n, (minute, status, flagged) in enumerate(made):
                request = sample_request(
                    f"r{n:02d}", shop_id=shop, created_at=T0 + dt.timedelta(minutes=minute)
                )
                request = attrs.evolve(
                    request, status=status, attention=("refund failed",) if flagged else ()
                )
                stored.append(storage.commit(Commit(request, None)))

            def where(request: ReturnRequest) -> bool:
                return int(request.id[1:]) % 2 == 1

            query = Query(
                statuses=wanted,  # type: ignore[arg-type, unused-ignore]
                needs_attention=attention,
                where=where if odd_only else None,
                limit=limit,
            )
            expected = sorted(
                (
                    r
                    for r in stored
                    if (wanted is None or r.status in wanted)
                    and (attention is None or r.needs_attention is attention)
                    and (not odd_only or where(r))
                ),
                key=lambda r: (r.created_at, r.id),
            )
            assert self.listed(storage, query, shop_id=shop) == expected

        paged()

    def test_pages_see_requests_added_between_pages_and_repeat_none(self, storage: Storage) -> None:
        """Requests added while paging never make a page repeat or skip one."""
        first = [
            self.submit(
                storage, sample_request(f"r{n:02d}", created_at=T0 + dt.timedelta(minutes=n))
            )
            for n in range(10)
        ]
        added: list[ReturnRequest] = []
        counter = itertools.count(100)

        def add() -> None:
            n = next(counter)
            later = sample_request(f"r{n}", created_at=T0 + dt.timedelta(minutes=n))
            earlier = sample_request(f"e{n}", created_at=T0 - dt.timedelta(minutes=n))
            added.append(self.submit(storage, later))
            self.submit(storage, earlier)

        seen = self.listed(storage, Query(statuses=Tab.REQUESTS.statuses, limit=3), between=add)  # type: ignore[arg-type, unused-ignore]
        ids = [r.id for r in seen]
        assert len(ids) == len(set(ids))
        assert ids[: len(first)] == [r.id for r in first]
        assert set(ids) >= {r.id for r in first + added}
        assert seen == sorted(seen, key=lambda r: (r.created_at, r.id))

    def test_last_page_has_no_cursor(self, storage: Storage) -> None:
        """The last page has no cursor, also when it is full."""
        for n in range(4):
            self.submit(storage, sample_request(created_at=T0 + dt.timedelta(minutes=n)))
        first = storage.query(SHOP, Query(limit=2))
        assert first.next_cursor is not None
        second = storage.query(SHOP, Query(limit=2, cursor=first.next_cursor))
        assert (len(second.items), second.next_cursor) == (2, None)
        assert storage.query(SHOP, Query(limit=4)).next_cursor is None
        assert storage.query(SHOP, Query(statuses=frozenset())) == storage.query(
            "shop-none", Query()
        )

    def test_listing_filters_by_tab(self, storage: Storage) -> None:
        """A tab lists exactly the requests in its statuses."""
        by_status = {}
        for n, status in enumerate(Status):
            request = sample_request(created_at=T0 + dt.timedelta(minutes=n))
            by_status[status] = storage.commit(Commit(attrs.evolve(request, status=status), None))
        for tab in Tab:
            shown = self.listed(storage, Query(statuses=tab.statuses))  # type: ignore[arg-type, unused-ignore]
            assert {r.status for r in shown} == tab.statuses
            assert len(shown) == len(tab.statuses)

    def test_a_decision_moves_a_request_to_another_tab(self, storage: Storage) -> None:
        """A saved decision moves the request from one tab to the next."""
        saved = self.submit(storage, sample_request())
        change = saved.approve(
            with_label=True, refund_return_fee=False, actor=Actor.staff("s-1"), at=T0
        )
        storage.commit(Commit(change.request, saved.version, change.effects))
        assert self.listed(storage, Query(statuses=Tab.REQUESTS.statuses)) == []  # type: ignore[arg-type, unused-ignore]
        assert [r.id for r in self.listed(storage, Query(statuses=Tab.INCOMING.statuses))] == [  # type: ignore[arg-type, unused-ignore]
            saved.id
        ]

    def test_listing_filters_by_creation_range(self, storage: Storage) -> None:
        """``created_from`` is inclusive, ``created_before`` exclusive, any offset."""
        for n in range(6):
            self.submit(storage, sample_request(f"r{n}", created_at=T0 + dt.timedelta(days=n)))
        query = Query(
            created_from=T0 + dt.timedelta(days=1),
            created_before=(T0 + dt.timedelta(days=4)).astimezone(
                dt.timezone(dt.timedelta(hours=5))
            ),
            limit=2,
        )
        assert [r.id for r in self.listed(storage, query)] == ["r1", "r2", "r3"]

    def test_listing_filters_by_attention(self, storage: Storage) -> None:
        """``needs_attention`` selects requests with or without problems."""
        calm = self.submit(storage, sample_request("calm"))
        troubled = self.submit(storage, sample_request("troubled", created_at=T0 - _LEASE))
        storage.commit(Commit(troubled.with_attention("label failed"), troubled.version))
        assert [r.id for r in self.listed(storage, Query(needs_attention=True))] == ["troubled"]
        assert [r.id for r in self.listed(storage, Query(needs_attention=False))] == [calm.id]

    def test_listing_applies_the_where_predicate_after_the_filters(self, storage: Storage) -> None:
        """A ``where`` predicate filters, and pages still fill up."""
        for n in range(7):
            request = sample_request(f"r{n}", created_at=T0 + dt.timedelta(minutes=n))
            self.submit(
                storage,
                attrs.evolve(request, tags=frozenset({"vip"}) if n % 3 == 0 else frozenset()),  # type: ignore[arg-type, unused-ignore]
            )
        query = Query(where=lambda r: "vip" in r.tags, limit=1)
        assert [r.id for r in self.listed(storage, query)] == ["r0", "r3", "r6"]

    def test_a_cursor_of_the_right_shape_with_an_impossible_date_is_refused(
        self, storage: Storage
    ) -> None:
        """A tampered cursor is ``InvalidInput`` (a 400 for a web host), never a crash."""
        from retouraanvraag.adapters._common import encode_cursor  # noqa: PLC0415

        self.submit(storage, sample_request("r-1"))
        for moment in ("2026-13-45T99:99:99.000000Z", "2026-02-30T10:00:00.000000Z"):
            cursor = encode_cursor((moment, "r-1"))
            for query in (Query(cursor=cursor), Query(cursor=cursor, statuses={Status.REQUESTED})):
                with pytest.raises(InvalidInput) as caught:
                    storage.query(SHOP, query)
                assert caught.value.field == "cursor"

    def test_text_no_store_can_keep_names_nothing_and_is_refused_in_writes(
        self, storage: Storage
    ) -> None:
        """A lone surrogate or NUL in an id finds nothing; in a claim's owner it is refused."""
        self.submit(storage, sample_request("r-1"))
        for odd in ("r-\ud800", "r-\x00"):
            with pytest.raises(NotFound):
                storage.get(SHOP, odd)
            assert storage.idempotency_record(SHOP, odd) is None
            assert tuple(storage.outbox(SHOP, odd)) == ()
            assert storage.query(odd, Query()).items == ()
            assert storage.count(odd, Query()) == 0
            with pytest.raises(InvalidInput) as caught:
                storage.claim(owner=f"w{odd}", now=T0, lease=_LEASE, limit=1)
            assert caught.value.field == "owner"

    def test_a_claim_whose_lease_ends_past_the_last_moment_is_refused(
        self, storage: Storage
    ) -> None:
        """``now + lease`` past what a datetime holds is ``InvalidInput``, not an overflow."""
        late = dt.datetime.max.replace(tzinfo=dt.UTC) - dt.timedelta(days=1)
        with pytest.raises(InvalidInput) as caught:
            storage.claim(owner="w", now=late, lease=dt.timedelta(days=2), limit=1)
        assert caught.value.field == "lease"

    def test_count_is_what_every_page_lists_together(self, storage: Storage) -> None:
        """``count`` agrees with paging through each kind of filter, and is per shop."""
        for n in range(9):
            request = sample_request(f"r{n}", created_at=T0 + dt.timedelta(minutes=n))
            saved = self.submit(
                storage, attrs.evolve(request, from_country="BE" if n % 3 else "NL")
            )
            if n % 4 == 1:
                saved = storage.commit(
                    Commit(attrs.evolve(saved, status=Status.APPROVED), saved.version)
                )
            if n == 5:
                storage.commit(Commit(saved.with_attention("label: refused"), saved.version))
        self.submit(storage, sample_request("r0", shop_id=OTHER_SHOP))
        queries = [
            Query(),
            Query(statuses={Status.REQUESTED}),
            Query(statuses={Status.APPROVED, Status.REJECTED}),
            Query(statuses=frozenset()),
            Query(
                created_from=T0 + dt.timedelta(minutes=2),
                created_before=T0 + dt.timedelta(minutes=6),
            ),
            Query(needs_attention=True),
            Query(statuses={Status.REQUESTED}, needs_attention=False),
        ]
        for query in queries:
            assert storage.count(SHOP, query) == len(self.listed(storage, query)), query
        assert storage.count(OTHER_SHOP, Query()) == 1
        assert storage.count("no such shop", Query()) == 0
        assert storage.count(SHOP, Query(limit=1, cursor=None)) == 9  # the page size plays no part

    def test_count_of_a_rule_condition_agrees_with_the_listing(self, storage: Storage) -> None:
        """A built-in rule condition is counted as the listing filters it."""
        from retouraanvraag.rules import compile_condition  # noqa: PLC0415 - loads the grammar

        for n in range(6):
            request = sample_request(f"r{n}", created_at=T0 + dt.timedelta(minutes=n))
            self.submit(storage, attrs.evolve(request, from_country="BE" if n % 2 else "NL"))
        for text in ("Van land IS België", "Van land IS NIET België", "Bestelwaarde > €1000"):
            query = Query(condition=compile_condition(text))
            assert storage.count(SHOP, query) == len(self.listed(storage, query)), text

    def test_count_refuses_a_python_predicate(self, storage: Storage) -> None:
        """A ``where`` predicate runs in Python: no store counts by it (page instead)."""
        self.submit(storage, sample_request("r0"))
        with pytest.raises(InvalidInput) as caught:
            storage.count(SHOP, Query(where=lambda _request: True))
        assert caught.value.field == "where"

    @pytest.mark.parametrize(
        "cursor", ["", "not a cursor", "!!!", "eyJmb28iOiAxfQ", "W10", "WyJyMSIsIngiLCJ5Il0"]
    )
    def test_a_cursor_not_handed_out_raises_invalid_input(
        self, storage: Storage, cursor: str
    ) -> None:
        """A cursor the store did not hand out raises InvalidInput."""
        self.submit(storage, sample_request())
        with pytest.raises(InvalidInput):
            storage.query(SHOP, Query(cursor=cursor))


class DamageContract(StorageSuite):
    """Damaged rows: a row that does not read back never stops the rows beside it."""

    # -- damaged rows -----------------------------------------------------------------------
    #
    # A row that does not read back (bytes that are not UTF-8 on a bad disk, another program
    # writing the file) must never stop the rows beside it. A store that can be damaged from
    # outside implements the three ``damage_…`` hooks; the default skips these checks.

    def damage_request(self, storage: Storage, shop_id: str, request_id: str) -> None:
        """Damage the stored request so that it cannot be read back (as a bad disk would)."""
        pytest.skip(f"no way to damage request {request_id} of {shop_id} in {storage!r}")

    def damage_outbox_entry(self, storage: Storage, shop_id: str, key: str) -> None:
        """Damage the stored outbox entry ``key`` so that it cannot be read back."""
        pytest.skip(f"no way to damage outbox entry {key!r} of {shop_id} in {storage!r}")

    def damage_idempotency_record(self, storage: Storage, shop_id: str, key: str) -> None:
        """Damage the idempotency record ``key`` so that it cannot be read back."""
        pytest.skip(f"no way to damage idempotency record {key!r} of {shop_id} in {storage!r}")

    def _shop_with_a_damaged_neighbour(
        self, storage: Storage
    ) -> dict[tuple[str, str], ReturnRequest]:
        """Requests ``r-0`` … ``r-3`` of ``SHOP`` in three states, and ``r-1`` of the other shop.

        ``r-0`` and ``r-1`` are requested, ``r-2`` approved, ``r-3`` requested and needing
        attention. Returns every request as saved, by shop and id.
        """
        saved: dict[tuple[str, str], ReturnRequest] = {}
        for n in range(4):
            request = self.submit(
                storage, sample_request(f"r-{n}", created_at=T0 + dt.timedelta(minutes=n))
            )
            if n == 2:
                request = storage.commit(
                    Commit(attrs.evolve(request, status=Status.APPROVED), request.version)
                )
            elif n == 3:
                request = storage.commit(
                    Commit(request.with_attention("label: carrier refused"), request.version)
                )
            saved[(SHOP, request.id)] = request
        theirs = self.submit(storage, sample_request("r-1", shop_id=OTHER_SHOP))
        saved[(OTHER_SHOP, "r-1")] = theirs
        return saved

    @staticmethod
    def _logged_damage(caplog: pytest.LogCaptureFixture, *ids: str) -> list[str]:
        """The messages of error records that name every one of ``ids``."""
        return [
            record.getMessage()
            for record in caplog.records
            if record.levelno >= logging.ERROR and all(i in record.getMessage() for i in ids)
        ]

    def test_get_of_a_damaged_request_is_rejected_naming_shop_and_request(
        self, storage: Storage
    ) -> None:
        """A damaged row raises ``PortRejected`` (permanent) naming it; its neighbours read."""
        saved = self._shop_with_a_damaged_neighbour(storage)
        self.damage_request(storage, SHOP, "r-1")
        with pytest.raises(PortRejected) as caught:
            storage.get(SHOP, "r-1")
        assert SHOP in str(caught.value)
        assert "r-1" in str(caught.value)
        for (shop_id, request_id), request in saved.items():
            if (shop_id, request_id) != (SHOP, "r-1"):
                assert storage.get(shop_id, request_id) == request

    def test_listings_leave_a_damaged_request_out_and_log_it(
        self, storage: Storage, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Every listing still shows the healthy requests; the damaged one is logged by id."""
        self._shop_with_a_damaged_neighbour(storage)
        self.damage_request(storage, SHOP, "r-1")
        expected = {
            "everything": (Query(), ["r-0", "r-2", "r-3"]),
            "one per page": (Query(limit=1), ["r-0", "r-2", "r-3"]),
            "requests tab": (Query(statuses=Tab.REQUESTS.statuses), ["r-0", "r-3"]),  # type: ignore[arg-type, unused-ignore]
            "incoming tab": (Query(statuses=Tab.INCOMING.statuses), ["r-2"]),  # type: ignore[arg-type, unused-ignore]
            "needing attention": (Query(needs_attention=True), ["r-3"]),
            "not needing attention": (Query(needs_attention=False, limit=1), ["r-0", "r-2"]),
            "with a predicate": (Query(where=lambda _: True, limit=2), ["r-0", "r-2", "r-3"]),
        }
        for name, (query, ids) in expected.items():
            assert [r.id for r in self.listed(storage, query)] == ids, name
        assert self._logged_damage(caplog, SHOP, "r-1")
        assert [r.id for r in self.listed(storage, Query(), shop_id=OTHER_SHOP)] == ["r-1"]

    def test_claim_sets_a_damaged_entry_aside_and_claims_every_healthy_one(
        self, storage: Storage, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A damaged entry never blocks: it is marked dead, its request flagged, all else runs."""
        saved = self._shop_with_a_damaged_neighbour(storage)
        healthy = {
            (shop_id, entry.key)
            for shop_id, request_id in saved
            for entry in storage.outbox(shop_id, request_id)
        }
        (damaged,) = storage.outbox(SHOP, "r-1")
        healthy.remove((SHOP, damaged.key))
        self.damage_outbox_entry(storage, SHOP, damaged.key)
        claimed: set[tuple[str, str]] = set()
        for n in range(len(healthy) + 2):  # one at a time: the damaged one takes no turn
            entries = storage.claim(owner=f"w{n}", now=T0, lease=_LEASE, limit=1)
            claimed.update((e.shop_id, e.key) for e in entries)
        assert claimed == healthy
        assert self._logged_damage(caplog, SHOP, damaged.key)
        flagged = storage.get(SHOP, "r-1")
        assert flagged.needs_attention
        assert flagged.version == saved[(SHOP, "r-1")].version + 1
        assert any(damaged.key in problem for problem in flagged.attention)
        # Once every lease has run out, everything healthy is claimed again, and only that.
        later = storage.claim(owner="w-late", now=T0 + 2 * _LEASE, lease=_LEASE, limit=100)
        assert {(e.shop_id, e.key) for e in later} == healthy
        assert damaged.key not in [e.key for e in storage.outbox(SHOP, "r-1")]

    def test_outbox_leaves_a_damaged_entry_out_and_logs_it(
        self, storage: Storage, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A request's other entries stay readable beside a damaged one."""
        saved = self.submit(storage, sample_request("r-1"))
        refund = Effect.refund(SHOP, "r-1")
        storage.commit(Commit(saved, saved.version, (refund,)))
        mail, queued = storage.outbox(SHOP, "r-1")
        self.damage_outbox_entry(storage, SHOP, mail.key)
        assert storage.outbox(SHOP, "r-1") == (queued,)
        assert self._logged_damage(caplog, SHOP, mail.key, "r-1")

    def test_settling_a_damaged_entry_is_rejected_and_changes_nothing(
        self, storage: Storage
    ) -> None:
        """The worker holding an entry that got damaged cannot settle it; nothing changes."""
        self.submit(storage, sample_request("r-1"))
        (entry,) = storage.claim(owner="w1", now=T0, lease=_LEASE, limit=1)
        self.damage_outbox_entry(storage, SHOP, entry.key)
        request = storage.get(SHOP, "r-1")
        done = Settlement(entry.key, "w1", EffectState.DONE)
        with pytest.raises(PortRejected, match=re.escape(entry.key)):
            storage.settle(SHOP, done)
        with pytest.raises(PortRejected, match=re.escape(entry.key)):
            storage.commit(Commit(request, request.version, settle=done))
        assert storage.get(SHOP, "r-1") == request

    def test_a_damaged_idempotency_record_is_rejected_naming_its_shop(
        self, storage: Storage
    ) -> None:
        """A damaged record raises ``PortRejected`` naming the shop and key; the rest reads."""
        records = {}
        for n in range(2):
            request = sample_request(f"r-{n}").submitted().request
            record = IdempotencyRecord(SHOP, f"k-{n}", "fp", request.id, request)
            saved = storage.commit(Commit(request, None, idempotency=record))
            records[f"k-{n}"] = (record, saved)
        self.damage_idempotency_record(storage, SHOP, "k-1")
        with pytest.raises(PortRejected) as caught:
            storage.idempotency_record(SHOP, "k-1")
        assert SHOP in str(caught.value)
        assert "k-1" in str(caught.value)
        first, first_saved = records["k-0"]
        assert storage.idempotency_record(SHOP, "k-0") == attrs.evolve(first, result=first_saved)
        assert storage.get(SHOP, "r-1") == records["k-1"][1]


class StorageContract(
    RequestsContract,
    IdempotencyContract,
    OutboxContract,
    ListingsContract,
    DamageContract,
):
    """Every promise of :class:`~retouraanvraag.ports.Storage`, as pytest tests.

    Implement :meth:`make_storage` (and :meth:`close_storage` when the store needs more than
    ``close()``); a store that can be damaged from outside implements the ``damage_…`` hooks
    of :class:`DamageContract`, whose checks are skipped otherwise.
    """
