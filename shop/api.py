"""Shared HTTP plumbing for the API: the one exception handler, the "saved" response,
strict input fields and the schema pieces every command documents.

Every error body is ``{"code": <word>, "detail": <sentence>}``; a 400 also carries
``"errors": {field: [messages]}`` (see :func:`exception_handler`).
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Mapping
from typing import Any
from uuid import UUID

from django.core.exceptions import DisallowedHost
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.db import InterfaceError as DjangoInterfaceError
from django.db import OperationalError as DjangoOperationalError
from django.http import Http404, JsonResponse
from django.http.request import RawPostDataException
from drf_spectacular.utils import OpenApiResponse, extend_schema_field
from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import IntegrityError
from eventsourcing.persistence import InterfaceError as EventStoreInterfaceError
from eventsourcing.persistence import OperationalError as EventStoreOperationalError
from rest_framework import exceptions, serializers, status
from rest_framework.pagination import CursorPagination
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView
from rest_framework.views import exception_handler as drf_exception_handler

from shop import idempotency
from shop.errors import ApplicationError, ConcurrentUpdate, InvalidInput, ServiceUnavailable
from shop.eventstore import Saved
from shop.metadata import Actor, Context
from shop.request_id import request_id_of
from shop.unit_of_work import UnitOfWork

NON_FIELD_ERRORS = api_settings.NON_FIELD_ERRORS_KEY
logger = logging.getLogger(__name__)

DEPENDENCY_DOWN = (
    DjangoOperationalError,
    DjangoInterfaceError,
    EventStoreOperationalError,
    EventStoreInterfaceError,
)

# DRF exception classes whose default code differs from the word API.md promises.
_DRF_CODES: dict[type[exceptions.APIException], str] = {
    exceptions.ValidationError: "invalid",
    exceptions.ParseError: "parse_error",
    exceptions.NotAuthenticated: "not_authenticated",
    exceptions.AuthenticationFailed: "not_authenticated",
    exceptions.PermissionDenied: "permission_denied",
    exceptions.NotFound: "not_found",
    exceptions.MethodNotAllowed: "method_not_allowed",
}


# --- errors -------------------------------------------------------------------------


def error_body(code: str, detail: str, errors: dict | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "detail": detail}
    if errors is not None:
        body["errors"] = errors
    return body


def flatten_errors(detail: Any, prefix: str = "") -> dict[str, list[str]]:
    """Turn DRF's nested validation errors into ``{dotted.path: [messages]}``.

    - ``{"lines": [{}, {"quantity": ["..."]}]}`` becomes ``{"lines.1.quantity": [...]}``
      (list items and ``ListField`` items are addressed by their index);
    - a nested ``non_field_errors`` belongs to its parent: an empty ``lines`` list is
      ``{"lines": [...]}``;
    - errors without a field (a top-level ``non_field_errors``, or a body that is not
      a JSON object) are under ``"non_field_errors"``.
    """
    flat: dict[str, list[str]] = {}

    def add(path: str, message: Any) -> None:
        flat.setdefault(path or NON_FIELD_ERRORS, []).append(str(message))

    def walk(node: Any, path: str) -> None:
        if isinstance(node, Mapping):
            for key, value in node.items():
                key = str(key)
                walk(value, path if key == NON_FIELD_ERRORS else _join(path, key))
        elif isinstance(node, list | tuple):
            if all(not isinstance(item, Mapping | list | tuple) for item in node):
                for item in node:
                    add(path, item)
            else:  # a list serializer's errors: one entry per item, {} for valid ones
                for index, item in enumerate(node):
                    if isinstance(item, Mapping | list | tuple):
                        walk(item, _join(path, str(index)))
                    elif item:
                        add(_join(path, str(index)), item)
        elif node is not None and node != "":
            add(path, node)

    walk(detail, prefix)
    return flat


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _invalid_detail(errors: dict[str, list[str]]) -> str:
    parts = [f"{field}: {messages[0]}" for field, messages in errors.items() if messages]
    return "Invalid input. " + "; ".join(parts) if parts else "Invalid input."


class _ApplicationErrorResponse(exceptions.APIException):
    """An ``ApplicationError`` handed to DRF's handler: its status and Retry-After."""

    def __init__(self, error: ApplicationError) -> None:
        super().__init__(error.detail, code=error.code)
        self.status_code = error.status
        self.wait = error.retry_after
        self.error = error


