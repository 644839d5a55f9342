"""A loaded rule set: evaluate a request (DESIGN §3, "Meaning") and explain the result.

Evaluation runs the decider (:func:`~._compiler.compile_decider`): it finds the winning rule of
each kind of action without testing most rules, and the outcome is put together from a few
memoised parts. The trace (every matching rule, overridden actions marked) needs every rule
tested; it is worked out only when an outcome's ``trace`` is first read.
"""

from __future__ import annotations

import datetime as dt
import functools
import operator
from collections.abc import Callable
from typing import Any, Final

import attrs

from retouraanvraag.errors import InvalidInput
from retouraanvraag.model import (
    DEFAULT_REASONS,
    Decision,
    Money,
    Outcome,
    ReasonCatalogue,
    RefusedItem,
    ReturnRequest,
)
from retouraanvraag.rules._compiler import (
    Decided,
    Roles,
    RunResult,
    compile_decider,
    compile_rules,
)
from retouraanvraag.rules._explain import explain
from retouraanvraag.rules._format import format_action
from retouraanvraag.rules._messages import REFUSAL_MESSAGES, REPORT_WORDS, word
from retouraanvraag.rules.diagnostics import Diagnostic
from retouraanvraag.rules.fields import ActionKind, FieldRegistry, Scope
from retouraanvraag.rules.tree import Rule
from retouraanvraag.shop import time_zone

__all__ = ["DECISIONS", "RuleSet", "check_version", "load_timezone"]

#: The decision each action takes.
DECISIONS: Final = {
    ActionKind.REQUIRE_REVIEW: Decision.REVIEW,
    ActionKind.SKIP_REVIEW: Decision.APPROVE_WITH_LABEL,
    ActionKind.APPROVE_WITH_LABEL: Decision.APPROVE_WITH_LABEL,
    ActionKind.APPROVE_WITHOUT_LABEL: Decision.APPROVE_WITHOUT_LABEL,
    ActionKind.REJECT: Decision.REJECT,
    ActionKind.ORDER_NOT_RETURNABLE: Decision.NOT_RETURNABLE,
    ActionKind.ITEM_NOT_RETURNABLE: Decision.NOT_RETURNABLE,
}
_REVIEW_STRICTNESS: Final = Decision.REVIEW.strictness
#: The most entries a memo holds; a full memo starts again (it never stops adapting).
MEMO_LIMIT: Final = 16_384
_FIRST_ITEM: Final[tuple[int, ...]] = (0,)

#: What the decision part of an outcome is memoised as: decision, reason, refused, rule.
_Core = tuple[Decision | None, str | None, tuple[RefusedItem, ...], str | None]


@functools.lru_cache(maxsize=4096)
def _bits(mask: int) -> tuple[int, ...]:
    """The rule numbers (0-based) set in a mask."""
    found = []
    k = 0
    while mask:
        if mask & 1:
            found.append(k)
        mask >>= 1
        k += 1
    return tuple(found)


def load_timezone(name: str) -> dt.tzinfo:
    """The IANA time zone ``name`` (:func:`retouraanvraag.shop.time_zone`).

    Raises:
        InvalidInput: not a known time zone.
    """
    return time_zone(name)


def check_version(value: object) -> None:
    """Refuse a rules version that is not one short printable line (``None`` is no version).

    Raises:
        InvalidInput: naming the field ``version``.
    """
    if value is None:
        return
    if (
        not isinstance(value, str)
        or not value.strip()
        or len(value) > MAX_VERSION
        or not value.isprintable()
    ):
        raise InvalidInput(
            f"must be one line of 1 to {MAX_VERSION} printable characters", field="version"
        )


#: The longest rules version a host may give.
MAX_VERSION: Final = 64


def _check_version(_instance: object, _attribute: object, value: str | None) -> None:
    check_version(value)


# -- outcomes whose trace is worked out when first read -----------------------------------------

#: An outcome's fields but the trace, in their order: what evaluation memoises.
_FIELDS: Final = tuple(a.name for a in attrs.fields(Outcome) if a.name != "trace")
_values: Final = operator.attrgetter(*_FIELDS, "trace")
_Values = tuple[
    Decision | None,
    str | None,
    bool,
    Money | None,
    str | None,
    tuple[RefusedItem, ...],
    str | None,
    int | None,
    str | None,
]


