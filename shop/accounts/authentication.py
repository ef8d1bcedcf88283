"""How a client presents its API token: ``Authorization: Token <t>`` or ``Bearer <t>``."""

from __future__ import annotations

import binascii
import functools
from collections.abc import Callable, Sequence
from hmac import compare_digest
from typing import Any, NamedTuple

from django.core.exceptions import ImproperlyConfigured
from django.db import connections, router
from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.plumbing import build_bearer_security_scheme_object
from knox.auth import TokenAuthentication
from knox.crypto import hash_token
from knox.models import AbstractAuthToken, get_token_model
from knox.settings import CONSTANTS, knox_settings
from rest_framework import exceptions
from rest_framework.authentication import get_authorization_header

from shop.accounts.services import user_tokens_revoke
from shop.databases import prepared_cursor, row_converter

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

    def authenticate_credentials(self, token: bytes):
        """knox's own steps (skip and drop an expired token, compare the digest, renew
        if ``AUTO_REFRESH``, check the account), with the tokens of the key read by
        :func:`tokens_of_key`, not by an ORM query built for every request."""
        text = token.decode("utf-8")
        for auth_token in tokens_of_key(text[:CONSTANTS.TOKEN_KEY_LENGTH]):
            if self._cleanup_token(auth_token):
                continue
            try:
                digest = hash_token(text)
            except (TypeError, binascii.Error):
                raise exceptions.AuthenticationFailed("Invalid token.") from None
            if compare_digest(digest, auth_token.digest):
                if knox_settings.AUTO_REFRESH and auth_token.expiry:
                    self.renew_token(auth_token)
                return self.validate_user(auth_token)
        raise exceptions.AuthenticationFailed("Invalid token.")

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


def tokens_of_key(key: str) -> list[AbstractAuthToken]:
    """The tokens whose ``token_key`` is ``key`` (one, unless two tokens share a key),
    each with its user: what knox reads with ``filter(token_key=key)
    .select_related("user")``, read by one statement written once per process and
    bound on the server (``prepared_cursor``: PostgreSQL plans it once per
    connection). Built and compiled for every request, knox's query made
    authentication the largest stage of an authenticated query (bench/README.md). The
    instances are the ORM's: ``from_db`` with its converters (``row_converter``)."""
    alias = router.db_for_read(get_token_model())
    statement = _token_statement(alias)
    with prepared_cursor(alias) as cursor:
        cursor.execute(statement.sql, [key])
        found = cursor.fetchall()
    split = len(statement.token_fields)
    tokens = []
    for row in found:
        auth_token = statement.user_field.model.from_db(
            alias, statement.token_fields, statement.as_token(row[:split]))
        user = statement.user_field.related_model.from_db(
            alias, statement.user_fields, statement.as_user(row[split:]))
        statement.user_field.set_cached_value(auth_token, user)
        tokens.append(auth_token)
    return tokens


class TokenStatement(NamedTuple):
    sql: str
    #: The attnames of the token's and of the user's columns, in the statement's order.
    token_fields: tuple[str, ...]
    user_fields: tuple[str, ...]
    #: The token's ``user`` foreign key (its model is the token's, its related model
    #: the user's).
    user_field: Any
    as_token: Callable[[Sequence[Any]], tuple[Any, ...]]
    as_user: Callable[[Sequence[Any]], tuple[Any, ...]]


@functools.cache
def _token_statement(alias: str) -> TokenStatement:
    """:func:`tokens_of_key`'s SQL on ``alias``, and what it needs to read its rows,
    made once per process: every concrete field of the token and of its user (the models
    of tables of their own, as knox's and Django's are), and their converters."""
    token_model = get_token_model()
    user_field = token_model._meta.get_field("user")
    user_model = user_field.related_model
    if token_model._meta.parents or user_model._meta.parents:
        raise ImproperlyConfigured("Token authentication reads the token and user tables "
                                   "directly: neither model may inherit another's table.")
    quote = connections[alias].ops.quote_name
    token_fields = tuple(f.attname for f in token_model._meta.concrete_fields)
    user_fields = tuple(f.attname for f in user_model._meta.concrete_fields)
    columns = [f"t.{quote(token_model._meta.get_field(name).column)}" for name in token_fields]
    columns += [f"u.{quote(user_model._meta.get_field(name).column)}" for name in user_fields]
    sql = (
        f"SELECT {', '.join(columns)} FROM {quote(token_model._meta.db_table)} AS t "
        f"JOIN {quote(user_model._meta.db_table)} AS u "
        f"ON u.{quote(user_model._meta.pk.column)} = t.{quote(user_field.column)} "
        f"WHERE t.{quote(token_model._meta.get_field('token_key').column)} = %s"
    )
    return TokenStatement(sql, token_fields, user_fields, user_field,
                          row_converter(token_model, token_fields, alias),
                          row_converter(user_model, user_fields, alias))


class TokenOrBearerScheme(OpenApiAuthenticationExtension):
    """The token as the OpenAPI document declares it (the same ``tokenAuth`` scheme
    DRF's own token class had)."""

    target_class = TokenOrBearerAuthentication
    name = "tokenAuth"

    def get_security_definition(self, auto_schema):
        return build_bearer_security_scheme_object(
            header_name="Authorization", token_prefix=TOKEN_KEYWORDS[0]
        )