def _as_api_exception(exc: Exception) -> Exception:
    """Our errors, and the libraries' that mean one of them, as DRF exceptions."""
    if isinstance(exc, RecursionError):
        # Python's JSON decoder recurses per nesting level; a body nested thousands
        # deep is malformed input, not a server error.
        return exceptions.ParseError("JSON parse error - the body is nested too deeply.")
    if isinstance(exc, AggregateNotFoundError):
        return exceptions.NotFound()
    if isinstance(exc, IntegrityError):  # a lost race that escaped every retry
        exc = ConcurrentUpdate()
    elif isinstance(exc, DEPENDENCY_DOWN):
        logger.warning("A dependency is down (%s): %s", type(exc).__name__, exc)
        exc = ServiceUnavailable()
    if isinstance(exc, ApplicationError):
        return _ApplicationErrorResponse(exc)
    return exc


def _code(exc: Exception) -> str:
    if isinstance(exc, _ApplicationErrorResponse):
        return exc.error.code
    if isinstance(exc, Http404):  # DRF's handler made it a NotFound
        return "not_found"
    if isinstance(exc, DjangoPermissionDenied):  # likewise, a PermissionDenied
        return "permission_denied"
    return next(
        (word for cls, word in _DRF_CODES.items() if isinstance(exc, cls)),
        getattr(exc, "default_code", "error"),
    )


def exception_handler(exc: Exception, context: dict) -> Response | None:
    """DRF's own handler (status, ``WWW-Authenticate``, ``Retry-After``, rollback),
    then the body reshaped to ``{code, detail[, errors]}``: ``errors`` on every 400,
    with DRF's nested validation errors flattened to dotted paths.

    Anything that is neither ours nor DRF's is a bug: left to Django (a 500, logged).
    """
    exc = _as_api_exception(exc)
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    code = _code(exc)
    if isinstance(exc, _ApplicationErrorResponse):
        # The same body an Idempotency-Key records for a refusal (and replays).
        response.data = exc.error.body()
        return response
    if isinstance(exc, exceptions.ValidationError):
        errors: dict | None = flatten_errors(response.data)
        detail = _invalid_detail(errors)
    else:
        detail = str(response.data.get("detail", "")) if isinstance(response.data, dict) else ""
        detail = detail or str(getattr(exc, "default_detail", ""))
        errors = {NON_FIELD_ERRORS: [detail]} if response.status_code == 400 else None
    if errors is None and response.status_code == status.HTTP_400_BAD_REQUEST:
        errors = {}
    response.data = error_body(code, detail, errors)
    return response


def json_not_found(request, exception=None) -> JsonResponse:
    """A ``handler404`` that answers JSON, so an unknown /api/ path is no HTML page."""
    return JsonResponse(error_body("not_found", "Not found."), status=404)


def json_bad_request(request, exception=None) -> JsonResponse:
    """A ``handler400`` that answers JSON: Django's own refusals before any view, such
    as ``DisallowedHost`` (a ``Host`` not in ``ALLOWED_HOSTS``)."""
    detail = "The request was refused."
    if isinstance(exception, DisallowedHost):
        detail = "The Host header names a host this server does not serve."
    return JsonResponse(error_body("invalid", detail, {}), status=400)


def json_permission_denied(request, exception=None) -> JsonResponse:
    """A ``handler403`` that answers JSON."""
    return JsonResponse(
        error_body("permission_denied", "You do not have permission to do this."), status=403
    )


def json_server_error(request) -> JsonResponse:
    """A ``handler500`` that answers JSON."""
    return JsonResponse(
        error_body("server_error", "The server failed to handle the request."), status=500
    )


# --- input fields --------------------------------------------------------------------


class StrictIntegerField(serializers.IntegerField):
    """An integer that is not a boolean (JSON ``true`` is not 1)."""

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictUUIDField(serializers.UUIDField):
    """A UUID given as a string (DRF would also read a JSON number or ``true``)."""

    def to_internal_value(self, data: Any) -> UUID:
        if not isinstance(data, str | UUID):
            self.fail("invalid", value=data)
        return super().to_internal_value(data)


