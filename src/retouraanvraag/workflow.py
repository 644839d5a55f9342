"""The desk: the commands and queries a shop backend calls.

Every command loads the request, asks the aggregate for a :class:`~retouraanvraag.model.Change`,
and saves the new request together with the effects it owes in one storage transaction
(compare-and-set on the version; a lost race is retried a bounded number of times). Effects run
later, in :class:`Dispatcher`, each with a stable key so that retries never duplicate a label,
a refund or a mail.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import logging
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

import attrs

from retouraanvraag import photos as _photos
from retouraanvraag._codec import converter
from retouraanvraag.errors import (
    ConcurrentModification,
    IdempotencyConflict,
    InvalidInput,
    InvalidPhoto,
    NotFound,
    RetouraanvraagError,
    ReturnFeeMismatch,
    ReturnRefused,
    ReturnWindowExpired,
    TransitionNotAllowed,
    WrongType,
)
from retouraanvraag.model import (
    CUSTOMER,
    SYSTEM,
    TRANSITIONS,
    Actor,
    Change,
    Channel,
    Command,
    Customer,
    Decision,
    EffectKind,
    Money,
    Outcome,
    PaidFee,
    PhotoRef,
    Reason,
    RefundMethod,
    ReturnItem,
    ReturnRequest,
    Status,
    _check_moment,
    _choice,
    _require,
    resolve_country,
    staff_actor,
)
from retouraanvraag.policy import Policy
from retouraanvraag.ports import (
    COMMAND_RETRIES,
    Clock,
    Commit,
    EffectState,
    IdempotencyRecord,
    Page,
    PhotoStore,
    Query,
    Storage,
    SystemClock,
    Tab,
    check_idempotency_key,
)
from retouraanvraag.shop import ShopSettings
from retouraanvraag.submission import NewItem, NewRequest

if TYPE_CHECKING:
    from retouraanvraag.rules import ConditionFilter

__all__ = [
    "BULK_LIMIT",
    "TRANSITIONS",
    "Desk",
    "NewItem",
    "NewRequest",
    "Policy",
]

log = logging.getLogger("retouraanvraag")


def _fingerprint(command: Command, arguments: Mapping[str, Any]) -> str:
    payload = json.dumps(
        {"command": command, "arguments": converter.unstructure(arguments)},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def _submission_fingerprint(new: NewRequest) -> str:
    """The submission's digest; photos count by their SHA-256, not by their bytes."""
    items = [
        {**attrs.asdict(item, recurse=False), "photos": [_digest(p) for p in item.photos]}
        for item in new.items
    ]
    return _fingerprint(Command.SUBMIT, {**attrs.asdict(new, recurse=False), "items": items})


def _digest(upload: object) -> str:
    if not isinstance(upload, bytes | bytearray | memoryview):
        return repr(type(upload))
    return hashlib.sha256(upload).hexdigest()


#: The most requests :meth:`Desk.decide_many` decides in one call (a tab's largest page).
BULK_LIMIT: Final = 500
_BULK_DECISIONS: Final = frozenset(
    {Decision.APPROVE_WITH_LABEL, Decision.APPROVE_WITHOUT_LABEL, Decision.REJECT}
)


def _bulk_decision(
    decision: Decision | str, reason: object, *, refund_return_fee: bool
) -> Decision:
    """The decision of a bulk call, checked with its reason and refund flag."""
    try:
        chosen = Decision(decision)
    except ValueError:
        chosen = None
    if chosen is None or chosen not in _BULK_DECISIONS:
        names = ", ".join(sorted(d.value for d in _BULK_DECISIONS))
        raise InvalidInput(f"must be one of {names}, not {decision!r}", field="decision")
    rejecting = chosen is Decision.REJECT
    if rejecting and not (
        isinstance(reason, Reason) or (isinstance(reason, str) and reason.strip())
    ):
        raise InvalidInput("a rejection needs a reason the customer reads", field="reason")
    if not rejecting and reason is not None:
        raise InvalidInput("only a rejection takes a reason", field="reason")
    if rejecting and refund_return_fee:
        raise InvalidInput(
            "a rejection refunds a paid fee by itself; do not ask for it",
            field="refund_return_fee",
        )
    return chosen


def _bulk_ids(request_ids: object) -> list[str]:
    """The ids of a bulk call, each once, in the order given."""
    if isinstance(request_ids, str) or not isinstance(request_ids, Sequence):
        raise InvalidInput("must be a sequence of request ids", field="request_ids")
    for i, request_id in enumerate(request_ids):
        if not isinstance(request_id, str) or not request_id:
            raise InvalidInput("must be a request id (text)", field=f"request_ids[{i}]")
    unique = list(dict.fromkeys(request_ids))
    if not 1 <= len(unique) <= BULK_LIMIT:
        raise InvalidInput(
            f"{len(unique)} requests; decide 1 to {BULK_LIMIT} at once", field="request_ids"
        )
    return unique


