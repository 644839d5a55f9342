"""In-memory implementations of the service ports, for tests and demos.

They are real implementations, not mocks: thread-safe, idempotent by key exactly as the port
contracts demand, raising the same errors a real provider's adapter would, and recording every
call so tests can assert on what happened.
"""

from __future__ import annotations

import datetime as dt
import secrets
import threading
from collections import Counter

import attrs

from retouraanvraag.errors import InvalidInput, InvalidPhoto, NotFound, PortRejected
from retouraanvraag.model import Event, Label, Money, PhotoRef, ReturnRequest
from retouraanvraag.photos import CONTENT_TYPES
from retouraanvraag.ports import Mail

__all__ = [
    "EventRecorder",
    "FakeLabels",
    "FakePayments",
    "FixedClock",
    "MailRecorder",
    "MemoryPhotoStore",
]

_FAKE_PDF = b"%PDF-1.4\n% retouraanvraag fake label\n%%EOF\n"


class FakeLabels:
    """A carrier that creates labels idempotently by key and voids them.

    A void is final for its key: a later ``create_label`` under a voided key is refused with
    ``PortRejected``, also when the void came first (nothing had been made yet).

    Attributes:
        created: the label made under each key (one per key, however often it is asked).
        voided: the keys voided (with or without a label made under them).
        calls: every call, as ``(method, key)``.
    """

    def __init__(
        self, *, carrier: str = "PostNL", refuse_countries: frozenset[str] = frozenset()
    ) -> None:
        """Make a carrier; ``refuse_countries`` are ISO codes it rejects permanently."""
        self._lock = threading.Lock()
        self._carrier = carrier
        self._refuse = refuse_countries
        self._serial = 0
        self.created: dict[str, Label] = {}
        self.voided: set[str] = set()
        self.calls: list[tuple[str, str]] = []

    def create_label(self, key: str, request: ReturnRequest) -> Label:
        """Create (or return the already created) label for ``key``; a voided key is refused."""
        with self._lock:
            self.calls.append(("create_label", key))
            if key in self.voided:
                raise PortRejected(f"{key}: this label key was voided; ask under a new key")
            if key in self.created:
                return self.created[key]
            if request.from_country in self._refuse:
                raise PortRejected(f"{key}: carrier does not collect from {request.from_country}")
            self._serial += 1
            label = Label(
                carrier=request.carrier or self._carrier,
                tracking_number=f"3SFAKE{self._serial:08d}",
                document=_FAKE_PDF,
            )
            self.created[key] = label
            return label

    def void_label(self, key: str) -> None:
        """Void the label made under ``key`` (or, with none yet, make sure none ever is)."""
        with self._lock:
            self.calls.append(("void_label", key))
            self.voided.add(key)

    @property
    def active(self) -> dict[str, Label]:
        """Labels created and not voided."""
        with self._lock:
            return {k: v for k, v in self.created.items() if k not in self.voided}


@attrs.frozen
class _Refund:
    key: str
    payment_reference: str
    amount: Money
    reference: str


class FakePayments:
    """A payment provider: payments are charged first, refunds never exceed them.

    Attributes:
        refunds: every refund that moved money, at most one per key.
        calls: every ``refund`` call's key, repeats included.
    """

    def __init__(self) -> None:
        """Make a provider with no payments."""
        self._lock = threading.Lock()
        self._paid: dict[str, Money] = {}
        self._by_key: dict[str, _Refund] = {}
        self.refunds: list[_Refund] = []
        self.calls: list[str] = []

    def charge(self, payment_reference: str, amount: Money) -> None:
        """Record that the customer paid ``amount`` under ``payment_reference``."""
        with self._lock:
            if payment_reference in self._paid:
                raise InvalidInput(f"payment {payment_reference} exists", field="payment")
            self._paid[payment_reference] = amount

    def refunded(self, payment_reference: str) -> Money | None:
        """The total refunded on a payment, or ``None`` if it is unknown."""
        with self._lock:
            paid = self._paid.get(payment_reference)
            if paid is None:
                return None
            total = Money.zero(paid.currency)
            for refund in self.refunds:
                if refund.payment_reference == payment_reference:
                    total += refund.amount
            return total

    def refund(self, key: str, payment_reference: str, amount: Money) -> str:
        """Refund once per key; more than what is left of the payment is refused."""
        with self._lock:
            self.calls.append(key)
            if key in self._by_key:
                return self._by_key[key].reference
            paid = self._paid.get(payment_reference)
            if paid is None:
                raise PortRejected(f"{key}: unknown payment {payment_reference}")
            done = sum(
                (r.amount.amount for r in self.refunds if r.payment_reference == payment_reference),
                0,
            )
            if amount.currency != paid.currency or done + amount.amount > paid.amount:
                raise PortRejected(f"{key}: refund exceeds what was paid on {payment_reference}")
            refund = _Refund(key, payment_reference, amount, f"re_{len(self.refunds) + 1:06d}")
            self._by_key[key] = refund
            self.refunds.append(refund)
            return refund.reference


