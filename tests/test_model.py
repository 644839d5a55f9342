from __future__ import annotations

import contextlib
import datetime as dt
import pickle
import re
import unicodedata
from decimal import Decimal

import attrs
import pytest
from babel.numbers import list_currencies
from hypothesis import given
from hypothesis import strategies as st

from retouraanvraag import errors, model
from retouraanvraag._codec import request_from_json, request_to_json
from retouraanvraag.model import (
    CUSTOMER,
    MAX_MINOR_UNITS,
    TRANSITIONS,
    Actor,
    Customer,
    Decision,
    Effect,
    EffectKind,
    Label,
    Language,
    MailKind,
    Money,
    PaidFee,
    Reason,
    ReasonCatalogue,
    RefundRecord,
    ReturnItem,
    ReturnRequest,
    Status,
    country_name,
    label_key,
    resolve_country,
)

from .strategies import euros, requests

NOW = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)


def make_request(**changes: object) -> ReturnRequest:
    base = ReturnRequest(
        shop_id="shop-1",
        id="req-1",
        order_number="1001",
        customer=Customer("jan@example.nl", "Jan Jansen"),
        from_country="NL",
        order_value=Money(5995),
        items=(ReturnItem("TS-1", "T-shirt", 1, Money(1995), "too_small"),),
        created_at=NOW,
        return_fee=PaidFee(Money(495), "pay_1"),
    )
    return attrs.evolve(base, **changes).submitted().request  # type: ignore[arg-type]


# -- money ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "minor", "currency"),
    [
        ("€4,95", 495, "EUR"),
        ("€ 4,95", 495, "EUR"),
        ("4.95 EUR", 495, "EUR"),
        ("EUR 1.234,56", 123456, "EUR"),
        ("1,234.56", 123456, "EUR"),
        ("1.000.000", 100000000, "EUR"),
        ("12", 1200, "EUR"),
        ("£3.50", 350, "GBP"),
        ("4,95 eur", 495, "EUR"),
        ("0", 0, "EUR"),
        ("1 234,5", 123450, "EUR"),
        ("1.234.567,89", 123456789, "EUR"),
        ("1,000,000.00", 100000000, "EUR"),
        ("1'234.50", 123450, "EUR"),
        ("€\u00a01.234,56", 123456, "EUR"),
        ("1\u202f234,50", 123450, "EUR"),
        ("1.234 KWD", 1234, "KWD"),
    ],
)
def test_money_parses_what_merchants_type(text: str, minor: int, currency: str) -> None:
    assert Money.parse(text) == Money(minor, currency)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("-4,95", "negative"),
        ("€ -4,95", "negative"),
        ("€4,95 USD", "two currencies"),
        ("4,955", "decimals"),
        ("4.95 XYZ", "unknown currency"),
        ("vier euro", "cannot read"),
        ("1,2,3.4.5", "cannot read"),
        ("", "cannot read"),
        ("9" * 100, "cannot read"),
        ("€4,9,5", "groups of three digits"),
        ("4,95,00", "groups of three digits"),
        ("1.23.456", "groups of three digits"),
        ("12,34.5", "groups of three digits"),
        ("1234.567,89", "groups of three digits"),
        ("12 34", "groups of three digits"),
        ("1.234 567,00", "both"),
        ("4,", "ends with a separator"),
        ("1,.5", "one '.', ','"),
        ("€1.000", "thousands separator"),
    ],
)
def test_money_refuses_bad_amounts_with_a_clear_message(text: str, problem: str) -> None:
    with pytest.raises(errors.InvalidMoney, match=problem):
        Money.parse(text)


@pytest.mark.parametrize("value", ["Infinity", "-Infinity", "NaN", "sNaN", "1E+999999999", "x"])
def test_money_of_refuses_what_is_not_a_finite_amount(value: str) -> None:
    with pytest.raises(errors.InvalidMoney):
        Money.of(value)


def test_money_has_an_upper_bound_every_store_can_keep() -> None:
    assert Money(10**15).amount == 10**15
    with pytest.raises(errors.InvalidMoney, match="limit"):
        Money(10**15 + 1)
    with pytest.raises(errors.InvalidMoney, match="limit"):
        Money.parse("€ 99.999.999.999.999.999")