#: How far an order or delivery moment may lie ahead of the desk's clock: the shop's, the
#: carrier's and the desk's clocks never agree to the second.
CLOCK_SKEW: Final = dt.timedelta(minutes=5)

# The type each field of a submission takes (``True``: or ``None``); what they hold is checked
# by the model's own validators when the request is drafted.
_REQUEST_FIELDS: Final[tuple[tuple[str, type, bool], ...]] = (
    ("shop_id", str, False),
    ("order_number", str, False),
    ("customer", Customer, False),
    ("from_country", str, False),
    ("order_value", Money, False),
    ("return_method", str, True),
    ("return_fee", PaidFee, True),
    ("discount_code", str, True),
    ("earlier_returns", int, True),
)
_ITEM_FIELDS: Final[tuple[tuple[str, type, bool], ...]] = (
    ("sku", str, False),
    ("name", str, False),
    ("quantity", int, False),
    ("unit_price", Money, False),
    ("reason", str, False),
    ("reason_text", str, True),
    ("product_type", str, True),
    ("vendor", str, True),
)


def _check_submission(new: NewRequest) -> None:
    """Refuse what cannot be a submission before any work, each problem by its field.

    Fields of the wrong type, moments that are naive or out of bounds, a delivery before the
    order, too many photos, and a photo that is not bytes or is too large.
    """
    if not isinstance(new, NewRequest):
        raise WrongType(expected="a NewRequest", got=type(new).__name__, field="request")
    for name, kind, optional in _REQUEST_FIELDS:
        _require(getattr(new, name), kind, name, optional=optional)
    _choice(RefundMethod, new.refund_method, "refund_method")
    _choice(Channel, new.channel, "channel")
    for name in ("ordered_at", "delivered_at"):
        if (moment := getattr(new, name)) is not None:
            _check_moment(moment, name)
    if (
        new.ordered_at is not None
        and new.delivered_at is not None
        and new.delivered_at < new.ordered_at - CLOCK_SKEW
    ):
        raise InvalidInput("is before the order date (ordered_at)", field="delivered_at")
    for i, item in enumerate(new.items):
        _require(item, NewItem, f"items[{i}]")
        for name, kind, optional in _ITEM_FIELDS:
            _require(getattr(item, name), kind, f"items[{i}].{name}", optional=optional)
    _check_uploads(new)


def _check_uploads(new: NewRequest) -> None:
    """Refuse too many photos, and one that is not bytes or is too large, by its place."""
    count = sum(len(item.photos) for item in new.items)
    if count > _photos.MAX_PHOTOS_PER_REQUEST:
        raise InvalidPhoto(
            f"{count} photos; at most {_photos.MAX_PHOTOS_PER_REQUEST} per request",
            field="photos",
        )
    for i, item in enumerate(new.items):
        for j, upload in enumerate(item.photos):
            field = f"items[{i}].photos[{j}]"
            if not isinstance(upload, bytes | bytearray | memoryview):
                raise InvalidPhoto(f"must be bytes, not {type(upload).__name__}", field=field)
            if len(upload) > _photos.MAX_PHOTO_BYTES:
                raise InvalidPhoto(
                    f"is {len(upload)} bytes; at most {_photos.MAX_PHOTO_BYTES} are allowed",
                    field=field,
                )


def _in_future(moment: dt.datetime | None, now: dt.datetime) -> bool:
    return moment is not None and moment > now + CLOCK_SKEW


def _with_fee_asked(request: ReturnRequest, asked: Money | None) -> ReturnRequest:
    """The request with the return fee the rules ask, which the customer must have paid.

    With no fee asked, a paid fee is kept as it is; an asked fee of zero needs no payment.

    Raises:
        ReturnFeeMismatch: the fee paid (or none) is not the one asked.
        CurrencyMismatch: the rules ask a fee in another currency than the order's.
    """
    if asked is None:
        return request
    request = request.replace(return_fee_asked=asked)
    paid = request.return_fee.amount if request.return_fee is not None else None
    if (paid.amount if paid is not None else 0) != asked.amount:
        raise ReturnFeeMismatch(asked=asked, paid=paid)
    return request


@functools.lru_cache(maxsize=256)
def _compiled_condition(text: str, shop: ShopSettings) -> ConditionFilter:
    """A tab filter, compiled once per text and shop rather than for every page.

    The shop's reasons, zone and currency, as its rules read them: a plain amount in the
    filter is in the shop's currency.
    """
    from retouraanvraag.rules import compile_condition  # noqa: PLC0415 - imports the grammar

    return compile_condition(text, shop=shop)


