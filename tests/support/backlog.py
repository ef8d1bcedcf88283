"""Build a varied log quickly, in-process, through the command services."""

from __future__ import annotations

import random
from decimal import Decimal

from shop.errors import ApplicationError
from shop.eventstore import head_position


def build_backlog(*, events: int, customers: list[tuple[int, str]], seed: int = 7,
                  products: int = 12) -> int:
    """Append at least ``events`` more events of every kind the projectors handle.

    Returns the head position. Every command goes through the services, so the log is
    exactly what the API would have written.
    """
    from catalog.services import product_register, product_rename, product_reprice, product_restock
    from orders.services import order_cancel, order_place
    from shipping.services import shipment_change_status, shipment_create

    rng = random.Random(seed)
    start = head_position()
    product_ids = [
        product_register(sku=f"BULK-{i}", name=f"Bulk {i}", price=Decimal(f"{5 + i}.25"),
                         stock=100_000).aggregate_id
        for i in range(products)
    ]
    placed, shipments = [], []
    while head_position() - start < events:
        roll = rng.random()
        try:
            if roll < 0.55 or not placed:
                customer_id, username = rng.choice(customers)
                lines = [(pid, rng.randint(1, 3))
                         for pid in rng.sample(product_ids, rng.randint(1, 3))]
                saved, _ = order_place(customer_id=customer_id, customer=username,
                                       lines=lines, shipping_address="1 Bulk Rd")
                placed.append(saved.aggregate_id)
            elif roll < 0.62:
                product_rename(product_id=rng.choice(product_ids),
                               name=f"Renamed {rng.randint(0, 10**6)}")
            elif roll < 0.68:
                product_reprice(product_id=rng.choice(product_ids),
                                price=Decimal(rng.randint(100, 9999)) / 100)
            elif roll < 0.71:
                product_restock(product_id=rng.choice(product_ids),
                                quantity=rng.randint(1, 50))
            elif roll < 0.78:
                order_cancel(order_id=placed.pop(rng.randrange(len(placed))), user_id=0,
                             is_staff=True, reason="changed my mind")
            elif roll < 0.88:
                saved = shipment_create(order_id=placed.pop(rng.randrange(len(placed))),
                                        carrier=rng.choice(["DHL", "UPS", "PostNL"]))
                shipments.append([saved.aggregate_id, 0])
            elif shipments:
                entry = rng.choice(shipments)
                steps = ["dispatched", "in_transit", "delivered"]
                if entry[1] < len(steps):
                    shipment_change_status(shipment_id=entry[0], status=steps[entry[1]])
                    entry[1] += 1
        except ApplicationError:
            pass
    return head_position()
