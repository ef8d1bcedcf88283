"""Shared by the projection commands (a leading underscore: not a command itself)."""

from __future__ import annotations

from django.core.management.base import CommandError

from projections.registry import PROJECTORS, get_projector
from projections.runner import Projector


def projectors_named(names: list[str]) -> list[Projector]:
    """The named projectors (all when none named), or a CommandError naming the known."""
    unknown = [name for name in names if name not in PROJECTORS]
    if unknown:
        raise CommandError(
            f"Unknown projection {', '.join(unknown)}; "
            f"known: {', '.join(sorted(PROJECTORS)) or '(none)'}"
        )
    return [get_projector(name) for name in (names or sorted(PROJECTORS))]
