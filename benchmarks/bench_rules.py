"""Rule evaluation benchmark (DESIGN §8): the rules engine against hand-written Python and peers.

Two policies, each deciding the same generated requests (1-3 items; unique order numbers and
e-mail addresses, amounts to the cent, SKUs from half a million, 30 countries):

- a realistic 20-rule policy using request and item fields (``POLICY``);
- a 100-rule policy of a large shop: a fee per country, a decision per product category,
  value and time limits, tags, reasons (``policy_100()``).

Contenders, all in one run, each timed as the shortest of ``--repeat`` runs:

- the engine through the public API (``RuleSet.evaluate``), cold (a freshly loaded rule set)
  and warm (the same rule set again);
- a hand-written function per policy as a good engineer writes it: integer cents, constants
  and tables built once, nothing allocated per call but the outcome, checked to give the same
  outcome as the engine on every request;
- peer engines, each in its best way: the conditions translated from the same rules, compiled
  once, called once per request and once per item (datalogic-py: once per request, its items
  mapped inside), on flat data prepared for them before timing; the winners become outcomes
  through a memo, and those are checked against the engine's.

Also: the load time (parse + check + compile) of a generated 1,000-rule file and of two files at
the 1 MB limit (5,000 rules; rules of 300 comparisons). Prints rates and ratios; asserts no
timings.

    python benchmarks/bench_rules.py [--requests N] [--repeat N] [--peers a,b] [--rules N]
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import math
import random
import sys
import time
import zoneinfo
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any, Final

from retouraanvraag import rules
from retouraanvraag.model import (
    Channel,
    Customer,
    Decision,
    Language,
    Money,
    Outcome,
    PhotoRef,
    RefundMethod,
    RefusedItem,
    ReturnItem,
    ReturnRequest,
)
from retouraanvraag.rules import And, Compare, Condition, FieldType, Not, Operator, RuleSet

POLICY = """\
# Een realistisch retourbeleid: twintig regels, aanvraag- en artikelvelden.
REGEL "Binnenland": ALS Van land IS Nederland OF België
DAN Retouraanvraag uitschakelen

REGEL "Buitenland": ALS Van land IS NIET Nederland OF België OF Duitsland
DAN Retouraanvraag inschakelen EN Retourkosten €6,95

REGEL "Duitsland": ALS Van land IS Duitsland
DAN Retourkosten €4,95 EN Verzenden met "DHL"

REGEL "Grote bestelling": ALS Bestelwaarde > €500
DAN Retouraanvraag inschakelen

REGEL "Veel artikelen": ALS Aantal artikelen >= 5
DAN Retouraanvraag inschakelen

REGEL "Kleine retour": ALS Retourwaarde < €15 EN Van land IS Nederland
DAN Goedkeuren zonder label

REGEL "Beschadigd": ALS Retourreden IS "Product beschadigd" OF "Werkt niet"
DAN Goedkeuren met label EN Retourkosten terugbetalen

REGEL "Verkeerd verzonden": ALS Retourreden IS "Verkeerd product verzonden"
DAN Goedkeuren met label EN Retourkosten terugbetalen

REGEL "Te laat": ALS Dagen sinds levering > 30
DAN Afwijzen met reden "De retourtermijn van 30 dagen is verlopen."

REGEL "Oude bestelling": ALS Dagen sinds bestelling > 90
DAN Afwijzen met reden "Deze bestelling is ouder dan 90 dagen."

REGEL "Hygiëne": ALS SKU BEGINT MET "HYG-"
DAN Artikel niet retourneerbaar "Hygiëneartikelen kunnen niet retour."

REGEL "Cadeaubon": ALS Artikelnaam BEVAT "cadeaubon"
DAN Artikel niet retourneerbaar

REGEL "Sale bedacht": ALS Tags BEVAT "sale" EN Retourreden IS "Bedacht"
DAN Afwijzen met reden "Sale-artikelen nemen we alleen terug bij een defect."

REGEL "VIP": ALS Tags BEVAT "vip"
DAN Retourkosten €0,00

REGEL "Winkeltegoed": ALS Terugbetaalwijze IS winkeltegoed EN Van land IS Nederland
DAN Retourkosten €0,00

REGEL "Ruilen": ALS Terugbetaalwijze IS ruilen EN Retourreden IS "Te klein" OF "Te groot"
DAN Goedkeuren met label

REGEL "API zonder foto's": ALS Kanaal IS api EN Heeft foto's IS nee
    EN Retourreden IS "Product beschadigd"
DAN Retouraanvraag inschakelen

REGEL "Duur artikel": ALS Artikelwaarde > €250
DAN Retouraanvraag inschakelen

REGEL "Grote aantallen": ALS Aantal > 3 EN Retourreden IS "Bedacht"
DAN Retouraanvraag inschakelen

