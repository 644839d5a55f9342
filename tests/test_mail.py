from __future__ import annotations

import copy
import datetime as dt
import html
from email import message_from_bytes, policy
from email.message import EmailMessage

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from retouraanvraag.errors import InvalidInput
from retouraanvraag.mail import (
    PLACEHOLDERS,
    MailNotRenderable,
    MailRenderer,
    MailTemplate,
    TemplateError,
    default_template,
    envelope_sender,
    message_bytes,
    message_id_for,
    to_email_message,
)
from retouraanvraag.mail._headers import split_mailbox
from retouraanvraag.model import (
    Customer,
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
)
from retouraanvraag.ports import Attachment, Mail

TIMES = "\N{MULTIPLICATION SIGN}"
NBSP = "\N{NO-BREAK SPACE}"  # Babel puts one between € and the amount in Dutch
CREATED = dt.datetime(2026, 2, 28, 23, 30, tzinfo=dt.UTC)  # 1 March in Amsterdam
LABEL = Label("PostNL", "3SABCD1234567", b"%PDF-1.4 label", "application/pdf", "retourlabel.pdf")


def make_request(language: str = "nl", /, **changes: object) -> ReturnRequest:
    request = ReturnRequest(
        shop_id="shop-1",
        id="req-1",
        order_number="1001",
        customer=Customer("jan@example.nl", "Jan Jansen", language),
        from_country="NL",
        order_value=Money(9995),
        items=(
            ReturnItem("TS-1", "T-shirt", 2, Money(1995), "too_small"),
            ReturnItem(
                "BK-1", "Bank", 1, Money(4995), "other", reason_text="Past niet\nin de kamer"
            ),
        ),
        created_at=CREATED,
    )
    return attrs.evolve(request, **changes)  # type: ignore[arg-type]


@pytest.fixture
def renderer() -> MailRenderer:
    return MailRenderer(sender="retouren@shop.example", shop_name="Voorbeeldshop")


def render(renderer: MailRenderer, kind: MailKind, language: str = "nl", **changes: object) -> Mail:
    return renderer.render(make_request(language, **changes), kind, key=f"mail:req-1:{kind}")


# -- every kind, both languages ---------------------------------------------------------------

READY: dict[MailKind, dict[str, object]] = {
    MailKind.REQUEST_RECEIVED: {},
    MailKind.LABEL_CREATED: {"label": LABEL, "status": Status.APPROVED},
    MailKind.APPROVED_WITHOUT_RETURN: {"status": Status.APPROVED_WITHOUT_RETURN},
    MailKind.REJECTED: {"reject_reason": "Buiten de retourtermijn", "status": Status.REJECTED},
    MailKind.CANCELLED: {"status": Status.CANCELLED},
}


@pytest.mark.parametrize("language", ["nl", "en"])
@pytest.mark.parametrize("kind", list(MailKind))
def test_every_kind_renders_in_both_languages(
    renderer: MailRenderer, kind: MailKind, language: str
) -> None:
    mail = render(renderer, kind, language, **READY[kind])
    assert "1001" in mail.subject
    assert mail.kind is kind
    assert mail.language == language
    assert mail.to == "jan@example.nl"
    assert mail.request_id == "req-1"
    assert mail.sender == "Voorbeeldshop <retouren@shop.example>"
    greeting = "Beste Jan Jansen," if language == "nl" else "Dear Jan Jansen,"
    assert mail.text.startswith(greeting)
    assert mail.text.rstrip().endswith("Voorbeeldshop")
    assert "\n\n\n" not in mail.text
    assert "$" not in mail.text
    assert "$" not in mail.html
    assert f'<html lang="{language}">' in mail.html
    assert "<p>Beste Jan Jansen,</p>" in mail.html or "<p>Dear Jan Jansen,</p>" in mail.html


