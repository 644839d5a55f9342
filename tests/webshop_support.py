"""Helpers shared by the reference shop's tests (Flask test client and browser)."""

from __future__ import annotations

import re
import struct
import sys
import zlib
from pathlib import Path

from flask import Flask
from flask.testing import FlaskClient

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
if str(EXAMPLES) not in sys.path:
    sys.path.insert(0, str(EXAMPLES))

from webshop import create_app, security  # noqa: E402
from webshop.app import MAX_SUBMISSION_LENGTH, _secret  # noqa: E402
from webshop.config import SHOPS  # noqa: E402
from webshop.seed import seed  # noqa: E402
from webshop.server import RunningShop, hook_url, start  # noqa: E402
from webshop.services import Services  # noqa: E402
from webshop.store import label_pdf  # noqa: E402

__all__ = [
    "MAX_SUBMISSION_LENGTH",
    "SHOPS",
    "RunningShop",
    "Services",
    "_secret",
    "build",
    "csrf",
    "hook_url",
    "label_pdf",
    "log_in",
    "photo_png",
    "security",
    "start",
]

_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


def build(data: Path) -> tuple[Flask, Services]:
    """A seeded app over ``data``; its dispatcher is run by the tests (no worker thread)."""
    services = Services(data, SHOPS)
    seed(services)
    app = create_app(data, services_=services, config={"TESTING": True})
    return app, services


def csrf(client: FlaskClient, path: str = "/") -> str:
    """The session's CSRF token, as a page of ``path`` carries it."""
    page = client.get(path).get_data(as_text=True)
    match = _TOKEN.search(page)
    assert match is not None, f"no CSRF token on {path}"
    return match.group(1)


def log_in(
    client: FlaskClient,
    username: str = "anna",
    password: str = "fiets-2026",  # noqa: S107 - the demo's seeded login
) -> None:
    """Log a staff member in through the form."""
    token = csrf(client, "/merchant/login")
    response = client.post(
        "/merchant/login",
        data={"username": username, "password": password, "csrf_token": token},
    )
    assert response.status_code == 302, response.get_data(as_text=True)


def photo_png(width: int = 160, height: int = 100) -> bytes:
    """A small striped PNG: a photo a merchant can see in a screenshot."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(
        b"\x00"
        + b"".join(
            bytes((200, 60, 40) if (x // 20 + y // 20) % 2 else (240, 200, 80))
            for x in range(width)
        )
        for y in range(height)
    )
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )
