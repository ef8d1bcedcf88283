"""Order commands: placing reserves stock on every product in the same atomic save.

Each runs in a unit of work (``shop.unit_of_work``): the transaction starts at
``with``, writers of the same products queue on their locks from ``lock()`` (a flash
sale: many orders for one product wait their turn instead of racing), and ``commit``
saves the order and its products in one atomic write and ends the transaction.
"""

from __future__ import annotations

from decimal import Decimal
from uuid import UUID

from catalog.domain import Product
from orders.domain import Order
from shop.errors import InvalidInput, NotFound
from shop.eventstore import Saved
from shop.unit_of_work import UnitOfWork, retry_on_conflict


@retry_on_conflict
def order_place(
    *,
    uow: UnitOfWork,
    customer_id: int,
    customer: str,
    lines: list[tuple[UUID, int]],
    shipping_address: str,
) -> tuple[Saved, Decimal]:
    """Price each line from the catalog now, reserve its stock, record the order.

    Returns what was saved (the order's ``Order.Placed`` is the first position
    appended) and the order's total. If any line lacks stock, the domain error
    propagates and nothing is saved.
    """
    if not lines:
        raise InvalidInput.field("lines", "An order needs at least one line.")
    product_ids = [product_id for product_id, _ in lines]
    if len(set(product_ids)) != len(lines):
        raise InvalidInput.field("lines", "Each product may appear in only one line.")
    with uow:
        uow.lock(*product_ids)
        products, unknown = [], []
        for product_id in product_ids:
            try:
                products.append(uow.load(product_id, Product))
            except NotFound:
                unknown.append(f"Unknown product {product_id}.")
        if unknown:
            raise InvalidInput(" ".join(unknown), errors={"lines": unknown})
        order = Order.place(
            customer_id=customer_id,
            customer=customer,
            lines=[
                {"product_id": product.id, "sku": product.sku, "quantity": quantity,
                 "unit_price": product.price}
                for product, (_, quantity) in zip(products, lines, strict=True)
            ],
            shipping_address=shipping_address,
        )
        for product, (_, quantity) in zip(products, lines, strict=True):
            product.reserve(order.id, quantity)
        saved = uow.commit(order, *products, extra={"total": f"{order.total:.2f}"})
        return saved, order.total


@retry_on_conflict
def order_cancel(*, uow: UnitOfWork, order_id: UUID, user_id: int,
                 is_staff: bool, reason: str = "") -> Saved:
    """Cancel a placed order and release its reservations. Owner or staff only:
    another customer's order is not found, whatever the caller's If-Match."""
    with uow:
        uow.lock(order_id)
        order = uow.load(order_id, Order,
                         visible=lambda order: order.is_visible_to(user_id, is_staff))
        order.cancel(reason)
        uow.lock(*(line["product_id"] for line in order.lines))
        products = [uow.load(line["product_id"], Product) for line in order.lines]
        for product, line in zip(products, order.lines, strict=True):
            product.release(order.id, line["quantity"])
        return uow.commit(order, *products)
