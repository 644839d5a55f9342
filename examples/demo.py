"""A walk through the return-request lifecycle on a SQLite file (``make demo``).

Three customers ask to return products, a fourth is too late. The merchant looks at the requests
tab, approves one with a label and refunds the return fee, approves one without a label (the
customer keeps the broken lamp), rejects one with a reason; the dispatcher then creates the
label, refunds the fee and sends the mails. Finally the merchant's own rules, written as text,
decide a new request on their own.

The database is ``demo.sqlite3`` and the mails land in the Maildir ``demo-mail/``, both in the
working directory, made afresh on every run.
"""

from __future__ import annotations

import datetime as dt
import shutil
import struct
import zlib
from pathlib import Path

import attrs

from retouraanvraag import (
    Customer,
    Desk,
    Dispatcher,
    Mail,
    MailRenderer,
    Money,
    NewItem,
    NewRequest,
    PaidFee,
    Policy,
    ReturnRequest,
    ReturnWindowExpired,
    rules,
)
from retouraanvraag.adapters.maildir import MaildirTransport
from retouraanvraag.adapters.sqlite import SqliteStorage
from retouraanvraag.testing import (
    FakeLabels,
    FakePayments,
    FixedClock,
    MailRecorder,
    MemoryPhotoStore,
)

DATABASE = Path("demo.sqlite3")
MAILDIR = Path("demo-mail")
SHOP = "voorbeeldshop"
NOW = dt.datetime(2026, 11, 26, 10, 0, tzinfo=dt.UTC)

RULES = """\
# The two examples of the help article, verbatim, plus two of our own.
ALS Retourreden IS NIET "product beschadigd" OF "Verkeerd product verzonden"
DAN Retouraanvraag uitschakelen
ALS Van land is Nederland
DAN Retouraanvraag uitschakelen
REGEL "Dure retouren": ALS Retourwaarde GROTER DAN €500 DAN Retouraanvraag inschakelen
REGEL "Cadeaubonnen": ALS SKU BEGINT MET "GC-" DAN Artikel niet retourneerbaar
"""