def test_request_received_lists_items_with_reason_labels_and_amounts(
    renderer: MailRenderer,
) -> None:
    nl = render(renderer, MailKind.REQUEST_RECEIVED)
    assert nl.subject == "We hebben je retouraanvraag ontvangen (bestelling 1001)"
    assert f"- 2 {TIMES} T-shirt — Te klein — €{NBSP}39,90" in nl.text
    assert f"- 1 {TIMES} Bank — Anders: Past niet in de kamer — €{NBSP}49,95" in nl.text
    assert f"Totale waarde: €{NBSP}89,85" in nl.text
    assert "op 1 maart 2026 ontvangen" in nl.text
    assert "<td>Te klein</td>" in nl.html
    en = render(renderer, MailKind.REQUEST_RECEIVED, "en")
    assert f"- 2 {TIMES} T-shirt — Too small — €39.90" in en.text
    assert "Total value: €89.85" in en.text
    assert "received it on 1 March 2026" in en.text


def test_dates_follow_the_configured_time_zone() -> None:
    renderer = MailRenderer(
        sender="retouren@shop.example", shop_name="Shop", timezone="America/New_York"
    )
    mail = render(renderer, MailKind.REQUEST_RECEIVED)
    assert "op 28 februari 2026 ontvangen" in mail.text


def test_label_created_attaches_the_label_and_names_carrier_and_tracking(
    renderer: MailRenderer,
) -> None:
    mail = render(renderer, MailKind.LABEL_CREATED, "nl", label=LABEL, status=Status.APPROVED)
    assert mail.subject == "Label aangemaakt: je retour voor bestelling 1001"
    assert mail.attachments == (
        Attachment("retourlabel.pdf", "application/pdf", b"%PDF-1.4 label"),
    )
    for body in (mail.text, mail.html):
        assert "PostNL" in body
        assert "3SABCD1234567" in body


def test_label_created_without_a_label_is_a_clear_error(renderer: MailRenderer) -> None:
    with pytest.raises(MailNotRenderable, match="req-1: a label-created mail needs") as caught:
        render(renderer, MailKind.LABEL_CREATED)
    assert caught.value.field == "label"
    assert isinstance(caught.value, InvalidInput)


def test_rejected_shows_the_reason_and_the_automatic_fee_refund(renderer: MailRenderer) -> None:
    fee = PaidFee(Money(495), "pay-1")
    mail = render(
        renderer,
        MailKind.REJECTED,
        reject_reason="Gedragen & gewassen\nNiet meer verkoopbaar",
        return_fee=fee,
        status=Status.REJECTED,
    )
    assert "Gedragen & gewassen\nNiet meer verkoopbaar" in mail.text
    assert "Gedragen &amp; gewassen<br>\nNiet meer verkoopbaar" in mail.html
    assert (
        f"De retourkosten van €{NBSP}4,95 die je hebt betaald, betalen we aan je terug."
        in mail.text
    )
    assert mail.attachments == ()


def test_rejected_without_a_reason_is_a_clear_error(renderer: MailRenderer) -> None:
    with pytest.raises(MailNotRenderable, match="reject reason"):
        render(renderer, MailKind.REJECTED)


def test_a_done_refund_is_mentioned_with_its_amount(renderer: MailRenderer) -> None:
    fee = PaidFee(Money(495), "pay-1")
    refund = RefundRecord("refund:req-1", Money(495), "re_1", CREATED)
    mail = render(
        renderer,
        MailKind.APPROVED_WITHOUT_RETURN,
        "en",
        return_fee=fee,
        refunds=(refund,),
    )
    assert "We have refunded the return fee of €4.95 to you." in mail.text
    assert "<p>We have refunded the return fee of €4.95 to you.</p>" in mail.html
    assert "do not need to send the items back" in mail.text


def test_approval_without_a_refund_says_nothing_about_the_fee(renderer: MailRenderer) -> None:
    mail = render(
        renderer, MailKind.APPROVED_WITHOUT_RETURN, return_fee=PaidFee(Money(495), "pay-1")
    )
    assert "retourkosten" not in mail.text
    assert "hoeft de artikelen niet terug te sturen" in mail.text


