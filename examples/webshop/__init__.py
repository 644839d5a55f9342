"""The reference shop: a customer's return portal and a merchant's pages on retouraanvraag.

``make serve`` starts it on http://127.0.0.1:8000 over ``var/webshop/`` (SQLite files, Maildirs,
photos), with a dispatcher worker beside it that posts the shop's events to its own webhook
(``/hooks/events``, shown on the merchant's Events page). Build the app with
:func:`create_app`; :func:`webshop.server.start` runs it as ``make serve`` does.
"""

from __future__ import annotations

from .app import create_app

__all__ = ["create_app"]
