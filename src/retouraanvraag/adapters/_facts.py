"""What a store keeps beside each request so that rule filters can run in its database.

The *facts* are the values the built-in rule fields read, normalised the way the Python
evaluation normalises them: texts stripped and case-folded with :meth:`str.casefold` (in
Python, when the request is written: SQL's ``lower()`` is ASCII-only in SQLite and no full case
folding anywhere), amounts in minor units with their currency, the items as a JSON array.
:mod:`retouraanvraag.adapters._sql_filter` writes conditions over these columns. This module
imports nothing of the rule language, so that opening a store does not load the grammar.
"""

from __future__ import annotations

import datetime as dt
import enum
import functools
import json
from typing import Final

from retouraanvraag.adapters._common import from_timestamp, timestamp
from retouraanvraag.model import ReturnRequest, fold_text
from retouraanvraag.shop import time_zone

__all__ = [
    "FACT_COLUMNS",
    "FIRST_WINDOW",
    "LINE_FIELDS",
    "LOCAL_DAY_FUNCTION",
    "SQL_SCAN_BUDGET",
    "Dialect",
    "add_facts",
    "fact_placeholders",
    "fact_values",
    "fold",
    "local_day",
    "next_window",
    "scan_budget",
]


class Dialect(enum.Enum):
    """The SQL a store speaks."""

    SQLITE = "sqlite"
    POSTGRES = "postgres"


def fold(value: str | None) -> str | None:
    """A text as rule comparisons see it: stripped and case-folded (``None`` stays unknown).

    The rule compiler's ``normalise_text``; a test holds the two equal.
    """
    return None if value is None else value.strip().casefold()


def _fold_tags(tags: frozenset[str]) -> list[str]:
    return sorted({tag.strip().casefold() for tag in tags})


#: The fact columns, in :func:`fact_values` order, with their SQLite and PostgreSQL types.
FACT_COLUMNS: Final = (
    ("f_country", "TEXT", "text"),
    ("f_order_minor", "INTEGER", "bigint"),
    ("f_currency", "TEXT", "text"),
    ("f_return_minor", "INTEGER", "bigint"),
    ("f_item_count", "INTEGER", "bigint"),
    ("f_photos", "INTEGER", "boolean"),
    ("f_ordered_at", "TEXT", "timestamptz"),
    ("f_delivered_at", "TEXT", "timestamptz"),
    ("f_refund", "TEXT", "text"),
    ("f_return_method", "TEXT", "text"),
    ("f_channel", "TEXT", "text"),
    ("f_email", "TEXT", "text"),
    ("f_order_number", "TEXT", "text"),
    ("f_discount", "TEXT", "text"),
    ("f_earlier", "INTEGER", "bigint"),
    ("f_tags", "TEXT", "text[]"),
    ("f_lines", "TEXT", "jsonb"),
)

#: The SQLite function (``local_day(timestamp, zone)``) a store registers on its connections.
LOCAL_DAY_FUNCTION: Final = "retour_local_day"

#: What an item's JSON array holds, in order (reasons twice: as stored, and folded).
LINE_FIELDS: Final = (
    "reason",
    "reason_folded",
    "item_name",
    "sku",
    "item_value",
    "quantity",
    "product_type",
    "product_tags",
    "vendor",
)


def fact_values(request: ReturnRequest, dialect: Dialect) -> tuple[object, ...]:
    """The request's facts, in :data:`FACT_COLUMNS` order, as ``dialect`` stores them."""
    currency = request.order_value.currency
    lines = [
        [
            item.reason,
            fold_text(item.reason),
            fold(item.name),
            fold(item.sku),
            item.unit_price.amount * item.quantity,
            item.quantity,
            fold(item.product_type),
            _fold_tags(item.product_tags),
            fold(item.vendor),
        ]
        for item in request.items
    ]
    if dialect is Dialect.SQLITE:
        ordered: object = _optional_timestamp(request.ordered_at, "ordered_at")
        delivered: object = _optional_timestamp(request.delivered_at, "delivered_at")
        tags: object = _json(_fold_tags(request.tags))
        photos: object = int(any(item.photos for item in request.items))
    else:
        ordered, delivered = request.ordered_at, request.delivered_at
        tags = _fold_tags(request.tags)
        photos = any(item.photos for item in request.items)
    return (
        request.from_country,
        request.order_value.amount,
        currency,
        request.return_value.amount,
        sum(item.quantity for item in request.items),
        photos,
        ordered,
        delivered,
        request.refund_method.value,
        fold(request.return_method),
        request.channel.value,
        fold(request.customer.email),
        fold(request.order_number),
        fold(request.discount_code),
        request.earlier_returns,
        tags,
        _json(lines),
    )


