"""Catalog commands. The API, the admin and scripts all call these."""

from __future__ import annotations

from decimal import Decimal
from uuid import UUID

from eventsourcing.persistence import IntegrityError

from catalog.domain import DuplicateSku, Product
from shop.eventstore import Saved, load, retry_on_conflict, save


def product_register(
    *, sku: str, name: str, price: Decimal, stock: int, category: str = ""
) -> Saved:
    product = Product.register(sku=sku, name=name, price=price, stock=stock, category=category)
    try:
        return save(product)
    except IntegrityError:
        # The id is derived from the SKU, so version 1 already exists.
        raise DuplicateSku(f"A product with SKU {sku!r} already exists.") from None


@retry_on_conflict
def product_rename(*, product_id: UUID, name: str) -> Saved:
    product = load(product_id, Product)
    product.rename(name)
    return save(product)


@retry_on_conflict
def product_reprice(*, product_id: UUID, price: Decimal) -> Saved:
    product = load(product_id, Product)
    product.reprice(price)
    return save(product)


@retry_on_conflict
def product_restock(*, product_id: UUID, quantity: int) -> Saved:
    product = load(product_id, Product)
    product.restock(quantity)
    return save(product)