@given(st.text(max_size=80) | st.decimals(allow_nan=True, allow_infinity=True).map(str))
def test_money_of_never_raises_anything_but_invalid_money(text: str) -> None:
    with contextlib.suppress(errors.InvalidMoney):
        Money.of(text)


def test_money_refuses_negative_floats_and_unknown_currencies() -> None:
    with pytest.raises(errors.InvalidMoney, match="negative"):
        Money(-1)
    with pytest.raises(errors.InvalidMoney, match="whole number"):
        Money(1.5)  # type: ignore[arg-type]
    with pytest.raises(errors.InvalidMoney, match="never floats"):
        Money.of(4.95)  # type: ignore[arg-type]
    with pytest.raises(errors.InvalidMoney, match="unknown currency"):
        Money(1, "EURO")
    with pytest.raises(errors.InvalidMoney, match="decimals"):
        Money.of("4.955")
    with pytest.raises(errors.InvalidMoney, match="cannot read"):
        Money.of("abc")


def test_money_arithmetic_stays_in_one_currency() -> None:
    assert Money(100) + Money(250) == Money(350)
    assert Money(300) - Money(100) == Money(200)
    assert Money(150) * 3 == Money(450)
    assert Money(1) < Money(2)
    assert Money.of("4.95") == Money(495)
    assert Money.of(Decimal(10)) == Money(1000)
    assert Money(495).decimal == Decimal("4.95")
    assert str(Money(495)) == "4.95 EUR"
    with pytest.raises(errors.CurrencyMismatch):
        Money(1) + Money(1, "USD")
    with pytest.raises(errors.CurrencyMismatch):
        _ = Money(1) < Money(1, "USD")
    with pytest.raises(errors.InvalidMoney):
        Money(1) - Money(2)


def test_money_formats_per_locale() -> None:
    assert Money(123456).format(Language.NL) == "€\xa01.234,56"
    assert Money(123456).format("en") == "€1,234.56"


@given(euros)
def test_money_round_trips_through_text_and_both_locales(money: Money) -> None:
    assert Money.parse(str(money)) == money
    assert Money.parse(money.format("nl")) == money
    assert Money.parse(money.format("en")) == money


@given(
    amount=st.integers(0, MAX_MINOR_UNITS),
    currency=st.sampled_from(sorted(list_currencies())),
)
def test_money_round_trips_through_text_over_the_whole_range(amount: int, currency: str) -> None:
    money = Money(amount, currency)
    assert Money.parse(str(money)) == money


@given(amount=st.integers(0, MAX_MINOR_UNITS), currency=st.sampled_from(["EUR", "GBP", "USD"]))
def test_money_round_trips_through_both_locales_over_the_whole_range(
    amount: int, currency: str
) -> None:
    money = Money(amount, currency)
    assert Money.parse(money.format("nl")) == money
    assert Money.parse(money.format("en")) == money


_WHOLE = r"(?:\d{1,3}(?:(?P<group>[.,' ])\d{3})(?:(?P=group)\d{3})*|\d+)"


def _reference_minor_units(number: str, precision: int) -> int | None:
    """What a careful reader makes of ``number``: minor units, or ``None`` for "cannot".

    Spelled as the two readings a person weighs: with a decimal part (the last ``.`` or ``,``,
    not also the group separator), else a whole number grouped in threes.
    """
    number = " ".join(number.split())
    with_fraction = re.fullmatch(_WHOLE + r"(?P<point>[.,])(?P<fraction>\d+)", number)
    if with_fraction and with_fraction["group"] != with_fraction["point"]:
        whole, fraction = number[: with_fraction.start("point")], with_fraction["fraction"]
    elif re.fullmatch(_WHOLE, number):
        whole, fraction = number, ""
    else:
        return None
    if len(fraction) > precision:
        return None
    digits = re.sub(r"\D", "", whole) + fraction.ljust(precision, "0")
    return int(digits)


