"""The search phase's catalog words, queries and wrk scripts (no Django: ``run.py`` and
``profile_search.py`` read the queries and scripts, ``jobs.py catalog`` writes the
products)."""

from __future__ import annotations

import random
from pathlib import Path

from bench import loadgen

# The bench catalog's words: names such as "Blue steel mug 4821", in 20 categories.
COLORS = ["blue", "red", "green", "black", "white", "grey", "yellow", "orange", "pink",
          "purple", "brown", "navy"]
MATERIALS = ["steel", "glass", "wooden", "cotton", "leather", "ceramic", "plastic",
             "bamboo", "linen"]
NOUNS = ["mug", "bowl", "plate", "cup", "bottle", "lamp", "chair", "table", "shirt",
         "hoodie", "cap", "bag", "notebook", "pen", "pencil", "clock", "vase", "towel",
         "blanket", "pillow", "jar", "tray", "box", "basket", "brush", "comb", "mirror",
         "candle", "frame", "rug", "sock", "scarf", "glove", "belt", "wallet", "watch",
         "kettle", "teapot", "spoon", "knife"]
CATEGORIES = ["kitchen", "dining", "bath", "bedroom", "office", "clothing", "outdoor",
              "garden", "kids", "pets", "travel", "sports", "decor", "lighting", "storage",
              "cleaning", "tools", "crafts", "music", "gifts"]


#: The plain product list (first page, no filter): the search phase's baseline.
PRODUCT_LIST = "/api/queries/products/"


#: The search phase's queries: each has a typo, a filter or a sort (bench/run.py).
def search_queries() -> list[str]:
    rng = random.Random(21)
    queries = []
    for i in range(50):
        color, material, noun = rng.choice(COLORS), rng.choice(MATERIALS), rng.choice(NOUNS)
        category = rng.choice(CATEGORIES)
        kind = i % 5
        if kind == 0:  # a typo: two letters swapped
            j = rng.randrange(len(noun) - 1)
            typo = noun[:j] + noun[j + 1] + noun[j] + noun[j + 2:]
            queries.append(f"q={color}+{typo}")
        elif kind == 1:  # a prefix and a category
            queries.append(f"q={material[:4]}&category={category}")
        elif kind == 2:  # words, a price range, in stock
            queries.append(f"q={color}+{noun}&min_price=10&max_price=200&in_stock=true")
        elif kind == 3:  # a filter and a sort, no q
            queries.append(f"category={category}&sort=-price")
        else:  # words sorted by price
            queries.append(f"q={material}+{noun}&sort=price")
    return queries


def search_paths() -> list[str]:
    """The product list's path with each of :func:`search_queries`."""
    return [f"{PRODUCT_LIST}?{q}" for q in search_queries()]


def wrk_scripts(directory: Path) -> tuple[Path, Path]:
    """The wrk scripts of the search phase, written in ``directory``: the plain product
    list, and the 50 searches in turn."""
    plain = loadgen.write_script(directory, "products", "GET", PRODUCT_LIST, [])
    search = loadgen.write_script(directory, "search", "GET", "/", [], paths=search_paths())
    return plain, search