REGEL "Marktplaats": ALS Bestelnummer BEGINT MET "MP-"
DAN Verzenden met "PostNL"
"""

TZ: Final = zoneinfo.ZoneInfo("Europe/Amsterdam")

# -- the 100-rule policy, from tables ----------------------------------------------------------

#: (country, fee in cents, carrier): one fee rule per country.
COUNTRY_FEES: Final = (
    ("NL", 0, None), ("BE", 295, None), ("DE", 495, "DHL"), ("AT", 695, "DHL"),
    ("FR", 695, "Colissimo"), ("LU", 495, None), ("ES", 895, None), ("PT", 895, None),
    ("IT", 895, None), ("IE", 995, None), ("DK", 795, None), ("SE", 995, None),
    ("FI", 1095, None), ("PL", 795, "DHL"), ("CZ", 795, "DHL"), ("SK", 895, None),
    ("HU", 895, None), ("SI", 895, None), ("HR", 995, None), ("RO", 1095, None),
    ("BG", 1095, None), ("GR", 1195, None), ("EE", 995, None), ("LV", 995, None),
    ("LT", 995, None), ("GB", 1495, "DPD"), ("CH", 1495, "DPD"), ("NO", 1495, None),
    ("US", 2495, "UPS"), ("CA", 2495, "UPS"),
)  # fmt: skip
EU: Final = frozenset(c for c, _, _ in COUNTRY_FEES) - {"GB", "CH", "NO", "US", "CA"}

#: (category, action): one rule per product category, by its SKU prefix ``CODE-``.
CATEGORIES: Final = (
    ("ELEC", "Retouraanvraag inschakelen"), ("PHON", "Retouraanvraag inschakelen"),
    ("COMP", "Retouraanvraag inschakelen"), ("JEWL", "Retouraanvraag inschakelen"),
    ("WTCH", "Retouraanvraag inschakelen"), ("BOOK", "Goedkeuren zonder label"),
    ("MAGZ", "Goedkeuren zonder label"), ("SOCK", "Goedkeuren zonder label"),
    ("CARD", "Goedkeuren zonder label"), ("TSHR", "Goedkeuren met label"),
    ("JEAN", "Goedkeuren met label"), ("JACK", "Goedkeuren met label"),
    ("SHOE", "Goedkeuren met label"), ("DRES", "Goedkeuren met label"),
    ("SKRT", "Goedkeuren met label"), ("SWTR", "Goedkeuren met label"),
    ("BAGS", "Goedkeuren met label"), ("TOYS", "Goedkeuren met label"),
    ("GAME", "Goedkeuren met label"), ("KTCH", "Goedkeuren met label"),
    ("GRDN", "Goedkeuren met label"), ("TOOL", "Goedkeuren met label"),
    ("SPRT", "Goedkeuren met label"), ("BEDS", "Retouraanvraag inschakelen"),
    ("SOFA", "Retouraanvraag inschakelen"), ("LAMP", "Goedkeuren met label"),
    ("CAMP", "Goedkeuren met label"), ("BIKE", "Retouraanvraag inschakelen"),
    ("MUSC", "Goedkeuren met label"), ("FILM", "Goedkeuren zonder label"),
    ("PRNT", "Goedkeuren zonder label"), ("GIFT", "Goedkeuren met label"),
    ("WINE", 'Afwijzen met reden "Alcohol nemen we niet terug."'),
    ("PERS", 'Afwijzen met reden "Gepersonaliseerde artikelen nemen we niet terug."'),
    ("FOOD", 'Afwijzen met reden "Levensmiddelen nemen we niet terug."'),
    ("DIGI", 'Afwijzen met reden "Digitale producten kunnen niet retour."'),
)  # fmt: skip
#: Categories that can never be returned (their rules come last, so nothing undoes them).
REFUSED_CATEGORIES: Final = ("HYGN", "UNDR", "PIER", "MEDS")
OTHER_CATEGORIES: Final = ("MISC", "HOME", "DECO", "BABY", "PETS")

_REQUEST_RULES_100: Final = """\
REGEL "Buiten de EU": ALS Van land IS NIET {eu}
DAN Retouraanvraag inschakelen EN Retourkosten €19,95
REGEL "Gratis retour": ALS Bestelwaarde >= €150 EN Van land IS {eu}
DAN Retourkosten €0,00
REGEL "Kleine bestelling": ALS Bestelwaarde < €20 DAN Goedkeuren zonder label
REGEL "Binnenland": ALS Van land IS NL OF BE DAN Retouraanvraag uitschakelen
REGEL "Grote bestelling": ALS Bestelwaarde > €1000 DAN Retouraanvraag inschakelen
REGEL "Zeer grote bestelling": ALS Bestelwaarde > €5000
DAN Afwijzen met reden "Neem voor deze retour contact met ons op."
REGEL "Veel artikelen": ALS Aantal artikelen >= 8 DAN Retouraanvraag inschakelen
REGEL "Laat": ALS Dagen sinds levering > 14 DAN Retourkosten €2,95
REGEL "Termijn": ALS Dagen sinds levering > 30
DAN Afwijzen met reden "De retourtermijn van 30 dagen is verlopen."
REGEL "Oude bestelling": ALS Dagen sinds bestelling > 120
DAN Afwijzen met reden "Deze bestelling is ouder dan 120 dagen."
REGEL "API zonder foto's": ALS Kanaal IS api EN Heeft foto's IS nee
DAN Retouraanvraag inschakelen
REGEL "VIP": ALS Tags BEVAT "vip" DAN Retourkosten €0,00
REGEL "Zakelijk": ALS Tags BEVAT "b2b" DAN Goedkeuren zonder label
REGEL "Groothandel": ALS Tags BEVAT "groothandel" DAN Retouraanvraag inschakelen
REGEL "Fraude": ALS Tags BEVAT "fraude" DAN Afwijzen met reden "Neem contact met ons op."
REGEL "Marktplaats": ALS Bestelnummer BEGINT MET "MP-" DAN Verzenden met "PostNL"
REGEL "Amazon": ALS Bestelnummer BEGINT MET "AMZ-"
DAN Retouraanvraag inschakelen EN Verzenden met "DHL"
REGEL "Zakelijke order": ALS Bestelnummer BEGINT MET "B2B-" DAN Goedkeuren zonder label
REGEL "Winkeltegoed": ALS Terugbetaalwijze IS winkeltegoed DAN Retourkosten €0,00
REGEL "Bedrijfsadres": ALS Klant e-mail BEVAT "@bedrijf." DAN Goedkeuren zonder label
"""
_ITEM_RULES_100: Final = """\
REGEL "Beschadigd": ALS Retourreden IS "Product beschadigd" OF "Werkt niet"
DAN Goedkeuren met label EN Retourkosten terugbetalen
REGEL "Verkeerd verzonden": ALS Retourreden IS "Verkeerd product verzonden"
DAN Goedkeuren met label EN Retourkosten terugbetalen
REGEL "Niet zoals beschreven": ALS Retourreden IS "Anders dan beschreven"
DAN Retouraanvraag inschakelen
REGEL "Ruilen": ALS Terugbetaalwijze IS ruilen EN Retourreden IS "Te klein" OF "Te groot"
DAN Goedkeuren met label
REGEL "Sale bedacht": ALS Tags BEVAT "sale" EN Retourreden IS "Bedacht"
DAN Afwijzen met reden "Sale-artikelen nemen we alleen terug bij een defect."
REGEL "Duur artikel": ALS Artikelwaarde > €500 DAN Retouraanvraag inschakelen
REGEL "Grote aantallen": ALS Aantal > 3 EN Retourreden IS "Bedacht"
DAN Retouraanvraag inschakelen
REGEL "Elektronica defect": ALS SKU BEGINT MET "ELEC-" EN Retourreden IS "Werkt niet"
DAN Goedkeuren met label EN Retourkosten terugbetalen
REGEL "Cadeaubon": ALS Artikelnaam BEVAT "cadeaubon" DAN Artikel niet retourneerbaar
REGEL "Maatwerk": ALS Artikelnaam BEVAT "maatwerk"
DAN Artikel niet retourneerbaar "Maatwerk kan niet retour."
"""


def _euros(cents: int) -> str:
    return f"€{cents // 100},{cents % 100:02d}"


def policy_100() -> str:
    """The 100-rule policy: a block of request rules, then a block of item rules."""
    lines = ["# Het beleid van een grote winkel: honderd regels."]
    for country, fee, carrier in COUNTRY_FEES:
        ship = f' EN Verzenden met "{carrier}"' if carrier else ""
        lines.append(
            f'REGEL "Kosten {country}": ALS Van land IS {country} '
            f"DAN Retourkosten {_euros(fee)}{ship}"
        )
    lines.append(_REQUEST_RULES_100.format(eu=" OF ".join(sorted(EU))).rstrip())
    for category, action in CATEGORIES:
        lines.append(f'REGEL "Categorie {category}": ALS SKU BEGINT MET "{category}-" DAN {action}')
    lines.append(_ITEM_RULES_100.rstrip())
    lines.extend(
        f'REGEL "Categorie {category}": ALS SKU BEGINT MET "{category}-" '
        'DAN Artikel niet retourneerbaar "Dit artikel kan om hygiënische redenen niet retour."'
        for category in REFUSED_CATEGORIES
    )
    return "\n".join(lines) + "\n"


# -- requests: high-cardinality values ---------------------------------------------------------

_COUNTRY_WEIGHTS: Final = {c: 1 for c, _, _ in COUNTRY_FEES} | {"NL": 30, "BE": 12, "DE": 12}
_COUNTRIES: Final = tuple(_COUNTRY_WEIGHTS)
_WEIGHTS: Final = tuple(_COUNTRY_WEIGHTS.values())
_REASONS: Final = (
    "damaged", "wrong_product_sent", "too_small", "too_large", "defective",
    "changed_mind", "changed_mind", "changed_mind", "not_as_described",
)  # fmt: skip
_ITEM_NAMES: Final = (
    "T-shirt", "Spijkerbroek", "Cadeaubon", "Sokken", "Jas", "Tandenborstel", "Maatwerk kast",
    "Lamp", "Telefoon", "Boek", "Horloge", "Sneaker",
)  # fmt: skip
_ALL_CATEGORIES: Final = (
    tuple(c for c, _ in CATEGORIES) + REFUSED_CATEGORIES + OTHER_CATEGORIES + ("HYG",)
)
_TAGS: Final = ("vip", "sale", "b2b", "groothandel", "nieuwsbrief", "retourtje")
_PREFIXES: Final = ("", "", "", "", "", "", "MP-", "AMZ-", "B2B-", "mp-")
_DOMAINS: Final = ("example.com", "mail.be", "bedrijf.nl", "post.de")


def generate(count: int, seed: int = 7) -> list[ReturnRequest]:
    """``count`` requests with 1-3 items, reproducibly random, with high-cardinality values."""
    rng = random.Random(seed)
    base = dt.datetime(2024, 6, 1, 12, tzinfo=dt.UTC)
    requests = []
    for n in range(count):
        items = []
        for i in range(rng.choice((1, 1, 1, 2, 2, 3))):
            category = rng.choice(_ALL_CATEGORIES)
            sku = f"{category}-{rng.randrange(500_000):06d}"
            name = rng.choice(_ITEM_NAMES)
            cents = int(math.exp(rng.uniform(math.log(150), math.log(300_000))))
            items.append(
                ReturnItem(
                    sku=sku,
                    name=f"{name} {rng.randrange(100)}",
                    quantity=rng.choice((1, 1, 1, 1, 2, 2, 3, 4, 6)),
                    unit_price=Money(cents),
                    reason=rng.choice(_REASONS),
                    photos=(PhotoRef(f"p{n}-{i}", "image/jpeg", 1000),)
                    if rng.random() < 0.3
                    else (),
                )
            )
        created = base + dt.timedelta(seconds=rng.randrange(60 * 86_400))
        ordered = created - dt.timedelta(seconds=rng.randrange(2 * 86_400, 150 * 86_400))
        delivered = (
            ordered + dt.timedelta(seconds=rng.randrange(86_400, 4 * 86_400))
            if rng.random() < 0.9
            else None
        )
        items_value = sum(i.unit_price.amount * i.quantity for i in items)
        tags = frozenset(rng.sample(_TAGS, rng.choice((0, 0, 1, 1, 2))))
        if rng.random() < 0.01:
            tags |= {"fraude"}
        requests.append(
            ReturnRequest(
                shop_id="shop",
                id=f"r{n}",
                order_number=rng.choice(_PREFIXES) + str(1_000_000 + n),
                customer=Customer(
                    email=f"klant{n}@{rng.choice(_DOMAINS)}",
                    name="Klant",
                    language=rng.choice((Language.NL, Language.NL, Language.EN)),
                ),
                from_country=rng.choices(_COUNTRIES, _WEIGHTS)[0],
                order_value=Money(items_value + rng.randrange(100_000)),
                items=items,
                created_at=created,
                ordered_at=ordered,
                delivered_at=delivered,
                refund_method=rng.choice(list(RefundMethod)),
                channel=rng.choice((Channel.PORTAL, Channel.PORTAL, Channel.API)),
                tags=tags,
            )
        )
    return requests


# -- the 20-rule policy, written by hand ----------------------------------------------------------

_NAMES_20: Final = (
    "Binnenland", "Buitenland", "Duitsland", "Grote bestelling", "Veel artikelen",
    "Kleine retour", "Beschadigd", "Verkeerd verzonden", "Te laat", "Oude bestelling",
    "Hygiëne", "Cadeaubon", "Sale bedacht", "VIP", "Winkeltegoed", "Ruilen",
    "API zonder foto's", "Duur artikel", "Grote aantallen", "Marktplaats",
)  # fmt: skip
_R = Decision.REVIEW
_DECIDES_20: Final = {
    0: Decision.APPROVE_WITH_LABEL, 1: _R, 3: _R, 4: _R, 5: Decision.APPROVE_WITHOUT_LABEL,
    6: Decision.APPROVE_WITH_LABEL, 7: Decision.APPROVE_WITH_LABEL, 8: Decision.REJECT,
    9: Decision.REJECT, 10: Decision.NOT_RETURNABLE, 11: Decision.NOT_RETURNABLE,
    12: Decision.REJECT, 15: Decision.APPROVE_WITH_LABEL, 16: _R, 17: _R, 18: _R,
}  # fmt: skip
_REASON_20: Final = {
    8: "De retourtermijn van 30 dagen is verlopen.",
    9: "Deze bestelling is ouder dan 90 dagen.",
    12: "Sale-artikelen nemen we alleen terug bij een defect.",
}
_REFUSAL_20: Final = {10: "Hygiëneartikelen kunnen niet retour."}
_DOMESTIC: Final = frozenset({"NL", "BE"})
_NEAR: Final = frozenset({"NL", "BE", "DE"})
_DAMAGED: Final = frozenset({"damaged", "defective"})
_REFUNDING_20: Final = frozenset({"damaged", "defective", "wrong_product_sent"})
_SIZES: Final = frozenset({"too_small", "too_large"})
_FEE_695, _FEE_495, _FEE_0 = Money(695), Money(495), Money(0)
_NO_DECISION: Final = (None, None, None, ())


def _tables(count: int, decides: dict[int, Decision]) -> tuple[tuple[int, ...], tuple[Any, ...]]:
    """Per rule index: its rank (strictness, then index) and its decision; index -1: none."""
    ranks = tuple(decides[k].strictness * count + k if k in decides else -1 for k in range(count))
    return (*ranks, -1), tuple(decides.get(k) for k in range(count))


_RANK_20, _DECISION_20 = _tables(20, _DECIDES_20)


def _finish(  # noqa: PLR0917 - the parts of an outcome
    best: int,
    undecided: bool,
    refused: list[int] | None,
    refund: bool,
    fee: Money | None,
    carrier: str | None,
    names: Sequence[str],
    decisions: Sequence[Decision | None],
    reasons: dict[int, str],
    refusals: dict[int, str],
    language: Language,
) -> Outcome:
    """The outcome, as the documented meaning says: the strictest item's rule decides."""
    if best < 0:
        return Outcome(None, None, refund, fee, carrier)
    rule = best % len(names)
    decision = decisions[rule]
    assert decision is not None
    if undecided and decision.strictness < Decision.REVIEW.strictness:
        return Outcome(None, None, refund, fee, carrier)
    items: tuple[RefusedItem, ...] = ()
    if refused:
        default = (
            "Dit artikel kan niet worden geretourneerd."
            if language is Language.NL
            else "This item cannot be returned."
        )
        items = tuple(
            RefusedItem(i, refusals.get(k, default)) for i, k in enumerate(refused) if k >= 0
        )
    return Outcome(decision, reasons.get(rule), refund, fee, carrier, items, names[rule])


