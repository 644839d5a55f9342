"""The desk's submit + approve on a SQLite file, against the same statements run by hand.

Run with ``python benchmarks/bench_desk.py`` (or ``make bench``). Everything is measured in one
run and printed as a ratio (DESIGN §8, issue "renovation" item 7), never asserted.

How the baseline is kept honest: a first, untimed pass runs the desk over a store whose
connections record every statement they are given, with its parameters, in order — the
pragmas, ``BEGIN IMMEDIATE``/``COMMIT``, the look-ups of the commit plan, the inserts and
updates. The baseline then replays exactly those statements with plain :mod:`sqlite3` on a
fresh file, with the same parameters (request bodies already encoded), in the same
transactions. So the ratio is what the library adds on top of the database work it asks for:
building and checking the request, the rules and the commit plan, encoding the body, decoding
what it reads back. Both sides write to the same disk with ``synchronous = FULL`` (the store's
setting), each commit waiting for its fsync; a second table shows ``synchronous = OFF``, where
the fsync no longer hides the library's own time.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from retouraanvraag import Customer, Desk, Money, NewItem, NewRequest, PaidFee, Policy
from retouraanvraag.adapters import SqliteStorage
from retouraanvraag.adapters import sqlite as sqlite_adapter
from retouraanvraag.testing import FixedClock

SHOP = "shop-bench"
NOW = dt.datetime(2026, 6, 1, 12, tzinfo=dt.UTC)
REQUESTS = 400
ROUNDS = 3

Statement = tuple[str, str, Any]


class _Recording(sqlite3.Connection):
    """A connection that notes every statement it runs (the store's own ``_Connection``)."""

    log: list[Statement]

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        type(self).log.append(("one", sql, parameters))
        return super().execute(sql, parameters)

    def executemany(self, sql: str, parameters: Iterable[Any], /) -> sqlite3.Cursor:
        rows = list(parameters)
        type(self).log.append(("many", sql, rows))
        return super().executemany(sql, rows)


@contextmanager
def recording() -> Iterator[list[Statement]]:
    """Every statement the SQLite store runs while the block runs."""
    log: list[Statement] = []
    _Recording.log = log
    original = sqlite_adapter._Connection  # noqa: SLF001 - a benchmark may look inside
    sqlite_adapter._Connection = _Recording  # type: ignore[misc, assignment]  # noqa: SLF001
    try:
        yield log
    finally:
        sqlite_adapter._Connection = original  # type: ignore[misc]  # noqa: SLF001


def new_request(serial: int) -> NewRequest:
    return NewRequest(
        shop_id=SHOP,
        order_number=f"{100000 + serial}",
        customer=Customer("klant@example.nl", "Klant Jansen", "nl"),
        from_country="Nederland",
        order_value=Money(5995),
        items=(
            NewItem("TS-1", "T-shirt", 1, Money(1995), "Te klein"),
            NewItem("JN-2", "Jeans", 1, Money(3995), "too_large"),
        ),
        ordered_at=NOW - dt.timedelta(days=10),
        delivered_at=NOW - dt.timedelta(days=5),
        return_fee=PaidFee(Money(495), f"pay_{serial}"),
    )


def library(
    path: Path, requests: list[NewRequest], *, keys: bool, opened: Callable[[], object] = int
) -> float:
    """Seconds for the desk to submit and approve (with label) every request."""
    with SqliteStorage(path) as storage:
        desk = Desk(storage, policy=Policy(), clock=FixedClock(NOW))
        opened()
        started = time.perf_counter()
        for serial, new in enumerate(requests):
            submitted = desk.submit(new, idempotency_key=f"s{serial}" if keys else None)
            desk.approve(
                SHOP,
                submitted.id,
                with_label=True,
                actor="anna",
                idempotency_key=f"a{serial}" if keys else None,
            )
        return time.perf_counter() - started


def replay(path: Path, statements: list[Statement], *, schema: list[Statement]) -> float:
    """Seconds for plain sqlite3 to run ``statements`` (the schema is made first, untimed)."""
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        _run(connection, schema)
        started = time.perf_counter()
        _run(connection, statements)
        return time.perf_counter() - started
    finally:
        connection.close()


def measure(directory: Path, *, keys: bool, synchronous: str) -> tuple[float, float, int]:
    requests = [new_request(i) for i in range(REQUESTS)]
    with recording() as log:
        marks: list[int] = []
        path = directory / f"recorded-{keys}-{synchronous}.sqlite3"
        library(path, requests, keys=keys, opened=lambda: marks.append(len(log)))
    opening, work = log[: marks[0]], log[marks[0] :]
    pragma = [("one", f"PRAGMA synchronous = {synchronous}", ())]
    lib_times, raw_times = [], []
    for round_ in range(ROUNDS):
        lib_path = directory / f"lib-{keys}-{synchronous}-{round_}.sqlite3"
        raw_path = directory / f"raw-{keys}-{synchronous}-{round_}.sqlite3"
        lib_times.append(_timed_library(lib_path, requests, keys=keys, synchronous=synchronous))
        raw_times.append(replay(raw_path, [*pragma, *work], schema=opening))
    return statistics.median(lib_times), statistics.median(raw_times), len(work)


def _run(connection: sqlite3.Connection, statements: list[Statement]) -> None:
    execute, executemany = connection.execute, connection.executemany
    for how, sql, parameters in statements:
        if how == "one":
            execute(sql, parameters).fetchall()
        else:
            executemany(sql, parameters)


def _timed_library(
    path: Path, requests: list[NewRequest], *, keys: bool, synchronous: str
) -> float:
    if synchronous == "FULL":
        return library(path, requests, keys=keys)
    # The store always asks for FULL; to compare without the fsync, both sides turn it off
    # on every connection they open.
    original = sqlite_adapter.SqliteStorage._open  # noqa: SLF001

    def relaxed(self: SqliteStorage) -> sqlite3.Connection:
        connection = original(self)
        connection.execute(f"PRAGMA synchronous = {synchronous}")
        return connection

    sqlite_adapter.SqliteStorage._open = relaxed  # type: ignore[method-assign]  # noqa: SLF001
    try:
        return library(path, requests, keys=keys)
    finally:
        sqlite_adapter.SqliteStorage._open = original  # type: ignore[method-assign]  # noqa: SLF001


def main() -> None:
    cases = [
        (f"{label}, synchronous {sync}", keys, sync)
        for sync in ("FULL", "OFF")
        for label, keys in (("no idempotency keys", False), ("with idempotency keys", True))
    ]
    with tempfile.TemporaryDirectory(prefix="bench-desk-", dir=Path.cwd()) as name:
        directory = Path(name)
        print(
            f"Desk submit + approve (with label) of {REQUESTS} requests on a SQLite file, "
            f"median of {ROUNDS} rounds, against the same statements replayed by plain sqlite3"
        )
        print("\n| case | statements | desk µs/request | sqlite3 µs/request | ratio |")
        print("|---|---:|---:|---:|---:|")
        for label, keys, sync in cases:
            lib, raw, count = measure(directory, keys=keys, synchronous=sync)
            print(
                f"| {label} | {count} | {lib / REQUESTS * 1e6:,.0f} | "
                f"{raw / REQUESTS * 1e6:,.0f} | {lib / raw:.2f}x |"
            )
        print("\ntarget (issue 8, item 7): at most 1.5x with synchronous FULL")


if __name__ == "__main__":
    main()
