"""Shipment commands over HTTP (staff only)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import IsAdminUser

from shipping.domain import STATUSES
from shipping.services import shipment_change_status, shipment_create
from shop.api import (
    CommandApi,
    StrictUUIDField,
    enum_field,
    error_responses,
    saved_serializer,
)

ShipmentSaved = saved_serializer("shipment")


class ShipmentCreateApi(CommandApi):
    permission_classes = [IsAdminUser]
    saved_name = "shipment"
    success_status = status.HTTP_201_CREATED

    class InputSerializer(serializers.Serializer):
        order_id = StrictUUIDField()
        carrier = serializers.CharField(max_length=100)

        class Meta:
            ref_name = "ShipmentCreateInput"

    @extend_schema(
        request=InputSerializer,
        responses={
            201: ShipmentSaved,
            **error_responses(400, 401, 403, 409, e409="invalid_state"),
        },
        summary="Create a shipment for a placed order (the order becomes shipped)",
    )
    def post(self, request):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        saved = shipment_create(uow=self.uow, **serializer.validated_data)
        return saved


class ShipmentStatusChangeApi(CommandApi):
    permission_classes = [IsAdminUser]
    saved_name = "shipment"

    class InputSerializer(serializers.Serializer):
        status = enum_field(
            "ShipmentStatus", STATUSES,
            choices=[(status, status.replace("_", " ")) for status in STATUSES],
        )

        class Meta:
            ref_name = "ShipmentStatusChangeInput"

    @extend_schema(
        request=InputSerializer,
        responses={
            200: ShipmentSaved,
            **error_responses(400, 401, 403, 404, 409, e409="invalid_transition"),
        },
        summary="Move a shipment forward (delivered also delivers the order)",
    )
    def post(self, request, shipment_id):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        saved = shipment_change_status(uow=self.uow, shipment_id=shipment_id,
                                       **serializer.validated_data)
        return saved