def test_request_received_explains_a_paid_fee(renderer: MailRenderer) -> None:
    mail = render(renderer, MailKind.REQUEST_RECEIVED, return_fee=PaidFee(Money(495), "pay-1"))
    assert f"Je hebt €{NBSP}4,95 aan retourkosten betaald." in mail.text


def test_cancelled_mentions_a_voided_label(renderer: MailRenderer) -> None:
    with_label = render(renderer, MailKind.CANCELLED, label=LABEL)
    assert "trackingnummer 3SABCD1234567 is ongeldig gemaakt" in with_label.text
    without = render(renderer, MailKind.CANCELLED)
    assert "ongeldig" not in without.text
    assert "is geannuleerd" in without.text


# -- escaping and headers ---------------------------------------------------------------------


def test_user_values_are_html_escaped(renderer: MailRenderer) -> None:
    evil = "<script>alert('x')</script>"
    request = make_request(
        customer=Customer("jan@example.nl", evil, "nl"),
        items=(ReturnItem("X", evil, 1, Money(100), "other", reason_text=evil),),
        reject_reason=evil,
    )
    for kind in (MailKind.REQUEST_RECEIVED, MailKind.REJECTED):
        mail = renderer.render(request, kind, key="k")
        assert "<script>" not in mail.html
        assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in mail.html
        assert evil in mail.text


@given(name=st.text(min_size=1, max_size=40).filter(lambda s: s.strip()))
def test_any_name_arrives_escaped_in_html_and_on_one_line_in_the_subject(name: str) -> None:
    template = attrs.evolve(
        default_template("nl", MailKind.REQUEST_RECEIVED), subject="Hoi $customer_name"
    )
    renderer = MailRenderer(
        sender="retouren@shop.example",
        shop_name="Shop",
        templates={("nl", MailKind.REQUEST_RECEIVED): template},
    )
    try:
        customer = Customer("jan@example.nl", name, "nl")
    except InvalidInput:
        return
    mail = renderer.render(make_request(customer=customer), MailKind.REQUEST_RECEIVED, key="k")
    assert html.escape(name).replace("\n", "<br>\n") in mail.html
    assert "\n" not in mail.subject
    assert "\r" not in mail.subject
    message = to_email_message(mail)
    assert message["Subject"] == mail.subject


def test_the_message_id_derives_from_shop_and_key_only(renderer: MailRenderer) -> None:
    first = render(renderer, MailKind.REQUEST_RECEIVED)
    again = renderer.render(
        make_request(order_number="other"),
        MailKind.REQUEST_RECEIVED,
        key="mail:req-1:request_received",
    )
    assert first.message_id == again.message_id
    assert first.message_id == message_id_for(
        "shop-1", "mail:req-1:request_received", "shop.example"
    )
    assert first.message_id.startswith("<")
    assert first.message_id.endswith("@shop.example>")
    other_key = renderer.render(make_request(), MailKind.REQUEST_RECEIVED, key="other")
    other_shop = renderer.render(
        make_request(shop_id="shop-2"), MailKind.REQUEST_RECEIVED, key="mail:req-1:request_received"
    )
    assert len({first.message_id, other_key.message_id, other_shop.message_id}) == 3


def test_reasons_come_from_the_shops_catalogue(renderer: MailRenderer) -> None:
    catalogue = ReasonCatalogue().with_reasons(Reason("smells", "Ruikt vreemd", "Smells odd"))
    shop = MailRenderer(sender="r@shop.example", shop_name="Shop", reasons=catalogue)
    request = make_request(items=(ReturnItem("X", "Kaas", 1, Money(100), "smells"),))
    assert "Ruikt vreemd" in shop.render(request, MailKind.REQUEST_RECEIVED, key="k").text
    assert "— smells —" in renderer.render(request, MailKind.REQUEST_RECEIVED, key="k").text


# -- templates --------------------------------------------------------------------------------


