"""The merchant's pages, behind a login and scoped to the merchant's shop.

The requests tab (✓ / ✗, bulk, a rule filter), incoming returns, history with the audit trail
and the rules trace, needing attention, the events the shop's webhook received, the mails
sent, and the rules editor.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Callable
from email.message import EmailMessage
from typing import Any, Final

from flask import (
    Blueprint,
    Response,
    abort,
    flash,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)

from retouraanvraag import (
    Decision,
    InvalidInput,
    NotFound,
    Page,
    Reason,
    RetouraanvraagError,
    ReturnRequest,
    RuleError,
    TransitionNotAllowed,
    UnknownReason,
    rules,
)
from retouraanvraag.rules import Diagnostic, Severity

from . import security
from .app import services
from .config import ShopConfig
from .services import rule_version_of

merchant = Blueprint("merchant", __name__, url_prefix="/merchant")

_VIEWS: Final = {"all": None, "waiting": False, "rejected": True}
#: Events per page of the events listing.
_EVENTS_PAGE: Final = 50


def _shop() -> ShopConfig:
    return services().shops[g.shop_id]


def _get(request_id: str) -> ReturnRequest:
    """One of this merchant's requests; another shop's id is a 404 like an unknown one."""
    try:
        return services().desk.get(g.shop_id, request_id)
    except NotFound:
        abort(404)


def _op() -> str:
    """A fresh idempotency key for a form: a double click replays the first result."""
    return secrets.token_urlsafe(12)


def _key() -> str | None:
    op = request.form.get("op", "")
    return f"web:{g.shop_id}:{op}" if op else None


def _back(request_id: str | None = None) -> Response:
    target = request.form.get("next", "")
    if target.startswith("/merchant/") and "//" not in target:
        return redirect(target)  # type: ignore[return-value]
    if request_id is not None:
        return redirect(url_for("merchant.detail", request_id=request_id))  # type: ignore[return-value]
    return redirect(url_for("merchant.requests_tab"))  # type: ignore[return-value]


def _render(template: str, **values: Any) -> str:  # noqa: ANN401 - template values
    return render_template(template, shop=_shop(), staff=g.staff, op=_op(), **values)


# -- login ----------------------------------------------------------------------------------


@merchant.route("/login", methods=["GET", "POST"])
def login() -> str | Response | tuple[str, int]:
    """Log a staff member in; the session then names their shop."""
    error = None
    if request.method == "POST":
        username = request.form.get("username", "").strip()
        shop_id = services().db.check_login(username, request.form.get("password", ""))
        if shop_id is not None and shop_id in services().shops:
            security.log_in(username, shop_id)
            target = request.args.get("next", "")
            if not target.startswith("/merchant/") or "//" in target:
                target = url_for("merchant.requests_tab")
            return redirect(target)  # type: ignore[return-value]
        error = "Unknown user name or wrong password."
        return render_template("login.html", error=error), 401
    return render_template("login.html", error=error)


@merchant.post("/logout")
def logout() -> Response:
    """End the session, and every other session of the same staff member."""
    security.log_out()
    return redirect(url_for("merchant.login"))  # type: ignore[return-value]


# -- tabs -----------------------------------------------------------------------------------


@merchant.get("/")
@security.staff_required
def requests_tab() -> str:
    """Retouraanvragen: waiting and rejected requests, filtered by view and by a rule."""
    view = request.args.get("view", "all")
    rejected = _VIEWS.get(view)
    rule = request.args.get("rule", "").strip()
    cursor = request.args.get("cursor") or None
    desk = services().desk
    diagnostics: tuple[Diagnostic, ...] = ()
    page = Page((), None)
    count = "0"
    try:
        page = desk.requests_tab(
            g.shop_id, rejected=rejected, rule=rule or None, limit=25, cursor=cursor
        )
        count = str(desk.requests_count(g.shop_id, rejected=rejected, rule=rule or None))
    except RuleError as exc:
        diagnostics = tuple(exc.diagnostics)
    except InvalidInput:
        abort(400, description="That page of the tab does not exist (a stale cursor).")
    partial = bool(request.headers.get("HX-Request"))
    return _render(
        "tab_partial.html" if partial else "tab.html",
        oob=partial,
        page=page,
        count=count,
        view=view,
        rule=rule,
        diagnostics=diagnostics,
        presets=_presets(),
        version=rule_version_of,
    )


def _listing(fetch: Callable[..., Page]) -> Page:
    """A page of a listing from the URL's cursor; a cursor it did not make is a 400."""
    try:
        return fetch(g.shop_id, limit=50, cursor=request.args.get("cursor") or None)
    except InvalidInput:
        abort(400, description="That page of the listing does not exist (a stale cursor).")