class _TracedOutcome(Outcome):
    """An :class:`Outcome` whose ``trace`` is worked out from its request when first read.

    Evaluating needs only the winning rules; the trace needs every rule tested, which costs
    more than the evaluation itself. Most callers never read it (a preview, a filter, a
    benchmark); the desk does, once, when it stores the decision in the history. The other
    fields are one memoised tuple shared by every outcome alike, so making one costs two
    stores. Equal to, and hashed like, an :class:`Outcome` with the same values.
    """

    __slots__ = ("_fields", "_source", "_trace")

    def __eq__(self, other: object) -> bool:
        """Equal to any outcome with the same values, traced later or not."""
        if not isinstance(other, Outcome):
            return NotImplemented
        return bool(_values(self) == _values(other))

    def __ne__(self, other: object) -> bool:
        """The opposite of ``==``."""
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal

    __hash__ = Outcome.__hash__


_SLOT_FIELDS: Final = _TracedOutcome.__dict__["_fields"]
_SLOT_SOURCE: Final = _TracedOutcome.__dict__["_source"]
_SLOT_TRACE: Final = _TracedOutcome.__dict__["_trace"]
_EMPTY: Final[_Values] = (None, None, False, None, None, (), None, None, None)


def _field(index: int) -> property:
    """A field read from the memoised tuple (written one by one only by ``__init__``)."""

    def read(outcome: _TracedOutcome) -> object:
        return _SLOT_FIELDS.__get__(outcome)[index]

    def write(outcome: _TracedOutcome, value: object) -> None:
        try:
            fields = list(_SLOT_FIELDS.__get__(outcome))
        except AttributeError:  # Outcome.__init__ (attrs.evolve, unpickling) fills them in
            fields = list(_EMPTY)
            _SLOT_SOURCE.__set__(outcome, None)
            _SLOT_TRACE.__set__(outcome, ())
        fields[index] = value
        _SLOT_FIELDS.__set__(outcome, tuple(fields))

    return property(read, write)


def _read_trace(outcome: _TracedOutcome) -> tuple[str, ...]:
    source = _SLOT_SOURCE.__get__(outcome)
    if source is not None:
        ruleset, request = source
        _SLOT_TRACE.__set__(outcome, ruleset.trace_lines(request))
        _SLOT_SOURCE.__set__(outcome, None)
    trace: tuple[str, ...] = _SLOT_TRACE.__get__(outcome)
    return trace


def _write_trace(outcome: _TracedOutcome, value: tuple[str, ...]) -> None:
    try:
        _SLOT_FIELDS.__get__(outcome)
    except AttributeError:
        _SLOT_FIELDS.__set__(outcome, _EMPTY)
    _SLOT_SOURCE.__set__(outcome, None)
    _SLOT_TRACE.__set__(outcome, value)


for _index, _name in enumerate(_FIELDS):
    setattr(_TracedOutcome, _name, _field(_index))
_TracedOutcome.trace = property(_read_trace, _write_trace)  # type: ignore[assignment]
_set_fields: Final = _SLOT_FIELDS.__set__
_set_source: Final = _SLOT_SOURCE.__set__
_new: Final = object.__new__


# -- the plan: per-rule facts read at evaluation -------------------------------------------------


@attrs.frozen
class _Plan:
    """Per-rule facts the evaluation reads, computed once at load time."""

    decision: tuple[Decision | None, ...]
    strictness: tuple[int, ...]
    decision_action: tuple[Any, ...]
    #: The fee and carrier each rule sets, with ``None`` appended: index ``-1`` is "no rule".
    fee: tuple[Money | None, ...]
    carrier: tuple[str | None, ...]
    names: tuple[str, ...]
    item_scope: tuple[bool, ...]
    #: Bit masks of the rules (bit k for rule k) that decide, set the fee, choose the carrier,
    #: refund the fee: the last matching rule of a group is the highest bit set.
    decides: int
    sets_fee: int
    sets_carrier: int
    refunds: int
    has_item_rules: bool
    roles: Roles
    #: The return window each rule sets, with ``None`` appended; the rules setting one.
    window: tuple[int | None, ...] = (None,)
    sets_window: int = 0
    #: Whether an item rule sets a fee (then items' fees are combined, see docs/rules.md).
    item_fees: bool = False


#: Per deciding action: its decision and that decision's strictness.
_DECIDING: Final = {kind: (decision, decision.strictness) for kind, decision in DECISIONS.items()}
#: The action groups an item-scope rule plays a part in (the checker refuses the others).
_ITEM_GROUPS: Final = frozenset({"decision", "refund", "fee"})


