"""Order commands: placing reserves stock on every product in the same atomic save."""

from __future__ import annotations

from decimal import Decimal
from uuid import UUID

from catalog.domain import Product
from orders.domain import Order
from shop.errors import InvalidInput, NotFound
from shop.eventstore import Saved, exclusive, load, retry_on_conflict, save


@retry_on_conflict
def order_place(
    *,
    customer_id: int,
    customer: str,
    lines: list[tuple[UUID, int]],
    shipping_address: str,
) -> tuple[Saved, Decimal]:
    """Price each line from the catalog now, reserve its stock, record the order.

    Returns what was saved and the order's total. If any line lacks stock, the
    domain error propagates and nothing is saved.
    """
    if not lines:
        raise InvalidInput.field("lines", "An order needs at least one line.")
    if len({product_id for product_id, _ in lines}) != len(lines):
        raise InvalidInput.field("lines", "Each product may appear in only one line.")
    # Writers of one product queue here rather than race (a flash sale: see exclusive).
    with exclusive(*(product_id for product_id, _ in lines)):
        return _order_place(customer_id=customer_id, customer=customer, lines=lines,
                            shipping_address=shipping_address)


def _order_place(
    *, customer_id: int, customer: str, lines: list[tuple[UUID, int]], shipping_address: str
) -> tuple[Saved, Decimal]:
    products: list[Product] = []
    unknown: list[str] = []
    for product_id, _quantity in lines:
        try:
            products.append(load(product_id, Product))
        except NotFound:
            unknown.append(f"Unknown product {product_id}.")
    if unknown:
        raise InvalidInput(" ".join(unknown), errors={"lines": unknown})

    order = Order.place(
        customer_id=customer_id,
        customer=customer,
        lines=[
            {
                "product_id": product.id,
                "sku": product.sku,
                "quantity": quantity,
                "unit_price": product.price,
            }
            for product, (_, quantity) in zip(products, lines, strict=True)
        ],
        shipping_address=shipping_address,
    )
    for product, (_, quantity) in zip(products, lines, strict=True):
        product.reserve(order.id, quantity)
    return save(order, *products, extra={"total": f"{order.total:.2f}"}), order.total


@retry_on_conflict
def order_cancel(*, order_id: UUID, user_id: int, is_staff: bool, reason: str = "") -> Saved:
    """Cancel a placed order and release its reservations. Owner or staff only."""
    order = order_get_for_user(order_id=order_id, user_id=user_id, is_staff=is_staff)
    order.cancel(reason)
    with exclusive(*(line["product_id"] for line in order.lines)):
        products = [load(line["product_id"], Product) for line in order.lines]
        for product, line in zip(products, order.lines, strict=True):
            product.release(order.id, line["quantity"])
        return save(order, *products)


def order_get_for_user(*, order_id: UUID, user_id: int, is_staff: bool) -> Order:
    """Load an order the user may act on; another customer's order is not found."""
    order = load(order_id, Order)
    if not is_staff and order.customer_id != user_id:
        raise NotFound(f"Order {order_id} was not found.")
    return order