@given(st.text(alphabet="0123456789.,' ", min_size=1, max_size=16))
def test_money_parse_agrees_with_a_reference_reader(number: str) -> None:
    expected = _reference_minor_units(number, 2)
    if expected is None or expected > MAX_MINOR_UNITS:
        with pytest.raises(errors.InvalidMoney):
            Money.parse(f"€{number}")
    else:
        assert Money.parse(f"€{number}") == Money(expected)


@given(
    amount=st.integers(0, MAX_MINOR_UNITS),
    group=st.sampled_from([".", ",", " ", "'", "\u00a0"]),
    point=st.sampled_from([".", ","]),
)
def test_money_reads_any_grouping_with_a_decimal_part(amount: int, group: str, point: str) -> None:
    if group == point:
        return
    whole, cents = divmod(amount, 100)
    text = f"{whole:,}".replace(",", group) + f"{point}{cents:02d}"
    assert Money.parse(f"EUR {text}") == Money(amount)


# -- countries and reasons -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("Nederland", "NL"),
        ("nederland", "NL"),
        ("  The Netherlands ", "NL"),
        ("NL", "NL"),
        ("België", "BE"),
        ("Belgie", "BE"),
        ("Belgium", "BE"),
        ("Duitsland", "DE"),
        ("Germany", "DE"),
        ("Verenigd Koninkrijk", "GB"),
        ("UK", "GB"),
        ("Holland", "NL"),
    ],
)
def test_countries_resolve_from_codes_and_dutch_or_english_names(text: str, code: str) -> None:
    assert resolve_country(text) == code


def test_unknown_country_suggests_the_nearest_name() -> None:
    with pytest.raises(errors.UnknownCountry) as info:
        resolve_country("Nederlnd", field="from_country")
    assert info.value.suggestion == "Nederland"
    assert "from_country" in str(info.value)
    with pytest.raises(errors.UnknownCountry) as info:
        resolve_country("Atlantis")
    assert info.value.suggestion is None


def test_country_names_in_both_languages() -> None:
    assert country_name("DE", "nl") == "Duitsland"
    assert country_name("DE", Language.EN) == "Germany"


def test_reasons_resolve_by_code_or_label_in_either_language() -> None:
    catalogue = ReasonCatalogue()
    assert catalogue.resolve("damaged").code == "damaged"
    assert catalogue.resolve("product beschadigd").code == "damaged"
    assert catalogue.resolve("Verkeerd product verzonden").code == "wrong_product_sent"
    assert catalogue.resolve("Too small").code == "too_small"
    assert catalogue.resolve("other").needs_text
    assert "te klein" in catalogue
    assert 3 not in catalogue
    assert catalogue.resolve("damaged").label("en") == "Product damaged"


def test_unknown_reason_suggests_one() -> None:
    with pytest.raises(errors.UnknownReason) as info:
        ReasonCatalogue().resolve("Product beschadigt")
    assert info.value.suggestion == "Product beschadigd"


def test_merchants_add_their_own_reasons_but_not_twice() -> None:
    catalogue = ReasonCatalogue().with_reasons(Reason("allergy", "Allergie", "Allergic reaction"))
    assert catalogue.resolve("Allergie").code == "allergy"
    with pytest.raises(errors.InvalidInput, match="twice"):
        catalogue.with_reasons(Reason("allergy2", "Allergie", "Allergy"))
    with pytest.raises(errors.InvalidInput, match="lower_snake_case"):
        ReasonCatalogue((Reason("Bad Code", "x", "y"),))


# -- the parts of a request ----------------------------------------------------------------


