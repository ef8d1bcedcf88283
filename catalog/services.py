"""Catalog commands. The API, the admin and scripts all call these.

Each runs in a unit of work (``shop.unit_of_work``): the transaction starts at
``with``, the product's writer lock is held from ``lock()`` and the commit ends it.
"""

from __future__ import annotations

from decimal import Decimal
from uuid import UUID

from catalog.domain import DuplicateSku, Product, product_id_for_sku
from shop.eventstore import Saved
from shop.unit_of_work import UnitOfWork, retry_on_conflict


@retry_on_conflict
def product_register(
    *, uow: UnitOfWork, sku: str, name: str, price: Decimal, stock: int,
    category: str = "",
) -> Saved:
    product_id = product_id_for_sku(sku)
    with uow:
        uow.lock(product_id)
        # The id is derived from the SKU (case-insensitively): the lock queues two
        # registrations of one SKU, and the second finds the first.
        if uow.exists(product_id):
            raise DuplicateSku(f"A product with SKU {sku!r} already exists.")
        product = Product.register(sku=sku, name=name, price=price, stock=stock,
                                   category=category)
        return uow.commit(product)


@retry_on_conflict
def product_rename(*, uow: UnitOfWork, product_id: UUID, name: str) -> Saved:
    with uow:
        uow.lock(product_id)
        product = uow.load(product_id, Product)
        product.rename(name)
        return uow.commit(product)


@retry_on_conflict
def product_reprice(*, uow: UnitOfWork, product_id: UUID,
                    price: Decimal) -> Saved:
    with uow:
        uow.lock(product_id)
        product = uow.load(product_id, Product)
        product.reprice(price)
        return uow.commit(product)


@retry_on_conflict
def product_restock(*, uow: UnitOfWork, product_id: UUID,
                    quantity: int) -> Saved:
    with uow:
        uow.lock(product_id)
        product = uow.load(product_id, Product)
        product.restock(quantity)
        return uow.commit(product)
