"""The shops of the reference shop: their settings, staff and order catalogue.

Each shop's :class:`~retouraanvraag.ShopSettings` is the one value the desk's policy, the rule
parser and the mail renderer read; the order catalogue and staff stand in for the shop's own
systems.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

import attrs

from retouraanvraag import (
    DEFAULT_REASONS,
    DEFAULT_REJECT_REASONS,
    Money,
    Reason,
    ReasonCatalogue,
    ShopSettings,
)


@attrs.frozen
class OrderLine:
    """One line of an order as the shop's order system knows it."""

    sku: str
    name: str
    quantity: int
    unit_price: Money
    product_type: str | None = None


@attrs.frozen
class Order:
    """An order a customer can return items of; the portal looks it up by number."""

    number: str
    email: str
    postal_code: str
    name: str
    language: str
    country: str
    lines: tuple[OrderLine, ...]
    ordered_days_ago: int
    delivered_days_ago: int | None

    @property
    def value(self) -> Money:
        """The order's value: the sum of its lines."""
        total = Money.zero(self.lines[0].unit_price.currency)
        for line in self.lines:
            total += Money(line.unit_price.amount * line.quantity, line.unit_price.currency)
        return total

    def ordered_at(self, now: dt.datetime) -> dt.datetime:
        """When the order was placed: whole days before the start of ``now``'s (UTC) day.

        A day, not ``now`` itself: the same order then has the same dates all day, so that a
        return form sent twice is the same submission (its idempotency key replays it).
        """
        return _day(now) - dt.timedelta(days=self.ordered_days_ago)

    def delivered_at(self, now: dt.datetime) -> dt.datetime | None:
        """When the parcel was delivered, counted back like :meth:`ordered_at`."""
        if self.delivered_days_ago is None:
            return None
        return _day(now) - dt.timedelta(days=self.delivered_days_ago)


def _day(now: dt.datetime) -> dt.datetime:
    return now.astimezone(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)


@attrs.frozen
class Staff:
    """A merchant's staff member; the password is only for seeding the demo database."""

    username: str
    shop_id: str
    demo_password: str = attrs.field(repr=False)


@attrs.frozen
class ShopConfig:
    """Everything the app knows of one shop: the library's settings value and the rest.

    ``settings`` (zone, language, currency, reasons, preset reject reasons, name, sender) is
    what the policy, the rule parser and the mail renderer read.
    """

    id: str
    settings: ShopSettings
    rules: str
    orders: tuple[Order, ...]
    staff: tuple[Staff, ...]
    manual_approval: bool = True
    return_window_days: int | None = 30

    @property
    def name(self) -> str:
        """The shop's name."""
        return self.settings.name or self.id

    @property
    def language(self) -> str:
        """The merchant's language, which the portal speaks too (``nl`` or ``en``)."""
        return self.settings.language.value

    @property
    def reasons(self) -> ReasonCatalogue:
        """The return reasons customers pick from."""
        return self.settings.reasons

    @property
    def reject_reasons(self) -> tuple[Reason, ...]:
        """The preset reject reasons the merchant picks from."""
        return self.settings.reject_reasons.reasons

    def order(self, number: str) -> Order | None:
        """The order with this number, if the shop has it."""
        wanted = number.strip().upper()
        return next((o for o in self.orders if o.number.upper() == wanted), None)


def _eur(text: str) -> Money:
    return Money.parse(text)


FIETSEN_RULES: Final = """\
# De Fietsenwinkel: retourregels. Zonder beslissende regel beoordeelt een medewerker.
REGEL "Buitenland": ALS Van land IS NIET Nederland DAN Retourkosten €4,95
REGEL "Dure retouren": ALS Retourwaarde GROTER DAN €500 DAN Retouraanvraag inschakelen
REGEL "Bedenktijd": ALS Retourreden IS Bedacht EN Dagen sinds levering GROTER DAN 14
DAN Afwijzen met reden "Van gedachten veranderen kan tot 14 dagen na levering."
REGEL "Cadeaubonnen": ALS SKU BEGINT MET "GC-" DAN Artikel niet retourneerbaar
"""

BOOKS_RULES: Final = """\
# The Corner Bookshop: return rules. Without a deciding rule, staff review.
RULE "Damaged": IF Return reason IS "Product damaged" THEN Approve without label
RULE "Ireland": IF From country IS Ireland AND Return reason IS NOT "Changed my mind"
THEN Skip review
RULE "Gift cards": IF SKU STARTS WITH "GC-" THEN Unable to return item
"""

