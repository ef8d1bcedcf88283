"""Assertions shared by the admin tests."""

from __future__ import annotations

from contextlib import contextmanager

from django.contrib.messages import get_messages

from shop.eventstore import head_position


def messages_of(response) -> list[str]:
    """The admin messages waiting to be shown after this response, oldest first
    (including any an earlier, unfollowed redirect left undisplayed)."""
    return [str(m) for m in get_messages(response.wsgi_request)]


@contextmanager
def log_unchanged():
    """A rejected command appends no event: the log head is where it was."""
    before = head_position()
    yield
    assert head_position() == before, "a rejected command appended events"