class MailRecorder:
    """A mail transport that keeps what it was given.

    ``sent`` holds every delivery, repeats included, so a test can see a duplicate;
    :meth:`deliveries` counts them per key.
    """

    def __init__(self) -> None:
        """Make an empty recorder."""
        self._lock = threading.Lock()
        self.sent: list[tuple[str, Mail]] = []

    def send(self, key: str, mail: Mail) -> None:
        """Record the mail under its key."""
        with self._lock:
            self.sent.append((key, mail))

    def deliveries(self) -> Counter[str]:
        """How many times each key was delivered."""
        with self._lock:
            return Counter(key for key, _ in self.sent)

    def to(self, request_id: str) -> list[Mail]:
        """The mails sent about one request, in order."""
        with self._lock:
            return [mail for _, mail in self.sent if mail.request_id == request_id]


class EventRecorder:
    """An event sink that keeps what it was given, as a host's receiver would.

    ``delivered`` holds every delivery, repeats included, so a test can see a retry;
    :meth:`deliveries` counts them per key, :meth:`events` gives each key's event once (what
    a receiver that deduplicates by key keeps).
    """

    def __init__(self) -> None:
        """Make an empty recorder."""
        self._lock = threading.Lock()
        self.delivered: list[Event] = []

    def deliver(self, event: Event) -> None:
        """Record the event; a key seen before must carry the same event."""
        with self._lock:
            for seen in self.delivered:
                if seen.key == event.key and seen != event:
                    raise PortRejected(f"{event.key}: delivered before with other content")
            self.delivered.append(event)

    def deliveries(self) -> Counter[str]:
        """How many times each key was delivered."""
        with self._lock:
            return Counter(event.key for event in self.delivered)

    def events(self, request_id: str | None = None) -> list[Event]:
        """Each key's event once, in the order first delivered; of one request, if given."""
        with self._lock:
            first: dict[str, Event] = {}
            for event in self.delivered:
                if request_id is None or event.request_id == request_id:
                    first.setdefault(event.key, event)
            return list(first.values())


class MemoryPhotoStore:
    """Photos kept in a dict, per shop, under generated names.

    It keeps the invariants of :class:`~retouraanvraag.adapters.files.DirectoryPhotoStore`:
    the same keys (32 hex digits and the extension of the content type), the same refusals.
    """

    def __init__(self) -> None:
        """Make an empty store."""
        self._lock = threading.Lock()
        self._photos: dict[tuple[str, str], bytes] = {}

    def put(self, shop_id: str, data: bytes, content_type: str) -> PhotoRef:
        """Store ``data`` under a generated key.

        Raises:
            InvalidInput: the shop id is empty.
            InvalidPhoto: the content type is not JPEG, PNG or WebP.
        """
        extension = CONTENT_TYPES.get(content_type)
        if extension is None:
            raise InvalidPhoto(f"unsupported content type {content_type!r}", field="content_type")
        if not isinstance(shop_id, str) or not shop_id:
            raise InvalidInput("must be a non-empty shop id", field="shop_id")
        key = f"{secrets.token_hex(16)}.{extension}"
        with self._lock:
            self._photos[shop_id, key] = bytes(data)
        return PhotoRef(key=key, content_type=content_type, size=len(data))

    def get(self, shop_id: str, key: str) -> bytes:
        """Fetch a photo of this shop."""
        with self._lock:
            try:
                return self._photos[shop_id, key]
            except KeyError:
                raise NotFound(shop_id=shop_id, request_id=key, what="photo") from None

    def delete(self, shop_id: str, key: str) -> None:
        """Remove a photo of this shop; nothing to do when there is none."""
        with self._lock:
            self._photos.pop((shop_id, key), None)

    def __len__(self) -> int:
        """How many photos are stored."""
        with self._lock:
            return len(self._photos)


class FixedClock:
    """A clock that stands still until a test moves it."""

    def __init__(self, now: dt.datetime) -> None:
        """Start at ``now`` (must be aware)."""
        if now.tzinfo is None:
            raise InvalidInput("the clock needs an aware datetime", field="now")
        self._lock = threading.Lock()
        self._now = now.astimezone(dt.UTC)

    def now(self) -> dt.datetime:
        """The current fixed time, in UTC."""
        with self._lock:
            return self._now

    def advance(self, delta: dt.timedelta) -> dt.datetime:
        """Move the clock forward and return the new time."""
        with self._lock:
            self._now += delta
            return self._now
