"""Process pending events now, in this process, without Celery."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from projections.management.commands._common import projectors_named
from projections.models import Checkpoint
from projections.runner import catch_up, projection_position, retry_now
from shop.eventstore import head_position


class Command(BaseCommand):
    help = "Apply the events each projection has not processed yet (all when none named)."

    def add_arguments(self, parser):
        parser.add_argument("names", nargs="*", metavar="NAME", help="projection names")
        parser.add_argument(
            "--retry",
            action="store_true",
            help="retry a failed projection now instead of waiting for its back-off",
        )

    def handle(self, *args, names, retry, **options):
        failed = []
        for projector in projectors_named(names):
            if retry:
                retry_now(projector.name)
            applied = catch_up(projector)
            position = projection_position(projector.name)
            self.stdout.write(
                f"{projector.name}: {applied} events applied, "
                f"position {position} of {head_position()}"
            )
            checkpoint = Checkpoint.objects.of(projector.name).first()
            if checkpoint and checkpoint.is_failed:
                failed.append(
                    f"{projector.name} is parked before notification "
                    f"{checkpoint.error_position} (see projection_status; --retry to retry now)"
                )
        if failed:
            raise CommandError("; ".join(failed))
