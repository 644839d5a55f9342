"""Counting a tab in the store (``Storage.count``, ``Desk.requests_count``), never by paging."""

from __future__ import annotations

from pathlib import Path

import pytest

from retouraanvraag import InvalidInput, Query, Status
from retouraanvraag.adapters import MemoryStorage, SqliteStorage
from retouraanvraag.ports import Storage
from retouraanvraag.rules import Field, FieldRegistry, FieldType, Scope, compile_condition

from .conftest import SHOP, build_world


def _all(pages: object) -> int:
    total, cursor = 0, None
    while True:
        page = pages(cursor)  # type: ignore[operator]
        total += len(page.items)
        if page.next_cursor is None:
            return total
        cursor = page.next_cursor


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_the_requests_tab_count_is_what_its_pages_list(kind: str, tmp_path: Path) -> None:
    storage: Storage = MemoryStorage() if kind == "memory" else SqliteStorage(tmp_path / "c.db")
    world = build_world(storage)
    made = [
        world.desk.submit(world.new_request(from_country="BE" if n % 3 else "NL")) for n in range(8)
    ]
    for request in made[:3]:
        world.desk.reject(SHOP, request.id, reason="Te laat", actor="anna")
    for rejected in (None, True, False):
        for rule in (None, "Van land IS België", "Van land IS Frankrijk"):
            count = world.desk.requests_count(SHOP, rejected=rejected, rule=rule)
            listed = _all(
                lambda cursor, rejected=rejected, rule=rule: world.desk.requests_tab(
                    SHOP, rejected=rejected, rule=rule, limit=2, cursor=cursor
                )
            )
            assert count == listed, (rejected, rule)
    assert world.desk.requests_count(SHOP, rejected=True) == 3


def test_a_condition_on_a_host_field_is_counted_by_paging_not_by_the_database(
    tmp_path: Path,
) -> None:
    odd = Field(
        "odd_order", "Oneven bestelling", "Odd order", FieldType.YES_NO, Scope.REQUEST,
        lambda request: int(request.order_number) % 2 == 1, optional=False,
    )  # fmt: skip
    condition = compile_condition(
        "Oneven bestelling IS ja", fields=FieldRegistry().with_fields(odd)
    )
    with SqliteStorage(tmp_path / "c.db") as storage:
        with pytest.raises(InvalidInput) as caught:
            storage.count(SHOP, Query(condition=condition))
        assert caught.value.field == "condition"
        assert storage.count(SHOP, Query(statuses={Status.REQUESTED})) == 0
    memory = MemoryStorage()  # evaluates everything in Python: it can count it
    assert memory.count(SHOP, Query(condition=condition)) == 0
