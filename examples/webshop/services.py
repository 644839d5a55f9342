"""How the shop wires the library: one desk and one dispatcher for every shop.

Each shop has its policy (zone, reasons, window) and its current rule version; mails go to a
Maildir per shop and are indexed so the merchant's pages can show them per request.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import os
import secrets
import threading
from collections.abc import Mapping
from email.message import EmailMessage
from pathlib import Path

from retouraanvraag import (
    Clock,
    Desk,
    Dispatcher,
    Mail,
    MailRenderer,
    Policy,
    PortRejected,
    ReturnRequest,
    rules,
)
from retouraanvraag.adapters.files import DirectoryPhotoStore
from retouraanvraag.adapters.maildir import MaildirTransport
from retouraanvraag.adapters.sqlite import SqliteStorage
from retouraanvraag.adapters.webhook import WebhookSink
from retouraanvraag.ports import SystemClock

from .config import ShopConfig
from .store import DemoCarrier, DemoPayments, SentMail, ShopDatabase

log = logging.getLogger("webshop")


def rule_version_of(request: ReturnRequest) -> str | None:
    """The rule version that decided the request, as its history records it.

    The rules are loaded with ``rules.parse(…, version=N)``, so the desk records the version
    on the history entry of the decision (or of the submission, when the request waits for
    review); the latest such entry names the version that saw the request last.
    """
    for entry in reversed(request.history):
        if entry.rules_version is not None:
            return entry.rules_version
    return None


class ShopMail:
    """Delivers each shop's mail into its own Maildir, and indexes it by request."""

    def __init__(self, root: Path, db: ShopDatabase, clock: Clock) -> None:
        """Maildirs go under ``root``; the index into ``db``."""
        self._root = root
        self._db = db
        self._clock = clock
        self._boxes: dict[str, MaildirTransport] = {}
        self._lock = threading.Lock()

    def box(self, shop_id: str) -> MaildirTransport:
        """The shop's Maildir."""
        with self._lock:
            if shop_id not in self._boxes:
                self._boxes[shop_id] = MaildirTransport(self._root / shop_id)
            return self._boxes[shop_id]

    def send(self, key: str, mail: Mail) -> None:
        """Deliver under ``key`` into the Maildir of the shop the mail names, once.

        Raises:
            PortRejected: the mail names no shop (the renderer always fills it in).
        """
        shop_id = mail.shop_id
        if not shop_id:
            raise PortRejected(f"{key}: the mail names no shop")
        self.box(shop_id).send(key, mail)
        self._db.record_mail(
            SentMail(mail.message_id, key, shop_id, mail.request_id, mail.kind, self._clock.now())
        )

    def message(self, shop_id: str, message_id: str) -> EmailMessage | None:
        """The delivered message with this Message-ID, from the shop's Maildir."""
        box = self.box(shop_id)
        if not box.path.exists():
            return None
        for message in box.messages():
            if message["Message-ID"] == message_id:
                return message
        return None


class Services:
    """The library and its adapters, wired once for the whole app.

    Args:
        data: the folder of the SQLite files, Maildirs and photos.
        shops: the shops served.
        clock: the time source (the system's by default).
        webhook_url: where the shop's own events go (its ``/hooks/events``, on the address the
            server listens on). With it, the desk runs with events on and the dispatcher
            delivers them with a :class:`WebhookSink` signed by :attr:`webhook_secret`;
            without it, events are off.
    """

    def __init__(
        self,
        data: Path,
        shops: Mapping[str, ShopConfig],
        *,
        clock: Clock | None = None,
        webhook_url: str | None = None,
    ) -> None:
        """Open the stores and wire the desk and the dispatcher."""
        data.mkdir(parents=True, exist_ok=True)
        self.data = data
        self.shops = shops
        self.clock: Clock = clock or SystemClock()
        #: The secret the shop's events are signed with and its webhook verifies.
        self.webhook_secret = data_key(data / "webhook.key")
        self.events: WebhookSink | None = None
        if webhook_url is not None:
            self.events = WebhookSink(webhook_url, self.webhook_secret, timeout=10)
        self.storage = SqliteStorage(data / "returns.sqlite3")
        self.db = ShopDatabase(data / "shop.sqlite3")
        self.photos = DirectoryPhotoStore(data / "photos")
        self.carrier = DemoCarrier(self.db)
        self.payments = DemoPayments(self.db)
        self.mail = ShopMail(data / "mail", self.db, self.clock)
        self.desk = Desk(
            self.storage,
            photos=self.photos,
            policy=self.policy,
            clock=self.clock,
            events=self.events is not None,
        )
        self.dispatcher = Dispatcher(
            self.storage,
            labels=self.carrier,
            payments=self.payments,
            mail=self.mail,
            renderer=MailRenderer(shops={shop.id: shop.settings for shop in shops.values()}),
            events=self.events,
            clock=self.clock,
            backoff=dt.timedelta(seconds=2),
            backoff_cap=dt.timedelta(minutes=5),
            max_attempts=5,
        )
        for shop in shops.values():
            if self.db.current_rules(shop.id) is None:
                self.db.save_rules(shop.id, shop.rules, "seed", self.clock.now())

    def policy(self, shop_id: str) -> Policy:
        """The shop's policy with its current rule version."""
        current = self.db.current_rules(shop_id)
        version, text = (current.version, current.text) if current else (0, "")
        return _policy(self.shops[shop_id], version, text)

    def rules_of(self, shop_id: str) -> rules.RuleSet | None:
        """The shop's current rules, if it has any (their ``version`` is the saved one's)."""
        evaluator = self.policy(shop_id).rules
        return evaluator if isinstance(evaluator, rules.RuleSet) else None

    def parse_rules(self, shop_id: str, text: str) -> rules.RuleSet:
        """Load ``text`` as this shop's rules.

        Raises:
            RuleError: the text has errors.
        """
        return rules.parse(text, shop=self.shops[shop_id].settings, source_name="regels.txt")

    def start_worker(self, *, poll: float = 0.5) -> tuple[threading.Thread, threading.Event]:
        """Run the dispatcher in a daemon thread until the returned event is set."""
        stop = threading.Event()
        thread = threading.Thread(
            target=self.dispatcher.run_worker,
            args=(stop,),
            kwargs={"poll": poll},
            name="dispatcher",
            daemon=True,
        )
        thread.start()
        return thread, stop

    def close(self) -> None:
        """Close the stores."""
        self.storage.close()
        self.db.close()


def data_key(path: Path) -> str:
    """A random key kept in the data folder (made on first use), so that it outlives a restart."""
    try:  # readable by the owner only from its first byte on
        made = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(made, "w") as file:
            file.write(secrets.token_urlsafe(48))
    return path.read_text().strip()


@functools.lru_cache(maxsize=64)
def _policy(shop: ShopConfig, version: int, text: str) -> Policy:
    evaluator = None
    if text.strip():
        evaluator = rules.parse(
            text, shop=shop.settings, source_name="regels.txt", version=str(version)
        )
    return Policy(
        manual_approval=shop.manual_approval,
        return_window_days=shop.return_window_days,
        shop=shop.settings,
        rules=evaluator,
    )
