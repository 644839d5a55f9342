"""``python -m webshop``: serve the reference shop on loopback with a dispatcher beside it."""

from __future__ import annotations

import argparse
import logging
import shutil
from pathlib import Path

from werkzeug.serving import WSGIRequestHandler, run_simple

from .app import create_app
from .config import SHOPS
from .seed import seed
from .services import Services


class PathOnlyLog(WSGIRequestHandler):
    """Logs each request by method, path and status: a query string (the merchant's typed
    rule filter, which may quote an e-mail address) stays out of the log."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """One line per request, without its query string."""
        path = self.path.partition("?")[0]
        self.log("info", '"%s %s" %s %s', self.command, path, code, size)


def main() -> None:
    """Parse the command line, seed a fresh data folder, run the worker and the server."""
    parser = argparse.ArgumentParser(prog="webshop", description=__doc__)
    parser.add_argument("--data", type=Path, default=Path("var/webshop"))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--reset", action="store_true", help="start from a fresh data folder")
    options = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if options.reset:
        shutil.rmtree(options.data, ignore_errors=True)
    services = Services(options.data, SHOPS)
    seed(services)
    app = create_app(options.data, services_=services)
    _thread, stop = services.start_worker()
    print(f"Reference shop on http://{options.host}:{options.port}/  (data: {options.data})")
    for shop in SHOPS.values():
        logins = ", ".join(f"{s.username} / {s.demo_password}" for s in shop.staff)
        print(f"  {shop.name}: portal /{shop.id}/retour/, merchant /merchant/ ({logins})")
    try:
        run_simple(options.host, options.port, app, threaded=True, request_handler=PathOnlyLog)
    finally:
        stop.set()
        services.close()


if __name__ == "__main__":
    main()
