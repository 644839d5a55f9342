"""Helpers for the reliability and crash tests: file-backed providers and worker processes.

A worker process that is killed with SIGKILL loses its memory, so the "providers" it talks to
keep what they did in a JSON-lines ledger (one line per act, ``fsync``-ed, under ``flock``):
the parent reads the ledger to count labels, refunds and mails across crashes and processes.
Labels and refunds are idempotent by key, as the port contracts demand of a real carrier and
payment provider; the mail transport is either a plain (SMTP-like) one that delivers every
send, or a deduplicating (Maildir-like) one.

The process entry points take only picklable arguments, so they run under the ``spawn`` and
``forkserver`` start methods.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import random
import signal
import threading
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

from retouraanvraag import errors
from retouraanvraag.adapters.sqlite import SqliteStorage
from retouraanvraag.dispatcher import Dispatcher
from retouraanvraag.mail import MailRenderer
from retouraanvraag.model import Label, Money, ReturnRequest
from retouraanvraag.ports import Mail
from retouraanvraag.workflow import Desk

if TYPE_CHECKING:
    from retouraanvraag.adapters.postgres import PostgresStorage

T = TypeVar("T")

SHOP = "shop-1"
LEASE = dt.timedelta(minutes=5)


def open_storage(db: str, *, timeout: float = 5.0) -> SqliteStorage | PostgresStorage:
    """The store at ``db``: a PostgreSQL URL (``postgresql://…``) or a SQLite file."""
    if db.startswith("postgresql://"):
        from retouraanvraag.adapters.postgres import PostgresStorage  # noqa: PLC0415

        return PostgresStorage(db, max_size=4, timeout=timeout)
    return SqliteStorage(db, timeout=timeout)


# -- a ledger of what the providers did -----------------------------------------------------


class Ledger:
    """An append-only JSON-lines file shared by processes; each line is synced to disk."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.touch(exist_ok=True)

    @contextmanager
    def _locked(self) -> Iterator[int]:
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield fd
        finally:
            os.close(fd)

    def _read(self, fd: int) -> list[dict[str, Any]]:
        os.lseek(fd, 0, os.SEEK_SET)
        chunks = []
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
        text = b"".join(chunks).decode()
        return [json.loads(line) for line in text.splitlines() if line]

    def entries(self) -> list[dict[str, Any]]:
        """Every act recorded so far."""
        with self._locked() as fd:
            return self._read(fd)

    def act(
        self,
        kind: str,
        key: str,
        make: Callable[[int], dict[str, Any]],
        *,
        dedupe: bool,
        unless: str | None = None,
    ) -> dict[str, Any]:
        """Record an act under ``key``; with ``dedupe`` return an earlier one of the same key.

        Raises:
            PortRejected: an act of kind ``unless`` was recorded under ``key`` (checked under
                the same lock as the act, so no other process gets in between).
        """
        with self._locked() as fd:
            done = self._read(fd)
            if unless is not None and any(e["kind"] == unless and e["key"] == key for e in done):
                raise errors.PortRejected(f"{key}: this label key was voided")
            if dedupe:
                for entry in done:
                    if entry["kind"] == kind and entry["key"] == key:
                        return entry
            serial = sum(1 for e in done if e["kind"] == kind) + 1
            entry = {"kind": kind, "key": key, "pid": os.getpid(), **make(serial)}
            os.write(fd, (json.dumps(entry) + "\n").encode())
            os.fsync(fd)
            return entry

    def count(self, kind: str) -> Counter[str]:
        """How many acts of ``kind`` each key has."""
        return Counter(e["key"] for e in self.entries() if e["kind"] == kind)


class LedgerLabels:
    """A carrier whose labels live in the ledger: one per key, voids recorded.

    As the label contract demands, a void is final for its key: a label is never made under a
    voided key afterwards, also when the void came first.
    """

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger

    def create_label(self, key: str, request: ReturnRequest) -> Label:
        entry = self._ledger.act(
            "label", key, lambda n: {"tracking": f"3SLEDGER{n:08d}"}, dedupe=True, unless="void"
        )
        return Label(
            carrier=request.carrier or "PostNL", tracking_number=entry["tracking"], document=b"%PDF"
        )

    def void_label(self, key: str) -> None:
        self._ledger.act("void", key, lambda _n: {}, dedupe=True)


class LedgerPayments:
    """A payment provider whose refunds live in the ledger: one per key."""

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger

    def refund(self, key: str, payment_reference: str, amount: Money) -> str:
        entry = self._ledger.act(
            "refund",
            key,
            lambda n: {
                "payment": payment_reference,
                "amount": amount.amount,
                "reference": f"re_{n:06d}",
            },
            dedupe=True,
        )
        return str(entry["reference"])


class LedgerMail:
    """A mail transport: plain (every send delivers, like SMTP) or deduplicating by key."""

    def __init__(self, ledger: Ledger, *, dedupe: bool) -> None:
        self._ledger = ledger
        self._dedupe = dedupe

    def send(self, key: str, mail: Mail) -> None:
        self._ledger.act(
            "mail", key, lambda _n: {"message_id": mail.message_id}, dedupe=self._dedupe
        )


class FileClock:
    """A clock that reads the time from a file the parent process moves forward."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def set(self, now: dt.datetime) -> None:
        self.path.write_text(now.isoformat(), encoding="utf-8")

    def now(self) -> dt.datetime:
        return dt.datetime.fromisoformat(self.path.read_text(encoding="utf-8"))

    def advance(self, delta: dt.timedelta) -> dt.datetime:
        now = self.now() + delta
        self.set(now)
        return now


# -- killing a worker at a chosen point -----------------------------------------------------


class _KillSwitch:
    """Counts calls of one method across proxies and SIGKILLs the process at the n-th."""

    def __init__(self, spec: str | None) -> None:
        # spec: "<method>:<after|before>:<n>", e.g. "create_label:after:1", "commit:before:3".
        self.method, self.when, n = (spec or "::0").split(":")
        self.n = int(n)
        self.seen = 0
        self._lock = threading.Lock()

    def hit(self, method: str) -> bool:
        if method != self.method:
            return False
        with self._lock:
            self.seen += 1
            return self.seen == self.n


class Killing:
    """A proxy that SIGKILLs its own process before or after the chosen call acted."""

    def __init__(self, inner: object, switch: _KillSwitch) -> None:
        self._inner = inner
        self._switch = switch

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._inner, name)
        if name.startswith("_") or not callable(target):
            return target

        def call(*args: Any, **kwargs: Any) -> Any:
            hit = self._switch.hit(name)
            if hit and self._switch.when == "before":
                os.kill(os.getpid(), signal.SIGKILL)
            result = target(*args, **kwargs)
            if hit and self._switch.when == "after":
                os.kill(os.getpid(), signal.SIGKILL)
            return result

        return call


