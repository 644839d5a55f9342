"""Events for the host: what turning them on costs, and what the webhook adds to a POST.

1. ``Desk`` submit + approve (with label) on a SQLite file, events off against events on:
   each command's commit carries one more outbox row (synchronous FULL, as shipped).
2. The webhook: ``WebhookSink.deliver`` (JSON, HMAC-SHA256, one connection per event) against
   what a good engineer would write by hand for the same receiver: the event's JSON made once
   beforehand, one ``hmac.new`` and one ``http.client`` POST per event. The receiver is
   ``http.server`` on loopback, answering ``204``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import http.client
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from retouraanvraag import Desk, Money
from retouraanvraag.adapters.sqlite import SqliteStorage
from retouraanvraag.adapters.webhook import SIGNATURE_HEADER, WebhookSink, event_body
from retouraanvraag.model import Customer, Event
from retouraanvraag.testing import FixedClock
from retouraanvraag.testing.event_contract import sample_event
from retouraanvraag.workflow import NewItem, NewRequest

REQUESTS = 200
EVENTS = 300
ROUNDS = 5
SECRET = b"whsec_0123456789abcdef0123456789"
NOW = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)


def _submission(serial: int) -> NewRequest:
    return NewRequest(
        shop_id="shop-1",
        order_number=f"{1000 + serial}",
        customer=Customer("jan@example.nl", "Jan Jansen"),
        from_country="NL",
        order_value=Money(5995),
        items=(NewItem("TS-M", "T-shirt", 1, Money(1995), "Te klein"),),
    )


def desk_round(folder: Path, *, events: bool) -> tuple[float, float]:
    """Wall and CPU seconds for REQUESTS submissions and approvals on a fresh file.

    The wall time is mostly the fsync of each commit, which a shared machine makes noisy; the
    CPU time is the work the library and SQLite do, which the extra outbox row adds to.
    """
    with SqliteStorage(folder / f"returns-{events}-{time.monotonic_ns()}.sqlite3") as storage:
        desk = Desk(storage, clock=FixedClock(NOW), events=events)
        started, cpu = time.perf_counter(), time.process_time()
        for serial in range(REQUESTS):
            request = desk.submit(_submission(serial))
            desk.approve("shop-1", request.id, with_label=True, actor="anna")
        return time.perf_counter() - started, time.process_time() - cpu


class _Quiet(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_args: object) -> None:
        return


def by_hand(port: int, body: bytes, event: Event) -> Callable[[], None]:
    """One signed POST of a body made beforehand: the baseline."""

    def post() -> None:
        stamp = int(time.time())
        signature = hmac.new(SECRET, b"%d." % stamp + body, hashlib.sha256).hexdigest()
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            connection.request(
                "POST",
                "/hooks",
                body=body,
                headers={
                    "Content-Type": "application/json",
                    SIGNATURE_HEADER: f"t={stamp},v1={signature}",
                    "Retouraanvraag-Event-Id": event.key,
                },
            )
            connection.getresponse()
        finally:
            connection.close()

    return post


def timed(work: Callable[[], None]) -> float:
    started = time.perf_counter()
    for _ in range(EVENTS):
        work()
    return time.perf_counter() - started


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-events-", dir=Path.cwd()) as name:
        folder = Path(name)
        desk_round(folder, events=True)  # warm up: imports, caches, the file system
        # Interleaved, so that a busy moment of the machine falls on both sides alike.
        rounds = [(desk_round(folder, events=False), desk_round(folder, events=True))]
        rounds += [
            (desk_round(folder, events=False), desk_round(folder, events=True))
            for _ in range(ROUNDS - 1)
        ]
    print(f"Desk submit + approve (with label) of {REQUESTS} requests, median of {ROUNDS}")
    print("\n| case | wall µs/request | ratio | CPU µs/request | ratio |")
    print("|---|---:|---:|---:|---:|")
    for label, side in (("events off", 0), ("events on (one more outbox row per command)", 1)):
        wall = statistics.median(r[side][0] for r in rounds) / REQUESTS * 1e6
        cpu = statistics.median(r[side][1] for r in rounds) / REQUESTS * 1e6
        wall_off = statistics.median(r[0][0] for r in rounds) / REQUESTS * 1e6
        cpu_off = statistics.median(r[0][1] for r in rounds) / REQUESTS * 1e6
        print(
            f"| {label} | {wall:,.0f} | {wall / wall_off:.2f}x | {cpu:,.0f} | "
            f"{cpu / cpu_off:.2f}x |"
        )

    server = ThreadingHTTPServer(("127.0.0.1", 0), _Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    event = sample_event()
    sink = WebhookSink(f"http://127.0.0.1:{port}/hooks", SECRET, timeout=10)
    try:
        hand = statistics.median(
            timed(by_hand(port, event_body(event), event)) for _ in range(ROUNDS)
        )
        ours = statistics.median(timed(lambda: sink.deliver(event)) for _ in range(ROUNDS))
    finally:
        server.shutdown()
        server.server_close()
    print(f"\nWebhook: {EVENTS} events posted to http.server on loopback, median of {ROUNDS}")
    print("\n| case | µs/event | ratio |")
    print("|---|---:|---:|")
    hand_us, ours_us = hand / EVENTS * 1e6, ours / EVENTS * 1e6
    print(f"| by hand: body made beforehand, hmac + http.client | {hand_us:,.0f} | 1.00x |")
    print(f"| WebhookSink.deliver (JSON, signature, POST) | {ours_us:,.0f} | {ours / hand:.2f}x |")


if __name__ == "__main__":
    main()
