"""What counts as text: every string that reaches the app is valid Unicode (no lone
surrogate, no NUL byte), and free text that people read in the back office shows what
it holds (no text-direction, zero-width or control character)."""

from __future__ import annotations

import unicodedata
from typing import Any

from shop.errors import InvalidInput

# Characters that reorder the text around them (Trojan Source): a text with one can
# show the shop and the customer something other than what is stored.
BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)


def invalid_text(value: str) -> str | None:
    """Why ``value`` is not valid text (a lone surrogate, a NUL byte), or None."""
    if "\x00" in value:
        return "Text may not contain a NUL byte."
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "Text may not contain a lone surrogate (it is not valid Unicode)."
    return None


def first_invalid_text(data: Any, path: str = "") -> tuple[str, str] | None:
    """The first ``(path, reason)`` of a string in parsed JSON that is not valid text,
    keys included (``lines.0.sku``); None when all are."""
    if isinstance(data, str):
        reason = invalid_text(data)
        return (path or "non_field_errors", reason) if reason else None
    if isinstance(data, dict):
        items = data.items()
    elif isinstance(data, list):
        items = enumerate(data)
    else:
        return None
    for key, value in items:
        name = f"{path}.{key}" if path else str(key)
        if isinstance(key, str) and (reason := invalid_text(key)):
            return (path or "non_field_errors", reason)
        if (found := first_invalid_text(value, name)) is not None:
            return found
    return None


def check_visible_text(field: str, value: str, *, label: str, multiline: bool = False) -> None:
    """Free text a person reads (a product's name, its category, a shipping address)
    shows at least one visible character (a letter, digit, punctuation or symbol: not
    only spaces, marks or invisible ones such as U+FEFF), and holds no text-direction,
    zero-width or control character (line breaks aside in ``multiline`` text).

    The zero-width joiners U+200C and U+200D are part of some scripts and of emoji
    sequences, so they are allowed between two visible characters, never alone."""
    if not any(visible(char) for char in value):
        raise InvalidInput.field(field, f"{label} needs at least one visible character.")
    allowed = "\n\r\t" if multiline else ""
    for index, char in enumerate(value):
        if char in allowed or not hidden(char):
            continue
        if (
            char in JOINERS
            and 0 < index < len(value) - 1
            and visible(value[index - 1])
            and visible(value[index + 1])
        ):
            continue
        raise InvalidInput.field(
            field,
            f"{label} cannot contain control, zero-width or text-direction characters.",
        )


JOINERS = frozenset("\u200c\u200d")


def visible(char: str) -> bool:
    """A letter, digit, punctuation or symbol."""
    return unicodedata.category(char)[0] in "LNPS"


def hidden(char: str) -> bool:
    """A character that changes or hides what a reader sees: a text-direction control,
    a control character, or an invisible format character (zero-width space, joiners,
    U+FEFF, soft hyphen)."""
    return char in BIDI_CONTROLS or unicodedata.category(char) in {"Cc", "Cf", "Cs", "Co"}
