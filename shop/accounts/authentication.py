"""How a client presents its API token: ``Authorization: Token <t>`` or ``Bearer <t>``."""

from __future__ import annotations

from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.plumbing import build_bearer_security_scheme_object
from knox.auth import TokenAuthentication
from rest_framework import exceptions
from rest_framework.authentication import get_authorization_header

from shop.accounts.services import user_tokens_revoke

#: The schemes accepted in the ``Authorization`` header; the first is the one
#: advertised in ``WWW-Authenticate``.
TOKEN_KEYWORDS = ("Token", "Bearer")


class TokenOrBearerAuthentication(TokenAuthentication):
    """django-rest-knox's hashed, expiring tokens under either keyword (API.md)."""

    def authenticate(self, request):
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() not in {k.lower().encode() for k in TOKEN_KEYWORDS}:
            return None  # no token, or credentials for another scheme
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed(
                "Invalid token header: send 'Token <token>' or 'Bearer <token>'."
            )
        try:
            parts[1].decode("ascii")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("Invalid token.") from None
        return self.authenticate_credentials(parts[1])

    def validate_user(self, auth_token):
        """A token is only as good as its account: an inactive account, or one whose
        password login was revoked (an unusable password), ends every token it has,
        here as well as when the account is saved (``user_tokens_end_with_account``),
        so a change that skipped the signal (a queryset ``update``) still ends them,
        and reactivating the account brings none back."""
        user = auth_token.user
        if not user.is_active or not user.has_usable_password():
            user_tokens_revoke(user=user)
            raise exceptions.AuthenticationFailed("User inactive or without a password login.")
        return user, auth_token

    def authenticate_header(self, request) -> str:
        return TOKEN_KEYWORDS[0]

    def _cleanup_token(self, auth_token) -> bool:
        """Expired: delete it and refuse. (knox's own version also walks every other
        token of the user on every request; expired ones are dropped at login.)"""
        if auth_token.expiry is not None and auth_token.expiry < timezone.now():
            auth_token.delete()
            return True
        return False


class TokenOrBearerScheme(OpenApiAuthenticationExtension):
    """The token as the OpenAPI document declares it (the same ``tokenAuth`` scheme
    DRF's own token class had)."""

    target_class = TokenOrBearerAuthentication
    name = "tokenAuth"

    def get_security_definition(self, auto_schema):
        return build_bearer_security_scheme_object(
            header_name="Authorization", token_prefix=TOKEN_KEYWORDS[0]
        )