@merchant.get("/incoming")
@security.staff_required
def incoming() -> str:
    """Inkomende retourzendingen: approved returns, parcels expected or received."""
    page = _listing(services().desk.incoming_returns)
    return _render("listing.html", title="Incoming returns", page=page, tab="incoming")


@merchant.get("/history")
@security.staff_required
def history() -> str:
    """Finished returns, each with its audit trail and rules trace on its page."""
    page = _listing(services().desk.history_tab)
    return _render("listing.html", title="History", page=page, tab="history")


@merchant.get("/attention")
@security.staff_required
def attention() -> str:
    """Requests with an effect that failed for good."""
    page = _listing(services().desk.needing_attention)
    return _render("listing.html", title="Needs attention", page=page, tab="attention")


# -- one request ------------------------------------------------------------------------------


@merchant.get("/requests/<request_id>")
@security.staff_required
def detail(request_id: str) -> str:
    """A request: items and photos, decision forms, the audit trail and the rules trace."""
    found = _get(request_id)
    return _render(
        "detail.html",
        r=found,
        presets=_presets(),
        version=rule_version_of(found),
        mails=services().db.mails(g.shop_id, found.id),
        outbox=services().storage.outbox(g.shop_id, found.id),
    )


@merchant.get("/requests/<request_id>/photos/<key>")
@security.staff_required
def photo(request_id: str, key: str) -> Response:
    """A photo of one of this shop's requests."""
    found = _get(request_id)
    refs = {p.key: p for item in found.items for p in item.photos}
    if key not in refs:
        abort(404)
    try:
        data = services().photos.get(g.shop_id, key)
    except NotFound:
        abort(404)
    return Response(data, mimetype=refs[key].content_type)


@merchant.get("/requests/<request_id>/label.pdf")
@security.staff_required
def label(request_id: str) -> Response:
    """The return label of one of this shop's requests."""
    found = _get(request_id)
    if found.label is None:
        abort(404)
    return Response(
        found.label.document,
        mimetype=found.label.content_type,
        headers={"Content-Disposition": f'attachment; filename="{found.label.filename}"'},
    )


def _command(request_id: str, run: Callable[[], object], done: str) -> Response:
    """Run one command on a request; a refusal is told to the merchant, not raised."""
    _get(request_id)
    try:
        run()
    except TransitionNotAllowed as exc:
        flash(f"Not done: the request is {exc.status} now.", "error")
    except RetouraanvraagError as exc:
        flash(f"Not done: {exc}", "error")
    else:
        flash(done, "ok")
    return _back(request_id)


@merchant.post("/requests/<request_id>/approve")
@security.staff_required
def approve(request_id: str) -> Response:
    """✓ with or without a label, optionally refunding the return fee."""
    with_label = request.form.get("with_label", "yes") == "yes"
    refund = request.form.get("refund") == "yes"
    return _command(
        request_id,
        lambda: services().desk.approve(
            g.shop_id,
            request_id,
            with_label=with_label,
            refund_return_fee=refund,
            actor=g.staff,
            idempotency_key=_key(),
        ),
        "Approved " + ("with a label." if with_label else "without a label."),
    )


@merchant.post("/requests/<request_id>/reject")
@security.staff_required
def reject(request_id: str) -> Response:
    """✗ with a preset reason (nl/en) or the merchant's own text."""
    _get(request_id)
    reason = _reason_from_form()
    if reason is None:
        flash("Not done: choose a reason or write one.", "error")
        return _back(request_id)
    return _command(
        request_id,
        lambda: services().desk.reject(
            g.shop_id, request_id, reason=reason, actor=g.staff, idempotency_key=_key()
        ),
        "Rejected.",
    )


@merchant.post("/requests/<request_id>/receive")
@security.staff_required
def receive(request_id: str) -> Response:
    """The parcel arrived."""
    return _command(
        request_id,
        lambda: services().desk.mark_received(
            g.shop_id, request_id, actor=g.staff, idempotency_key=_key()
        ),
        "Marked as received.",
    )


@merchant.post("/requests/<request_id>/complete")
@security.staff_required
def complete(request_id: str) -> Response:
    """The return is processed."""
    return _command(
        request_id,
        lambda: services().desk.complete(
            g.shop_id, request_id, actor=g.staff, idempotency_key=_key()
        ),
        "Completed.",
    )


