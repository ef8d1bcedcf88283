"""Accounts: register a customer and obtain an API token (``/api/auth/``).

Users are Django's own ``auth.User``; these views are open (no authentication runs,
so a stale token never blocks logging in again).
"""

from __future__ import annotations

from django.contrib.auth import authenticate, password_validation
from django.contrib.auth.models import User
from django.contrib.auth.validators import UnicodeUsernameValidator
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from django.urls import path
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.authtoken.models import Token
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from shop.api import error_responses
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


class UserRegisterApi(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]

    class InputSerializer(serializers.Serializer):
        username = serializers.CharField(max_length=150, validators=[UnicodeUsernameValidator()])
        password = serializers.CharField(max_length=128, trim_whitespace=False,
                                         style={"input_type": "password"})
        email = serializers.EmailField(required=False, allow_blank=True, default="")

        class Meta:
            ref_name = "UserRegisterInput"

    class OutputSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        username = serializers.CharField()

        class Meta:
            ref_name = "UserRegistered"

    @extend_schema(
        request=InputSerializer,
        responses={201: OutputSerializer, **error_responses(400)},
        summary="Register a customer account",
    )
    def post(self, request):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user = user_register(**serializer.validated_data)
        return Response(self.OutputSerializer(user).data, status=status.HTTP_201_CREATED)


class TokenObtainApi(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]

    class InputSerializer(serializers.Serializer):
        username = serializers.CharField(max_length=150)
        password = serializers.CharField(max_length=128, trim_whitespace=False,
                                         style={"input_type": "password"})

        class Meta:
            ref_name = "TokenObtainInput"

    class OutputSerializer(serializers.Serializer):
        token = serializers.CharField(help_text="Send as `Authorization: Token <token>`.")

        class Meta:
            ref_name = "Token"

    @extend_schema(
        request=InputSerializer,
        responses={200: OutputSerializer, **error_responses(400)},
        summary="Obtain an API token",
    )
    def post(self, request):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        token = token_obtain(**serializer.validated_data)
        return Response({"token": token})


urlpatterns = [
    path("register/", UserRegisterApi.as_view(), name="auth-register"),
    path("token/", TokenObtainApi.as_view(), name="auth-token"),
]