def test_a_host_template_replaces_the_default_for_its_language_and_kind() -> None:
    custom = MailTemplate(
        subject="Afgewezen: $order_number",
        text="Hoi $customer_name, helaas: $reject_reason. Kosten: $$0.\n$items\n$refund",
        html="<p>Hoi $customer_name: $reject_reason</p>$items$refund",
    )
    renderer = MailRenderer(
        sender="r@shop.example",
        shop_name="Shop",
        templates={(Language.NL, MailKind.REJECTED): custom},
    )
    mail = renderer.render(make_request(reject_reason="Te laat <echt>"), MailKind.REJECTED, key="k")
    assert mail.subject == "Afgewezen: 1001"
    assert mail.text.startswith(f"Hoi Jan Jansen, helaas: Te laat <echt>. Kosten: $0.\n- 2 {TIMES}")
    assert "<p>Hoi Jan Jansen: Te laat &lt;echt&gt;</p><table" in mail.html
    english = renderer.render(make_request("en", reject_reason="Late"), MailKind.REJECTED, key="k")
    assert english.subject.startswith("Your return request has been declined")


@pytest.mark.parametrize(
    ("template", "problem"),
    [
        (
            MailTemplate("Bestelling $ordernummer", "x", "x"),
            r"unknown placeholder\(s\) \$ordernummer",
        ),
        (MailTemplate("x", "Reden: $reject_reason", "x"), r"\$reject_reason"),
        (MailTemplate("x", "x", "Kosten: $5"), "malformed placeholder"),
        (MailTemplate("Items: $items", "x", "x"), r"\$items"),
        (MailTemplate("x", "${label_void", "x"), "malformed"),
    ],
)
def test_a_bad_host_template_fails_at_construction(template: MailTemplate, problem: str) -> None:
    with pytest.raises(TemplateError, match=problem) as caught:
        MailRenderer(
            sender="r@shop.example",
            shop_name="Shop",
            templates={("nl", MailKind.REQUEST_RECEIVED): template},
        )
    assert caught.value.field is not None
    assert caught.value.field.startswith("templates[nl,request_received].")


def test_templates_keyed_by_an_unknown_language_or_of_the_wrong_type_are_refused() -> None:
    good = default_template("nl", MailKind.CANCELLED)
    with pytest.raises(TemplateError, match="unknown language"):
        MailRenderer(
            sender="r@shop.example", shop_name="S", templates={("de", MailKind.CANCELLED): good}
        )
    with pytest.raises(TemplateError, match="must be a MailTemplate"):
        MailRenderer(
            sender="r@shop.example",
            shop_name="S",
            templates={("nl", MailKind.CANCELLED): "Hallo"},  # type: ignore[dict-item]
        )


