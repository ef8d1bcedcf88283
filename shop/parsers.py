"""The API's one body parser: JSON whose every string, keys included, is valid text.

JSON may spell a lone surrogate (``"\\ud800"``), which Python reads into a ``str`` that
cannot be encoded again: a throttle, a database driver or the error renderer would fail
on it later with a 500. It is refused here, with 400 ``invalid`` naming the field."""

from __future__ import annotations

from typing import Any

from rest_framework.parsers import JSONParser

from shop.errors import InvalidInput
from shop.text import first_invalid_text


class TextJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None) -> Any:
        data = super().parse(stream, media_type, parser_context)
        found = first_invalid_text(data)
        if found is not None:
            field, reason = found
            raise InvalidInput(f"{field}: {reason}", errors={field: [reason]})
        return data