def efficient_20(request: ReturnRequest) -> Outcome:  # noqa: C901, PLR0912, PLR0915
    """``POLICY`` as a good engineer writes it by hand: the last matching rule wins per kind."""
    country = request.from_country
    created = request.created_at.astimezone(TZ).date()
    delivered, ordered = request.delivered_at, request.ordered_at
    count = cents = 0
    photos = False
    for item in request.items:
        count += item.quantity
        cents += item.unit_price.amount * item.quantity
        photos = photos or bool(item.photos)
    tags = request.tags
    if ordered is not None and (created - ordered.astimezone(TZ).date()).days > 90:
        rd = 9
    elif delivered is not None and (created - delivered.astimezone(TZ).date()).days > 30:
        rd = 8
    elif cents < 1500 and country == "NL":
        rd = 5
    elif count >= 5:
        rd = 4
    elif request.order_value.amount > 50000:
        rd = 3
    elif country not in _NEAR:
        rd = 1
    elif country in _DOMESTIC:
        rd = 0
    else:
        rd = -1
    method = request.refund_method
    if method is RefundMethod.STORE_CREDIT and country == "NL":
        fee: Money | None = _FEE_0
    elif "vip" in tags:
        fee = _FEE_0
    elif country == "DE":
        fee = _FEE_495
    elif country not in _NEAR:
        fee = _FEE_695
    else:
        fee = None
    if request.order_number.casefold().startswith("mp-"):
        carrier: str | None = "PostNL"
    elif country == "DE":
        carrier = "DHL"
    else:
        carrier = None
    unphotographed_api = request.channel is Channel.API and not photos
    exchange = method is RefundMethod.EXCHANGE
    sale = "sale" in tags
    best, undecided, refund = -1, False, False
    refused: list[int] | None = None
    for index, item in enumerate(request.items):
        reason = item.reason
        if item.quantity > 3 and reason == "changed_mind":
            d = 18
        elif item.unit_price.amount * item.quantity > 25000:
            d = 17
        elif unphotographed_api and reason == "damaged":
            d = 16
        elif exchange and reason in _SIZES:
            d = 15
        elif sale and reason == "changed_mind":
            d = 12
        elif "cadeaubon" in item.name.casefold():
            d = 11
        elif item.sku.casefold().startswith("hyg-"):
            d = 10
        elif rd > 7:
            d = rd
        elif reason == "wrong_product_sent":
            d = 7
        elif reason in _DAMAGED:
            d = 6
        else:
            d = rd
        refund = refund or reason in _REFUNDING_20
        rank = _RANK_20[d]
        best = max(best, rank)
        undecided = undecided or d < 0
        if d in (10, 11):
            if refused is None:
                refused = [-1] * len(request.items)
            refused[index] = d
    return _finish(
        best,
        undecided,
        refused,
        refund,
        fee,
        carrier,
        _NAMES_20,
        _DECISION_20,
        _REASON_20,
        _REFUSAL_20,
        request.customer.language,
    )


