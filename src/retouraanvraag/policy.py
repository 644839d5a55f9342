"""A shop's return policy: review by hand or not, the return window, the shop, its rules.

:class:`Policy` is what the :class:`~retouraanvraag.workflow.Desk` asks, per shop, on every
command that needs it.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Final

import attrs

from retouraanvraag.errors import InvalidInput
from retouraanvraag.model import ReasonCatalogue, _check_moment
from retouraanvraag.shop import DEFAULT_TIMEZONE, ShopSettings

if TYPE_CHECKING:
    from retouraanvraag.ports import RuleEvaluator

__all__ = ["Policy"]


def _check_window(_instance: object, _attribute: object, value: int | None) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_WINDOW:
        raise InvalidInput(
            f"must be a whole number of days from 0 to {_MAX_WINDOW}, or None",
            field="return_window_days",
        )


_MAX_WINDOW: Final = 3650


@attrs.frozen(init=False)
class Policy:
    """A shop's return policy.

    Attributes:
        manual_approval: with no rule deciding, ``True`` waits for review, ``False`` approves
            with a label (Sendcloud's "Retouren handmatig goedkeuren en afwijzen").
        return_window_days: days after delivery during which a return may be asked
            (``None``: no window).
        shop: the shop's settings: its time zone (the window counts calendar days there)
            and the return reasons it offers, among others.
        rules: the shop's rule set, consulted at submission; parse it with the same
            ``shop`` (``rules.parse(text, shop=shop)``).
    """

    manual_approval: bool
    return_window_days: int | None = attrs.field(validator=_check_window)
    shop: ShopSettings = attrs.field(validator=attrs.validators.instance_of(ShopSettings))
    rules: RuleEvaluator | None = attrs.field(eq=False)

    def __init__(
        self,
        *,
        manual_approval: bool = True,
        return_window_days: int | None = 30,
        shop: ShopSettings | None = None,
        rules: RuleEvaluator | None = None,
        timezone: str | None = None,
        reasons: ReasonCatalogue | None = None,
    ) -> None:
        """Build the policy; ``timezone`` and ``reasons`` are short for a ``shop`` with them.

        Raises:
            InvalidInput: the window is not a whole number of days from 0 to 3650, the zone
                is not an IANA zone, ``timezone``/``reasons`` are given beside ``shop``, or
                the rules were parsed for another time zone than the shop's.
        """
        if shop is None:
            shop = ShopSettings(
                timezone=DEFAULT_TIMEZONE if timezone is None else timezone,
                reasons=ReasonCatalogue() if reasons is None else reasons,
            )
        elif timezone is not None or reasons is not None:
            raise InvalidInput(
                "give the time zone and the reasons in shop=, not beside it",
                field="timezone" if timezone is not None else "reasons",
            )
        zone = getattr(rules, "timezone", None)
        if isinstance(zone, str) and zone != shop.timezone:
            raise InvalidInput(
                f"the rules count days in {zone!r} but the shop is in {shop.timezone!r}: "
                "parse them with rules.parse(text, shop=...)",
                field="rules",
            )
        self.__attrs_init__(manual_approval, return_window_days, shop, rules)

    @property
    def timezone(self) -> str:
        """The shop's IANA time zone (``shop.timezone``)."""
        return self.shop.timezone

    @property
    def reasons(self) -> ReasonCatalogue:
        """The return reasons the shop offers (``shop.reasons``)."""
        return self.shop.reasons

    def deadline(self, delivered_at: dt.datetime, days: int | None = None) -> dt.date | None:
        """The last local day on which a return may be asked, or ``None`` without a window.

        ``days`` is a window the shop's rules gave (``Retourtermijn 60 dagen``); without it,
        the policy's ``return_window_days`` applies.

        Raises:
            InvalidInput: ``delivered_at`` is not an aware datetime between
                :data:`~retouraanvraag.model.EARLIEST_MOMENT` and ``LATEST_MOMENT`` (the
                field is ``delivered_at``).
        """
        _check_moment(delivered_at, "delivered_at")
        window = days if days is not None else self.return_window_days
        if window is None:
            return None
        # Within the bounds, neither the zone nor the window (at most ten years) can overflow.
        local = delivered_at.astimezone(self.shop.zone)
        return local.date() + dt.timedelta(days=window)