def test_items_validate_quantity_and_text() -> None:
    with pytest.raises(errors.InvalidInput, match="quantity"):
        ReturnItem("A", "B", 0, Money(1), "damaged")
    with pytest.raises(errors.InvalidInput, match="quantity"):
        ReturnItem("A", "B", True, Money(1), "damaged")
    with pytest.raises(errors.InvalidInput, match="sku: must not be empty"):
        ReturnItem(" ", "B", 1, Money(1), "damaged")
    with pytest.raises(errors.InvalidInput, match="control characters"):
        ReturnItem("A", "B\x00", 1, Money(1), "damaged")
    with pytest.raises(errors.InvalidInput, match="longer than"):
        ReturnItem("A", "B" * 301, 1, Money(1), "damaged")
    with pytest.raises(errors.InvalidInput, match="must be text"):
        ReturnItem("A", 5, 1, Money(1), "damaged")  # type: ignore[arg-type]
    assert ReturnItem("A", "B", 3, Money(200), "damaged").value == Money(600)


@pytest.mark.parametrize(
    "address",
    [
        "jan@x.nl\n",
        "jan@x\x00.nl",
        "<jan@x.nl>",
        "jan@x.nl, piet@y.nl",
        '"jan"@x.nl',
        "jan@localhost",
        "jan@@x.nl",
        "jan @x.nl",
    ],
)
def test_addresses_a_mail_cannot_carry_are_refused_at_the_door(address: str) -> None:
    with pytest.raises(errors.InvalidInput, match="e-mail"):
        Customer(address, "Jan")


def test_customer_repr_hides_personal_data_and_email_is_checked() -> None:
    customer = Customer("jan@example.nl", "Jan Jansen", "en")
    assert "jan@" not in repr(customer)
    assert "Jansen" not in repr(customer)
    with pytest.raises(errors.InvalidInput, match="e-mail") as info:
        Customer("not-an-address", "Jan")
    assert "not-an-address" not in str(info.value)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"customer": "jan@example.nl"}, "customer"),
        ({"order_value": 5995}, "order_value"),
        ({"tags": frozenset({"a", 1})}, "tags"),
        ({"tags": frozenset(f"t{i}" for i in range(51))}, "tags"),
        ({"return_method": "x" * 101}, "return_method"),
        ({"order_number": "1001\n"}, "order_number"),
        ({"id": "req\t1"}, "id"),
        ({"carrier": "DHL\r\n"}, "carrier"),
        ({"label": "label.pdf"}, "label"),
    ],
)
def test_hostile_or_mistyped_fields_are_refused_by_name(
    changes: dict[str, object], field: str
) -> None:
    with pytest.raises((errors.InvalidInput, TypeError)) as info:
        make_request(**changes)
    assert field in str(info.value)


def test_item_prices_must_be_money() -> None:
    with pytest.raises(TypeError, match="unit_price"):
        ReturnItem("A", "B", 1, 1995, "damaged")  # type: ignore[arg-type]


def test_request_needs_items_one_currency_and_known_country() -> None:
    with pytest.raises(errors.InvalidInput, match="at least one item"):
        make_request(items=())
    with pytest.raises(errors.CurrencyMismatch, match="items"):
        make_request(items=(ReturnItem("A", "B", 1, Money(1, "USD"), "damaged"),))
    with pytest.raises(errors.CurrencyMismatch, match="return_fee"):
        make_request(return_fee=PaidFee(Money(1, "USD"), "p"))
    with pytest.raises(errors.UnknownCountry):
        make_request(from_country="XX")
    with pytest.raises(errors.InvalidInput, match="timezone-aware"):
        make_request(created_at=dt.datetime(2026, 1, 1))  # noqa: DTZ001


def test_request_derives_values() -> None:
    request = make_request(
        items=(
            ReturnItem("A", "B", 2, Money(1000), "damaged"),
            ReturnItem("C", "D", 1, Money(500), "too_large"),
        )
    )
    assert request.return_value == Money(2500)
    assert request.refund_due == Money(495)
    assert make_request(return_fee=None).refund_due == Money(0)


# -- lifecycle -----------------------------------------------------------------------------


STAFF = Actor.staff("s-1")
S = Actor.staff("s")

COMMANDS = {
    "approve_with_label": lambda r: r.approve(
        with_label=True, refund_return_fee=False, actor=STAFF, at=NOW
    ),
    "approve_without_label": lambda r: r.approve(
        with_label=False, refund_return_fee=False, actor=STAFF, at=NOW
    ),
    "reject": lambda r: r.reject(reason="Buiten termijn", actor=STAFF, at=NOW),
    "cancel": lambda r: r.cancel(actor=CUSTOMER, at=NOW),
    "mark_received": lambda r: r.mark_received(actor=STAFF, at=NOW),
    "complete": lambda r: r.complete(actor=STAFF, at=NOW),
}


