"""The ``/api/auth/`` views. They are open (no authentication runs, so a stale token
never blocks logging in again)."""

from __future__ import annotations

from datetime import UTC

from django.contrib.auth.validators import UnicodeUsernameValidator
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from shop.accounts.authentication import TOKEN_KEYWORDS, TokenOrBearerAuthentication
from shop.accounts.privacy import customer_export, customer_forget
from shop.accounts.services import token_obtain, token_revoke, user_register, user_tokens_revoke
from shop.accounts.throttles import FORGET_THROTTLES, LOGIN_THROTTLES, REGISTER_THROTTLES
from shop.api import error_responses
from shop.errors import ApplicationError
from shop.metadata import Actor, Context
from shop.request_id import request_id_of
from shop.unit_of_work import UnitOfWork


class CredentialsApi(APIView):
    """Base of the open views that take a username and a password. Before any limit is
    counted, each of ``credential_fields`` that is present must be a string: a JSON
    number as a username would otherwise be counted under no name at all, then read
    as one by the serializer (400 ``invalid``, nothing counted, nothing tried)."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    credential_fields: tuple[str, ...] = ("username", "password", "email")

    def check_throttles(self, request) -> None:
        data = request.data
        if not hasattr(data, "get"):
            raise serializers.ValidationError(
                {"non_field_errors": ["Send a JSON object with username and password."]}
            )
        wrong = {
            name: ["Must be a string."]
            for name in self.credential_fields
            if name in data and not isinstance(data.get(name), str)
        }
        if wrong:
            raise serializers.ValidationError(wrong)
        super().check_throttles(request)


class UserRegisterApi(CredentialsApi):
    """A new customer account (open to anyone); then obtain a token."""

    throttle_classes = REGISTER_THROTTLES

    class InputSerializer(serializers.Serializer):
        username = serializers.CharField(max_length=150, validators=[UnicodeUsernameValidator()])
        password = serializers.CharField(max_length=128, trim_whitespace=False,
                                         style={"input_type": "password"})
        # No default: a schema default of "" would not be an email address.
        email = serializers.EmailField(required=False, allow_blank=True)

        class Meta:
            ref_name = "UserRegisterInput"

    class OutputSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        username = serializers.CharField()

        class Meta:
            ref_name = "UserRegistered"

    @extend_schema(
        request=InputSerializer,
        responses={201: OutputSerializer, **error_responses(400, 429)},
        summary="Register a customer account",
    )
    def post(self, request):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user = user_register(**serializer.validated_data)
        return Response(self.OutputSerializer(user).data, status=status.HTTP_201_CREATED)


class TokenObtainApi(CredentialsApi):
    """A new API token for a username and password; it expires at ``expiry``."""

    throttle_classes = LOGIN_THROTTLES

    class InputSerializer(serializers.Serializer):
        username = serializers.CharField(max_length=150)
        password = serializers.CharField(max_length=128, trim_whitespace=False,
                                         style={"input_type": "password"})

        class Meta:
            ref_name = "TokenObtainInput"

    class OutputSerializer(serializers.Serializer):
        token = serializers.CharField(
            help_text="Send as `Authorization: Bearer <token>` (or `Token <token>`)."
        )
        expiry = serializers.DateTimeField(help_text="When the token stops working.")

        class Meta:
            ref_name = "Token"

    @extend_schema(
        request=InputSerializer,
        responses={200: OutputSerializer, **error_responses(400, 401, 429)},
        summary="Obtain an API token",
    )
    def post(self, request):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        issued = token_obtain(request=request, **serializer.validated_data)
        return Response(
            {"token": issued.token, "expiry": issued.expiry.astimezone(UTC).isoformat()}
        )

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        if response.status_code == status.HTTP_401_UNAUTHORIZED:
            response["WWW-Authenticate"] = TOKEN_KEYWORDS[0]
        return response


class TokenApi(APIView):
    """Base of the views that act on the token the request came with."""

    authentication_classes = [TokenOrBearerAuthentication]
    permission_classes = [IsAuthenticated]


class LogoutApi(TokenApi):
    """The token this request came with stops working; the user's others still work."""

    @extend_schema(request=None, responses={204: None, **error_responses(401)},
                   summary="End the token used for this request")
    def post(self, request):
        token_revoke(token=request.auth)
        return Response(status=status.HTTP_204_NO_CONTENT)


class LogoutAllApi(TokenApi):
    """Every token of the user stops working (a lost device, a leaked token)."""

    @extend_schema(request=None, responses={204: None, **error_responses(401)},
                   summary="End every token of the user")
    def post(self, request):
        user_tokens_revoke(user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class InvalidCredentials(ApplicationError):
    code = "invalid_credentials"
    status = 403
    default_detail = "The password is not right."


class MeExportApi(TokenApi):
    """Everything the shop holds about you, as one JSON document (the right of access):
    the account, your orders with their lines, shipments and addresses, and their
    events with who caused each."""

    @extend_schema(
        responses={200: OpenApiTypes.OBJECT, **error_responses(401)},
        summary="Everything the shop holds about you",
        operation_id="me_export",
    )
    def get(self, request):
        return Response(customer_export(user=request.user))


class MeForgetApi(TokenApi):
    """Forget me (the right to erasure): your name and addresses become unreadable
    everywhere, the account is anonymised and every token ends. Staff accounts cannot
    be forgotten."""

    throttle_classes = FORGET_THROTTLES

    class InputSerializer(serializers.Serializer):
        password = serializers.CharField(max_length=128, trim_whitespace=False,
                                         style={"input_type": "password"})

        class Meta:
            ref_name = "ForgetMeInput"

    @extend_schema(
        request=InputSerializer,
        responses={204: None, **error_responses(
            400, 401, 403, 409, 429, e403="invalid_credentials", e409="invalid_state")},
        summary="Forget me: delete my personal data (re-enter the password)",
        operation_id="me_forget",
    )
    def post(self, request):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user = request.user
        if not user.check_password(serializer.validated_data["password"]):
            raise InvalidCredentials()
        context = Context(Actor.of(user), "api", request_id_of(request))
        customer_forget(uow=UnitOfWork(context=context), user=user)
        return Response(status=status.HTTP_204_NO_CONTENT)
