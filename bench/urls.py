"""The shop's URLs plus the benchmark's baselines under ``/bench/``."""

from django.urls import include, path

from shop.urls import handler404, handler500  # noqa: F401 - Django reads them here
from shop.urls import urlpatterns as shop_urlpatterns

urlpatterns = [*shop_urlpatterns, path("bench/", include("bench.baseline.urls"))]
