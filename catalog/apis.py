"""Catalog commands over HTTP (staff only): one thin view per command."""

from __future__ import annotations

from decimal import Decimal

from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.permissions import IsAdminUser

from catalog.domain import (
    CATEGORY_MAX_LENGTH,
    MAX_RESTOCK,
    MAX_STOCK,
    NAME_MAX_LENGTH,
    SKU_MAX_LENGTH,
    SKU_PATTERN,
)
from catalog.services import product_register, product_rename, product_reprice, product_restock
from shop.api import CommandApi, StrictIntegerField, error_responses, saved_serializer


@extend_schema_field({
    "type": "string",
    "format": "decimal",
    # Positive (some digit other than 0), at most 10 whole digits and two decimals.
    "pattern": r"^(?=[0-9.]*[1-9])[0-9]{1,10}(?:\.[0-9]{1,2})?$",
    "example": "19.99",
})
class PriceField(serializers.DecimalField):
    pass


def price_field() -> serializers.DecimalField:
    return PriceField(
        max_digits=12, decimal_places=2, min_value=Decimal("0.01"),
        help_text="Positive, at most two decimal places, e.g. \"19.99\".",
    )


def name_field() -> serializers.CharField:
    return serializers.CharField(max_length=NAME_MAX_LENGTH)


ProductSaved = saved_serializer("product")


class ProductRegisterApi(CommandApi):
    permission_classes = [IsAdminUser]
    saved_name = "product"
    success_status = status.HTTP_201_CREATED

    class InputSerializer(serializers.Serializer):
        sku = serializers.RegexField(
            SKU_PATTERN, max_length=SKU_MAX_LENGTH,
            error_messages={"invalid": "Use 1-64 letters, digits, '-' or '_'."},
            help_text="Letters, digits, '-' and '_'; unique regardless of case.",
        )
        name = name_field()
        price = price_field()
        stock = StrictIntegerField(min_value=0, max_value=MAX_STOCK)
        category = serializers.CharField(
            max_length=CATEGORY_MAX_LENGTH, required=False, allow_blank=True, default="",
            help_text="Optional, e.g. \"Mugs\".",
        )

        class Meta:
            ref_name = "ProductRegisterInput"

    @extend_schema(
        request=InputSerializer,
        responses={201: ProductSaved,
                   **error_responses(400, 401, 403, 409, e409="duplicate_sku")},
        summary="Register a product",
    )
    def post(self, request):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        saved = product_register(uow=self.uow, **serializer.validated_data)
        return saved


class ProductRenameApi(CommandApi):
    permission_classes = [IsAdminUser]
    saved_name = "product"

    class InputSerializer(serializers.Serializer):
        name = name_field()

        class Meta:
            ref_name = "ProductRenameInput"

    @extend_schema(
        request=InputSerializer,
        responses={200: ProductSaved, **error_responses(400, 401, 403, 404)},
        summary="Rename a product",
    )
    def post(self, request, product_id):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        saved = product_rename(uow=self.uow, product_id=product_id, **serializer.validated_data)
        return saved


class ProductRepriceApi(CommandApi):
    permission_classes = [IsAdminUser]
    saved_name = "product"

    class InputSerializer(serializers.Serializer):
        price = price_field()

        class Meta:
            ref_name = "ProductRepriceInput"

    @extend_schema(
        request=InputSerializer,
        responses={200: ProductSaved, **error_responses(400, 401, 403, 404)},
        summary="Change a product's price (orders already placed keep theirs)",
    )
    def post(self, request, product_id):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        saved = product_reprice(uow=self.uow, product_id=product_id, **serializer.validated_data)
        return saved


class ProductRestockApi(CommandApi):
    permission_classes = [IsAdminUser]
    saved_name = "product"

    class InputSerializer(serializers.Serializer):
        quantity = StrictIntegerField(min_value=1, max_value=MAX_RESTOCK,
                                      help_text="Units to add.")

        class Meta:
            ref_name = "ProductRestockInput"

    @extend_schema(
        request=InputSerializer,
        responses={200: ProductSaved, **error_responses(400, 401, 403, 404)},
        summary="Add stock to a product",
    )
    def post(self, request, product_id):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        saved = product_restock(uow=self.uow, product_id=product_id, **serializer.validated_data)
        return saved
