from django.urls import path

from shipping.apis import ShipmentCreateApi, ShipmentStatusChangeApi

urlpatterns = [
    path("shipments/", ShipmentCreateApi.as_view(), name="shipment-create"),
    path(
        "shipments/<uuid:shipment_id>/status/",
        ShipmentStatusChangeApi.as_view(),
        name="shipment-status-change",
    ),
]
