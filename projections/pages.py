"""Responses made of stored documents (``projections.documents``): the JSON renderer
writes each document's text into the page as it is, never decoding and re-encoding it.

A view answers ``Response(StoredPage(...))`` or ``Response(StoredDocument(...))``; the
page's envelope (``next``, ``previous``, ``results`` and any extra keys such as
``facets``) is rendered around the documents by DRF's own JSON renderer, so the bytes
are those the serializers would have given. The browsable API (an ``indent``) gets the
decoded data instead.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from rest_framework.renderers import BrowsableAPIRenderer, JSONRenderer


@dataclass
class StoredPage:
    next: str | None
    previous: str | None
    documents: list[str]
    extra: dict[str, Any] = field(default_factory=dict)  # keys after "results"

    def decoded(self) -> dict[str, Any]:
        return {"next": self.next, "previous": self.previous,
                "results": [json.loads(doc) for doc in self.documents], **self.extra}


@dataclass
class StoredDocument:
    text: str

    def decoded(self) -> Any:
        return json.loads(self.text)


class DocumentRenderer(JSONRenderer):
    """DRF's JSON renderer, which writes stored documents as they are."""

    def render(self, data: Any, accepted_media_type: str | None = None,
               renderer_context: dict | None = None) -> bytes:
        if not isinstance(data, StoredPage | StoredDocument):
            return super().render(data, accepted_media_type, renderer_context)
        if self.get_indent(accepted_media_type, renderer_context or {}):
            return super().render(data.decoded(), accepted_media_type, renderer_context)
        if isinstance(data, StoredDocument):
            return data.text.encode()

        def value(v: Any) -> bytes:
            return super(DocumentRenderer, self).render(v) if v is not None else b"null"

        parts = [b'{"next":', value(data.next), b',"previous":', value(data.previous),
                 b',"results":[', ",".join(data.documents).encode(), b"]"]
        for key, extra in data.extra.items():
            parts += [b",", super().render(key), b":", super().render(extra)]
        parts.append(b"}")
        return b"".join(parts)


#: The renderers of a view that answers stored documents.
DOCUMENT_RENDERERS = [DocumentRenderer, BrowsableAPIRenderer]