# --- responses and schema ------------------------------------------------------------


def saved_body(saved: Saved, name: str) -> dict[str, Any]:
    """The body every command answers: ``{<name>_id, version, position, **extra}``."""
    return {f"{name}_id": str(saved.aggregate_id), "version": saved.version,
            "position": saved.position, **saved.extra}


def saved_response(
    saved: Saved, name: str, *, status: int = status.HTTP_200_OK
) -> Response:
    return Response(saved_body(saved, name), status=status)


# --- commands: Idempotency-Key, If-Match, ETag ------------------------------------------


class CommandApi(APIView):
    """The base of every command view (``POST /api/commands/…``).

    A subclass's ``post()`` validates its input and calls one service with
    ``uow=self.uow``, the unit of work this class makes for the request, and returns
    the service's ``Saved``; this class turns that into the answer
    ``{<saved_name>_id, version, position, …}`` with ``success_status``. The unit of
    work carries the headers every command accepts:

    - ``Idempotency-Key``: the command runs once per user and key; a repeat replays
      the first outcome with ``Idempotent-Replayed: true`` (see ``shop.idempotency``).
      A repeat of a finished command replays at once, before its input is validated
      again; one that arrives while the first runs waits for it in the unit of work;
    - ``If-Match: "<version>"``: on a command whose path names an aggregate, a stale
      version answers 412 ``precondition_failed`` before anything is appended (after
      the check that the caller may see that aggregate at all);
    - every success carries ``ETag: "<new version>"``.
    """

    saved_name = ""
    success_status = status.HTTP_200_OK
    uow: UnitOfWork

    def initial(self, request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        # DRF picks the handler after initial() (authenticated, permitted): wrap it.
        if request.method == "POST":
            command = self.post  # type: ignore[attr-defined]
            self.post = functools.partial(self.run_command, command)

    def success_body(self, saved: Saved) -> tuple[int, dict[str, Any]]:
        return self.success_status, saved_body(saved, self.saved_name)

    def run_command(self, command, request, *args: Any, **kwargs: Any) -> Response:
        claim = self.idempotency_claim(request)
        if claim is not None and (record := claim.lookup()) is not None:
            return self.replay(record)
        expected = parse_if_match(request.headers.get("If-Match"))
        target = next((value for value in kwargs.values() if isinstance(value, UUID)), None)
        self.uow = UnitOfWork(
            context=Context(Actor.of(request.user), "api", request_id_of(request)),
            claim=claim,
            if_match=(target, expected) if target is not None and expected is not None
            else None,
        )
        try:
            saved = command(request, *args, **kwargs)
        except idempotency.Answered as answered:  # a duplicate ran it while this waited
            return self.replay(answered.record)
        code, body = self.success_body(saved)
        return with_etag(Response(body, status=code))

    def idempotency_claim(self, request) -> idempotency.Claim | None:
        key = request.headers.get("Idempotency-Key")
        if key is None:
            return None
        try:
            body = request.body
        except RawPostDataException:  # already read as a stream: fingerprint the data
            body = json.dumps(request.data, sort_keys=True, default=str).encode()
        return idempotency.Claim(request.user.pk, idempotency.check_key(key),
                                 idempotency.fingerprint(request.method, request.path, body))

    def replay(self, record: idempotency.Record) -> Response:
        code, data = record.outcome(self.success_body)
        return with_etag(Response(data, status=code, headers={"Idempotent-Replayed": "true"}))


def parse_if_match(value: str | None) -> int | None:
    """``"3"`` (or ``3``, ``W/"3"``) → 3; ``*`` or no header → no precondition."""
    if value is None or value.strip() == "*":
        return None
    text = value.strip().removeprefix("W/").strip('"')
    if not text.isdigit() or not 0 < len(text) <= 18:
        message = 'Use the version from the ETag, quoted: If-Match: "3".'
        raise InvalidInput(f"If-Match: {message}", errors={"If-Match": [message]})
    return int(text)


def with_etag(response: Response) -> Response:
    data = response.data
    if response.status_code < 300 and isinstance(data, dict) and "version" in data:
        response["ETag"] = f'"{data["version"]}"'
    return response


@functools.cache
def saved_serializer(name: str, *, total: bool = False) -> type[serializers.Serializer]:
    """The documented shape of :func:`saved_response` for an aggregate ``name``
    (with the order's ``total`` when asked).

    Cached so the commands on one aggregate share one schema component.
    """
    fields: dict[str, Any] = {
        f"{name}_id": serializers.UUIDField(),
        "version": serializers.IntegerField(
            help_text="The aggregate's version after the command."
        ),
        "position": serializers.IntegerField(
            help_text="Notification id of the last event appended; pass it as "
            "min_position to a query to read your own write."
        ),
    }
    if total:
        fields["total"] = serializers.DecimalField(max_digits=16, decimal_places=2)
        fields["number"] = serializers.IntegerField(
            min_value=1, help_text="The order's number, as the order history shows it."
        )
    component = "".join(part.capitalize() for part in name.split("_"))
    suffix = "Placed" if total else "Saved"
    meta = type("Meta", (), {"ref_name": f"{component}{suffix}"})
    return type(f"{component}{suffix}Serializer", (serializers.Serializer,),
                {**fields, "Meta": meta})


class ErrorSerializer(serializers.Serializer):
    """The error body in general; the schema declares each status with
    :func:`error_serializer` (its ``code`` an enum of that status's words)."""

    code = serializers.CharField(help_text="A stable machine word, e.g. insufficient_stock.")
    detail = serializers.CharField(help_text="A sentence a person can act on.")
    errors = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        required=False,
        help_text="Only on 400: {field: [messages]}; nested fields as dotted paths.",
    )

    class Meta:
        ref_name = "Error"


