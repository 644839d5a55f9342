"""A rule-filtered requests tab: the first page, with the condition run in the database.

Run with ``python benchmarks/bench_sql_filter.py [sizes…]`` (default 10k, 100k and 1M stored
requests). Every stored request is in the requests tab (the worst case for a filter: nothing
narrows the rows before it). The first page (50 requests) is timed, median of several runs:

- unfiltered: the baseline every filtered page is compared with (target: at most 2 times);
- a filter on a built-in field matching ~15 %, ~1 % and nothing (request and item fields);
- beside each, the same condition as a Python predicate (``Query(where=…)``): how the tab was
  filtered before, decoding every row it looks at.

Rows are written with the statements ``SqliteStorage.commit`` uses, in one transaction per
batch, so that a million requests take a minute to set up rather than an hour of commits.
Ratios come from one run; nothing here is asserted.
"""

from __future__ import annotations

import datetime as dt
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

from retouraanvraag import rules
from retouraanvraag._codec import request_to_json
from retouraanvraag.adapters import SqliteStorage
from retouraanvraag.adapters import sqlite as sqlite_adapter
from retouraanvraag.adapters._common import refund_totals, timestamp
from retouraanvraag.adapters._facts import Dialect, fact_values
from retouraanvraag.model import Customer, Money, ReturnItem, ReturnRequest, Status
from retouraanvraag.ports import Query, Tab

SHOP: Final = "shop-bench"
T0: Final = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
SIZES: Final = (10_000, 100_000, 1_000_000)
LIMIT: Final = 50
BATCH: Final = 5_000
ROUNDS: Final = 41

#: (label, condition, share of stored requests it matches)
FILTERS: Final = (
    ("country, ~15 %", "Van land IS België", 0.15),
    ("order value, ~1 %", "Bestelwaarde > €500,00", 0.01),
    ("country, nothing", "Van land IS Frankrijk", 0.0),
    ("item reason, ~15 %", 'Retourreden IS "Product beschadigd"', 0.15),
    ("item SKU, nothing", 'SKU BEGINT MET "ZZ"', 0.0),
)


def make_request(n: int, chance: random.Random) -> ReturnRequest:
    """Request ``n``: 15 % from Belgium, 1 % above €500, 15 % with a damaged item."""
    country = "BE" if chance.random() < 0.15 else "NL"
    value = 60_000 if chance.random() < 0.01 else 5_995
    reason = "damaged" if chance.random() < 0.15 else "too_small"
    items = (
        ReturnItem(f"TS-{n % 97}", "T-shirt", 1, Money(1995), reason),
        ReturnItem(f"JN-{n % 89}", "Jeans", 1, Money(3995), "too_small"),
    )
    return ReturnRequest(
        shop_id=SHOP,
        id=f"r-{n:07d}",
        order_number=f"{100_000 + n}",
        customer=Customer(f"klant{n}@example.nl", "Klant"),
        from_country=country,
        order_value=Money(value),
        items=items,
        created_at=T0 + dt.timedelta(seconds=n),
        delivered_at=T0 + dt.timedelta(seconds=n) - dt.timedelta(days=3),
        status=Status.REJECTED if n % 10 == 0 else Status.REQUESTED,
        version=1,
    )


def row(request: ReturnRequest) -> tuple[object, ...]:
    """The row ``SqliteStorage.commit`` writes for a new request."""
    paid, refunded = refund_totals(request)
    return (
        request.version,
        request.status.value,
        timestamp(request.created_at, field="created_at"),
        int(request.needs_attention),
        paid,
        refunded,
        request_to_json(request),
        *fact_values(request, Dialect.SQLITE),
        request.shop_id,
        request.id,
    )


def grow(path: Path, start: int, stop: int, chance: random.Random) -> None:
    with SqliteStorage(path) as storage:
        connection = storage._connection()  # noqa: SLF001 - bulk loading, outside the API
        for first in range(start, stop, BATCH):
            rows = [row(make_request(n, chance)) for n in range(first, min(first + BATCH, stop))]
            connection.execute("BEGIN IMMEDIATE")
            connection.executemany(sqlite_adapter._INSERT_REQUEST, rows)  # noqa: SLF001
            connection.execute("COMMIT")


def timed(storage: SqliteStorage, query: Query) -> tuple[float, str]:
    """One first page: seconds, and what it held (matches, ``+`` when a cursor follows)."""
    start = time.perf_counter()
    page = storage.query(SHOP, query)
    seconds = time.perf_counter() - start
    return seconds, f"{len(page.items)}{'+' if page.next_cursor else ''}"


def measure(path: Path, size: int) -> dict[str, tuple[float, str]]:
    """Median ms per first page. The SQL pages and the unfiltered one take turns, round by
    round, so that their ratios come from the same moments of a shared machine."""
    tab: Callable[..., Query] = lambda **extra: Query(  # noqa: E731
        statuses=Tab.REQUESTS.statuses, limit=LIMIT, **extra
    )
    conditions = {label: rules.compile_condition(text) for label, text, _ in FILTERS}
    turns = {"unfiltered": tab()} | {
        f"{label}: SQL": tab(condition=condition) for label, condition in conditions.items()
    }
    timings: dict[str, list[float]] = {label: [] for label in turns}
    shapes: dict[str, str] = {}
    with SqliteStorage(path) as storage:
        for query in turns.values():  # warm up
            storage.query(SHOP, query)
        for _ in range(ROUNDS):
            for label, query in turns.items():
                seconds, shapes[label] = timed(storage, query)
                timings[label].append(seconds)
        repeats = 3 if size >= 100_000 else 7
        for label, condition in conditions.items():
            name = f"{label}: Python"
            runs = [timed(storage, tab(where=condition)) for _ in range(repeats)]
            timings[name] = [seconds for seconds, _ in runs]
            shapes[name] = runs[-1][1]
    return {label: (statistics.median(t) * 1e3, shapes[label]) for label, t in timings.items()}


def main() -> None:
    sizes = tuple(int(a) for a in sys.argv[1:]) or SIZES
    chance = random.Random(20261201)
    print(
        f"First page ({LIMIT}) of the requests tab, every stored request in the tab; ms "
        "(median), page shape (matches, + when a cursor follows), ratio to unfiltered"
    )
    table: dict[str, list[tuple[float, str]]] = {}
    with tempfile.TemporaryDirectory(prefix="retouraanvraag-bench-") as name:
        path = Path(name) / "filter.sqlite3"
        done = 0
        for size in sizes:
            started = time.perf_counter()
            grow(path, done, size, chance)
            done = size
            print(f"  ({size:,} stored in {time.perf_counter() - started:.0f} s)", flush=True)
            figures = measure(path, size)
            order = ["unfiltered"] + [
                f"{f[0]}: {how}" for f in FILTERS for how in ("SQL", "Python")
            ]
            for label in order:
                table.setdefault(label, []).append(figures[label])
            print(f"  (file: {path.stat().st_size / 1e6:,.0f} MB)", flush=True)
    header = "".join(f"{size:>22,}" for size in sizes)
    print(f"\n  {'stored requests':<30}{header}")
    base = table["unfiltered"]
    for label, cells_of in table.items():
        cells = "".join(
            f"{ms:>9.2f} ms {shape:>4} {ms / b[0]:>5.1f}x"
            for (ms, shape), b in zip(cells_of, base, strict=True)
        )
        print(f"  {label:<30}{cells}")


if __name__ == "__main__":
    main()
