"""The reference shop (examples/webshop) through Flask's test client: fast, no browser."""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import re
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.test import EnvironBuilder

from retouraanvraag import Mail, MailKind, PortRejected, Status, photos
from retouraanvraag.model import Command
from retouraanvraag.testing.photo_contract import sample_png

from .webshop_support import (
    MAX_SUBMISSION_LENGTH,
    Services,
    _secret,
    build,
    csrf,
    label_pdf,
    log_in,
    security,
)

FIETS = "fietsenwinkel"
BOOKS = "bookshop"


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Flask, Services]]:
    app, services = build(tmp_path_factory.mktemp("webshop"))
    yield app, services
    services.close()


@pytest.fixture
def app(shop: tuple[Flask, Services]) -> Flask:
    return shop[0]


@pytest.fixture
def services(shop: tuple[Flask, Services]) -> Services:
    return shop[1]


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def anna(app: Flask) -> FlaskClient:
    client = app.test_client()
    log_in(client)
    return client


def waiting(services: Services, shop_id: str = FIETS) -> list[Any]:
    return list(services.desk.requests_tab(shop_id, rejected=False, limit=500).items)


def find_order(client: FlaskClient, number: str, contact: str, shop_id: str = FIETS) -> Any:
    token = csrf(client, f"/{shop_id}/retour/")
    return client.post(
        f"/{shop_id}/retour/",
        data={"order_number": number, "contact": contact, "csrf_token": token},
    )


def submit_return(
    client: FlaskClient,
    lines: dict[int, tuple[int, str]],
    *,
    photo: bytes | None = None,
    shop_id: str = FIETS,
    extra: dict[str, Any] | None = None,
) -> Any:
    page = client.get(f"/{shop_id}/retour/artikelen").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    submission = re.search(r'name="submission" value="([^"]+)"', page)
    assert token is not None
    assert submission is not None
    data: dict[str, Any] = {
        "csrf_token": token.group(1),
        "submission": submission.group(1),
        "refund_method": "money_back",
    }
    for line, (quantity, reason) in lines.items():
        data[f"quantity_{line}"] = str(quantity)
        data[f"reason_{line}"] = reason
    if photo is not None:
        first = min(lines)
        data[f"photo_{first}"] = (io.BytesIO(photo), "foto.png")
    data.update(extra or {})
    return client.post(f"/{shop_id}/retour/indienen", data=data, content_type="multipart/form-data")


def post(client: FlaskClient, path: str, data: dict[str, Any], page: str = "/merchant/") -> Any:
    return client.post(path, data={"csrf_token": csrf(client, page), **data})


# -- pages and headers ------------------------------------------------------------------------


_INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.IGNORECASE)
_INLINE_HANDLER = re.compile(r"\son[a-z]+\s*=", re.IGNORECASE)
_INLINE_STYLE = re.compile(r"\sstyle\s*=", re.IGNORECASE)


def assert_no_inline_code(html: str) -> None:
    assert not _INLINE_SCRIPT.search(html)
    assert not _INLINE_HANDLER.search(html)
    assert not _INLINE_STYLE.search(html)


def test_every_page_has_a_strict_policy_and_no_inline_script(
    client: FlaskClient, anna: FlaskClient, services: Services
) -> None:
    request_id = waiting(services)[0].id
    pages = [
        (client, "/"),
        (client, f"/{FIETS}/retour/"),
        (client, "/merchant/login"),
        (anna, "/merchant/"),
        (anna, "/merchant/incoming"),
        (anna, "/merchant/history"),
        (anna, "/merchant/attention"),
        (anna, "/merchant/events"),
        (anna, "/merchant/mails"),
        (anna, "/merchant/rules"),
        (anna, f"/merchant/requests/{request_id}"),
    ]
    for who, path in pages:
        response = who.get(path)
        assert response.status_code == 200, path
        policy = response.headers["Content-Security-Policy"]
        assert "script-src 'self'" in policy
        assert "unsafe-inline" not in policy
        assert "default-src 'none'" in policy
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert_no_inline_code(response.get_data(as_text=True))


def test_the_session_cookie_is_http_only_and_same_site_lax(client: FlaskClient) -> None:
    response = client.get(f"/{FIETS}/retour/")
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie


def test_htmx_is_served_from_the_shop_with_its_licence(client: FlaskClient) -> None:
    response = client.get("/static/htmx.min.js")
    body = response.get_data(as_text=True)
    assert response.status_code == 200
    assert body.startswith("/*! htmx 2.")
    assert "Zero-Clause BSD" in body[:2000]
    response.close()


# -- CSRF -------------------------------------------------------------------------------------


@pytest.mark.parametrize("token", [None, "", "forged-token"])
def test_a_post_without_the_sessions_token_is_refused(
    client: FlaskClient, token: str | None
) -> None:
    csrf(client, f"/{FIETS}/retour/")  # the session has a token
    data = {"order_number": "F1001", "contact": "1234AB"}
    if token is not None:
        data["csrf_token"] = token
    response = client.post(f"/{FIETS}/retour/", data=data)
    assert response.status_code == 400
    assert "security token" in response.get_data(as_text=True)
    assert client.get(f"/{FIETS}/retour/artikelen").status_code == 404  # no order was found


def test_the_token_also_comes_as_a_header_for_htmx(client: FlaskClient) -> None:
    token = csrf(client, f"/{FIETS}/retour/")
    response = client.post(
        f"/{FIETS}/retour/",
        data={"order_number": "F1001", "contact": "1234 AB"},
        headers={"X-CSRF-Token": token},
    )
    assert response.status_code == 302