#: The error codes every endpoint answering a status can send, and the component
#: that names the body when no endpoint adds its own codes.
ERROR_STATUSES: dict[int, tuple[str, tuple[str, ...]]] = {
    400: ("ValidationError", ("invalid", "parse_error")),
    401: ("NotAuthenticatedError", ("not_authenticated",)),
    403: ("PermissionDeniedError", ("permission_denied",)),
    404: ("NotFoundError", ("not_found",)),
    405: ("MethodNotAllowedError", ("method_not_allowed",)),
    406: ("NotAcceptableError", ("not_acceptable",)),
    409: ("ConflictError", ("concurrent_update",)),
    412: ("PreconditionFailedError", ("precondition_failed",)),
    413: ("RequestTooLargeError", ("request_too_large",)),
    415: ("UnsupportedMediaTypeError", ("unsupported_media_type",)),
    422: ("UnprocessableError", ("idempotency_key_reused",)),
    429: ("ThrottledError", ("throttled",)),
    503: ("ServiceUnavailableError", ("service_unavailable",)),
}


def error_codes(status: int, extra: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The codes a ``status`` can carry: the endpoint's own first, then the common ones."""
    common = ERROR_STATUSES.get(status, ("Error", ()))[1]
    return tuple(dict.fromkeys((*extra, *common)))


#: Component name → the (status, codes) it was given to, so that no name means two sets.
_ERROR_NAMES: dict[str, tuple[int, tuple[str, ...]]] = {}


@functools.cache
def error_serializer(
    status: int, codes: tuple[str, ...], named_by: tuple[str, ...] | None = None
) -> type[serializers.Serializer]:
    """The documented error body for ``status`` whose ``code`` is one of ``codes``.

    Named for the status (``NotFoundError``) when the codes are the common ones, else
    for the endpoint's own codes, or those of ``named_by`` (``InsufficientStockError``
    for the codes insufficient_stock, idempotency_key_in_use and concurrent_update);
    a 400 always has ``errors``. Cached so endpoints with the same codes share one
    component.
    """
    default_name, common = ERROR_STATUSES.get(status, (f"Error{status}", ()))

    def name_for(words: tuple[str, ...]) -> str:
        own = [code for code in words if code not in common]
        return "Or".join(_camel(code) for code in own) + "Error" if own else default_name

    name = name_for(codes if named_by is None else named_by)
    if _ERROR_NAMES.setdefault(name, (status, codes)) != (status, codes):
        name = name_for(codes)  # the short name is taken by another set
    fields: dict[str, Any] = {
        "code": enum_field(None, codes, help_text="A stable machine word."),
        "detail": serializers.CharField(help_text="A sentence a person can act on."),
    }
    if status == 400:
        fields["errors"] = serializers.DictField(
            child=serializers.ListField(child=serializers.CharField()),
            help_text="{field: [messages]}; nested fields as dotted paths "
            "(lines.0.quantity); errors without a field under non_field_errors.",
        )
    meta = type("Meta", (), {"ref_name": name})
    return type(f"{name}Serializer", (serializers.Serializer,), {**fields, "Meta": meta})


def _camel(word: str) -> str:
    return "".join(part.capitalize() for part in word.split("_"))


class ErrorResponse(OpenApiResponse):
    """A documented error status, with the endpoint's own codes beyond the common ones."""

    def __init__(self, status: int, extra_codes: tuple[str, ...] = (), description: str = ""):
        super().__init__(ErrorSerializer, description=description)
        self.status = status
        self.extra_codes = extra_codes


def error_responses(*statuses: int, **codes: str | tuple[str, ...]) -> dict[int, OpenApiResponse]:
    """Schema entries for the error statuses a view can answer beyond the ones every
    endpoint of its kind has (``shop.schema`` adds those), with the view's own codes:
    ``error_responses(409, e409="insufficient_stock")``.
    """
    responses: dict[int, OpenApiResponse] = {}
    for code in statuses:
        extra = codes.get(f"e{code}", ())
        responses[code] = ErrorResponse(code, (extra,) if isinstance(extra, str) else extra)
    return responses


# --- named enums -------------------------------------------------------------------

#: Components for the named enums (``shop.schema.postprocess`` adds them).
ENUM_SCHEMAS: dict[str, dict[str, Any]] = {}


def enum_field(
    name: str | None,
    values: Any,
    field_class: type[serializers.Field] | None = None,
    *,
    description: str = "",
    **kwargs: Any,
) -> serializers.Field:
    """A string field documented as an enum: a named component ``name`` (e.g.
    ``OrderStatus``), or inline when ``name`` is None.

    Without ``field_class`` the field is a ``ChoiceField`` over ``values`` (it validates
    input too); an output field passes its class (``serializers.CharField``) and
    ``kwargs`` such as ``source``.
    """
    values = list(values)
    schema: dict[str, Any] = {"type": "string", "enum": values}
    if description:
        schema["description"] = description
    if name is not None:
        ENUM_SCHEMAS[name] = schema
        schema = {"$ref": f"#/components/schemas/{name}"}
    if field_class is None:  # choices may give labels to the values
        field_class, kwargs = serializers.ChoiceField, {"choices": values, **kwargs}
    # A subclass carries the annotation: DRF deep-copies field instances per serializer.
    annotated = extend_schema_field(schema)(type(field_class.__name__, (field_class,), {}))
    return annotated(**kwargs)


# --- pagination --------------------------------------------------------------------


class CursorPage(CursorPagination):
    """Cursor pagination whose documented page says what the server sends: ``next``
    and ``previous`` always present, a URL or null."""

    def get_paginated_response_schema(self, schema: dict) -> dict:
        return page_schema(schema)

    def get_schema_operation_parameters(self, view: Any) -> list[dict]:
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_size_query_param:
                parameter["schema"] = {
                    "type": "integer", "minimum": 1,
                    "maximum": self.max_page_size or self.page_size,
                }
                parameter["description"] = (
                    f"Results per page (default {self.page_size}, "
                    f"at most {self.max_page_size or self.page_size})."
                )
        return parameters


def page_schema(results: dict, link_help: str = "") -> dict:
    link = {
        "type": ["string", "null"],
        "format": "uri",
        "description": link_help or "The URL of the next or previous page, or null.",
        "example": "http://127.0.0.1:8000/api/queries/orders/?cursor=cD0yMDI2LTExLTI2",
    }
    return {
        "type": "object",
        "required": ["next", "previous", "results"],
        "properties": {"next": link, "previous": {**link, "example": None}, "results": results},
    }


