"""Replay the whole log into the named read models, showing progress as it goes."""

from __future__ import annotations

from projections.management.commands._common import ReplayCommand
from projections.shadow import rebuild


class Command(ReplayCommand):
    help = (
        "Replay the whole event log into the named read models (all when none named). "
        "On PostgreSQL the new read model is built beside the live one, in committed "
        "batches, and swapped in by one short transaction; queries keep answering from "
        "the live rows meanwhile. An interrupted rebuild resumes when run again. It "
        "works at most --duty-cycle of the wall time (PROJECTION_REBUILD_DUTY_CYCLE), "
        "so it takes about 1/duty as long as an unpaced one."
    )

    def handle(self, *args, names, batch_size, interval, jobs, duty_cycle, **options):
        for projector, applied, seconds in self.replay(
            names, interval, rebuild, batch_size, jobs, duty_cycle
        ):
            self.stdout.write(
                self.style.SUCCESS(
                    f"{projector.name}: rebuilt, {applied} events applied in {seconds:.1f}s"
                )
            )
