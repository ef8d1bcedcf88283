"""A small catalog and the top results a shopper expects from it: one table, checked
over HTTP on PostgreSQL (tests/api/test_product_search.py) and on SQLite
(tests/sqlite/test_embedded_default.py)."""

from __future__ import annotations

from collections.abc import Callable

# sku, name, price, stock, category
CATALOG = [
    ("MUG-1", "Blue mug", "12.50", 10, "kitchen"),
    ("MUG-2", "Red mug", "11.00", 0, "kitchen"),
    ("BOWL-1", "Blue bowl", "18.00", 5, "kitchen"),
    ("TEE-S", "Logo T-shirt, small", "19.99", 50, "clothing"),
    ("TEE-M", "Logo T-shirt, medium", "21.99", 0, "clothing"),
    ("HOOD-M", "Zip hoodie, medium", "49.00", 25, "clothing"),
    ("BOTTLE-1", "Steel water bottle", "24.00", 70, "outdoor"),
    ("NOTE-A5", "A5 dotted notebook", "6.50", 300, "stationery"),
    ("PEN-3", "Gel pens, pack of 3", "4.20", 500, "stationery"),
    ("LAMP-9", "Desk lamp", "120.00", 3, "home"),
]

# (why, query parameters, the SKUs expected first, in order)
CASES = [
    ("typo: letters swapped", {"q": "mgu"}, ["MUG-1", "MUG-2"]),
    ("typo: a letter missing", {"q": "botle"}, ["BOTTLE-1"]),
    ("typo: a letter wrong", {"q": "hoodia"}, ["HOOD-M"]),
    ("prefix", {"q": "noteb"}, ["NOTE-A5"]),
    ("multi-word with a prefix", {"q": "blue mu"}, ["MUG-1"]),
    ("multi-word, both words", {"q": "blue bowl"}, ["BOWL-1"]),
    ("SKU", {"q": "PEN-3"}, ["PEN-3"]),
    ("SKU prefix, any case", {"q": "tee"}, ["TEE-M", "TEE-S"]),
    ("category", {"q": "stationery"}, ["NOTE-A5", "PEN-3"]),
    ("a word and a category", {"q": "blue kitchen"}, ["BOWL-1", "MUG-1"]),
    ("search is an alias of q", {"search": "lamp"}, ["LAMP-9"]),
    ("nothing like it", {"q": "xylophone"}, []),
    ("filter and sort without q", {"category": "kitchen", "sort": "price"},
     ["MUG-2", "MUG-1", "BOWL-1"]),
    ("in stock, dearest first", {"category": "clothing", "in_stock": "true", "sort": "-price"},
     ["HOOD-M", "TEE-S"]),
    ("price range by name", {"min_price": "10", "max_price": "20", "sort": "name"},
     ["BOWL-1", "MUG-1", "TEE-S", "MUG-2"]),
    ("q with a price filter", {"q": "mug", "max_price": "12"}, ["MUG-2"]),
]


def check(get: Callable[[dict], list[str]]) -> list[str]:
    """The failures of ``CASES``: ``get(params)`` answers the SKUs of the first page."""
    failures = []
    for why, params, expected in CASES:
        found = get(params)
        if found[: len(expected)] != expected or (not expected and found):
            failures.append(f"{why}: {params} gave {found}, expected {expected} first")
    return failures