def test_the_shipped_templates_use_only_their_kinds_placeholders() -> None:
    for language in Language:
        for kind in MailKind:
            template = default_template(language, kind)
            template.check(kind)
            assert "\n" not in template.subject
            assert set(PLACEHOLDERS[kind]) >= {"order_number", "customer_name", "shop_name"}


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"sender": "not an address", "shop_name": "S"}, "sender"),
        ({"sender": "a@b.nl\r\nBcc: c@d.nl", "shop_name": "S"}, "sender"),
        ({"sender": "a@-", "shop_name": "S"}, "sender"),
        ({"sender": "a@b.nl", "shop_name": " "}, "shop_name"),
        ({"sender": "a@b.nl", "shop_name": "Shop\nBcc: x"}, "shop_name"),
        ({"sender": "a@b.nl", "shop_name": "S", "timezone": "Mars/Olympus"}, "timezone"),
    ],
)
def test_bad_settings_are_refused(settings: dict[str, str], field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        MailRenderer(**settings)  # type: ignore[arg-type]
    assert caught.value.field == field


# -- the MIME message -------------------------------------------------------------------------


def test_the_message_is_text_and_html_alternatives(renderer: MailRenderer) -> None:
    mail = render(renderer, MailKind.REQUEST_RECEIVED)
    when = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
    message = to_email_message(mail, date=when)
    assert message.get_content_type() == "multipart/alternative"
    assert message["Date"] == "Sun, 01 Mar 2026 12:00:00 +0000"
    assert message["Content-Language"] == "nl"
    assert message["From"] == "Voorbeeldshop <retouren@shop.example>"
    assert message["Message-ID"] == mail.message_id
    plain, rich = message.iter_parts()
    assert isinstance(plain, EmailMessage)
    assert isinstance(rich, EmailMessage)
    assert plain.get_content() == mail.text
    assert rich.get_content_type() == "text/html"


def test_attachments_make_a_mixed_message(renderer: MailRenderer) -> None:
    mail = render(renderer, MailKind.LABEL_CREATED, label=LABEL)
    message = to_email_message(mail)
    assert message.get_content_type() == "multipart/mixed"
    assert message["Content-Language"] == "nl"
    (part,) = message.iter_attachments()
    assert isinstance(part, EmailMessage)
    assert part.get_filename() == "retourlabel.pdf"
    assert part.get_content() == b"%PDF-1.4 label"


def test_header_values_with_line_breaks_are_neutralised(renderer: MailRenderer) -> None:
    base = render(renderer, MailKind.LABEL_CREATED, label=LABEL)
    mail = attrs.evolve(
        base,
        subject="Hallo\r\nBcc: evil@example.com",
        language="nl\r\nX-Evil: 1",
        attachments=(Attachment("../../etc/passwd\r\nX-Evil: 1", "text/plain\r\nX: y", b"x"),),
    )
    message = to_email_message(mail)
    text = message.as_string()
    assert "\nBcc:" not in text
    assert "\nX-Evil:" not in text
    assert message["Subject"] == "Hallo Bcc: evil@example.com"
    (part,) = message.iter_attachments()
    assert part.get_filename() == "_.._etc_passwd X-Evil: 1"
    assert part.get_content_type() == "application/octet-stream"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"to": "a@b.nl\r\nBcc: c@d.nl"}, "to"),
        ({"to": "a@b.nl, c@d.nl"}, "to"),
        ({"to": "Jan <a@b.nl>"}, "to"),
        ({"sender": "Shop <not-an-address>"}, "sender"),
        ({"sender": 'Shop <"a b"@example.nl>'}, "sender"),
        ({"message_id": "no-brackets@x"}, "message_id"),
        ({"message_id": "<a@b>\r\nBcc: c@d.nl"}, "message_id"),
        ({"message_id": "<=?utf-8?q?a=0D=0ABcc:_c@d.nl?=@shop.example>"}, "message_id"),
        ({"to": "=?utf-8?q?a=0D=0AX-Evil=3A_1?=@example.nl"}, "to"),
        ({"to": "a\x00b@example.nl"}, "to"),
        ({"sender": "Shop <=?utf-8?q?x=0A?=@shop.example>"}, "sender"),
        ({"kind": "not_a_kind"}, "kind"),
    ],
)
def test_invalid_addresses_and_ids_are_refused(
    renderer: MailRenderer, changes: dict[str, str], field: str
) -> None:
    mail = attrs.evolve(render(renderer, MailKind.REQUEST_RECEIVED), **changes)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput) as caught:
        to_email_message(mail)
    assert caught.value.field == field


def test_the_envelope_sender_is_the_bare_address(renderer: MailRenderer) -> None:
    assert envelope_sender(render(renderer, MailKind.CANCELLED)) == "retouren@shop.example"


def test_an_empty_attachment_name_gets_a_default(renderer: MailRenderer) -> None:
    mail = attrs.evolve(
        render(renderer, MailKind.CANCELLED),
        attachments=(Attachment("..", "application/pdf", b"%PDF"),),
    )
    (part,) = to_email_message(mail).iter_attachments()
    assert part.get_filename() == "bijlage"


# -- headers the library writes itself --------------------------------------------------------


