"""Every error the library raises, under one root: :class:`RetouraanvraagError`.

Errors carry their data as attributes (request id, status, field, line, column) so that a host
can act on them without parsing messages, and they pickle (they cross process boundaries in
workers). Messages name ids and fields, never customer names, e-mail addresses or addresses.
Each subclass also derives from the builtin that fits (``ValueError``, ``LookupError``).
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any, Self

if TYPE_CHECKING:
    import datetime as dt

    from retouraanvraag.model import Money


def _rebuild(
    cls: type[BaseException], args: tuple[Any, ...], state: dict[str, Any]
) -> BaseException:
    error = cls.__new__(cls)
    BaseException.__init__(error, *args)
    error.__dict__.update(state)
    return error


class RetouraanvraagError(Exception):
    """The root of every error this library raises."""

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle by state, so that subclasses with keyword-only constructors round-trip."""
        return (_rebuild, (type(self), self.args, dict(self.__dict__)))


# -- bad input ------------------------------------------------------------------------------


class InvalidSignature(RetouraanvraagError, ValueError):
    """A webhook's signature header that does not prove the body came from the shop.

    Raised by :func:`retouraanvraag.adapters.webhook.verify_signature` for a header that is
    missing, malformed, signed with another secret, over another body, or too old (or too far
    ahead): a receiver answers it with 400 and keeps nothing. The message says which, and
    never echoes the header or the body.

    Attributes:
        reason: what is wrong, in a few words (``"expired"``, ``"no matching signature"``).
    """

    def __init__(self, reason: str) -> None:
        """Build the error from what is wrong."""
        self.reason = reason
        super().__init__(f"webhook signature refused: {reason}")


class InvalidInput(RetouraanvraagError, ValueError):
    """Input that the library refuses; nothing was stored.

    Attributes:
        field: where the problem is, as a dotted path (``items[1].quantity``), or ``None``.
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        """Build the error; the message is prefixed with the field when one is given."""
        self.field = field
        self.problem = message
        super().__init__(f"{field}: {message}" if field else message)

    def at(self, prefix: str) -> Self:
        """The same error, placed under ``prefix``: ``quantity`` becomes ``items[1].quantity``."""
        error = copy.copy(self)
        error.field = f"{prefix}.{self.field}" if self.field else prefix
        error.args = (f"{error.field}: {self.problem}",)
        return error


class InvalidMoney(InvalidInput):
    """An amount that cannot be read, is negative, or has too many decimals."""


class CurrencyMismatch(InvalidInput):
    """Two amounts in different currencies were combined or compared."""


class WrongType(InvalidInput, TypeError):
    """A value of the wrong type where the library expects another (``None`` for a text, say).

    Attributes:
        expected: what the field takes, in words (``Money``, ``text``).
        got: the type name of what was given; the value itself stays out of the message.
    """

    def __init__(
        self, *, expected: str, got: str, field: str | None = None, hint: str | None = None
    ) -> None:
        """Build the error naming the field, what it takes and what it got."""
        self.expected = expected
        self.got = got
        self.hint = hint
        super().__init__(
            f"must be {expected}, not {got}" + (f"; {hint}" if hint else ""), field=field
        )


class UnknownCountry(InvalidInput, LookupError):
    """A country name or code that is not known; ``suggestion`` holds the nearest name."""

    def __init__(
        self, text: str, *, suggestion: str | None = None, field: str | None = None
    ) -> None:
        """Build the error for ``text``, with an optional "did you mean" suggestion."""
        self.text = text
        self.suggestion = suggestion
        hint = f"; did you mean {suggestion!r}?" if suggestion else ""
        super().__init__(f"unknown country {text!r}{hint}", field=field)


class UnknownReason(InvalidInput, LookupError):
    """A return reason that is not in the shop's catalogue."""

    def __init__(
        self, text: str, *, suggestion: str | None = None, field: str | None = None
    ) -> None:
        """Build the error for ``text``, with an optional "did you mean" suggestion."""
        self.text = text
        self.suggestion = suggestion
        hint = f"; did you mean {suggestion!r}?" if suggestion else ""
        super().__init__(f"unknown return reason {text!r}{hint}", field=field)


class InvalidPhoto(InvalidInput):
    """A photo that is not a JPEG, PNG or WebP image, is too large, or one too many."""


class ReturnWindowExpired(InvalidInput):
    """The return window has closed; ``message_nl``/``message_en`` are for the customer.

    Attributes:
        deadline: the last day (merchant's time zone) on which a return could be asked.
    """

    def __init__(self, *, order_number: str, deadline: str, days: int) -> None:
        """Build the error with customer-facing messages in Dutch and English."""
        self.order_number = order_number
        self.deadline = deadline
        self.days = days
        self.message_nl = (
            f"De retourtermijn van {days} dagen voor bestelling {order_number} is verlopen "
            f"op {deadline}."
        )
        self.message_en = (
            f"The {days}-day return window for order {order_number} closed on {deadline}."
        )
        super().__init__(self.message_en)


class ReturnRefused(InvalidInput):
    """The shop's rules refuse this return (``Retour niet mogelijk``) or some of its items.

    Attributes:
        refused: ``(item index, customer-facing message)`` pairs; index ``None`` is the order.
    """

    def __init__(self, refused: tuple[tuple[int | None, str], ...]) -> None:
        """Build the error from the refused items and their messages."""
        self.refused = refused
        parts = [f"item {i}: {m}" if i is not None else m for i, m in refused]
        super().__init__("return refused: " + "; ".join(parts))


