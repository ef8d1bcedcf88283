from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class ShopConfig(AppConfig):
    default = True  # "shop" in INSTALLED_APPS; the admin's config below is named in full
    name = "shop"
    verbose_name = "Shop"

    def ready(self) -> None:
        # Registers the system checks and the OpenAPI bearer token scheme.
        from shop import checks, schema  # noqa: F401


class ShopAdminConfig(admin_apps.AdminConfig):
    """Django's admin with the shop's site (``shop.admin_site.ShopAdminSite``)."""

    default = False
    default_site = "shop.admin_site.ShopAdminSite"
