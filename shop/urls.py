from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/auth/", include("shop.accounts")),
    path("api/commands/", include("catalog.urls")),
    path("api/commands/", include("orders.urls")),
    path("api/commands/", include("shipping.urls")),
    path("api/queries/", include("projections.urls")),
]