# -- the 100-rule policy, written by hand (table-driven, as its rules are) ----------------------

_ACTIONS: Final = {
    "Retouraanvraag inschakelen": Decision.REVIEW,
    "Goedkeuren zonder label": Decision.APPROVE_WITHOUT_LABEL,
    "Goedkeuren met label": Decision.APPROVE_WITH_LABEL,
}


def _hand_100() -> dict[str, Any]:  # noqa: C901 - one table after the other
    """The 100-rule policy's tables: rule positions, decisions, fees, reasons, names."""
    names: list[str] = []
    decides: dict[int, Decision] = {}
    reasons: dict[int, str] = {}
    by_country: dict[str, tuple[int, Money, str | None]] = {}
    for country, fee, carrier in COUNTRY_FEES:
        by_country[country] = (len(names), Money(fee), carrier)
        names.append(f"Kosten {country}")
    request = {}
    for line in _REQUEST_RULES_100.splitlines():
        if line.startswith("REGEL"):
            name = line.split('"')[1]
            request[name] = len(names)
            names.append(name)
    for name, decision in (
        ("Buiten de EU", _R), ("Kleine bestelling", Decision.APPROVE_WITHOUT_LABEL),
        ("Binnenland", Decision.APPROVE_WITH_LABEL), ("Grote bestelling", _R),
        ("Zeer grote bestelling", Decision.REJECT), ("Veel artikelen", _R),
        ("Termijn", Decision.REJECT), ("Oude bestelling", Decision.REJECT),
        ("API zonder foto's", _R), ("Zakelijk", Decision.APPROVE_WITHOUT_LABEL),
        ("Groothandel", _R), ("Fraude", Decision.REJECT), ("Amazon", _R),
        ("Zakelijke order", Decision.APPROVE_WITHOUT_LABEL),
        ("Bedrijfsadres", Decision.APPROVE_WITHOUT_LABEL),
    ):  # fmt: skip
        decides[request[name]] = decision
    reasons[request["Zeer grote bestelling"]] = "Neem voor deze retour contact met ons op."
    reasons[request["Termijn"]] = "De retourtermijn van 30 dagen is verlopen."
    reasons[request["Oude bestelling"]] = "Deze bestelling is ouder dan 120 dagen."
    reasons[request["Fraude"]] = "Neem contact met ons op."
    by_category: dict[str, int] = {}
    for category, action in CATEGORIES:
        k = len(names)
        by_category[f"{category}-"] = k
        names.append(f"Categorie {category}")
        if action.startswith("Afwijzen"):
            decides[k], reasons[k] = Decision.REJECT, action.split('"')[1]
        else:
            decides[k] = _ACTIONS[action]
    item = {}
    for line in _ITEM_RULES_100.splitlines():
        if line.startswith("REGEL"):
            name = line.split('"')[1]
            item[name] = len(names)
            names.append(name)
    for name, decision in (
        ("Beschadigd", Decision.APPROVE_WITH_LABEL),
        ("Verkeerd verzonden", Decision.APPROVE_WITH_LABEL),
        ("Niet zoals beschreven", _R), ("Ruilen", Decision.APPROVE_WITH_LABEL),
        ("Sale bedacht", Decision.REJECT), ("Duur artikel", _R), ("Grote aantallen", _R),
        ("Elektronica defect", Decision.APPROVE_WITH_LABEL),
        ("Cadeaubon", Decision.NOT_RETURNABLE), ("Maatwerk", Decision.NOT_RETURNABLE),
    ):  # fmt: skip
        decides[item[name]] = decision
    reasons[item["Sale bedacht"]] = "Sale-artikelen nemen we alleen terug bij een defect."
    refusals = {item["Maatwerk"]: "Maatwerk kan niet retour."}
    refusing: dict[str, int] = {}
    for category in REFUSED_CATEGORIES:
        k = len(names)
        refusing[f"{category}-"] = k
        names.append(f"Categorie {category}")
        decides[k] = Decision.NOT_RETURNABLE
        refusals[k] = "Dit artikel kan om hygiënische redenen niet retour."
    ranks, decisions = _tables(len(names), decides)
    return {
        "names": tuple(names), "ranks": ranks, "decisions": decisions, "reasons": reasons,
        "refusals": refusals, "by_country": by_country, "request": request, "item": item,
        "by_category": by_category, "refusing": refusing,
        "not_returnable": frozenset(k for k, d in decides.items() if d is Decision.NOT_RETURNABLE),
    }  # fmt: skip


_H: Final = _hand_100()
_NAMES_100: Final[tuple[str, ...]] = _H["names"]
_RANK_100: Final[tuple[int, ...]] = _H["ranks"]
_DECISION_100: Final[tuple[Decision | None, ...]] = _H["decisions"]
_REASON_100: Final[dict[int, str]] = _H["reasons"]
_REFUSAL_100: Final[dict[int, str]] = _H["refusals"]
_BY_COUNTRY: Final[dict[str, tuple[int, Money, str | None]]] = _H["by_country"]
_BY_CATEGORY: Final[dict[str, int]] = {**_H["by_category"], **_H["refusing"]}
_NR_100: Final[frozenset[int]] = _H["not_returnable"]
_Q: Final[dict[str, int]] = _H["request"]
_I: Final[dict[str, int]] = _H["item"]
_EU_FEE = _FEE_0
_OUTSIDE_FEE, _LATE_FEE = Money(1995), Money(295)
_SALE_REASONS: Final = frozenset({"changed_mind"})
_BROKEN: Final = frozenset({"damaged", "defective"})


