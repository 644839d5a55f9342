"""The shop's own tables (beside the library's store): staff, rule versions, sent mails, and
the demo carrier and payment provider, which keep their state here so that a restart neither
forgets a payment nor makes a second label under a key.
"""

from __future__ import annotations

import datetime as dt
import secrets
import sqlite3
import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

import attrs
from werkzeug.security import check_password_hash, generate_password_hash

from retouraanvraag import Event, InvalidInput, Label, Money, PortRejected, ReturnRequest

_SCHEMA: Final = (
    """CREATE TABLE IF NOT EXISTS staff (
        username TEXT PRIMARY KEY, shop_id TEXT NOT NULL, password_hash TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS rule_versions (
        shop_id TEXT NOT NULL, version INTEGER NOT NULL, text TEXT NOT NULL,
        saved_at TEXT NOT NULL, saved_by TEXT NOT NULL, PRIMARY KEY (shop_id, version))""",
    """CREATE TABLE IF NOT EXISTS mails (
        message_id TEXT PRIMARY KEY, key TEXT NOT NULL UNIQUE, shop_id TEXT NOT NULL,
        request_id TEXT NOT NULL, kind TEXT NOT NULL, sent_at TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS mails_by_shop ON mails (shop_id, sent_at)",
    """CREATE TABLE IF NOT EXISTS labels (
        key TEXT PRIMARY KEY, carrier TEXT, tracking_number TEXT, document BLOB,
        voided INTEGER NOT NULL DEFAULT 0)""",
    """CREATE TABLE IF NOT EXISTS payments (
        reference TEXT PRIMARY KEY, amount INTEGER NOT NULL, currency TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS refunds (
        key TEXT PRIMARY KEY, reference TEXT NOT NULL, amount INTEGER NOT NULL,
        refund_reference TEXT NOT NULL)""",
    # The events the shop heard through its own webhook, once per event key.
    """CREATE TABLE IF NOT EXISTS events (
        key TEXT PRIMARY KEY, shop_id TEXT NOT NULL, request_id TEXT NOT NULL,
        type TEXT NOT NULL, version INTEGER NOT NULL, status TEXT NOT NULL, actor TEXT NOT NULL,
        occurred_at TEXT NOT NULL, received_at TEXT NOT NULL, body TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS events_by_shop ON events (shop_id, occurred_at, key)",
    # A staff member's login generation: a session cookie carries the one it was made in, and
    # logging out (or a new password) moves it on, so that older cookies stop working.
    """CREATE TABLE IF NOT EXISTS staff_sessions (
        username TEXT PRIMARY KEY, generation INTEGER NOT NULL)""",
    # Failed order lookups in the portal, one row per bucket (an order, a client address).
    "CREATE TABLE IF NOT EXISTS failed_lookups (bucket TEXT NOT NULL, at TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS failed_lookups_by_bucket ON failed_lookups (bucket, at)",
)


@attrs.frozen
class RuleVersion:
    """One saved version of a shop's rule file."""

    shop_id: str
    version: int
    text: str
    saved_at: dt.datetime
    saved_by: str


@attrs.frozen
class ReceivedEvent:
    """An event the shop received on its webhook, as the events page lists it."""

    key: str
    shop_id: str
    request_id: str
    type: str
    version: int
    status: str
    actor: str
    occurred_at: dt.datetime
    received_at: dt.datetime

    @property
    def cursor(self) -> str:
        """Where the page after this event starts (newest first)."""
        return f"{self.occurred_at.isoformat()}|{self.key}"


@attrs.frozen
class SentMail:
    """A mail the shop sent, as the mail index knows it (the message is in the Maildir)."""

    message_id: str
    key: str
    shop_id: str
    request_id: str
    kind: str
    sent_at: dt.datetime


class ShopDatabase:
    """The app's SQLite file: one connection shared by the threads, behind a lock."""

    def __init__(self, path: Path) -> None:
        """Open (and create) the file."""
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode = WAL")
        with self.transaction() as db:
            for statement in _SCHEMA:
                db.execute(statement)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction at a time."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._db.close()

    # -- staff --------------------------------------------------------------------------------

    def add_staff(self, username: str, shop_id: str, password: str) -> None:
        """Create (or replace) a staff login; only the password's hash is kept.

        Replacing a login ends its sessions: a cookie made before the new password is refused.
        """
        digest = generate_password_hash(password)
        with self.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO staff (username, shop_id, password_hash) VALUES (?, ?, ?)",
                (username, shop_id, digest),
            )
            _next_generation(db, username)

    def session_generation(self, username: str) -> int:
        """The staff member's current login generation (a session of another is over)."""
        with self.transaction() as db:
            row = db.execute(
                "SELECT generation FROM staff_sessions WHERE username = ?", (username,)
            ).fetchone()
        return int(row[0]) if row is not None else 0

    def end_sessions(self, username: str) -> None:
        """End every session of the staff member (logging out on one machine ends them all)."""
        with self.transaction() as db:
            _next_generation(db, username)

    # -- failed order lookups -----------------------------------------------------------------

    def failed_lookups(self, bucket: str, since: dt.datetime) -> int:
        """How many lookups failed in ``bucket`` since ``since``."""
        with self.transaction() as db:
            row = db.execute(
                "SELECT COUNT(*) FROM failed_lookups WHERE bucket = ? AND at >= ?",
                (bucket, _utc(since)),
            ).fetchone()
        return int(row[0])

    def oldest_failed_lookup(self, bucket: str, since: dt.datetime) -> dt.datetime | None:
        """When the oldest failure in ``bucket`` since ``since`` was (when the count drops)."""
        with self.transaction() as db:
            row = db.execute(
                "SELECT MIN(at) FROM failed_lookups WHERE bucket = ? AND at >= ?",
                (bucket, _utc(since)),
            ).fetchone()
        return dt.datetime.fromisoformat(row[0]) if row[0] is not None else None

    def record_failed_lookup(self, buckets: tuple[str, ...], at: dt.datetime) -> None:
        """Count one failed lookup in each bucket; failures a day old are forgotten."""
        with self.transaction() as db:
            db.executemany(
                "INSERT INTO failed_lookups (bucket, at) VALUES (?, ?)",
                [(bucket, _utc(at)) for bucket in buckets],
            )
            db.execute(
                "DELETE FROM failed_lookups WHERE at < ?", (_utc(at - dt.timedelta(days=1)),)
            )

    def has_staff(self) -> bool:
        """Whether any staff login exists (the folder was seeded)."""
        with self.transaction() as db:
            return db.execute("SELECT 1 FROM staff LIMIT 1").fetchone() is not None

    def check_login(self, username: str, password: str) -> str | None:
        """The shop of the staff member whose password this is, else ``None``."""
        with self.transaction() as db:
            row = db.execute(
                "SELECT shop_id, password_hash FROM staff WHERE username = ?", (username,)
            ).fetchone()
        if row is None:
            # As slow as a wrong password, so that a login does not tell which names exist.
            check_password_hash(_DUMMY_HASH, password)
            return None
        return str(row[0]) if check_password_hash(str(row[1]), password) else None

    # -- rule versions ------------------------------------------------------------------------

    def save_rules(self, shop_id: str, text: str, saved_by: str, at: dt.datetime) -> int:
        """Store ``text`` as the shop's next rule version; returns its number."""
        with self.transaction() as db:
            row = db.execute(
                "SELECT COALESCE(MAX(version), 0) FROM rule_versions WHERE shop_id = ?",
                (shop_id,),
            ).fetchone()
            version = int(row[0]) + 1
            db.execute(
                "INSERT INTO rule_versions (shop_id, version, text, saved_at, saved_by) "
                "VALUES (?, ?, ?, ?, ?)",
                (shop_id, version, text, at.isoformat(), saved_by),
            )
        return version

    def rule_versions(self, shop_id: str) -> list[RuleVersion]:
        """Every version of the shop's rules, newest first."""
        with self.transaction() as db:
            rows = db.execute(
                "SELECT shop_id, version, text, saved_at, saved_by FROM rule_versions "
                "WHERE shop_id = ? ORDER BY version DESC",
                (shop_id,),
            ).fetchall()
        return [RuleVersion(r[0], r[1], r[2], dt.datetime.fromisoformat(r[3]), r[4]) for r in rows]

    def current_rules(self, shop_id: str) -> RuleVersion | None:
        """The newest version of the shop's rules."""
        with self.transaction() as db:
            row = db.execute(
                "SELECT shop_id, version, text, saved_at, saved_by FROM rule_versions "
                "WHERE shop_id = ? ORDER BY version DESC LIMIT 1",
                (shop_id,),
            ).fetchone()
        if row is None:
            return None
        return RuleVersion(row[0], row[1], row[2], dt.datetime.fromisoformat(row[3]), row[4])

    # -- mails ----------------------------------------------------------------------------------

    def record_mail(self, mail: SentMail) -> None:
        """Index a delivered mail (once per key)."""
        with self.transaction() as db:
            db.execute(
                "INSERT OR IGNORE INTO mails (message_id, key, shop_id, request_id, kind, sent_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (
                    mail.message_id,
                    mail.key,
                    mail.shop_id,
                    mail.request_id,
                    mail.kind,
                    mail.sent_at.isoformat(),
                ),
            )

    def mails(self, shop_id: str, request_id: str | None = None) -> list[SentMail]:
        """The shop's sent mails, newest first; only one request's when given."""
        sql = "SELECT message_id, key, shop_id, request_id, kind, sent_at FROM mails "
        sql += "WHERE shop_id = ?" + (" AND request_id = ?" if request_id else "")
        params: tuple[str, ...] = (shop_id, request_id) if request_id else (shop_id,)
        with self.transaction() as db:
            rows = db.execute(sql + " ORDER BY sent_at DESC, key", params).fetchall()
        return [
            SentMail(r[0], r[1], r[2], r[3], r[4], dt.datetime.fromisoformat(r[5])) for r in rows
        ]

    # -- events -------------------------------------------------------------------------------

    def record_event(self, event: Event, body: str, received_at: dt.datetime) -> bool:
        """Keep an event the webhook received; ``False`` when its key was kept already."""
        with self.transaction() as db:
            cursor = db.execute(
                "INSERT OR IGNORE INTO events (key, shop_id, request_id, type, version, status,"
                " actor, occurred_at, received_at, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    event.key,
                    event.shop_id,
                    event.request_id,
                    event.type.value,
                    event.version,
                    event.status.value,
                    str(event.actor),
                    _utc(event.occurred_at),
                    _utc(received_at),
                    body,
                ),
            )
            return cursor.rowcount == 1

    def events(
        self, shop_id: str, *, limit: int = 50, after: str | None = None
    ) -> list[ReceivedEvent]:
        """The shop's received events, newest first; from ``after`` (a :attr:`cursor`) on.

        Raises:
            InvalidInput: ``after`` is not a cursor this listing made.
        """
        sql = (
            "SELECT key, shop_id, request_id, type, version, status, actor, occurred_at,"
            " received_at FROM events WHERE shop_id = ?"
        )
        params: list[str | int] = [shop_id]
        if after is not None:
            moment, sep, key = after.partition("|")
            try:
                stamp = dt.datetime.fromisoformat(moment)
            except ValueError:
                stamp = None
            if not sep or not key or stamp is None or stamp.utcoffset() is None:
                raise InvalidInput("is not a page of the events listing", field="cursor")
            sql += " AND (occurred_at < ? OR (occurred_at = ? AND key < ?))"
            params += [_utc(stamp), _utc(stamp), key]
        sql += " ORDER BY occurred_at DESC, key DESC LIMIT ?"
        params.append(limit)
        with self.transaction() as db:
            rows = db.execute(sql, params).fetchall()
        return [
            ReceivedEvent(
                r[0],
                r[1],
                r[2],
                r[3],
                int(r[4]),
                r[5],
                r[6],
                dt.datetime.fromisoformat(r[7]),
                dt.datetime.fromisoformat(r[8]),
            )
            for r in rows
        ]

    def mail(self, shop_id: str, message_id: str) -> SentMail | None:
        """One of the shop's mails by its Message-ID; another shop's is not found."""
        found = [m for m in self.mails(shop_id) if m.message_id == message_id]
        return found[0] if found else None


