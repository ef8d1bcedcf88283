"""The view that serves the OpenAPI document (``/api/schema/``); the document's rules
are in ``shop.schema`` (imported by DRF's settings, so it cannot import views itself)."""

from __future__ import annotations

import threading

from drf_spectacular.views import SpectacularAPIView


class SchemaView(SpectacularAPIView):
    """drf-spectacular's schema view, generating one document at a time per process.

    Its generator keeps the state of a run in globals (the view being introspected,
    ``GENERATOR_STATS``), so two threads of a gthread worker generating at once can
    answer 500 (tfranzel/drf-spectacular#1123, #1368, open). A readiness probe and a
    client fetching the schema together were enough.
    """

    _generating = threading.Lock()

    def _get_schema_response(self, request):
        with self._generating:
            return super()._get_schema_response(request)