@merchant.post("/requests/<request_id>/cancel")
@security.staff_required
def cancel(request_id: str) -> Response:
    """Withdraw the request (voids a label, refunds a paid fee)."""
    return _command(
        request_id,
        lambda: services().desk.cancel(
            g.shop_id, request_id, actor=g.staff, idempotency_key=_key()
        ),
        "Cancelled.",
    )


@merchant.post("/requests/<request_id>/resolve")
@security.staff_required
def resolve(request_id: str) -> Response:
    """Clear "needs attention": run the failed effects again, or mark them handled."""
    retry = request.form.get("retry") == "yes"
    return _command(
        request_id,
        lambda: services().desk.resolve_attention(
            g.shop_id, request_id, actor=g.staff, retry=retry
        ),
        "The failed effects go again." if retry else "Marked as handled.",
    )


# -- bulk -----------------------------------------------------------------------------------


@merchant.post("/bulk")
@security.staff_required
def bulk() -> str | tuple[str, int]:
    """Approve or reject the selected requests, each on its own; a result per request."""
    ids = request.form.getlist("ids")
    action = request.form.get("action", "")
    reason = _reason_from_form() if action == Decision.REJECT else None
    try:
        results = services().desk.decide_many(
            g.shop_id,
            ids,
            decision=action,
            actor=g.staff,
            refund_return_fee=action != Decision.REJECT and request.form.get("refund") == "yes",
            reason=reason,
            idempotency_key=_key(),
        )
    except InvalidInput as exc:
        return _render("bulk.html", rows=[], error=exc.problem, field=exc.field), 400
    rows = [
        (request_id, result, None)
        if isinstance(result, ReturnRequest)
        else (request_id, None, type(result).__name__)
        for request_id, result in results.items()
    ]
    return _render("bulk.html", rows=rows, error=None, field=None)


def _presets() -> tuple[Reason, ...]:
    return _shop().reject_reasons


def _reason_from_form() -> str | Reason | None:
    """The reason chosen: a preset's code, or ``own`` for the text box; ``None`` if neither."""
    choice = request.form.get("preset", "own")
    if choice == "own":
        return request.form.get("reason", "").strip() or None
    try:
        return _shop().settings.reject_reason(choice)
    except UnknownReason:
        return None


# -- events ---------------------------------------------------------------------------------


@merchant.get("/events")
@security.staff_required
def events() -> str:
    """The events the shop's webhook received for this shop, newest first."""
    try:
        found = services().db.events(
            g.shop_id, limit=_EVENTS_PAGE + 1, after=request.args.get("cursor") or None
        )
    except InvalidInput:
        abort(400, description="That page of the events does not exist (a stale cursor).")
    more = len(found) > _EVENTS_PAGE
    shown = found[:_EVENTS_PAGE]
    return _render(
        "events.html",
        events=shown,
        next_cursor=shown[-1].cursor if more else None,
        subscribed=services().events is not None,
    )


# -- mails ----------------------------------------------------------------------------------


@merchant.get("/mails")
@security.staff_required
def mails() -> str:
    """Every mail the shop sent, newest first."""
    sent = services().db.mails(g.shop_id)
    return _render("mails.html", mails=sent, subjects=_subjects())


def _subjects() -> dict[str, tuple[str, list[str]]]:
    """Subject and attachment names per Message-ID, read from the shop's Maildir."""
    box = services().mail.box(g.shop_id)
    if not box.path.exists():
        return {}
    out = {}
    for message in box.messages():
        names = [a.get_filename() or "attachment" for a in message.iter_attachments()]
        out[str(message["Message-ID"])] = (str(message["Subject"]), names)
    return out


def _message(message_id: str) -> EmailMessage:
    if services().db.mail(g.shop_id, message_id) is None:
        abort(404)
    message = services().mail.message(g.shop_id, message_id)
    if message is None:
        abort(404)
    return message


@merchant.get("/mails/<path:message_id>/html")
@security.staff_required
def mail_html(message_id: str) -> Response:
    """A mail's HTML part, for a sandboxed frame: nothing in it can run."""
    body = _message(message_id).get_body(preferencelist=("html",))
    html = body.get_content() if body is not None else ""
    response = Response(html, mimetype="text/html")
    response.headers["Content-Security-Policy"] = security.MAIL_CONTENT_SECURITY_POLICY
    return response


