"""Assertions shared by the API tests."""

from __future__ import annotations

from shop.eventstore import head_position


def assert_error(response, status: int, code: str, fields: set[str] | None = None) -> dict:
    """The response is exactly ``{code, detail[, errors]}`` with this status and code.

    ``fields``: the keys expected in ``errors`` (400 only).
    """
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == ({"code", "detail", "errors"} if status == 400 else {"code", "detail"})
    assert body["code"] == code
    assert isinstance(body["detail"], str) and body["detail"].strip()
    if status == 400:
        assert isinstance(body["errors"], dict)
        for messages in body["errors"].values():
            assert isinstance(messages, list) and messages
            assert all(isinstance(m, str) and m for m in messages)
        if fields is not None:
            assert set(body["errors"]) == fields, body["errors"]
    return body


def assert_saved(response, status: int, name: str, **expected) -> dict:
    """A command's success body: ``{<name>_id, version, position[, ...]}``."""
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {f"{name}_id", "version", "position", *expected}
    assert isinstance(body["version"], int) and not isinstance(body["version"], bool)
    assert isinstance(body["position"], int) and body["position"] >= 1
    assert body["position"] == head_position()
    for key, value in expected.items():
        assert body[key] == value
    return body