def tiny_png() -> bytes:
    """A 1x1 PNG, the photo of a broken lamp."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 6, 0, 0, 0)
    pixels = zlib.compress(b"\x00\xff\x00\x00\xff")
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


def heading(text: str) -> None:
    print(f"\n== {text} " + "=" * max(0, 72 - len(text)))


def show(requests: tuple[ReturnRequest, ...]) -> None:
    if not requests:
        print("  (empty)")
    for r in requests:
        reasons = ", ".join(f"{i.quantity}x {i.name} ({i.reason})" for i in r.items)
        fee = r.return_fee.amount.format("nl") if r.return_fee else "-"
        print(
            f"  {r.id[:8]}  order {r.order_number:<6} {r.from_country}  {r.status.value:<24}"
            f" fee {fee:<8} {reasons}"
        )


class Both:
    """Deliver to the Maildir and keep the order of sending, for printing."""

    def __init__(self, maildir: MaildirTransport) -> None:
        self.maildir = maildir
        self.recorder = MailRecorder()

    def send(self, key: str, mail: Mail) -> None:
        self.maildir.send(key, mail)
        self.recorder.send(key, mail)


def item(sku: str, name: str, quantity: int, price: str, reason: str) -> NewItem:
    return NewItem(sku, name, quantity, Money.parse(price), reason)


def main() -> None:  # noqa: PLR0915 - a script, read top to bottom
    for path in (DATABASE, Path(f"{DATABASE}-wal"), Path(f"{DATABASE}-shm")):
        path.unlink(missing_ok=True)
    shutil.rmtree(MAILDIR, ignore_errors=True)

    clock = FixedClock(NOW)
    storage = SqliteStorage(DATABASE)
    labels, payments, photos = FakeLabels(), FakePayments(), MemoryPhotoStore()
    mail = Both(MaildirTransport(MAILDIR))
    desk = Desk(storage, photos=photos, policy=Policy(return_window_days=30), clock=clock)
    dispatcher = Dispatcher(
        storage,
        labels=labels,
        payments=payments,
        mail=mail,
        renderer=MailRenderer(sender="retouren@voorbeeldshop.nl", shop_name="Voorbeeldshop"),
        clock=clock,
    )

    def request(order: str, country: str, language: str, *items: NewItem, days: int) -> NewRequest:
        payment = f"pay_{order}"
        payments.charge(payment, Money.parse("€4,95"))
        clock.advance(dt.timedelta(minutes=7))
        return NewRequest(
            shop_id=SHOP,
            order_number=order,
            customer=Customer(f"klant{order}@example.com", f"Klant {order}", language),
            from_country=country,
            order_value=Money.parse("€129,95"),
            items=items,
            ordered_at=NOW - dt.timedelta(days=days + 3),
            delivered_at=NOW - dt.timedelta(days=days),
            return_fee=PaidFee(Money.parse("€4,95"), payment),
        )

    heading("Customers ask to return products")
    shirts = item("TS-M", "T-shirt", 2, "€19,95", "Te klein")
    dutch = desk.submit(request("1001", "Nederland", "nl", shirts, days=4))
    lamp = attrs.evolve(
        item("LMP-1", "Bureaulamp", 1, "€49,95", "Product beschadigd"), photos=(tiny_png(),)
    )
    german = desk.submit(request("1002", "Duitsland", "en", lamp, days=6))
    jeans = item("JS-32", "Jeans", 1, "€59,95", "Bedacht")
    belgian = desk.submit(request("1003", "België", "nl", jeans, days=20))
    print(f"  {dutch.id[:8]}  order 1001 from the Netherlands: two T-shirts, too small")
    print(f"  {german.id[:8]}  order 1002 from Germany: a damaged lamp, with a photo")
    print(f"  {belgian.id[:8]}  order 1003 from Belgium: jeans, changed mind")
    socks = item("SK-1", "Sokken", 1, "€5", "Bedacht")
    try:
        desk.submit(request("0999", "NL", "nl", socks, days=45))
    except ReturnWindowExpired as exc:
        print(f"  order 0999 is refused: {exc.message_nl}")

    heading("Requests tab")
    show(desk.requests_tab(SHOP).items)

    heading("The merchant decides")
    desk.approve(SHOP, dutch.id, with_label=True, refund_return_fee=True, actor="staff:anna")
    print(f"  {dutch.id[:8]}  approved with a label; the return fee is refunded")
    desk.approve(SHOP, german.id, with_label=False, actor="staff:anna")
    print(f"  {german.id[:8]}  approved without a label: the customer keeps the broken lamp")
    desk.reject(SHOP, belgian.id, reason="De jeans is gedragen en gewassen.", actor="staff:anna")
    print(f"  {belgian.id[:8]}  rejected with a reason; the paid fee is refunded automatically")

    heading("The dispatcher runs the effects")
    report = dispatcher.run_until_idle()
    print(f"  {report.done} effects done, {report.retried} to retry, {report.dead} failed for good")
    for key, label in labels.created.items():
        _kind, _shop, request_id, attempt = key.split(":")  # label:<shop>:<request>:<attempt>
        print(
            f"  label {label.carrier} {label.tracking_number} for {request_id[:8]}, try {attempt}"
        )
    for refund in payments.refunds:
        print(f"  refunded {refund.amount.format('nl')} on payment {refund.payment_reference}")

    heading("Mails sent (also in the Maildir demo-mail/)")
    for _key, sent in mail.recorder.sent:
        attached = ", ".join(a.filename for a in sent.attachments)
        print(f"  to {sent.to:<24} {sent.subject}" + (f"  [{attached}]" if attached else ""))

    heading("History of order 1001: who did what, and every effect done")
    for entry in desk.get(SHOP, dutch.id).history:
        what = entry.command if entry.is_command else f"  {entry.command}"
        print(f"  {entry.at:%H:%M}  {entry.actor!s:<18} {what:<22} {entry.note or ''}".rstrip())

    heading("Incoming returns tab")
    show(desk.incoming_returns(SHOP).items)

    heading("Requests tab, filter 'rejected'")
    show(desk.requests_tab(SHOP, rejected=True).items)

    heading("The merchant's rules decide on their own")
    print("  " + RULES.replace("\n", "\n  ").rstrip())
    desk = Desk(storage, photos=photos, policy=Policy(rules=rules.parse(RULES)), clock=clock)
    large = item("TS-L", "T-shirt", 1, "€19,95", "Te groot")
    automatic = desk.submit(request("1004", "NL", "nl", large, days=2))
    print(
        f"  order 1004 (NL, too large): {automatic.status.value}, by {automatic.history[-1].actor}"
    )
    for line in automatic.history[-1].trace:
        print(f"    {line}")
    gift = item("GC-25", "Cadeaubon", 1, "€25", "Bedacht")
    preview = desk.preview(request("1005", "NL", "nl", large, gift, days=1))
    names = ["T-shirt", "Cadeaubon"]
    for refused in preview.refused:
        which = names[refused.index] if refused.index is not None else "the whole order"
        print(f"  preview of order 1005: the portal greys out {which}: {refused.message}")
    dispatcher.run_until_idle()
    storage.close()
    print(f"\nDone. Database: {DATABASE}, mails: {MAILDIR}/")


if __name__ == "__main__":
    main()