def efficient_100(request: ReturnRequest) -> Outcome:  # noqa: C901, PLR0912, PLR0915
    """``policy_100()`` by hand: request rules in order (later ones overwrite), then items."""
    q, it = _Q, _I
    country = request.from_country
    created = request.created_at.astimezone(TZ).date()
    delivered, ordered = request.delivered_at, request.ordered_at
    order = request.order_value.amount
    count = 0
    photos = False
    for item in request.items:
        count += item.quantity
        photos = photos or bool(item.photos)
    tags = request.tags
    number = request.order_number.casefold()
    fee: Money | None = None
    carrier: str | None = None
    rd = -1
    by_country = _BY_COUNTRY.get(country)
    if by_country is not None:
        _, fee, country_carrier = by_country
        carrier = country_carrier
    eu = country in EU
    if not eu:
        rd, fee = q["Buiten de EU"], _OUTSIDE_FEE
    if order >= 15000 and eu:
        fee = _EU_FEE
    if order < 2000:
        rd = q["Kleine bestelling"]
    if country in _DOMESTIC:
        rd = q["Binnenland"]
    if order > 100000:
        rd = q["Grote bestelling"]
    if order > 500000:
        rd = q["Zeer grote bestelling"]
    if count >= 8:
        rd = q["Veel artikelen"]
    if delivered is not None:
        days = (created - delivered.astimezone(TZ).date()).days
        if days > 14:
            fee = _LATE_FEE
        if days > 30:
            rd = q["Termijn"]
    if ordered is not None and (created - ordered.astimezone(TZ).date()).days > 120:
        rd = q["Oude bestelling"]
    if request.channel is Channel.API and not photos:
        rd = q["API zonder foto's"]
    if "vip" in tags:
        fee = _FEE_0
    if "b2b" in tags:
        rd = q["Zakelijk"]
    if "groothandel" in tags:
        rd = q["Groothandel"]
    if "fraude" in tags:
        rd = q["Fraude"]
    if number.startswith("mp-"):
        carrier = "PostNL"
    if number.startswith("amz-"):
        rd, carrier = q["Amazon"], "DHL"
    if number.startswith("b2b-"):
        rd = q["Zakelijke order"]
    method = request.refund_method
    if method is RefundMethod.STORE_CREDIT:
        fee = _FEE_0
    if "@bedrijf." in request.customer.email.casefold():
        rd = q["Bedrijfsadres"]
    exchange = method is RefundMethod.EXCHANGE
    sale = "sale" in tags
    best, undecided, refund = -1, False, False
    refused: list[int] | None = None
    for index, item in enumerate(request.items):
        d = rd
        category = _BY_CATEGORY.get(item.sku[:5])
        if category is not None and category < it["Beschadigd"]:
            d = category
        reason = item.reason
        if reason in _BROKEN:
            d, refund = it["Beschadigd"], True
        if reason == "wrong_product_sent":
            d, refund = it["Verkeerd verzonden"], True
        if reason == "not_as_described":
            d = it["Niet zoals beschreven"]
        if exchange and reason in _SIZES:
            d = it["Ruilen"]
        if sale and reason in _SALE_REASONS:
            d = it["Sale bedacht"]
        if item.unit_price.amount * item.quantity > 50000:
            d = it["Duur artikel"]
        if item.quantity > 3 and reason == "changed_mind":
            d = it["Grote aantallen"]
        if reason == "defective" and item.sku.startswith("ELEC-"):
            d, refund = it["Elektronica defect"], True
        name = item.name.casefold()
        if "cadeaubon" in name:
            d = it["Cadeaubon"]
        if "maatwerk" in name:
            d = it["Maatwerk"]
        if category is not None and category > it["Maatwerk"]:
            d = category
        rank = _RANK_100[d]
        best = max(best, rank)
        undecided = undecided or d < 0
        if d in _NR_100:
            if refused is None:
                refused = [-1] * len(request.items)
            refused[index] = d
    return _finish(
        best,
        undecided,
        refused,
        refund,
        fee,
        carrier,
        _NAMES_100,
        _DECISION_100,
        _REASON_100,
        _REFUSAL_100,
        request.customer.language,
    )


# -- peers: the same rules, translated -----------------------------------------------------------

#: A condition in a form every peer's language can write: nested tuples.
IR = tuple[Any, ...]


def _flat(field_type: FieldType, value: object) -> object:
    """A rule's value as the prepared data holds it (cents, codes, folded text)."""
    if isinstance(value, Money):
        return value.amount
    if isinstance(value, Decimal):
        return float(value)
    if field_type in {FieldType.TEXT, FieldType.TAGS}:
        return str(value).strip().casefold()
    if isinstance(value, (Channel, RefundMethod)):
        return value.value
    return value


def _leaf(compare: Compare, *, want: bool) -> IR:
    """``compare`` certainly true (``want``) or certainly false, a missing value being neither."""
    key, field_type, op = compare.field.key, compare.field.type, compare.operator
    values = [_flat(field_type, v) for v in compare.values]
    negated = op in {Operator.IS_NOT, Operator.NOT_CONTAINS}
    if op.is_ordering:
        symbol = {"GT": ">", "GE": ">=", "LT": "<", "LE": "<="}[op.value]
        if not want:
            symbol = {">": "<=", ">=": "<", "<": ">=", "<=": ">"}[symbol]
        test: IR = ("cmp", key, symbol, values[0])
    elif op in {Operator.CONTAINS, Operator.NOT_CONTAINS}:
        kind = "has" if field_type is FieldType.TAGS else "sub"
        test = ("or", [(kind, key, v) for v in values])
    elif op is Operator.STARTS_WITH:
        test = ("or", [("prefix", key, v) for v in values])
    else:
        test = ("in", key, values)
    holds = want != negated
    body = test if holds or op.is_ordering else ("not", test)
    # Only a field that can be missing needs the guard (the others are always there).
    return ("and", [("known", key), body]) if compare.field.optional else body


def _ir(condition: Condition, *, want: bool = True) -> IR:
    if isinstance(condition, Compare):
        return _leaf(condition, want=want)
    if isinstance(condition, Not):
        return _ir(condition.part, want=not want)
    every = isinstance(condition, And) == want
    return ("and" if every else "or", [_ir(p, want=want) for p in condition.parts])


def _chains(ruleset: RuleSet) -> dict[str, list[tuple[int, IR]]]:
    """Per kind of action and scope, the rules (last first) with their conditions."""
    chains: dict[str, list[tuple[int, IR]]] = {
        "rd": [],
        "fee": [],
        "car": [],
        "rf": [],
        "b": [],
        "irf": [],
    }
    for k, rule in enumerate(ruleset.rules):
        kinds = {a.kind.group for a in rule.actions}
        item = rule.scope is rules.Scope.ITEM
        condition = _ir(rule.condition)
        if "decision" in kinds:
            chains["b" if item else "rd"].append((k, condition))
        if "refund" in kinds:
            chains["irf" if item else "rf"].append((k, condition))
        if "fee" in kinds:
            chains["fee"].append((k, condition))
        if "carrier" in kinds:
            chains["car"].append((k, condition))
    return {name: chain[::-1] for name, chain in chains.items()}


