"""The drift check: replay the log beside the live read models and compare row by row."""

from __future__ import annotations

from django.core.management.base import CommandError

from projections.management.commands._common import ReplayCommand
from projections.shadow import verify


class Command(ReplayCommand):
    help = (
        "Replay the whole log into a shadow of each named read model (all when none "
        "named), compare it row by row with the live one at the same position, and "
        "print each differing key. Exits 1 if any differ. Changes nothing. Paced as "
        "rebuild_projections is (--duty-cycle): about 1/duty as long as unpaced."
    )

    def handle(self, *args, names, batch_size, interval, jobs, duty_cycle, **options):
        drifted = []
        for projector, (position, drifts), seconds in self.replay(
            names, interval, verify, batch_size, jobs, duty_cycle
        ):
            for drift in drifts:
                self.stdout.write(f"{projector.name}: {drift}")
            summary = (
                f"{projector.name}: {len(drifts)} differing rows at position {position} "
                f"({seconds:.1f}s)"
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
