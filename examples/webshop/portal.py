"""The customer's return portal: find the order, choose items, see the fee, submit, follow."""

from __future__ import annotations

import datetime as dt
import hmac
import math
import re
import secrets
from collections.abc import Mapping
from typing import Final

import attrs
from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from werkzeug.datastructures import FileStorage

from retouraanvraag import (
    Customer,
    IdempotencyConflict,
    InvalidInput,
    InvalidPhoto,
    Money,
    NewItem,
    NewRequest,
    NotFound,
    Outcome,
    PaidFee,
    RefundMethod,
    ReturnFeeMismatch,
    ReturnRefused,
    ReturnWindowExpired,
    photos,
)

from . import security
from .app import services, shop_or_404
from .config import Order, ShopConfig

portal = Blueprint("portal", __name__, url_prefix="/<shop_id>/retour")

TEXT: Final[Mapping[str, Mapping[str, str]]] = {
    "nl": {
        "title": "Retour aanmelden",
        "find": "Zoek uw bestelling",
        "order_number": "Bestelnummer",
        "contact": "Postcode of e-mailadres",
        "search": "Zoeken",
        "not_found": (
            "We vinden geen bestelling met dit nummer en deze postcode of dit e-mailadres."
        ),
        "choose": "Kies wat u terugstuurt",
        "quantity": "Aantal",
        "reason": "Reden",
        "own_words": "Toelichting (bij Anders)",
        "photo": "Foto (JPEG, PNG of WebP, max. 10 MiB)",
        "refund": "Terugbetaling",
        "fee": "Retourkosten",
        "no_fee": "Geen retourkosten",
        "fee_note": "De retourkosten worden bij het indienen afgerekend (demo-betaling).",
        "submit": "Retour indienen",
        "nothing": "Kies ten minste één artikel.",
        "status": "Status van uw retour",
        "decision": "Beslissing",
        "reject_reason": "Reden van afwijzing",
        "label": "Retourlabel",
        "download": "Download het retourlabel",
        "label_pending": "Het label wordt gemaakt; ververs de pagina over een moment.",
        "keep": "Bewaar deze link om de status later te bekijken.",
        "refunded": "Teruggestort",
        "money_back": "Geld terug",
        "store_credit": "Winkeltegoed",
        "exchange": "Ruilen",
        "order": "Bestelling",
        "refused": "Niet retourneerbaar",
        "whole_order": "Deze bestelling kan niet worden geretourneerd",
        "photos": "foto('s)",
        "resubmitted": "Dit formulier is al met andere keuzes ingediend; begin opnieuw.",
        "stale_form": "Dit formulier is verlopen of al ingediend; begin opnieuw.",
        "throttled": (
            "Te veel mislukte pogingen om een bestelling te vinden. "
            "Probeer het over {minutes} minuten opnieuw."
        ),
    },
    "en": {
        "title": "Return an order",
        "find": "Find your order",
        "order_number": "Order number",
        "contact": "Postal code or e-mail address",
        "search": "Search",
        "not_found": "We cannot find an order with this number and postal code or e-mail.",
        "choose": "Choose what you send back",
        "quantity": "Quantity",
        "reason": "Reason",
        "own_words": "In your own words (for Other)",
        "photo": "Photo (JPEG, PNG or WebP, at most 10 MiB)",
        "refund": "Refund",
        "fee": "Return fee",
        "no_fee": "No return fee",
        "fee_note": "The return fee is charged when you submit (demo payment).",
        "submit": "Submit the return",
        "nothing": "Choose at least one item.",
        "status": "Your return",
        "decision": "Decision",
        "reject_reason": "Why it was rejected",
        "label": "Return label",
        "download": "Download the return label",
        "label_pending": "The label is being made; reload the page in a moment.",
        "keep": "Keep this link to look up the status later.",
        "refunded": "Refunded",
        "money_back": "Money back",
        "store_credit": "Store credit",
        "exchange": "Exchange",
        "order": "Order",
        "refused": "Cannot be returned",
        "whole_order": "This order cannot be returned",
        "photos": "photo(s)",
        "resubmitted": "This form was already submitted with other choices; start again.",
        "stale_form": "This form is out of date or was submitted already; start again.",
        "throttled": "Too many failed attempts to find an order. Try again in {minutes} minutes.",
    },
}