def parsed_back(mail: Mail) -> EmailMessage:
    data = message_bytes(to_email_message(mail), key="mail:req-1:x")
    message = message_from_bytes(data, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def test_a_non_ascii_shop_name_is_encoded_once_on_the_way_out() -> None:
    renderer = MailRenderer(sender="retouren@shop.example", shop_name="Anaïs & Zonen B.V.")
    mail = render(renderer, MailKind.REQUEST_RECEIVED)
    assert mail.sender == '"Anaïs & Zonen B.V." <retouren@shop.example>'
    data = message_bytes(to_email_message(mail), key="k")
    assert b"From: =?utf-8?b?" in data
    (sender,) = message_from_bytes(data, policy=policy.default)["From"].addresses
    assert (sender.display_name, sender.addr_spec) == (
        "Anaïs & Zonen B.V.",
        "retouren@shop.example",
    )


def test_a_long_shop_name_with_commas_and_brackets_stays_one_mailbox() -> None:
    # The stdlib drops the quotes of such a name when it folds it: two addresses would arrive.
    name = "Voorbeeldshop Amsterdam B.V., afdeling retouren <evil@attacker.example>, Noord"
    renderer = MailRenderer(sender="retouren@shop.example", shop_name=name)
    message = parsed_back(render(renderer, MailKind.CANCELLED))
    (sender,) = message["From"].addresses
    assert sender.addr_spec == "retouren@shop.example"
    assert "".join(sender.display_name.split()) == "".join(name.split())


def test_an_encoded_word_in_the_subject_arrives_as_the_text_typed() -> None:
    typed = "=?utf-8?q?1001=0D=0AReply-To:_evil@attacker.example?="
    mail = render(renderer_for_tests(), MailKind.REQUEST_RECEIVED, order_number=typed)
    assert mail.subject.endswith(
        "(bestelling = ?utf-8?q?1001=0D=0AReply-To:_evil@attacker.example?=)"
    )
    message = parsed_back(mail)
    assert message["Reply-To"] is None
    assert message["Subject"] == mail.subject


def renderer_for_tests() -> MailRenderer:
    return MailRenderer(sender="retouren@shop.example", shop_name="Voorbeeldshop")


@pytest.mark.parametrize(
    ("sender", "name", "address"),
    [
        ("retouren@shop.example", "", "retouren@shop.example"),
        ("Shop <retouren@shop.example>", "Shop", "retouren@shop.example"),
        ('"Shop \\"B.V.\\"" <retouren@shop.example>', 'Shop "B.V."', "retouren@shop.example"),
        ("a <b@c> <retouren@shop.example>", "a <b@c>", "retouren@shop.example"),
        ("Shop, Evil <evil@attacker.example>", "Shop, Evil", "evil@attacker.example"),
    ],
)
def test_the_sender_splits_at_the_last_angle_brackets(sender: str, name: str, address: str) -> None:
    assert split_mailbox(sender) == (name, address)


def test_container_content_types_are_attached_as_plain_bytes(renderer: MailRenderer) -> None:
    mail = attrs.evolve(
        render(renderer, MailKind.CANCELLED),
        attachments=(
            Attachment("a.eml", "message/rfc822", b"Bcc: evil@attacker.example\r\n\r\nx"),
            Attachment("b", "multipart/mixed", b"--x\r\n"),
        ),
    )
    message = parsed_back(mail)
    types = [part.get_content_type() for part in message.iter_attachments()]
    assert types == ["application/octet-stream", "application/octet-stream"]
    assert all(part["Bcc"] is None for part in message.walk())


def test_an_unknown_language_tag_falls_back_to_dutch(renderer: MailRenderer) -> None:
    mail = attrs.evolve(render(renderer, MailKind.CANCELLED), language="=?utf-8?q?x?=")
    assert to_email_message(mail)["Content-Language"] == "nl"


def test_a_built_message_copies_with_its_own_headers(renderer: MailRenderer) -> None:
    message = to_email_message(render(renderer, MailKind.LABEL_CREATED, label=LABEL))
    twin = copy.deepcopy(message)
    for name in ("From", "To", "Subject"):
        assert twin[name] == message[name]
        assert twin[name].fold(policy=policy.SMTP) == message[name].fold(policy=policy.SMTP)
    head = message_bytes(twin, key="k").split(b"\r\nMessage-ID:")[0]
    assert head == message_bytes(message, key="k").split(b"\r\nMessage-ID:")[0]
