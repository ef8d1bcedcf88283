"""Shared by the projection commands (a leading underscore: not a command itself)."""

from __future__ import annotations

import argparse
import functools
import multiprocessing
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, OutputWrapper
from django.db import connections

from projections.registry import PROJECTORS, get_projector
from projections.runner import Progress, Projector
from projections.shadow import (
    ShadowBusy,
    ShadowOutdated,
    ShadowUnsupported,
    check_duty_cycle,
)
from shop.databases import read_connection
from shop.eventstore import reset_app


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
    """Base of the commands that replay the whole log for each named projection.

    A replay is background work beside the live shop: it lowers its own CPU priority
    (``PROJECTION_REBUILD_NICE``, as ``nice``) so that the web processes and the live
    projections come first on a busy machine; and, as the database's backends serving
    it are not niced, it works at most ``PROJECTION_REBUILD_DUTY_CYCLE`` of the wall
    time (``--duty-cycle``), pausing between its committed batches. ``--jobs N``
    replays up to N projections side by side, each in a process of its own
    (PostgreSQL: each fills its own shadow), for a fast rebuild when the machine has
    cores to spare.
    """

    def add_arguments(self, parser):
        parser.add_argument("names", nargs="*", metavar="NAME", help="projection names")
        parser.add_argument("--batch-size", type=int, default=None, help="events per batch")
        parser.add_argument(
            "--interval",
            type=float,
            default=5.0,
            help="seconds between progress lines when not on a terminal",
        )
        parser.add_argument(
            "--jobs",
            type=int,
            default=1,
            help="projections replayed side by side, each in its own process "
            "(PostgreSQL; default 1: one after the other)",
        )
        parser.add_argument(
            "--duty-cycle",
            type=duty_cycle_argument,
            default=None,
            metavar="FRACTION",
            help="the fraction of wall time the replay works, in (0, 1]: after each "
            "committed batch it pauses so long that it works no more (PostgreSQL; the "
            "swap is never paused), leaving the rest of the CPU and the database to the "
            "live shop. The replay takes about 1/FRACTION as long, and its events/s and "
            "ETA count the pauses. Default: PROJECTION_REBUILD_DUTY_CYCLE "
            f"({settings.PROJECTION_REBUILD_DUTY_CYCLE:g}); 1: no pausing",
        )

    def replay(
        self,
        names: list[str],
        interval: float,
        replayer: Callable[..., object],
        batch_size: int | None,
        jobs: int = 1,
        duty_cycle: float | None = None,
    ) -> Iterator[tuple[Projector, object, float]]:
        """Run ``replayer`` on each named projector (all when none named) with a progress
        printer; yield the projector, what ``replayer`` returned and the seconds it took
        (wall time, pauses included). ``duty_cycle`` (None: the setting's) paces each
        replay. A shadow busy or outdated stops the command with its message."""
        if jobs < 1:
            raise CommandError(f"--jobs must be at least 1, not {jobs}.")
        if duty_cycle is None:
            duty_cycle = settings.PROJECTION_REBUILD_DUTY_CYCLE
        try:  # call_command(duty_cycle=…) skips the option's parsing
            duty_cycle = check_duty_cycle(duty_cycle)
        except ValueError as bad:
            raise CommandError(f"--duty-cycle: {bad}") from None
        replayer = functools.partial(replayer, duty_cycle=duty_cycle)
        projectors = projectors_named(names)
        lower_priority()
        if jobs > 1 and len(projectors) > 1 and read_connection.vendor == "postgresql":
            yield from self._replay_side_by_side(projectors, interval, replayer, batch_size,
                                                 jobs)
            return
        for projector in projectors:
            printer = ProgressPrinter(
                self.stdout, projector.name, tty=self.stdout.isatty(), interval=interval
            )
            started = time.monotonic()
            try:
                result = replayer(projector, batch_size=batch_size, progress=printer)
            except (ShadowBusy, ShadowOutdated, ShadowUnsupported) as busy:
                raise CommandError(str(busy)) from None
            printer.finish()
            yield projector, result, time.monotonic() - started

    def _replay_side_by_side(
        self,
        projectors: list[Projector],
        interval: float,
        replayer: Callable[..., object],
        batch_size: int | None,
        jobs: int,
    ) -> Iterator[tuple[Projector, object, float]]:
        """Each projector in a forked process of its own, up to ``jobs`` at once; yield
        each as it finishes. The children print their progress lines themselves."""
        by_name = {projector.name: projector for projector in projectors}
        connections.close_all()  # each child opens its own; none shares a socket
        context = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(max_workers=min(jobs, len(projectors)),
                                 mp_context=context) as pool:
            futures = [
                pool.submit(_replay_in_child, replayer, name, batch_size, interval,
                            os.getpid())
                for name in by_name
            ]
            try:
                for future in as_completed(futures):
                    name, outcome, seconds, failure = future.result()
                    if failure is not None:
                        raise CommandError(failure)
                    yield by_name[name], outcome, seconds
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)
                raise


def duty_cycle_argument(text: str) -> float:
    """``--duty-cycle``'s value: a number in (0, 1], or the parser's error saying so."""
    try:
        return check_duty_cycle(float(text))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be a number greater than 0 and at most 1 (the fraction of wall time "
            f"the replay works; 1: no pausing), not {text!r}"
        ) from None


def lower_priority() -> None:
    """Lower this process's CPU priority by ``PROJECTION_REBUILD_NICE`` (0: leave it)."""
    increment = settings.PROJECTION_REBUILD_NICE
    if increment > 0 and hasattr(os, "nice"):
        os.nice(increment)


def _replay_in_child(
    replayer: Callable[..., object], name: str, batch_size: int | None, interval: float,
    parent: int,
) -> tuple[str, object, float, str | None]:
    """One projection's replay in a pool process. Returns (name, outcome, seconds,
    failure): a failure travels back as its message (an exception may not pickle)."""
    stdout = OutputWrapper(sys.stdout)
    printer = ProgressPrinter(stdout, name, tty=False, interval=interval)

    def progress(step: Progress) -> None:
        if os.getppid() != parent:  # the command was killed: stop as it would have
            os._exit(1)
        printer(step)
        sys.stdout.flush()

    started = time.monotonic()
    try:
        outcome = replayer(get_projector(name), batch_size=batch_size, progress=progress)
        printer.finish()
        return name, outcome, time.monotonic() - started, None
    except (ShadowBusy, ShadowOutdated, ShadowUnsupported) as busy:
        return name, None, 0.0, str(busy)
    except Exception as exc:
        return name, None, 0.0, f"{name} failed: {exc!r}\n{traceback.format_exc()}"
    finally:
        sys.stdout.flush()
        connections.close_all()
        reset_app()