_LINE_FIELD: Final = re.compile(r"^items\[(\d+)\]")
#: What a submission key looks like (``secrets.token_urlsafe(16)``).
_SUBMISSION_KEY: Final = re.compile(r"[A-Za-z0-9_-]{22}")
#: Failed order lookups are counted over this window ...
LOOKUP_WINDOW: Final = dt.timedelta(hours=1)
#: ... and refused (429) past this many for one order number, whoever tries: an order number
#: and a 4-digit postal code (Belgium, Switzerland) are otherwise found in 10,000 guesses ...
MAX_FAILED_PER_ORDER: Final = 10
#: ... or past this many from one client address, whichever order it tries.
MAX_FAILED_PER_ADDRESS: Final = 20


@attrs.frozen
class Choice:
    """What the customer chose for one order line."""

    line: int
    quantity: int
    reason: str
    text: str


@attrs.frozen
class Preview:
    """What the rules say about the customer's choice, for the page."""

    refused: Mapping[int, str]  # order line -> the rule's message
    order_refused: str | None
    fee: Money | None
    problem: str | None
    problem_line: int | None


def _text(language: str) -> Mapping[str, str]:
    return TEXT.get(language, TEXT["en"])


def _order_in_session(shop: ShopConfig) -> Order:
    found = session.get("portal")
    if not isinstance(found, dict) or found.get("shop") != shop.id:
        abort(404)
    order = shop.order(str(found.get("order", "")))
    if order is None:
        abort(404)
    return order


@portal.route("/", methods=["GET", "POST"])
def find(shop_id: str) -> str | Response:
    """Find an order by its number and the postal code or e-mail address it was sent to."""
    shop = shop_or_404(shop_id)
    text = _text(shop.language)
    error = None
    if request.method == "POST":
        number = request.form.get("order_number", "")
        buckets = _lookup_buckets(shop, number)
        wait = _throttled(buckets)
        if wait is not None:  # even the right answer: the guessing stops here
            page = render_template(
                "portal_find.html",
                shop=shop,
                t=text,
                lang=shop.language,
                error=text["throttled"].format(minutes=math.ceil(wait / 60)),
            )
            return Response(page, status=429, headers={"Retry-After": str(wait)})
        order = shop.order(number)
        contact = _folded(request.form.get("contact", ""))
        if order is not None and contact in {_folded(order.email), _folded(order.postal_code)}:
            # The submission key is the server's: it keys the fee's payment and the request.
            session["portal"] = {
                "shop": shop.id,
                "order": order.number,
                "submission": secrets.token_urlsafe(16),
            }
            return redirect(url_for("portal.items", shop_id=shop.id))  # type: ignore[return-value]
        services().db.record_failed_lookup(buckets, services().clock.now())
        error = text["not_found"]
    return render_template("portal_find.html", shop=shop, t=text, lang=shop.language, error=error)


def _lookup_buckets(shop: ShopConfig, number: str) -> tuple[str, str]:
    """Where a failed lookup counts: the order number tried, and the client's address."""
    tried = "".join(number.split()).upper()[:64]
    return f"order:{shop.id}:{tried}", f"ip:{request.remote_addr or '-'}"


def _throttled(buckets: tuple[str, str]) -> int | None:
    """Seconds until a lookup is allowed again, or ``None`` when it is allowed now."""
    db = services().db
    now = services().clock.now()
    since = now - LOOKUP_WINDOW
    waits = []
    for bucket, limit in zip(buckets, (MAX_FAILED_PER_ORDER, MAX_FAILED_PER_ADDRESS), strict=True):
        if db.failed_lookups(bucket, since) >= limit:
            oldest = db.oldest_failed_lookup(bucket, since) or now
            waits.append(max(1, math.ceil((oldest + LOOKUP_WINDOW - now).total_seconds())))
    return max(waits) if waits else None


def _submission_key() -> str:
    """The one-time key of the order in the session (issued when the order was found)."""
    found = session["portal"]
    key = found.get("submission")
    if not isinstance(key, str) or not _SUBMISSION_KEY.fullmatch(key):
        key = secrets.token_urlsafe(16)
        session["portal"] = {**found, "submission": key}
    return key


@portal.get("/artikelen")
def items(shop_id: str) -> str:
    """The order's lines: quantity, reason, own words and a photo per line; the refund."""
    shop = shop_or_404(shop_id)
    order = _order_in_session(shop)
    choices = [Choice(i, 0, "", "") for i in range(len(order.lines))]
    preview = _preview(shop, order, choices)
    return render_template(
        "portal_items.html",
        shop=shop,
        order=order,
        t=_text(order.language),
        lang=order.language,
        preview=preview,
        reasons=shop.reasons.reasons,
        submission=_submission_key(),
        refund_methods=list(RefundMethod),
        choices={c.line: c for c in choices},
        errors={},
    )


