from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularSwaggerView

from shop.front import front_door
from shop.health import HealthApi
from shop.metrics import metrics_view
from shop.schema_view import SchemaView

urlpatterns = [
    # The front door (also the back office's "View site").
    path("", front_door, name="front-door"),
    path("admin/", admin.site.urls),
    path("api/auth/", include("shop.accounts.urls")),
    path("api/commands/", include("catalog.urls")),
    path("api/commands/", include("orders.urls")),
    path("api/commands/", include("shipping.urls")),
    path("api/queries/", include("projections.urls")),
    path("api/health/", HealthApi.as_view(), name="health"),
    path("metrics", metrics_view, name="metrics"),
    path("api/schema/", SchemaView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
]

# Django's own 400/403/404/500 pages answer in the API's {code, detail} body (e.g. a malformed
# UUID in a command path never reaches a view).
handler400 = "shop.api.json_bad_request"
handler403 = "shop.api.json_permission_denied"
handler404 = "shop.api.json_not_found"
handler500 = "shop.api.json_server_error"