class Desk:
    """The service a shop backend calls: submit, decide, move along, list.

    Args:
        storage: where requests, their outbox and idempotency records live.
        photos: where validated customer photos go.
        policy: one policy for every shop, or a function from shop id to its policy.
        clock: the time source (``SystemClock`` by default).
        events: queue an :class:`~retouraanvraag.model.Event` for the host with every
            transition, in the same transaction (``docs/events.md``). Off by default: with
            no event sink to deliver them, they would only pile up. Give the
            :class:`~retouraanvraag.dispatcher.Dispatcher` a sink when this is on.
    """

    def __init__(
        self,
        storage: Storage,
        *,
        photos: PhotoStore | None = None,
        policy: Policy | Callable[[str], Policy] | None = None,
        clock: Clock | None = None,
        events: bool = False,
    ) -> None:
        """Wire the desk to its ports."""
        self._storage = storage
        self._photos = photos
        self._policy: Callable[[str], Policy]
        if isinstance(policy, Policy) or policy is None:
            default = policy or Policy()
            self._policy = lambda _shop: default
        else:
            self._policy = policy
        self._clock = clock or SystemClock()
        self._events = events

    def policy(self, shop_id: str) -> Policy:
        """The policy in force for ``shop_id``."""
        return self._policy(shop_id)

    # -- submission -------------------------------------------------------------------------

    def _draft(self, new: NewRequest, policy: Policy, now: dt.datetime) -> ReturnRequest:
        """Validate a submission into a request (after :func:`_check_submission`).

        Its photos are not stored yet: each upload stands in as a reference without a key, so
        that the rules see that the item has photos (``Heeft foto's``).
        """
        for name in ("ordered_at", "delivered_at"):
            if _in_future(getattr(new, name), now):
                minutes = int(CLOCK_SKEW.total_seconds() // 60)
                raise InvalidInput(
                    f"is in the future (more than {minutes} minutes after the desk's clock)",
                    field=name,
                )
        country = resolve_country(new.from_country, field="from_country")
        if not new.items:
            raise InvalidInput("a return request needs at least one item", field="items")
        items = []
        for i, item in enumerate(new.items):
            reason = policy.reasons.resolve(item.reason, field=f"items[{i}].reason")
            text = item.reason_text.strip() if item.reason_text else None
            if reason.needs_text and not text:
                raise InvalidInput(
                    f"reason {reason.code!r} needs the customer's own words",
                    field=f"items[{i}].reason_text",
                )
            try:
                items.append(
                    ReturnItem(
                        sku=item.sku,
                        name=item.name,
                        quantity=item.quantity,
                        unit_price=item.unit_price,
                        reason=reason.code,
                        reason_text=text,
                        photos=tuple(PhotoRef("", "", len(upload)) for upload in item.photos),
                        product_type=item.product_type,
                        product_tags=item.product_tags,
                        vendor=item.vendor,
                    )
                )
            except InvalidInput as exc:
                raise exc.at(f"items[{i}]") from exc
        return ReturnRequest(
            shop_id=new.shop_id,
            id=uuid.uuid4().hex,
            order_number=new.order_number,
            customer=new.customer,
            from_country=country,
            order_value=new.order_value,
            items=tuple(items),
            created_at=now,
            ordered_at=new.ordered_at,
            delivered_at=new.delivered_at,
            refund_method=new.refund_method,
            return_method=new.return_method,
            channel=new.channel,
            tags=new.tags,
            discount_code=new.discount_code,
            earlier_returns=new.earlier_returns,
            return_fee=new.return_fee,
        )

    @staticmethod
    def _check_window(request: ReturnRequest, policy: Policy, outcome: Outcome) -> None:
        """Refuse a request past its return window: the rules' (if they set one) or the policy's.

        Raises:
            ReturnWindowExpired: today, in the shop's time zone, is after the last day.
        """
        if request.delivered_at is None:
            return
        days = outcome.return_window_days
        if days is None:
            days = policy.return_window_days
        deadline = policy.deadline(request.delivered_at, days)
        today = request.created_at.astimezone(policy.shop.zone).date()
        if deadline is not None and today > deadline:
            raise ReturnWindowExpired(
                order_number=request.order_number, deadline=deadline.isoformat(), days=days or 0
            )

    def _outcome(self, request: ReturnRequest, policy: Policy) -> Outcome:
        # Items no rule decides take the policy's default; the strictest item still decides.
        default = Decision.REVIEW if policy.manual_approval else Decision.APPROVE_WITH_LABEL
        if policy.rules is None:
            return Outcome(default)
        outcome = policy.rules.evaluate(request, default=default)
        if outcome.decision is None:
            outcome = attrs.evolve(outcome, decision=default, rule=None)
        return outcome

    def preview(self, new: NewRequest) -> Outcome:
        """What the shop's rules would decide for ``new``, without storing anything.

        A portal uses ``Outcome.refused`` to grey out items that cannot be returned.

        Raises:
            InvalidInput: the submission is invalid (see :meth:`submit`).
        """
        _check_submission(new)
        policy = self.policy(new.shop_id)
        request = self._draft(new, policy, self._clock.now())
        outcome = self._outcome(request, policy)
        self._check_window(request, policy, outcome)
        return outcome

    def submit(self, new: NewRequest, *, idempotency_key: str | None = None) -> ReturnRequest:
        """Take a customer's return request; the shop's rules may decide it at once.

        Args:
            new: the submission.
            idempotency_key: the same key with the same submission returns the first result.

        Returns:
            The stored request: ``requested``, or already decided by a rule.

        Raises:
            InvalidInput: an invalid submission, naming its field (its subclasses name the
                problem: ``WrongType``, ``UnknownCountry``, ``UnknownReason``,
                ``InvalidMoney``, ``InvalidPhoto``, ``ReturnWindowExpired``); an order or
                delivery moment in the future (beyond ``CLOCK_SKEW``), or a delivery before
                the order; nothing is stored.
            ReturnRefused: the rules refuse the return or some of its items.
            ReturnFeeMismatch: the fee paid is not the return fee the rules ask (no fee paid
                when one is asked included); nothing is stored.
            IdempotencyConflict: the key was used with another submission.
            PortUnavailable: the store or the photo store failed; no photo is left behind
                unless the store could not even tell whether the request was saved (then
                its photos are kept and logged: retry with the same key).
        """
        _check_submission(new)
        # Only a key is ever compared with a fingerprint: without one, none is made.
        fingerprint = "" if idempotency_key is None else _submission_fingerprint(new)
        first = self._replay(new.shop_id, idempotency_key, fingerprint, Command.SUBMIT)
        if first is not None:
            return first
        policy = self.policy(new.shop_id)
        now = self._clock.now()
        request = self._draft(new, policy, now)
        # The rules see the request first: a return window they set replaces the policy's.
        outcome = self._outcome(request, policy)
        self._check_window(request, policy, outcome)
        places = [(i, j) for i, item in enumerate(new.items) for j in range(len(item.photos))]
        validated = _photos.validate_photos(
            [p for item in new.items for p in item.photos],
            fields=[f"items[{i}].photos[{j}]" for i, j in places],
        )
        if outcome.decision is Decision.NOT_RETURNABLE:
            raise ReturnRefused(tuple((r.index, r.message) for r in outcome.refused))
        request = _with_fee_asked(request, outcome.return_fee)
        if outcome.carrier:
            request = request.replace(carrier=outcome.carrier)
        # Photos are stored last, once nothing but the save can fail.
        change = self._decide(request.submitted(), outcome, now)
        if validated:
            with_photos = self._store_photos(change.request, [i for i, _ in places], validated)
            change = attrs.evolve(change, request=with_photos)
        if self._events:
            change = change.with_events(None)
        saved = self._save_new(change, fingerprint, idempotency_key)
        log.info(
            "return request submitted",
            extra={"shop_id": saved.shop_id, "request_id": saved.id, "status": saved.status},
        )
        return saved

    def _save_new(
        self, change: Change, fingerprint: str, idempotency_key: str | None
    ) -> ReturnRequest:
        request = change.request
        record = None
        if idempotency_key is not None:
            # The store records the request as it saves it (its version included).
            record = IdempotencyRecord(
                request.shop_id, idempotency_key, fingerprint, request.id, request
            )
        try:
            return self._storage.commit(Commit(request, None, change.effects, idempotency=record))
        except Exception as exc:
            refused = isinstance(exc, ConcurrentModification | InvalidInput)
            lookup: Exception | None = None
            stored = None
            try:
                # A refusal changed nothing; any other error may be the lost answer to a commit
                # that was applied (a networked store): ask before deleting any photo.
                stored = None if refused else self._stored_after_all(request)
            except Exception as error:  # noqa: BLE001 - whatever it is, the outcome is unknown
                lookup = error
            if lookup is not None:
                # Nobody can say whether the request was saved. Its photos stay: a photo that
                # nothing points to can be swept, a saved request's deleted photo is lost.
                keys = [ref.key for item in request.items for ref in item.photos]
                log.warning(
                    "a submission's save and the look-up after it failed; its photos are kept",
                    extra={"shop_id": request.shop_id, "request_id": request.id, "photos": keys},
                )
                exc.add_note(
                    f"whether request {request.id} was saved is unknown (the look-up failed: "
                    f"{type(lookup).__name__}); its {len(keys)} photo(s) were kept"
                )
                raise
            if stored is not None:
                log.warning(
                    "a submission's save answered with an error but was applied",
                    extra={"shop_id": request.shop_id, "request_id": request.id},
                )
                return stored
            # Nothing points to the photos stored for this submission: remove them.
            self._forget_photos(request)
            if idempotency_key is None or not isinstance(exc, ConcurrentModification):
                raise
            # Another call with this key won the race; return its result (or refuse).
            first = self._replay(request.shop_id, idempotency_key, fingerprint, Command.SUBMIT)
            if first is None:
                raise
            return first

    def _store_photos(
        self,
        request: ReturnRequest,
        owners: Sequence[int],
        validated: Sequence[_photos.ValidatedPhoto],
    ) -> ReturnRequest:
        if self._photos is None:
            raise InvalidInput("this desk takes no photos (no photo store)", field="photos")
        refs: dict[int, list[PhotoRef]] = {}
        stored: list[PhotoRef] = []
        try:
            for owner, photo in zip(owners, validated, strict=True):
                ref = self._photos.put(request.shop_id, photo.data, photo.content_type)
                stored.append(ref)
                refs.setdefault(owner, []).append(ref)
        except Exception:
            # The submission fails: nothing would point to what it stored so far.
            self._delete_photos(request.shop_id, stored)
            raise
        items = tuple(
            attrs.evolve(item, photos=tuple(refs.get(i, ())))
            for i, item in enumerate(request.items)
        )
        return request.replace(items=items)

    def _stored_after_all(self, request: ReturnRequest) -> ReturnRequest | None:
        """The new request as stored, if a commit that raised was applied; else ``None``."""
        try:
            return self._storage.get(request.shop_id, request.id)
        except NotFound:
            return None

    def _forget_photos(self, request: ReturnRequest) -> None:
        self._delete_photos(request.shop_id, [p for item in request.items for p in item.photos])

    def _delete_photos(self, shop_id: str, photos: Iterable[PhotoRef]) -> None:
        """Delete the photos of a failed submission; one that resists is logged, not raised."""
        if self._photos is None:
            return
        for photo in photos:
            try:
                self._photos.delete(shop_id, photo.key)
            except Exception:
                # Already failing: the submission's own error is the one to raise.
                log.exception(
                    "could not remove the photo of a failed submission",
                    extra={"shop_id": shop_id, "photo": photo.key},
                )

    def _decide(self, change: Change, outcome: Outcome, now: dt.datetime) -> Change:
        """Apply a rule set's (or the policy's) decision at submission."""
        request = change.request
        actor = Actor.rule(outcome.rule) if outcome.rule else SYSTEM
        trace = outcome.trace
        decided: Change
        match outcome.decision:
            case Decision.APPROVE_WITH_LABEL | Decision.APPROVE_WITHOUT_LABEL:
                decided = request.approve(
                    with_label=outcome.decision is Decision.APPROVE_WITH_LABEL,
                    refund_return_fee=outcome.refund_return_fee,
                    actor=actor,
                    at=now,
                    carrier=outcome.carrier,
                    trace=trace,
                )
            case Decision.REJECT:
                decided = request.reject(
                    reason=outcome.reason or "Afgewezen", actor=actor, at=now, trace=trace
                )
            case _:
                if trace or outcome.rules_version:
                    entry = attrs.evolve(
                        request.history[-1], trace=trace, rules_version=outcome.rules_version
                    )
                    request = request.replace(history=(*request.history[:-1], entry))
                return Change(request, change.effects)
        request = decided.request
        if outcome.rules_version is not None:
            # The decision's entry records which edition of the rules took it.
            entry = attrs.evolve(request.history[-1], rules_version=outcome.rules_version)
            request = request.replace(history=(*request.history[:-1], entry))
        return Change(request, change.effects + decided.effects)

    # -- commands on a stored request -------------------------------------------------------

    def _replay(
        self, shop_id: str, key: str | None, fingerprint: str, command: Command
    ) -> ReturnRequest | None:
        """The first result under ``key``, if there is one (and the arguments match)."""
        if key is None:
            return None
        check_idempotency_key(key)
        record = self._storage.idempotency_record(shop_id, key)
        if record is None:
            return None
        if record.fingerprint != fingerprint:
            raise IdempotencyConflict(key=key, command=command)
        return record.result

    def _run(
        self,
        *,
        shop_id: str,
        request_id: str,
        command: Command,
        arguments: Mapping[str, Any],
        step: Callable[[ReturnRequest, dt.datetime], Change],
        idempotency_key: str | None,
    ) -> ReturnRequest:
        fingerprint = (
            ""
            if idempotency_key is None
            else _fingerprint(command, {"request_id": request_id, **arguments})
        )
        for attempt in range(COMMAND_RETRIES):
            first = self._replay(shop_id, idempotency_key, fingerprint, command)
            if first is not None:
                return first
            request = self._storage.get(shop_id, request_id)
            try:
                change = step(request, self._clock.now())
            except TransitionNotAllowed:
                # A call with this key may have won a race against us: its result stands.
                first = self._replay(shop_id, idempotency_key, fingerprint, command)
                if first is not None:
                    return first
                raise
            if self._events:
                change = change.with_events(request)
            record = None
            if idempotency_key is not None:
                record = IdempotencyRecord(
                    shop_id, idempotency_key, fingerprint, request_id, change.request
                )
            try:
                saved = self._storage.commit(
                    Commit(change.request, request.version, change.effects, idempotency=record)
                )
            except ConcurrentModification:
                log.debug(
                    "lost a race, retrying",
                    extra={"request_id": request_id, "command": command, "attempt": attempt},
                )
                continue
            log.info(
                "command applied",
                extra={"shop_id": shop_id, "request_id": request_id, "command": command},
            )
            return saved
        raise ConcurrentModification(request_id=request_id, expected=None, actual=None)

    def approve(
        self,
        shop_id: str,
        request_id: str,
        *,
        with_label: bool = True,
        refund_return_fee: bool = False,
        actor: Actor | str,
        idempotency_key: str | None = None,
    ) -> ReturnRequest:
        """Approve a request, with a return label (a parcel is expected) or without.

        Args:
            shop_id: the shop.
            request_id: the request.
            with_label: create a label and mail it; ``False`` lets the customer keep the product.
            refund_return_fee: refund the fee the customer paid; asking for it on a request
                that has no paid fee is an error (the merchant's picture of it is wrong).
            actor: who decides: a staff id (``"anna"``, ``"staff:anna"``) or
                ``Actor.staff("anna")``.
            idempotency_key: the same key with the same arguments returns the first result.

        Raises:
            InvalidInput: ``actor`` is not staff, or ``refund_return_fee`` with no paid fee.
            NotFound: no such request in this shop.
            TransitionNotAllowed: the request is no longer ``requested``.
            IdempotencyConflict: the key was used with other arguments.
        """
        staff = staff_actor(actor)

        def step(request: ReturnRequest, now: dt.datetime) -> Change:
            change = request.approve(
                with_label=with_label, refund_return_fee=refund_return_fee, actor=staff, at=now
            )
            if refund_return_fee and request.return_fee is None:
                raise InvalidInput(
                    f"request {request.id} has no paid return fee to refund",
                    field="refund_return_fee",
                )
            return change

        return self._run(
            shop_id=shop_id,
            request_id=request_id,
            command=Command.APPROVE_WITH_LABEL if with_label else Command.APPROVE_WITHOUT_LABEL,
            arguments={
                "with_label": with_label,
                "refund_return_fee": refund_return_fee,
                "actor": staff,
            },
            step=step,
            idempotency_key=idempotency_key,
        )

    def reject(
        self,
        shop_id: str,
        request_id: str,
        *,
        reason: str | Reason,
        actor: Actor | str,
        idempotency_key: str | None = None,
    ) -> ReturnRequest:
        """Reject a request with a reason the customer reads; a paid fee is refunded.

        ``reason`` is the merchant's own text, or one of the shop's preset reject reasons
        (``ShopSettings.reject_reason("used")``), which the request then keeps in the
        customer's language.

        Raises:
            InvalidInput: the reason is empty, or ``actor`` is not staff.
            NotFound: no such request in this shop.
            TransitionNotAllowed: the request is no longer ``requested``.
            IdempotencyConflict: the key was used with other arguments.
        """
        staff = staff_actor(actor)
        preset = reason if isinstance(reason, Reason) else None
        # Own text is stripped as the aggregate stores it, so that retries fingerprint alike;
        # what is not text goes on to the aggregate, which refuses it.
        own = reason.strip() if isinstance(reason, str) else reason
        fingerprinted = own if preset is None else f"preset:{preset.code}"

        def text(request: ReturnRequest) -> str:
            if preset is not None:
                return preset.label(request.customer.language)
            return own  # type: ignore[return-value]  # not text: the aggregate refuses it

        return self._run(
            shop_id=shop_id,
            request_id=request_id,
            command=Command.REJECT,
            arguments={"reason": fingerprinted, "actor": staff},
            step=lambda r, now: r.reject(reason=text(r), actor=staff, at=now),
            idempotency_key=idempotency_key,
        )

    def cancel(
        self,
        shop_id: str,
        request_id: str,
        *,
        actor: Actor | str = CUSTOMER,
        idempotency_key: str | None = None,
    ) -> ReturnRequest:
        """Withdraw a request before its parcel arrived; voids the label, refunds a paid fee.

        ``actor`` is the customer (the default) or a staff member.

        Raises:
            InvalidInput: ``actor`` is neither the customer nor staff.
            NotFound: no such request in this shop.
            TransitionNotAllowed: the request is neither ``requested`` nor ``approved``.
        """
        who = staff_actor(actor, allow_customer=True)
        return self._run(
            shop_id=shop_id,
            request_id=request_id,
            command=Command.CANCEL,
            arguments={"actor": who},
            step=lambda r, now: r.cancel(actor=who, at=now),
            idempotency_key=idempotency_key,
        )

    def mark_received(
        self,
        shop_id: str,
        request_id: str,
        *,
        actor: Actor | str,
        idempotency_key: str | None = None,
    ) -> ReturnRequest:
        """Record that the parcel arrived.

        Raises:
            InvalidInput: ``actor`` is not staff.
            NotFound: no such request in this shop.
            TransitionNotAllowed: the request is not ``approved``.
        """
        staff = staff_actor(actor)
        return self._run(
            shop_id=shop_id,
            request_id=request_id,
            command=Command.MARK_RECEIVED,
            arguments={"actor": staff},
            step=lambda r, now: r.mark_received(actor=staff, at=now),
            idempotency_key=idempotency_key,
        )

    def complete(
        self,
        shop_id: str,
        request_id: str,
        *,
        actor: Actor | str,
        idempotency_key: str | None = None,
    ) -> ReturnRequest:
        """Close a received return.

        Raises:
            InvalidInput: ``actor`` is not staff.
            NotFound: no such request in this shop.
            TransitionNotAllowed: the request is not ``received``.
        """
        staff = staff_actor(actor)
        return self._run(
            shop_id=shop_id,
            request_id=request_id,
            command=Command.COMPLETE,
            arguments={"actor": staff},
            step=lambda r, now: r.complete(actor=staff, at=now),
            idempotency_key=idempotency_key,
        )

    def decide_many(
        self,
        shop_id: str,
        request_ids: Sequence[str],
        *,
        decision: Decision | str,
        actor: Actor | str,
        refund_return_fee: bool = False,
        reason: str | Reason | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, ReturnRequest | RetouraanvraagError]:
        """Decide several requests at once (the requests tab's bulk ✓ and ✗), each on its own.

        Each request is approved or rejected as :meth:`approve` or :meth:`reject` would, in its
        own transaction: one that cannot be decided (decided meanwhile, gone, lost a race every
        try) does not stop the others. With ``idempotency_key``, request ``r`` is decided under
        the key ``<idempotency_key>:<r>``, so a repeated bulk call replays each first result.

        Args:
            shop_id: the shop.
            request_ids: the requests, each decided once (a repeated id counts once), at most
                :data:`BULK_LIMIT`.
            decision: ``approve_with_label``, ``approve_without_label`` or ``reject``.
            actor: the staff member who decides.
            refund_return_fee: with an approval, refund the paid fee of each request that has
                one (a request without a paid fee is approved without a refund rather than
                refused: in a batch, "refund the fee" means "where there is one").
            reason: the reject reason the customers read, the merchant's own text or a preset
                (``ShopSettings.reject_reason("used")``, each customer reading it in their
                language); required for ``reject`` only.
            idempotency_key: the base of each request's own key.

        Returns:
            Per request id, in the order given: the decided request, or the error that
            request met (``TransitionNotAllowed``, ``NotFound``, ``ConcurrentModification``,
            ``IdempotencyConflict``, ``PortUnavailable``, ...).

        Raises:
            InvalidInput: the arguments are wrong for every request alike (an unknown decision,
                a reject without a reason, a reason with an approval, a refund with a
                rejection, an actor that is not staff, no ids or too many, an id that is not
                text); nothing is decided.
        """
        chosen = _bulk_decision(decision, reason, refund_return_fee=refund_return_fee)
        staff = staff_actor(actor)
        rejecting = chosen is Decision.REJECT
        unique = _bulk_ids(request_ids)
        results: dict[str, ReturnRequest | RetouraanvraagError] = {}
        for request_id in unique:
            key = None if idempotency_key is None else f"{idempotency_key}:{request_id}"
            try:
                if rejecting:
                    assert reason is not None  # noqa: S101 - checked above, for mypy
                    results[request_id] = self.reject(
                        shop_id, request_id, reason=reason, actor=staff, idempotency_key=key
                    )
                else:
                    refund = refund_return_fee and self._has_paid_fee(shop_id, request_id)
                    results[request_id] = self.approve(
                        shop_id,
                        request_id,
                        with_label=chosen is Decision.APPROVE_WITH_LABEL,
                        refund_return_fee=refund,
                        actor=staff,
                        idempotency_key=key,
                    )
            except RetouraanvraagError as exc:
                log.info(
                    "bulk decision refused for one request",
                    extra={
                        "shop_id": shop_id,
                        "request_id": request_id,
                        "error": type(exc).__name__,
                    },
                )
                results[request_id] = exc
        return results

    def _has_paid_fee(self, shop_id: str, request_id: str) -> bool:
        return self._storage.get(shop_id, request_id).return_fee is not None

    def resolve_attention(
        self, shop_id: str, request_id: str, *, actor: Actor | str, retry: bool = False
    ) -> ReturnRequest:
        """Clear a request's "needs attention" flags once a person has dealt with them.

        Args:
            shop_id: the shop.
            request_id: the request.
            actor: the staff member who resolved it (recorded in the history).
            retry: also run the effects that failed for good again (the carrier's account
                was fixed, say): a refund or mail goes back to the outbox under its own key, so
                one that did happen after all is not made twice; a label that was given up was
                voided, so it is asked for anew under the next attempt's key. Without ``retry``
                the failed effects stay failed: the person handled them outside the library.

        Returns:
            The request; unchanged (no history entry) when nothing needed attention.

        Raises:
            InvalidInput: ``actor`` is not staff.
            NotFound: no such request in this shop.
        """
        staff = staff_actor(actor)
        for _ in range(COMMAND_RETRIES):
            request = self._storage.get(shop_id, request_id)
            dead = tuple(
                e.effect
                for e in self._storage.outbox(shop_id, request_id)
                if e.state is EffectState.DEAD and request.can_retry(e.effect)
            )
            if not request.needs_attention and not (retry and dead):
                return request
            retried = dead if retry else ()
            change = request.resolve_attention(actor=staff, at=self._clock.now(), retry=retried)
            revive = tuple(e.key for e in retried if e.kind is not EffectKind.CREATE_LABEL)
            try:
                saved = self._storage.commit(
                    Commit(change.request, request.version, change.effects, revive=revive)
                )
            except ConcurrentModification:
                continue
            log.info(
                "attention resolved",
                extra={"shop_id": shop_id, "request_id": request_id, "retried": len(retried)},
            )
            return saved
        raise ConcurrentModification(request_id=request_id, expected=None, actual=None)

    # -- queries ----------------------------------------------------------------------------

    def get(self, shop_id: str, request_id: str) -> ReturnRequest:
        """One request of this shop.

        Raises:
            NotFound: no such request in this shop (another shop's id included).
        """
        return self._storage.get(shop_id, request_id)

    def list(self, shop_id: str, query: Query | None = None) -> Page:
        """Any listing: by status, creation date range, attention, predicate; a page at a time."""
        return self._storage.query(shop_id, query or Query())

    def _where(self, shop_id: str, rule: str | None) -> ConditionFilter | None:
        """The tab's rule filter; the store runs it (in its database, when it has one)."""
        if rule is None:
            return None
        policy = self.policy(shop_id)
        return _compiled_condition(rule, policy.shop)

    def requests_tab(
        self,
        shop_id: str,
        *,
        rejected: bool | None = None,
        rule: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page:
        """The requests tab: requests waiting for a decision and rejected ones.

        Args:
            shop_id: the shop.
            rejected: ``True`` only rejected ones (the "rejected" filter), ``False`` only
                waiting ones, ``None`` both.
            rule: a rule condition to filter by, in the rule language
                (``'Van land IS Nederland'``).
            limit: page size.
            cursor: the previous page's ``next_cursor``.
        """
        query = self._requests_query(shop_id, rejected, rule)
        return self._storage.query(shop_id, attrs.evolve(query, limit=limit, cursor=cursor))

    def requests_count(
        self, shop_id: str, *, rejected: bool | None = None, rule: str | None = None
    ) -> int:
        """How many requests the requests tab lists with these filters (its title's count).

        Counted by the store in one statement (``Storage.count``), never by paging.

        Raises:
            RuleError: ``rule`` has errors.
            InvalidInput: ``rule`` names a host field the store cannot read in its database.
        """
        return self._storage.count(shop_id, self._requests_query(shop_id, rejected, rule))

    def _requests_query(self, shop_id: str, rejected: bool | None, rule: str | None) -> Query:
        statuses = {
            None: Tab.REQUESTS.statuses,
            True: frozenset({Status.REJECTED}),
            False: frozenset({Status.REQUESTED}),
        }[rejected]
        return Query(statuses=statuses, condition=self._where(shop_id, rule))

    def incoming_returns(
        self, shop_id: str, *, rule: str | None = None, limit: int = 50, cursor: str | None = None
    ) -> Page:
        """Approved returns whose parcel is expected or has arrived."""
        query = Query(
            statuses=Tab.INCOMING.statuses,
            condition=self._where(shop_id, rule),
            limit=limit,
            cursor=cursor,
        )
        return self._storage.query(shop_id, query)

    def history_tab(self, shop_id: str, *, limit: int = 50, cursor: str | None = None) -> Page:
        """Finished returns: approved without return, cancelled, completed."""
        return self._storage.query(
            shop_id, Query(statuses=Tab.HISTORY.statuses, limit=limit, cursor=cursor)
        )

    def needing_attention(
        self, shop_id: str, *, limit: int = 50, cursor: str | None = None
    ) -> Page:
        """Requests with an effect that failed for good: a person must look."""
        return self._storage.query(shop_id, Query(needs_attention=True, limit=limit, cursor=cursor))