@portal.post("/voorbeeld")
def preview(shop_id: str) -> str:
    """The rules' answer to the form as it is now (htmx): refused items and the fee."""
    shop = shop_or_404(shop_id)
    order = _order_in_session(shop)
    choices = _choices(shop, order)
    return render_template(
        "portal_preview.html",
        shop=shop,
        order=order,
        t=_text(order.language),
        lang=order.language,
        preview=_preview(shop, order, choices),
        oob=True,
    )


@portal.post("/indienen")
def submit(shop_id: str) -> str | Response | tuple[str, int]:
    """Submit the return: photos checked by the library, the fee charged, the request stored."""
    shop = shop_or_404(shop_id)
    order = _order_in_session(shop)
    text = _text(order.language)
    key = _submission_key()
    sent = request.form.get("submission", "")
    if not hmac.compare_digest(sent.encode(), key.encode()):  # a form of another visit
        abort(400, description=text["stale_form"])
    choices = [c for c in _choices(shop, order) if c.quantity > 0]
    errors: dict[int | None, str] = {}
    if not choices:
        errors[None] = text["nothing"]
    uploads = {c.line: _read_photo(request.files.get(f"photo_{c.line}")) for c in choices}
    errors.update({line: u for line, u in uploads.items() if isinstance(u, str)})
    if not errors:
        saved = _submit(shop, order, choices, uploads, errors, key=key)
        if saved is not None:
            session.pop("portal", None)
            token = security.status_token(current_app, shop.id, saved)
            return redirect(url_for("portal.status", shop_id=shop.id, token=token))  # type: ignore[return-value]
    page = render_template(
        "portal_items.html",
        shop=shop,
        order=order,
        t=text,
        lang=order.language,
        preview=_preview(shop, order, _choices(shop, order)),
        reasons=shop.reasons.reasons,
        submission=key,
        refund_methods=list(RefundMethod),
        choices={c.line: c for c in _choices(shop, order)},
        errors=errors,
    )
    return page, 422


@portal.get("/status/<token>")
def status(shop_id: str, token: str) -> str:
    """The customer's own request, by its signed link: decision, reason, label."""
    shop = shop_or_404(shop_id)
    request_id = security.read_status_token(current_app, shop.id, token)
    if request_id is None:
        abort(404)
    try:
        found = services().desk.get(shop.id, request_id)
    except NotFound:
        abort(404)
    return render_template(
        "portal_status.html",
        shop=shop,
        t=_text(found.customer.language.value),
        lang=found.customer.language.value,
        r=found,
        token=token,
        reasons=shop.reasons,
    )


@portal.get("/status/<token>/label.pdf")
def label(shop_id: str, token: str) -> Response:
    """The return label of the customer's own request."""
    shop = shop_or_404(shop_id)
    request_id = security.read_status_token(current_app, shop.id, token)
    if request_id is None:
        abort(404)
    try:
        found = services().desk.get(shop.id, request_id)
    except NotFound:
        abort(404)
    if found.label is None:
        abort(404)
    return Response(
        found.label.document,
        mimetype=found.label.content_type,
        headers={"Content-Disposition": f'attachment; filename="{found.label.filename}"'},
    )


# -- helpers --------------------------------------------------------------------------------


def _submit(
    shop: ShopConfig,
    order: Order,
    choices: list[Choice],
    uploads: Mapping[int, bytes | str | None],
    errors: dict[int | None, str],
    *,
    key: str,
) -> str | None:
    """Pay the fee the rules ask and submit; the new request's id, or ``None`` with ``errors``.

    ``key`` is the one-time key the server issued when the order was found, kept in the
    session (the form must echo it). It keys the payment, with the order number, and the
    submission, so a form sent twice pays once and stores one request, and no two returns
    share a payment.
    """
    new = _new_request(shop, order, choices, request.form.get("refund_method", ""))
    with_photos = tuple(
        attrs.evolve(item, photos=_photos_of(uploads.get(c.line)))
        for item, c in zip(new.items, choices, strict=True)
    )
    language = order.language
    try:
        fee = services().desk.preview(new).return_fee
        new = attrs.evolve(new, items=with_photos)
        if fee is not None and fee.amount > 0:
            reference = f"pay-{shop.id}-{order.number}-{key}"
            services().payments.charge_once(reference, fee)
            new = attrs.evolve(new, return_fee=PaidFee(fee, reference))
        return services().desk.submit(new, idempotency_key=f"portal:{order.number}:{key}").id
    except ReturnRefused as exc:
        for index, message in exc.refused:
            errors[choices[index].line if index is not None else None] = message
    except (ReturnWindowExpired, ReturnFeeMismatch) as exc:
        errors[None] = exc.message_nl if language == "nl" else exc.message_en
    except IdempotencyConflict:
        errors[None] = _text(language)["resubmitted"]
    except InvalidInput as exc:
        errors[_line_of(exc, choices)] = exc.problem
    return None


