"""Shop settings: one value, one zone check, read alike by the policy, the rules and the mails."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import zoneinfo
from collections.abc import Callable

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from retouraanvraag import (
    DEFAULT_REJECT_REASONS,
    IdempotencyConflict,
    InvalidInput,
    MailKind,
    Policy,
    Reason,
    ReasonCatalogue,
    ShopSettings,
    UnknownReason,
    rules,
    time_zone,
)
from retouraanvraag.adapters import MemoryStorage
from retouraanvraag.mail import MailNotRenderable, MailRenderer
from retouraanvraag.model import Money, Status
from retouraanvraag.testing import FixedClock
from retouraanvraag.workflow import NewItem

from .conftest import SHOP, build_world

AMSTERDAM = ShopSettings(name="Fietsenwinkel", sender="retouren@fiets.example")


# -- the one zone check -----------------------------------------------------------------------

NOT_ZONES = [
    "",
    " ",
    "UTC+3",  # POSIX: three hours behind UTC, the opposite of what it reads as
    "EST5EDT,M3.2.0,M11.1.0",
    "localtime",  # the server's own zone
    "Factory",
    "posixrules",
    "europe/amsterdam ",
    "Europe/Amsterdm",
    "../../etc/passwd",
    "Europe/Amsterdam\n",
    "x" * 10_000,
    "Mars/Olympus",
]


@pytest.mark.parametrize("name", NOT_ZONES)
def test_every_reader_refuses_the_same_zones(name: str) -> None:
    # The policy, the settings, the rule parser, the condition compiler and the mail
    # renderer all ask shop.time_zone: none of them takes a zone another refuses.
    attempts: list[Callable[[], object]] = [
        lambda: time_zone(name),
        lambda: ShopSettings(timezone=name),
        lambda: Policy(timezone=name),
        lambda: rules.parse("ALS Van land IS Nederland DAN Retourkosten 0", timezone=name),
        lambda: rules.compile_condition("Van land IS Nederland", timezone=name),
        lambda: MailRenderer(sender="a@shop.example", shop_name="Shop", timezone=name),
    ]
    for attempt in attempts:
        with pytest.raises(InvalidInput, match="unknown IANA time zone") as caught:
            attempt()
        assert caught.value.field == "timezone"
        assert "x" * 100 not in str(caught.value)  # a long value is not echoed


@pytest.mark.parametrize("value", [None, 3, b"Europe/Amsterdam", ["Europe/Amsterdam"]])
def test_a_zone_that_is_not_text_is_refused(value: object) -> None:
    with pytest.raises(InvalidInput, match="unknown IANA time zone"):
        time_zone(value)


@given(st.sampled_from(sorted(zoneinfo.available_timezones() - {"localtime", "Factory"})))
def test_every_place_of_the_zone_database_is_taken(name: str) -> None:
    assert time_zone(name) == zoneinfo.ZoneInfo(name)
    assert ShopSettings(timezone=name).zone == zoneinfo.ZoneInfo(name)


def test_the_policy_works_without_a_system_zone_database() -> None:
    # tzdata is a dependency: an empty zone path (Windows, slim containers) still has zones.
    program = (
        "import datetime as dt, retouraanvraag as r\n"
        "p = r.Policy(timezone='Europe/Amsterdam')\n"
        "late = dt.datetime(2026, 3, 28, 23, 30, tzinfo=dt.UTC)\n"
        "print(p.deadline(late, 1))\n"
    )
    done = subprocess.run(  # noqa: S603 - this interpreter, a fixed program
        [sys.executable, "-c", program],
        env={**os.environ, "PYTHONTZPATH": ""},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "2026-03-30"  # 00:30 on the 29th in Amsterdam, plus a day


# -- the settings value -------------------------------------------------------------------------


def test_settings_check_every_field_and_name_it() -> None:
    cases: list[tuple[dict[str, object], str]] = [
        ({"name": ""}, "name"),
        ({"name": "Shop\r\nBcc: x@evil.example"}, "name"),
        ({"name": "x" * 201}, "name"),
        ({"sender": "not an address"}, "sender"),
        ({"sender": "a@shop.example, b@evil.example"}, "sender"),
        ({"sender": "Shop <a@shop.example>\nBcc: b@evil.example"}, "sender"),
        ({"sender": "=?utf-8?q?x?=@shop.example"}, "sender"),
        ({"currency": "EURO"}, "currency"),
        ({"language": "de"}, "language"),
        ({"timezone": "UTC+3"}, "timezone"),
    ]
    for changes, field in cases:
        with pytest.raises(InvalidInput) as caught:
            ShopSettings(**changes)  # type: ignore[arg-type]
        assert caught.value.field == field, changes


def test_settings_have_the_preset_reject_reasons_and_take_the_merchants_own() -> None:
    assert ShopSettings().reject_reasons.reasons == DEFAULT_REJECT_REASONS
    own = ShopSettings(reject_reasons=(Reason("seal_broken", "Zegel verbroken", "Seal broken"),))
    assert own.reject_reason("Seal broken").code == "seal_broken"
    assert own.reject_reason("zegel verbroken").code == "seal_broken"
    with pytest.raises(UnknownReason) as caught:
        own.reject_reason("seal brokn")
    assert caught.value.suggestion == "Seal broken"


def test_a_preset_reject_reason_reaches_the_customer_in_their_language() -> None:
    world = build_world(MemoryStorage())
    used = AMSTERDAM.reject_reason("used")
    dutch = world.desk.submit(world.new_request())
    english = world.desk.submit(
        world.new_request(customer=attrs.evolve(world.new_request().customer, language="en"))
    )
    for request, expected in ((dutch, used.nl), (english, used.en)):
        rejected = world.desk.reject(SHOP, request.id, reason=used, actor="anna")
        assert rejected.status is Status.REJECTED
        assert rejected.reject_reason == expected
    world.dispatcher.run_until_idle()
    mails = [m for _, m in world.mail.sent if m.kind is MailKind.REJECTED]
    assert {m.language for m in mails} == {"nl", "en"}
    assert any(used.nl in m.text for m in mails)
    assert any(used.en in m.text for m in mails)


def test_a_retried_preset_rejection_is_the_same_command() -> None:
    world = build_world(MemoryStorage())
    request = world.desk.submit(world.new_request())
    used = AMSTERDAM.reject_reason("used")
    first = world.desk.reject(SHOP, request.id, reason=used, actor="anna", idempotency_key="k")
    again = world.desk.reject(SHOP, request.id, reason=used, actor="anna", idempotency_key="k")
    assert again == first
    other = AMSTERDAM.reject_reason("incomplete")
    with pytest.raises(IdempotencyConflict):  # other arguments under the same key
        world.desk.reject(SHOP, request.id, reason=other, actor="anna", idempotency_key="k")


# -- the policy and the rules read the same value -------------------------------------------------


def test_policy_reads_the_shop_and_refuses_settings_given_twice() -> None:
    shop = ShopSettings(timezone="America/New_York")
    policy = Policy(shop=shop)
    assert policy.timezone == "America/New_York"
    assert policy.reasons is shop.reasons
    with pytest.raises(InvalidInput) as caught:
        Policy(shop=shop, timezone="Europe/Amsterdam")
    assert caught.value.field == "timezone"
    with pytest.raises(InvalidInput) as caught:
        Policy(shop=shop, reasons=ReasonCatalogue())
    assert caught.value.field == "reasons"
    assert attrs.evolve(policy, return_window_days=14).shop is shop


def test_rules_parsed_for_another_zone_are_refused_by_the_policy() -> None:
    text = "ALS Dagen sinds levering IS GROTER DAN 20 DAN Retourkosten 5"
    shop = ShopSettings(timezone="Pacific/Auckland")
    with pytest.raises(InvalidInput, match="Pacific/Auckland") as caught:
        Policy(shop=shop, rules=rules.parse(text))
    assert caught.value.field == "rules"
    policy = Policy(shop=shop, rules=rules.parse(text, shop=shop))
    assert policy.rules is not None


def test_the_rule_parser_takes_reasons_zone_and_currency_from_the_shop() -> None:
    shop = ShopSettings(
        timezone="Europe/London",
        currency="GBP",
        reasons=ReasonCatalogue().with_reasons(Reason("signed", "Gesigneerd", "Signed copy")),
    )
    ruleset = rules.parse('IF Return reason IS "Signed copy" THEN Unable to return item', shop=shop)
    assert ruleset.timezone == "Europe/London"
    fee = rules.parse("IF Order value IS GREATER THAN 100 THEN Return fee 5", shop=shop)
    assert fee.timezone == "Europe/London"
    for name, value in (("reasons", ReasonCatalogue()), ("timezone", "UTC"), ("currency", "EUR")):
        with pytest.raises(InvalidInput) as caught:
            rules.parse("ALS Van land IS Nederland DAN Retourkosten 0", shop=shop, **{name: value})  # type: ignore[arg-type]
        assert caught.value.field == name
    with pytest.raises(InvalidInput):
        rules.compile_condition("Van land IS Nederland", shop=shop, currency="EUR")


# -- one renderer, many shops ---------------------------------------------------------------------


def test_one_dispatcher_sends_each_shops_mails_with_its_own_branding() -> None:
    shops = {
        SHOP: ShopSettings(name="Voorbeeldshop", sender="retouren@shop.example"),
        "boeken": ShopSettings(
            name="Boekhandel De Vries",
            sender="Klantenservice <klanten@boeken.example>",
            timezone="Pacific/Kiritimati",  # UTC+14: the request date moves a day
        ),
    }
    world = build_world(MemoryStorage())
    dispatcher = world.make_dispatcher(renderer=MailRenderer(shops=shops))
    late = world.clock.advance(dt.timedelta(hours=11))  # 23:00 UTC
    here = world.desk.submit(world.new_request())
    there = world.desk.submit(world.new_request(shop_id="boeken"))
    dispatcher.run_until_idle()
    sent = {m.request_id: m for _, m in world.mail.sent}
    assert sent[here.id].sender == "Voorbeeldshop <retouren@shop.example>"
    assert sent[there.id].sender == "Boekhandel De Vries <klanten@boeken.example>"
    assert sent[there.id].message_id.endswith("@boeken.example>")
    assert "Boekhandel De Vries" in sent[there.id].text
    local_day = late.astimezone(zoneinfo.ZoneInfo("Pacific/Kiritimati")).day
    assert local_day != late.day
    assert str(local_day) in sent[there.id].text


def test_a_renderer_with_a_function_of_the_shop_id() -> None:
    renderer = MailRenderer(shops=lambda _shop_id: AMSTERDAM)
    assert renderer.sender_for("any") == "Fietsenwinkel <retouren@fiets.example>"
    with pytest.raises(InvalidInput, match="sender_for"):
        _ = renderer.sender
    assert MailRenderer(shops=AMSTERDAM).sender == "Fietsenwinkel <retouren@fiets.example>"


def test_a_shop_the_renderer_does_not_know_needs_attention_not_a_crash() -> None:
    world = build_world(MemoryStorage())
    renderer = MailRenderer(shops={SHOP: AMSTERDAM})
    dispatcher = world.make_dispatcher(renderer=renderer)
    stranger = world.desk.submit(world.new_request(shop_id="onbekend"))
    with pytest.raises(MailNotRenderable, match="onbekend"):
        renderer.sender_for("onbekend")
    dispatcher.run_until_idle()
    assert world.mail.sent == []
    assert world.storage.get("onbekend", stranger.id).needs_attention


def test_renderer_settings_are_checked_at_start_and_named() -> None:
    with pytest.raises(InvalidInput) as caught:
        MailRenderer(shops={"a": AMSTERDAM, "b": ShopSettings(name="B")})
    assert caught.value.field == "shops['b'].sender"
    with pytest.raises(InvalidInput) as caught:
        MailRenderer(shops={"a": AMSTERDAM}, sender="x@shop.example")
    assert caught.value.field == "shops"
    with pytest.raises(InvalidInput) as caught:
        MailRenderer()
    assert caught.value.field == "shops"
    with pytest.raises(InvalidInput) as caught:
        MailRenderer(sender="x@shop.example", shop_name="Shop\nBcc: y@evil.example")
    assert caught.value.field == "shop_name"
    with pytest.raises(InvalidInput):
        MailRenderer(shops={"a": "retouren@fiets.example"})  # type: ignore[dict-item]


def test_dates_in_mails_follow_the_shop_zone_across_dst() -> None:
    # 2026-03-29 01:30 UTC is 03:30 summer time in Amsterdam, 2026-03-28 in New York.
    moment = dt.datetime(2026, 3, 29, 1, 30, tzinfo=dt.UTC)
    world = build_world(MemoryStorage())
    world.clock = FixedClock(moment)
    world.use_policy(Policy(return_window_days=None))
    request = world.desk.submit(
        world.new_request(
            ordered_at=moment - dt.timedelta(days=3), delivered_at=moment - dt.timedelta(days=1)
        )
    )
    for zone, day in (("Europe/Amsterdam", "29"), ("America/New_York", "28")):
        renderer = MailRenderer(shops=attrs.evolve(AMSTERDAM, timezone=zone))
        mail = renderer.render(request, MailKind.REQUEST_RECEIVED, key="k")
        assert f"{day} maart 2026" in mail.text, zone


def test_a_rendered_mail_says_whose_it_is() -> None:
    world = build_world(MemoryStorage())
    request = world.desk.submit(world.new_request())
    mail = MailRenderer(shops=AMSTERDAM).render(request, MailKind.REQUEST_RECEIVED, key="k")
    assert (mail.shop_id, mail.request_id) == (SHOP, request.id)


def test_a_tab_filter_reads_a_plain_amount_in_the_shops_currency() -> None:
    dollars = ShopSettings(currency="USD", timezone="America/New_York")
    world = build_world(MemoryStorage(), Policy(shop=dollars))
    item = NewItem("TS-1", "T-shirt", 1, Money(1995, "USD"), "too_small")
    request = world.desk.submit(
        world.new_request(order_value=Money(5995, "USD"), items=(item,), return_fee=None)
    )
    listed = world.desk.requests_tab(SHOP, rule="Bestelwaarde > 50")
    assert [r.id for r in listed.items] == [request.id]  # $59.95 > $50, not €50
    assert world.desk.requests_tab(SHOP, rule="Bestelwaarde > 60").items == ()
