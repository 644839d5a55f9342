"""A loaded rule set: evaluate a request (DESIGN §3, "Meaning") and explain the result."""

from __future__ import annotations

import datetime as dt
import functools
import zoneinfo
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
from retouraanvraag.rules._compiler import RunResult, compile_rules
from retouraanvraag.rules._format import format_action
from retouraanvraag.rules._messages import REFUSAL_MESSAGES, REPORT_WORDS, word
from retouraanvraag.rules.diagnostics import Diagnostic
from retouraanvraag.rules.fields import ActionKind, FieldRegistry, Scope
from retouraanvraag.rules.tree import Rule

__all__ = ["DECISIONS", "RuleSet", "load_timezone"]

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
_OUTCOME_CACHE_LIMIT: Final = 16_384
_FIRST_ITEM: Final[tuple[int, ...]] = (0,)


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
    """The IANA time zone ``name``.

    Raises:
        InvalidInput: not a known time zone.
    """
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError) as error:
        raise InvalidInput(f"unknown time zone {name!r}", field="timezone") from error


@attrs.frozen
class _Plan:
    """Per-rule facts the evaluation reads, computed once at load time."""

    decision: tuple[Decision | None, ...]
    strictness: tuple[int, ...]
    decision_action: tuple[Any, ...]
    fee: tuple[Money | None, ...]
    carrier: tuple[str | None, ...]
    names: tuple[str, ...]
    actions: tuple[tuple[tuple[str, str], ...], ...]  # (group, text) per action
    item_scope: tuple[bool, ...]
    #: Bit masks of the rules (bit k for rule k) that decide, set the fee, choose the carrier,
    #: refund the fee: the last matching rule of a group is the highest bit set.
    decides: int
    sets_fee: int
    sets_carrier: int
    refunds: int
    has_item_rules: bool


def _mask(flags: list[bool]) -> int:
    return sum(1 << k for k, flag in enumerate(flags) if flag)


