"""The published OpenAPI document: one schema class for every view, the bearer scheme
and a postprocessing hook.

General rules, so that a new endpoint is documented truthfully without extra work:

- **Operation ids** come from the view's class name (``OrderPlaceApi`` → ``order_place``);
  ``extend_schema(operation_id=...)`` still wins.
- **Security**: an endpoint that lets anyone in (``AllowAny`` only) declares none;
  the others accept a bearer token (``Authorization: Bearer <token>``, or
  ``Token <token>``) or a session cookie.
- **Errors**: every operation declares each error status the server can answer,
  with a body whose ``code`` is an enum of the words it can carry (see
  :func:`shop.api.error_serializer`):
  400 always (malformed input, bad query parameters), 401 when any authentication
  runs (no or bad credentials), 403 when a permission beyond "logged in" applies or a
  session may need CSRF, 404 when the path has parameters,
  409 on every command (``concurrent_update``), 413 and 415 when there is a body, 406
  (an ``Accept`` the API cannot answer), 429 and 503 always (both with
  ``Retry-After``). A view adds codes with :func:`shop.api.error_responses`
  (``e409="insufficient_stock"``).
- **Commands** (``shop.api.CommandApi``) declare ``Idempotency-Key`` (and 409
  ``idempotency_key_in_use``, 422 ``idempotency_key_reused``), ``If-Match`` with 412
  when the path names an aggregate, and the ``ETag`` and ``Idempotent-Replayed``
  response headers.
"""

from __future__ import annotations

import re
from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from rest_framework.authentication import SessionAuthentication
from rest_framework.permissions import AllowAny, IsAuthenticated

from shop.api import (
    ENUM_SCHEMAS,
    CommandApi,
    ErrorResponse,
    ErrorSerializer,
    error_codes,
    error_serializer,
)

COMMANDS_PREFIX = "/api/commands/"
UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}
RETRY_AFTER = OpenApiParameter(
    "Retry-After",
    OpenApiTypes.INT,
    location=OpenApiParameter.HEADER,
    response=[409, 429, 503],
    description="Seconds after which to retry.",
)
# The headers of every command (shop.api.CommandApi).
IDEMPOTENCY_KEY = OpenApiParameter(
    "Idempotency-Key", OpenApiTypes.STR, OpenApiParameter.HEADER, required=False,
    pattern=r"^[\x20-\x7E]{1,255}$",
    description="1-255 printable ASCII characters. The first request with a key runs the "
    "command; a repeat by the same user within 24 hours gets the first status and body "
    "(with Idempotent-Replayed: true) and appends nothing. Another path or body with the "
    "same key: 422 idempotency_key_reused.",
)
IF_MATCH = OpenApiParameter(
    "If-Match", OpenApiTypes.STR, OpenApiParameter.HEADER, required=False,
    pattern=r'^(W/)?"?[0-9]{1,18}"?$|^\*$',
    description='The aggregate\'s version as last seen, e.g. "3" (the ETag of a command '
    "response, or version in a query). If it changed since: 412 precondition_failed, "
    "nothing appended.",
)
ETAG = OpenApiParameter(
    "ETag", {"type": "string", "pattern": '^"[0-9]+"$'}, OpenApiParameter.HEADER,
    response=[200, 201],
    description='The aggregate\'s version after the command, quoted: "3".',
)
IDEMPOTENT_REPLAYED = OpenApiParameter(
    "Idempotent-Replayed", OpenApiTypes.STR, OpenApiParameter.HEADER, response=True,
    enum=["true"],
    description="Present (true) when this is the stored outcome of an earlier request "
    "with the same Idempotency-Key.",
)


