"""Structured logs: one JSON object per line, each with the request id and the user.

The formatter is python-json-logger's. Django, DRF, Celery, gunicorn and the
eventsourcing library all log through the standard ``logging`` module, so one JSON
formatter and one filter on the root handler turn every line of every one of them
into JSON with the same fields, and nothing else has to change how it logs. (structlog
was the other candidate: its strength is its own bound loggers and processors, and
for the libraries' records it would go through the same stdlib formatter.)

Each line carries ``request_id`` and ``user`` from the context bound where work starts:

- a web request: ``shop.request_id.RequestIdMiddleware`` (the user as soon as the
  request has one: DRF's authentication runs inside the view);
- a Celery task: from the task's headers, which its sender filled from its own
  context, so a command's trigger carries the command's request id to the worker;
- a management command: ``manage.py`` binds a new request id and the system user.

``LOG_FORMAT=text`` prints plain lines instead (development).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Any

_context: ContextVar[dict[str, Any]] = ContextVar("log_context", default={})  # noqa: B039

JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s %(user)s"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s %(user)s] %(message)s"


@contextlib.contextmanager
def bound(**values: Any) -> Iterator[None]:
    """Within the block, log lines carry ``values`` (``request_id``, ``user``; a value
    may be a function, called when a line is written)."""
    token = _context.set({**_context.get(), **values})
    try:
        yield
    finally:
        _context.reset(token)


def current(name: str) -> Any:
    value = _context.get().get(name)
    return value() if callable(value) else value


class ContextFilter(logging.Filter):
    """Adds ``request_id`` and ``user`` to every record ("-" outside any context)."""

    def filter(self, record: logging.LogRecord) -> bool:
        # Django logs a request's failure after its middleware returned, with the
        # request attached to the record (the development server's access lines
        # attach its socket under the same name: not a request).
        request = getattr(record, "request", None)
        if not hasattr(request, "META"):
            request = None
        record.request_id = (current("request_id") or getattr(request, "request_id", None)
                             or "-")
        record.user = current("user") or (user_of(request)() if request else None) or "-"
        return True


def logging_config(fmt: str, level: str) -> dict[str, Any]:
    """The ``LOGGING`` setting: every line through one console handler, as JSON (or as
    text), with the context's fields."""
    formatter = (
        {"()": "pythonjsonlogger.json.JsonFormatter", "fmt": JSON_FIELDS,
         "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"}}
        if fmt != "text" else {"format": TEXT_FORMAT}
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"context": {"()": "shop.logs.ContextFilter"}},
        "formatters": {"shop": formatter},
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "shop",
                                 "filters": ["context"]}},
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            # Django's "django" logger has a console handler of its own (with DEBUG on)
            # that would print each of its lines a second time: the root's is the one.
            "django": {"handlers": [], "level": "INFO"},
            "django.db.backends": {"level": "INFO"},
            # axes logs every failed login at INFO; the lockouts themselves are warnings.
            "axes": {"level": "WARNING"},
            # Celery's worker installs its own handlers unless told not to (shop/celery.py).
        },
    }


def user_of(request: Any) -> Callable[[], str | None]:
    """The request's user for a log line, once known (never a query of its own)."""

    def user() -> str | None:
        candidate = request.__dict__.get("user")  # set by auth middleware or by DRF
        wrapped = getattr(candidate, "_wrapped", candidate)
        if wrapped is None or type(wrapped).__name__ == "object":  # lazy, not resolved
            return None
        if not getattr(wrapped, "is_authenticated", False):
            return "anonymous"
        return wrapped.get_username()

    return user


# --- Celery: the context travels in the task's headers --------------------------------


def connect_celery() -> None:
    from celery.signals import before_task_publish, setup_logging, task_postrun, task_prerun

    setup_logging.connect(_keep_django_logging, weak=False)
    before_task_publish.connect(_headers_from_context, weak=False)
    task_prerun.connect(_bind_task_context, weak=False)
    task_postrun.connect(_unbind_task_context, weak=False)


def _keep_django_logging(**_: Any) -> None:
    """Connected, this stops Celery from replacing the logging Django configured."""


def _headers_from_context(headers: dict | None = None, **_: Any) -> None:
    if headers is None:
        return
    for name in ("request_id", "user"):
        value = current(name)
        if value and not headers.get(name):
            headers[name] = value


_task_tokens: dict[str, Any] = {}


def _bind_task_context(task_id: str = "", task: Any = None, **_: Any) -> None:
    from shop.metadata import new_request_id

    request = getattr(task, "request", None)
    headers = {**(getattr(request, "headers", None) or {})}
    values = {name: getattr(request, name, None) or headers.get(name)
              for name in ("request_id", "user")}
    _task_tokens[task_id] = _context.set({
        "request_id": values["request_id"] or new_request_id(),
        "user": values["user"] or (getattr(request, "via", None) or headers.get("via")
                                   or "system"),
    })


def _unbind_task_context(task_id: str = "", **_: Any) -> None:
    token = _task_tokens.pop(task_id, None)
    if token is not None:
        _context.reset(token)
