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

from retouraanvraag import (
    Customer,
    Desk,
    Dispatcher,
    MailRenderer,
    Money,
    NewItem,
    NewRequest,
    PaidFee,
    Policy,
    ReturnRefused,
    ReturnRequest,
    ReturnWindowExpired,
    rules,
)
from retouraanvraag.adapters.maildir import MaildirTransport
from retouraanvraag.adapters.sqlite import SqliteStorage
from retouraanvraag.testing import FakeLabels, FakePayments, FixedClock, MemoryPhotoStore

DATABASE = Path("demo.sqlite3")
MAILDIR = Path("demo-mail")
SHOP = "voorbeeldshop"
NOW = dt.datetime(2026, 11, 26, 10, 0, tzinfo=dt.UTC)

RULES = """\
# The two examples of the help article, verbatim, plus one of our own.
ALS Retourreden IS NIET "product beschadigd" OF "Verkeerd product verzonden"
DAN Retouraanvraag uitschakelen
ALS Van land is Nederland
DAN Retouraanvraag uitschakelen
REGEL "Dure retouren": ALS Retourwaarde GROTER DAN €500 DAN Retouraanvraag inschakelen
"""


def tiny_png() -> bytes:
    """A 1x1 PNG, the photo of a broken lamp."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 6, 0, 0, 0)
    pixels = zlib.compress(b"\x00\xff\x00\x00\xff")
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


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


def main() -> None:
    for path in (DATABASE, Path(f"{DATABASE}-wal"), Path(f"{DATABASE}-shm")):
        path.unlink(missing_ok=True)
    shutil.rmtree(MAILDIR, ignore_errors=True)

    clock = FixedClock(NOW)
    storage = SqliteStorage(DATABASE)
    labels, payments, photos = FakeLabels(), FakePayments(), MemoryPhotoStore()
    mail = MaildirTransport(MAILDIR)
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
    dutch = desk.submit(
        request(
            "1001", "Nederland", "nl", NewItem("TS-M", "T-shirt", 2, Money.parse("€19,95"), "Te klein"), days=4
        )
    )
    lamp = NewItem(
        "LMP-1", "Bureaulamp", 1, Money.parse("€49,95"), "Product beschadigd", photos=(tiny_png(),)
    )
    german = desk.submit(request("1002", "Duitsland", "en", lamp, days=6))
    belgian = desk.submit(
        request("1003", "België", "nl", NewItem("JS-32", "Jeans", 1, Money.parse("€59,95"), "Bedacht"), days=20)
    )
    print(f"  submitted {dutch.id[:8]} (NL), {german.id[:8]} (DE, with a photo), {belgian.id[:8]} (BE)")
    try:
        desk.submit(
            request("0999", "NL", "nl", NewItem("SK-1", "Sokken", 1, Money.parse("€5"), "Bedacht"), days=45)
        )
    except ReturnWindowExpired as exc:
        print(f"  order 0999 refused: {exc.message_nl}")

    heading("Requests tab")
    show(desk.requests_tab(SHOP).items)

    heading("The merchant decides")
    desk.approve(SHOP, dutch.id, with_label=True, refund_return_fee=True, actor="staff:anna")
    print(f"  {dutch.id[:8]} approved with a label, return fee refunded")
    desk.approve(SHOP, german.id, with_label=False, actor="staff:anna")
    print(f"  {german.id[:8]} approved without a label: the customer keeps the broken lamp")
    desk.reject(SHOP, belgian.id, reason="De jeans is gedragen en gewassen.", actor="staff:anna")
    print(f"  {belgian.id[:8]} rejected with a reason (the paid fee is refunded automatically)")

    heading("The dispatcher runs the effects")
    report = dispatcher.run_until_idle()
    print(f"  {report.done} effects done, {report.retried} to retry, {report.dead} failed for good")
    for key, label in labels.created.items():
        print(f"  label {label.carrier} {label.tracking_number} for {key}")
    for refund in payments.refunds:
        print(f"  refunded {refund.amount.format('nl')} on {refund.payment_reference} ({refund.key})")

    heading("Mails sent (Maildir demo-mail/)")
    for message in mail.messages():
        attachments = [part.get_filename() for part in message.iter_attachments()]
        print(f"  to {message['To']:<26} {message['Subject']}")
        if attachments:
            print(f"  {'':<29} attached: {', '.join(str(a) for a in attachments)}")

    heading("Incoming returns tab")
    show(desk.incoming_returns(SHOP).items)

    heading("Requests tab, filter 'rejected'")
    show(desk.requests_tab(SHOP, rejected=True).items)

    heading("The merchant's rules decide on their own")
    ruleset = rules.parse(RULES)
    desk = Desk(storage, photos=photos, policy=Policy(rules=ruleset), clock=clock)
    automatic = desk.submit(
        request("1004", "NL", "nl", NewItem("TS-L", "T-shirt", 1, Money.parse("€19,95"), "Te groot"), days=2)
    )
    print(f"  order 1004: {automatic.status.value}, by {automatic.history[-1].actor}")
    for line in automatic.history[-1].trace:
        print(f"    {line}")
    try:
        desk.preview(
            request("1005", "NL", "nl", NewItem("GC-1", "Cadeaubon", 1, Money.parse("€25"), "Bedacht"), days=1)
        )
    except ReturnRefused as exc:  # pragma: no cover - not refused by these rules
        print(f"  order 1005 refused: {exc}")
    dispatcher.run_until_idle()
    storage.close()
    print(f"\nDone. Database: {DATABASE}, mails: {MAILDIR}/")


if __name__ == "__main__":
    main()
