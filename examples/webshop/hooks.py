"""The shop's own webhook: the events its dispatcher posts, received as a host would.

``POST /hooks/events`` takes what the library's ``WebhookSink`` sends. It is exempt from the
CSRF check (no browser posts here; the signature proves who sent it), checks the signature
over the raw body with ``verify_signature`` and the app's ``WEBHOOK_SECRET`` before it parses
anything, keeps each event key once, and answers:

- ``200`` with ``{"recorded": true}`` for a new event, ``{"recorded": false}`` for a repeat
  (delivery is at least once: a retry after a lost answer is done already);
- ``400`` for a missing, forged or expired signature, or a body that is not an event, and
  ``422`` for an event of a shop this app does not serve: the sink gives those up for good,
  and the request needs attention;
- ``411`` without a ``Content-Length``, ``413`` for a body past :data:`MAX_EVENT_BYTES`,
  unread.

Refusals are logged by the event id the request claims and the reason, never the body.
"""

from __future__ import annotations

import logging
import re
from typing import Final

from flask import Blueprint, Response, current_app, jsonify, request

from retouraanvraag import InvalidInput
from retouraanvraag.adapters.webhook import EVENT_ID_HEADER, SIGNATURE_HEADER, parse_event
from retouraanvraag.adapters.webhook import verify_signature as verify
from retouraanvraag.errors import InvalidSignature

from .app import services

log = logging.getLogger("webshop")

hooks = Blueprint("hooks", __name__, url_prefix="/hooks")

#: The largest event body read (an event of a request with many items is a few KiB).
MAX_EVENT_BYTES: Final = 256 * 1024
#: What an event id looks like in a log line; anything else is logged as ``-``.
_LOGGABLE_ID: Final = re.compile(r"[A-Za-z0-9:%._~-]{1,300}")


def _claimed_id() -> str:
    """The event id the request's header claims, when it is safe to log."""
    claimed = request.headers.get(EVENT_ID_HEADER, "")
    return claimed if _LOGGABLE_ID.fullmatch(claimed) else "-"


def _refuse(status: int, problem: str) -> Response:
    log.warning(
        "webhook refused",
        extra={"event_id": _claimed_id(), "status": status, "problem": problem},
    )
    return Response(problem + "\n", status=status, mimetype="text/plain")


@hooks.post("/events")
def events() -> Response:
    """Receive one signed event; keep it once."""
    if request.content_length is None:
        return _refuse(411, "send the event with a Content-Length")
    if request.content_length > MAX_EVENT_BYTES:
        return _refuse(413, f"send the event with a Content-Length of at most {MAX_EVENT_BYTES}")
    body = request.get_data(cache=False)
    try:
        verify(current_app.config["WEBHOOK_SECRET"], request.headers.get(SIGNATURE_HEADER), body)
    except InvalidSignature as exc:
        return _refuse(400, f"the signature does not verify: {exc.reason}")
    try:
        event = parse_event(body)
    except InvalidInput as exc:
        return _refuse(400, f"the body is not an event (at {exc.field or 'the top'})")
    if event.shop_id not in services().shops:
        return _refuse(422, "the event is of a shop this app does not serve")
    recorded = services().db.record_event(event, body.decode("utf-8"), services().clock.now())
    log.info(
        "event received" if recorded else "event received again; kept once",
        extra={"event_id": event.key, "shop_id": event.shop_id, "request_id": event.request_id},
    )
    return jsonify({"recorded": recorded})