#: The facts a PostgreSQL index may carry beside a tab's keys: each of bounded, small size
#: (an index entry must stay under a page's third; texts and the items stay in the heap).
_SMALL_FACTS: Final = (
    "f_country",
    "f_order_minor",
    "f_currency",
    "f_return_minor",
    "f_item_count",
    "f_photos",
    "f_ordered_at",
    "f_delivered_at",
    "f_refund",
    "f_channel",
    "f_earlier",
)


# -- how a store pages a listing whose condition runs in its database -------------------------
#
# A rule condition that runs as SQL tests rows in the database, at a fraction of a decode's
# cost: a page reads windows of ``FIRST_WINDOW * (limit + 1)`` rows, larger each round, and
# stops after ``SQL_SCAN_BUDGET`` rows (a fifth of that when the condition reads the items'
# JSON) with a short page and a cursor: about as long as decoding one page takes.

FIRST_WINDOW: Final = 8
SQL_SCAN_BUDGET: Final = 10_000
ITEM_COST: Final = 5


def scan_budget(*, reads_items: bool) -> int:
    """How many rows one page of a filtered listing may examine."""
    return SQL_SCAN_BUDGET // ITEM_COST if reads_items else SQL_SCAN_BUDGET


def next_window(window: int, examined: int, matches: int, limit: int) -> int:
    """How many rows to read next: enough for the matches still missing, at the rate so far.

    With no match yet the window grows fourfold; a quarter more than the estimate keeps one
    more round rare.
    """
    if not matches:
        return window * 4
    missing = limit + 1 - matches
    return max(window, -(-missing * examined * 5 // (4 * matches)))


def add_facts(dialect: Dialect) -> tuple[str, ...]:
    """The statements that add the fact columns to ``requests``, and the index filters read.

    SQLite's index carries every fact beside ``(shop_id, status, created_at, id)``, so that a
    condition is tested on the index alone; PostgreSQL's carries the small ones (``INCLUDE``).
    Filling the columns of existing rows is the store's part (:func:`fact_values`).
    """
    sqlite = dialect is Dialect.SQLITE
    statements = [
        f"ALTER TABLE requests ADD COLUMN {name} {lite if sqlite else pg}"
        for name, lite, pg in FACT_COLUMNS
    ]
    keys = "shop_id, status, created_at, id"
    if sqlite:
        names = ", ".join(name for name, _, _ in FACT_COLUMNS)
        statements.append(
            f"CREATE INDEX requests_by_status_with_facts ON requests ({keys}, {names})"
        )
    else:
        statements.append(
            f"CREATE INDEX requests_by_status_with_facts ON requests ({keys}) "
            f"INCLUDE ({', '.join(_SMALL_FACTS)})"
        )
    return tuple(statements)


def fact_placeholders(dialect: Dialect) -> str:
    """The placeholders for :func:`fact_values` in an ``INSERT`` (PostgreSQL casts the JSON)."""
    if dialect is Dialect.SQLITE:
        return ", ".join("?" for _ in FACT_COLUMNS)
    return ", ".join(["%s"] * (len(FACT_COLUMNS) - 1) + ["%s::jsonb"])


def _optional_timestamp(moment: dt.datetime | None, field: str) -> str | None:
    return None if moment is None else timestamp(moment, field=field)


def _json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


@functools.lru_cache(maxsize=64)
def _zone(name: str) -> dt.tzinfo:
    return time_zone(name)


def local_day(moment: str | None, zone: str) -> int | None:
    """SQLite's ``retour_local_day``: a stored timestamp's date in ``zone``, as an ordinal.

    The same conversion as the Python evaluation (``moment.astimezone(tz).date()``), so that
    dates at daylight-saving edges land on the same day in both.
    """
    if moment is None:
        return None
    return from_timestamp(moment).astimezone(_zone(zone)).date().toordinal()
