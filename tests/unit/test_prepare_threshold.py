"""``PREPARE_THRESHOLD``: when psycopg prepares the read side's hand-written statements
(``shop.databases.prepared_cursor``)."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from shop.settings import env_prepare_threshold


@pytest.mark.parametrize("text, value", [(None, 5), ("", 5), (" ", 5), ("0", 0), ("12", 12),
                                         ("off", None)])
def test_the_setting_reads_a_count_or_off(monkeypatch, text, value):
    if text is None:
        monkeypatch.delenv("PREPARE_THRESHOLD", raising=False)
    else:
        monkeypatch.setenv("PREPARE_THRESHOLD", text)

    assert env_prepare_threshold("PREPARE_THRESHOLD", 5) == value


@pytest.mark.parametrize("text", ["-1", "1.5", "five", "OFF", "٣", "1e3"])
def test_the_setting_refuses_anything_else_naming_itself(monkeypatch, text):
    monkeypatch.setenv("PREPARE_THRESHOLD", text)

    with pytest.raises(ImproperlyConfigured) as raised:
        env_prepare_threshold("PREPARE_THRESHOLD", 5)

    assert str(raised.value) == (
        f"PREPARE_THRESHOLD must be a whole number >= 0 or 'off', not {text!r}."
    )