def killing(port: T, switch: _KillSwitch) -> T:
    return cast("T", Killing(port, switch))


def renderer() -> MailRenderer:
    return MailRenderer(sender="retouren@shop.example", shop_name="Voorbeeldshop")


class _Recorder(_KillSwitch):
    """A switch that never kills and records every call with the outbox key it settles."""

    def __init__(self) -> None:
        super().__init__(None)
        self.calls: list[tuple[str, str | None]] = []

    def hit(self, method: str) -> bool:
        self.calls.append((method, None))
        return False


class _RecordingStorage:
    """Notes which outbox entry each ``commit`` or ``settle`` call settles."""

    def __init__(self, inner: object, recorder: _Recorder) -> None:
        self._inner = inner
        self._recorder = recorder

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._inner, name)
        if name not in {"commit", "settle"}:
            return target

        def call(*args: Any) -> Any:
            settlement = args[0].settle if name == "commit" else args[1]
            self._recorder.calls[-1] = (name, None if settlement is None else settlement.key)
            return target(*args)

        return call


def reference_calls(db: str, ledger: str, clock: str) -> list[tuple[str, str | None]]:
    """Dispatch without killing; every call made, in order, with the key a settle settles."""
    recorder = _Recorder()
    crash_worker(db, ledger, clock, None, False, recorder=recorder)
    return recorder.calls


