"""A model-based test of the desk and dispatcher with ports that fail at random.

Hypothesis drives random submit / approve / reject / cancel / receive / complete / dispatch
sequences against the in-memory and SQLite stores while labels, payments and mail fail before
or after acting. Checked throughout and at the end:

- only transitions of the table happen; an illegal command changes nothing;
- one command entry in the history per accepted command (the dispatcher's records of
  effects come beside them, never move the status, and record each effect done once);
- at most one label per key; at the end, a request's only active label is the one it
  carries, and any other still active has a void that was given up (a person must look);
- a person resolving attention with ``retry`` asks for a given-up label under the next
  attempt's key, never the voided one;
- refunds never exceed the paid fee (at the provider and on the request);
- every owed mail is delivered exactly once per key (mail fails only before acting here:
  a failure after an SMTP server accepted a mail is the documented at-least-once case).
"""

from __future__ import annotations

import datetime as dt
import os
import random
from collections import Counter

import attrs
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from retouraanvraag import errors
from retouraanvraag.adapters.sqlite import SqliteStorage
from retouraanvraag.dispatcher import Dispatcher
from retouraanvraag.model import (
    TRANSITIONS,
    Effect,
    EffectKind,
    HistoryEvent,
    MailKind,
    Money,
    Status,
    label_key,
)
from retouraanvraag.ports import EffectState, Storage
from retouraanvraag.testing import MemoryStorage
from retouraanvraag.testing.faults import Fault, inject_faults
from retouraanvraag.workflow import NewItem

from . import _postgres
from .conftest import SHOP, build_world

SOAK = bool(os.environ.get("RETOURAANVRAAG_SOAK"))
EXAMPLES = 2000 if SOAK else 200
STEPS = 100 if SOAK else 50
ALLOWED: dict[tuple[Status, str], Status] = {
    (s, t.command): t.target for t in TRANSITIONS for s in t.sources
}


