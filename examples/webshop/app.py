"""The Flask application: the customer's return portal and the merchant's pages."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from flask import Flask, Response, current_app, render_template, request
from werkzeug.exceptions import HTTPException

from retouraanvraag import Money, Status, photos

from . import security
from .config import SHOPS, ShopConfig
from .services import Services, data_key

log = logging.getLogger("webshop")

#: The most photos a return may carry (the library's limit) and so the most file parts.
MAX_PHOTOS: Final = photos.MAX_PHOTOS_PER_REQUEST
#: A whole return submission: every photo at the library's limit, plus the form's fields.
MAX_SUBMISSION_LENGTH: Final = MAX_PHOTOS * photos.MAX_PHOTO_BYTES + 64 * 1024
#: Any other request's body (a rule file, a bulk selection, an event: far less). Anything
#: larger is refused before it is read, so that nobody, logged in or not, makes the app parse
#: a large upload; only the portal's submission view allows :data:`MAX_SUBMISSION_LENGTH`.
MAX_CONTENT_LENGTH: Final = 1024 * 1024
#: The views that take a return's photos.
_UPLOAD_VIEWS: Final = frozenset({"portal.submit"})
#: How long a session lasts after its last request (the portal's and a staff member's).
SESSION_LIFETIME: Final = dt.timedelta(hours=8)

STATUS_WORDS: Final[Mapping[str, Mapping[Status, str]]] = {
    "nl": {
        Status.REQUESTED: "Wacht op beoordeling",
        Status.APPROVED: "Goedgekeurd: stuur het pakket terug",
        Status.APPROVED_WITHOUT_RETURN: "Goedgekeurd: u hoeft niets terug te sturen",
        Status.REJECTED: "Afgewezen",
        Status.CANCELLED: "Geannuleerd",
        Status.RECEIVED: "Pakket ontvangen",
        Status.COMPLETED: "Afgehandeld",
    },
    "en": {
        Status.REQUESTED: "Waiting for review",
        Status.APPROVED: "Approved: send the parcel back",
        Status.APPROVED_WITHOUT_RETURN: "Approved: no need to send anything back",
        Status.REJECTED: "Rejected",
        Status.CANCELLED: "Cancelled",
        Status.RECEIVED: "Parcel received",
        Status.COMPLETED: "Completed",
    },
}


def services() -> Services:
    """The app's wired library."""
    found: Services = current_app.extensions["webshop"]
    return found


def shop_or_404(shop_id: str) -> ShopConfig:
    """The shop with this id, or a 404."""
    shop = services().shops.get(shop_id)
    if shop is None:
        from flask import abort  # noqa: PLC0415 - keeps the module's imports short

        abort(404)
    return shop


def _secret(data: Path) -> str:
    """The signing key: kept in the data folder so that status links outlive a restart."""
    return data_key(data / "secret.key")


def create_app(
    data: Path,
    *,
    shops: Mapping[str, ShopConfig] = SHOPS,
    services_: Services | None = None,
    config: Mapping[str, Any] | None = None,
) -> Flask:
    """Build the app over the data folder ``data`` (made when missing).

    Args:
        data: where the SQLite files, Maildirs, photos and signing key live.
        shops: the shops served.
        services_: an already wired library (tests); made from ``data`` otherwise.
        config: Flask settings that replace the defaults (``WEBHOOK_SECRET``, the secret the
            shop's webhook verifies events with, is the services' ``webhook_secret`` unless
            given).
    """
    data.mkdir(parents=True, exist_ok=True)
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=_secret(data),
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=False,  # served on loopback over plain HTTP; True behind TLS
        MAX_CONTENT_LENGTH=MAX_CONTENT_LENGTH,
        PERMANENT_SESSION_LIFETIME=SESSION_LIFETIME,
        MAX_FORM_MEMORY_SIZE=64 * 1024,
        MAX_FORM_PARTS=200,
        TEMPLATES_AUTO_RELOAD=False,
    )
    app.config.update(config or {})
    app.extensions["webshop"] = services_ or Services(data, shops)
    # The shop's webhook verifies with the secret its dispatcher signs with.
    app.config.setdefault("WEBHOOK_SECRET", app.extensions["webshop"].webhook_secret)
    app.jinja_env.autoescape = True
    app.jinja_env.globals.update(
        csrf_token=security.csrf_token,
        csrf_field=security.CSRF_FIELD,
        status_words=STATUS_WORDS,
        money=_money,
    )
    app.before_request(_body_limit)  # before the CSRF check reads the form
    app.before_request(security.check_csrf)
    app.after_request(security.secure_headers)
    app.register_error_handler(HTTPException, _error_page)

    from .hooks import hooks  # noqa: PLC0415 - the blueprints import this module
    from .merchant import merchant  # noqa: PLC0415
    from .portal import portal  # noqa: PLC0415

    app.register_blueprint(portal)
    app.register_blueprint(merchant)
    app.register_blueprint(hooks)

    @app.get("/")
    def index() -> str:
        return render_template("index.html", shops=services().shops.values())

    return app


def _body_limit() -> None:
    """Let the views that take photos read a whole submission; every other the small limit."""
    if request.endpoint in _UPLOAD_VIEWS:
        request.max_content_length = MAX_SUBMISSION_LENGTH


def _money(value: Money | None, language: str = "nl") -> str:
    return value.format(language) if value is not None else "—"


def _error_page(error: HTTPException) -> tuple[str, int] | Response:
    code = error.code or 500
    if code >= 500:  # server errors are logged, by path only
        log.error("server error", extra={"path": request.path, "status": code})
    if code == 413 and request.endpoint in _UPLOAD_VIEWS:  # the upload limit
        description = (
            f"The upload is too large: at most {MAX_PHOTOS} photos of "
            f"{photos.MAX_PHOTO_BYTES // (1024 * 1024)} MiB each."
        )
    elif code == 413:
        description = (
            f"The request is too large: at most {MAX_CONTENT_LENGTH // (1024 * 1024)} MiB here."
        )
    else:
        description = error.description or error.name
    if request.headers.get("HX-Request"):
        return Response(description, status=code, mimetype="text/plain")
    return render_template("error.html", code=code, name=error.name, description=description), code