def crash_worker(
    db: str,
    ledger: str,
    clock: str,
    kill: str | None,
    dedupe: bool,
    *,
    recorder: _Recorder | None = None,
) -> None:
    """A dispatcher worker process; with ``kill`` it SIGKILLs itself at that point."""
    switch = recorder or _KillSwitch(kill)
    book = Ledger(ledger)
    storage = open_storage(db)
    inner: Any = storage if recorder is None else _RecordingStorage(storage, recorder)
    dispatcher = Dispatcher(
        killing(inner, switch),
        labels=killing(LedgerLabels(book), switch),
        payments=killing(LedgerPayments(book), switch),
        mail=killing(LedgerMail(book, dedupe=dedupe), switch),
        renderer=renderer(),
        clock=FileClock(clock),
        lease=LEASE,
        seed=os.getpid(),
    )
    dispatcher.run_until_idle()
    storage.close()


# -- several desks on one file, in several processes ----------------------------------------

COMMANDS = (
    "approve_with_label",
    "approve_without_label",
    "reject",
    "cancel",
    "mark_received",
    "complete",
    "dispatch",
)


def desk_worker(
    *, db: str, ledger: str, clock: str, ids: list[str], seed: int, commands: int, out: str
) -> None:
    """Run ``commands`` random commands (and dispatch rounds) on shared requests; log outcomes.

    Each line of ``out`` is ``[command, request_id, outcome]`` where outcome is the new status,
    ``"refused:<status>"`` for a ``TransitionNotAllowed`` naming that status, or
    ``"error:<type>"`` for anything else (which the test counts as unhandled).
    """
    rng = random.Random(seed)
    book = Ledger(ledger)
    storage = open_storage(db, timeout=30.0)
    desk = Desk(storage, clock=FileClock(clock))
    dispatcher = Dispatcher(
        storage,
        labels=LedgerLabels(book),
        payments=LedgerPayments(book),
        mail=LedgerMail(book, dedupe=False),
        renderer=renderer(),
        clock=FileClock(clock),
        lease=LEASE,
        owner=f"proc-{seed}",
        seed=seed,
    )
    log: list[list[str]] = []
    for _ in range(commands):
        command = rng.choice(COMMANDS)
        request_id = rng.choice(ids)
        try:
            outcome = _desk_command(desk, dispatcher, command, request_id)
        except errors.TransitionNotAllowed as exc:
            outcome = f"refused:{exc.status}"
        except Exception as exc:  # noqa: BLE001 - reported to the parent, which fails the test
            outcome = f"error:{type(exc).__name__}:{exc}:{traceback.format_exc(limit=3)}"
        log.append([command, request_id, outcome])
    storage.close()
    Path(out).write_text(json.dumps(log), encoding="utf-8")


def _desk_command(desk: Desk, dispatcher: Dispatcher, command: str, request_id: str) -> str:
    match command:
        case "approve_with_label" | "approve_without_label":
            with_label = command == "approve_with_label"
            result = desk.approve(
                SHOP, request_id, with_label=with_label, refund_return_fee=True, actor="staff-1"
            )
        case "reject":
            result = desk.reject(SHOP, request_id, reason="Nee", actor="staff-1")
        case "cancel":
            result = desk.cancel(SHOP, request_id)
        case "mark_received":
            result = desk.mark_received(SHOP, request_id, actor="warehouse")
        case "complete":
            result = desk.complete(SHOP, request_id, actor="warehouse")
        case _:
            report = dispatcher.run_once(limit=5)
            return f"dispatched:{report.handled}"
    return result.status.value
