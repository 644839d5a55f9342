"""Web security as a shop needs it: CSRF tokens, signed status links, headers, logins."""

from __future__ import annotations

import functools
import hmac
import secrets
from collections.abc import Callable
from typing import Final, ParamSpec, TypeVar

from flask import Flask, Response, abort, current_app, g, redirect, request, session, url_for
from itsdangerous import BadSignature, URLSafeSerializer

from .store import ShopDatabase

CSRF_FIELD: Final = "csrf_token"
CSRF_HEADER: Final = "X-CSRF-Token"
_UNSAFE: Final = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: Endpoints no browser posts to: they prove who sends by a signature, not a session.
CSRF_EXEMPT: Final = frozenset({"hooks.events"})

#: No inline script or style anywhere: htmx is configured by a meta tag and attributes.
CONTENT_SECURITY_POLICY: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-src 'self'; frame-ancestors 'self'; "
    "base-uri 'none'"
)
#: For a mail's HTML shown in a frame: its own inline styles, nothing that runs.
MAIL_CONTENT_SECURITY_POLICY: Final = (
    "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'self'"
)

P = ParamSpec("P")
R = TypeVar("R")


def csrf_token() -> str:
    """The session's CSRF token (made on first use)."""
    token = session.get(CSRF_FIELD)
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        session[CSRF_FIELD] = token
    return token


def check_csrf() -> None:
    """Refuse an unsafe request without the session's token (form field or header)."""
    if request.method not in _UNSAFE or request.endpoint in CSRF_EXEMPT:
        return
    expected = session.get(CSRF_FIELD)
    sent = request.headers.get(CSRF_HEADER) or request.form.get(CSRF_FIELD, "")
    if not isinstance(expected, str) or not hmac.compare_digest(expected, sent):
        abort(400, description="The form's security token is missing or out of date.")


def secure_headers(response: Response) -> Response:
    """The headers every page gets (a mail frame keeps its stricter policy)."""
    response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers.setdefault("X-Frame-Options", "SAMEORIGIN")
    return response


def _links(app: Flask) -> URLSafeSerializer:
    return URLSafeSerializer(app.config["SECRET_KEY"], salt="status-link")


def status_token(app: Flask, shop_id: str, request_id: str) -> str:
    """A signed token naming one request of one shop: the customer's status link."""
    return str(_links(app).dumps([shop_id, request_id]))


def read_status_token(app: Flask, shop_id: str, token: str) -> str | None:
    """The request id a status token names, if it is genuine and for this shop."""
    try:
        value = _links(app).loads(token)
    except BadSignature:
        return None
    if (
        isinstance(value, list)
        and len(value) == 2  # shop and request
        and value[0] == shop_id
        and isinstance(value[1], str)
    ):
        return value[1]
    return None


def _shop_db() -> ShopDatabase:
    found: ShopDatabase = current_app.extensions["webshop"].db
    return found


def log_in(username: str, shop_id: str) -> None:
    """Start a fresh session for the staff member (a new CSRF token with it).

    The session carries the staff member's login generation and lasts
    ``PERMANENT_SESSION_LIFETIME`` from the last request; :func:`log_out` ends it early.
    """
    session.clear()
    session.permanent = True
    session["staff"] = username
    session["shop"] = shop_id
    session["generation"] = _shop_db().session_generation(username)
    csrf_token()


def log_out() -> None:
    """End every session of the staff member logged in here, and clear this one.

    The cookie is signed, not stored, so clearing it is not enough: a copy taken before would
    still open the pages. Moving the staff member's generation on makes every copy stale.
    """
    staff = session.get("staff")
    if isinstance(staff, str):
        _shop_db().end_sessions(staff)
    session.clear()


def staff_required(view: Callable[P, R]) -> Callable[P, R | Response]:
    """Let only a logged-in staff member in; ``g.staff`` and ``g.shop_id`` name them."""

    @functools.wraps(view)
    def wrapped(*args: P.args, **kwargs: P.kwargs) -> R | Response:
        staff, shop = session.get("staff"), session.get("shop")
        generation = session.get("generation")
        if (
            not isinstance(staff, str)
            or not isinstance(shop, str)
            or not isinstance(generation, int)
            or generation != _shop_db().session_generation(staff)
        ):
            for name in ("staff", "shop", "generation"):
                session.pop(name, None)
            return redirect(url_for("merchant.login", next=request.path))  # type: ignore[return-value]
        g.staff = staff
        g.shop_id = shop
        return view(*args, **kwargs)

    return wrapped