def test_a_merchant_post_without_a_token_changes_nothing(
    anna: FlaskClient, services: Services
) -> None:
    target = waiting(services)[0]
    response = anna.post(f"/merchant/requests/{target.id}/approve", data={"with_label": "yes"})
    assert response.status_code == 400
    assert services.desk.get(FIETS, target.id).status is Status.REQUESTED


# -- the portal -------------------------------------------------------------------------------


@pytest.mark.parametrize("contact", ["1234 AB", "1234ab", " JAN@example.nl "])
def test_an_order_is_found_by_number_and_postal_code_or_email(
    client: FlaskClient, contact: str
) -> None:
    response = find_order(client, "f1001", contact)
    assert response.status_code == 302
    assert response.headers["Location"].endswith(f"/{FIETS}/retour/artikelen")


@pytest.mark.parametrize(
    ("number", "contact"),
    [("F1001", "9999 ZZ"), ("F1001", "piet@example.nl"), ("F9999", "1234 AB"), ("", "")],
)
def test_a_wrong_order_or_contact_finds_nothing(
    client: FlaskClient, number: str, contact: str
) -> None:
    response = find_order(client, number, contact)
    assert response.status_code == 200
    assert "We vinden geen bestelling" in response.get_data(as_text=True)
    assert client.get(f"/{FIETS}/retour/artikelen").status_code == 404


def test_an_order_of_one_shop_is_not_found_in_another(client: FlaskClient) -> None:
    find_order(client, "F1001", "1234 AB")
    assert client.get(f"/{BOOKS}/retour/artikelen").status_code == 404
    assert find_order(client, "F1001", "1234 AB", shop_id=BOOKS).status_code == 200


def test_items_the_rules_refuse_are_greyed_out_with_the_rules_message(
    client: FlaskClient,
) -> None:
    find_order(client, "F1001", "1234 AB")
    page = client.get(f"/{FIETS}/retour/artikelen").get_data(as_text=True)
    gift = re.search(r'<tr id="line-2" class="line refused"[^>]*data-sku="GC-25"', page)
    assert gift is not None
    assert "Niet retourneerbaar: Dit artikel kan niet worden geretourneerd" in page
    assert '<tr id="line-0" class="line"' in page  # the helmet may be returned


def test_the_preview_shows_the_fee_the_rules_ask(client: FlaskClient) -> None:
    find_order(client, "F1002", "2000")
    token = csrf(client, f"/{FIETS}/retour/artikelen")
    preview = client.post(
        f"/{FIETS}/retour/voorbeeld",
        data={"quantity_0": "1", "reason_0": "too_small"},
        headers={"X-CSRF-Token": token, "HX-Request": "true"},
    ).get_data(as_text=True)
    assert "Retourkosten: <strong>€\xa04,95</strong>" in preview
    assert 'hx-swap-oob="true"' in preview
    domestic = app_client_for(client, "F1001", "1234 AB")
    preview = domestic.post(
        f"/{FIETS}/retour/voorbeeld",
        data={"quantity_0": "1", "reason_0": "too_small"},
        headers={"X-CSRF-Token": csrf(domestic, f"/{FIETS}/retour/artikelen")},
    ).get_data(as_text=True)
    assert "Geen retourkosten" in preview


def app_client_for(client: FlaskClient, number: str, contact: str) -> FlaskClient:
    other = client.application.test_client()
    find_order(other, number, contact)
    return other


def test_a_submitted_return_with_a_photo_waits_for_review_and_has_a_status_link(
    client: FlaskClient, app: Flask, services: Services
) -> None:
    find_order(client, "F1001", "1234 AB")
    before = {r.id for r in waiting(services)}
    response = submit_return(client, {0: (1, "too_small")}, photo=sample_png())
    assert response.status_code == 302, response.get_data(as_text=True)
    status_url = response.headers["Location"]
    (new,) = [r for r in waiting(services) if r.id not in before]
    assert new.items[0].photos[0].content_type == "image/png"
    assert new.items[0].reason == "too_small"
    page = client.get(status_url).get_data(as_text=True)
    assert "Wacht op beoordeling" in page
    assert new.order_number in page
    # The link names the request, signed: the customer's session is not needed.
    assert app.test_client().get(status_url).status_code == 200


def test_a_photo_that_is_not_an_image_is_refused_and_nothing_is_stored(
    client: FlaskClient, services: Services
) -> None:
    find_order(client, "F1001", "1234 AB")
    before = len(waiting(services))
    response = submit_return(client, {0: (1, "too_small")}, photo=b"GIF89a not what it claims")
    assert response.status_code == 422
    assert "JPEG, PNG" in response.get_data(as_text=True)
    assert len(waiting(services)) == before


def test_a_photo_past_the_librarys_limit_is_refused_by_its_size(
    client: FlaskClient, services: Services
) -> None:
    find_order(client, "F1001", "1234 AB")
    before = len(waiting(services))
    big = sample_png() + b"\x00" * photos.MAX_PHOTO_BYTES
    response = submit_return(client, {0: (1, "too_small")}, photo=big)
    assert response.status_code == 422
    assert "larger than 10 MiB" in response.get_data(as_text=True)
    assert len(waiting(services)) == before


