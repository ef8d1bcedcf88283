"""``/api/health/``: is the shop able to serve? Database, broker, projection lag.

Answers 200 when the databases answer (a broker outage or a lagging projection only
degrades the read side's freshness, so they are reported, not failed), and 503 when
the database or the event store is down.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import connection
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from shop.eventstore import head_position

logger = logging.getLogger(__name__)


def check_database() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    head_position()  # the event store, through its own pool
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


def contribute(name: str, check: HealthCheck) -> None:
    """Add a module's check to the health answer, under ``name`` (from its
    ``AppConfig.ready()``: the kernel knows no module)."""
    _contributions[name] = check


class HealthApi(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(
        summary="Service health",
        responses={
            200: inline_serializer(
                "Health",
                {
                    "status": serializers.CharField(),
                    "database": serializers.CharField(),
                    "broker": serializers.CharField(),
                    "projections": serializers.DictField(),
                },
            ),
            503: inline_serializer(
                "HealthDown",
                {"status": serializers.CharField(), "database": serializers.CharField()},
            ),
        },
    )
    def get(self, request: Request) -> Response:
        body: dict = {"status": "ok"}
        try:
            body["database"] = check_database()
        except Exception as exc:
            logger.warning("Health check: database down", exc_info=True)
            return Response(
                {"status": "down", "database": f"error: {exc.__class__.__name__}"},
                status=503,
            )
        try:
            body["broker"] = check_broker()
        except Exception as exc:
            body["status"] = "degraded"
            body["broker"] = f"error: {exc.__class__.__name__}"
        for name, check in _contributions.items():
            body[name], healthy = check()
            if not healthy:
                body["status"] = "degraded"
        return Response(body)
