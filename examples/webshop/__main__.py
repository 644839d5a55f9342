"""``python -m webshop``: serve the reference shop on loopback with a dispatcher beside it.

The dispatcher posts the shop's events, signed, to the shop's own webhook on the port served.
"""

from __future__ import annotations

import argparse
import logging
import shutil
from pathlib import Path

from werkzeug.serving import WSGIRequestHandler

from .config import SHOPS
from .server import HOOK_PATH, start


class PathOnlyLog(WSGIRequestHandler):
    """Logs each request by method, path and status: a query string (the merchant's typed
    rule filter, which may quote an e-mail address) stays out of the log."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """One line per request, without its query string."""
        path = self.path.partition("?")[0]
        self.log("info", '"%s %s" %s %s', self.command, path, code, size)


def main() -> None:
    """Parse the command line; serve, seed a fresh data folder and run the worker."""
    parser = argparse.ArgumentParser(prog="webshop", description=__doc__)
    parser.add_argument("--data", type=Path, default=Path("var/webshop"))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--reset", action="store_true", help="start from a fresh data folder")
    options = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if options.reset:
        shutil.rmtree(options.data, ignore_errors=True)
    try:
        shop = start(
            options.data, host=options.host, port=options.port, request_handler=PathOnlyLog
        )
    except OSError as exc:
        raise SystemExit(f"webshop: cannot listen on {options.host}:{options.port}: {exc}") from exc
    print(f"Reference shop on {shop.url}/  (data: {options.data})")
    for config in SHOPS.values():
        logins = ", ".join(f"{s.username} / {s.demo_password}" for s in config.staff)
        print(f"  {config.name}: portal /{config.id}/retour/, merchant /merchant/ ({logins})")
    print(f"  Events: the dispatcher posts them, signed, to {shop.url}{HOOK_PATH}")
    try:
        shop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        shop.stop()


if __name__ == "__main__":
    main()