class CountingStream(io.RawIOBase):
    """A request body that says how much of it was read."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.read_bytes = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = min(len(buffer), self.size - self.read_bytes)
        buffer[:n] = b"\x00" * n
        self.read_bytes += n
        return n


def test_an_upload_past_the_limit_is_refused_before_its_body_is_read(app: Flask) -> None:
    client = app.test_client()
    token = csrf(client, f"/{FIETS}/retour/")
    find_order(client, "F1001", "1234 AB")
    cookie = client.get_cookie("session")
    assert cookie is not None
    size = MAX_SUBMISSION_LENGTH + 1
    body = CountingStream(size)
    environ = EnvironBuilder(
        path=f"/{FIETS}/retour/indienen",
        method="POST",
        headers=[("X-CSRF-Token", token), ("Cookie", f"session={cookie.value}")],
        content_type="multipart/form-data; boundary=x",
    ).get_environ()
    environ["wsgi.input"] = body
    environ["CONTENT_LENGTH"] = str(size)
    answered: list[str] = []

    def start_response(
        status: str, _headers: list[tuple[str, str]], _exc: object = None
    ) -> Callable[[bytes], object]:
        answered.append(status)
        return lambda _data: None

    chunks = b"".join(app.wsgi_app(environ, start_response))
    assert answered == ["413 REQUEST ENTITY TOO LARGE"]
    assert b"too large" in chunks
    assert body.read_bytes == 0


def test_a_return_of_nothing_is_refused(client: FlaskClient) -> None:
    find_order(client, "F1001", "1234 AB")
    response = submit_return(client, {0: (0, "too_small")})
    assert response.status_code == 422
    assert "Kies ten minste één artikel" in response.get_data(as_text=True)


def test_a_gift_card_smuggled_into_the_form_is_refused_by_the_rules(
    client: FlaskClient, services: Services
) -> None:
    find_order(client, "F1001", "1234 AB")
    before = len(waiting(services))
    response = submit_return(client, {2: (1, "changed_mind")})
    assert response.status_code == 422
    assert "Dit artikel kan niet worden geretourneerd" in response.get_data(as_text=True)
    assert len(waiting(services)) == before


def test_a_quantity_above_the_order_is_clamped(client: FlaskClient, services: Services) -> None:
    find_order(client, "F1001", "1234 AB")
    before = {r.id for r in waiting(services)}
    response = submit_return(client, {1: (99, "too_small")})
    assert response.status_code == 302
    (new,) = [r for r in waiting(services) if r.id not in before]
    assert new.items[0].quantity == 2  # two bells were ordered


def test_the_fee_is_charged_and_recorded_on_the_request(
    client: FlaskClient, services: Services
) -> None:
    find_order(client, "F1002", "2000")
    before = {r.id for r in waiting(services)}
    assert submit_return(client, {1: (1, "defective")}).status_code == 302
    (new,) = [r for r in waiting(services) if r.id not in before]
    assert new.return_fee is not None
    assert new.return_fee.amount.amount == 495
    assert new.return_fee_asked == new.return_fee.amount


# -- signed status links ----------------------------------------------------------------------


def test_a_status_link_of_one_shop_does_not_open_in_another(app: Flask, services: Services) -> None:
    target = waiting(services)[0]
    with app.app_context():
        token = security.status_token(app, FIETS, target.id)
    client = app.test_client()
    assert client.get(f"/{FIETS}/retour/status/{token}").status_code == 200
    assert client.get(f"/{BOOKS}/retour/status/{token}").status_code == 404
    with app.app_context():
        cross = security.status_token(app, BOOKS, target.id)
    assert client.get(f"/{BOOKS}/retour/status/{cross}").status_code == 404


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_a_tampered_status_link_is_not_found(
    app: Flask, services: Services, data: st.DataObject
) -> None:
    target = waiting(services)[0]
    with app.app_context():
        token = security.status_token(app, FIETS, target.id)
    position = data.draw(st.integers(0, len(token) - 1))
    replacement = data.draw(
        st.sampled_from("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")
    )
    tampered = token[:position] + replacement + token[position + 1 :]
    response = app.test_client().get(f"/{FIETS}/retour/status/{tampered}")
    if tampered == token:
        assert response.status_code == 200
    else:
        assert response.status_code == 404


# -- login and scoping ------------------------------------------------------------------------


def test_merchant_pages_need_a_login(client: FlaskClient) -> None:
    for path in (
        "/merchant/",
        "/merchant/rules",
        "/merchant/mails",
        "/merchant/events",
        "/merchant/requests/x",
    ):
        response = client.get(path)
        assert response.status_code == 302
        assert "/merchant/login" in response.headers["Location"]


@pytest.mark.parametrize(
    ("username", "password"),
    [("anna", "wrong"), ("nobody", "fiets-2026"), ("anna", ""), ("emma", "fiets-2026")],
)
def test_a_wrong_login_is_refused(client: FlaskClient, username: str, password: str) -> None:
    token = csrf(client, "/merchant/login")
    response = client.post(
        "/merchant/login",
        data={"username": username, "password": password, "csrf_token": token},
    )
    assert response.status_code == 401
    assert client.get("/merchant/").status_code == 302


def test_passwords_are_stored_as_hashes(services: Services) -> None:
    with services.db.transaction() as db:
        stored = [row[0] for row in db.execute("SELECT password_hash FROM staff")]
    assert stored
    assert all(h.startswith(("scrypt:", "pbkdf2:")) for h in stored)
    assert not any("fiets-2026" in h for h in stored)


def test_another_shops_request_id_in_a_url_is_not_found(
    anna: FlaskClient, services: Services
) -> None:
    theirs = waiting(services, BOOKS)[0]
    for path in (
        f"/merchant/requests/{theirs.id}",
        f"/merchant/requests/{theirs.id}/label.pdf",
        f"/merchant/requests/{theirs.id}/photos/anything",
    ):
        assert anna.get(path).status_code == 404, path
    for action in ("approve", "reject", "receive", "complete", "cancel", "resolve"):
        response = post(
            anna, f"/merchant/requests/{theirs.id}/{action}", {"with_label": "yes", "op": "x"}
        )
        assert response.status_code == 404, action
    assert services.desk.get(BOOKS, theirs.id).status is Status.REQUESTED
    emma = anna.application.test_client()
    log_in(emma, "emma", "books-2026")
    assert emma.get(f"/merchant/requests/{theirs.id}").status_code == 200


def test_another_shops_mail_is_not_found(anna: FlaskClient, services: Services) -> None:
    (theirs, *_rest) = services.db.mails(BOOKS)
    assert anna.get(f"/merchant/mails/{theirs.message_id}").status_code == 404
    assert anna.get(f"/merchant/mails/{theirs.message_id}/html").status_code == 404


# -- deciding ---------------------------------------------------------------------------------


def test_approve_with_label_sends_the_label_mail_and_shows_it_to_the_customer(
    client: FlaskClient, anna: FlaskClient, services: Services
) -> None:
    find_order(client, "F1004", "9711 EF")
    status_url = submit_return(client, {1: (1, "defective")}).headers["Location"]
    request_id = waiting(services)[-1].id
    response = post(
        anna,
        f"/merchant/requests/{request_id}/approve",
        {"with_label": "yes", "op": "t1"},
        page=f"/merchant/requests/{request_id}",
    )
    assert response.status_code == 302
    services.dispatcher.run_until_idle()
    decided = services.desk.get(FIETS, request_id)
    assert decided.status is Status.APPROVED
    assert decided.label is not None
    (label_mail,) = [m for m in services.db.mails(FIETS, request_id) if m.kind == "label_created"]
    page = anna.get(f"/merchant/mails/{label_mail.message_id}").get_data(as_text=True)
    assert "retourlabel.pdf" in page
    attachment = anna.get(f"/merchant/mails/{label_mail.message_id}/attachments/0")
    assert attachment.data.startswith(b"%PDF-1.4")
    assert decided.label.tracking_number.encode() in zlib.decompress(
        attachment.data.split(b"stream\n")[1].split(b"\nendstream")[0]
    )
    html = anna.get(f"/merchant/mails/{label_mail.message_id}/html")
    assert "sandbox" in html.headers["Content-Security-Policy"]
    customer = client.get(status_url).get_data(as_text=True)
    assert decided.label.tracking_number in customer
    assert client.get(status_url + "/label.pdf").data == decided.label.document


def test_reject_with_a_preset_reason_reaches_the_customer(
    client: FlaskClient, anna: FlaskClient, services: Services
) -> None:
    find_order(client, "F1006", "5611 GH")
    status_url = submit_return(client, {0: (1, "too_large")}).headers["Location"]
    request_id = waiting(services)[-1].id
    post(
        anna,
        f"/merchant/requests/{request_id}/reject",
        {"preset": "outside_window", "op": "t2"},
        page=f"/merchant/requests/{request_id}",
    )
    services.dispatcher.run_until_idle()
    decided = services.desk.get(FIETS, request_id)
    assert decided.status is Status.REJECTED
    assert decided.reject_reason == "De retourtermijn is verstreken"
    assert "De retourtermijn is verstreken" in client.get(status_url).get_data(as_text=True)
    (mail,) = [m for m in services.db.mails(FIETS, request_id) if m.kind == "rejected"]
    text = anna.get(f"/merchant/mails/{mail.message_id}").get_data(as_text=True)
    assert "De retourtermijn is verstreken" in text


@pytest.mark.parametrize("preset", ["own", "nope", "", "outside-windowx"])
def test_a_rejection_without_a_usable_reason_changes_nothing(
    anna: FlaskClient, services: Services, preset: str
) -> None:
    target = waiting(services)[0]
    response = post(
        anna, f"/merchant/requests/{target.id}/reject", {"preset": preset, "reason": "  "}
    )
    assert response.status_code == 302
    assert services.desk.get(FIETS, target.id).status is Status.REQUESTED


def test_a_double_submitted_decision_is_applied_once(anna: FlaskClient, services: Services) -> None:
    target = waiting(services)[0]
    for _ in range(2):
        post(anna, f"/merchant/requests/{target.id}/approve", {"with_label": "no", "op": "dup"})
    decided = services.desk.get(FIETS, target.id)
    assert decided.status is Status.APPROVED_WITHOUT_RETURN
    commands = [h.command for h in decided.history if h.is_command]
    assert commands == [Command.SUBMIT, Command.APPROVE_WITHOUT_LABEL]


def test_bulk_decides_each_selected_request_and_reports_each(
    client: FlaskClient, anna: FlaskClient, services: Services
) -> None:
    ids = []
    for _ in range(2):
        find_order(client, "F1006", "5611 GH")
        submit_return(client, {1: (1, "too_small")})
        ids.append(waiting(services)[-1].id)
    done = services.desk.requests_tab(FIETS, rejected=True, limit=1).items[0].id
    response = post(
        anna, "/merchant/bulk", {"ids": [*ids, done], "action": "approve_with_label", "op": "b1"}
    )
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert page.count("ok: approved") == 2
    assert "TransitionNotAllowed" in page
    for request_id in ids:
        assert services.desk.get(FIETS, request_id).status is Status.APPROVED


def test_bulk_with_wrong_arguments_decides_nothing(anna: FlaskClient, services: Services) -> None:
    target = waiting(services)[0]
    response = post(anna, "/merchant/bulk", {"ids": [target.id], "action": "reject"})
    assert response.status_code == 400
    assert "reason" in response.get_data(as_text=True)
    assert services.desk.get(FIETS, target.id).status is Status.REQUESTED


def test_incoming_returns_are_received_then_completed(
    anna: FlaskClient, services: Services
) -> None:
    approved = next(
        r for r in services.desk.incoming_returns(FIETS).items if r.status is Status.APPROVED
    )
    post(anna, f"/merchant/requests/{approved.id}/receive", {"op": "r1"}, "/merchant/incoming")
    assert services.desk.get(FIETS, approved.id).status is Status.RECEIVED
    post(anna, f"/merchant/requests/{approved.id}/complete", {"op": "c1"}, "/merchant/incoming")
    assert services.desk.get(FIETS, approved.id).status is Status.COMPLETED
    assert approved.id in anna.get("/merchant/history").get_data(as_text=True)


def test_a_request_needing_attention_is_retried(anna: FlaskClient, services: Services) -> None:
    (stuck,) = services.desk.needing_attention(FIETS).items
    assert stuck.label is None
    page = anna.get("/merchant/attention").get_data(as_text=True)
    assert stuck.id in page
    post(anna, f"/merchant/requests/{stuck.id}/resolve", {"retry": "yes"}, "/merchant/attention")
    services.dispatcher.run_until_idle()
    fixed = services.desk.get(FIETS, stuck.id)
    assert not fixed.needs_attention
    assert fixed.label is not None


def test_the_detail_page_shows_the_audit_trail_and_the_rules_trace(
    anna: FlaskClient, services: Services
) -> None:
    target = waiting(services)[0]
    assert [h.rules_version for h in target.history if h.rules_version] == ["1"]
    page = anna.get(f"/merchant/requests/{target.id}").get_data(as_text=True)
    assert re.search(r'class="rules-version"[^>]*>regels versie 1<', page)
    assert "rules version 1 saw it" in page
    assert "customer" in page
    assert "submit" in page


# -- the rule filter and the editor ----------------------------------------------------------


def test_the_tab_filters_by_a_rule_condition(anna: FlaskClient, services: Services) -> None:
    everything = anna.get("/merchant/?view=waiting").get_data(as_text=True)
    belgian = anna.get("/merchant/?view=waiting&rule=Van+land+IS+België").get_data(as_text=True)
    expected = [r for r in waiting(services) if r.from_country == "BE"]
    others = [r for r in waiting(services) if r.from_country != "BE"]
    assert expected
    assert others
    for r in expected:
        assert f'id="row-{r.id}"' in belgian
    for r in others:
        assert f'id="row-{r.id}"' in everything
        assert f'id="row-{r.id}"' not in belgian
    count = re.search(r'id="tab-count"[^>]*>(\d+)<', belgian)
    assert count is not None
    assert int(count.group(1)) == len(expected)


def test_a_typo_in_the_filter_shows_the_diagnostic_under_its_column(anna: FlaskClient) -> None:
    response = anna.get("/merchant/?rule=Van+land+IS+Nederlnd", headers={"HX-Request": "true"})
    page = response.get_data(as_text=True)
    assert '<section id="tab">' in page
    assert "<html" not in page  # a fragment for htmx
    caret = re.search(r'data-line="1" data-column="13">( *)\^ ([^<]*)</pre>', page)
    assert caret is not None
    assert len(caret.group(1)) == 12  # under the N of "Nederlnd"
    assert "Nederlnd" in caret.group(2)
    assert "bedoelde u &#34;Nederland&#34;?" in page


def test_the_diagnostics_endpoint_answers_json_at_the_right_place(anna: FlaskClient) -> None:
    text = (
        'REGEL "a": ALS Van land IS Nederland DAN Retouraanvraag uitschakelen\n'
        "ALS Retourwaarde GROTER DAN €10 DAN Goedkeurne met label\n"
    )
    answer = post(anna, "/merchant/rules/diagnostics", {"text": text}, "/merchant/rules")
    assert answer.status_code == 200
    assert answer.mimetype == "application/json"
    payload = json.loads(answer.data)
    assert payload["ok"] is False
    (first, *_rest) = payload["diagnostics"]
    assert (first["line"], first["column"]) == (2, 37)
    assert first["code"].startswith("R")
    assert "Goedkeurne" in first["message"] or "Goedkeurne" in first["source_line"]
    assert first["severity"] == "error"
    assert set(first) >= {"line", "column", "message", "suggestion", "code"}
    fine = post(
        anna,
        "/merchant/rules/diagnostics",
        {"text": "ALS Van land IS NL DAN Retouraanvraag uitschakelen"},
        "/merchant/rules",
    )
    assert json.loads(fine.data) == {"ok": True, "diagnostics": []}


def test_the_diagnostics_endpoint_takes_json_and_refuses_nothing_to_check(
    anna: FlaskClient,
) -> None:
    token = csrf(anna, "/merchant/rules")
    answer = anna.post(
        "/merchant/rules/diagnostics",
        json={"text": "ALS Van lnad IS NL DAN Retouraanvraag uitschakelen"},
        headers={"X-CSRF-Token": token},
    )
    (diagnostic,) = json.loads(answer.data)["diagnostics"]
    assert (diagnostic["line"], diagnostic["column"]) == (1, 5)
    assert diagnostic["suggestion"] == 'bedoelde u "Van land"?'
    refused = anna.post("/merchant/rules/diagnostics", json={}, headers={"X-CSRF-Token": token})
    assert refused.status_code == 400


def test_the_editor_formats_translates_explains_and_saves_versions(
    anna: FlaskClient, services: Services
) -> None:
    current = services.db.current_rules(FIETS)
    assert current is not None
    english = post(
        anna, "/merchant/rules", {"text": current.text, "action": "en"}, "/merchant/rules"
    )
    page = english.get_data(as_text=True)
    assert "RULE &#34;Cadeaubonnen&#34;: IF SKU STARTS WITH" in page
    target = waiting(services)[0]
    explained = post(
        anna,
        "/merchant/rules",
        {"text": current.text, "action": "explain", "request_id": target.id},
        "/merchant/rules",
    ).get_data(as_text=True)
    assert 'id="explanation"' in explained
    assert "Buitenland" in explained
    text = current.text + 'REGEL "Kettingsloten": ALS SKU IS "SLT-1" DAN Goedkeuren zonder label\n'
    saved = post(anna, "/merchant/rules", {"text": text, "action": "save"}, "/merchant/rules")
    assert f"Saved as version {current.version + 1}" in saved.get_data(as_text=True)
    assert services.db.current_rules(FIETS).version == current.version + 1  # type: ignore[union-attr]
    client = anna.application.test_client()
    find_order(client, "F1004", "9711 EF")
    submit_return(client, {0: (1, "too_small")})
    decided = services.desk.history_tab(FIETS, limit=500).items[-1]
    assert decided.status is Status.APPROVED_WITHOUT_RETURN
    assert decided.history[-1].rules_version == str(current.version + 1)
    assert not any(line.startswith("regels versie") for line in decided.history[-1].trace)
    broken = post(anna, "/merchant/rules", {"text": "ALS DAN", "action": "save"}, "/merchant/rules")
    assert broken.status_code == 422
    assert services.db.current_rules(FIETS).version == current.version + 1  # type: ignore[union-attr]


def test_logs_carry_ids_never_the_customers_name_or_address(
    client: FlaskClient, anna: FlaskClient, services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    find_order(client, "F1002", "2000")
    submit_return(client, {0: (1, "too_small")})
    request_id = waiting(services)[-1].id
    post(anna, f"/merchant/requests/{request_id}/approve", {"with_label": "yes", "op": "log"})
    services.dispatcher.run_until_idle()
    assert caplog.records
    for record in caplog.records:
        text = record.getMessage() + repr(record.__dict__)
        for secret in ("lotte@example.be", "Lotte Peeters", "2000 "):
            assert secret not in text


def test_the_data_folder_keeps_the_signing_key_private(tmp_path: Path) -> None:
    key = _secret(tmp_path)
    assert (tmp_path / "secret.key").stat().st_mode & 0o077 == 0
    assert _secret(tmp_path) == key
    assert len(key) >= 48


def test_explain_from_a_request_page_opens_the_editor_with_the_explanation(
    anna: FlaskClient, services: Services
) -> None:
    target = waiting(services)[0]
    detail = anna.get(f"/merchant/requests/{target.id}").get_data(as_text=True)
    assert f"/merchant/rules?explain={target.id}" in detail
    page = anna.get(f"/merchant/rules?explain={target.id}").get_data(as_text=True)
    assert 'id="explanation"' in page
    assert f'<option value="{target.id}" selected>' in page
    theirs = waiting(services, BOOKS)[0]
    assert anna.get(f"/merchant/rules?explain={theirs.id}").status_code == 404


def test_the_worker_beside_the_server_sends_the_label_mail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _app, services = build(tmp_path)
    sent = threading.Event()
    deliver = services.mail.send

    def send(key: str, mail: Mail) -> None:
        deliver(key, mail)
        if mail.kind is MailKind.LABEL_CREATED:
            sent.set()

    monkeypatch.setattr(services.mail, "send", send)
    thread, stop = services.start_worker(poll=0.05)
    try:
        target = waiting(services)[0]
        services.desk.approve(FIETS, target.id, actor="anna")
        assert sent.wait(timeout=30)
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not thread.is_alive()
    assert services.desk.get(FIETS, target.id).label is not None
    services.close()


def test_the_demo_label_is_a_pdf_whose_cross_references_point_at_its_objects() -> None:
    document = label_pdf("PostNL", "3SDEMO00000042", "abc123")
    start = int(document.rsplit(b"startxref\n", 1)[1].split(b"\n")[0])
    assert document[start:].startswith(b"xref")
    offsets = [int(o) for o in re.findall(rb"(\d{10}) 00000 n", document)]
    assert len(offsets) == 5
    for number, offset in enumerate(offsets, start=1):
        assert document[offset:].startswith(b"%d 0 obj" % number)
    text = zlib.decompress(document.split(b"stream\n")[1].split(b"\nendstream")[0])
    assert b"(Tracking: 3SDEMO00000042)" in text
    assert document.endswith(b"%%EOF\n")


# -- review findings: the fee's key, cursors, the editor, sessions, lookups, body sizes --------


def _items_form(client: FlaskClient, shop_id: str = FIETS) -> dict[str, str]:
    page = client.get(f"/{shop_id}/retour/artikelen").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    submission = re.search(r'name="submission" value="([^"]+)"', page)
    assert token is not None
    assert submission is not None
    return {"csrf_token": token.group(1), "submission": submission.group(1)}


def _payments(services: Services, reference_like: str) -> list[tuple[str, int]]:
    with services.db.transaction() as db:
        rows = db.execute(
            "SELECT reference, amount FROM payments WHERE reference LIKE ?", (reference_like,)
        ).fetchall()
    return [(str(r[0]), int(r[1])) for r in rows]


@pytest.mark.parametrize("sent", ["", "short", "x" * 22, None])
def test_a_submission_without_the_key_the_server_issued_is_refused(
    app: Flask, services: Services, sent: str | None
) -> None:
    client = app.test_client()
    assert find_order(client, "F1002", "2000").status_code == 302
    form: dict[str, Any] = {
        **_items_form(client),
        "refund_method": "money_back",
        "quantity_1": "1",
        "reason_1": "defective",
    }
    if sent is None:
        del form["submission"]
    else:
        form["submission"] = sent
    before = {r.id for r in waiting(services)}
    paid = _payments(services, "pay-%")
    response = client.post(
        f"/{FIETS}/retour/indienen", data=form, content_type="multipart/form-data"
    )
    assert response.status_code == 400
    assert "begin opnieuw" in response.get_data(as_text=True)  # the order is in Dutch
    assert {r.id for r in waiting(services)} == before
    assert _payments(services, "pay-%") == paid


def test_two_returns_of_one_order_each_pay_their_own_fee_and_both_refund(
    app: Flask, anna: FlaskClient, services: Services
) -> None:
    ids = []
    for line in (1, 0):
        client = app.test_client()
        assert find_order(client, "F1002", "2000").status_code == 302
        before = {r.id for r in waiting(services)}
        assert submit_return(client, {line: (1, "defective")}).status_code == 302
        (new,) = [r for r in waiting(services) if r.id not in before]
        ids.append(new.id)
    fees = [services.desk.get(FIETS, i).return_fee for i in ids]
    assert fees[0] is not None
    assert fees[1] is not None
    assert fees[0].payment_reference != fees[1].payment_reference
    for fee in fees:
        assert fee is not None
        assert fee.payment_reference.startswith(f"pay-{FIETS}-F1002-")
        assert _payments(services, fee.payment_reference) == [
            (fee.payment_reference, fee.amount.amount)
        ]
    for n, request_id in enumerate(ids):
        post(
            anna,
            f"/merchant/requests/{request_id}/approve",
            {"with_label": "no", "refund": "yes", "op": f"two-fees-{n}"},
        )
    services.dispatcher.run_until_idle()
    for request_id in ids:
        done = services.desk.get(FIETS, request_id)
        assert not done.needs_attention, done.attention
        assert done.return_fee is not None
        assert done.refunded == done.return_fee.amount


def test_a_form_sent_twice_pays_once_and_stores_one_request(app: Flask, services: Services) -> None:
    client = app.test_client()
    assert find_order(client, "F1002", "2000").status_code == 302
    form = {
        **_items_form(client),
        "refund_method": "money_back",
        "quantity_1": "1",
        "reason_1": "defective",
    }
    cookie = client.get_cookie("session")
    assert cookie is not None
    before = {r.id for r in waiting(services)}
    first = client.post(f"/{FIETS}/retour/indienen", data=form)
    assert first.status_code == 302
    client.set_cookie("session", cookie.value)  # the second click left with the first's cookie
    second = client.post(f"/{FIETS}/retour/indienen", data=form)
    assert second.status_code == 302
    assert second.headers["Location"] == first.headers["Location"]
    (new,) = [r for r in waiting(services) if r.id not in before]
    assert new.return_fee is not None
    assert len(_payments(services, new.return_fee.payment_reference)) == 1


@pytest.mark.parametrize(
    "path",
    [
        "/merchant/?cursor=zz",
        "/merchant/incoming?cursor=zz",
        "/merchant/history?cursor=zz",
        "/merchant/attention?cursor=zz",
        "/merchant/events?cursor=zz",
    ],
)
def test_a_stale_cursor_on_any_listing_is_a_400(anna: FlaskClient, path: str) -> None:
    response = anna.get(path)
    assert response.status_code == 400
    assert "stale cursor" in response.get_data(as_text=True)


@pytest.mark.parametrize("action", ["save", "format", "en", "explain"])
def test_the_editor_refuses_another_shops_request_before_doing_anything(
    anna: FlaskClient, services: Services, action: str
) -> None:
    theirs = waiting(services, BOOKS)[0]
    current = services.db.current_rules(FIETS)
    assert current is not None
    before = services.db.rule_versions(FIETS)
    response = post(
        anna,
        "/merchant/rules",
        {"action": action, "text": current.text, "request_id": theirs.id},
        "/merchant/rules",
    )
    assert response.status_code == 404
    assert services.db.rule_versions(FIETS) == before


def test_a_session_cookie_from_before_logout_no_longer_works(app: Flask) -> None:
    client = app.test_client()
    log_in(client, "daan", "bel-2026")
    cookie = client.get_cookie("session")
    assert cookie is not None
    other = app.test_client()  # the same staff member on another machine
    log_in(other, "daan", "bel-2026")
    token = csrf(client, "/merchant/")
    assert client.post("/merchant/logout", data={"csrf_token": token}).status_code == 302
    thief = app.test_client()
    thief.set_cookie("session", cookie.value)
    refused = thief.get("/merchant/")
    assert refused.status_code == 302
    assert "/merchant/login" in refused.headers["Location"]
    assert other.get("/merchant/").status_code == 302  # logout ends every session of daan
    log_in(client, "daan", "bel-2026")
    assert client.get("/merchant/").status_code == 200


def test_a_staff_session_lasts_a_working_day(app: Flask) -> None:
    client = app.test_client()
    log_in(client)
    cookie = client.get_cookie("session")
    assert cookie is not None
    assert cookie.expires is not None
    left = cookie.expires.timestamp() - time.time()
    assert 7 * 3600 < left <= 8 * 3600 + 60
    assert app.permanent_session_lifetime.total_seconds() == 8 * 3600


def test_a_login_made_before_a_password_change_no_longer_works(
    app: Flask, services: Services
) -> None:
    client = app.test_client()
    log_in(client, "daan", "bel-2026")
    services.db.add_staff("daan", FIETS, "bel-2026")  # the password set again
    assert client.get("/merchant/").status_code == 302


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[tuple[Flask, Services]]:
    """An app of its own: the throttle's counts must not leak into the other tests."""
    app, services = build(tmp_path)
    yield app, services
    services.close()


def _from(app: Flask, address: str) -> FlaskClient:
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return client


def test_failed_lookups_of_one_order_are_throttled_whoever_tries(
    fresh: tuple[Flask, Services],
) -> None:
    app, _services = fresh
    answers = [
        find_order(_from(app, f"198.51.100.{n}"), "F1002", f"{1900 + n:04d}").status_code
        for n in range(12)
    ]
    assert answers[:10] == [200] * 10
    assert answers[10:] == [429, 429]
    right = find_order(_from(app, "198.51.100.99"), "F1002", "2000")
    assert right.status_code == 429  # even the right postal code: the guessing stops here
    assert "Retry-After" in right.headers
    assert int(right.headers["Retry-After"]) > 0
    assert "Te veel mislukte pogingen" in right.get_data(as_text=True)
    assert find_order(_from(app, "198.51.100.99"), "F1001", "1234 AB").status_code == 302


def test_failed_lookups_from_one_address_are_throttled_across_orders(
    fresh: tuple[Flask, Services],
) -> None:
    app, _services = fresh
    client = _from(app, "203.0.113.7")
    answers = [find_order(client, f"F{2000 + n}", "1234 AB").status_code for n in range(21)]
    assert answers[:20] == [200] * 20
    assert answers[20] == 429
    assert find_order(client, "F1001", "1234 AB").status_code == 429
    assert find_order(_from(app, "203.0.113.8"), "F1001", "1234 AB").status_code == 302


