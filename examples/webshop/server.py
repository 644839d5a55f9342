"""Run the shop: the web server, and the dispatcher posting the shop's events to it.

The shop subscribes to its own events, so its webhook URL is the address the server really
listens on. The socket is bound first (port 0 picks a free one), the URL made from its
address, and only then are the desk and the dispatcher wired with events on. The server
answers before the data folder is seeded, because seeding runs the dispatcher, which posts
the seeded requests' events to it.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Mapping
from pathlib import Path

import attrs
from flask import Flask
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from .app import create_app
from .config import SHOPS, ShopConfig
from .seed import seed
from .services import Services

#: Where the shop's webhook is mounted (``hooks.events``).
HOOK_PATH = "/hooks/events"


@attrs.define
class RunningShop:
    """A shop serving on loopback (or wherever it was bound), with its worker if asked."""

    url: str
    app: Flask
    services: Services
    _server: BaseWSGIServer
    _thread: threading.Thread
    _stop_worker: threading.Event | None

    def wait(self) -> None:
        """Block until the server stops (Ctrl-C raises ``KeyboardInterrupt`` here)."""
        while self._thread.is_alive():
            self._thread.join(0.5)

    def stop(self) -> None:
        """Stop the worker and the server, and close the stores."""
        if self._stop_worker is not None:
            self._stop_worker.set()
        self._server.shutdown()
        self._thread.join()
        self._server.server_close()
        self.services.close()


def hook_url(address: tuple[str, int] | tuple[str, int, int, int]) -> str:
    """The webhook's URL on a listening socket's address; "every interface" means loopback."""
    host, port = address[0], address[1]
    ip = ipaddress.ip_address(host)
    if ip.is_unspecified:
        ip = ipaddress.ip_address("::1" if ip.version == 6 else "127.0.0.1")
    shown = f"[{ip}]" if ip.version == 6 else str(ip)
    return f"http://{shown}:{port}{HOOK_PATH}"


def start(
    data: Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    shops: Mapping[str, ShopConfig] = SHOPS,
    worker: bool = True,
    poll: float = 0.5,
    request_handler: type[WSGIRequestHandler] | None = None,
) -> RunningShop:
    """Bind, wire the library with the shop's own webhook, serve, seed, start the worker.

    Args:
        data: the data folder (made and seeded when new).
        host: the address to listen on.
        port: the port (``0``: a free one; the URL says which).
        shops: the shops served.
        worker: run the dispatcher in a thread (tests run it themselves).
        poll: the worker's wait when nothing is due, in seconds.
        request_handler: the server's request logging.

    Raises:
        OSError: the address cannot be bound (a port in use, say).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listening = socket.create_server((host, port), family=family)
    try:
        address = listening.getsockname()
        services = Services(data, shops, webhook_url=hook_url(address))
        app = create_app(data, shops=shops, services_=services)
        server = make_server(
            host,
            address[1],
            app,
            threaded=True,
            request_handler=request_handler,
            fd=listening.fileno(),
        )
    finally:
        listening.close()  # the server holds its own descriptor of the socket
    thread = threading.Thread(target=server.serve_forever, name="webshop", daemon=True)
    thread.start()
    seed(services)
    stop = services.start_worker(poll=poll)[1] if worker else None
    shown = f"[{address[0]}]" if family == socket.AF_INET6 else address[0]
    return RunningShop(f"http://{shown}:{address[1]}", app, services, server, thread, stop)