class ReturnFeeMismatch(InvalidInput):
    """The return fee paid is not the one the shop's rules ask (``Retourkosten €2,00``).

    ``message_nl``/``message_en`` are for the customer; ``field`` is ``return_fee``.

    Attributes:
        asked: the fee the rules ask (``Money``).
        paid: the fee paid (``Money``), or ``None`` when none was paid.
    """

    def __init__(self, *, asked: Money, paid: Money | None) -> None:
        """Build the error with customer-facing messages in Dutch and English."""
        self.asked = asked
        self.paid = paid
        paid_nl = f"er is {paid.format('nl')} betaald" if paid else "er is niets betaald"
        paid_en = f"{paid.format('en')} was paid" if paid else "none was paid"
        self.message_nl = f"De retourkosten voor deze retour zijn {asked.format('nl')}; {paid_nl}."
        self.message_en = f"The return fee for this return is {asked.format('en')}; {paid_en}."
        super().__init__(
            f"the rules ask a return fee of {asked}, the submission paid {paid or 'none'}",
            field="return_fee",
        )


# -- lifecycle ------------------------------------------------------------------------------


class TransitionNotAllowed(RetouraanvraagError):
    """A command that the request's current status does not allow."""

    def __init__(self, *, request_id: str, status: str, command: str) -> None:
        """Build the error naming the request, its status and the refused command."""
        self.request_id = request_id
        self.status = status
        self.command = command
        super().__init__(f"request {request_id}: cannot {command} a request that is {status}")


class IdempotencyConflict(RetouraanvraagError, ValueError):
    """An idempotency key reused with different arguments."""

    def __init__(self, *, key: str, command: str) -> None:
        """Build the error naming the key and the command it was reused for."""
        self.key = key
        self.command = command
        super().__init__(
            f"idempotency key {key!r} was first used with other arguments; "
            f"refusing to run {command} under it"
        )


# -- ports ----------------------------------------------------------------------------------


class PortError(RetouraanvraagError):
    """The root of errors that adapters translate their driver errors into."""


class PortUnavailable(PortError):
    """A transient failure (network, lock, timeout): the same call may succeed later.

    Attributes:
        retry_after: how long the provider asked to be left alone (an HTTP ``Retry-After``),
            or ``None``. The dispatcher waits at least that long, within its ``backoff_cap``.
    """

    def __init__(self, *args: object, retry_after: dt.timedelta | None = None) -> None:
        """Build the error; ``retry_after`` is the provider's own wait, if it named one."""
        super().__init__(*args)
        self.retry_after = retry_after


class PortRejected(PortError):
    """A permanent failure: retrying will not help; a person must look."""


class ConcurrentModification(PortError):
    """A compare-and-set save lost a race: the stored version is not the expected one."""

    def __init__(self, *, request_id: str, expected: int | None, actual: int | None) -> None:
        """Build the error naming the request and both versions."""
        self.request_id = request_id
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"request {request_id}: expected version {expected}, stored version is {actual}"
        )


class IdempotencyKeyTaken(ConcurrentModification):
    """Another change recorded this idempotency key first (a concurrent call with the key)."""

    def __init__(self, *, shop_id: str, request_id: str, key: str) -> None:
        """Build the error naming the shop, the request and the key."""
        super().__init__(request_id=request_id, expected=None, actual=None)
        self.shop_id = shop_id
        self.key = key
        self.args = (
            f"request {request_id}: idempotency key {key!r} is already recorded in shop {shop_id}",
        )


class LeaseLost(ConcurrentModification):
    """A worker settled an outbox entry it no longer holds (its lease ran out, say)."""

    def __init__(self, *, request_id: str, key: str, owner: str) -> None:
        """Build the error naming the entry and the would-be settler."""
        super().__init__(request_id=request_id, expected=None, actual=None)
        self.key = key
        self.owner = owner
        self.args = (
            (
                f"request {request_id}: outbox entry {key!r} is not leased to {owner!r} (the "
                "lease ran out and another worker took it, it was settled, or it does not exist)"
            ),
        )


class NotFound(PortError, LookupError):
    """No such request (or photo) in this shop; another shop's id also lands here.

    Attributes:
        shop_id: the shop that asked.
        request_id: the id that was looked up (a photo's key when ``what`` is ``"photo"``).
        what: what kind of thing was looked up.
    """

    def __init__(self, *, shop_id: str, request_id: str, what: str = "return request") -> None:
        """Build the error naming the shop and the id that was looked up."""
        self.shop_id = shop_id
        self.request_id = request_id
        self.what = what
        super().__init__(f"shop {shop_id}: no {what} {request_id}")


# -- rules ----------------------------------------------------------------------------------


class RuleError(RetouraanvraagError, ValueError):
    """A rule file (or a lone condition) that cannot be loaded; every problem is listed.

    Attributes:
        diagnostics: every problem found, errors and warnings, in source order
            (``retouraanvraag.rules.Diagnostic``: line, column, message, source line, hint).
        source_name: the file name the rules came from.
    """

    def __init__(
        self,
        diagnostics: tuple[Any, ...],
        *,
        source_name: str = "<rules>",
        summary: str | None = None,
    ) -> None:
        """Build the error; the message sums up, then lists every diagnostic, compiler style.

        ``summary`` counts the problems in the file's language (``2 fouten, 1 waarschuwing``);
        by default they are counted in English.
        """
        self.diagnostics = diagnostics
        self.source_name = source_name
        if summary is None:
            errors = sum(1 for d in diagnostics if str(getattr(d, "severity", "error")) == "error")
            summary = f"{errors} error" if errors == 1 else f"{errors} errors"
        listing = "\n".join(str(d) for d in diagnostics)
        super().__init__(f"{source_name}: {summary}\n{listing}")