def test_failed_lookups_count_no_more_once_the_window_is_over(
    fresh: tuple[Flask, Services],
) -> None:
    app, services = fresh
    earlier = services.clock.now() - dt.timedelta(hours=2)
    for _ in range(30):
        services.db.record_failed_lookup(("order:fietsenwinkel:F1002", "ip:192.0.2.1"), earlier)
    assert find_order(_from(app, "192.0.2.1"), "F1002", "2000").status_code == 302


def test_an_anonymous_body_past_the_small_limit_is_refused_unread(app: Flask) -> None:
    assert app.config["MAX_CONTENT_LENGTH"] <= 1024 * 1024
    for path in ("/merchant/login", f"/{FIETS}/retour/", f"/{FIETS}/retour/voorbeeld"):
        size = app.config["MAX_CONTENT_LENGTH"] + 1
        body = CountingStream(size)
        environ = EnvironBuilder(
            path=path,
            method="POST",  # no token: the CSRF check reads the form, and is refused first
            content_type="multipart/form-data; boundary=x",
        ).get_environ()
        environ["wsgi.input"] = body
        environ["CONTENT_LENGTH"] = str(size)
        answered: list[str] = []

        def start_response(
            status: str,
            _headers: list[tuple[str, str]],
            _exc: object = None,
            answered: list[str] = answered,
        ) -> Callable[[bytes], object]:
            answered.append(status)
            return lambda _data: None

        page = b"".join(app.wsgi_app(environ, start_response))
        assert answered == ["413 REQUEST ENTITY TOO LARGE"], path
        assert body.read_bytes == 0, path
        assert b"at most 1 MiB" in page