def _folded(text: str) -> str:
    """Text compared as people type it: no spaces, any case."""
    return "".join(text.split()).casefold()


def _choices(shop: ShopConfig, order: Order) -> list[Choice]:
    """The form's choice per order line; quantities clamped to what was ordered."""
    out = []
    for i, line in enumerate(order.lines):
        raw = request.form.get(f"quantity_{i}", "0")
        quantity = int(raw) if raw.isdigit() else 0
        reason = request.form.get(f"reason_{i}", "")
        known = {r.code for r in shop.reasons.reasons}
        out.append(
            Choice(
                i,
                min(max(quantity, 0), line.quantity),
                reason if reason in known else "",
                request.form.get(f"text_{i}", "").strip()[:500],
            )
        )
    return out


def _new_request(shop: ShopConfig, order: Order, choices: list[Choice], refund: str) -> NewRequest:
    now = services().clock.now()
    try:
        method = RefundMethod(refund)
    except ValueError:
        method = RefundMethod.MONEY_BACK
    return NewRequest(
        shop_id=shop.id,
        order_number=order.number,
        customer=Customer(order.email, order.name, order.language),
        from_country=order.country,
        order_value=order.value,
        items=tuple(
            NewItem(
                order.lines[c.line].sku,
                order.lines[c.line].name,
                c.quantity,
                order.lines[c.line].unit_price,
                c.reason,
                c.text or None,
                product_type=order.lines[c.line].product_type,
            )
            for c in choices
        ),
        ordered_at=order.ordered_at(now),
        delivered_at=order.delivered_at(now),
        refund_method=method,
    )


def _preview(shop: ShopConfig, order: Order, choices: list[Choice]) -> Preview:
    """Ask the rules twice: every line as if chosen (what to grey out), then the choice (fee)."""
    default = next(r.code for r in shop.reasons.reasons if not r.needs_text)
    every = [
        Choice(
            c.line,
            c.quantity or 1,
            c.reason or default,
            c.text or ("…" if shop.reasons.resolve(c.reason or default).needs_text else ""),
        )
        for c in choices
    ]
    desk = services().desk
    refused: dict[int, str] = {}
    order_refused = None
    try:
        refund = request.form.get("refund_method", "")
        outcome = desk.preview(_new_request(shop, order, every, refund))
    except ReturnWindowExpired as exc:
        message = exc.message_nl if order.language == "nl" else exc.message_en
        return Preview({}, message, None, None, None)
    except InvalidInput as exc:
        return Preview({}, None, None, exc.problem, _line_of(exc, every))
    for item in outcome.refused:
        if item.index is None:
            order_refused = item.message
        else:
            refused[every[item.index].line] = item.message
    chosen = [c for c in choices if c.quantity > 0 and c.line not in refused and c.reason]
    fee = None
    problem = problem_line = None
    if chosen:
        try:
            selected: Outcome = desk.preview(_new_request(shop, order, chosen, refund))
            fee = selected.return_fee
        except InvalidInput as exc:
            problem, problem_line = exc.problem, _line_of(exc, chosen)
    return Preview(refused, order_refused, fee, problem, problem_line)


def _line_of(error: InvalidInput, choices: list[Choice]) -> int | None:
    match = _LINE_FIELD.match(error.field or "")
    if match is None or int(match.group(1)) >= len(choices):
        return None
    return choices[int(match.group(1))].line


def _read_photo(upload: FileStorage | None) -> bytes | str | None:
    """A photo's bytes, read no further than the library's limit; an error text if larger."""
    if upload is None or not upload.filename:
        return None
    data = upload.stream.read(photos.MAX_PHOTO_BYTES + 1)
    if len(data) > photos.MAX_PHOTO_BYTES:
        return f"The photo is larger than {photos.MAX_PHOTO_BYTES // (1024 * 1024)} MiB."
    try:
        photos.validate_photo(data)
    except InvalidPhoto as exc:
        return exc.problem
    return data


def _photos_of(upload: bytes | str | None) -> tuple[bytes, ...]:
    return (upload,) if isinstance(upload, bytes) else ()