@merchant.get("/mails/<path:message_id>/attachments/<int:number>")
@security.staff_required
def attachment(message_id: str, number: int) -> Response:
    """One attachment of a mail (the return label)."""
    parts = list(_message(message_id).iter_attachments())
    if not 0 <= number < len(parts):
        abort(404)
    part = parts[number]
    name = part.get_filename() or "attachment"
    return Response(
        part.get_content(),
        mimetype=part.get_content_type(),
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@merchant.get("/mails/<path:message_id>")
@security.staff_required
def mail(message_id: str) -> str:
    """One mail as the customer received it: headers, text, HTML and attachments."""
    message = _message(message_id)
    sent = services().db.mail(g.shop_id, message_id)
    text = message.get_body(preferencelist=("plain",))
    parts = [
        (i, a.get_filename() or "attachment", a.get_content_type(), len(a.get_content()))
        for i, a in enumerate(message.iter_attachments())
    ]
    return _render(
        "mail.html",
        message=message,
        sent=sent,
        message_id=message_id,
        text=text.get_content() if text is not None else "",
        attachments=parts,
    )


# -- rules ----------------------------------------------------------------------------------


def _diagnostic_json(d: Diagnostic) -> dict[str, Any]:
    return {
        "line": d.line,
        "column": d.column,
        "severity": d.severity.value,
        "message": d.message,
        "suggestion": d.hint,
        "code": d.stable_code,
        "kind": d.code,
        "source_line": d.source_line,
    }


def _check(text: str) -> tuple[rules.RuleSet | None, tuple[Diagnostic, ...]]:
    try:
        ruleset = services().parse_rules(g.shop_id, text)
    except RuleError as exc:
        return None, tuple(exc.diagnostics)
    return ruleset, ruleset.warnings


@merchant.post("/rules/diagnostics")
@security.staff_required
def diagnostics() -> Response:
    """The rule text's diagnostics as JSON: line, column, message, suggestion, code."""
    text = request.form.get("text")
    if text is None:
        payload = request.get_json(silent=True)
        text = payload.get("text") if isinstance(payload, dict) else None
    if not isinstance(text, str):
        abort(400, description="Send the rule text as the form field or JSON key 'text'.")
    _ruleset, found = _check(text)
    errors = [d for d in found if d.severity is Severity.ERROR]
    return jsonify(
        {
            "ok": not errors,
            "diagnostics": [_diagnostic_json(d) for d in found],
        }
    )


@merchant.route("/rules", methods=["GET", "POST"])
@security.staff_required
def rules_editor() -> str | tuple[str, int]:
    """The rule file: check, format, translate nl ↔ en, explain on a request, save."""
    db = services().db
    current = db.current_rules(g.shop_id)
    text = request.form.get("text", current.text if current else "")
    action = request.form.get("action", "") if request.method == "POST" else ""
    ruleset, found = _check(text)
    explanation = None
    message = None
    status = 200
    chosen = request.form.get("request_id", "") or request.args.get("explain", "")
    # Another shop's (or an unknown) request is a 404 before any action runs: nothing saved.
    target = _get(chosen) if chosen else None
    if request.method == "GET" and target is not None and ruleset is not None:
        explanation = ruleset.explain(target)
    if action in {"format", "nl", "en"} and ruleset is not None:
        text = rules.format(ruleset, language=None if action == "format" else action)
        ruleset, found = _check(text)
        message = "Formatted." if action == "format" else f"Translated to {action}."
    elif action == "save" and ruleset is not None:
        version = db.save_rules(g.shop_id, text, g.staff, services().clock.now())
        message = f"Saved as version {version}; new requests are decided by it."
    elif action == "explain" and ruleset is not None and target is not None:
        explanation = ruleset.explain(target)
    elif action and ruleset is None:
        message = "The rules have errors; nothing was done."
        status = 422
    recent = _recent()
    if target is not None and target.id not in {r.id for r in recent}:
        recent.insert(0, target)
    page = _render(
        "rules.html",
        text=text,
        diagnostics=found,
        versions=db.rule_versions(g.shop_id),
        explanation=explanation,
        message=message,
        recent=recent,
        chosen=chosen,
    )
    return page, status


def _recent() -> list[ReturnRequest]:
    """Requests to explain the rules on: the newest of every tab."""
    desk = services().desk
    found: list[ReturnRequest] = []
    for listing in (desk.requests_tab, desk.incoming_returns, desk.history_tab):
        found.extend(listing(g.shop_id, limit=20).items)
    return sorted(found, key=lambda r: r.created_at, reverse=True)[:30]


@merchant.app_template_filter("when")
def _when(moment: dt.datetime | None) -> str:
    if moment is None:
        return "—"
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