def test_a_chunked_body_past_the_small_limit_is_refused(app: Flask) -> None:
    client = app.test_client()
    size = app.config["MAX_CONTENT_LENGTH"] + 1024 * 1024
    body = b'--b\r\nContent-Disposition: form-data; name="f"; filename="x"\r\n\r\n'
    body += b"\0" * size + b"\r\n--b--\r\n"
    response = client.post(
        "/merchant/login",
        environ_overrides={
            "wsgi.input": io.BytesIO(body),
            "CONTENT_TYPE": "multipart/form-data; boundary=b",
            "HTTP_TRANSFER_ENCODING": "chunked",
            "wsgi.input_terminated": True,
        },
    )
    assert response.status_code == 413


def test_the_portal_submission_alone_takes_photos_past_the_small_limit(
    client: FlaskClient, services: Services
) -> None:
    find_order(client, "F1001", "1234 AB")
    padded = sample_png() + b"\0" * (2 * 1024 * 1024)  # a 2 MiB upload: past the small limit
    before = {r.id for r in waiting(services)}
    response = submit_return(client, {1: (1, "too_small")}, photo=padded)
    assert response.status_code == 302
    (new,) = [r for r in waiting(services) if r.id not in before]
    assert len(new.items[0].photos) == 1


def test_a_mail_that_names_no_shop_is_refused(services: Services) -> None:
    mail = Mail(
        to="x@example.nl",
        subject="s",
        text="t",
        html="<p>t</p>",
        kind=MailKind.REQUEST_RECEIVED,
        request_id="r1",
        message_id="<m1@localhost>",
    )
    with pytest.raises(PortRejected, match="names no shop"):
        services.mail.send("mail:fietsenwinkel:r1:received", mail)