class DeskMachine(RuleBasedStateMachine):
    """The desk under random commands and random port failures."""

    requests = Bundle("requests")

    def make_storage(self) -> Storage:
        return MemoryStorage()

    @initialize(seed=st.integers(0, 2**32 - 1), failure=st.sampled_from([0.0, 0.15, 0.4, 0.8]))
    def setup(self, seed: int, failure: float) -> None:
        self.world = build_world(self.make_storage())
        self.rng = random.Random(seed)
        self.failure = failure
        self.faults_on = True
        self.accepted: Counter[str] = Counter()
        self.resolved: set[str] = set()

        def plan(_n: int, _method: str, *, after: bool) -> Fault | None:
            if not self.faults_on or self.rng.random() >= self.failure:
                return None
            return Fault.AFTER if after and self.rng.random() < 0.5 else Fault.BEFORE

        w = self.world
        w.dispatcher = Dispatcher(
            w.storage,
            labels=inject_faults(w.labels, lambda n, m: plan(n, m, after=True)),
            payments=inject_faults(w.payments, lambda n, m: plan(n, m, after=True)),
            mail=inject_faults(w.mail, lambda n, m: plan(n, m, after=False)),
            renderer=w.dispatcher._renderer,
            clock=w.clock,
            backoff=dt.timedelta(seconds=10),
            backoff_cap=dt.timedelta(minutes=5),
            max_attempts=6,
            seed=seed,
        )

    def teardown(self) -> None:
        if not hasattr(self, "world"):
            return
        self.check_settled()
        close = getattr(self.world.storage, "close", None)
        if close is not None:
            close()

    # -- commands ---------------------------------------------------------------------------

    @rule(target=requests, paid=st.booleans(), quantity=st.integers(1, 3))
    def submit(self, paid: bool, quantity: int) -> str:
        w = self.world
        new = w.new_request() if paid else w.new_request(return_fee=None)
        new = attrs.evolve(
            new, items=(NewItem("SKU-1", "Trui", quantity, Money(2995), "Te groot"),)
        )
        request = w.desk.submit(new)
        self.accepted[request.id] += 1
        return request.id

    def _command(
        self, request_id: str, command: str, run: object, *, invalid: bool = False
    ) -> None:
        """Run ``command``; ``invalid``: its arguments are refused where the status allows it."""
        before = self.world.desk.get(SHOP, request_id)
        expected = ALLOWED.get((before.status, command))
        try:
            after = run()  # type: ignore[operator]
        except errors.InvalidInput as exc:
            refused_field = exc.field
            assert invalid, f"{command} refused its arguments: {refused_field}"
            assert expected is not None, f"{command} from {before.status}: not TransitionNotAllowed"
            assert refused_field == "refund_return_fee"
            assert self.world.desk.get(SHOP, request_id) == before
            return
        except errors.TransitionNotAllowed as exc:
            refused_from = exc.status
            assert expected is None, f"{command} refused from {before.status}"
            assert refused_from == before.status.value
            assert self.world.desk.get(SHOP, request_id).history == before.history
            return
        assert not invalid, f"{command} accepted arguments it must refuse"
        assert expected is not None, f"{command} accepted from {before.status}"
        assert after.status is expected
        self.accepted[request_id] += 1

    @rule(request_id=requests, with_label=st.booleans(), refund=st.booleans())
    def approve(self, request_id: str, with_label: bool, refund: bool) -> None:
        command = "approve_with_label" if with_label else "approve_without_label"
        unpaid = self.world.desk.get(SHOP, request_id).return_fee is None
        self._command(
            request_id,
            command,
            lambda: self.world.desk.approve(
                SHOP, request_id, with_label=with_label, refund_return_fee=refund, actor="staff-1"
            ),
            # Asking to refund a fee that was never paid is an error (a status that does not
            # allow the command is reported first, as TransitionNotAllowed).
            invalid=refund and unpaid,
        )

    @rule(request_id=requests)
    def reject(self, request_id: str) -> None:
        self._command(
            request_id,
            "reject",
            lambda: self.world.desk.reject(SHOP, request_id, reason="Nee", actor="staff-1"),
        )

    @rule(request_id=requests)
    def cancel(self, request_id: str) -> None:
        self._command(request_id, "cancel", lambda: self.world.desk.cancel(SHOP, request_id))

    @rule(request_id=requests)
    def mark_received(self, request_id: str) -> None:
        self._command(
            request_id,
            "mark_received",
            lambda: self.world.desk.mark_received(SHOP, request_id, actor="warehouse"),
        )

    @rule(request_id=requests)
    def complete(self, request_id: str) -> None:
        self._command(
            request_id,
            "complete",
            lambda: self.world.desk.complete(SHOP, request_id, actor="warehouse"),
        )

    @precondition(lambda self: hasattr(self, "world"))
    @rule(refuse=st.booleans())
    def carrier_refuses_the_country(self, refuse: bool) -> None:
        """The carrier stops (or starts again) collecting from NL: labels fail for good."""
        self.world.labels._refuse = frozenset({"NL"}) if refuse else frozenset()

    @rule(request_id=requests, retry=st.booleans())
    def resolve_attention(self, request_id: str, retry: bool) -> None:
        w = self.world
        before = w.desk.get(SHOP, request_id)
        dead = [e.effect for e in w.storage.outbox(SHOP, request_id) if e.state is EffectState.DEAD]
        # Only a request still waiting for its parcel asks for a new label.
        label_dead = before.status is Status.APPROVED and any(
            e.kind is EffectKind.CREATE_LABEL and e.key == before.label_key for e in dead
        )
        after = w.desk.resolve_attention(SHOP, request_id, actor="staff-2", retry=retry)
        assert not after.needs_attention
        assert after.status is before.status
        commands = [h for h in after.history if h.is_command]
        if len(commands) > self.accepted[request_id]:
            self.accepted[request_id] += 1
            assert commands[-1].command == "resolve_attention"
            self.resolved.add(request_id)
        else:
            assert after == before
        # A given-up label is asked for again under the next attempt's key, never the old one.
        assert after.label_attempt == before.label_attempt + (1 if retry and label_dead else 0)
        if retry and label_dead:
            pending = {e.key for e in w.storage.outbox(SHOP, request_id)}
            assert after.label_key in pending
            assert before.label_key != after.label_key

    @precondition(lambda self: hasattr(self, "world"))
    @rule(minutes=st.integers(0, 10))
    def dispatch(self, minutes: int) -> None:
        self.world.clock.advance(dt.timedelta(minutes=minutes))
        self.world.dispatcher.run_until_idle()

    # -- invariants -------------------------------------------------------------------------

    @precondition(lambda self: hasattr(self, "world"))
    @invariant()
    def history_has_one_entry_per_accepted_command(self) -> None:
        for request_id, count in self.accepted.items():
            request = self.world.desk.get(SHOP, request_id)
            commands = [h for h in request.history if h.is_command]
            assert len(commands) == count
            status = commands[0].status_to
            for entry in request.history[1:]:
                assert entry.status_from is status
                if entry.is_command and entry.command != "resolve_attention":
                    assert ALLOWED[entry.status_from, entry.command] is entry.status_to
                else:  # an effect's record, or a person clearing attention: status unchanged
                    assert entry.status_to is status
                status = entry.status_to
            # An effect is done once: a key given up and retried is recorded done only once.
            done = [
                h.effect
                for h in request.history
                if not h.is_command and h.command != HistoryEvent.GIVEN_UP
            ]
            assert len(done) == len(set(done)), done

    @precondition(lambda self: hasattr(self, "world"))
    @invariant()
    def money_never_exceeds_the_paid_fee(self) -> None:
        for request_id in self.accepted:
            request = self.world.desk.get(SHOP, request_id)
            paid = request.return_fee.amount if request.return_fee else Money(0)
            assert request.refunded <= paid
            if request.return_fee:
                at_provider = self.world.payments.refunded(request.return_fee.payment_reference)
                assert at_provider is not None
                assert at_provider <= paid

    @precondition(lambda self: hasattr(self, "world"))
    @invariant()
    def at_most_one_label_per_request(self) -> None:
        keys = [key for method, key in self.world.labels.calls if method == "create_label"]
        made = Counter(k for k in self.world.labels.created)
        assert all(n == 1 for n in made.values())
        assert set(made) <= set(keys)

    # -- the end: everything owed has happened, once ----------------------------------------

    def check_settled(self) -> None:
        w = self.world
        self.faults_on = False
        w.labels._refuse = frozenset()
        for _ in range(20):
            w.clock.advance(dt.timedelta(hours=1))
            w.dispatcher.run_until_idle()
        deliveries = w.mail.deliveries()
        assert all(n == 1 for n in deliveries.values()), deliveries
        for request_id in self.accepted:
            request = w.desk.get(SHOP, request_id)
            entries = w.storage.outbox(SHOP, request_id)
            assert all(e.state is not EffectState.PENDING for e in entries)
            dead = {e.key for e in entries if e.state is EffectState.DEAD}
            flagged = {problem.partition(": ")[0] for problem in request.attention}
            assert flagged <= dead
            if request_id not in self.resolved:
                assert request.needs_attention == bool(dead)
            keys = [label_key(SHOP, request_id, n) for n in range(1, request.label_attempt + 1)]
            active = {k for k in keys if k in w.labels.active}
            wanted = request.label_key if request.wants_label(request.label_key) else None
            if wanted is not None and request.label is not None:
                assert w.labels.active.get(wanted) == request.label
            for key in active:
                if key != wanted or request.label is None:
                    # A label nobody wants is voided, or its void failed for good.
                    assert Effect.void_of(key, request_id).key in dead, (key, dead)
            mail_key = Effect.send_mail(SHOP, request_id, MailKind.REQUEST_RECEIVED).key
            assert deliveries[mail_key] == 1 or mail_key in dead
            fee = request.return_fee
            if fee and request.status in {Status.REJECTED, Status.CANCELLED} and not dead:
                assert request.refunded == fee.amount


class SqliteDeskMachine(DeskMachine):
    """The same machine over SQLite (in memory, so that 200 runs stay quick)."""

    def make_storage(self) -> Storage:
        return SqliteStorage(":memory:")


class PostgresDeskMachine(DeskMachine):
    """The same machine over PostgreSQL, a schema of its own per run (fewer runs: each costs
    round trips to a server)."""

    def make_storage(self) -> Storage:
        return _postgres.storage(max_size=2)


_settings = settings(
    max_examples=EXAMPLES,
    stateful_step_count=STEPS,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestDeskInMemory = DeskMachine.TestCase
TestDeskInMemory.settings = _settings
TestDeskOnSqlite = SqliteDeskMachine.TestCase
TestDeskOnSqlite.settings = _settings
TestDeskOnPostgres = PostgresDeskMachine.TestCase
TestDeskOnPostgres.settings = settings(_settings, max_examples=max(EXAMPLES // 2, 1))
