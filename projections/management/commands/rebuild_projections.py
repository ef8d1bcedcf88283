"""Replay the whole log into the named read models, showing progress as it goes."""

from __future__ import annotations

import time
from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError

from projections.management.commands._common import projectors_named
from projections.runner import Progress
from projections.shadow import ShadowBusy, ShadowOutdated, rebuild


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


class Command(BaseCommand):
    help = (
        "Replay the whole event log into the named read models (all when none named). "
        "On PostgreSQL the new read model is built beside the live one, in committed "
        "batches, and swapped in by one short transaction; queries keep answering from "
        "the live rows meanwhile. An interrupted rebuild resumes when run again."
    )

    def add_arguments(self, parser):
        parser.add_argument("names", nargs="*", metavar="NAME", help="projection names")
        parser.add_argument("--batch-size", type=int, default=None, help="events per batch")
        parser.add_argument(
            "--interval",
            type=float,
            default=5.0,
            help="seconds between progress lines when not on a terminal",
        )

    def handle(self, *args, names, batch_size, interval, **options):
        for projector in projectors_named(names):
            printer = ProgressPrinter(
                self.stdout, projector.name, tty=self.stdout.isatty(), interval=interval
            )
            started = time.monotonic()
            try:
                applied = rebuild(projector, batch_size=batch_size, progress=printer)
            except (ShadowBusy, ShadowOutdated) as busy:
                raise CommandError(str(busy)) from None
            printer.finish()
            self.stdout.write(
                self.style.SUCCESS(
                    f"{projector.name}: rebuilt, {applied} events applied "
                    f"in {time.monotonic() - started:.1f}s"
                )
            )
