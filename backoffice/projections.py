"""Projections in the back office: one status page (position, head, lag, state and last error
of every registered projection) with actions to rebuild, retry or catch up, a
read-only view of each checkpoint row with its full stored error, and the daily sales
(the dashboard charts them), and the activity log read as sentences."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse

from backoffice.commands import ReadModelAdmin
from backoffice.money import money
from backoffice.names import projection_name
from projections.activity import WAYS_IN, sentence
from projections.models import Activity, Checkpoint, SalesDaily
from projections.registry import PROJECTORS, get_projector
from projections.runner import catch_up, retry_now
from projections.shadow import ShadowBusy, rebuild
from projections.status import projection_statuses


def _rebuild(request: HttpRequest, name: str) -> None:
    try:
        # Not paced (PROJECTION_REBUILD_DUTY_CYCLE is the commands'): pauses would only
        # hold this request, and its web thread, the longer.
        replayed = rebuild(get_projector(name), duty_cycle=1.0)
    except ShadowBusy as busy:
        messages.error(request, str(busy))
        return
    messages.success(
        request,
        f"Rebuilt {projection_name(name)}: replayed {replayed} events into a new read model. "
        "This ran synchronously in this request, which suits a small log; for a large "
        "one use `manage.py rebuild_projections`.",
    )


def _retry(request: HttpRequest, name: str) -> None:
    retry_now(name)
    _catch_up(request, name)


def _catch_up(request: HttpRequest, name: str) -> None:
    applied = catch_up(get_projector(name))
    checkpoint = Checkpoint.objects.of(name).first()
    if checkpoint is not None and checkpoint.is_failed:
        messages.error(
            request,
            f"{projection_name(name)} is still failing at event {checkpoint.error_position} "
            f"of the log (applied {applied} events before it); see its last error.",
        )
    else:
        messages.success(
            request, f"{projection_name(name)} caught up: applied {applied} new events."
            if applied else f"{projection_name(name)} was already up to date.")


# action name -> (label, what it does for one projection)
PROJECTION_ACTIONS: dict[str, tuple[str, Callable[[HttpRequest, str], None]]] = {
    "rebuild": ("Rebuild selected projections (replay the whole log)", _rebuild),
    "retry": ("Retry selected failed projections now", _retry),
    "catch_up": ("Catch up selected projections now", _catch_up),
}


@admin.register(Checkpoint)
class CheckpointAdmin(ReadModelAdmin):
    """The changelist is the projections' status page (every registered projection,
    whether or not it has a checkpoint row yet); each row links to its checkpoint."""

    list_display = ("projection_label", "position", "status", "failures", "updated_at")
    fields = ("projection_label", "upstream", "position", "status", "failures",
              "error_position", "retry_at", "updated_at", "last_error")
    readonly_fields = ("projection_label",)
    status_template = "admin/projections/projection_status.html"

    @admin.display(description="Projection", ordering="projection")
    def projection_label(self, checkpoint: Checkpoint) -> str:
        return projection_name(checkpoint.projection)

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None
                        ) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        if request.method == "POST":
            self._run_action(request)
            return HttpResponseRedirect(request.get_full_path())
        statuses = projection_statuses()
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Projection status",
            "statuses": statuses,
            "actions": [(key, label) for key, (label, _) in PROJECTION_ACTIONS.items()],
            **(extra_context or {}),
        }
        return TemplateResponse(request, self.status_template, context)

    def _run_action(self, request: HttpRequest) -> None:
        action = PROJECTION_ACTIONS.get(request.POST.get("action", ""))
        names = [name for name in request.POST.getlist("projection") if name in PROJECTORS]
        if action is None:
            messages.error(request, "Choose an action.")
            return
        if not names:
            messages.warning(request, "Select at least one projection.")
            return
        _label, run = action
        for name in names:
            try:
                run(request, name)
            except Exception as exc:  # a failing handler or a held lock: show, don't 500
                messages.error(request, f"{projection_name(name)}: {exc}")


@admin.register(SalesDaily)
class SalesDailyAdmin(ReadModelAdmin):
    list_display = ("day", "orders", "units", "revenue_label", "cancelled")
    date_hierarchy = "day"
    ordering = ("-day",)
    list_per_page = 60

    @admin.display(description="Revenue", ordering="revenue")
    def revenue_label(self, row: SalesDaily) -> str:
        return money(row.revenue)

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None
                        ) -> HttpResponse:
        return super().changelist_view(request, {"title": "Sales per day (UTC days of placement)",
                                                 **(extra_context or {})})


@admin.register(Activity)
class ActivityAdmin(ReadModelAdmin):
    """Who did what, newest first, each line a sentence: filter by who (a staff
    member's or a customer's username), by what (search a SKU or an order number), by
    the kind of act, the way in and the date."""

    list_display = ("at", "summary", "via_label", "request_id")
    list_filter = ("actor_kind", "via", "type", ("actor_username", admin.AllValuesFieldListFilter))
    search_fields = ("=subject", "=actor_username", "=request_id")
    search_help_text = "A SKU, an order number, a username or a request id (exact)."
    date_hierarchy = "at"
    ordering = ("-position",)
    list_per_page = 100
    show_full_result_count = False
    fields = ("position", "at", "summary", "actor_kind", "actor_user_id", "actor_username",
              "via", "request_id", "causation_id", "aggregate_type", "aggregate_id",
              "subject", "type", "details")

    @admin.display(description="What happened")
    def summary(self, row: Activity) -> str:
        return sentence(row, money)

    @admin.display(description="Way in", ordering="via")
    def via_label(self, row: Activity) -> str:
        return WAYS_IN.get(row.via, row.via)
