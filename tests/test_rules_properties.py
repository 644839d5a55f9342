"""Laws of the rules language, checked with hypothesis.

- ``parse(format(x)) == x`` over generated rule sets, in both languages (so nl → en → nl too);
- compiled evaluation agrees with a small reference interpreter written here, independently;
- arbitrary text and mutated valid files raise only the language's own errors, quickly.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from retouraanvraag import rules
from retouraanvraag.errors import RuleError
from retouraanvraag.model import (
    DEFAULT_REASONS,
    Channel,
    Customer,
    Decision,
    Language,
    Money,
    PhotoRef,
    RefundMethod,
    ReturnItem,
    ReturnRequest,
)
from retouraanvraag.rules import (
    DEFAULT_FIELDS,
    Action,
    ActionKind,
    And,
    Compare,
    Condition,
    Field,
    FieldType,
    Not,
    Operator,
    Or,
    Rule,
    RuleSet,
    Scope,
)

CORPUS = Path(__file__).parent / "rules_corpus"
FIELDS = {f.key: f for f in DEFAULT_FIELDS}
COUNTRIES = ("NL", "BE", "DE", "GB", "BA", "US", "FR", "CD", "HK")
REASON_CODES = tuple(r.code for r in DEFAULT_REASONS)
PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

plain_text = (
    st.text(
        alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 éë'\"\\-@.#()€",
        min_size=1,
        max_size=20,
    )
    .map(str.strip)
    .filter(bool)
)
numbers = st.integers(0, 500) | st.integers(1, 999).filter(lambda n: n % 10).map(
    lambda n: Decimal(n) / 10
)
euros = st.integers(0, 100_000).map(Money)

ALLOWED = {
    FieldType.COUNTRY: (Operator.IS, Operator.IS_NOT),
    FieldType.REASON: (Operator.IS, Operator.IS_NOT),
    FieldType.CHOICE: (Operator.IS, Operator.IS_NOT),
    FieldType.YES_NO: (Operator.IS, Operator.IS_NOT),
    FieldType.MONEY: (Operator.IS, Operator.IS_NOT, Operator.GT, Operator.GE, Operator.LT),
    FieldType.NUMBER: (Operator.IS, Operator.IS_NOT, Operator.GT, Operator.LE, Operator.LT),
    FieldType.TEXT: (
        Operator.IS,
        Operator.IS_NOT,
        Operator.CONTAINS,
        Operator.NOT_CONTAINS,
        Operator.STARTS_WITH,
    ),
    FieldType.TAGS: (Operator.CONTAINS, Operator.NOT_CONTAINS),
}


def _values(field: Field) -> st.SearchStrategy[object]:  # noqa: PLR0911
    kind = field.type
    if kind is FieldType.COUNTRY:
        return st.sampled_from(COUNTRIES)
    if kind is FieldType.REASON:
        return st.sampled_from(REASON_CODES)
    if kind is FieldType.CHOICE:
        return st.sampled_from([c.value for c in field.choices])
    if kind is FieldType.YES_NO:
        return st.booleans()
    if kind is FieldType.MONEY:
        return euros
    if kind is FieldType.NUMBER:
        return numbers
    if kind is FieldType.TAGS:
        return st.sampled_from(("vip", "sale", "b2b"))
    return plain_text | st.sampled_from(("t-shirt", "SKU-1", "pickup", "@example.com", "10"))


@st.composite
def compares(draw: st.DrawFn, *, scope: Scope | None = None) -> Compare:
    candidates = [f for f in DEFAULT_FIELDS if scope is None or f.scope is scope]
    field = draw(st.sampled_from(candidates))
    operator = draw(st.sampled_from(ALLOWED[field.type]))
    count = 1 if operator.is_ordering else draw(st.integers(1, 3))
    values = tuple(draw(_values(field)) for _ in range(count))
    return Compare(field, operator, values)


def conditions(scope: Scope | None = None) -> st.SearchStrategy[Condition]:
    def extend(children: st.SearchStrategy[Condition]) -> st.SearchStrategy[Condition]:
        def flat(kind: type[And | Or], parts: list[Condition]) -> Condition:
            out: list[Condition] = []
            for part in parts:
                out.extend(part.parts if isinstance(part, kind) else (part,))
            return kind(tuple(out))

        return (
            st.lists(children, min_size=2, max_size=3).map(lambda p: flat(And, p))
            | st.lists(children, min_size=2, max_size=3).map(lambda p: flat(Or, p))
            | children.map(Not)
        )

    return st.recursive(compares(scope=scope), extend, max_leaves=5)


@st.composite
def rule_lists(draw: st.DrawFn) -> tuple[Rule, ...]:
    count = draw(st.integers(1, 6))
    out = []
    for number in range(1, count + 1):
        request_only = draw(st.booleans())
        condition = draw(conditions(Scope.REQUEST if request_only else None))
        item_scope = any(c.scope is Scope.ITEM for c in _leaves(condition))
        actions: list[Action] = []
        decision = draw(
            st.sampled_from(
                [
                    None,
                    ActionKind.REQUIRE_REVIEW,
                    ActionKind.SKIP_REVIEW,
                    ActionKind.APPROVE_WITH_LABEL,
                    ActionKind.APPROVE_WITHOUT_LABEL,
                    ActionKind.REJECT,
                    ActionKind.ORDER_NOT_RETURNABLE,
                    ActionKind.ITEM_NOT_RETURNABLE,
                ]
            )
        )
        if decision is ActionKind.REJECT:
            actions.append(Action(decision, draw(plain_text)))
        elif decision in {ActionKind.ORDER_NOT_RETURNABLE, ActionKind.ITEM_NOT_RETURNABLE}:
            actions.append(Action(decision, draw(st.none() | plain_text)))
        elif decision is not None:
            actions.append(Action(decision))
        if draw(st.booleans()):
            actions.append(Action(ActionKind.REFUND_FEE))
        if not item_scope and draw(st.booleans()):
            actions.append(Action(ActionKind.RETURN_FEE, draw(euros)))
        if not item_scope and draw(st.booleans()):
            actions.append(Action(ActionKind.SHIP_WITH, draw(plain_text)))
        if not actions:
            actions.append(Action(ActionKind.REQUIRE_REVIEW))
        name = draw(st.none() | plain_text)
        out.append(Rule(number, name, condition, tuple(actions)))
    return tuple(out)


def _leaves(condition: Condition) -> list[Compare]:
    if isinstance(condition, Compare):
        return [condition]
    if isinstance(condition, Not):
        return _leaves(condition.part)
    return [leaf for part in condition.parts for leaf in _leaves(part)]


NOW = dt.datetime(2024, 6, 1, 12, tzinfo=dt.UTC)


@st.composite
def return_requests(draw: st.DrawFn) -> ReturnRequest:
    items = [
        ReturnItem(
            sku=draw(st.sampled_from(("SKU-1", "HYG-2", "A10", "t-shirt"))),
            name=draw(st.sampled_from(("T-shirt", "Cadeaubon", "Jas pickup", "10 sokken"))),
            quantity=draw(st.integers(1, 5)),
            unit_price=draw(st.integers(0, 50_000).map(Money)),
            reason=draw(st.sampled_from(REASON_CODES)),
            photos=(PhotoRef("p", "image/jpeg", 1),) if draw(st.booleans()) else (),
        )
        for _ in range(draw(st.integers(1, 3)))
    ]
    days = st.none() | st.integers(0, 400)
    delivered, ordered = draw(days), draw(days)
    return ReturnRequest(
        shop_id="shop",
        id="r",
        order_number=draw(st.sampled_from(("1001", "MP-7", "10"))),
        customer=Customer(
            email=draw(st.sampled_from(("a@example.com", "b@shop.nl"))),
            name="K",
            language=draw(st.sampled_from(Language)),
        ),
        from_country=draw(st.sampled_from(COUNTRIES)),
        order_value=draw(st.integers(0, 200_000).map(Money)),
        items=items,
        created_at=NOW,
        delivered_at=None if delivered is None else NOW - dt.timedelta(days=delivered),
        ordered_at=None if ordered is None else NOW - dt.timedelta(days=ordered),
        refund_method=draw(st.sampled_from(RefundMethod)),
        return_method=draw(st.none() | st.sampled_from(("pickup", "Drop off"))),
        channel=draw(st.sampled_from(Channel)),
        tags=draw(st.frozensets(st.sampled_from(("vip", "VIP ", "sale", "b2b")), max_size=2)),
    )


# -- parse ∘ format ---------------------------------------------------------------------------


@PROPERTY
@given(rule_lists())
def test_parse_of_format_is_identity_in_both_languages(rule_list: tuple[Rule, ...]) -> None:
    ruleset = RuleSet(rule_list)
    for language in ("nl", "en"):
        text = rules.format(ruleset, language=language)
        again = rules.parse(text)
        assert again == ruleset, text
        assert again.language == language
        assert rules.format(again) == text


@PROPERTY
@given(rule_lists())
def test_dutch_to_english_to_dutch_gives_the_same_text(rule_list: tuple[Rule, ...]) -> None:
    dutch = rules.format(RuleSet(rule_list), language="nl")
    english = rules.format(rules.parse(dutch), language="en")
    assert rules.format(rules.parse(english), language="nl") == dutch


# -- compiled evaluation against a reference interpreter -----------------------------------------


def fold_text(value: object) -> str:
    return str(value).strip().casefold()


AMSTERDAM = ZoneInfo("Europe/Amsterdam")


def _days(earlier: dt.datetime | None) -> int | None:
    if earlier is None:
        return None
    return (NOW.astimezone(AMSTERDAM).date() - earlier.astimezone(AMSTERDAM).date()).days


def _read(key: str, request: ReturnRequest, item: ReturnItem) -> object:  # noqa: C901, PLR0911, PLR0912
    match key:
        case "from_country":
            return request.from_country
        case "order_value":
            return request.order_value
        case "return_value":
            return request.return_value
        case "number_of_items":
            return sum(i.quantity for i in request.items)
        case "days_since_delivery":
            return _days(request.delivered_at)
        case "days_since_order":
            return _days(request.ordered_at)
        case "refund_method":
            return request.refund_method
        case "return_method":
            return request.return_method
        case "channel":
            return request.channel
        case "has_photos":
            return any(i.photos for i in request.items)
        case "customer_email":
            return request.customer.email
        case "order_number":
            return request.order_number
        case "tags":
            return request.tags
        case "reason":
            return item.reason
        case "item_name":
            return item.name
        case "sku":
            return item.sku
        case "item_value":
            return item.value
        case "quantity":
            return item.quantity
    raise AssertionError(key)


def _leaf(compare: Compare, value: object) -> bool | None:
    if value is None:
        return None
    op, values = compare.operator, compare.values
    negative = op in {Operator.IS_NOT, Operator.NOT_CONTAINS}
    if compare.field.type is FieldType.TAGS:
        tags = {fold_text(t) for t in value}  # type: ignore[attr-defined]
        hit = any(fold_text(v) in tags for v in values)
    elif compare.field.type is FieldType.TEXT:
        text = fold_text(value)
        if op in {Operator.CONTAINS, Operator.NOT_CONTAINS}:
            hit = any(fold_text(v) in text for v in values)
        elif op is Operator.STARTS_WITH:
            hit = any(text.startswith(fold_text(v)) for v in values)
        else:
            hit = any(fold_text(v) == text for v in values)
    elif op.is_ordering:
        left, right = value, values[0]
        if isinstance(right, Money):
            assert isinstance(left, Money)
            if left.currency != right.currency:
                return None
            left, right = left.amount, right.amount
        results: dict[Operator, bool] = {
            Operator.GT: left > right,  # type: ignore[operator]
            Operator.GE: left >= right,  # type: ignore[operator]
            Operator.LT: left < right,  # type: ignore[operator]
            Operator.LE: left <= right,  # type: ignore[operator]
        }
        return results[op]
    else:
        if isinstance(value, Money) and value.currency not in {
            v.currency for v in values if isinstance(v, Money)
        }:
            return None  # an amount in another currency compares as unknown
        hit = value in values
    return not hit if negative else hit


def _holds(condition: Condition, request: ReturnRequest, item: ReturnItem) -> bool | None:
    if isinstance(condition, Compare):
        return _leaf(condition, _read(condition.field.key, request, item))
    if isinstance(condition, Not):
        inner = _holds(condition.part, request, item)
        return None if inner is None else not inner
    results = [_holds(p, request, item) for p in condition.parts]
    if isinstance(condition, And):
        if False in results:
            return False
        return None if None in results else True
    if True in results:
        return True
    return None if None in results else False


_DECIDES = {
    ActionKind.REQUIRE_REVIEW: Decision.REVIEW,
    ActionKind.SKIP_REVIEW: Decision.APPROVE_WITH_LABEL,
    ActionKind.APPROVE_WITH_LABEL: Decision.APPROVE_WITH_LABEL,
    ActionKind.APPROVE_WITHOUT_LABEL: Decision.APPROVE_WITHOUT_LABEL,
    ActionKind.REJECT: Decision.REJECT,
    ActionKind.ORDER_NOT_RETURNABLE: Decision.NOT_RETURNABLE,
    ActionKind.ITEM_NOT_RETURNABLE: Decision.NOT_RETURNABLE,
}


def _reference(ruleset: RuleSet, request: ReturnRequest) -> tuple[object, ...]:  # noqa: C901, PLR0912
    per_item: list[tuple[int, Action] | None] = []
    fee = carrier = None
    refund = False
    for item in request.items:
        chosen = None
        for k, rule in enumerate(ruleset.rules):
            if _holds(rule.condition, request, item) is not True:
                continue
            for action in rule.actions:
                if action.kind in _DECIDES:
                    chosen = (k, action)
                elif action.kind is ActionKind.REFUND_FEE:
                    refund = True
                elif action.kind is ActionKind.RETURN_FEE:
                    fee = action.argument
                else:
                    carrier = action.argument
        per_item.append(chosen)
    decided = [c for c in per_item if c is not None]
    best = max(decided, key=lambda c: (_DECIDES[c[1].kind].strictness, c[0]), default=None)
    if best is None or (
        len(decided) < len(per_item)
        and _DECIDES[best[1].kind].strictness < Decision.REVIEW.strictness
    ):
        return (None, None, None, fee, carrier, refund, ())
    decision = _DECIDES[best[1].kind]
    refused: list[int | None] = []
    if decision is Decision.NOT_RETURNABLE:
        for index, chosen in enumerate(per_item):
            if chosen is not None and _DECIDES[chosen[1].kind] is Decision.NOT_RETURNABLE:
                whole = chosen[1].kind is ActionKind.ORDER_NOT_RETURNABLE
                if not (whole and None in refused):
                    refused.append(None if whole else index)
    reason = best[1].argument if decision is Decision.REJECT else None
    name = ruleset.rules[best[0]].display_name(ruleset.language)
    return (decision, reason, name, fee, carrier, refund, tuple(refused))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rule_lists(), st.lists(return_requests(), min_size=1, max_size=4))
def test_compiled_rules_agree_with_the_reference_interpreter(
    rule_list: tuple[Rule, ...], requests: list[ReturnRequest]
) -> None:
    ruleset = RuleSet(rule_list)
    for request in requests:
        outcome = ruleset.evaluate(request)
        got = (
            outcome.decision,
            outcome.reason,
            outcome.rule,
            outcome.return_fee,
            outcome.carrier,
            outcome.refund_return_fee,
            tuple(r.index for r in outcome.refused),
        )
        assert got == _reference(ruleset, request)
        matched = {line.split(" [")[0].split(":")[0] for line in outcome.trace}
        assert len(outcome.trace) >= (1 if outcome.decision is not None else 0)
        assert all(m for m in matched)


@PROPERTY
@given(conditions(), st.lists(return_requests(), min_size=1, max_size=3))
def test_compiled_filter_agrees_with_the_reference(
    condition: Condition, requests: list[ReturnRequest]
) -> None:
    text = rules.format_condition(condition, "en")
    keep = rules.compile_condition(text, language="en")
    for request in requests:
        expected = any(_holds(condition, request, i) is True for i in request.items)
        assert keep(request) is expected


# -- fuzzing ---------------------------------------------------------------------------------------


def _only_rule_errors(text: str) -> None:
    try:
        ruleset = rules.parse(text)
    except RuleError as error:
        diagnostics = error.diagnostics
        assert diagnostics
        for diagnostic in diagnostics:
            assert diagnostic.line >= 1
            assert diagnostic.column >= 1
    else:
        rules.format(ruleset)


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=300))
def test_arbitrary_text_raises_only_rule_errors(text: str) -> None:
    _only_rule_errors(text)


KEYWORDISH = st.sampled_from(
    [
        "ALS ", "DAN ", " EN ", " OF ", "NIET ", "(", ")", '"', "IS ", "REGEL ", ":", "€",
        "IF ", "THEN ", " AND ", "BEVAT ", "> ", "4,5", "\n", "#", "Van land ", "Retourreden ",
    ]
)  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(sorted(CORPUS.glob("*.rules"))),
    st.lists(
        st.tuples(st.integers(0, 10_000), st.integers(0, 5), KEYWORDISH | st.text(max_size=3)),
        max_size=4,
    ),
)
def test_mutated_valid_files_raise_only_rule_errors(
    path: Path, mutations: list[tuple[int, int, str]]
) -> None:
    text = path.read_text(encoding="utf-8")
    for where, cut, insert in mutations:
        at = where % (len(text) + 1)
        text = text[:at] + insert + text[at + cut :]
    _only_rule_errors(text)


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_conditions_raise_only_rule_errors(text: str) -> None:
    try:
        rules.compile_condition(text)
    except RuleError as error:
        assert error.diagnostics  # noqa: PT017 - fuzzing: any input may or may not be valid