def _plan(rules: tuple[Rule, ...], language: str) -> _Plan:
    decision, strictness, decision_action, fee, carrier, actions = [], [], [], [], [], []
    for rule in rules:
        chosen = next((a for a in rule.actions if a.kind in DECISIONS), None)
        decision.append(DECISIONS[chosen.kind] if chosen else None)
        strictness.append(DECISIONS[chosen.kind].strictness if chosen else 0)
        decision_action.append(chosen)
        fee_action = next((a for a in rule.actions if a.kind is ActionKind.RETURN_FEE), None)
        fee.append(
            fee_action.argument
            if fee_action is not None and isinstance(fee_action.argument, Money)
            else None
        )
        ship = next((a for a in rule.actions if a.kind is ActionKind.SHIP_WITH), None)
        carrier.append(str(ship.argument) if ship else None)
        actions.append(tuple((a.kind.group, format_action(a, language)) for a in rule.actions))
    groups = [{a.kind.group for a in rule.actions} for rule in rules]
    item_scope = [r.scope is Scope.ITEM for r in rules]
    # Item-scope rules only decide and refund (the checker refuses fee and carrier in them).
    effective = [
        {g for g in found if g in {"decision", "refund"} or not item}
        for found, item in zip(groups, item_scope, strict=True)
    ]
    return _Plan(
        tuple(decision),
        tuple(strictness),
        tuple(decision_action),
        tuple(fee),
        tuple(carrier),
        tuple(r.display_name(language) for r in rules),
        tuple(actions),
        tuple(item_scope),
        decides=_mask(["decision" in g for g in effective]),
        sets_fee=_mask(["fee" in g for g in effective]),
        sets_carrier=_mask(["carrier" in g for g in effective]),
        refunds=_mask(["refund" in g for g in effective]),
        has_item_rules=any(item_scope),
    )


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
    _run: Callable[[ReturnRequest], RunResult] = attrs.field(init=False, eq=False, repr=False)
    _plan: _Plan = attrs.field(init=False, eq=False, repr=False)
    _outcomes: dict[Any, Outcome] = attrs.field(init=False, eq=False, repr=False)
    _lines: dict[Any, str] = attrs.field(init=False, eq=False, repr=False)
    _cores: dict[Any, Any] = attrs.field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        """Compile once; evaluation then runs plain Python."""
        tz = load_timezone(self.timezone)
        object.__setattr__(self, "_run", compile_rules(self.rules, tz, self.reasons))
        object.__setattr__(self, "_plan", _plan(self.rules, self.language))
        object.__setattr__(self, "_outcomes", {})
        object.__setattr__(self, "_lines", {})
        object.__setattr__(self, "_cores", {})

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
            the deciding rule's name and one trace line per matching rule.
        """
        result = self._run(request)
        # The outcome depends only on which rules matched where, so it is memoised on that.
        key = (result, request.customer.language, default)
        outcome = self._outcomes.get(key)
        if outcome is None:
            outcome = self._decide(result, key[1].value, default)
            if len(self._outcomes) < _OUTCOME_CACHE_LIMIT:
                self._outcomes[key] = outcome
        return outcome

    def _decide(self, result: RunResult, language: str, default: Decision | None) -> Outcome:
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
        fee = (hits & plan.sets_fee).bit_length() - 1
        carrier = (hits & plan.sets_carrier).bit_length() - 1
        core_key = (decisions, language, default)
        core = self._cores.get(core_key)
        if core is None:
            core = self._core(decisions, language, default)
            if len(self._cores) < _OUTCOME_CACHE_LIMIT:
                self._cores[core_key] = core
        decision, reason, refused, rule = core
        return Outcome(
            decision=decision,
            reason=reason,
            refund_return_fee=bool(matched & plan.refunds),
            return_fee=plan.fee[fee] if fee >= 0 else None,
            carrier=plan.carrier[carrier] if carrier >= 0 else None,
            refused=refused,
            rule=rule,
            trace=self._trace(hits, masks, matched, fee, carrier, decisions),
        )

    def _core(
        self, decisions: tuple[int, ...], language: str, default: Decision | None
    ) -> tuple[Decision | None, str | None, tuple[RefusedItem, ...], str | None]:
        """The decision, reject reason, refused items and deciding rule for the items' rules."""
        plan = self._plan
        undecided = -1 in decisions
        best, best_strictness = -1, 0
        for d in decisions:
            if d >= 0 and (plan.strictness[d], d) > (best_strictness, best):
                best, best_strictness = d, plan.strictness[d]
        decision: Decision | None = None
        rule: str | None = None
        if best >= 0 and not (
            undecided and default is None and best_strictness < _REVIEW_STRICTNESS
        ):
            decision, rule = plan.decision[best], plan.names[best]
        if undecided and default is not None and default.strictness > best_strictness:
            decision, rule = default, None
        reason = None
        refused: tuple[RefusedItem, ...] = ()
        if decision is Decision.REJECT and rule is not None:
            # A rejection by the default has no rule, so no reason of a rule's to give.
            reason = plan.decision_action[best].argument
        elif decision is Decision.NOT_RETURNABLE:
            refused = self._refused(decisions, language)
        return decision, reason, refused, rule

    def _refused(self, decisions: tuple[int, ...], language: str) -> tuple[RefusedItem, ...]:
        refused: list[RefusedItem] = []
        whole_order = False
        for index, d in enumerate(decisions):
            action = self._plan.decision_action[d] if d >= 0 else None
            if action is None or DECISIONS[action.kind] is not Decision.NOT_RETURNABLE:
                continue
            whole = action.kind is ActionKind.ORDER_NOT_RETURNABLE
            if whole and whole_order:
                continue
            whole_order = whole_order or whole
            text = action.argument or word(REFUSAL_MESSAGES, "order" if whole else "item", language)
            refused.append(RefusedItem(None if whole else index, str(text)))
        return tuple(refused)

    def _trace(  # noqa: PLR0917 - private, called once per new pattern
        self,
        hits: int,
        masks: tuple[int, ...] | None,
        matched: int,
        fee: int,
        carrier: int,
        decisions: tuple[int, ...],
    ) -> tuple[str, ...]:
        """One line per matching rule, in rule order; overridden actions marked."""
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
            key = (k, items, by_decision, fee, carrier)
            line = cache.get(key)
            if line is None:
                by = {"decision": by_decision, "fee": fee, "carrier": carrier}
                line = self._line(k, items, by)
                if len(cache) < _OUTCOME_CACHE_LIMIT:
                    cache[key] = line
            lines.append(line)
        return tuple(lines)

    def _line(self, k: int, items: tuple[int, ...] | None, by: dict[str, int]) -> str:
        plan, language = self._plan, self.language
        parts = []
        for group, text in plan.actions[k]:
            winner = by.get(group, -1)
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
        from retouraanvraag.rules._explain import explain  # noqa: PLC0415

        return explain(self, request, language or self.language)