FIETSEN: Final = ShopConfig(
    id="fietsenwinkel",
    settings=ShopSettings(
        name="De Fietsenwinkel",
        sender="retouren@fietsenwinkel.example",
        language="nl",
        timezone="Europe/Amsterdam",
        currency="EUR",
        reasons=ReasonCatalogue(
            (
                *DEFAULT_REASONS,
                Reason("wrong_frame_size", "Verkeerde framemaat", "Wrong frame size"),
            )
        ),
        reject_reasons=(
            *DEFAULT_REJECT_REASONS,
            Reason(
                "custom_made",
                "Maatwerk kan niet worden geretourneerd",
                "Custom-made items cannot be returned",
            ),
        ),
    ),
    rules=FIETSEN_RULES,
    orders=(
        Order(
            "F1001",
            "jan@example.nl",
            "1234 AB",
            "Jan de Vries",
            "nl",
            "NL",
            (
                OrderLine("HLM-M", "Fietshelm, maat M", 1, _eur("€49,95"), "helm"),
                OrderLine("BEL-1", "Fietsbel", 2, _eur("€7,50")),
                OrderLine("GC-25", "Cadeaubon €25", 1, _eur("€25")),
            ),
            ordered_days_ago=9,
            delivered_days_ago=6,
        ),
        Order(
            "F1002",
            "lotte@example.be",
            "2000",
            "Lotte Peeters",
            "nl",
            "BE",
            (
                OrderLine("TAS-2", "Fietstas dubbel", 1, _eur("€69,00")),
                OrderLine("LMP-LED", "Ledlamp voor", 1, _eur("€24,95")),
            ),
            ordered_days_ago=12,
            delivered_days_ago=8,
        ),
        Order(
            "F1003",
            "piet@example.nl",
            "3511 CD",
            "Piet Bakker",
            "nl",
            "NL",
            (OrderLine("EB-500", "Elektrische stadsfiets", 1, _eur("€1.499,00"), "fiets"),),
            ordered_days_ago=20,
            delivered_days_ago=16,
        ),
        Order(
            "F1004",
            "sanne@example.nl",
            "9711 EF",
            "Sanne Mulder",
            "en",
            "NL",
            (
                OrderLine("SLT-1", "Kettingslot", 1, _eur("€39,95")),
                OrderLine("PMP-1", "Fietspomp", 1, _eur("€19,95")),
            ),
            ordered_days_ago=5,
            delivered_days_ago=3,
        ),
        Order(
            "F1005",
            "urs@example.ch",
            "8001",
            "Urs Meier",
            "en",
            "CH",
            (
                OrderLine("HLM-L", "Fietshelm, maat L", 1, _eur("€49,95"), "helm"),
                OrderLine("GC-50", "Cadeaubon €50", 1, _eur("€50")),
            ),
            ordered_days_ago=10,
            delivered_days_ago=7,
        ),
        Order(
            "F1006",
            "noor@example.nl",
            "5611 GH",
            "Noor Jansen",
            "nl",
            "NL",
            (
                OrderLine("JAS-S", "Regenjas, maat S", 1, _eur("€59,95")),
                OrderLine("HND-1", "Handschoenen", 1, _eur("€14,95")),
            ),
            ordered_days_ago=8,
            delivered_days_ago=4,
        ),
    ),
    staff=(
        Staff("anna", "fietsenwinkel", "fiets-2026"),
        Staff("daan", "fietsenwinkel", "bel-2026"),
    ),
)

BOOKS: Final = ShopConfig(
    id="bookshop",
    settings=ShopSettings(
        name="The Corner Bookshop",
        sender="returns@bookshop.example",
        language="en",
        timezone="Europe/Dublin",
        currency="EUR",
        reject_reasons=(
            Reason(
                "written_in",
                "Het boek is beschreven of beschadigd",
                "The book has been written in or damaged",
            ),
            Reason(
                "opened_code",
                "Geopende software en e-bookcodes kunnen niet retour",
                "Opened software and e-book codes cannot be returned",
            ),
        ),
    ),
    rules=BOOKS_RULES,
    orders=(
        Order(
            "B-501",
            "aoife@example.ie",
            "D02 X285",
            "Aoife Byrne",
            "en",
            "IE",
            (
                OrderLine("BK-978-1", "A Field Guide to Birds", 1, _eur("€24,00"), "book"),
                OrderLine("GC-10", "Gift card €10", 1, _eur("€10")),
            ),
            ordered_days_ago=6,
            delivered_days_ago=3,
        ),
        Order(
            "B-502",
            "tom@example.nl",
            "1017 AB",
            "Tom Visser",
            "nl",
            "NL",
            (OrderLine("BK-978-2", "Atlas of Islands", 1, _eur("€39,50"), "book"),),
            ordered_days_ago=9,
            delivered_days_ago=5,
        ),
    ),
    staff=(Staff("emma", "bookshop", "books-2026"),),
)

#: The shops of the demo, by id.
SHOPS: Final[Mapping[str, ShopConfig]] = MappingProxyType({FIETSEN.id: FIETSEN, BOOKS.id: BOOKS})
