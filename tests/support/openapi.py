"""The published OpenAPI document as a test oracle: every exchange validated strictly
with ``openapi-core`` (status declared, body and headers matching their schemas).

- :func:`published_schema` is the document exactly as ``/api/schema/`` serves it;
- :class:`Validator` checks Django test-client responses (the API suite) and
  ``httpx`` exchanges (the generated client against a live server), and counts the
  operations it has seen.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from openapi_core import OpenAPI
from openapi_core.contrib.django import DjangoOpenAPIRequest, DjangoOpenAPIResponse
from openapi_core.datatypes import RequestParameters
from openapi_core.templating.paths.exceptions import OperationNotFound, PathNotFound
from werkzeug.datastructures import Headers, ImmutableMultiDict


def published_schema() -> dict[str, Any]:
    """The schema ``/api/schema/?format=json`` serves, generated in this process."""
    from drf_spectacular.generators import SchemaGenerator
    from drf_spectacular.renderers import OpenApiJsonRenderer

    schema = SchemaGenerator().get_schema(request=None, public=True)
    return json.loads(OpenApiJsonRenderer().render(schema, renderer_context={}))


class DjangoTestRequest(DjangoOpenAPIRequest):
    """A Django request whose body may have been streamed already (only the response
    is validated for these)."""

    @property
    def body(self) -> bytes:
        return getattr(self.request, "_body", b"")


class HttpxOpenAPIRequest:
    """An ``httpx.Request`` as openapi-core reads a request."""

    def __init__(self, request: httpx.Request) -> None:
        self.request = request
        url = urlsplit(str(request.url))
        self.host_url = f"{url.scheme}://{url.netloc}"
        # The shop answers an /api/ path without its final "/" as the documented one.
        self.path = url.path if url.path.endswith("/") else f"{url.path}/"
        self.method = request.method.lower()
        self.parameters = RequestParameters(
            query=ImmutableMultiDict(
                [(k, v) for k, vs in parse_qs(url.query, keep_blank_values=True).items()
                 for v in vs]
            ),
            header=Headers(list(request.headers.items())),
            cookie=ImmutableMultiDict(),
        )

    @property
    def body(self) -> bytes | None:
        return self.request.content or None

    @property
    def content_type(self) -> str:
        return self.request.headers.get("content-type", "")


class HttpxOpenAPIResponse:
    def __init__(self, response: httpx.Response) -> None:
        self.response = response

    @property
    def data(self) -> bytes:
        return self.response.read()

    @property
    def status_code(self) -> int:
        return self.response.status_code

    @property
    def content_type(self) -> str:
        return self.response.headers.get("content-type", "")

    @property
    def headers(self) -> Headers:
        return Headers(list(self.response.headers.items()))


class Validator:
    """Validates exchanges against one document and remembers what it checked."""

    def __init__(self, schema: dict[str, Any]) -> None:
        self.openapi = OpenAPI.from_dict(schema)
        self.seen: Counter[tuple[str, str, int]] = Counter()

    def _operation(self, request: Any) -> tuple[str, str] | None:
        """``(method, path template)`` of the documented operation, or None."""
        try:
            found = self.openapi.request_validator._find_path(request)
        except (PathNotFound, OperationNotFound):
            return None
        # e.g. ("get", "/api/queries/orders/{order_id}/")
        return request.method, found.path_result.pattern

    def check_response(self, request: Any, response: Any) -> bool:
        """Validate a response to a documented operation (False: not documented)."""
        operation = self._operation(request)
        if operation is None:
            return False
        self.openapi.validate_response(request, response)
        self.seen[(*operation, response.status_code)] += 1
        return True

    def check_exchange(self, request: Any, response: Any) -> None:
        """Validate a request and its response; both must be documented."""
        self.openapi.validate_request(request)
        assert self.check_response(request, response), "undocumented operation"

    def check_django(self, response: Any) -> bool:
        """A Django test client's response (its ``wsgi_request`` is the request)."""
        request = getattr(response, "wsgi_request", None)
        if request is None or request.method == "HEAD":
            return False
        return self.check_response(DjangoTestRequest(request), DjangoOpenAPIResponse(response))

    def check_httpx(self, response: httpx.Response) -> None:
        response.read()
        self.check_exchange(HttpxOpenAPIRequest(response.request), HttpxOpenAPIResponse(response))
