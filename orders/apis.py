"""Order commands over HTTP: a customer places an order; its owner or staff cancel it."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import IsAuthenticated

from orders.domain import MAX_LINES, MAX_QUANTITY
from orders.services import order_cancel, order_place
from shop.api import (
    CommandApi,
    StrictIntegerField,
    StrictUUIDField,
    error_responses,
    saved_serializer,
)


class OrderPlaceApi(CommandApi):
    permission_classes = [IsAuthenticated]
    saved_name = "order"
    success_status = status.HTTP_201_CREATED

    def success_body(self, saved):
        code, body = super().success_body(saved)
        # The order's number is the log position of its Order.Placed, the first event
        # its placement appends (the order history shows the same number).
        return code, {**body, "number": saved.positions[0]}

    class InputSerializer(serializers.Serializer):
        class LineSerializer(serializers.Serializer):
            product_id = StrictUUIDField()
            quantity = StrictIntegerField(min_value=1, max_value=MAX_QUANTITY)

            class Meta:
                ref_name = "OrderLineInput"

        lines = LineSerializer(many=True, min_length=1, max_length=MAX_LINES)
        shipping_address = serializers.CharField(max_length=500)

        class Meta:
            ref_name = "OrderPlaceInput"

        def validate_lines(self, lines: list[dict]) -> list[dict]:
            if len({line["product_id"] for line in lines}) != len(lines):
                raise serializers.ValidationError("Each product may appear in only one line.")
            return lines

    @extend_schema(
        request=InputSerializer,
        responses={
            201: saved_serializer("order", total=True),
            **error_responses(400, 401, 409, e409="insufficient_stock"),
        },
        summary="Place an order (prices from the catalog now; reserves stock)",
        examples=[
            OpenApiExample(
                "Three blue mugs",
                request_only=True,
                value={"lines": [{"product_id": "6f1c2a8e-3b7d-5e0f-9a41-2c8d7e6b5a10",
                                  "quantity": 3}],
                       "shipping_address": "12 Harbour Road, Bristol BS1 4RN"},
            ),
            OpenApiExample(
                "Placed",
                response_only=True,
                status_codes=["201"],
                value={"order_id": "0b9e4c52-8d3f-4a7e-b1c6-5f2a9d8e7c31", "version": 1,
                       "position": 10434, "total": "59.97", "number": 10432},
            ),
        ],
    )
    def post(self, request):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        saved, _total = order_place(
            uow=self.uow,
            customer_id=request.user.id,
            customer=request.user.get_username(),
            lines=[(line["product_id"], line["quantity"]) for line in data["lines"]],
            shipping_address=data["shipping_address"],
        )
        return saved


class OrderCancelApi(CommandApi):
    permission_classes = [IsAuthenticated]
    saved_name = "order"

    class InputSerializer(serializers.Serializer):
        reason = serializers.CharField(max_length=500, allow_blank=True, default="")

        class Meta:
            ref_name = "OrderCancelInput"

    @extend_schema(
        request=InputSerializer,
        responses={
            200: saved_serializer("order"),
            **error_responses(400, 401, 404, 409, e409="invalid_state"),
        },
        summary="Cancel a placed order (owner or staff); releases its stock",
    )
    def post(self, request, order_id):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        saved = order_cancel(
            uow=self.uow,
            order_id=order_id,
            user_id=request.user.id,
            is_staff=request.user.is_staff,
            **serializer.validated_data,
        )
        return saved
