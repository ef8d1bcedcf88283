"""Account commands: register a customer, issue an API token."""

from __future__ import annotations

from django.contrib.auth import authenticate, password_validation
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from rest_framework.authtoken.models import Token

from shop.errors import InvalidInput


def user_register(*, username: str, password: str, email: str = "") -> User:
    """Create a customer account; usernames are unique regardless of case."""
    if User.objects.filter(username__iexact=username).exists():
        raise InvalidInput.field("username", "A user with that username already exists.")
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
        raise InvalidInput.field(
            "username", "A user with that username already exists."
        ) from None


def token_obtain(*, username: str, password: str) -> str:
    """The user's API token (created on first use) for valid credentials."""
    user = authenticate(username=username, password=password)
    if user is None or not user.is_active:
        raise InvalidInput(
            "Unable to log in with the provided credentials.",
            errors={"non_field_errors": ["Unable to log in with the provided credentials."]},
        )
    token, _ = Token.objects.get_or_create(user=user)
    return token.key
