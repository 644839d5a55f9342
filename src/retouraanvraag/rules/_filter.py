"""A checked condition used as a filter: what a store needs to run it itself.

A store that can translate the condition (SQL, say) reads :attr:`ConditionFilter.condition`
with the shop's time zone and reasons catalogue; any other store calls the filter, which runs
the compiled Python predicate. Both give the same answer: the Python one is the reference.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs

from retouraanvraag.model import DEFAULT_REASONS, ReasonCatalogue, ReturnRequest
from retouraanvraag.rules._compiler import compile_condition_function
from retouraanvraag.rules._ruleset import load_timezone
from retouraanvraag.rules.tree import Condition

__all__ = ["ConditionFilter"]


@attrs.frozen(eq=False)
class ConditionFilter:
    """A rule condition as a filter on requests: true when it certainly holds.

    It holds for a request when the condition is certainly true for the request or, when it
    names an item field, for at least one of its items (unknown is not true).

    Attributes:
        condition: the checked condition tree.
        timezone: the shop's IANA zone (dates and "days since …" are read in it).
        reasons: the shop's reasons catalogue (a stored reason matches by code or label).
    """

    condition: Condition
    timezone: str
    reasons: ReasonCatalogue
    _matches: Callable[[ReturnRequest], bool] = attrs.field(repr=False, alias="matches")

    @classmethod
    def of(
        cls,
        condition: Condition,
        *,
        timezone: str = "Europe/Amsterdam",
        reasons: ReasonCatalogue | None = None,
    ) -> ConditionFilter:
        """Compile a checked condition (one built or parsed elsewhere) into a filter.

        Raises:
            InvalidInput: ``timezone`` is not a known time zone.
        """
        catalogue = reasons if reasons is not None else ReasonCatalogue(DEFAULT_REASONS)
        predicate = compile_condition_function(condition, load_timezone(timezone), catalogue)
        return cls(condition, timezone, catalogue, predicate)

    def __call__(self, request: ReturnRequest) -> bool:
        """Whether the condition certainly holds for ``request`` (or one of its items)."""
        return self._matches(request)
