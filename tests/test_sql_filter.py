"""Rule conditions run as SQL: the database's answer is the Python evaluation's, always.

The law: for any condition over the built-in fields and any requests, the rows a database
selects with :func:`compile_filter` are exactly the requests the compiled Python predicate
(:func:`retouraanvraag.rules.compile_condition`'s reference semantics) accepts. It is checked
on raw tables holding nothing but the fact columns, so that no Python re-check in a store can
hide a wrong translation: on SQLite, and on a real PostgreSQL server (``tests/_postgres.py``).
The stores' own listings, migration and fall-back are tested at the end.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from retouraanvraag import rules
from retouraanvraag.adapters import MemoryStorage, SqliteStorage
from retouraanvraag.adapters._common import timestamp
from retouraanvraag.adapters._facts import (
    FACT_COLUMNS,
    LOCAL_DAY_FUNCTION,
    Dialect,
    add_facts,
    fact_placeholders,
    fact_values,
    fold,
    local_day,
)
from retouraanvraag.adapters._sql_filter import compile_filter
from retouraanvraag.model import (
    DEFAULT_REASONS,
    Channel,
    Customer,
    Money,
    PhotoRef,
    ReasonCatalogue,
    RefundMethod,
    ReturnItem,
    ReturnRequest,
    Status,
)
from retouraanvraag.ports import Commit, Query, Storage
from retouraanvraag.rules import (
    DEFAULT_FIELDS,
    And,
    Compare,
    Condition,
    ConditionFilter,
    Field,
    FieldType,
    Not,
    Operator,
    Or,
    Scope,
)
from retouraanvraag.rules._compiler import normalise_text
from tests import _postgres

# -- what the generated requests and conditions are made of ----------------------------------

#: Zones with daylight saving, one at midnight (São Paulo until 2019), a half-hour shift (Lord
#: Howe), a skipped day (Apia, 2011-12-30), and none.
ZONES: Final = (
    "Europe/Amsterdam",
    "America/Sao_Paulo",
    "Australia/Lord_Howe",
    "Pacific/Apia",
    "UTC",
)
#: Instants next to changes of offset, where a local date is easy to get wrong.
EDGES: Final = tuple(
    dt.datetime(*parts, tzinfo=dt.UTC)  # type: ignore[misc]
    for parts in (
        (2026, 3, 29, 0, 59, 59, 999999),  # Amsterdam: 01:59:59.999999 → then 03:00
        (2026, 3, 29, 1, 0),
        (2026, 10, 24, 23, 0),  # Amsterdam: midnight, CEST
        (2026, 10, 25, 0, 59, 59, 999999),
        (2026, 10, 25, 1, 0),  # the hour that happens twice
        (2026, 10, 25, 22, 59, 59, 999999),
        (2018, 11, 4, 2, 59, 59, 999999),  # São Paulo: midnight skipped
        (2018, 11, 4, 3, 0),
        (2019, 2, 17, 1, 59, 59, 999999),  # São Paulo: 23:00 twice
        (2019, 2, 17, 2, 0),
        (2026, 4, 4, 14, 59, 59),  # Lord Howe: 02:00 → 01:30
        (2026, 4, 4, 15, 0),
        (2011, 12, 29, 9, 59, 59),  # Apia: no December 30th
        (2011, 12, 29, 10, 0),
        (2026, 1, 1, 0, 0),
        (2025, 12, 31, 23, 59, 59, 999999),
    )
)
DAYS: Final = tuple(
    sorted({moment.date() + dt.timedelta(days=d) for moment in EDGES for d in (-1, 0, 1)})
)

#: Text that folds in surprising ways (ß → ss, the Kelvin sign → k, dotted İ → i̇, final
#: sigma), SQL's own metacharacters, and plain words, so that comparisons often hit.
TEXT_PIECES: Final = (
    "a", "B", "ab", "straße", "STRASSE", "ß", "ẞ", "K", "k", "İ", "i̇", "\u0131", "ΣΑΣ", "σας",
    "ﬁ", "fi", "é", "é", "%", "_", "'", '"', "\\", "--", ";", "' OR 1=1 --", "100%", "a_b",
    "中", "🙂", "\u00a0", "ŉ",
)  # fmt: skip
SPACES: Final = ("", " ", "  ", "\u00a0", "\u2003")


def _text_of(pieces: Sequence[str], before: str, after: str) -> str:
    return before + "".join(pieces) + after


texts = st.builds(
    _text_of,
    st.lists(st.sampled_from(TEXT_PIECES), min_size=1, max_size=3),
    st.sampled_from(SPACES),
    st.sampled_from(SPACES),
).filter(lambda s: s.strip() != "")

CURRENCIES: Final = ("EUR", "USD")
AMOUNTS: Final = (0, 1, 499, 500, 501, 4995, 10**15 - 1, 10**15)
COUNTRIES: Final = ("NL", "BE", "DE", "GB")
REASONS: Final = ReasonCatalogue(DEFAULT_REASONS)
#: Stored reasons: codes, labels in either language, other case and spacing, unknown text,
#: and unknown text that folds to a code.
STORED_REASONS: Final = (
    *(r.code for r in DEFAULT_REASONS[:4]),
    "Product beschadigd",
    "product DAMAGED",
    "  Te klein ",
    "TOO_SMALL",
    "kapot",
    "Damaged",
    "dámaged",
)
TAGS: Final = ("vip", "VIP ", "b2b", "Sale", "ß", "ss", "%", "'")


@st.composite
def return_items(draw: st.DrawFn, currency: str) -> ReturnItem:
    quantity = draw(st.sampled_from((1, 2, 3, 10_000)))
    price = draw(st.sampled_from((0, 1, 250, 500, 4995, 3 * 10**10)))
    photos = draw(st.sampled_from(((), (PhotoRef("p" * 32, "image/jpeg", 10),))))
    return ReturnItem(
        sku=draw(texts),
        name=draw(texts),
        quantity=quantity,
        unit_price=Money(price, currency),
        reason=draw(st.sampled_from(STORED_REASONS)),
        photos=photos,
        product_type=draw(st.none() | texts),
        product_tags=draw(st.frozensets(st.sampled_from(TAGS), max_size=3)),
        vendor=draw(st.none() | texts),
    )


moments = st.sampled_from(EDGES) | st.datetimes(
    min_value=dt.datetime(2011, 1, 1),  # noqa: DTZ001 - hypothesis wants naive bounds
    max_value=dt.datetime(2030, 1, 1),  # noqa: DTZ001
    timezones=st.just(dt.UTC),
)


@st.composite
def return_requests(draw: st.DrawFn, number: int) -> ReturnRequest:
    currency = draw(st.sampled_from(CURRENCIES))
    created = draw(moments)
    earlier = st.none() | moments.filter(lambda m: m <= created) | st.just(created)
    local = draw(st.sampled_from(("klant", "KLANT", "Straße", "k")))
    return ReturnRequest(
        shop_id="shop",
        id=f"r-{number:04d}",
        order_number=draw(texts.filter(lambda s: "\n" not in s)),
        customer=Customer(f"{local}@example.nl", "Klant"),
        from_country=draw(st.sampled_from(COUNTRIES)),
        order_value=Money(draw(st.sampled_from(AMOUNTS)), currency),
        items=tuple(draw(st.lists(return_items(currency), min_size=1, max_size=3))),
        created_at=created,
        ordered_at=draw(earlier),
        delivered_at=draw(earlier),
        refund_method=draw(st.sampled_from(RefundMethod)),
        return_method=draw(st.none() | texts),
        channel=draw(st.sampled_from(Channel)),
        tags=draw(st.frozensets(st.sampled_from(TAGS), max_size=3)),
        discount_code=draw(st.none() | texts),
        earlier_returns=draw(st.none() | st.integers(0, 5)),
    )


request_lists = st.integers(1, 8).flatmap(
    lambda n: st.tuples(*(return_requests(k) for k in range(n)))
)

#: The operators the rule checker lets each type of field have.
ALLOWED: Final = {
    FieldType.COUNTRY: (Operator.IS, Operator.IS_NOT),
    FieldType.REASON: (Operator.IS, Operator.IS_NOT),
    FieldType.CHOICE: (Operator.IS, Operator.IS_NOT),
    FieldType.YES_NO: (Operator.IS, Operator.IS_NOT),
    FieldType.MONEY: tuple(Operator)[:2] + tuple(o for o in Operator if o.is_ordering),
    FieldType.NUMBER: tuple(Operator)[:2] + tuple(o for o in Operator if o.is_ordering),
    FieldType.DATE: tuple(Operator)[:2] + tuple(o for o in Operator if o.is_ordering),
    FieldType.TEXT: (
        Operator.IS,
        Operator.IS_NOT,
        Operator.CONTAINS,
        Operator.NOT_CONTAINS,
        Operator.STARTS_WITH,
    ),
    FieldType.TAGS: (Operator.CONTAINS, Operator.NOT_CONTAINS),
}
NUMBERS: Final = st.sampled_from(
    (0, 1, 2, 3, 5, 10_000, 30_000, -1, 10**20, -(10**20), Decimal("2.5"), Decimal("-0.5"))
) | st.integers(-400, 400)


def values_for(field: Field) -> st.SearchStrategy[Any]:  # noqa: PLR0911 - one per type
    kind = field.type
    if kind is FieldType.COUNTRY:
        return st.sampled_from(COUNTRIES)
    if kind is FieldType.REASON:
        return st.sampled_from([r.code for r in DEFAULT_REASONS])
    if kind is FieldType.CHOICE:
        return st.sampled_from([c.value for c in field.choices])
    if kind is FieldType.YES_NO:
        return st.booleans()
    if kind is FieldType.MONEY:
        return st.builds(
            Money, st.sampled_from((*AMOUNTS, 2_000, 30_000)), st.sampled_from(CURRENCIES)
        )
    if kind is FieldType.NUMBER:
        return NUMBERS
    if kind is FieldType.DATE:
        return st.sampled_from(DAYS)
    return texts.map(str.strip)  # the checker keeps text values stripped and non-empty


@st.composite
def comparisons(draw: st.DrawFn) -> Compare:
    field = draw(st.sampled_from(DEFAULT_FIELDS))
    operator = draw(st.sampled_from(ALLOWED[field.type]))
    count = 1 if operator.is_ordering else draw(st.integers(1, 3))
    values = tuple(draw(st.lists(values_for(field), min_size=count, max_size=count)))
    return Compare(field, operator, values)


conditions: st.SearchStrategy[Condition] = st.recursive(
    comparisons(),
    lambda inner: st.one_of(
        st.builds(Not, inner),
        st.lists(inner, min_size=2, max_size=3).map(lambda parts: And(tuple(parts))),
        st.lists(inner, min_size=2, max_size=3).map(lambda parts: Or(tuple(parts))),
    ),
    max_leaves=6,
)
filters = st.builds(
    lambda condition, zone: ConditionFilter.of(condition, timezone=zone, reasons=REASONS),
    conditions,
    st.sampled_from(ZONES),
)


# -- the databases, holding nothing but facts -------------------------------------------------


def expected(condition: ConditionFilter, requests: Sequence[ReturnRequest]) -> list[str]:
    return sorted(r.id for r in requests if condition(r))


class SqliteFacts:
    """An SQLite table of fact columns, queried with a compiled filter and nothing else."""

    def __init__(self) -> None:
        self.connection = sqlite3.connect(":memory:")
        self.connection.create_function(LOCAL_DAY_FUNCTION, 2, local_day, deterministic=True)
        self.connection.execute(
            "CREATE TABLE requests (shop_id TEXT, id TEXT, status TEXT, created_at TEXT)"
        )
        for statement in add_facts(Dialect.SQLITE):  # what the schema migration adds
            self.connection.execute(statement)
        marks = fact_placeholders(Dialect.SQLITE)
        self.insert = f"INSERT INTO requests VALUES ('shop', ?, 'requested', ?, {marks})"  # noqa: S608

    def load(self, requests: Sequence[ReturnRequest]) -> None:
        self.connection.execute("DELETE FROM requests")
        self.connection.executemany(
            self.insert,
            [
                (r.id, timestamp(r.created_at, field="created_at"), *fact_values(r, Dialect.SQLITE))
                for r in requests
            ],
        )

    def select(self, condition: ConditionFilter) -> list[str]:
        compiled = compile_filter(condition, Dialect.SQLITE)
        assert compiled is not None
        assert compiled.exact
        sql = f"SELECT id FROM requests WHERE {compiled.sql} ORDER BY id"  # noqa: S608
        return [row[0] for row in self.connection.execute(sql, compiled.params)]


class PostgresFacts:
    """The same table on the PostgreSQL server, in a schema of its own."""

    def __init__(self, url: str) -> None:
        import psycopg  # noqa: PLC0415 - only when the server is there

        self.connection = psycopg.connect(url, autocommit=True)
        self.connection.execute(
            "CREATE TABLE requests (shop_id text, id text, status text, created_at timestamptz)"
        )
        for statement in add_facts(Dialect.POSTGRES):  # what a schema migration adds
            self.connection.execute(statement)
        marks = fact_placeholders(Dialect.POSTGRES)
        self.insert = f"INSERT INTO requests VALUES ('shop', %s, 'requested', %s, {marks})"  # noqa: S608

    def load(self, requests: Sequence[ReturnRequest]) -> None:
        with self.connection.transaction():
            self.connection.execute("DELETE FROM requests")
            with self.connection.cursor() as cursor:
                cursor.executemany(
                    self.insert,
                    [(r.id, r.created_at, *fact_values(r, Dialect.POSTGRES)) for r in requests],
                )

    def select(self, condition: ConditionFilter) -> list[str]:
        compiled = compile_filter(condition, Dialect.POSTGRES)
        assert compiled is not None
        assert compiled.exact
        sql = f"SELECT id FROM requests WHERE {compiled.sql} ORDER BY id"  # noqa: S608
        return [row[0] for row in self.connection.execute(sql, compiled.params)]


@pytest.fixture(scope="module")
def sqlite_facts() -> Iterator[SqliteFacts]:
    facts = SqliteFacts()
    yield facts
    facts.connection.close()


@pytest.fixture(scope="module")
def postgres_facts() -> Iterator[PostgresFacts]:
    facts = PostgresFacts(_postgres.server().fresh_url())
    yield facts
    facts.connection.close()


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest) -> SqliteFacts | PostgresFacts:
    name = "sqlite_facts" if request.param == "sqlite" else "postgres_facts"
    facts: SqliteFacts | PostgresFacts = request.getfixturevalue(name)
    return facts


PROPERTY: Final = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


# -- the law ---------------------------------------------------------------------------------


@PROPERTY
@given(condition=filters, requests=request_lists)
def test_the_database_selects_exactly_what_the_python_evaluation_accepts(
    database: SqliteFacts | PostgresFacts,
    condition: ConditionFilter,
    requests: tuple[ReturnRequest, ...],
) -> None:
    database.load(requests)
    assert database.select(condition) == expected(condition, requests)


@settings(max_examples=300, deadline=None)
@given(st.none() | texts | st.text(max_size=20))
def test_facts_fold_text_as_the_rule_compiler_does(text: str | None) -> None:
    assert fold(text) == normalise_text(text)


# -- the values the merchant typed never become SQL -------------------------------------------

HOSTILE: Final = (
    "'; DROP TABLE requests; --",
    "x' OR '1'='1",
    '" OR ""="',
    "100%",
    "_",
    "%_%",
    "\\",
    "$1",
    "%s",
    "?",
    ":name",
    "*/ SELECT 1 /*",
)


FIELDS: Final = rules.FieldRegistry()


def _field(name: str) -> Field:
    field = FIELDS.lookup(name)
    assert field is not None
    return field


@pytest.mark.parametrize("dialect", list(Dialect))
@pytest.mark.parametrize("value", HOSTILE)
def test_typed_values_are_bound_parameters_never_sql_text(dialect: Dialect, value: str) -> None:
    condition = ConditionFilter.of(
        Or(
            (
                Compare(_field("Bestelnummer"), Operator.CONTAINS, (value,)),
                Compare(_field("Klant e-mail"), Operator.STARTS_WITH, (value,)),
                Compare(_field("Tags"), Operator.CONTAINS, (value,)),
                Not(Compare(_field("SKU"), Operator.IS, (value,))),
            )
        )
    )
    compiled = compile_filter(condition, dialect)
    assert compiled is not None
    text = compiled.sql.replace("%s", "").replace("?", "")
    if value not in {"_", "?", "%s"}:  # those are in column names and placeholders anyway
        assert value.casefold() not in text
    flat = [p for param in compiled.params for p in (param if isinstance(param, list) else [param])]
    assert flat.count(value.casefold()) == 4
    assert compiled.sql.count("?" if dialect is Dialect.SQLITE else "%s") == len(compiled.params)


def _request(number: int, **changes: Any) -> ReturnRequest:
    item = ReturnItem("SKU-1", "T-shirt", 1, Money(1995), "too_small")
    base = ReturnRequest(
        shop_id="shop",
        id=f"r-{number:04d}",
        order_number=f"100{number}",
        customer=Customer("klant@example.nl", "Klant"),
        from_country="NL",
        order_value=Money(1995),
        items=(item,),
        created_at=dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC) + dt.timedelta(minutes=number),
    )
    return attrs.evolve(base, **changes)


def _ids(
    database: SqliteFacts | PostgresFacts,
    text: str,
    requests: Sequence[ReturnRequest],
    **options: Any,
) -> list[str]:
    condition = rules.compile_condition(text, reasons=REASONS, **options)
    database.load(requests)
    found = database.select(condition)
    assert found == expected(condition, requests), text
    return found


def test_metacharacters_match_only_themselves(database: SqliteFacts | PostgresFacts) -> None:
    requests = [
        _request(1, order_number="100%"),
        _request(2, order_number="1000"),
        _request(3, order_number="a_b"),
        _request(4, order_number="axb"),
        _request(5, order_number="it's"),
        _request(6, order_number='say "hi"'),
        _request(7, order_number="back\\slash"),
    ]
    assert _ids(database, 'Bestelnummer BEVAT "%"', requests) == ["r-0001"]
    assert _ids(database, 'Bestelnummer BEVAT "_"', requests) == ["r-0003"]
    assert _ids(database, 'Bestelnummer BEGINT MET "a_"', requests) == ["r-0003"]
    assert _ids(database, 'Bestelnummer BEVAT "\'"', requests) == ["r-0005"]
    assert _ids(database, "Bestelnummer IS 'say \"hi\"'", requests) == ["r-0006"]
    assert _ids(database, r'Bestelnummer BEVAT "\\"', requests) == ["r-0007"]  # a backslash
    assert _ids(database, 'Bestelnummer BEVAT NIET "%"', requests) == [
        f"r-{n:04d}" for n in range(2, 8)
    ]


def test_text_folds_with_casefold_not_sql_lower(database: SqliteFacts | PostgresFacts) -> None:
    requests = [
        _request(1, order_number="STRASSE"),
        _request(2, order_number="straße"),
        _request(3, order_number="ΣΑΣ"),
        _request(4, order_number="  Kelvin\u212a "),  # the Kelvin sign folds to k
        _request(5, order_number="İstanbul"),
    ]
    assert _ids(database, 'Bestelnummer IS "strasse"', requests) == ["r-0001", "r-0002"]
    assert _ids(database, 'Bestelnummer IS "ẞ"', requests) == []
    assert _ids(database, 'Bestelnummer BEVAT "ss"', requests) == ["r-0001", "r-0002"]
    assert _ids(database, 'Bestelnummer IS "σας"', requests) == ["r-0003"]
    assert _ids(database, 'Bestelnummer IS "kelvink"', requests) == ["r-0004"]
    assert _ids(database, 'Bestelnummer BEGINT MET "i̇"', requests) == ["r-0005"]
    assert _ids(database, 'Bestelnummer BEGINT MET "i"', requests) == ["r-0005"]


def test_huge_amounts_and_numbers_compare_exactly(database: SqliteFacts | PostgresFacts) -> None:
    big = 10**15
    item = ReturnItem("S", "n", 1, Money(big), "too_small")
    requests = [_request(1, order_value=Money(big), items=(item,)), _request(2)]
    assert _ids(database, "Bestelwaarde >= €10000000000000,00", requests) == ["r-0001"]
    assert _ids(database, "Bestelwaarde > €10000000000000,00", requests) == []
    assert _ids(database, "Bestelwaarde < €9999999999999,99", requests) == ["r-0002"]
    assert _ids(database, "Artikelwaarde IS €10000000000000,00", requests) == ["r-0001"]
    assert _ids(database, "Aantal artikelen < 99999999999999999999999", requests) == [
        "r-0001",
        "r-0002",
    ]
    assert _ids(database, "Aantal artikelen IS 99999999999999999999999", requests) == []
    assert _ids(database, "Aantal artikelen > 0,5", requests) == ["r-0001", "r-0002"]
    assert _ids(database, "Aantal artikelen >= 1,5", requests) == []


def test_money_in_another_currency_is_unknown_not_unequal(
    database: SqliteFacts | PostgresFacts,
) -> None:
    dollars = _request(
        1,
        order_value=Money(1995, "USD"),
        items=(ReturnItem("S", "n", 1, Money(1995, "USD"), "too_small"),),
    )
    requests = [dollars, _request(2)]
    assert _ids(database, "Bestelwaarde IS €19,95", requests) == ["r-0002"]
    assert _ids(database, "Bestelwaarde IS NIET €5,00", requests) == ["r-0002"]
    assert _ids(database, "NIET Bestelwaarde > €5,00", requests) == []
    assert _ids(database, "Bestelwaarde > 5.00 USD", requests) == ["r-0001"]


def test_dates_are_read_in_the_shops_zone_at_dst_edges(
    database: SqliteFacts | PostgresFacts,
) -> None:
    # 2026-10-25 00:30 UTC is 02:30 CEST on the 25th in Amsterdam, still the 24th in São Paulo.
    created = dt.datetime(2026, 10, 25, 0, 30, tzinfo=dt.UTC)
    before = dt.datetime(2026, 10, 24, 21, 59, 59, 999999, tzinfo=dt.UTC)  # 23:59:59 CEST
    requests = [
        _request(1, created_at=created, delivered_at=before, ordered_at=before),
        _request(2, created_at=created, delivered_at=created),
    ]
    amsterdam = {"timezone": "Europe/Amsterdam"}
    assert _ids(database, "Aanvraagdatum IS 2026-10-25", requests, **amsterdam) == [
        "r-0001",
        "r-0002",
    ]
    assert _ids(database, "Leverdatum IS 2026-10-24", requests, **amsterdam) == ["r-0001"]
    assert _ids(database, "Dagen sinds levering IS 1", requests, **amsterdam) == ["r-0001"]
    sao_paulo = {"timezone": "America/Sao_Paulo"}
    assert _ids(database, "Aanvraagdatum IS 2026-10-24", requests, **sao_paulo) == [
        "r-0001",
        "r-0002",
    ]
    assert _ids(database, "Dagen sinds levering IS 0", requests, **sao_paulo) == [
        "r-0001",
        "r-0002",
    ]


def test_missing_values_are_unknown_under_is_niet_and_niet(
    database: SqliteFacts | PostgresFacts,
) -> None:
    requests = [
        _request(1),  # no delivery, no discount code, no earlier returns, no return method
        _request(
            2,
            delivered_at=dt.datetime(2026, 3, 1, tzinfo=dt.UTC),
            discount_code="ZOMER",
            earlier_returns=2,
            return_method="pickup",
        ),
    ]
    for text in (
        "Leverdatum IS NIET 2020-01-01",
        "NIET Leverdatum IS 2020-01-01",
        "NIET Dagen sinds levering > 100",
        "Kortingscode IS NIET korting",
        "NIET Kortingscode BEVAT x",
        "Kortingscode BEVAT NIET x",
        "NIET Eerdere retouren > 5",
        "Retourmethode IS NIET drop_off",
        "NIET (Eerdere retouren > 5 EN Van land IS NL)",
    ):
        assert _ids(database, text, requests) == ["r-0002"], text
    assert _ids(database, "NIET Eerdere retouren > 5 OF Van land IS NL", requests) == [
        "r-0001",
        "r-0002",
    ]


def test_reasons_match_by_code_or_label_through_the_items(
    database: SqliteFacts | PostgresFacts,
) -> None:
    def with_reasons(number: int, *reasons: str) -> ReturnRequest:
        items = tuple(ReturnItem(f"S{k}", "n", 1, Money(100), r) for k, r in enumerate(reasons))
        return _request(number, items=items)

    requests = [
        with_reasons(1, "damaged"),
        with_reasons(2, "Product beschadigd"),
        with_reasons(3, "  PRODUCT damaged "),
        with_reasons(4, "too_small", "kapot"),
        with_reasons(5, "Te klein"),
    ]
    assert _ids(database, 'Retourreden IS "Product beschadigd"', requests) == [
        "r-0001",
        "r-0002",
        "r-0003",
    ]
    assert _ids(database, "Retourreden IS NIET damaged", requests) == ["r-0004", "r-0005"]
    assert _ids(database, "Retourreden IS NIET too_small", requests) == [
        "r-0001",
        "r-0002",
        "r-0003",
        "r-0004",
    ]
    assert _ids(database, "Retourreden IS too_small EN Aantal IS 1", requests) == [
        "r-0004",
        "r-0005",
    ]


def test_item_conditions_hold_for_one_item_together(database: SqliteFacts | PostgresFacts) -> None:
    items = (
        ReturnItem("A", "Jas", 2, Money(5000), "damaged"),
        ReturnItem("B", "Sok", 1, Money(100), "too_small"),
    )
    requests = [_request(1, items=items)]
    assert _ids(database, "Retourreden IS damaged EN SKU IS B", requests) == []
    assert _ids(database, "Retourreden IS damaged EN SKU IS A", requests) == ["r-0001"]
    assert _ids(database, "Artikelwaarde IS €100,00 EN Aantal IS 2", requests) == ["r-0001"]
    assert _ids(database, "Retourreden IS damaged OF SKU IS B", requests) == ["r-0001"]
    assert _ids(database, "Aantal artikelen IS 3 EN Retourwaarde IS €101,00", requests) == [
        "r-0001"
    ]


# -- the stores --------------------------------------------------------------------------------


def _stored(storage: Storage, requests: Sequence[ReturnRequest]) -> None:
    for request in requests:
        storage.commit(Commit(request.submitted().request, expected_version=None))


def _listed(storage: Storage, query: Query) -> tuple[list[str], int]:
    """Every id the listing shows, page by page, and how many pages it took."""
    seen: list[str] = []
    pages = 0
    cursor = None
    while True:
        page = storage.query("shop", attrs.evolve(query, cursor=cursor))
        pages += 1
        seen += [r.id for r in page.items]
        if page.next_cursor is None:
            return seen, pages
        cursor = page.next_cursor


@settings(max_examples=40, deadline=None)
@given(condition=filters, requests=request_lists, limit=st.integers(1, 3))
def test_sqlite_listings_with_a_condition_agree_with_memory(
    condition: ConditionFilter, requests: tuple[ReturnRequest, ...], limit: int
) -> None:
    query = Query(statuses={Status.REQUESTED}, condition=condition, limit=limit)
    memory, sqlite = MemoryStorage(), SqliteStorage()
    try:
        _stored(memory, requests)
        _stored(sqlite, requests)
        assert _listed(sqlite, query)[0] == _listed(memory, query)[0]
    finally:
        sqlite.close()


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(condition=filters, requests=request_lists, limit=st.integers(1, 3))
def test_postgres_listings_with_any_condition_agree_with_memory(
    condition: ConditionFilter, requests: tuple[ReturnRequest, ...], limit: int
) -> None:
    query = Query(statuses={Status.REQUESTED}, condition=condition, limit=limit)
    memory = MemoryStorage()
    _stored(memory, requests)
    with _postgres.storage(max_size=2) as postgres:
        _stored(postgres, requests)
        assert _listed(postgres, query)[0] == _listed(memory, query)[0]


def test_postgres_listings_with_a_condition_agree_with_memory() -> None:
    requests = [
        _request(n, from_country=("BE", "NL", "DE")[n % 3], order_value=Money(1000 * n))
        for n in range(30)
    ]
    memory = MemoryStorage()
    _stored(memory, requests)
    with _postgres.storage() as postgres:
        _stored(postgres, requests)
        for text in (
            "Van land IS België OF Bestelwaarde > €20,00",
            "NIET Leverdatum IS 2026-03-02",
            'Retourreden IS "Te klein" EN Van land IS NIET NL',
        ):
            query = Query(condition=rules.compile_condition(text), limit=4)
            assert _listed(postgres, query)[0] == _listed(memory, query)[0], text


def test_a_filter_matching_little_reads_bounded_windows(monkeypatch: pytest.MonkeyPatch) -> None:
    from retouraanvraag.adapters import _facts  # noqa: PLC0415

    monkeypatch.setattr(_facts, "SQL_SCAN_BUDGET", 40)
    requests = [_request(n, from_country="BE" if n % 25 == 0 else "NL") for n in range(100)]
    with SqliteStorage() as storage:
        _stored(storage, requests)
        query = Query(condition=rules.compile_condition("Van land IS België"), limit=10)
        first = storage.query("shop", query)
        # The first 40 rows hold two matches: a short page, resuming after those 40 rows.
        assert [r.id for r in first.items] == ["r-0000", "r-0025"]
        assert first.next_cursor is not None
        seen, pages = _listed(storage, query)
        assert seen == ["r-0000", "r-0025", "r-0050", "r-0075"]
        assert pages == 3  # rows 0-39, 40-79, 80-99


def test_a_host_field_runs_in_python_after_sql_narrowed_the_rows() -> None:
    loyal = Field(
        "loyal", "Trouwe klant", "Loyal customer", FieldType.YES_NO, Scope.REQUEST,
        lambda r: r.order_number.endswith("7"), optional=False,
    )  # fmt: skip
    registry = rules.FieldRegistry().with_fields(loyal)
    condition = rules.compile_condition("Trouwe klant IS ja EN Van land IS België", fields=registry)
    compiled = compile_filter(condition, Dialect.SQLITE)
    assert compiled is not None
    assert not compiled.exact
    assert "f_country" in compiled.sql
    alone = rules.compile_condition("Trouwe klant IS ja", fields=registry)
    assert compile_filter(alone, Dialect.SQLITE) is None
    requests = [_request(n, from_country="BE" if n % 2 else "NL") for n in range(20)]
    with SqliteStorage() as storage:
        _stored(storage, requests)
        assert _listed(storage, Query(condition=condition, limit=2))[0] == ["r-0007", "r-0017"]
        assert _listed(storage, Query(condition=alone, limit=5))[0] == ["r-0007", "r-0017"]


def test_a_damaged_fact_can_hide_a_request_never_show_a_wrong_one(tmp_path: Path) -> None:
    path = tmp_path / "returns.sqlite3"
    with SqliteStorage(path) as storage:
        _stored(storage, [_request(1), _request(2, from_country="BE")])
    raw = sqlite3.connect(path)
    with raw:
        raw.execute("UPDATE requests SET f_country = 'BE' WHERE id = 'r-0001'")
        raw.execute("UPDATE requests SET f_country = 'XX' WHERE id = 'r-0002'")
    raw.close()
    with SqliteStorage(path) as storage:
        belgian = Query(condition=rules.compile_condition("Van land IS BE"))
        assert storage.query("shop", belgian).items == ()


@pytest.mark.parametrize("column", ["f_lines", "f_tags"])
def test_facts_that_are_not_json_make_the_filter_run_in_python(
    tmp_path: Path, column: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "returns.sqlite3"
    requests = [_request(1, tags=frozenset({"vip"})), _request(2), _request(3)]
    with SqliteStorage(path) as storage:
        _stored(storage, requests)
    raw = sqlite3.connect(path)
    with raw:
        raw.execute(f"UPDATE requests SET {column} = '[not json' WHERE id = 'r-0002'")  # noqa: S608
    raw.close()
    with SqliteStorage(path) as storage:
        for text in ('Retourreden IS "Te klein" EN Tags BEVAT vip', "Van land IS NL"):
            condition = rules.compile_condition(text)
            page = storage.query("shop", Query(condition=condition))
            assert [r.id for r in page.items] == expected(condition, requests)
    assert "malformed JSON" in caplog.text
    assert "shop shop" in caplog.text


@pytest.mark.parametrize("dialect", list(Dialect))
def test_every_built_in_field_and_operator_runs_in_the_database(dialect: Dialect) -> None:
    for field in DEFAULT_FIELDS:
        for operator in ALLOWED[field.type]:
            value = {
                FieldType.COUNTRY: "NL",
                FieldType.REASON: "damaged",
                FieldType.CHOICE: field.choices[0].value if field.choices else None,
                FieldType.YES_NO: True,
                FieldType.MONEY: Money(500),
                FieldType.NUMBER: 3,
                FieldType.DATE: dt.date(2026, 3, 2),
            }.get(field.type, "x")
            condition = ConditionFilter.of(Not(Compare(field, operator, (value,))))
            compiled = compile_filter(condition, dialect)
            assert compiled is not None, (field.key, operator)
            assert compiled.exact, (field.key, operator)
            assert compiled.reads_items is (field.scope is Scope.ITEM)


def test_opening_a_version_1_file_adds_and_fills_the_fact_columns(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    with SqliteStorage(path) as storage:
        _stored(storage, [_request(1, from_country="BE"), _request(2)])
    raw = sqlite3.connect(path)
    with raw:  # back to what version 1 of the schema held
        raw.execute("DROP INDEX requests_by_status_with_facts")
        for name, _, _ in FACT_COLUMNS:
            raw.execute(f"ALTER TABLE requests DROP COLUMN {name}")
        raw.execute("PRAGMA user_version = 1")
    raw.close()
    with SqliteStorage(path) as storage:
        belgian = Query(condition=rules.compile_condition("Van land IS België"))
        assert [r.id for r in storage.query("shop", belgian).items] == ["r-0001"]
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA user_version").fetchone() == (2,)
    raw.close()


def test_the_desk_hands_the_condition_to_the_store() -> None:
    seen: list[Query] = []

    class Recording(MemoryStorage):
        def query(self, shop_id: str, query: Query) -> Any:
            seen.append(query)
            return super().query(shop_id, query)

    from retouraanvraag import Desk  # noqa: PLC0415

    desk = Desk(Recording())
    desk.requests_tab("shop", rule="Van land IS NL")
    (query,) = seen
    assert isinstance(query.condition, ConditionFilter)
    assert query.where is None


def _filter_is_callable(check: Callable[[ReturnRequest], bool]) -> bool:
    return check(_request(1))


def test_a_compiled_condition_is_still_a_predicate() -> None:
    assert _filter_is_callable(rules.compile_condition("Van land IS NL"))
    assert not _filter_is_callable(rules.compile_condition("Van land IS BE"))
