"""Projectors: one per read model, one handler per event type."""

from projections.runner import Projector

ALL_PROJECTORS: list[type[Projector]] = []
