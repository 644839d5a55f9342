"""The SQL both stores share (``adapters._sql``): one statement each, in two dialects.

The stores' own suites (``test_storage``, ``test_postgres``, ``test_storage_damage``) run every
statement against a database; these tests hold what they cannot see: that the two dialects
write the same statements but for their own words, and that the shared listing loop keeps its
promises (budgets, cursors, damaged rows) whatever a store's positions look like.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Callable, Sequence

import attrs
import pytest

from retouraanvraag.adapters import _sql
from retouraanvraag.adapters._common import Position, damaged_request, decode_cursor, timestamp
from retouraanvraag.adapters._facts import FACT_COLUMNS, Dialect, fact_values
from retouraanvraag.adapters.sqlite import _DRIVER as SQLITE_DRIVER
from retouraanvraag.model import ReturnRequest
from retouraanvraag.ports import Commit, Query
from retouraanvraag.testing.storage_contract import sample_request

STATEMENTS = [field.name for field in attrs.fields(_sql.Statements) if field.name != "dialect"]


def _in_sqlite_words(statement: str) -> str:
    """A PostgreSQL statement with its dialect's words put in SQLite's."""
    for postgres, sqlite in (
        ("%s::jsonb", "?"),
        ("::text", ""),
        (" FOR UPDATE SKIP LOCKED", ""),
        (" FOR UPDATE", ""),
        (" ON CONFLICT DO NOTHING", ""),
        ("= ANY(%s)", "= %s"),
        ("needs_attention = true", "needs_attention = 1"),
        ("%s", "?"),
    ):
        statement = statement.replace(postgres, sqlite)
    return statement


@pytest.mark.parametrize("name", [n for n in STATEMENTS if n not in {"stored", "claimable"}])
def test_the_dialects_write_each_statement_alike_but_for_their_own_words(name: str) -> None:
    assert _in_sqlite_words(getattr(_sql.POSTGRES, name)) == getattr(_sql.SQLITE, name)


def test_the_claim_differs_only_in_the_times_sqlite_checks_and_the_lock() -> None:
    unwritten = _sql.SQLITE_DIALECT.unwritten_times
    assert unwritten is not None
    sqlite = _sql.SQLITE.claimable.replace(f" OR NOT ({unwritten}))", "").replace("AND ((", "AND (")
    assert _in_sqlite_words(_sql.POSTGRES.claimable) == sqlite
    assert _sql.POSTGRES.claimable.endswith("LIMIT %s FOR UPDATE SKIP LOCKED")


def test_the_stored_fee_is_read_in_each_dialect_after_version_and_paid_fee() -> None:
    for statements in (_sql.SQLITE, _sql.POSTGRES):
        assert statements.stored.startswith("SELECT version, fee_paid_minor, ")
        assert statements.dialect.stored_fee in statements.stored


@pytest.mark.parametrize("name", STATEMENTS)
def test_each_dialect_binds_with_its_own_placeholder_only(name: str) -> None:
    sqlite, postgres = getattr(_sql.SQLITE, name), getattr(_sql.POSTGRES, name)
    assert "%s" not in sqlite
    assert "?" not in postgres


@pytest.mark.parametrize("statements", [_sql.SQLITE, _sql.POSTGRES], ids=["sqlite", "postgres"])
def test_a_request_row_binds_every_value_the_commit_prepares(statements: _sql.Statements) -> None:
    # What ``prepare`` binds: the columns, the body, the facts, the shop and the id.
    width = len(_sql.COLUMN_NAMES) + 1 + len(FACT_COLUMNS) + 2
    mark = re.escape(statements.dialect.param)
    for statement in (statements.insert_request, statements.update_request):
        assert len(re.findall(mark, statement)) == width
    assert len(_sql.prepare(SQLITE_DRIVER, Commit(sample_request("r-1"), None)).row) == width


def test_prepare_writes_the_sqlite_row_as_the_store_always_has() -> None:
    request = sample_request("r-1", fee=495)
    prepared = _sql.prepare(SQLITE_DRIVER, Commit(request, None))
    assert prepared.row[:7] == (
        1,
        request.status.value,
        timestamp(request.created_at, field="created_at"),
        int(request.needs_attention),
        495,
        0,
        prepared.body,
    )
    assert prepared.row[7:-2] == fact_values(prepared.saved, Dialect.SQLITE)
    assert prepared.row[-2:] == (request.shop_id, request.id)
    assert prepared.totals == (495, 0)


def test_keyed_matches_a_set_of_keys_as_one_array_or_one_key_a_run() -> None:
    assert _sql.POSTGRES_DIALECT.keyed("seq") == "seq = ANY(%s)"
    assert _sql.SQLITE_DIALECT.keyed("seq") == "seq = ?"


def test_both_holds_when_both_predicates_hold() -> None:
    yes, no = (lambda _: True), (lambda _: False)
    request = sample_request("r-1")
    assert _sql.both(None, None) is None
    assert _sql.both(yes, None) is yes
    assert _sql.both(None, no) is no
    combined = _sql.both(yes, no)
    assert combined is not None
    assert not combined(request)
    combined = _sql.both(yes, yes)
    assert combined is not None
    assert combined(request)


# -- the shared listing loop, over a store of positions only ----------------------------------


_At = tuple[object, object]
_Rows = list[_sql.Fetched[_At]]


@attrs.frozen
class _Listed:
    """A driver whose rows are positions only: ids it has no request for are damaged rows,
    ``stuck`` ones positions no cursor can hold."""

    requests: dict[str, ReturnRequest]
    stuck: frozenset[str] = frozenset()

    def position(self, at: _At) -> Position:
        return str(at[0]), str(at[1])

    def resumable(self, at: _At) -> bool:
        return at[1] not in self.stuck

    def text(self, value: object, column: str) -> str:
        if not isinstance(value, str):
            raise ValueError(f"column {column} holds no text")  # noqa: TRY004 - a reader's error
        return value


def _fake_request_of(
    driver: _Listed, shop_id: str, request_id: str, row: Sequence[object]
) -> ReturnRequest:
    del shop_id, row
    found = driver.requests.get(request_id)
    if found is None:
        raise damaged_request("shop", request_id, "unreadable")
    return found


def _listing(count: int) -> _Rows:
    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    return [
        (((t0 + dt.timedelta(minutes=n)).strftime("%Y-%m-%dT%H:%M:%S.%fZ"), f"r{n:02d}"), ())
        for n in range(count)
    ]


def _fetcher(rows: _Rows, reads: list[int]) -> Callable[[_At | None, int], _Rows]:
    def fetch(after: _At | None, limit: int) -> _Rows:
        reads.append(limit)
        return rows[_after(rows, after) : _after(rows, after) + limit]

    return fetch


def _after(rows: _Rows, after: _At | None) -> int:
    return 0 if after is None else next(i for i, (at, _) in enumerate(rows) if at == after) + 1


@pytest.fixture
def listed_requests(monkeypatch: pytest.MonkeyPatch) -> _Listed:
    monkeypatch.setattr(_sql, "request_of", _fake_request_of)
    requests = {f"r{n:02d}": sample_request(f"r{n:02d}") for n in range(20)}
    return _Listed(requests)


def test_a_scan_hands_back_a_short_page_with_a_cursor_once_its_budget_is_spent(
    listed_requests: _Listed,
) -> None:
    reads: list[int] = []
    page = _sql.scanned_page(
        listed_requests,  # type: ignore[arg-type]
        _fetcher(_listing(20), reads),
        Query(limit=2, where=lambda request: request.id == "r19"),
        shop_id="shop",
        after=None,
        budget=6,
        batch=3,
        log=logging.getLogger("test"),
    )
    assert page.items == ()
    assert page.next_cursor is not None
    assert decode_cursor(page.next_cursor)[1] == "r05"  # six rows read: resume after the sixth
    assert reads == [3, 3]


def test_a_scan_steps_over_a_position_no_cursor_can_hold(listed_requests: _Listed) -> None:
    driver = attrs.evolve(listed_requests, stuck=frozenset({"r05"}))
    reads: list[int] = []
    page = _sql.scanned_page(
        driver,  # type: ignore[arg-type]
        _fetcher(_listing(20), reads),
        Query(limit=2, where=lambda _: False),
        shop_id="shop",
        after=None,
        budget=6,
        batch=3,
        log=logging.getLogger("test"),
    )
    assert page.next_cursor is not None
    assert decode_cursor(page.next_cursor)[1] == "r08"
    assert reads == [3, 3, 3]


def test_a_scan_leaves_damaged_rows_out_and_logs_each(
    listed_requests: _Listed, caplog: pytest.LogCaptureFixture
) -> None:
    driver = attrs.evolve(
        listed_requests,
        requests={k: v for k, v in listed_requests.requests.items() if k not in {"r01", "r03"}},
    )
    with caplog.at_level(logging.ERROR, logger="test"):
        page = _sql.scanned_page(
            driver,  # type: ignore[arg-type]
            _fetcher(_listing(20), []),
            Query(limit=3),
            shop_id="shop",
            after=None,
            budget=100,
            batch=200,
            log=logging.getLogger("test"),
        )
    assert [request.id for request in page.items] == ["r00", "r02", "r04"]
    assert page.next_cursor is not None
    assert decode_cursor(page.next_cursor)[1] == "r04"
    logged = [record.getMessage() for record in caplog.records]
    assert len(logged) == 2
    assert all("left out of the listing" in message for message in logged)


def test_a_filtered_page_that_finds_nothing_stops_after_its_budget_of_rows(
    listed_requests: _Listed,
) -> None:
    rows = _listing(20)
    windows: list[tuple[_At | None, int]] = []

    def window(after: _At | None, size: int, limit: int) -> tuple[_At | None, _Rows]:
        del limit  # the condition matches nothing
        windows.append((after, size))
        start = _after(rows, after)
        end = start + size - 1
        return (rows[end][0] if end < len(rows) else None), []

    page = _sql.filtered_page(
        listed_requests,  # type: ignore[arg-type]
        window,
        Query(limit=2),
        shop_id="shop",
        after=None,
        rows=10,
        decoded=100,
        log=logging.getLogger("test"),
    )
    assert page.items == ()
    assert page.next_cursor is not None
    assert decode_cursor(page.next_cursor)[1] == "r09"  # resumes after the ten rows examined
    assert windows == [(None, 10)]


def test_a_filtered_page_reads_on_past_its_matches_until_it_has_enough(
    listed_requests: _Listed,
) -> None:
    rows = _listing(20)
    matching = [row for row in rows if row[0][1] in {"r03", "r04", "r15"}]

    def window(after: _At | None, size: int, limit: int) -> tuple[_At | None, _Rows]:
        start = _after(rows, after)
        end = start + size - 1
        until = rows[end][0] if end < len(rows) else None
        last = len(rows) if until is None else end + 1
        found = [row for row in matching if start <= rows.index(row) < last]
        return until, found[:limit]

    page = _sql.filtered_page(
        listed_requests,  # type: ignore[arg-type]
        window,
        Query(limit=2),
        shop_id="shop",
        after=None,
        rows=10_000,
        decoded=10_000,
        log=logging.getLogger("test"),
    )
    assert [request.id for request in page.items] == ["r03", "r04"]
    assert page.next_cursor is not None
    assert decode_cursor(page.next_cursor)[1] == "r04"
