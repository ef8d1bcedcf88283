"""The catalog's write model: a product with its price and its stock.

Rules are checked in the public methods before an event fires; the decorated bodies
only change state, so replaying the stream is pure.
"""

from __future__ import annotations

from decimal import Decimal
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

from shop.errors import Conflict, InvalidInput
from shop.text import check_visible_text

SKU_NAMESPACE = uuid5(NAMESPACE_URL, "https://shop.example/sku")

# The catalog's input rules; the API's serializers (and through them the admin's
# forms) and the read models read them from here.
SKU_PATTERN = r"\A[A-Za-z0-9_-]{1,64}\Z"
SKU_MAX_LENGTH = 64
NAME_MAX_LENGTH = 200
CATEGORY_MAX_LENGTH = 100  # optional: "" for none
# Caps beyond API.md's rules keep every number inside what read models can store.
MAX_STOCK = 1_000_000_000
MAX_RESTOCK = 1000


class DuplicateSku(Conflict):
    code = "duplicate_sku"
    default_detail = "A product with this SKU already exists."


class InsufficientStock(Conflict):
    code = "insufficient_stock"
    default_detail = "Not enough stock for this order."


class Product(Aggregate):
    """A product for sale. Its id is derived from its SKU, so the event store itself
    rejects a second registration of the same SKU.

    Version 2 added ``category``. Events and snapshots stored before it are upcast
    when read (``upcast_v1_v2`` below): they are never rewritten (docs: changing an
    event).
    """

    class_version = 2  # of the aggregate's snapshot state

    @staticmethod
    def upcast_v1_v2(state: dict) -> None:
        state["category"] = ""

    class Registered(Aggregate.Created):
        class_version = 2
        sku: str
        name: str
        price: Decimal
        stock: int
        category: str

        @staticmethod
        def upcast_v1_v2(state: dict) -> None:
            state["category"] = ""

    @staticmethod
    def create_id(sku: str, **_: object) -> UUID:
        return product_id_for_sku(sku)

    @event(Registered)
    def __init__(
        self, sku: str, name: str, price: Decimal, stock: int, category: str = ""
    ) -> None:
        self.sku = sku
        self.name = name
        self.price = price
        self.stock = stock
        self.category = category
        self.reserved = 0

    @classmethod
    def register(
        cls, *, sku: str, name: str, price: Decimal, stock: int, category: str = ""
    ) -> Product:
        check_price(price)
        if stock < 0:
            raise InvalidInput.field("stock", "Stock cannot be negative.")
        check_name(name)
        category = check_category(category)
        return cls(sku=sku, name=name, price=price, stock=stock, category=category)

    def __deepcopy__(self, memo: dict) -> Product:
        """The event store hands each command a deep copy of its cached product (so a
        command that fails cannot corrupt the cache). Every attribute of a product is
        immutable (str, int, Decimal, UUID, datetime) but the list of pending events,
        so a copy of the attributes with a list of its own is that deep copy, at a
        fraction of ``copy.deepcopy``'s walk (a busy product is copied for every order).
        """
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        clone.__dict__["_pending_events"] = list(self.__dict__["_pending_events"])
        return clone

    @property
    def available(self) -> int:
        return self.stock - self.reserved

    def rename(self, name: str) -> None:
        check_name(name)
        if name != self.name:  # renaming to the current name changes nothing
            self._renamed(name=name)

    @event("Renamed")
    def _renamed(self, name: str) -> None:
        self.name = name

    def reprice(self, price: Decimal) -> None:
        check_price(price)
        if price != self.price:  # nor does repricing to the current price
            self._repriced(price=price)

    @event("Repriced")
    def _repriced(self, price: Decimal) -> None:
        self.price = price

    def restock(self, quantity: int) -> None:
        if quantity < 1:
            raise InvalidInput.field("quantity", "Restock at least one unit.")
        self._restocked(quantity=quantity)

    @event("Restocked")
    def _restocked(self, quantity: int) -> None:
        self.stock += quantity

    def reserve(self, order_id: UUID, quantity: int) -> None:
        if quantity < 1:
            raise InvalidInput.field("quantity", "Reserve at least one unit.")
        if quantity > self.available:
            raise InsufficientStock(
                f"Only {self.available} of {self.sku} available, {quantity} requested."
            )
        self._stock_reserved(order_id=order_id, quantity=quantity)

    @event("StockReserved")
    def _stock_reserved(self, order_id: UUID, quantity: int) -> None:
        self.reserved += quantity

    def release(self, order_id: UUID, quantity: int) -> None:
        if not 1 <= quantity <= self.reserved:
            raise InvalidInput.field("quantity", "Cannot release more than is reserved.")
        self._stock_released(order_id=order_id, quantity=quantity)

    @event("StockReleased")
    def _stock_released(self, order_id: UUID, quantity: int) -> None:
        self.reserved -= quantity


def product_id_for_sku(sku: str) -> UUID:
    # SKUs are compared case-insensitively: "mug-1" and "MUG-1" are one product.
    return uuid5(SKU_NAMESPACE, sku.casefold())


def check_name(name: str) -> None:
    """A name follows the visible-text rule (``shop.text.check_visible_text``)."""
    check_visible_text("name", name, label="Name")


def check_category(category: str) -> str:
    """A category is optional ("" for none), trimmed, at most CATEGORY_MAX_LENGTH,
    and follows the visible-text rule (``shop.text.check_visible_text``)."""
    category = category.strip()
    if len(category) > CATEGORY_MAX_LENGTH:
        raise InvalidInput.field(
            "category", f"Category has at most {CATEGORY_MAX_LENGTH} characters."
        )
    if category:
        check_visible_text("category", category, label="Category")
    return category


def check_price(price: Decimal) -> None:
    if price <= 0:
        raise InvalidInput.field("price", "Price must be positive.")
    if price != price.quantize(Decimal("0.01")):
        raise InvalidInput.field("price", "Price has at most two decimal places.")
