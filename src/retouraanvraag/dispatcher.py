"""The dispatcher: runs the effects the outbox holds, after commit.

Labels, refunds, mails and the host's events, each under its stable key, claimed under a
lease so that many workers share one outbox; a worker is a small loop over claimed entries in
which everything that can go wrong is an outcome of the entry, never the death of the loop.
The aggregate says what a provider's answer means for the request
(:meth:`~retouraanvraag.model.ReturnRequest.label_created` and its siblings); the dispatcher
calls the port and commits what the aggregate says.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import re
import threading
import uuid
from collections.abc import Callable
from typing import Final

import attrs

from retouraanvraag.errors import (
    ConcurrentModification,
    InvalidInput,
    LeaseLost,
    NotFound,
    PortRejected,
    PortUnavailable,
)
from retouraanvraag.model import Change, Effect, EffectKind, RefundRecord, ReturnRequest
from retouraanvraag.ports import (
    COMMAND_RETRIES,
    Clock,
    Commit,
    EffectState,
    EventSink,
    LabelService,
    MailRendering,
    MailTransport,
    OutboxEntry,
    PaymentService,
    Settlement,
    Storage,
    SystemClock,
)

__all__ = ["MAX_BACKOFF_CAP", "DispatchReport", "Dispatcher"]

log = logging.getLogger("retouraanvraag")

_ADDRESS: Final = re.compile(r"\S+@\S+")
_PROBLEM_LIMIT: Final = 500


#: What no store can keep as text: NUL (PostgreSQL) and lone surrogates (no encoding has them).
_UNSTORABLE: Final = re.compile("[\x00\ud800-\udfff]")


def _problem(text: str) -> str:
    """A port's error text, fit to store and show staff: one line, short, no addresses.

    A provider's words are kept as far as every store can hold them: NUL and lone surrogates
    become U+FFFD, so that the error, not the store's refusal of it, is what staff read.
    """
    kept = _UNSTORABLE.sub("\ufffd", text)
    return _ADDRESS.sub("<address>", " ".join(kept.split()))[:_PROBLEM_LIMIT]


@attrs.define
class DispatchReport:
    """What one dispatcher run did, counted by outcome."""

    done: int = 0
    retried: int = 0
    dead: int = 0

    @property
    def handled(self) -> int:
        """Entries handled in the run."""
        return self.done + self.retried + self.dead

    def add(self, other: DispatchReport) -> None:
        """Add another run's counts to this one."""
        self.done += other.done
        self.retried += other.retried
        self.dead += other.dead


#: What applying a port's answer to a (fresh) request gives: the change to commit, or ``None``
#: when the request keeps nothing of it and the entry is only settled.
_Apply = Callable[[ReturnRequest], Change | None]

#: The longest a failed effect waits for its next try: beyond this, a retry is meaningless.
MAX_BACKOFF_CAP: Final = dt.timedelta(days=30)
_MICROSECOND: Final = dt.timedelta(microseconds=1)


