"""Shared by the projection commands (a leading underscore: not a command itself)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError

from projections.registry import PROJECTORS, get_projector
from projections.runner import Progress, Projector
from projections.shadow import ShadowBusy, ShadowOutdated


def projectors_named(names: list[str]) -> list[Projector]:
    """The named projectors (all when none named), or a CommandError naming the known."""
    unknown = [name for name in names if name not in PROJECTORS]
    if unknown:
        raise CommandError(
            f"Unknown projection {', '.join(unknown)}; "
            f"known: {', '.join(sorted(PROJECTORS)) or '(none)'}"
        )
    return [get_projector(name) for name in (names or sorted(PROJECTORS))]


class ProgressPrinter:
    """Progress of one rebuild: a redrawn bar on a terminal, periodic lines otherwise.

    "events" counts the log's notifications covered so far (head = all of them);
    "applied" counts those the projector handled.
    """

    BAR_WIDTH = 30

    def __init__(self, stdout, name: str, *, tty: bool, interval: float = 5.0):
        self.stdout = stdout
        self.name = name
        self.tty = tty
        self.interval = interval if not tty else 0.1
        self.started = time.monotonic()
        self.last_shown = float("-inf")
        self.last: Progress | None = None
        self.shown: Progress | None = None

    def __call__(self, progress: Progress) -> None:
        self.last = progress
        now = time.monotonic()
        if now - self.last_shown >= self.interval:
            self.last_shown = now
            self._show(progress, now, final=False)

    def finish(self) -> None:
        """Show the last state (a line of its own on a terminal) unless a line shows it."""
        if self.last is not None and (self.tty or self.last is not self.shown):
            self._show(self.last, time.monotonic(), final=True)

    def describe(self, progress: Progress, now: float) -> str:
        elapsed = max(now - self.started, 1e-6)
        head = max(progress.head, progress.position)
        rate = progress.position / elapsed
        remaining = head - progress.position
        eta = timedelta(seconds=round(remaining / rate)) if rate > 0 else None
        percent = 100.0 * progress.position / head if head else 100.0
        return (
            f"{progress.position}/{head} events ({percent:.0f}%), "
            f"{progress.processed} applied, {rate:,.0f} events/s, "
            f"ETA {eta if eta is not None and remaining else '0:00:00'}"
        )

    def _show(self, progress: Progress, now: float, *, final: bool) -> None:
        self.shown = progress
        text = self.describe(progress, now)
        if not self.tty:
            self.stdout.write(f"{self.name}: {text}")
            return
        head = max(progress.head, progress.position)
        filled = self.BAR_WIDTH if not head else self.BAR_WIDTH * progress.position // head
        bar = "#" * filled + "-" * (self.BAR_WIDTH - filled)
        self.stdout.write(f"\r{self.name} [{bar}] {text}\033[K", ending="\n" if final else "")
        self.stdout.flush()


class ReplayCommand(BaseCommand):
    """Base of the commands that replay the whole log for each named projection."""

    def add_arguments(self, parser):
        parser.add_argument("names", nargs="*", metavar="NAME", help="projection names")
        parser.add_argument("--batch-size", type=int, default=None, help="events per batch")
        parser.add_argument(
            "--interval",
            type=float,
            default=5.0,
            help="seconds between progress lines when not on a terminal",
        )

    def replay(
        self,
        names: list[str],
        interval: float,
        replayer: Callable[..., object],
        batch_size: int | None,
    ) -> Iterator[tuple[Projector, object, float]]:
        """Run ``replayer`` on each named projector (all when none named) with a progress
        printer; yield the projector, what ``replayer`` returned and the seconds it took.
        A shadow busy or outdated stops the command with its message."""
        for projector in projectors_named(names):
            printer = ProgressPrinter(
                self.stdout, projector.name, tty=self.stdout.isatty(), interval=interval
            )
            started = time.monotonic()
            try:
                result = replayer(projector, batch_size=batch_size, progress=printer)
            except (ShadowBusy, ShadowOutdated) as busy:
                raise CommandError(str(busy)) from None
            printer.finish()
            yield projector, result, time.monotonic() - started