def snake_case(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


class ShopAutoSchema(AutoSchema):
    # --- names ------------------------------------------------------------------

    def get_operation_id(self) -> str:
        name = type(self.view).__name__
        for suffix in ("Api", "APIView", "View"):
            name = name.removesuffix(suffix)
        operation_id = snake_case(name)
        methods = [m for m in ("get", "post", "put", "patch", "delete") if hasattr(self.view, m)]
        if len(methods) > 1:
            operation_id += f"_{self.method.lower()}"
        return operation_id

    def get_tags(self) -> list[str]:
        parts = [p for p in self.path.split("/") if p and not p.startswith("{")]
        return [parts[1] if len(parts) > 1 and parts[0] == "api" else parts[0]]

    # --- security ----------------------------------------------------------------

    def _open(self) -> bool:
        return all(isinstance(p, AllowAny) for p in self.view.get_permissions())

    def get_operation(self, *args: Any, **kwargs: Any) -> dict | None:
        operation = super().get_operation(*args, **kwargs)
        if operation is not None and self._open():
            operation["security"] = []  # said, not left out: no credentials needed
        return operation

    def get_auth(self) -> list[dict[str, list]]:
        if self._open():
            return []
        return [auth for auth in super().get_auth() if auth]  # no anonymous {} entry

    # --- errors ------------------------------------------------------------------

    def _command(self) -> bool:
        return isinstance(self.view, CommandApi) and self.method == "POST"

    def _targets_an_aggregate(self) -> bool:
        return "{" in self.path  # rename, reprice, restock, cancel, shipment status

    def _implicit_error_statuses(self) -> dict[int, tuple[str, ...]]:
        """The error statuses the view can answer beyond its declared ones, each with
        the codes it adds to the common ones."""
        statuses = dict.fromkeys(self._implicit_error_status_list(), ())
        if self._command():
            statuses[409] = ("idempotency_key_in_use",)
            statuses[422] = ()
            if self._targets_an_aggregate():
                statuses[412] = ()
        return statuses

    def _implicit_error_status_list(self) -> list[int]:
        view = self.view
        authenticators = view.get_authenticators()
        permissions = view.get_permissions()
        statuses = [400, 406]
        if authenticators:
            statuses.append(401)
        beyond_login = any(
            not isinstance(p, (AllowAny, IsAuthenticated)) for p in permissions  # noqa: UP038
        )
        csrf = self.method in UNSAFE and any(
            isinstance(a, SessionAuthentication) for a in authenticators
        )
        if beyond_login or csrf:
            statuses.append(403)
        if "{" in self.path:
            statuses.append(404)
        if self.method in UNSAFE and self.path.startswith(COMMANDS_PREFIX):
            statuses.append(409)
        if self.method in UNSAFE:
            statuses += [413, 415]
        statuses += [429, 503]
        return statuses

    def _get_response_bodies(self, direction: str = "response") -> dict:
        declared = self.get_response_serializers()
        if not isinstance(declared, dict):
            if self.method == "DELETE":
                return super()._get_response_bodies(direction)
            declared = {201 if self._is_create_operation() else 200: declared}
        implicit = self._implicit_error_statuses()
        responses: dict = {}
        for status, response in declared.items():
            responses[int(str(status))] = self._error_response(
                status, response, implicit.get(int(str(status)), ())
            )
        for status, codes in implicit.items():
            if status not in responses:
                responses[status] = self._error_response(status, ErrorResponse(status), codes)
        responses = dict(sorted(responses.items(), key=lambda item: int(str(item[0]))))
        # extend_schema() overrides get_response_serializers in a subclass; the instance
        # attribute shadows both while DRF-spectacular renders these responses.
        self.get_response_serializers = lambda: responses  # type: ignore[method-assign]
        try:
            return super()._get_response_bodies(direction)
        finally:
            del self.get_response_serializers

    def _error_response(self, status: Any, response: Any, implicit: tuple[str, ...] = ()) -> Any:
        """An ``ErrorResponse`` or a bare ``ErrorSerializer`` as its typed body."""
        if not isinstance(response, ErrorResponse):
            body = response.response if isinstance(response, OpenApiResponse) else response
            if not (body is ErrorSerializer or isinstance(body, ErrorSerializer)):
                return response
            response = ErrorResponse(int(str(status)))
        codes = error_codes(response.status, (*response.extra_codes, *implicit))
        # Named for the endpoint's own codes (InsufficientStockError), not the ones every
        # command shares, when it has some.
        named_by = response.extra_codes or implicit
        return OpenApiResponse(
            error_serializer(response.status, codes, named_by),
            description=response.description or "`code`: " + " or ".join(codes),
        )

    def get_override_parameters(self) -> list:
        parameters = [*super().get_override_parameters(), RETRY_AFTER]
        if self._command():
            parameters += [IDEMPOTENCY_KEY, ETAG, IDEMPOTENT_REPLAYED]
            if self._targets_an_aggregate():
                parameters.append(IF_MATCH)
        return parameters


class BearerTokenScheme(OpenApiAuthenticationExtension):
    """The shop's API tokens, declared as an HTTP bearer scheme (what generated clients
    send by default); ``Authorization: Token <token>`` is accepted as well."""

    target_class = "rest_framework.authentication.TokenAuthentication"
    match_subclasses = True
    priority = 1
    name = "bearerAuth"

    def get_security_definition(self, auto_schema: AutoSchema) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "The token from POST /api/auth/token/ as "
            "`Authorization: Bearer <token>` (`Authorization: Token <token>` works too).",
        }


class KnoxBearerTokenScheme(BearerTokenScheme):
    target_class = "knox.auth.TokenAuthentication"
    optional = True


def postprocess(result: dict, generator: Any, **kwargs: Any) -> dict:
    """Add the named enums (:func:`shop.api.enum_field`) to the components."""
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    for name, schema in ENUM_SCHEMAS.items():
        schemas.setdefault(name, schema)
    result["components"]["schemas"] = dict(sorted(schemas.items()))
    return result
