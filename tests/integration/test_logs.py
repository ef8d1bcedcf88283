"""Log lines are JSON objects carrying the request id and the user (``shop.logs``): in
a web request, in a Celery task (from the headers its sender filled), and in a
management command."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from uuid import uuid4

import pytest
from django.conf import settings

from shop.logs import ContextFilter, bound
from shop.metadata import new_request_id


@pytest.fixture
def log_lines():
    """The root logger's lines, formatted as the shop formats them."""
    config = settings.LOGGING
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    formatter_config = dict(config["formatters"]["shop"])
    factory = formatter_config.pop("()")
    module, _, name = factory.rpartition(".")
    handler.setFormatter(getattr(__import__(module, fromlist=[name]), name)(**formatter_config))
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    finally:
        root.removeHandler(handler)


@pytest.mark.django_db
def test_a_requests_lines_carry_its_id_and_its_user(event_store, client_for, customer,
                                                   log_lines):
    response = client_for(customer).get(f"/api/queries/orders/{uuid4()}",
                                        HTTP_X_REQUEST_ID="r-77")
    assert response.status_code == 404
    lines = [line for line in log_lines() if line["logger"] == "django.request"]
    assert lines, log_lines()
    assert {(line["request_id"], line["user"]) for line in lines} == {("r-77", "john")}
    assert {"time", "level", "message"} <= set(lines[0])


def test_a_tasks_lines_carry_the_senders_request_id(log_lines):
    from celery import shared_task

    @shared_task(name="tests.logs_a_line")
    def logs_a_line() -> None:
        logging.getLogger("tests.task").warning("working")

    headers: dict = {}
    with bound(request_id="r-cmd", user="john"):
        from shop.logs import _headers_from_context

        _headers_from_context(headers=headers)  # what before_task_publish adds
    assert headers == {"request_id": "r-cmd", "user": "john"}
    logs_a_line.apply(headers=headers)
    [line] = [line for line in log_lines() if line["logger"] == "tests.task"]
    assert (line["request_id"], line["user"]) == ("r-cmd", "john")


def test_a_management_commands_lines_carry_an_id_and_who_ran_it():
    env = {**os.environ, "DEBUG": "1", "LOG_FORMAT": "json",
           "DJANGO_SETTINGS_MODULE": "tests.settings"}
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c",
         "import logging; logging.getLogger('tests.command').warning('hello')"],
        cwd=settings.BASE_DIR, env=env, capture_output=True, text=True, timeout=120)
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    [line] = [line for line in lines if line["logger"] == "tests.command"]
    assert line["message"] == "hello"
    assert len(line["request_id"]) == len(new_request_id())
    assert line["user"].endswith("(manage.py)")


def test_the_development_servers_access_lines_pass_the_filter():
    """runserver's access line carries its socket as ``request``: not a request (each
    one raised in the filter, and the traceback printed twice, issue 24)."""
    import socket

    with socket.socket() as sock:
        record = logging.LogRecord("django.server", logging.INFO, __file__, 1,
                                   '"GET / HTTP/1.1" 200 10', None, None)
        record.request = sock
        assert ContextFilter().filter(record)
    assert (record.request_id, record.user) == ("-", "-")


def test_each_line_is_written_once():
    """Only the root logger writes: a logger with a handler of its own that also
    propagates to the root would print each of its lines twice."""
    import django.utils.log  # noqa: F401  (Django's loggers exist)

    twice = [
        name for name, logger in logging.root.manager.loggerDict.items()
        if isinstance(logger, logging.Logger) and logger.propagate
        and any(not isinstance(h, logging.NullHandler) for h in logger.handlers)
        and not name.startswith(("celery", "kombu"))  # a worker's own, before it starts
    ]
    assert twice == []
