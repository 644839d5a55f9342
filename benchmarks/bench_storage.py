"""Storage benchmarks: submit + decide throughput, and listing a tab as history grows.

Run with ``python benchmarks/bench_storage.py``. Everything is measured in one run and printed
as figures and ratios (DESIGN §8), never asserted:

1. Submit + decide throughput on SQLite (a file in a temporary directory, WAL, synchronous
   FULL) with :class:`MemoryStorage` beside it as the baseline.
2. The first page of a tab as the number of stored requests grows (1k, 10k, 50k, of which only
   20 are in the tab): indexes and keyset cursors keep the time per page flat.
"""

from __future__ import annotations

import datetime as dt
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import attrs

from retouraanvraag.adapters import MemoryStorage, SqliteStorage
from retouraanvraag.model import Actor, ReturnRequest, Status
from retouraanvraag.ports import Commit, Query, Storage, Tab
from retouraanvraag.testing.storage_contract import sample_request

SHOP = "shop-bench"
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
THROUGHPUT_REQUESTS = 1_500
SIZES = (1_000, 10_000, 50_000)
IN_TAB = 20
PAGE_REPEATS = 200


def new_request(request_id: str, created_at: dt.datetime) -> ReturnRequest:
    """The contract suites' sample request (one item, a paid fee), in the bench's shop."""
    return sample_request(request_id, shop_id=SHOP, created_at=created_at)


STAFF = Actor.staff("staff-1")


@contextmanager
def stores(directory: Path, name: str) -> Iterator[tuple[Storage, Storage]]:
    with SqliteStorage(directory / f"{name}.sqlite3") as sqlite:
        yield MemoryStorage(), sqlite


def submit_and_decide(storage: Storage, count: int, prefix: str) -> float:
    """Seconds to submit ``count`` requests and approve each (two commits per request)."""
    drafts = [new_request(f"{prefix}-{n}", T0 + dt.timedelta(seconds=n)) for n in range(count)]
    start = time.perf_counter()
    for draft in drafts:
        submitted = draft.submitted()
        saved = storage.commit(Commit(submitted.request, None, submitted.effects))
        decision = saved.approve(with_label=True, refund_return_fee=True, actor=STAFF, at=T0)
        storage.commit(Commit(decision.request, saved.version, decision.effects))
    return time.perf_counter() - start


def throughput(directory: Path) -> None:
    print(f"Submit + decide, {THROUGHPUT_REQUESTS} requests (2 commits each)")
    with stores(directory, "throughput") as (memory, sqlite):
        rates = {}
        for name, storage in (("memory", memory), ("sqlite", sqlite)):
            seconds = submit_and_decide(storage, THROUGHPUT_REQUESTS, name)
            rates[name] = THROUGHPUT_REQUESTS / seconds
            per_commit = seconds / (2 * THROUGHPUT_REQUESTS) * 1e6
            print(f"  {name:<7} {rates[name]:>9,.0f} requests/s  ({per_commit:,.0f} µs per commit)")
        print(f"  ratio sqlite/memory (time): {rates['memory'] / rates['sqlite']:.1f}\n")


def open_tab(storage: Storage) -> None:
    """The tab's requests, spread over the time the whole history will cover."""
    spacing = dt.timedelta(minutes=SIZES[-1] // IN_TAB)
    for n in range(IN_TAB):
        submitted = new_request(f"open-{n:03d}", T0 + n * spacing).submitted()
        storage.commit(Commit(submitted.request, None, submitted.effects))


def grow(storage: Storage, start: int, stop: int) -> None:
    """Add completed requests ``start`` to ``stop`` (the history the tab must not feel)."""
    for n in range(start, stop):
        request = new_request(f"h-{n:06d}", T0 + dt.timedelta(minutes=n)).submitted().request
        storage.commit(Commit(attrs.evolve(request, status=Status.COMPLETED), None))


def ms_per_page(storage: Storage, query: Query) -> float:
    for _ in range(PAGE_REPEATS // 10):  # warm caches (pages, converters) first
        storage.query(SHOP, query)
    timings = []
    for _ in range(PAGE_REPEATS):
        start = time.perf_counter()
        page = storage.query(SHOP, query)
        timings.append(time.perf_counter() - start)
    assert page.items, "the tab is empty"
    return statistics.median(timings) * 1e3


def listing(directory: Path) -> None:
    print(
        f"First page of a tab as history grows ({IN_TAB} requests in the tab, "
        f"median of {PAGE_REPEATS})"
    )
    queries: dict[str, Callable[[], Query]] = {
        "requests tab, 10 per page": lambda: Query(
            statuses=Tab.REQUESTS.statuses,  # type: ignore[arg-type, unused-ignore]
            limit=10,
        ),
        "history tab, 50 per page": lambda: Query(
            statuses=Tab.HISTORY.statuses,  # type: ignore[arg-type, unused-ignore]
            limit=50,
        ),
    }
    with stores(directory, "listing") as (memory, sqlite):
        figures: dict[tuple[str, str], list[float]] = {}
        for storage in (memory, sqlite):
            open_tab(storage)
        done = IN_TAB
        for size in SIZES:
            for storage in (memory, sqlite):
                grow(storage, done, size)
            done = size
            for name, storage in (("memory", memory), ("sqlite", sqlite)):
                for label, query in queries.items():
                    figures.setdefault((name, label), []).append(ms_per_page(storage, query()))
        header = "".join(f"{size:>10,}" for size in SIZES)
        print(f"  {'stored requests':<36}{header}  big/small")
        for (name, label), values in figures.items():
            cells = "".join(f"{v:>8.3f}ms" for v in values)
            print(f"  {name + ': ' + label:<36}{cells}   {values[-1] / values[0]:>6.2f}")


def main() -> None:
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="retouraanvraag-bench-") as name:
        directory = Path(name)
        throughput(directory)
        listing(directory)
    print(f"\n(total {time.perf_counter() - started:.1f} s)")


if __name__ == "__main__":
    main()
