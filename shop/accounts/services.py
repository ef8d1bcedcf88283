"""Account commands: register a customer; issue, revoke and end API tokens.

Tokens are django-rest-knox's: only a hash is stored, each expires after
``REST_KNOX["TOKEN_TTL"]``, logging out deletes one, a password change deletes all.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from datetime import datetime

from django.contrib.auth import authenticate, password_validation
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from django.http import HttpRequest
from django.utils import timezone
from knox.models import AuthToken

from shop.accounts.models import UsernameKey
from shop.errors import ApplicationError, InvalidInput

USERNAME_TAKEN = "A user with that username already exists."


class BadCredentials(ApplicationError):
    code = "not_authenticated"
    status = 401
    default_detail = "Unable to log in with the provided credentials."


@dataclass(frozen=True)
class IssuedToken:
    token: str  # shown once; the database keeps its hash
    expiry: datetime


def username_key(username: str) -> str:
    """The name as compared for uniqueness and counted by the login limits, exactly as
    logging in reads it: ``ＪＯＨＮ``, ``John``, `` john `` and ``john`` are one.

    Stripped (the login form and the API trim the name), then NFKC, case fold, NFKC
    again (Unicode's NFKC_Casefold), so compatibility forms and case variants meet."""
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", username.strip()))
    return unicodedata.normalize("NFKC", folded.casefold()).strip()


def user_register(*, username: str, password: str, email: str = "") -> User:
    """Create a customer account; its name is unique ignoring case and Unicode forms.

    The early check only gives the usual answer fast: the unique index on the
    normalised name decides, so the loser of a race gets the same 400.
    """
    username = User.normalize_username(username)  # NFKC, as Django stores it
    if UsernameKey.objects.filter(key=username_key(username)).exists():
        raise InvalidInput.field("username", USERNAME_TAKEN)
    candidate = User(username=username, email=email)
    try:
        password_validation.validate_password(password, user=candidate)
    except DjangoValidationError as exc:
        raise InvalidInput(
            "password: " + " ".join(exc.messages), errors={"password": list(exc.messages)}
        ) from None
    try:
        with transaction.atomic():
            return User.objects.create_user(username=username, password=password, email=email)
    except IntegrityError:  # a concurrent registration of the same name won
        raise InvalidInput.field("username", USERNAME_TAKEN) from None


def username_resolve(username: str) -> str:
    """The stored username that ``username`` names (any case or compatibility form)."""
    stored = (
        UsernameKey.objects.filter(key=username_key(username))
        .values_list("user__username", flat=True)
        .first()
    )
    return stored or username


def token_issue(*, user: User) -> IssuedToken:
    """A new token for ``user`` (its expired ones are dropped on the way)."""
    AuthToken.objects.filter(user=user, expiry__lt=timezone.now()).delete()
    instance, token = AuthToken.objects.create(user=user)
    return IssuedToken(token=token, expiry=instance.expiry)


def token_obtain(*, request: HttpRequest | None, username: str, password: str) -> IssuedToken:
    """A new token for valid credentials; anything else is 401 ``not_authenticated``."""
    user = authenticate(request, username=username_resolve(username), password=password)
    if user is None or not user.is_active:
        raise BadCredentials()
    return token_issue(user=user)


def token_revoke(*, token: AuthToken) -> None:
    token.delete()


def user_tokens_revoke(*, user: User) -> int:
    """End every token of ``user``; returns how many there were."""
    deleted, _ = AuthToken.objects.filter(user=user).delete()
    return deleted


class EndTokensOnPasswordChange:
    """Listed in ``AUTH_PASSWORD_VALIDATORS`` for Django's ``password_changed`` hook,
    which runs whenever a user is saved with a new password (the admin, ``changepassword``,
    ``set_password``), so a changed password ends every token of that user."""

    def validate(self, password: str, user: User | None = None) -> None:
        return None

    def password_changed(self, password: str, user: User | None = None) -> None:
        if user is not None and user.pk is not None:
            user_tokens_revoke(user=user)

    def get_help_text(self) -> str:
        return ""


def user_after_save(sender, instance: User, created: bool, raw: bool = False,
                    update_fields=None, **kwargs) -> None:
    """Keep the user's normalised name claimed (a clash raises ``IntegrityError``)."""
    if raw or (update_fields is not None and "username" not in update_fields):
        return
    UsernameKey.objects.update_or_create(
        user=instance, defaults={"key": username_key(instance.get_username())}
    )


def user_tokens_end_with_account(sender, instance: User, raw: bool = False, **kwargs) -> None:
    """A user saved inactive, or with an unusable password (the admin's "revoke password
    login"), loses every token at once; reactivation brings none back. A deleted user's
    tokens go with it (their foreign key cascades)."""
    if raw or instance.pk is None:
        return
    if not instance.is_active or not instance.has_usable_password():
        user_tokens_revoke(user=instance)
