"""Every projection, by name. The runner, the tasks and the commands look them up here."""

from __future__ import annotations

from projections.projectors import ALL_PROJECTORS
from projections.runner import Projector

PROJECTORS: dict[str, type[Projector]] = {p.name: p for p in ALL_PROJECTORS}


def get_projector(name: str) -> Projector:
    try:
        return PROJECTORS[name]()
    except KeyError:
        raise KeyError(
            f"Unknown projection {name!r}; known: {', '.join(sorted(PROJECTORS))}"
        ) from None
