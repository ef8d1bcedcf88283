"""``/api/health/``: is the shop able to serve? Database, broker, projection lag.

- ``down`` (503): neither database can be reached.
- ``degraded`` (200): one side's database cannot be reached (the write side's, with the
  event store: commands answer 503 while queries still answer; the read side's:
  commands still answer while queries wait for it), the broker is down, or a module's
  check says unhealthy (the projections: one is parked, or lags more than
  ``PROJECTION_LAG_ALERT_SECONDS`` behind the log, e.g. because no worker runs).
  ``reasons`` says why, in a sentence each.
- ``ok`` (200) otherwise.

Anyone may ask; only staff see the details (each part's report), since they reveal
the shop's volume and its insides. Bad credentials just mean no details.
"""

from __future__ import annotations

import contextlib
import copy
import logging
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import connection
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import exceptions, serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from shop.api import enum_field
from shop.databases import read_connection, replica_lags
from shop.eventstore import head_position

logger = logging.getLogger(__name__)


def check_database() -> str:
    """The write side: Django's default database and the event store."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    head_position()  # the event store, through its own pool
    return "ok"


def check_read_database() -> str:
    """The read side's database (read models and checkpoints)."""
    with read_connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return "ok"


def check_broker() -> str:
    if not settings.CELERY_BROKER_URL:
        return "not configured (projections run in-process)"
    from shop.celery import app

    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=1)
    return "ok"


# A module's part of the answer: (what to report under its name, healthy?). An
# unhealthy part degrades the answer; it does not fail it.
HealthCheck = Callable[[], tuple[Any, bool]]
_contributions: dict[str, HealthCheck] = {}
_schemas: dict[str, type[serializers.Serializer]] = {}


def contribute(
    name: str, check: HealthCheck, schema: type[serializers.Serializer] | None = None
) -> None:
    """Add a module's check to the health answer, under ``name`` (from its
    ``AppConfig.ready()``: the kernel knows no module); ``schema`` documents its
    report in ``/api/schema/``."""
    _contributions[name] = check
    if schema is not None:
        _schemas[name] = schema


class HealthSerializer(serializers.Serializer):
    """The shop's health: the status for anyone; staff also get each part's report."""

    # The modules' parts are added by get_fields() as they declared them, when the
    # schema is generated (after every AppConfig.ready()).

    status = serializers.CharField()  # replaced by STATUS_FIELD below
    database = serializers.CharField(
        required=False,
        help_text='Staff only: the write side\'s database and the event store: "ok" or '
        '"error: <exception>".',
    )
    read_database = serializers.CharField(
        required=False,
        help_text='Staff only: the read side\'s database: "ok" or "error: <exception>".',
    )
    replicas = serializers.DictField(
        child=serializers.DictField(), required=False,
        help_text="Staff only, with READ_REPLICA_URLS: each read replica's replay lag "
        "(null: unreachable) and whether it serves queries.",
    )
    reasons = serializers.ListField(
        child=serializers.CharField(), required=False,
        help_text="Staff only: why the status is not ok, a sentence each.",
    )
    broker = serializers.CharField(
        required=False,
        help_text='Staff only: "ok", "not configured (…)" or "error: <exception>".',
    )

    class Meta:
        ref_name = "Health"

    def get_fields(self) -> dict[str, serializers.Field]:
        fields = super().get_fields()
        fields["status"] = copy.deepcopy(STATUS_FIELD)
        for name in _contributions:
            schema = _schemas.get(name)
            fields[name] = (
                schema(required=False, help_text=f"Staff only: the {name}' report.")
                if schema is not None
                else serializers.DictField(required=False, help_text="Staff only.")
            )
        return fields


OK, DEGRADED, DOWN = "ok", "degraded", "down"
STATUS_FIELD = enum_field(
    "HealthStatus", (OK, DEGRADED, DOWN), serializers.CharField,
    description="ok; degraded (200): one database is unreachable, the read side is late "
    "or the broker is down; down (503): both databases are unreachable.",
)


class HealthApi(APIView):
    """Whether the shop can serve: ok, degraded (the read side is late) or down."""

    permission_classes = [AllowAny]
    # Load balancers and monitors poll it; its answer must never be a 429.
    throttle_classes: list = []

    def perform_authentication(self, request: Request) -> None:
        # Authenticate to tell staff apart; bad credentials leave the request
        # anonymous (DRF has made it so): the status alone.
        with contextlib.suppress(exceptions.AuthenticationFailed):
            request.user  # noqa: B018

    @extend_schema(
        summary="Service health (staff also see the details)",
        responses={
            200: HealthSerializer,
            503: inline_serializer(
                "HealthDown",
                {
                    "status": STATUS_FIELD,
                    "database": serializers.CharField(required=False, help_text="Staff only."),
                    "read_database": serializers.CharField(
                        required=False, help_text="Staff only."),
                },
            ),
        },
    )
    def get(self, request: Request) -> Response:
        body, status = self.check()
        user = request.user
        if not (user.is_authenticated and user.is_active and user.is_staff):
            body = {"status": body["status"]}
        return Response(body, status=status)

    def check(self) -> tuple[dict[str, Any], int]:
        body: dict[str, Any] = {"status": OK}
        reasons: list[str] = []
        for key, probe, why in (
            ("database", check_database,
             "The write side's database is unreachable: commands answer 503."),
            ("read_database", check_read_database,
             "The read side's database is unreachable: queries answer 503; commands "
             "are still saved and projected once it is back."),
        ):
            try:
                body[key] = probe()
            except Exception as exc:
                logger.warning("Health check: %s down", key, exc_info=True)
                body[key] = f"error: {exc.__class__.__name__}"
                reasons.append(why)
        databases_ok = not reasons
        if len(reasons) == 2:
            return {"status": DOWN, "database": body["database"],
                    "read_database": body["read_database"]}, 503
        try:
            body["broker"] = check_broker()
        except Exception as exc:
            body["broker"] = f"error: {exc.__class__.__name__}"
            reasons.append("The broker is unreachable: the read side catches up only "
                           "on the sweep, or not at all.")
        lags = replica_lags(fresh=True)
        if lags:
            limit = settings.READ_REPLICA_MAX_LAG_SECONDS
            body["replicas"] = {
                alias: {"lag_seconds": lag, "serving": lag is not None and lag <= limit}
                for alias, lag in lags.items()}
            for alias, lag in lags.items():
                if lag is None or lag > limit:
                    reasons.append(
                        f"Read replica {alias} is "
                        f"{'unreachable' if lag is None else f'{lag:.1f} s behind'}: "
                        "the read primary serves its queries.")
        if databases_ok:  # with a database down, the modules' checks would fail on it
            for name, check in _contributions.items():
                try:
                    body[name], healthy = check()
                except Exception as exc:
                    logger.warning("Health check: %s failed", name, exc_info=True)
                    reasons.append(f"The {name}' check failed: {exc.__class__.__name__}.")
                    continue
                if not healthy:
                    reasons.append(f"The {name} report a problem (see {name}).")
        if reasons:
            body["status"] = DEGRADED
            body["reasons"] = reasons
        return body, 200
