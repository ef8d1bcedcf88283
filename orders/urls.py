from django.urls import path

from orders.apis import OrderCancelApi, OrderPlaceApi

urlpatterns = [
    path("orders/", OrderPlaceApi.as_view(), name="order-place"),
    path("orders/<uuid:order_id>/cancel/", OrderCancelApi.as_view(), name="order-cancel"),
]