class _Writer:
    """Writes the conditions in one peer's language (expression text or JSON logic)."""

    def __init__(self, peer: str) -> None:
        self.peer = peer

    def value(self, value: object) -> str:
        if value is None:
            return "null"
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, str):
            quote = "'" if self.peer == "zen-engine" else '"'
            return quote + value.replace("\\", "\\\\").replace(quote, "\\" + quote) + quote
        return repr(value)

    def text(self, node: IR) -> str:  # noqa: C901, PLR0911
        kind = node[0]
        peer = self.peer
        words = {"rule-engine": ("and", "or", "not "), "zen-engine": ("and", "or", "not ")}
        conj, disj, neg = words.get(peer, ("&&", "||", "!"))
        if kind in {"and", "or"}:
            parts = [self.text(p) for p in node[1]]
            return "(" + f" {conj if kind == 'and' else disj} ".join(parts) + ")"
        if kind == "not":
            return f"{neg}({self.text(node[1])})"
        key = node[1]
        if kind == "known":
            return f"type({key}) != null_type" if peer == "cel-python" else f"{key} != null"
        if kind == "in":
            if len(node[2]) == 1:
                return f"{key} == {self.value(node[2][0])}"
            return f"{key} in [{', '.join(self.value(v) for v in node[2])}]"
        if kind == "has":
            return f"{self.value(node[2])} in {key}"
        if kind == "sub":
            if peer == "cel-python":
                return f"{key}.contains({self.value(node[2])})"
            if peer == "zen-engine":
                return f"contains({key}, {self.value(node[2])})"
            return f"{self.value(node[2])} in {key}"
        if kind == "prefix":
            if peer == "cel-python":
                return f"{key}.startsWith({self.value(node[2])})"
            if peer == "zen-engine":
                return f"startsWith({key}, {self.value(node[2])})"
            return f"{key}.starts_with({self.value(node[2])})"
        return f"{key} {node[2]} {self.value(node[3])}"  # cmp

    def chain(self, chain: list[tuple[int, IR]], last: str) -> str:
        out = last
        for k, condition in reversed(chain):
            out = f"({self.text(condition)} ? {k} : {out})"
        return out

    def logic(self, node: IR, scope: int = 0) -> Any:  # noqa: C901, PLR0911
        kind = node[0]

        def var(key: str) -> Any:
            if scope and key not in _ITEM_KEYS:
                return {"val": [[scope], key]}
            return {"var": key}

        if kind in {"and", "or"}:
            return {kind: [self.logic(p, scope) for p in node[1]]}
        if kind == "not":
            return {"!": self.logic(node[1], scope)}
        key = node[1]
        if kind == "known":
            return {"!==": [var(key), None]}
        if kind == "in":
            if len(node[2]) == 1:
                return {"==": [var(key), node[2][0]]}
            return {"in": [var(key), list(node[2])]}
        if kind in {"has", "sub"}:
            return {"in": [node[2], var(key)]}
        if kind == "prefix":
            if self.peer == "datalogic-py":
                return {"starts_with": [var(key), node[2]]}
            return {"==": [{"substr": [var(key), 0, len(node[2])]}, node[2]]}
        return {node[2]: [var(key), node[3]]}

    def logic_chain(self, chain: list[tuple[int, IR]], scope: int = 0) -> Any:
        if not chain:
            return -1
        args: list[Any] = []
        for k, condition in chain:
            args += [self.logic(condition, scope), k]
        return {"if": [*args, -1]}


_DECIDING: Final = {
    rules.ActionKind.REQUIRE_REVIEW: Decision.REVIEW,
    rules.ActionKind.SKIP_REVIEW: Decision.APPROVE_WITH_LABEL,
    rules.ActionKind.APPROVE_WITH_LABEL: Decision.APPROVE_WITH_LABEL,
    rules.ActionKind.APPROVE_WITHOUT_LABEL: Decision.APPROVE_WITHOUT_LABEL,
    rules.ActionKind.REJECT: Decision.REJECT,
    rules.ActionKind.ORDER_NOT_RETURNABLE: Decision.NOT_RETURNABLE,
    rules.ActionKind.ITEM_NOT_RETURNABLE: Decision.NOT_RETURNABLE,
}
_ITEM_KEYS: Final = frozenset({"reason", "item_name", "sku", "item_value", "quantity"})


def contexts(request: ReturnRequest) -> dict[str, Any]:
    """The flat data a peer reads: the request's fields, and its items' under ``items``."""
    created = request.created_at.astimezone(TZ).date()
    delivered, ordered = request.delivered_at, request.ordered_at
    base = {
        "from_country": request.from_country,
        "order_value": request.order_value.amount,
        "return_value": request.return_value.amount,
        "number_of_items": sum(i.quantity for i in request.items),
        "days_since_delivery": None
        if delivered is None
        else (created - delivered.astimezone(TZ).date()).days,
        "days_since_order": None
        if ordered is None
        else (created - ordered.astimezone(TZ).date()).days,
        "refund_method": request.refund_method.value,
        "return_method": None
        if request.return_method is None
        else request.return_method.casefold(),
        "channel": request.channel.value,
        "has_photos": any(i.photos for i in request.items),
        "customer_email": request.customer.email.strip().casefold(),
        "order_number": request.order_number.strip().casefold(),
        "tags": sorted(t.strip().casefold() for t in request.tags),
    }
    items = [
        {
            "reason": i.reason,
            "item_name": i.name.strip().casefold(),
            "sku": i.sku.strip().casefold(),
            "item_value": i.value.amount,
            "quantity": i.quantity,
        }
        for i in request.items
    ]
    return {**base, "items": items, "merged": [{**base, **i} for i in items]}


class Assembler:
    """Turns the winning rules a peer found into the outcome, memoised like the engine's."""

    def __init__(self, ruleset: RuleSet) -> None:
        self.ruleset = ruleset
        self.memo: dict[Any, Outcome] = {}

    def __call__(
        self, winners: tuple[int, int, int, bool], items: list[tuple[int, bool]], language: Language
    ) -> Outcome:
        rd, fee, car, rf = winners
        key = (
            rd,
            fee,
            car,
            rf or any(r for _, r in items),
            tuple(max(rd, w) for w, _ in items),
            language,
        )
        outcome = self.memo.get(key)
        if outcome is None:
            outcome = self.memo[key] = self._build(key)
        return outcome

    def _build(self, key: tuple[Any, ...]) -> Outcome:
        _, fee_rule, carrier_rule, refund, decisions, language = key
        all_rules = self.ruleset.rules
        decision_of = {
            k: _DECIDING[a.kind]
            for k, r in enumerate(all_rules)
            for a in r.actions
            if a.kind in _DECIDING
        }
        count = len(all_rules)
        ranks = [decision_of[d].strictness * count + d if d >= 0 else -1 for d in decisions]
        best = max(ranks)
        fee = (
            next(
                (
                    a.argument
                    for a in all_rules[fee_rule].actions
                    if a.kind is rules.ActionKind.RETURN_FEE
                ),
                None,
            )
            if fee_rule >= 0
            else None
        )
        carrier = (
            next(
                (
                    str(a.argument)
                    for a in all_rules[carrier_rule].actions
                    if a.kind is rules.ActionKind.SHIP_WITH
                ),
                None,
            )
            if carrier_rule >= 0
            else None
        )
        names = tuple(r.display_name(self.ruleset.language) for r in all_rules)
        reasons = {
            k: str(a.argument)
            for k, r in enumerate(all_rules)
            for a in r.actions
            if a.kind is rules.ActionKind.REJECT
        }
        refusals = {
            k: str(a.argument)
            for k, r in enumerate(all_rules)
            for a in r.actions
            if a.kind is rules.ActionKind.ITEM_NOT_RETURNABLE and a.argument
        }
        refused = [
            d if d >= 0 and decision_of[d] is Decision.NOT_RETURNABLE else -1 for d in decisions
        ]
        assert isinstance(fee, Money | None)
        return _finish(
            best, -1 in decisions, refused if max(refused) >= 0 else None, refund, fee, carrier,
            names, [decision_of.get(k) for k in range(count)], reasons, refusals, language,
        )  # fmt: skip


Runner = Callable[[list[Any]], list[Outcome]]


def _refund_logic(writer: _Writer, chain: list[tuple[int, IR]], scope: int = 0) -> Any:
    return {"!!": {"or": [writer.logic(c, scope) for _, c in chain] or [False]}}