def _plan(rules: tuple[Rule, ...], language: str) -> _Plan:  # noqa: C901 - one pass
    """Every rule's part in one pass over the rules (a big file has thousands)."""
    decision: list[Decision | None] = []
    strictness: list[int] = []
    decision_action: list[Any] = []
    fee: list[Money | None] = []
    carrier: list[str | None] = []
    window: list[int | None] = []
    item_scope: list[bool] = []
    # Per group of actions, the rules playing a part in it.
    members: dict[str, list[int]] = {
        group: [] for group in ("decision", "fee", "carrier", "refund", "window")
    }
    for k, rule in enumerate(rules):
        chosen = fee_action = ship = days = None
        deciding = None
        groups = set()
        for action in rule.actions:
            kind = action.kind
            groups.add(kind.group)
            if chosen is None:
                deciding = _DECIDING.get(kind)
                if deciding is not None:
                    chosen = action
            if kind is ActionKind.RETURN_FEE:
                fee_action = fee_action or action
            elif kind is ActionKind.SHIP_WITH:
                ship = ship or action
            elif kind is ActionKind.RETURN_WINDOW:
                days = days or action
        if chosen is not None and deciding is not None:
            decision.append(deciding[0])
            strictness.append(deciding[1])
        else:
            decision.append(None)
            strictness.append(0)
        decision_action.append(chosen)
        fee.append(
            fee_action.argument
            if fee_action is not None and isinstance(fee_action.argument, Money)
            else None
        )
        carrier.append(str(ship.argument) if ship else None)
        window.append(days.argument if days and isinstance(days.argument, int) else None)
        item = rule.scope is Scope.ITEM
        item_scope.append(item)
        # Item-scope rules decide, refund and set a fee (the checker refuses a carrier and a
        # window in them). A rule switched off plays no part: it decides, costs and ships nothing.
        if rule.enabled:
            for group in groups:
                if not item or group in _ITEM_GROUPS:
                    members[group].append(k)
    count = len(rules)
    decides = frozenset(members["decision"])
    roles = Roles(
        decides=decides,
        sets_fee=frozenset(members["fee"]),
        sets_carrier=frozenset(members["carrier"]),
        refunds=frozenset(members["refund"]),
        rank=tuple(s * count + k if k in decides else -1 for k, s in enumerate(strictness)),
        not_returnable=frozenset(k for k, d in enumerate(decision) if d is Decision.NOT_RETURNABLE),
        sets_window=frozenset(members["window"]),
        fee_order=(*((-1 if f is None else f.amount, k) for k, f in enumerate(fee)), (-1, -1)),
    )
    masks = {group: _mask(indexes) for group, indexes in members.items()}
    return _Plan(
        tuple(decision),
        tuple(strictness),
        tuple(decision_action),
        (*fee, None),
        (*carrier, None),
        tuple(r.display_name(language) for r in rules),
        tuple(item_scope),
        decides=masks["decision"],
        sets_fee=masks["fee"],
        sets_carrier=masks["carrier"],
        refunds=masks["refund"],
        has_item_rules=any(i and r.enabled for i, r in zip(item_scope, rules, strict=True)),
        roles=roles,
        window=(*window, None),
        sets_window=masks["window"],
        item_fees=any(item_scope[k] for k in members["fee"]),
    )


def _mask(indexes: list[int]) -> int:
    """A bit mask with bit k set for each k of ``indexes``."""
    mask = 0
    for k in indexes:
        mask |= 1 << k
    return mask


def _remember(memo: dict[Any, Any], key: object, value: object) -> None:
    if len(memo) >= MEMO_LIMIT:
        memo.clear()
    memo[key] = value