class Dispatcher:
    """Runs the effects the outbox holds: labels, refunds, mails, events for the host.

    Several dispatchers (threads or processes) may run against one store: each claims entries
    under a lease, so an entry is worked on by one of them at a time; an entry whose worker died
    is claimed again once its lease runs out (that is the reconciler). A worker never starts an
    entry whose lease has run out by its clock. A transient failure is retried with exponential
    backoff and jitter; a permanent one, or one that keeps failing for ``max_attempts`` tries,
    marks the request as needing attention. Nothing is dropped, and no entry ends the run: an
    unexpected error is logged with the entry's ids and the entry is retried later.

    The dispatcher calls the port; the aggregate says what the answer means for the request
    (:meth:`~retouraanvraag.model.ReturnRequest.label_created` and its siblings), and the
    dispatcher commits that, recording every effect in the request's history.

    Args:
        storage: the store the desk writes to.
        labels: the carrier.
        payments: the payment provider.
        mail: the mail transport.
        renderer: renders mails (``retouraanvraag.mail.MailRenderer``).
        events: the host's event sink (``docs/events.md``). With one, the dispatcher delivers
            the events the desk queued and queues those of the effects it records (label
            created, refunded, needs attention) in the same commit, for a request the desk
            queued events of (``Desk(events=True)``; otherwise none, and a warning once);
            without one, it queues none, and an event entry it finds is given up ("no event
            sink"), never dropped.
        clock: the time source.
        owner: this worker's name in leases (random by default).
        lease: how long a claimed entry stays this worker's.
        max_attempts: tries before a failing effect is given up and flagged.
        backoff: the first retry's delay; it doubles per try, with jitter, up to ``backoff_cap``.
        backoff_cap: the longest delay, at most :data:`MAX_BACKOFF_CAP`.
        seed: seeds the jitter (tests).
    """

    def __init__(
        self,
        storage: Storage,
        *,
        labels: LabelService,
        payments: PaymentService,
        mail: MailTransport,
        renderer: MailRendering,
        events: EventSink | None = None,
        clock: Clock | None = None,
        owner: str | None = None,
        lease: dt.timedelta = dt.timedelta(minutes=5),
        max_attempts: int = 8,
        backoff: dt.timedelta = dt.timedelta(seconds=30),
        backoff_cap: dt.timedelta = dt.timedelta(hours=6),
        seed: int | None = None,
    ) -> None:
        """Wire the dispatcher to the ports."""
        if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
            raise InvalidInput("must be a whole number of at least 1", field="max_attempts")
        if not isinstance(lease, dt.timedelta) or lease <= dt.timedelta(0):
            raise InvalidInput("must be a positive timedelta", field="lease")
        if not isinstance(backoff, dt.timedelta) or not isinstance(backoff_cap, dt.timedelta):
            raise InvalidInput("must be timedeltas", field="backoff")
        if backoff <= dt.timedelta(0) or backoff_cap < backoff:
            raise InvalidInput("must be positive and at most backoff_cap", field="backoff")
        if backoff_cap > MAX_BACKOFF_CAP:
            raise InvalidInput(f"must be at most {MAX_BACKOFF_CAP.days} days", field="backoff_cap")
        self._storage = storage
        self._labels = labels
        self._payments = payments
        self._mail = mail
        self._renderer = renderer
        self._events = events
        self._warned_events_off = False
        self._clock = clock or SystemClock()
        self.owner = owner or f"worker-{uuid.uuid4().hex[:12]}"
        self._lease = lease
        self._max_attempts = max_attempts
        self._backoff = backoff
        self._backoff_cap = backoff_cap
        self._random = random.Random(seed)  # noqa: S311 - jitter, not cryptography

    def run_once(self, limit: int = 100) -> DispatchReport:
        """Claim up to ``limit`` due entries and run each once."""
        report = DispatchReport()
        now = self._clock.now()
        for entry in self._storage.claim(owner=self.owner, now=now, lease=self._lease, limit=limit):
            report.add(self._run_entry(entry))
        return report

    def run_until_idle(self, *, max_rounds: int = 1000, limit: int = 100) -> DispatchReport:
        """Run rounds until no entry is due now (follow-up mails included)."""
        total = DispatchReport()
        for _ in range(max_rounds):
            report = self.run_once(limit)
            total.add(report)
            if report.handled == 0:
                break
        return total

    def run_worker(
        self, stop: threading.Event, *, poll: float = 1.0, limit: int = 100
    ) -> DispatchReport:
        """Run as a worker until ``stop`` is set: drain, then wait ``poll`` seconds, again.

        Nothing ends the worker but ``stop``: a store that is unavailable for a moment, or any
        other error, is logged and the worker waits and tries again (entries it had claimed
        come back when their lease runs out).
        """
        total = DispatchReport()
        while not stop.is_set():
            try:
                total.add(self.run_until_idle(limit=limit))
            except Exception as exc:  # noqa: BLE001 - the loop outlives every failure
                log.warning(
                    "dispatcher round failed; the worker waits",
                    extra={"owner": self.owner, "error": type(exc).__name__},
                )
            stop.wait(poll)
        return total

    def backoff(self, attempts: int) -> dt.timedelta:
        """The delay before try ``attempts + 1``: doubling, capped, with full jitter on half."""
        first = self._backoff // _MICROSECOND
        cap = self._backoff_cap // _MICROSECOND
        # Whole microseconds, capped before any timedelta is made: no overflow at any attempt.
        doublings = min(max(attempts - 1, 0), cap.bit_length())
        base = dt.timedelta(microseconds=min(first << doublings, cap))
        jitter: float = self._random.random()
        return base / 2 + base / 2 * jitter

    # -- one entry -------------------------------------------------------------------------

    def _run_entry(self, entry: OutboxEntry) -> DispatchReport:
        try:
            return self._work(entry)
        except Exception as exc:
            log.exception(
                "effect could not be handled; retrying later",
                extra={
                    "shop_id": entry.shop_id,
                    "request_id": entry.effect.request_id,
                    "effect": entry.key,
                },
            )
            try:
                return self._retry_later(entry, _problem(f"{type(exc).__name__}: {exc}"))
            except Exception:  # noqa: BLE001 - the store is failing too: the lease runs out
                return DispatchReport()

    def _work(self, entry: OutboxEntry) -> DispatchReport:  # noqa: PLR0911
        now = self._clock.now()
        if entry.lease_until is not None and now >= entry.lease_until:
            # The lease ran out before we got here (an earlier entry's call was slow): another
            # worker may have done this one already. Never start what we no longer hold.
            return DispatchReport()
        try:
            request = self._storage.get(entry.shop_id, entry.effect.request_id)
        except NotFound:
            return self._give_up(entry, None, "request no longer exists")
        except PortRejected as exc:
            # The stored request cannot be read (a damaged row): a person must look.
            return self._give_up(entry, None, _problem(f"request cannot be read: {exc}"))
        try:
            apply = self._call(entry.effect, request)
        except PortRejected as exc:
            if entry.effect.kind is EffectKind.CREATE_LABEL:
                fresh = self._storage.get(entry.shop_id, request.id)
                if not fresh.wants_label(entry.effect.key):
                    # Refused because the key was voided meanwhile (a cancel won the race):
                    # no label exists, which is what the request wants now.
                    return self._record(
                        entry, fresh, lambda r: Change(r.label_voided(entry.effect, at=now), ())
                    )
            return self._give_up(entry, request, _problem(f"{type(exc).__name__}: {exc}"))
        except InvalidInput as exc:
            # Refused for good, or a message that cannot be rendered: retrying won't help.
            return self._give_up(entry, request, _problem(f"{type(exc).__name__}: {exc}"))
        except Exception as exc:  # noqa: BLE001 - a port's bug must not stop the worker
            wait = exc.retry_after if isinstance(exc, PortUnavailable) else None
            return self._retry_later(entry, _problem(f"{type(exc).__name__}: {exc}"), wait)
        return self._record(entry, request, apply)

    def _call(self, effect: Effect, request: ReturnRequest) -> _Apply | None:  # noqa: PLR0911
        """Call the port once for ``effect``; returns how to apply its answer to a request."""
        now = self._clock.now()
        match effect.kind:
            case EffectKind.CREATE_LABEL:
                if not request.wants_label(effect.key):
                    # Cancelled before (or while) the label was made, or a given-up key: make
                    # sure no label is left under it (a void of a key with no label is final).
                    self._labels.void_label(effect.key)
                    return lambda r: Change(r.label_voided(effect, at=now), ())
                if request.label is not None:
                    recorded = request.label
                    return lambda r: r.label_created(effect, r.label or recorded, at=now)
                label = self._labels.create_label(effect.key, request)
                return lambda r: r.label_created(effect, label, at=now)
            case EffectKind.VOID_LABEL:
                self._labels.void_label(effect.label_key or request.label_key)
                return lambda r: Change(r.label_voided(effect, at=now), ())
            case EffectKind.REFUND:
                due = request.refund_due
                if request.return_fee is None or due.amount == 0:
                    return None
                reference = self._payments.refund(
                    effect.key, request.return_fee.payment_reference, due
                )
                record = RefundRecord(effect.key, due, reference, now)
                return lambda r: (
                    None
                    if any(f.key == record.key for f in r.refunds)
                    else Change(r.with_refund(record, effect), ())
                )
            case EffectKind.MAIL:
                if effect.mail is None:
                    raise PortRejected(f"{effect.key}: mail effect without a kind")
                mail = self._renderer.render(request, effect.mail, key=effect.key)
                self._mail.send(effect.key, mail)
                return lambda r: Change(r.mail_sent(effect, at=now), ())
            case EffectKind.EVENT:
                self._deliver(effect)
                return None
        raise PortRejected(f"{effect.key}: unknown effect kind")  # pragma: no cover

    def _deliver(self, effect: Effect) -> None:
        """Hand an event to the sink; settled on its own (``None``: nothing to apply).

        A delivery changes nothing on the request, so it never competes with the desk for
        the version; the outbox entry is its record.
        """
        if self._events is None:
            raise PortRejected(f"{effect.key}: no event sink is configured")
        if effect.event is None:  # pragma: no cover - an Effect refuses this
            raise PortRejected(f"{effect.key}: event effect without an event")
        self._events.deliver(effect.event)

    def _record(
        self, entry: OutboxEntry, request: ReturnRequest, apply: _Apply | None
    ) -> DispatchReport:
        """Commit the port's answer and settle the entry; the port is never called again."""
        shop_id, effect = entry.shop_id, entry.effect
        settle = Settlement(effect.key, self.owner, EffectState.DONE)
        current = request
        for _ in range(COMMAND_RETRIES):
            change = self._with_events(current, apply(current) if apply is not None else None)
            try:
                if change is None:
                    self._storage.settle(shop_id, settle)
                else:
                    self._storage.commit(
                        Commit(change.request, current.version, change.effects, settle=settle)
                    )
            except LeaseLost:
                # Another worker holds the entry now and will finish the (idempotent) job; a
                # label we made for a request that no longer wants it is ours to void.
                if effect.kind is EffectKind.CREATE_LABEL and apply is not None:
                    self._void_unwanted(entry, apply)
                return DispatchReport()
            except ConcurrentModification:
                # The desk saved the request meanwhile: apply the same answer to the fresh one.
                current = self._storage.get(shop_id, request.id)
                continue
            log.info(
                "effect done",
                extra={"shop_id": shop_id, "request_id": request.id, "effect": effect.key},
            )
            return DispatchReport(done=1)
        if effect.kind in {EffectKind.MAIL, EffectKind.VOID_LABEL}:
            # Lost every race: settle alone rather than send or void again; only the record of
            # it in the history is missing.
            log.warning(
                "effect done but not recorded in the history",
                extra={"shop_id": shop_id, "request_id": request.id, "effect": effect.key},
            )
            try:
                self._storage.settle(shop_id, settle)
            except LeaseLost:
                return DispatchReport()
            return DispatchReport(done=1)
        # A label or refund must be recorded: leave the entry to its lease, and the next try
        # gets the same answer from the provider under the same key.
        return DispatchReport()

    def _with_events(self, before: ReturnRequest, change: Change | None) -> Change | None:
        """``change`` with the events it owes the host, when there is a sink to hear them.

        Only for a request the desk told the host of (its outbox holds an event): beside a
        desk with events off, a sink would hear of labels and refunds of requests it never
        heard were submitted. The desk's setting is the one switch; this says so, once.
        """
        if change is None or self._events is None:
            return change
        told = change.with_events(before)
        if told is change or any(
            e.effect.kind is EffectKind.EVENT
            for e in self._storage.outbox(before.shop_id, before.id)
        ):
            return told
        if not self._warned_events_off:
            self._warned_events_off = True
            log.warning(
                "the dispatcher has an event sink but the desk queued no events for this "
                "request: none are queued for its effects either (turn events on in both "
                "places, Desk(events=True))",
                extra={"shop_id": before.shop_id, "request_id": before.id},
            )
        return change

    def _void_unwanted(self, entry: OutboxEntry, apply: _Apply) -> None:
        """After a lost lease: void the label we made if the request no longer wants it."""
        shop_id, effect = entry.shop_id, entry.effect
        for _ in range(COMMAND_RETRIES):
            current = self._storage.get(shop_id, effect.request_id)
            change = apply(current)
            if change is None or not any(e.kind is EffectKind.VOID_LABEL for e in change.effects):
                return  # still wanted: the worker holding the entry records it
            at = self._clock.now()
            try:
                self._labels.void_label(effect.key)
                after = change.request.label_voided(effect, at=at)
            except Exception as exc:  # noqa: BLE001 - the void must not be forgotten
                problem = _problem(f"label made after a cancel; void failed: {exc}")
                after = change.request.given_up(effect, problem, at=at).request
            done = self._with_events(current, Change(after, ()))
            commit = Commit(after, current.version, done.effects if done is not None else ())
            try:
                self._storage.commit(commit)
            except ConcurrentModification:
                continue
            return

    def _retry_later(
        self, entry: OutboxEntry, error: str, retry_after: dt.timedelta | None = None
    ) -> DispatchReport:
        """Try again after the backoff, or later if the provider asked (within the cap)."""
        attempts = entry.attempts + 1
        if attempts >= self._max_attempts:
            request = self._storage.get(entry.shop_id, entry.effect.request_id)
            return self._give_up(entry, request, f"gave up after {attempts} tries: {error}")
        delay = self.backoff(attempts)
        if isinstance(retry_after, dt.timedelta) and retry_after > delay:
            delay = min(retry_after, self._backoff_cap)
        retry_at = self._clock.now() + delay
        settle = Settlement(
            entry.key, self.owner, EffectState.PENDING, error=error, retry_at=retry_at
        )
        log.warning(
            "effect failed, will retry",
            extra={
                "request_id": entry.effect.request_id,
                "effect": entry.key,
                "attempts": attempts,
            },
        )
        try:
            self._storage.settle(entry.shop_id, settle)
        except LeaseLost:
            return DispatchReport()
        return DispatchReport(retried=1)

    def _give_up(
        self, entry: OutboxEntry, request: ReturnRequest | None, error: str
    ) -> DispatchReport:
        settle = Settlement(entry.key, self.owner, EffectState.DEAD, error=error)
        log.error(
            "effect failed for good; request needs attention",
            extra={"request_id": entry.effect.request_id, "effect": entry.key},
        )
        for _ in range(COMMAND_RETRIES):
            try:
                if request is None:
                    self._storage.settle(entry.shop_id, settle)
                else:
                    change = request.given_up(entry.effect, error, at=self._clock.now())
                    change = self._with_events(request, change) or change
                    self._storage.commit(
                        Commit(change.request, request.version, change.effects, settle=settle)
                    )
            except LeaseLost:
                return DispatchReport()
            except ConcurrentModification:
                request = self._storage.get(entry.shop_id, entry.effect.request_id)
                continue
            return DispatchReport(dead=1)
        return DispatchReport()