def _json_logic_peer(chains: dict[str, Any], assemble: Assembler) -> Runner | str:
    try:
        from json_logic import jsonLogic  # noqa: PLC0415
    except ImportError:
        return "not installed (pip install panzi-json-logic)"
    writer = _Writer("panzi-json-logic")
    request_logic = [writer.logic_chain(chains[k]) for k in ("rd", "fee", "car")]
    request_logic.append(_refund_logic(writer, chains["rf"]))
    item_logic = [writer.logic_chain(chains["b"]), _refund_logic(writer, chains["irf"])]

    def run(prepared: list[Any]) -> list[Outcome]:
        out = []
        for ctx, language in prepared:
            rd, fee, car, rf = jsonLogic(request_logic, ctx)
            items = [tuple(jsonLogic(item_logic, i)) for i in ctx["merged"]]
            out.append(assemble((rd, fee, car, bool(rf)), items, language))
        return out

    return run


def _datalogic_peer(chains: dict[str, Any], assemble: Assembler) -> Runner | str:
    """One call per request: the items are mapped inside, reading the request one scope up."""
    try:
        import datalogic_py  # noqa: PLC0415
    except ImportError:
        return "not installed (pip install datalogic-py)"
    writer = _Writer("datalogic-py")
    engine = datalogic_py.Engine()
    items = [writer.logic_chain(chains["b"], scope=1), _refund_logic(writer, chains["irf"], 1)]
    whole = [
        *(writer.logic_chain(chains[k]) for k in ("rd", "fee", "car")),
        _refund_logic(writer, chains["rf"]),
        {"map": [{"var": "items"}, items]},
    ]
    rule = engine.compile(json.dumps(whole))
    session = engine.session()

    def run(prepared: list[Any]) -> list[Outcome]:
        out = []
        evaluate = session.evaluate
        for ctx, language in prepared:
            rd, fee, car, rf, decided = evaluate(rule, ctx)
            found = [(int(w), bool(r)) for w, r in decided]
            out.append(assemble((int(rd), int(fee), int(car), bool(rf)), found, language))
        return out

    return run


def _texts(name: str, chains: dict[str, Any]) -> tuple[str, str]:
    """The request's and an item's expression in an expression language: winners, refund."""
    writer = _Writer(name)
    either = " || " if name == "cel-python" else " or "

    def refund(chain: list[tuple[int, IR]]) -> str:
        return "(" + either.join([writer.text(c) for _, c in chain] or ["false"]) + ")"

    winners = [writer.chain(chains[k], "-1") for k in ("rd", "fee", "car")]
    request = f"[{', '.join([*winners, refund(chains['rf'])])}]"
    item = f"[{writer.chain(chains['b'], '-1')}, {refund(chains['irf'])}]"
    return request, item


def _expression_runner(
    evaluate_request: Callable[[Any], Any],
    evaluate_item: Callable[[Any], Any],
    assemble: Assembler,
) -> Runner:
    def run(prepared: list[Any]) -> list[Outcome]:
        out = []
        for ctx, language in prepared:
            rd, fee, car, rf = evaluate_request(ctx)
            items = [(int(w), bool(r)) for w, r in map(evaluate_item, ctx["merged"])]
            out.append(assemble((int(rd), int(fee), int(car), bool(rf)), items, language))
        return out

    return run


def _rule_engine_peer(chains: dict[str, Any], assemble: Assembler) -> Runner | str:
    try:
        import rule_engine  # noqa: PLC0415
    except ImportError:
        return "not installed (pip install rule-engine)"
    request_text, item_text = _texts("rule-engine", chains)
    context = rule_engine.Context(default_value=None)
    request_rule = rule_engine.Rule(request_text, context=context)
    item_rule = rule_engine.Rule(item_text, context=context)
    return _expression_runner(request_rule.evaluate, item_rule.evaluate, assemble)


def _zen_peer(chains: dict[str, Any], assemble: Assembler) -> Runner | str:
    try:
        import zen  # noqa: PLC0415
    except ImportError:
        return "not installed (pip install zen-engine)"
    request_text, item_text = _texts("zen-engine", chains)
    request_expression = zen.compile_expression(request_text)
    item_expression = zen.compile_expression(item_text)
    return _expression_runner(request_expression.evaluate, item_expression.evaluate, assemble)


def _cel_peer(chains: dict[str, Any], assemble: Assembler) -> Runner | str:
    """cel-python evaluates nested conditionals recursively: a chain of a hundred rules is too
    deep for it, so it gives every condition's truth and Python picks the winners."""
    try:
        import celpy  # noqa: PLC0415
        import celpy.adapter  # noqa: PLC0415
    except ImportError:
        return "not installed (pip install cel-python)"
    writer = _Writer("cel-python")
    env = celpy.Environment()
    request_chains = [chains[k] for k in ("rd", "fee", "car", "rf")]
    item_chains = [chains["b"], chains["irf"]]

    def program(groups: list[list[tuple[int, IR]]]) -> Any:
        tests = [writer.text(c) for chain in groups for _, c in chain]
        return env.program(env.compile(f"[{', '.join(tests) or 'false'}]"))

    def winners(groups: list[list[tuple[int, IR]]], truths: Sequence[Any]) -> list[int]:
        found, at = [], 0
        for chain in groups:
            hits = [k for (k, _), truth in zip(chain, truths[at:], strict=False) if truth]
            found.append(hits[0] if hits else -1)
            at += len(chain)
        return found

    request_program, item_program = program(request_chains), program(item_chains)
    convert = celpy.adapter.json_to_cel

    def request(ctx: Any) -> list[int]:
        rd, fee, car, rf = winners(request_chains, request_program.evaluate(convert(ctx)))
        return [rd, fee, car, rf >= 0]

    def item(ctx: Any) -> list[int]:
        decided, refund = winners(item_chains, item_program.evaluate(convert(ctx)))
        return [decided, refund >= 0]

    return _expression_runner(request, item, assemble)


_PEERS: Final = {
    "datalogic-py": _datalogic_peer,
    "zen-engine": _zen_peer,
    "panzi-json-logic": _json_logic_peer,
    "rule-engine": _rule_engine_peer,
    "cel-python": _cel_peer,
}


def peer(name: str, ruleset: RuleSet) -> Runner | str:
    """A function deciding prepared requests with peer ``name``, or why it cannot run."""
    build = _PEERS.get(name)
    if build is None:
        return "unknown peer"
    return build(_chains(ruleset), Assembler(ruleset))


# -- measuring ---------------------------------------------------------------------------------


def same(a: Outcome, b: Outcome) -> bool:
    """Whether two outcomes agree on everything but the trace."""
    return (a.decision, a.reason, a.refund_return_fee, a.return_fee, a.carrier, a.rule) == (
        b.decision, b.reason, b.refund_return_fee, b.return_fee, b.carrier, b.rule,
    ) and a.refused == b.refused  # fmt: skip


def _each(evaluate: Callable[[ReturnRequest], Outcome], requests: Sequence[ReturnRequest]) -> float:
    """CPU seconds to decide ``requests`` (CPU time: other work on the machine does not count)."""
    start = time.process_time()
    for request in requests:
        evaluate(request)
    return time.process_time() - start


def _disagree(
    name: str,
    expected: Sequence[Outcome],
    got: Sequence[Outcome],
    requests: Sequence[ReturnRequest],
) -> None:
    for request, a, b in zip(requests, expected, got, strict=True):
        if not same(a, b):
            raise SystemExit(f"{name} and the engine disagree on {request.id}:\n  {a}\n  {b}")


