"""PostgreSQL beside SQLite: submit + decide, a tab's first page, and dispatcher workers.

Run with ``python benchmarks/bench_postgres.py`` (``make bench`` runs it too). It uses the
server at ``RETOURAANVRAAG_BENCH_POSTGRES_URL`` when set, otherwise it starts a throwaway cluster
with ``tests/_postgres.py`` (installing PostgreSQL as the tests do) that syncs every commit to
disk, as SQLite's ``synchronous = FULL`` does beside it. Everything is measured in one run and
printed as figures and ratios (DESIGN §8), never asserted:

1. Submit + decide (two commits per request) on SQLite and PostgreSQL, with 10k and 100k
   requests stored already (and 1M with ``RETOURAANVRAAG_BENCH_1M=1``).
2. The first page of the requests tab (50 a page) at each of those sizes: it must not grow.
3. Dispatcher throughput with 1, 2 and 4 worker processes on each store, the ratios 2/1 and
   4/1 printed. Each effect calls a provider that takes a few milliseconds (as a carrier's API
   or an SMTP server does), so that a store which lets workers run side by side shows it. Once
   with every commit synced to disk, once without (the disk's flush rate then sets no limit:
   what is left is how the store lets workers overlap).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the test server's module (tests/_postgres.py)

from tests import _postgres  # noqa: E402

from retouraanvraag._codec import request_to_json  # noqa: E402
from retouraanvraag.adapters import postgres as postgres_adapter  # noqa: E402
from retouraanvraag.adapters.postgres import PostgresStorage  # noqa: E402
from retouraanvraag.adapters.sqlite import SqliteStorage  # noqa: E402
from retouraanvraag.dispatcher import Dispatcher  # noqa: E402
from retouraanvraag.mail import MailRenderer  # noqa: E402
from retouraanvraag.model import (  # noqa: E402
    Actor,
    ReturnRequest,
    Status,
)
from retouraanvraag.ports import Commit, Mail, Query, Storage, Tab  # noqa: E402
from retouraanvraag.testing import FakeLabels, FakePayments  # noqa: E402
from retouraanvraag.testing.storage_contract import sample_request  # noqa: E402

SHOP = "shop-bench"
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
SIZES = (10_000, 100_000, *((1_000_000,) if os.environ.get("RETOURAANVRAAG_BENCH_1M") else ()))
DECIDED = 400  # requests submitted and decided per size and store
PAGE_REPEATS = 100
REPEATS = 3  # each throughput figure is the median of this many runs, the stores taking turns
EFFECTS = 600  # outbox entries the workers share
WORKERS = (1, 2, 4)
PROVIDER_LATENCY = 0.004  # seconds a provider call takes
STAFF = Actor.staff("staff-1")
# One request in fifty is still in the requests tab; the rest is history.
IN_TAB_EVERY = 50


def new_request(request_id: str, created_at: dt.datetime) -> ReturnRequest:
    """The contract suites' sample request (one item, a paid fee), in the bench's shop."""
    return sample_request(request_id, shop_id=SHOP, created_at=created_at)


def stored(n: int) -> ReturnRequest:
    """The ``n``-th request of the history: requested (one in fifty) or completed."""
    request = new_request(f"h-{n:07d}", T0 + dt.timedelta(seconds=n)).submitted().request
    if n % IN_TAB_EVERY:
        request = attrs.evolve(request, status=Status.COMPLETED)
    return attrs.evolve(request, version=1)


# -- filling the stores ------------------------------------------------------------------------


def grow_sqlite(storage: SqliteStorage, start: int, stop: int) -> None:
    """Commit requests ``start`` to ``stop`` through the store itself, not synced to disk.

    Only the fill goes unsynced: the figures are taken with ``synchronous = FULL`` again.
    """
    connection = storage._connection()  # noqa: SLF001 - the fill only, on this thread's connection
    connection.execute("PRAGMA synchronous = OFF")
    try:
        for n in range(start, stop):
            storage.commit(Commit(stored(n), None))
    finally:
        connection.execute("PRAGMA synchronous = FULL")
        # What the fill left in the log goes into the file now, not while the figures are taken.
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def grow_postgres(url: str, start: int, stop: int) -> None:
    """Copy requests ``start`` to ``stop`` in, with the columns the store writes for each."""
    template = stored(1)  # a completed one; requested ones differ in status only
    with (
        psycopg.connect(url) as connection,
        connection.cursor() as cursor,
        cursor.copy(
            "COPY requests (shop_id, id, version, status, created_at, needs_attention, "
            "fee_paid_minor, refunded_minor, body) FROM STDIN"
        ) as copy,
    ):
        for n in range(start, stop):
            request = (
                attrs.evolve(template, id=f"h-{n:07d}", created_at=T0 + dt.timedelta(seconds=n))
                if n % IN_TAB_EVERY
                else stored(n)
            )
            columns = postgres_adapter._column_values(request)  # noqa: SLF001 - the store's own
            copy.write_row((SHOP, request.id, *columns, request_to_json(request)))
    # The fill's aftermath (visibility, statistics, dirty pages) is settled before measuring.
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("VACUUM (ANALYZE) requests")
        with contextlib.suppress(psycopg.errors.InsufficientPrivilege):
            connection.execute("CHECKPOINT")


# -- 1 and 2: submit + decide, and the first page ---------------------------------------------


def submit_and_decide(storage: Storage, count: int, prefix: str) -> float:
    """Seconds to submit ``count`` requests and approve each (two commits per request)."""
    drafts = [new_request(f"{prefix}-{n}", T0 - dt.timedelta(seconds=n)) for n in range(count)]
    start = time.perf_counter()
    for draft in drafts:
        submitted = draft.submitted()
        saved = storage.commit(Commit(submitted.request, None, submitted.effects))
        decision = saved.approve(with_label=True, refund_return_fee=True, actor=STAFF, at=T0)
        storage.commit(Commit(decision.request, saved.version, decision.effects))
    return time.perf_counter() - start


def ms_per_page(storage: Storage) -> float:
    query = Query(statuses=Tab.REQUESTS.statuses, limit=50)  # type: ignore[arg-type, unused-ignore]
    for _ in range(PAGE_REPEATS // 10):  # warm caches (pages, converters) first
        storage.query(SHOP, query)
    timings = []
    for _ in range(PAGE_REPEATS):
        start = time.perf_counter()
        page = storage.query(SHOP, query)
        timings.append(time.perf_counter() - start)
    assert len(page.items) == 50, "the tab is not full"
    return statistics.median(timings) * 1e3


def by_size(directory: Path, url: str) -> None:
    print(
        f"Submit + decide ({DECIDED} requests, 2 commits each, median of {REPEATS} runs) and the "
        f"requests tab's first page (50 a page, median of {PAGE_REPEATS}), as history grows"
    )
    rates: dict[str, list[float]] = {"sqlite": [], "postgres": []}
    pages: dict[str, list[float]] = {"sqlite": [], "postgres": []}
    fills: dict[str, float] = {}
    with (
        SqliteStorage(directory / "sizes.sqlite3", timeout=30) as sqlite,
        PostgresStorage(url, timeout=30) as postgres,
    ):
        done = 0
        for size in SIZES:
            started = time.perf_counter()
            grow_sqlite(sqlite, done, size)
            fills["sqlite"] = fills.get("sqlite", 0) + time.perf_counter() - started
            started = time.perf_counter()
            grow_postgres(url, done, size)
            fills["postgres"] = fills.get("postgres", 0) + time.perf_counter() - started
            done = size
            # The stores take turns, so that a busy moment of the machine hits both alike.
            runs: dict[str, list[float]] = {"sqlite": [], "postgres": []}
            for turn in range(REPEATS):
                for name, storage in (("sqlite", sqlite), ("postgres", postgres)):
                    seconds = submit_and_decide(storage, DECIDED, f"{name}-{size}-{turn}")
                    runs[name].append(DECIDED / seconds)
            for name, storage in (("sqlite", sqlite), ("postgres", postgres)):
                rates[name].append(statistics.median(runs[name]))
                pages[name].append(ms_per_page(storage))
    header = "".join(f"{size:>12,}" for size in SIZES)
    print(f"  {'stored requests':<34}{header}  big/small")
    for name in ("sqlite", "postgres"):
        cells = "".join(f"{v:>12,.0f}" for v in rates[name])
        print(f"  {name + ': requests/s':<34}{cells}   {rates[name][-1] / rates[name][0]:>6.2f}")
    for name in ("sqlite", "postgres"):
        cells = "".join(f"{v:>10.3f}ms" for v in pages[name])
        print(f"  {name + ': first page':<34}{cells}   {pages[name][-1] / pages[name][0]:>6.2f}")
    ratios = "".join(
        f"{p / s:>12.2f}" for s, p in zip(rates["sqlite"], rates["postgres"], strict=True)
    )
    print(f"  {'postgres/sqlite (throughput)':<34}{ratios}")
    fill = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in fills.items())
    print(f"  (filling to {SIZES[-1]:,}: {fill})\n")


# -- 3: dispatcher workers ---------------------------------------------------------------------


class SlowMail:
    """A mail transport that takes ``PROVIDER_LATENCY`` per send (an SMTP round trip)."""

    def send(self, key: str, mail: Mail) -> None:  # noqa: ARG002 - nothing is delivered
        time.sleep(PROVIDER_LATENCY)


def fill_outbox(db: str) -> None:
    """``EFFECTS`` submitted requests, each owing its confirmation mail."""
    with open_store(db) as storage:
        for n in range(EFFECTS):
            submitted = new_request(f"m-{n:05d}", T0 + dt.timedelta(seconds=n)).submitted()
            storage.commit(Commit(submitted.request, None, submitted.effects))


@contextlib.contextmanager
def open_store(db: str) -> Iterator[SqliteStorage | PostgresStorage]:
    store: SqliteStorage | PostgresStorage = (
        PostgresStorage(db, max_size=2, timeout=60)
        if db.startswith("postgresql://")
        else SqliteStorage(db, timeout=60)
    )
    try:
        yield store
    finally:
        store.close()


def worker(db: str, owner: str, ready: Any, done: Any, synced: bool) -> None:
    with open_store(db) as storage:
        if not synced and isinstance(storage, SqliteStorage):
            # The dispatcher works on this thread: its connection commits without syncing.
            storage._connection().execute("PRAGMA synchronous = OFF")  # noqa: SLF001
        dispatcher = Dispatcher(
            storage,
            labels=FakeLabels(),
            payments=FakePayments(),
            mail=SlowMail(),
            renderer=MailRenderer(sender="retouren@shop.example", shop_name="Bench"),
            owner=owner,
        )
        ready.wait()  # every worker has its store open: go
        done.put(dispatcher.run_until_idle(limit=5).done)


def effects_per_second(db: str, workers: int, *, synced: bool) -> float:
    context = multiprocessing.get_context("fork")
    ready, done = context.Barrier(workers + 1), context.Queue()
    processes = [
        context.Process(target=worker, args=(db, f"w{n}", ready, done, synced))
        for n in range(workers)
    ]
    for process in processes:
        process.start()
    ready.wait()
    began = time.perf_counter()
    handled = sum(done.get(timeout=600) for _ in processes)
    elapsed = time.perf_counter() - began
    for process in processes:
        process.join(60)
    assert handled == EFFECTS, f"{handled} of {EFFECTS} effects done"
    return EFFECTS / elapsed


def dispatching(directory: Path, server: Any, *, synced: bool) -> None:
    how = (
        "every commit synced to disk (PostgreSQL fsync, SQLite synchronous FULL)"
        if synced
        else "commits not waiting for the disk (synchronous_commit off, synchronous OFF)"
    )
    print(
        f"Dispatcher: {EFFECTS} mails, each send taking {PROVIDER_LATENCY * 1e3:.0f} ms, "
        f"worker processes sharing one store (median of {REPEATS} runs); {how}"
    )
    runs: dict[tuple[str, int], list[float]] = {}
    for turn in range(REPEATS):  # the stores and worker counts take turns
        for count in WORKERS:
            for name in ("sqlite", "postgres"):
                if name == "postgres":
                    db = server.fresh_url()
                    fill_outbox(db)
                    if not synced:
                        db = db.replace("options=", "options=-csynchronous_commit%3Doff%20")
                else:
                    db = str(directory / f"outbox-{count}-{synced}-{turn}.sqlite3")
                    fill_outbox(db)
                rate = effects_per_second(db, count, synced=synced)
                runs.setdefault((name, count), []).append(rate)
    figures = {
        name: [statistics.median(runs[name, count]) for count in WORKERS]
        for name in ("sqlite", "postgres")
    }
    header = "".join(f"{f'{n} worker' + ('s' if n > 1 else ''):>12}" for n in WORKERS)
    print(f"  {'effects/s':<12}{header}{'2/1':>8}{'4/1':>8}")
    for name, values in figures.items():
        cells = "".join(f"{v:>12,.0f}" for v in values)
        print(f"  {name:<12}{cells}{values[1] / values[0]:>8.2f}{values[2] / values[0]:>8.2f}")
    print(f"  (one worker's ceiling from the provider alone: {1 / PROVIDER_LATENCY:,.0f}/s)\n")


class _Given:
    """A server given by URL: each run gets a schema of its own there."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.serial = 0

    def fresh_url(self) -> str:
        self.serial += 1
        name = f"bench_{os.getpid()}_{self.serial}"
        with psycopg.connect(self.url, autocommit=True) as admin:
            admin.execute(f"CREATE SCHEMA {name}")
        separator = "&" if "?" in self.url else "?"
        return f"{self.url}{separator}options=-csearch_path%3D{name}"


def main() -> None:
    started = time.perf_counter()
    given = os.environ.get("RETOURAANVRAAG_BENCH_POSTGRES_URL")
    server: Any = _Given(given) if given else _postgres.start_server(durable=True)
    print(f"PostgreSQL: {'the server given' if given else 'a throwaway cluster, fsync on'}")
    print("SQLite: a WAL file, synchronous FULL; both on this machine's disk\n")
    try:
        with tempfile.TemporaryDirectory(prefix="retouraanvraag-bench-") as name:
            directory = Path(name)
            by_size(directory, server.fresh_url())
            dispatching(directory, server, synced=True)
            dispatching(directory, server, synced=False)
    finally:
        if not given:
            server.stop()
    print(f"\n(total {time.perf_counter() - started:.1f} s)")


if __name__ == "__main__":
    main()