@pytest.mark.parametrize("status", list(Status))
@pytest.mark.parametrize("command", list(COMMANDS))
def test_only_the_transition_table_moves_a_request(status: Status, command: str) -> None:
    request = attrs.evolve(make_request(), status=status)
    row = next(t for t in TRANSITIONS if t.command == command)
    if status in row.sources:
        change = COMMANDS[command](request)
        assert change.request.status is row.target
        assert change.request.history[-1].command == command
        assert len(change.request.history) == len(request.history) + 1
    else:
        with pytest.raises(errors.TransitionNotAllowed) as info:
            COMMANDS[command](request)
        assert (info.value.request_id, info.value.status, info.value.command) == (
            "req-1",
            status.value,
            command,
        )


def test_final_statuses_are_final() -> None:
    finals = {s for s in Status if s.is_final}
    assert finals == {
        Status.APPROVED_WITHOUT_RETURN,
        Status.REJECTED,
        Status.CANCELLED,
        Status.COMPLETED,
    }


def test_submitting_twice_is_refused() -> None:
    with pytest.raises(errors.TransitionNotAllowed):
        make_request().submitted()


def test_approve_with_label_owes_a_label_and_refund_when_asked() -> None:
    change = make_request().approve(with_label=True, refund_return_fee=True, actor=S, at=NOW)
    assert [e.kind for e in change.effects] == [EffectKind.REFUND, EffectKind.CREATE_LABEL]
    assert change.effects[0].key == Effect.refund("shop-1", "req-1").key
    assert change.effects[1].key == label_key("shop-1", "req-1") == change.request.label_key


def test_approve_without_label_mails_and_refunds_only_when_asked() -> None:
    change = make_request().approve(with_label=False, refund_return_fee=False, actor=S, at=NOW)
    assert [e.key for e in change.effects] == [
        Effect.send_mail("shop-1", "req-1", MailKind.APPROVED_WITHOUT_RETURN).key
    ]


def test_reject_needs_a_reason_and_refunds_a_paid_fee() -> None:
    request = make_request()
    for empty in ("", "   "):
        with pytest.raises(errors.InvalidInput, match="reject reason is required"):
            request.reject(reason=empty, actor=S, at=NOW)
    with pytest.raises(errors.InvalidInput, match="2000"):
        request.reject(reason="x" * 2001, actor=S, at=NOW)
    change = request.reject(reason="  Buiten de termijn ", actor=S, at=NOW)
    assert change.request.reject_reason == "Buiten de termijn"
    assert {e.key for e in change.effects} == {
        Effect.send_mail("shop-1", "req-1", MailKind.REJECTED).key,
        Effect.refund("shop-1", "req-1").key,
    }
    unpaid = make_request(return_fee=None).reject(reason="Nee", actor=S, at=NOW)
    assert [e.kind for e in unpaid.effects] == [EffectKind.MAIL]


def test_cancel_after_approval_voids_the_label_and_refunds() -> None:
    approved = make_request().approve(with_label=True, refund_return_fee=False, actor=S, at=NOW)
    change = approved.request.cancel(actor=CUSTOMER, at=NOW)
    assert [e.key for e in change.effects] == [
        Effect.void_label("shop-1", "req-1").key,
        Effect.refund("shop-1", "req-1").key,
        Effect.send_mail("shop-1", "req-1", MailKind.CANCELLED).key,
    ]
    assert change.effects[0].label_key == approved.request.label_key
    assert change.effects[-1].mail is MailKind.CANCELLED