def _measure_policy(  # noqa: PLR0917 - one call per policy, in main
    label: str,
    text: str,
    handwritten: Callable[[ReturnRequest], Outcome],
    requests: list[ReturnRequest],
    repeat: int,
    peers: Sequence[str],
) -> list[str]:
    ruleset = rules.parse(text)
    engine = [ruleset.evaluate(r) for r in requests]
    _disagree("the hand-written function", engine, [handwritten(r) for r in requests], requests)
    # Round robin, so that a busy moment on the shared machine hits every contender alike.
    cold = warm = hand = math.inf
    for _ in range(max(1, repeat)):
        evaluate = rules.parse(text).evaluate
        cold = min(cold, _each(evaluate, requests))
        warm = min(warm, _each(evaluate, requests))
        hand = min(hand, _each(handwritten, requests))
    n = len(requests)
    print(
        f"{label}: ratio engine / hand-written {cold / hand:.2f}x cold, {warm / hand:.2f}x warm"
        f" ({len(ruleset.rules)} rules, {len(ruleset.warnings)} warnings)",
        flush=True,
    )
    rows = [
        f"{label:<10} {'retouraanvraag (cold)':<26} {n / cold:>10,.0f}",
        f"{'':<10} {'retouraanvraag (warm)':<26} {n / warm:>10,.0f}",
        (
            f"{'':<10} {'hand-written, efficient':<26} {n / hand:>10,.0f}"
            f"   {cold / hand:>5.2f}x   {warm / hand:>5.2f}x"
        ),
    ]
    for name in peers:
        run = peer(name, ruleset)
        if isinstance(run, str):
            rows.append(f"{'':<10} {name:<26} {'skipped: ' + run:>10}")
            continue
        size = {"rule-engine": n // 50, "cel-python": n // 500, "panzi-json-logic": n // 10}.get(
            name, n
        )
        sample = requests[: max(20, size)]
        prepared = [(contexts(r), r.customer.language) for r in sample]
        _disagree(name, engine[: len(sample)], run(prepared), sample)
        peer_s = mine_cold = mine_warm = math.inf
        for _ in range(max(1, repeat if len(sample) == n else min(repeat, 3))):
            start = time.process_time()
            run(prepared)
            peer_s = min(peer_s, time.process_time() - start)
            evaluate = rules.parse(text).evaluate
            mine_cold = min(mine_cold, _each(evaluate, sample))
            mine_warm = min(mine_warm, _each(evaluate, sample))
        rows.append(
            f"{'':<10} {name:<26} {len(sample) / peer_s:>10,.0f}"
            f"   {mine_cold / peer_s:>5.2f}x   {mine_warm / peer_s:>5.2f}x"
            + ("" if len(sample) == n else f"   (first {len(sample):,} requests)")
        )
    return rows


def generated_rules(count: int) -> str:
    """A ``count``-rule file: request and item fields, value lists, names, actions."""
    rng = random.Random(11)
    countries = ["Nederland", "België", "Duitsland", "Frankrijk", "Spanje", "Italië"]
    lines = []
    for n in range(count):
        pick = rng.randrange(4)
        if pick == 0:
            condition = f"Van land IS {rng.choice(countries)} OF {rng.choice(countries)}"
        elif pick == 1:
            low, high = rng.randint(1, 900), rng.randint(2, 9)
            condition = f"Bestelwaarde > €{low},00 EN Aantal artikelen < {high}"
        elif pick == 2:
            condition = f'Retourreden IS NIET "Te klein" OF "Te groot" EN Artikelwaarde >= €{n},50'
        else:
            condition = f'(Tags BEVAT "t{n}" OF SKU BEGINT MET "A{n}") EN NIET Kanaal IS api'
        action = rng.choice(
            ["Retouraanvraag inschakelen", "Goedkeuren met label", 'Afwijzen met reden "Nee"']
        )
        lines.append(f'REGEL "r{n}": ALS {condition}\nDAN {action}')
    return "\n\n".join(lines) + "\n"


def long_rules(size: int) -> str:
    """Rules of 300 comparisons joined by ``EN`` (the shape that once grew with rules²), up to
    ``size`` characters."""
    shapes = (
        "Bestelwaarde > €{i},00",
        "Van land IS NL",
        "Aantal artikelen < {i}",
        'Retourreden IS "Te klein"',
        'Tags BEVAT "t{i}"',
    )
    rules: list[str] = []
    total = 0
    while True:
        r = len(rules)
        parts = [shapes[(i + r) % len(shapes)].format(i=i) for i in range(300)]
        rule = f'REGEL "r{r}": ALS ' + " EN ".join(parts) + "\nDAN Retouraanvraag inschakelen"
        if total + len(rule) + 2 > size:
            return "\n\n".join(rules) + "\n"
        rules.append(rule)
        total += len(rule) + 2


def many_rules(count: int, size: int) -> str:
    """``count`` rules filling about ``size`` characters: the generated file, each rule's
    condition lengthened by comparisons on other fields."""
    text = generated_rules(count)
    room = (size - len(text)) // count - len(" EN ")
    extras = (
        " EN Aantal artikelen < 90",
        " EN Besteldatum NA 2026-01-01",
        " EN Kanaal IS NIET api",
    )
    filler = "Bestelwaarde < €9000,00"
    for extra in extras * (room // min(map(len, extras)) + 1):
        if len(filler) + len(extra) <= room:
            filler += extra
    short = " EN Aantal < 9"
    while len(filler) + len(short) <= room:
        filler += short
    return text.replace(": ALS ", f": ALS {filler} EN ")


def _load_time(text: str) -> tuple[float, float, rules.RuleSet]:
    """The best wall and CPU seconds of five loads of ``text``, and the rule set.

    The collector runs before each load, so that collecting what earlier loads (and this
    benchmark's own requests) left is not counted in the next one; the load pauses it itself.
    """
    walls, cpus = [], []
    for _ in range(5):
        gc.collect()
        wall, cpu = time.perf_counter(), time.process_time()
        loaded = rules.parse(text)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return min(walls), min(cpus), loaded


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print the figures (``argv``: options; none from ``run.py``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=5, help="runs per contender; the best counts")
    parser.add_argument("--rules", type=int, default=1000, help="size of the generated file")
    parser.add_argument(
        "--no-limit-files", action="store_true", help="skip loading the two files at the 1 MB limit"
    )
    parser.add_argument(
        "--peers",
        default="datalogic-py,zen-engine,panzi-json-logic,rule-engine,cel-python",
        help="comma-separated peers to run, or 'none'",
    )
    args = parser.parse_args(argv or [])
    requests = generate(args.requests)
    peers = [p for p in args.peers.split(",") if p and p != "none"]
    items = sum(len(r.items) for r in requests)
    print(
        f"rules: {len(requests):,} requests ({items:,} items; unique order numbers and e-mail"
        " addresses, amounts to the cent, SKUs from 500,000), best of"
        f" {args.repeat} runs; the engine's time divided by each contender's, cold and warm"
    )
    print(f"{'policy':<10} {'contender':<26} {'evals/s':>10}   {'cold':>6}   {'warm':>6}")
    for label, text, hand in (
        ("20 rules", POLICY, efficient_20),
        ("100 rules", policy_100(), efficient_100),
    ):
        for row in _measure_policy(label, text, hand, requests, args.repeat, peers):
            print(row, flush=True)
    limit = rules.MAX_SOURCE_CHARS
    print("load (parse + check + compile), best of 5; targets: 1,000 rules 150 ms, 1 MB 2 s")
    files = [(f"{args.rules:,} rules", generated_rules(args.rules))]
    if not args.no_limit_files:
        files.append((f"{rules.MAX_RULES:,} rules, 1 MB", many_rules(rules.MAX_RULES, limit)))
        files.append(("rules of 300 comparisons, 1 MB", long_rules(limit)))
    for label, text in files:
        wall, cpu, loaded = _load_time(text)
        print(
            f"  {label:<32} {len(text):>9,} chars {wall * 1000:>6.0f} ms wall"
            f" {cpu * 1000:>6.0f} ms CPU ({len(loaded.rules):,} rules,"
            f" {len(loaded.warnings)} warnings)",
            flush=True,
        )


if __name__ == "__main__":
    main(sys.argv[1:])
