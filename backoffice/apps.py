from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class BackofficeConfig(AppConfig):
    default = True
    name = "backoffice"
    verbose_name = "Back office"

    def ready(self) -> None:
        from django.contrib import admin

        from backoffice.dashboard import dashboard_context

        admin.site.add_dashboard_panel("admin/projections/dashboard_panel.html",
                                       dashboard_context)


class BackofficeAdminConfig(admin_apps.AdminConfig):
    """Django's admin with the shop's site (``backoffice.site.ShopAdminSite``)."""

    default = False
    default_site = "backoffice.site.ShopAdminSite"