def test_refunds_never_exceed_the_paid_fee() -> None:
    request = make_request()
    key = Effect.refund("shop-1", "req-1").key
    once = request.with_refund(RefundRecord(key, Money(495), "re_1", NOW))
    assert once.refunded == Money(495)
    assert once.refund_due == Money(0)
    with pytest.raises(errors.InvalidInput, match="exceeds"):
        once.with_refund(RefundRecord(key, Money(1), "re_2", NOW))
    with pytest.raises(errors.InvalidInput, match="exceeds"):
        request.with_refund(RefundRecord(key, Money(0), "re_2", NOW))


def test_attention_flags_and_decider() -> None:
    request = make_request()
    assert request.decided_by is None
    flagged = request.with_attention(f"{request.label_key}: refused")
    assert flagged.needs_attention
    resolved = flagged.resolve_attention(actor=Actor.staff("staff-7"), at=NOW)
    assert resolved.effects == ()
    assert not resolved.request.needs_attention
    assert resolved.request.status is flagged.status
    last = resolved.request.history[-1]
    assert (last.command, str(last.actor)) == ("resolve_attention", "staff:staff-7")
    approved = request.approve(
        with_label=True, refund_return_fee=False, actor=Actor.staff("s-7"), at=NOW
    )
    assert approved.request.decided_by == Actor.staff("s-7")
    (label_effect,) = approved.effects
    made = approved.request.label_created(label_effect, Label("PostNL", "3S", b"x"), at=NOW)
    assert made.request.label is not None
    assert [e.kind for e in made.effects] == [EffectKind.MAIL]
    assert made.request.history[-1].effect == label_effect.key


def test_decisions_order_by_strictness() -> None:
    ordered = sorted(Decision, key=lambda d: d.strictness, reverse=True)
    assert ordered == [
        Decision.NOT_RETURNABLE,
        Decision.REJECT,
        Decision.REVIEW,
        Decision.APPROVE_WITH_LABEL,
        Decision.APPROVE_WITHOUT_LABEL,
    ]


# -- errors and serialisation --------------------------------------------------------------


@pytest.mark.parametrize(
    "error",
    [
        errors.TransitionNotAllowed(request_id="r", status="rejected", command="approve"),
        errors.UnknownCountry("Atlantis", suggestion=None, field="from_country"),
        errors.ConcurrentModification(request_id="r", expected=1, actual=2),
        errors.NotFound(shop_id="s", request_id="r"),
        errors.NotFound(shop_id="s", request_id="k.png", what="photo"),
        errors.IdempotencyKeyTaken(shop_id="s", request_id="r", key="k"),
        errors.LeaseLost(request_id="r", key="label:r", owner="w1"),
        errors.IdempotencyConflict(key="k", command="approve"),
        errors.ReturnWindowExpired(order_number="1", deadline="2026-01-01", days=30),
        errors.ReturnRefused(((0, "Niet retourneerbaar"), (None, "Geen retour"))),
        errors.InvalidInput("bad", field="x"),
    ],
)
def test_errors_pickle_with_their_data(error: errors.RetouraanvraagError) -> None:
    copy = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own object
    assert type(copy) is type(error)
    assert str(copy) == str(error)
    assert copy.__dict__ == error.__dict__


@given(requests())
def test_requests_round_trip_through_json(request: ReturnRequest) -> None:
    assert request_from_json(request_to_json(request)) == request


def test_corrupt_json_is_a_clear_error() -> None:
    with pytest.raises(errors.InvalidInput, match="not a valid return request"):
        request_from_json('{"shop_id": 1}')
    with pytest.raises(errors.InvalidInput):
        request_from_json("[")


@given(st.text(max_size=30))
def test_money_parse_never_raises_anything_but_invalid_money(text: str) -> None:
    with contextlib.suppress(errors.InvalidMoney):
        Money.parse(text)


@given(st.text(st.characters(exclude_categories=()), max_size=40))
def test_the_control_character_check_is_unicodes_categories_cc_and_cs(text: str) -> None:
    assert bool(model._CONTROL.search(text)) == any(
        unicodedata.category(c) in {"Cc", "Cs"} for c in text
    )
    assert bool(model._CONTROL_BUT_LINES.search(text)) == any(
        unicodedata.category(c) in {"Cc", "Cs"} and c not in "\n\t" for c in text
    )
