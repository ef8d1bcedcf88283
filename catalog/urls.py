from django.urls import path

from catalog.apis import (
    ProductRegisterApi,
    ProductRenameApi,
    ProductRepriceApi,
    ProductRestockApi,
)

urlpatterns = [
    path("products/", ProductRegisterApi.as_view(), name="product-register"),
    path("products/<uuid:product_id>/rename/", ProductRenameApi.as_view(), name="product-rename"),
    path(
        "products/<uuid:product_id>/reprice/", ProductRepriceApi.as_view(), name="product-reprice"
    ),
    path(
        "products/<uuid:product_id>/restock/", ProductRestockApi.as_view(), name="product-restock"
    ),
]
