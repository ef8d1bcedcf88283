"""Product: given past commands, when a command runs, then these events or this error.

No database: aggregates are built in memory and their pending events inspected.
"""

import copy
from decimal import Decimal
from uuid import uuid4

import pytest

from catalog.domain import InsufficientStock, Product, product_id_for_sku
from shop.errors import InvalidInput


def a_product(stock: int = 5, **kwargs) -> Product:
    """Given a registered product whose registration event is already collected."""
    product = Product.register(
        sku=kwargs.get("sku", "MUG-1"),
        name=kwargs.get("name", "Blue mug"),
        price=kwargs.get("price", Decimal("19.99")),
        stock=stock,
    )
    product.collect_events()
    return product


def test_register_records_registered_with_all_fields():
    product = Product.register(sku="MUG-1", name="Blue mug", price=Decimal("19.99"), stock=5)

    [registered] = product.collect_events()
    assert isinstance(registered, Product.Registered)
    assert (registered.sku, registered.name, registered.price, registered.stock) == (
        "MUG-1", "Blue mug", Decimal("19.99"), 5,
    )
    assert registered.originator_version == 1
    assert (product.stock, product.reserved, product.available) == (5, 0, 5)


def test_register_with_zero_stock_is_allowed():
    assert Product.register(sku="A", name="A", price=Decimal("1"), stock=0).available == 0


def test_product_id_derives_from_sku_case_insensitively():
    product = Product.register(sku="mug-1", name="Mug", price=Decimal("1.00"), stock=1)
    assert product.id == product_id_for_sku("MUG-1") == product_id_for_sku("Mug-1")
    assert product_id_for_sku("MUG-2") != product.id


@pytest.mark.parametrize(
    ("price", "field"),
    [(Decimal("0"), "price"), (Decimal("-1.00"), "price"), (Decimal("1.999"), "price")],
)
def test_register_rejects_bad_price(price, field):
    with pytest.raises(InvalidInput) as exc:
        Product.register(sku="A", name="A", price=price, stock=1)
    assert exc.value.code == "invalid"
    assert field in exc.value.errors


def test_register_rejects_negative_stock():
    with pytest.raises(InvalidInput) as exc:
        Product.register(sku="A", name="A", price=Decimal("1.00"), stock=-1)
    assert exc.value.errors == {"stock": ["Stock cannot be negative."]}


def test_rename_records_renamed():
    product = a_product()
    product.rename("Red mug")
    [renamed] = product.collect_events()
    assert isinstance(renamed, Product.Renamed)
    assert renamed.name == "Red mug" == product.name
    assert product.version == 2


def test_rename_to_blank_is_rejected_and_records_nothing():
    product = a_product()
    with pytest.raises(InvalidInput) as exc:
        product.rename("   ")
    assert exc.value.code == "invalid" and "name" in exc.value.errors
    assert product.collect_events() == []


def test_reprice_records_repriced():
    product = a_product()
    product.reprice(Decimal("24.50"))
    [repriced] = product.collect_events()
    assert isinstance(repriced, Product.Repriced)
    assert repriced.price == Decimal("24.50") == product.price


def test_renaming_or_repricing_to_the_current_value_records_nothing():
    product = a_product()
    product.rename(product.name)
    product.reprice(Decimal(str(product.price)))
    assert product.collect_events() == []
    assert product.version == 1


@pytest.mark.parametrize("price", [Decimal("0.00"), Decimal("-5"), Decimal("0.001")])
def test_reprice_rejects_bad_price(price):
    product = a_product()
    with pytest.raises(InvalidInput):
        product.reprice(price)
    assert product.collect_events() == []
    assert product.price == Decimal("19.99")


def test_restock_records_restocked_and_adds_stock():
    product = a_product(stock=5)
    product.restock(10)
    [restocked] = product.collect_events()
    assert isinstance(restocked, Product.Restocked)
    assert restocked.quantity == 10
    assert product.stock == 15 and product.available == 15


@pytest.mark.parametrize("quantity", [0, -3])
def test_restock_needs_at_least_one_unit(quantity):
    product = a_product()
    with pytest.raises(InvalidInput) as exc:
        product.restock(quantity)
    assert "quantity" in exc.value.errors
    assert product.collect_events() == []


def test_reserve_records_stock_reserved_and_reduces_available():
    product = a_product(stock=5)
    order_id = uuid4()
    product.reserve(order_id, 3)
    [reserved] = product.collect_events()
    assert isinstance(reserved, Product.StockReserved)
    assert (reserved.order_id, reserved.quantity) == (order_id, 3)
    assert (product.stock, product.reserved, product.available) == (5, 3, 2)


def test_reserve_everything_available_is_allowed():
    product = a_product(stock=2)
    product.reserve(uuid4(), 2)
    assert product.available == 0


def test_reserve_more_than_available_is_insufficient_stock():
    product = a_product(stock=5)
    product.reserve(uuid4(), 4)
    product.collect_events()
    with pytest.raises(InsufficientStock) as exc:
        product.reserve(uuid4(), 2)
    assert exc.value.code == "insufficient_stock"
    assert exc.value.status == 409
    assert "Only 1 of MUG-1 available, 2 requested." in exc.value.detail
    assert product.collect_events() == []
    assert product.available == 1


def test_reserve_needs_at_least_one_unit():
    with pytest.raises(InvalidInput):
        a_product().reserve(uuid4(), 0)


def test_release_records_stock_released_and_restores_available():
    product = a_product(stock=5)
    order_id = uuid4()
    product.reserve(order_id, 3)
    product.collect_events()
    product.release(order_id, 3)
    [released] = product.collect_events()
    assert isinstance(released, Product.StockReleased)
    assert (released.order_id, released.quantity) == (order_id, 3)
    assert (product.reserved, product.available) == (0, 5)


@pytest.mark.parametrize("quantity", [0, 4])
def test_release_cannot_exceed_reserved(quantity):
    product = a_product(stock=5)
    product.reserve(uuid4(), 3)
    product.collect_events()
    with pytest.raises(InvalidInput):
        product.release(uuid4(), quantity)
    assert product.collect_events() == []


def test_replaying_the_events_rebuilds_the_same_state():
    product = a_product(stock=5)
    product.restock(2)
    product.reserve(uuid4(), 4)
    product.rename("Red mug")
    product.reprice(Decimal("9.99"))
    events = [*Product.register(
        sku="MUG-1", name="Blue mug", price=Decimal("19.99"), stock=5
    ).collect_events(), *product.collect_events()]

    replayed = None
    for domain_event in events:
        replayed = domain_event.mutate(replayed)
    assert (replayed.stock, replayed.reserved, replayed.name, replayed.price) == (
        7, 4, "Red mug", Decimal("9.99"),
    )
    assert replayed.version == product.version == 5


def test_a_deep_copy_is_independent_of_the_original():
    product = Product.register(sku="MUG-1", name="Mug", price=Decimal("9.99"), stock=5)
    product.collect_events()  # as loaded from the store: nothing pending
    copy_ = copy.deepcopy(product)
    assert vars(copy_) == vars(product)

    copy_.reserve(uuid4(), 2)
    copy_.rename("Big mug")

    assert (product.reserved, product.name, product.version) == (0, "Mug", 1)
    assert product.collect_events() == []
    assert (copy_.reserved, copy_.name, copy_.version) == (2, "Big mug", 3)
    assert [type(e).__name__ for e in copy_.collect_events()] == ["StockReserved", "Renamed"]
