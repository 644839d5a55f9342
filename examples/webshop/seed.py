"""Seed a fresh data folder: staff logins and a few requests in every state."""

from __future__ import annotations

import attrs

from retouraanvraag import Customer, NewItem, NewRequest, PaidFee, RefundMethod

from .config import Order, ShopConfig
from .services import Services


def _request(
    services: Services, shop: ShopConfig, order: Order, lines: dict[int, tuple[int, str]]
) -> NewRequest:
    now = services.clock.now()
    return NewRequest(
        shop_id=shop.id,
        order_number=order.number,
        customer=Customer(order.email, order.name, order.language),
        from_country=order.country,
        order_value=order.value,
        items=tuple(
            NewItem(
                order.lines[i].sku,
                order.lines[i].name,
                quantity,
                order.lines[i].unit_price,
                reason,
                product_type=order.lines[i].product_type,
            )
            for i, (quantity, reason) in lines.items()
        ),
        ordered_at=order.ordered_at(now),
        delivered_at=order.delivered_at(now),
        refund_method=RefundMethod.MONEY_BACK,
    )


def _submit(services: Services, new: NewRequest, key: str) -> str:
    """Submit ``new``, paying the fee the rules ask (a demo payment)."""
    fee = services.desk.preview(new).return_fee
    if fee is not None and fee.amount > 0:
        reference = f"pay-seed-{key}"
        services.payments.charge_once(reference, fee)
        new = attrs.evolve(new, return_fee=PaidFee(fee, reference))
    return services.desk.submit(new, idempotency_key=f"seed:{key}").id


def seed(services: Services) -> None:
    """Fill a fresh data folder (an already seeded one is left as it is)."""
    if services.db.has_staff():
        return
    desk = services.desk
    fiets = services.shops["fietsenwinkel"]
    orders = {o.number: o for o in fiets.orders}
    # Waiting for review: a helmet that is too small (NL), a bag from Belgium (fee paid).
    _submit(services, _request(services, fiets, orders["F1001"], {0: (1, "too_small")}), "1")
    _submit(services, _request(services, fiets, orders["F1002"], {0: (1, "damaged")}), "2")
    # Approved with a label (incoming), then received.
    incoming = _submit(
        services, _request(services, fiets, orders["F1004"], {0: (1, "too_large")}), "3"
    )
    desk.approve(fiets.id, incoming, with_label=True, actor="anna", idempotency_key="seed:3a")
    received = _submit(
        services, _request(services, fiets, orders["F1006"], {0: (1, "too_small")}), "4"
    )
    desk.approve(fiets.id, received, with_label=True, actor="anna", idempotency_key="seed:4a")
    desk.mark_received(fiets.id, received, actor="daan", idempotency_key="seed:4r")
    # Rejected by a person with a preset reason.
    rejected = _submit(
        services, _request(services, fiets, orders["F1006"], {1: (1, "changed_mind")}), "5"
    )
    used = fiets.settings.reject_reason("used")
    desk.reject(fiets.id, rejected, reason=used, actor="anna", idempotency_key="seed:5r")
    # The carrier refuses Switzerland for now: the label fails for good, a person must look.
    services.carrier.refuse_countries.add("CH")
    swiss = _submit(
        services, _request(services, fiets, orders["F1005"], {0: (1, "wrong_product_sent")}), "6"
    )
    desk.approve(fiets.id, swiss, with_label=True, actor="anna", idempotency_key="seed:6a")
    books = services.shops["bookshop"]
    border = {o.number: o for o in books.orders}
    _submit(services, _request(services, books, border["B-502"], {0: (1, "too_large")}), "7")
    _submit(services, _request(services, books, border["B-501"], {0: (1, "not_as_described")}), "8")
    services.dispatcher.run_until_idle()
    # The carrier's account is fixed: "retry" on the attention page now makes the label.
    services.carrier.refuse_countries.discard("CH")
    # Staff last: a folder with logins is a seeded one.
    for shop in services.shops.values():
        for staff in shop.staff:
            services.db.add_staff(staff.username, shop.id, staff.demo_password)