_DUMMY_HASH: Final = generate_password_hash(secrets.token_hex(16))


def _next_generation(db: sqlite3.Connection, username: str) -> None:
    db.execute(
        "INSERT INTO staff_sessions (username, generation) VALUES (?, 1) "
        "ON CONFLICT (username) DO UPDATE SET generation = generation + 1",
        (username,),
    )


def _utc(moment: dt.datetime) -> str:
    """A fixed-width UTC time, so that the text sorts as the time does."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")


class DemoCarrier:
    """A carrier for the demo: a one-page PDF label per key, kept in the shop's database.

    ``refuse_countries`` holds ISO codes it does not collect from (permanently, until removed:
    the merchant's account is "fixed"), which is how a request comes to need attention.
    """

    def __init__(self, db: ShopDatabase, *, carrier: str = "PostNL") -> None:
        """Use ``db`` for the labels made and voided."""
        self._db = db
        self._carrier = carrier
        self.refuse_countries: set[str] = set()

    def create_label(self, key: str, request: ReturnRequest) -> Label:
        """The label under ``key``: made once, the same on every retry; a voided key is spent."""
        with self._db.transaction() as db:
            row = db.execute(
                "SELECT carrier, tracking_number, document, voided FROM labels WHERE key = ?",
                (key,),
            ).fetchone()
            if row is not None and row[3]:
                raise PortRejected(f"{key}: this label key was voided")
            if row is not None:
                return Label(carrier=row[0], tracking_number=row[1], document=bytes(row[2]))
            if request.from_country in self.refuse_countries:
                raise PortRejected(f"{key}: the carrier does not collect from this country")
            serial = int(db.execute("SELECT COUNT(*) FROM labels").fetchone()[0]) + 1
            carrier = request.carrier or self._carrier
            tracking = f"3SDEMO{serial:08d}"
            document = label_pdf(carrier, tracking, request.id)
            db.execute(
                "INSERT INTO labels (key, carrier, tracking_number, document) VALUES (?, ?, ?, ?)",
                (key, carrier, tracking, document),
            )
        return Label(carrier=carrier, tracking_number=tracking, document=document)

    def void_label(self, key: str) -> None:
        """Void the label under ``key``; a key voided before any label is spent as well."""
        with self._db.transaction() as db:
            db.execute("INSERT OR IGNORE INTO labels (key, voided) VALUES (?, 1)", (key,))
            db.execute("UPDATE labels SET voided = 1 WHERE key = ?", (key,))


class DemoPayments:
    """A payment provider for the demo: charges and refunds kept in the shop's database."""

    def __init__(self, db: ShopDatabase) -> None:
        """Use ``db`` for payments and refunds."""
        self._db = db

    def charge(self, reference: str, amount: Money) -> None:
        """Record that the customer paid ``amount`` (the portal's return fee)."""
        with self._db.transaction() as db:
            db.execute(
                "INSERT INTO payments (reference, amount, currency) VALUES (?, ?, ?)",
                (reference, amount.amount, amount.currency),
            )

    def charge_once(self, reference: str, amount: Money) -> None:
        """Record the payment unless it is recorded already (a form submitted twice).

        Raises:
            InvalidInput: the reference was charged with another amount.
        """
        with self._db.transaction() as db:
            row = db.execute(
                "SELECT amount, currency FROM payments WHERE reference = ?", (reference,)
            ).fetchone()
            if row is None:
                db.execute(
                    "INSERT INTO payments (reference, amount, currency) VALUES (?, ?, ?)",
                    (reference, amount.amount, amount.currency),
                )
            elif (int(row[0]), str(row[1])) != (amount.amount, amount.currency):
                raise InvalidInput("was charged with another amount", field="payment")

    def refund(self, key: str, payment_reference: str, amount: Money) -> str:
        """Refund once per key, never more than what is left of the payment."""
        with self._db.transaction() as db:
            done = db.execute(
                "SELECT refund_reference FROM refunds WHERE key = ?", (key,)
            ).fetchone()
            if done is not None:
                return str(done[0])
            paid = db.execute(
                "SELECT amount, currency FROM payments WHERE reference = ?", (payment_reference,)
            ).fetchone()
            if paid is None:
                raise PortRejected(f"{key}: unknown payment")
            refunded = db.execute(
                "SELECT COALESCE(SUM(amount), 0) FROM refunds WHERE reference = ?",
                (payment_reference,),
            ).fetchone()[0]
            if amount.currency != paid[1] or int(refunded) + amount.amount > int(paid[0]):
                raise PortRejected(f"{key}: the refund exceeds what was paid")
            reference = f"re_{secrets.token_hex(8)}"
            db.execute(
                "INSERT INTO refunds (key, reference, amount, refund_reference) "
                "VALUES (?, ?, ?, ?)",
                (key, payment_reference, amount.amount, reference),
            )
        return reference


def label_pdf(carrier: str, tracking_number: str, request_id: str) -> bytes:
    """A one-page PDF: the carrier, the tracking number and the request id (no address)."""
    lines = [f"{carrier} retourlabel", f"Tracking: {tracking_number}", f"Retour: {request_id}"]
    text = "BT /F1 18 Tf 40 140 Td 22 TL " + " ".join(f"({_pdf_text(t)}) '" for t in lines)
    stream = zlib.compress((text + " ET").encode("latin-1"))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        (
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 420 200] "
            b"/Resources << /Font << /F1 5 0 R >> >> /Contents 4 0 R >>"
        ),
        (b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(stream))
        + stream
        + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def _pdf_text(text: str) -> str:
    safe = text.encode("latin-1", errors="replace").decode("latin-1")
    return safe.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
