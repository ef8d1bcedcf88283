"""The query API, mounted at /api/queries/ (see shop/urls.py)."""

from django.urls import path

from projections.apis import (
    ActivityApi,
    OrderDetailApi,
    OrderEventsApi,
    OrderListApi,
    ProductListApi,
    ProjectionListApi,
    SalesDailyApi,
    SalesProductsApi,
)

urlpatterns = [
    path("products/", ProductListApi.as_view(), name="product-list"),
    path("orders/", OrderListApi.as_view(), name="order-list"),
    path("orders/<uuid:order_id>/", OrderDetailApi.as_view(), name="order-detail"),
    path("orders/<uuid:order_id>/events/", OrderEventsApi.as_view(), name="order-events"),
    path("activity/", ActivityApi.as_view(), name="activity-list"),
    path("projections/", ProjectionListApi.as_view(), name="projection-list"),
    path("sales/daily/", SalesDailyApi.as_view(), name="sales-daily"),
    path("sales/products/", SalesProductsApi.as_view(), name="sales-products"),
]
