"""How a client presents its API token: ``Authorization: Token <t>`` or ``Bearer <t>``."""

from __future__ import annotations

from rest_framework.authentication import TokenAuthentication, get_authorization_header

#: The schemes accepted in the ``Authorization`` header; the first is the one
#: advertised in ``WWW-Authenticate``.
TOKEN_KEYWORDS = ("Token", "Bearer")


class TokenOrBearerAuthentication(TokenAuthentication):
    """DRF's token authentication under either keyword (API.md, second round)."""

    def authenticate(self, request):
        scheme, _, _ = get_authorization_header(request).partition(b" ")
        for keyword in TOKEN_KEYWORDS:
            if scheme.lower() == keyword.lower().encode():
                self.keyword = keyword
                return super().authenticate(request)
        return None