@attrs.frozen
class RuleSet:
    """A checked, compiled rule set. Build one with :func:`retouraanvraag.rules.parse`.

    Equality compares the rules' meaning: not their positions, comments or language, so a
    Dutch file equals its English translation.

    Attributes:
        rules: the rules, top to bottom.
        timezone: the IANA zone in which "days since delivery/order" are counted.
        language: the language the rules were written in (``nl`` or ``en``).
        warnings: rules that can never match or are always overridden.
        reasons: the reason catalogue values were resolved against.
        fields: the field registry the rules were checked against.
    """

    rules: tuple[Rule, ...]
    timezone: str = "Europe/Amsterdam"
    language: str = attrs.field(default="nl", eq=False)
    warnings: tuple[Diagnostic, ...] = attrs.field(default=(), eq=False, repr=False)
    reasons: ReasonCatalogue = attrs.field(
        factory=lambda: ReasonCatalogue(DEFAULT_REASONS), eq=False, repr=False
    )
    fields: FieldRegistry = attrs.field(factory=FieldRegistry, eq=False, repr=False)
    trailing_comments: tuple[str, ...] = attrs.field(default=(), eq=False, repr=False)
    #: What the host calls this edition of the rules (``"7"``, a date); outcomes carry it.
    version: str | None = attrs.field(default=None, eq=False, validator=_check_version)
    _decide: Callable[[ReturnRequest], Decided] = attrs.field(init=False, eq=False, repr=False)
    _plan: _Plan = attrs.field(init=False, eq=False, repr=False)
    #: Outcomes' fields by default, then by what the decider found (refusing no items).
    _memos: dict[Decision | None, dict[Decided, _Values]] = attrs.field(
        init=False, eq=False, repr=False
    )
    #: The decision part of outcomes, by (best rank, some item undecided, default).
    _cores: dict[Any, _Core] = attrs.field(init=False, eq=False, repr=False)
    #: The decision part of outcomes refusing items, by (refused items, language).
    _refusals: dict[Any, _Core] = attrs.field(init=False, eq=False, repr=False)
    #: Built on first use: the function saying which rules matched where (for traces), the
    #: trace lines and whole traces.
    _later: dict[str, Any] = attrs.field(init=False, eq=False, repr=False)
    _lines: dict[Any, str] = attrs.field(init=False, eq=False, repr=False)
    _traces: dict[Any, tuple[str, ...]] = attrs.field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        """Compile once; evaluation then runs plain Python."""
        tz = load_timezone(self.timezone)
        plan = _plan(self.rules, self.language)
        object.__setattr__(self, "_plan", plan)
        object.__setattr__(
            self, "_decide", compile_decider(self.rules, tz, self.reasons, plan.roles)
        )
        for name in ("_memos", "_cores", "_refusals", "_later", "_lines", "_traces"):
            object.__setattr__(self, name, {})

    def __len__(self) -> int:
        """The number of rules."""
        return len(self.rules)

    def evaluate(self, request: ReturnRequest, *, default: Decision | None = None) -> Outcome:
        """Decide a request by the rules (DESIGN §3, "Meaning"); never raises for a valid request.

        Every rule runs per item; each item's decision is the last matching rule's; the
        request's decision is the strictest of its items'. Items no rule decides take
        ``default`` (the shop's policy); without a ``default`` the outcome's decision is
        ``None`` whenever that default could change it (the desk then applies its policy).

        Args:
            request: the request to decide.
            default: the policy's decision for items no rule decides, if known.

        Returns:
            The decision, reject reason, refund flag, return fee, carrier, refused items,
            the deciding rule's name and one trace line per matching rule (worked out when
            ``trace`` is first read).
        """
        found = self._decide(request)
        memo = self._memos.get(default)
        fields = memo.get(found) if memo is not None and not found[5] else None
        if fields is None:
            fields = self._outcome_fields(found, default, request.customer.language)
        outcome: _TracedOutcome = _new(_TracedOutcome)
        _set_fields(outcome, fields)
        _set_source(outcome, (self, request))
        return outcome

    def _outcome_fields(self, found: Decided, default: Decision | None, language: str) -> _Values:
        """An outcome's fields (all but the trace) for what the decider found."""
        best, undecided, fee, carrier, refund, refused, window = found
        if refused:
            core = self._refusal(best, refused, language)
        else:
            core = self._cores.get((best, undecided, default)) or self._core(
                best, undecided, default
            )
        decision, reason, items, rule = core
        plan = self._plan
        fields = (
            decision,
            reason,
            refund,
            plan.fee[fee],
            plan.carrier[carrier],
            items,
            rule,
            plan.window[window],
            self.version,
        )
        if not refused:
            memo = self._memos.get(default)
            if memo is None:
                memo = self._memos[default] = {}
            _remember(memo, found, fields)
        return fields

    def _core(self, best: int, undecided: bool, default: Decision | None) -> _Core:
        """The decision, reject reason and deciding rule for the best item decision's rank."""
        plan = self._plan
        rule_index = best % len(plan.names) if best >= 0 else -1
        best_strictness = plan.strictness[rule_index] if best >= 0 else 0
        decision: Decision | None = None
        rule: str | None = None
        if rule_index >= 0 and not (
            undecided and default is None and best_strictness < _REVIEW_STRICTNESS
        ):
            decision, rule = plan.decision[rule_index], plan.names[rule_index]
        if undecided and default is not None and default.strictness > best_strictness:
            decision, rule = default, None
        reason = None
        if decision is Decision.REJECT and rule is not None:
            # A rejection by the default has no rule, so no reason of a rule's to give.
            reason = plan.decision_action[rule_index].argument
        core: _Core = (decision, reason, (), rule)
        _remember(self._cores, (best, undecided, default), core)
        return core

    def _refusal(self, best: int, refused: tuple[tuple[int, int], ...], language: str) -> _Core:
        """The decision part when not-returnable rules decided ``refused`` (item, rule) pairs."""
        key = (refused, language)
        core = self._refusals.get(key)
        if core is not None:
            return core
        plan = self._plan
        items: list[RefusedItem] = []
        whole_order = False
        for index, k in refused:
            action = plan.decision_action[k]
            whole = action.kind is ActionKind.ORDER_NOT_RETURNABLE
            if whole and whole_order:
                continue
            whole_order = whole_order or whole
            text = action.argument or word(REFUSAL_MESSAGES, "order" if whole else "item", language)
            items.append(RefusedItem(None if whole else index, str(text)))
        core = (Decision.NOT_RETURNABLE, None, tuple(items), plan.names[best % len(plan.names)])
        _remember(self._refusals, key, core)
        return core

    # -- the trace ------------------------------------------------------------------------------

    def _matches(self) -> Callable[[ReturnRequest], RunResult]:
        """The function saying which rules matched where, compiled on first use."""
        run: Callable[[ReturnRequest], RunResult] | None = self._later.get("run")
        if run is None:
            run = compile_rules(self.rules, load_timezone(self.timezone), self.reasons)
            self._later["run"] = run
        return run

    def trace_lines(self, request: ReturnRequest) -> tuple[str, ...]:
        """One line per rule matching ``request``, in rule order; overridden actions marked."""
        result = self._matches()(request)
        # The winning fee rule, as the decider found it: with fees set per item, the highest
        # item fee wins, which the matches alone do not tell.
        fee = self._decide(request)[2] if self._plan.item_fees else -1
        trace = self._traces.get((result, fee))
        if trace is None:
            trace = self._trace(result, fee)
            _remember(self._traces, (result, fee), trace)
        return trace

    def _trace(self, result: RunResult, item_fee: int) -> tuple[str, ...]:
        plan = self._plan
        hits = result[0]
        decides = plan.decides
        masks: tuple[int, ...] | None
        if plan.has_item_rules:
            masks = result[1:]
            # An item's decision is the last matching decision rule: the highest bit set.
            decisions = tuple([((hits | m) & decides).bit_length() - 1 for m in masks])
            matched = hits
            for m in masks:
                matched |= m
        else:
            masks = None
            decisions = ((hits & decides).bit_length() - 1,) * result[1]
            matched = hits
        fee = item_fee if plan.item_fees else (hits & plan.sets_fee).bit_length() - 1
        carrier = (hits & plan.sets_carrier).bit_length() - 1
        window = (hits & plan.sets_window).bit_length() - 1
        lines = []
        cache = self._lines
        top = max(decisions, default=-1)
        items: tuple[int, ...] | None
        for k in _bits(matched):
            if hits >> k & 1 or masks is None:
                items = None
                by_decision = -1 if k in decisions else top
            elif len(masks) == 1:
                items = _FIRST_ITEM
                by_decision = -1 if k == decisions[0] else decisions[0]
            else:
                items = tuple([i for i, m in enumerate(masks) if m >> k & 1])
                deciders = [decisions[i] for i in items]
                by_decision = -1 if k in deciders else max(deciders)
            key = (k, items, by_decision, fee, carrier, window)
            line = cache.get(key)
            if line is None:
                by = {"decision": by_decision, "fee": fee, "carrier": carrier, "window": window}
                line = self._line(k, items, by)
                _remember(cache, key, line)
            lines.append(line)
        return tuple(lines)

    def _line(self, k: int, items: tuple[int, ...] | None, by: dict[str, int]) -> str:
        plan, language = self._plan, self.language
        parts = []
        for action in self.rules[k].actions:
            text = format_action(action, language)
            winner = by.get(action.kind.group, -1)
            if winner not in {k, -1}:
                mark = word(REPORT_WORDS, "overridden", language).format(other=plan.names[winner])
                parts.append(f"{text} ({mark})")
            else:
                parts.append(text)
        name = plan.names[k]
        if items is not None:
            label = word(REPORT_WORDS, "items", language)
            name = f"{name} [{label} {', '.join(str(i + 1) for i in items)}]"
        return f"{name}: {', '.join(parts)}"

    def explain(self, request: ReturnRequest, language: str | None = None) -> str:
        """A readable report: every rule, every comparison with the request's actual values.

        Args:
            request: the request to explain.
            language: ``nl`` or ``en``; defaults to the rules' language.
        """
        return explain(self, request, language or self.language)
