"""Assertions shared by the admin tests."""

from __future__ import annotations

from django.contrib.messages import get_messages


def messages_of(response) -> list[str]:
    """The admin messages waiting to be shown after this response, oldest first
    (including any an earlier, unfollowed redirect left undisplayed)."""
    return [str(m) for m in get_messages(response.wsgi_request)]


