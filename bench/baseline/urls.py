from django.urls import path

from bench.baseline.views import RowsApi, WriteSideHistoryApi

urlpatterns = [
    path("rows/", RowsApi.as_view(), name="bench-rows"),
    path("write-side/orders/", WriteSideHistoryApi.as_view(), name="bench-write-side-orders"),
]
