"""The drift check: replay the log beside the live read models and compare row by row."""

from __future__ import annotations

import time

from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from projections.management.commands._common import projectors_named
from projections.management.commands.rebuild_projections import ProgressPrinter
from projections.shadow import ShadowBusy, verify


class Command(BaseCommand):
    help = (
        "Replay the whole log into a shadow of each named read model (all when none "
        "named), compare it row by row with the live one at the same position, and "
        "print each differing key. Exits 1 if any differ. Changes nothing."
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
        if connection.vendor != "postgresql":
            raise CommandError("verify_projections needs PostgreSQL (DATABASE_URL).")
        drifted = []
        for projector in projectors_named(names):
            printer = ProgressPrinter(
                self.stdout, projector.name, tty=self.stdout.isatty(), interval=interval
            )
            started = time.monotonic()
            try:
                position, drifts = verify(projector, batch_size=batch_size, progress=printer)
            except ShadowBusy as busy:
                raise CommandError(str(busy)) from None
            printer.finish()
            for drift in drifts:
                self.stdout.write(f"{projector.name}: {drift}")
            summary = (
                f"{projector.name}: {len(drifts)} differing rows at position {position} "
                f"({time.monotonic() - started:.1f}s)"
            )
            if drifts:
                drifted.append(projector.name)
                self.stdout.write(self.style.ERROR(summary))
            else:
                self.stdout.write(self.style.SUCCESS(summary))
        if drifted:
            raise CommandError(
                f"Read models differ from the log: {', '.join(drifted)}", returncode=1
            )
