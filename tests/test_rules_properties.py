"""Laws of the rules language, checked with hypothesis.

- ``parse(format(x)) == x`` over generated rule sets, in both languages (so nl → en → nl too);
- the same rules written the way merchants type them (byte-order mark, CRLF, tabs, curly
  quotes, commas between values, ``IS GROTER DAN``, ``5,95 €``, ``5 euro``, ``5,-``, comments)
  parse to the same rule set;
- compiled evaluation agrees with a small reference interpreter written here, independently;
- arbitrary text and bytes and mutated valid files raise only the language's own errors, each
  diagnostic at a line and column inside the source, on (or just after) a token, quoting what
  is there.

``make soak`` (``RETOURAANVRAAG_SOAK=1``) runs the fuzzers with many more examples.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
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
SOAK = bool(os.environ.get("RETOURAANVRAAG_SOAK"))
#: Fuzzers run this many times more examples in `make soak`.
SOAK_FACTOR = 40 if SOAK else 1


def fuzz(examples: int) -> settings:
    """Settings for a fuzzer: ``examples`` in `make test`, many more in `make soak`."""
    return settings(
        max_examples=examples * SOAK_FACTOR,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )


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
    FieldType.DATE: (Operator.IS, Operator.IS_NOT, Operator.GT, Operator.GE, Operator.LT),
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
    if kind is FieldType.DATE:
        return st.integers(-2, 400).map(lambda d: dt.date(2024, 6, 1) - dt.timedelta(days=d))
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
        if draw(st.booleans()):  # item rules too: each item's fee, the highest paid
            actions.append(Action(ActionKind.RETURN_FEE, draw(euros)))
        if not item_scope and draw(st.booleans()):
            actions.append(Action(ActionKind.SHIP_WITH, draw(plain_text)))
        if not item_scope and draw(st.booleans()):
            actions.append(Action(ActionKind.RETURN_WINDOW, draw(st.integers(0, 3650))))
        if not actions:
            actions.append(Action(ActionKind.REQUIRE_REVIEW))
        name = draw(st.none() | plain_text)
        enabled = draw(st.sampled_from((True, True, True, False)))  # some rules switched off
        out.append(Rule(number, name, condition, tuple(actions), enabled=enabled))
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
            product_type=draw(st.none() | st.sampled_from(("t-shirt", "Jas", "10"))),
            product_tags=draw(st.frozensets(st.sampled_from(("vip", "Sale ", "b2b")), max_size=2)),
            vendor=draw(st.none() | st.sampled_from(("Acme", "pickup"))),
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
        discount_code=draw(st.none() | st.sampled_from(("SALE10", "10", "pickup"))),
        earlier_returns=draw(st.none() | st.integers(0, 500)),
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


# -- the same rules as merchants type them ----------------------------------------------------

_SPELLINGS = {
    "nl": {
        "IS": ["IS", "is", "="],
        "IS_NOT": ["IS NIET", "is niet", "!=", "≠"],
        "CONTAINS": ["BEVAT", "bevat"],
        "NOT_CONTAINS": ["BEVAT NIET", "Bevat niet"],
        "STARTS_WITH": ["BEGINT MET", "begint met"],
        "GT": [">", "GROTER DAN", "IS GROTER DAN", "is groter dan"],
        "GE": [">=", "≥", "MINSTENS", "IS MINSTENS", "GROTER DAN OF GELIJK AAN"],
        "LT": ["<", "KLEINER DAN", "IS KLEINER DAN"],
        "LE": ["<=", "≤", "HOOGSTENS", "IS HOOGSTENS", "is kleiner dan of gelijk aan"],
        "IF": ["ALS", "als", "Als"],
        "THEN": ["DAN", "dan"],
        "AND": ["EN", "en"],
        "OR": ["OF", "of"],
        "NOT": ["NIET", "niet"],
        "RULE": ["REGEL", "Regel"],
    },
    "en": {
        "IS": ["IS", "is", "="],
        "IS_NOT": ["IS NOT", "is not", "!="],
        "CONTAINS": ["CONTAINS", "contains"],
        "NOT_CONTAINS": ["DOES NOT CONTAIN"],
        "STARTS_WITH": ["STARTS WITH"],
        "GT": [">", "GREATER THAN", "IS GREATER THAN"],
        "GE": [">=", "AT LEAST", "IS AT LEAST", "greater than or equal to"],
        "LT": ["<", "LESS THAN", "IS LESS THAN"],
        "LE": ["<=", "AT MOST", "IS AT MOST", "is less than or equal to"],
        "IF": ["IF", "if", "If"],
        "THEN": ["THEN", "then"],
        "AND": ["AND", "and"],
        "OR": ["OR", "or"],
        "NOT": ["NOT", "not"],
        "RULE": ["RULE", "Rule"],
    },
}
_QUOTES = [('"', '"'), ("“", "”"), ("\u2018", "\u2019"), ("'", "'"), ("„", "“")]
_SPACES = [" ", " ", " ", "  ", "\t", "\u00a0"]


def _grouped(whole: int, separator: str) -> str:
    text = str(whole)
    groups: list[str] = []
    while text:
        groups.insert(0, text[-3:])
        text = text[:-3]
    return separator.join(groups)


def _money_spellings(value: Money) -> list[str]:
    whole, cents = divmod(value.amount, 100)
    out = []
    for decimal, group in ((",", "."), (".", ",")):
        number = f"{whole}{decimal}{cents:02d}"
        out += [f"€{number}", f"{number} €", f"{number}€", f"{number} EUR", f"EUR {number}"]
        out += [f"€ {number}", f"{number} euro"]
        if whole >= 1000:
            out.append(f"€{_grouped(whole, group)}{decimal}{cents:02d}")
    if cents == 0:
        out += [f"{whole},-", f"€{whole},-", f"{whole} euro", f"€{whole}", f"{whole} EUR"]
    return out


class _Merchant:
    """Writes checked rules as a hurried merchant would: any spelling the language accepts."""

    def __init__(self, draw: st.DrawFn, language: str) -> None:
        self.draw = draw
        self.language = language

    def pick(self, options: list[str]) -> str:
        return self.draw(st.sampled_from(options))

    def keyword(self, name: str) -> str:
        return self.pick(_SPELLINGS[self.language][name])

    def gap(self) -> str:
        return self.pick(_SPACES)

    def quoted(self, text: str) -> str:
        if re.search(r"[\"'“”\u2018\u2019„\\]", text):
            return rules._format.quote(text)
        opening, closing = self.draw(st.sampled_from(_QUOTES))
        return f"{opening}{text}{closing}"

    def value(self, field: Field, value: object) -> str:
        canonical = rules._format.format_value(field, value, self.language)
        if isinstance(value, Money):
            return self.pick([canonical, *_money_spellings(value)])
        if canonical.startswith('"'):
            return self.quoted(rules._parser.unquote(canonical))
        if isinstance(value, Decimal):
            return self.pick([canonical, canonical.replace(",", "."), canonical.replace(".", ",")])
        return canonical

    def condition(self, condition: Condition) -> str:
        if isinstance(condition, Compare):
            values = [self.value(condition.field, v) for v in condition.values]
            text = values[0]
            for value in values[1:]:
                separators = [f" {self.keyword('OR')} ", ", ", f"\n  {self.keyword('OR')} "]
                if not (text[-1:].isdigit() or value[:1].isdigit()):
                    separators.append(",")  # 1,5 is a number: a comma between digits is not a list
                separator = self.pick(separators)
                text += separator + value
            name = condition.field.name(self.language)
            if name == "Heeft foto's":
                name = self.pick([name, "Heeft foto\u2019s"])
            return f"{name}{self.gap()}{self.keyword(condition.operator.value)}{self.gap()}{text}"
        if isinstance(condition, Not):
            inner = self.condition(condition.part)
            return f"{self.keyword('NOT')} ({inner})"
        joiner = "AND" if isinstance(condition, And) else "OR"
        parts = []
        for part in condition.parts:
            inner = self.condition(part)
            parts.append(f"({inner})" if isinstance(part, (And, Or)) else inner)
        separator = self.pick([" ", "\n    ", "\t"])
        return f"{separator}{self.keyword(joiner)} ".join(parts)

    def rule(self, rule: Rule) -> str:
        head = ""
        if not rule.enabled:  # the switch as a merchant types it: any case
            head = self.pick(
                ["UIT ", "uit ", "Uit "] if self.language == "nl" else ["OFF ", "off "]
            )
        if rule.name is not None:
            head += f"{self.keyword('RULE')} {self.quoted(rule.name)}: "
        actions = []
        for action in rule.actions:
            text = rules._format.format_action(action, self.language)
            if isinstance(action.argument, Money):
                name = rules._format.format_action(Action(action.kind), self.language)
                text = f"{name} {self.pick(_money_spellings(action.argument))}"
            elif isinstance(action.argument, str):
                name = rules._format.format_action(Action(action.kind), self.language)
                text = f"{name} {self.quoted(action.argument)}"
            actions.append(text)
        then = self.pick([" ", "\n", "\n\t"]) + self.keyword("THEN") + " "
        comment = self.pick(["", "", "  # zo", " #note"])
        joined = f" {self.keyword('AND')} ".join(actions)
        return f"{head}{self.keyword('IF')} {self.condition(rule.condition)}{then}{joined}{comment}"


@st.composite
def merchant_texts(draw: st.DrawFn) -> tuple[tuple[Rule, ...], str]:
    rule_list = draw(rule_lists())
    language = draw(st.sampled_from(["nl", "en"]))
    writer = _Merchant(draw, language)
    text = "\n".join(writer.rule(rule) for rule in rule_list) + "\n"
    if draw(st.booleans()):
        text = text.replace("\n", "\r\n")
    if draw(st.booleans()):
        text = "\ufeff" + text
    return rule_list, text


@PROPERTY
@given(merchant_texts())
def test_rules_written_as_merchants_type_them_parse_to_the_same_rules(
    written: tuple[tuple[Rule, ...], str],
) -> None:
    rule_list, text = written
    ruleset = rules.parse(text)
    assert ruleset == RuleSet(rule_list), text
    assert [w.code for w in ruleset.warnings if w.code == "other-currency"] == []
    assert rules.parse(text.encode("utf-8")) == ruleset
    assert rules.parse(rules.format(ruleset)) == ruleset


# -- compiled evaluation against a reference interpreter -----------------------------------------


def fold_text(value: object) -> str:
    return str(value).strip().casefold()


AMSTERDAM = ZoneInfo("Europe/Amsterdam")


def _days(earlier: dt.datetime | None) -> int | None:
    if earlier is None:
        return None
    return (NOW.astimezone(AMSTERDAM).date() - earlier.astimezone(AMSTERDAM).date()).days


def _local_date(moment: dt.datetime | None) -> dt.date | None:
    return None if moment is None else moment.astimezone(AMSTERDAM).date()


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
        case "product_type":
            return item.product_type
        case "product_tags":
            return item.product_tags
        case "vendor":
            return item.vendor
        case "order_date":
            return _local_date(request.ordered_at)
        case "delivery_date":
            return _local_date(request.delivered_at)
        case "request_date":
            return _local_date(request.created_at)
        case "discount_code":
            return request.discount_code
        case "earlier_returns":
            return request.earlier_returns
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
    carrier = window = None
    refund = False
    # Each item's fee is its last matching fee rule; the request pays the highest, a tie
    # going to the later rule (docs/rules.md, "A fee per item").
    item_fees: list[tuple[int, int, Money]] = []
    for item in request.items:
        chosen = None
        item_fee: tuple[int, int, Money] | None = None
        for k, rule in enumerate(ruleset.rules):
            if not rule.enabled or _holds(rule.condition, request, item) is not True:
                continue
            for action in rule.actions:
                if action.kind in _DECIDES:
                    chosen = (k, action)
                elif action.kind is ActionKind.REFUND_FEE:
                    refund = True
                elif action.kind is ActionKind.RETURN_FEE:
                    assert isinstance(action.argument, Money)
                    item_fee = (action.argument.amount, k, action.argument)
                elif action.kind is ActionKind.RETURN_WINDOW:
                    window = action.argument
                else:
                    carrier = action.argument
        per_item.append(chosen)
        if item_fee is not None:
            item_fees.append(item_fee)
    fee = max(item_fees, key=lambda f: (f[0], f[1]))[2] if item_fees else None
    decided = [c for c in per_item if c is not None]
    best = max(decided, key=lambda c: (_DECIDES[c[1].kind].strictness, c[0]), default=None)
    if best is None or (
        len(decided) < len(per_item)
        and _DECIDES[best[1].kind].strictness < Decision.REVIEW.strictness
    ):
        return (None, None, None, fee, carrier, refund, (), window)
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
    return (decision, reason, name, fee, carrier, refund, tuple(refused), window)


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
            outcome.return_window_days,
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


#: Diagnostics whose message quotes what the merchant typed at the diagnostic's column.
_QUOTING = frozenset(
    {
        "syntax",
        "keyword-typo",
        "unknown-field",
        "unknown-action",
        "unknown-country",
        "unknown-reason",
        "unknown-operator",
        "bad-money",
        "bad-number",
        "ambiguous-separator",
        "dollar-sign",
        "other-currency",
    }
)
_OPENING = "\"'“”„\u201a\u2018\u2019 \t\u00a0"


_INVISIBLE = str.maketrans(dict.fromkeys("\ufeff\u200b\u2060", " "))


def _plain(text: str) -> str:
    """Text as diagnostics quote it: apostrophes straight, any run of space one space."""
    text = text.translate(_INVISIBLE).replace("\u2019", "'").replace("\u2018", "'")
    return " ".join(text.split())


def _check_locations(source: str, diagnostics: tuple[rules.Diagnostic, ...]) -> None:
    """Every diagnostic lies inside ``source`` and points at (or just after) what it quotes."""
    lines = source.split("\n")
    for diagnostic in diagnostics:
        line, column = diagnostic.line, diagnostic.column
        assert 1 <= line <= len(lines), diagnostic
        text = lines[line - 1]
        assert 1 <= column <= len(text) + 1, diagnostic
        if diagnostic.code != "too-many-problems":
            assert diagnostic.source_line == text, diagnostic
        at = text[column - 1 : column]
        after_token = column >= 2 and not text[column - 2].isspace()
        if diagnostic.code not in {"too-large", "not-utf8", "windows-1252", "no-condition"}:
            assert (at and not at.isspace()) or after_token, diagnostic
        quoted = _quoted(diagnostic)
        if quoted:
            here = _plain(text[column - 1 :].lstrip(_OPENING))
            assert here.startswith(quoted.split()[0].lstrip(_OPENING)), (diagnostic, here)
            assert quoted.strip(_OPENING) in _plain(source), diagnostic


def _quoted(diagnostic: rules.Diagnostic) -> str:
    """What the diagnostic's message quotes of the merchant's text, if it quotes any."""
    message = diagnostic.message
    if diagnostic.code not in _QUOTING or message.endswith(
        ("einde van de regel", "end of the rule")
    ):
        return ""
    if diagnostic.code == "syntax":  # onverwacht <what was typed, in its own quotes if a text>
        found = message.split(" ", 1)[1]
        return _plain(found[1:-1] if found[:1] in _OPENING and len(found) > 1 else found)
    if '"' not in message:
        return ""
    quoted = message[message.index('"') + 1 :]
    return _plain(quoted[: quoted.index('"')] if '"' in quoted else quoted)


def _only_rule_errors(text: str | bytes) -> None:
    source = (
        rules._source(rules._decode(text).text) if isinstance(text, bytes) else rules._source(text)
    )
    try:
        ruleset = rules.parse(text)
    except RuleError as error:
        diagnostics = error.diagnostics
        assert diagnostics
        assert any(d.severity == "error" for d in diagnostics)
        _check_locations(source, diagnostics)
    else:
        _check_locations(source, ruleset.warnings)
        formatted = rules.format(ruleset)
        assert rules.parse(formatted) == ruleset
        assert rules.parse(rules.format(ruleset, language="en")) == ruleset


@pytest.mark.soak
@fuzz(150)
@given(st.text(max_size=300))
def test_arbitrary_text_raises_only_rule_errors(text: str) -> None:
    _only_rule_errors(text)


@pytest.mark.soak
@fuzz(100)
@given(st.binary(max_size=200) | st.text(max_size=150).map(lambda t: t.encode("cp1252", "ignore")))
def test_arbitrary_bytes_raise_only_rule_errors(data: bytes) -> None:
    _only_rule_errors(data)


KEYWORDISH = st.sampled_from(
    [
        "ALS ", "DAN ", " EN ", " OF ", "NIET ", "(", ")", '"', "IS ", "REGEL ", ":", "€",
        "IF ", "THEN ", " AND ", "BEVAT ", "> ", "4,5", "\n", "#", "Van land ", "Retourreden ",
        # what merchants type (issue 12)
        "\ufeff", "\r\n", "\t", "\u00a0", "\u2018", "\u2019", "“", "”", "'", ", ", ",",
        "IS GROTER DAN ", "IS KLEINER DAN ", "IS MINSTENS ", "IS AT MOST ", "5,95 € ", "5 euro ",
        "EUR 5 ", "5,- ", "€1.000 ", "€4,9,5 ", "4,95,00 ", "$100 ", "100 USD ", "DNA ", "ASL ",
        "TEHN ", " NE ", " FO ", "==", "<>", "Heeft foto\u2019s ", "~", "9" * 31,
    ]
)  # fmt: skip


@pytest.mark.soak
@fuzz(150)
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


@pytest.mark.soak
@fuzz(100)
@given(st.text(max_size=200) | st.lists(KEYWORDISH, max_size=12).map("".join))
def test_arbitrary_conditions_raise_only_rule_errors(text: str) -> None:
    try:
        rules.compile_condition(text)
    except RuleError as error:
        assert error.diagnostics  # noqa: PT017 - fuzzing: any input may or may not be valid
        _check_locations(rules._source(text), error.diagnostics)


@pytest.mark.soak
@fuzz(100)
@given(merchant_texts(), st.integers(0, 10_000), st.integers(0, 4), KEYWORDISH)
def test_mutated_merchant_texts_raise_only_rule_errors(
    written: tuple[tuple[Rule, ...], str], where: int, cut: int, insert: str
) -> None:
    _, text = written
    at = where % (len(text) + 1)
    _only_rule_errors(text[:at] + insert + text[at + cut :])


# -- the decider's indexes and the lazily built trace ---------------------------------------------

import attrs  # noqa: E402 - this part of the file was added later

#: Few amounts and day counts, shared by rules and requests, so that values often equal a bound.
_AMOUNTS = (0, 100, 5_000, 50_000, 100_000)
_DAYS = (0, 3, 14, 30, 31)

#: One-comparison conditions on a few fields, so that a rule list often holds three or more on
#: one field (then the decider looks them up instead of testing them): countries, reasons,
#: quantities, nested SKU prefixes, bounds on amounts and days, tags.
_INDEXED_CONDITIONS = (
    st.builds(
        lambda values: Compare(FIELDS["from_country"], Operator.IS, tuple(values)),
        st.lists(st.sampled_from(COUNTRIES), min_size=1, max_size=3),
    ),
    st.builds(
        lambda values: Compare(FIELDS["reason"], Operator.IS, tuple(values)),
        st.lists(st.sampled_from(REASON_CODES), min_size=1, max_size=2),
    ),
    st.builds(lambda value: Compare(FIELDS["quantity"], Operator.IS, (value,)), st.integers(1, 5)),
    st.builds(
        lambda values: Compare(FIELDS["sku"], Operator.STARTS_WITH, tuple(values)),
        st.lists(st.sampled_from(("S", "SK", "SKU-", "sku-1", "HYG", "hyg-2", "A1")), min_size=1),
    ),
    st.builds(
        lambda op, cents: Compare(FIELDS["order_value"], op, (Money(cents),)),
        st.sampled_from((Operator.GT, Operator.GE, Operator.LT, Operator.LE)),
        st.sampled_from(_AMOUNTS),
    ),
    st.builds(
        lambda op, cents: Compare(FIELDS["item_value"], op, (Money(cents),)),
        st.sampled_from((Operator.GT, Operator.GE, Operator.LT, Operator.LE)),
        st.sampled_from((0, 100, 5_000, 50_000, 100_000)),
    ),
    st.builds(
        lambda op, days: Compare(FIELDS["days_since_delivery"], op, (days,)),
        st.sampled_from((Operator.GT, Operator.GE, Operator.LT, Operator.LE)),
        st.sampled_from(_DAYS) | st.sampled_from((Decimal("14.5"), Decimal(30))),
    ),
    st.builds(
        lambda values: Compare(FIELDS["tags"], Operator.CONTAINS, tuple(values)),
        st.lists(st.sampled_from(("vip", "sale", "b2b", "VIP ")), min_size=1, max_size=2),
    ),
    compares(),
)


@st.composite
def indexed_rule_lists(draw: st.DrawFn) -> tuple[Rule, ...]:
    """Up to 30 rules, most of them on one or two favourite fields, every kind of action."""
    favourites = draw(st.lists(st.sampled_from(_INDEXED_CONDITIONS), min_size=1, max_size=2))
    out = []
    for number in range(1, draw(st.integers(1, 30)) + 1):
        pool = favourites if draw(st.integers(0, 4)) else _INDEXED_CONDITIONS
        condition = draw(st.sampled_from(pool).flatmap(lambda strategy: strategy))
        item_scope = condition.field.scope is Scope.ITEM
        kind = draw(
            st.sampled_from(
                [
                    ActionKind.REQUIRE_REVIEW,
                    ActionKind.APPROVE_WITH_LABEL,
                    ActionKind.APPROVE_WITHOUT_LABEL,
                    ActionKind.REJECT,
                    ActionKind.ITEM_NOT_RETURNABLE,
                    ActionKind.ORDER_NOT_RETURNABLE,
                    ActionKind.REFUND_FEE,
                    ActionKind.RETURN_FEE,
                    *([] if item_scope else [ActionKind.SHIP_WITH]),
                ]
            )
        )
        if kind is ActionKind.REJECT:
            action = Action(kind, f"nee {number}")
        elif kind is ActionKind.RETURN_FEE:
            action = Action(kind, draw(euros))
        elif kind is ActionKind.SHIP_WITH:
            action = Action(kind, draw(st.sampled_from(("DHL", "PostNL"))))
        else:
            action = Action(kind)
        actions = [action]
        if kind is not ActionKind.REFUND_FEE and draw(st.booleans()):
            actions.append(Action(ActionKind.REFUND_FEE))
        out.append(Rule(number, None, condition, tuple(actions)))
    return tuple(out)


def _reference_with_default(
    ruleset: RuleSet, request: ReturnRequest, default: Decision | None
) -> tuple[object, ...]:
    """The reference outcome when undecided items take ``default`` (if it is stricter)."""
    expected = _reference(ruleset, request)
    if default is None:
        return expected
    deciders: list[int] = []
    for item in request.items:
        decided = [
            k
            for k, rule in enumerate(ruleset.rules)
            if rule.enabled
            and any(a.kind in _DECIDES for a in rule.actions)
            and _holds(rule.condition, request, item) is True
        ]
        deciders.append(decided[-1] if decided else -1)
    decision_of = {
        k: _DECIDES[a.kind]
        for k, rule in enumerate(ruleset.rules)
        for a in rule.actions
        if a.kind in _DECIDES
    }
    ranked = [(decision_of[k].strictness, k) for k in deciders if k >= 0]
    best = max(ranked, default=(0, -1))
    fee, carrier, refund = expected[3:6]
    refused: object = ()
    if -1 in deciders and default.strictness > best[0]:
        if default is Decision.NOT_RETURNABLE:
            refused = expected[6] if expected[0] is Decision.NOT_RETURNABLE else ()
        return (default, None, None, fee, carrier, refund, refused, expected[7])
    rule = ruleset.rules[best[1]]
    decision = decision_of[best[1]]
    action = next(a for a in rule.actions if a.kind in _DECIDES)
    reason = action.argument if decision is Decision.REJECT else None
    refused = expected[6] if decision is Decision.NOT_RETURNABLE else ()
    if decision is Decision.NOT_RETURNABLE and expected[0] is not Decision.NOT_RETURNABLE:
        refused = _refused_items(ruleset, deciders)
    name = rule.display_name(ruleset.language)
    return (decision, reason, name, fee, carrier, refund, refused, expected[7])


def _refused_items(ruleset: RuleSet, deciders: list[int]) -> tuple[int | None, ...]:
    refused: list[int | None] = []
    for index, k in enumerate(deciders):
        if k < 0:
            continue
        action = next(a for a in ruleset.rules[k].actions if a.kind in _DECIDES)
        if _DECIDES[action.kind] is Decision.NOT_RETURNABLE:
            whole = action.kind is ActionKind.ORDER_NOT_RETURNABLE
            if not (whole and None in refused):
                refused.append(None if whole else index)
    return tuple(refused)


def _expected_trace_rules(ruleset: RuleSet, request: ReturnRequest) -> list[str]:
    """The rules the reference interpreter finds matching, in order (the trace's rules)."""
    return [
        rule.display_name(ruleset.language)
        for rule in ruleset.rules
        if rule.enabled
        and any(_holds(rule.condition, request, item) is True for item in request.items)
    ]


@st.composite
def bounded_requests(draw: st.DrawFn) -> ReturnRequest:
    """A request whose amounts and days come from the few the indexed rules use as bounds."""
    request = draw(return_requests())
    days = draw(st.none() | st.sampled_from(_DAYS))
    items = [
        attrs.evolve(item, unit_price=Money(draw(st.sampled_from(_AMOUNTS))), quantity=1)
        for item in request.items
    ]
    return attrs.evolve(
        request,
        order_value=Money(draw(st.sampled_from(_AMOUNTS))),
        items=items,
        delivered_at=None if days is None else NOW - dt.timedelta(days=days),
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    indexed_rule_lists(),
    st.lists(bounded_requests(), min_size=2, max_size=6),
    st.sampled_from([None, *Decision]),
)
def test_indexed_and_early_exit_evaluation_agrees_with_the_reference(
    rule_list: tuple[Rule, ...], requests: list[ReturnRequest], default: Decision | None
) -> None:
    ruleset = RuleSet(rule_list)
    for request in requests * 2:  # the second time from the memo
        outcome = ruleset.evaluate(request, default=default)
        got = (
            outcome.decision,
            outcome.reason,
            outcome.rule,
            outcome.return_fee,
            outcome.carrier,
            outcome.refund_return_fee,
            tuple(r.index for r in outcome.refused),
            outcome.return_window_days,
        )
        assert got == _reference_with_default(ruleset, request, default)
        trace_rules = [line.split(" [")[0].split(":")[0] for line in outcome.trace]
        assert trace_rules == _expected_trace_rules(ruleset, request)


@PROPERTY
@given(rule_lists(), return_requests())
def test_an_outcome_traced_later_is_an_ordinary_outcome(
    rule_list: tuple[Rule, ...], request: ReturnRequest
) -> None:
    import pickle  # noqa: PLC0415

    from retouraanvraag.model import Outcome  # noqa: PLC0415

    ruleset = RuleSet(rule_list)
    outcome = ruleset.evaluate(request)
    plain = Outcome(*(getattr(outcome, a.name) for a in attrs.fields(Outcome)))
    assert outcome == plain
    assert plain == outcome
    assert not outcome != plain  # noqa: SIM202 - __ne__ itself is under test
    assert hash(outcome) == hash(plain)
    assert pickle.loads(pickle.dumps(outcome)) == plain  # noqa: S301 - our own data
    evolved = attrs.evolve(outcome, rule="x")
    assert evolved.trace == plain.trace
    assert evolved.rule == "x"
    assert evolved.decision == plain.decision


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(rule_lists(), indexed_rule_lists()),
    st.lists(return_requests(), min_size=1, max_size=6),
)
def test_warnings_about_overrides_and_undone_refusals_are_true(
    rule_list: tuple[Rule, ...], requests: list[ReturnRequest]
) -> None:
    """Whenever the checker says a rule is always overridden, it is; "never" means never."""
    from retouraanvraag.rules import _warnings  # noqa: PLC0415

    by_number = {rule.number: rule for rule in rule_list}
    summaries = {}
    interned = _warnings._Interned(rule_list)
    for rule in rule_list:
        summaries[rule.number] = _warnings._Summary.of(rule, interned)
    overridden = _warnings._overridden(list(rule_list), list(summaries.values()), interned)
    for request in requests:
        for item in request.items:
            for rule, other in overridden:
                if _holds(rule.condition, request, item) is True:
                    assert _holds(other.condition, request, item) is True, (rule, other)
            for rule in rule_list:
                if _warnings.never_matches(rule.condition) is not None:
                    assert _holds(rule.condition, request, item) is not True, rule
    for rule, refuser in _warnings._undoing(list(rule_list), list(summaries.values())):
        assert refuser.number < rule.number
        assert by_number[refuser.number] is refuser
