"""The back office's admin site: it names the shop, and its index is a dashboard.

Modules add dashboard panels from their ``AppConfig.ready()`` with
:meth:`ShopAdminSite.add_dashboard_panel` (a template and a function giving its
context); the kernel knows no module. The site replaces Django's default one
(``shop.apps.ShopAdminConfig``), so ``admin.site`` and ``@admin.register`` are this.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib import admin
from django.http import HttpRequest, HttpResponse


@dataclass(frozen=True)
class DashboardPanel:
    template: str
    context: Callable[[HttpRequest], dict[str, Any]]


class ShopAdminSite(admin.AdminSite):
    index_title = "Dashboard"
    index_template = "admin/shop/dashboard.html"

    def __init__(self, name: str = "admin") -> None:
        super().__init__(name)
        self.site_header = f"{settings.SHOP_NAME} back office"
        self.site_title = settings.SHOP_NAME
        self.dashboard_panels: list[DashboardPanel] = []

    def add_dashboard_panel(
        self, template: str, context: Callable[[HttpRequest], dict[str, Any]]
    ) -> None:
        self.dashboard_panels.append(DashboardPanel(template, context))

    def index(self, request: HttpRequest, extra_context: dict[str, Any] | None = None
              ) -> HttpResponse:
        panels = [
            {"template": panel.template, **panel.context(request)}
            for panel in self.dashboard_panels
        ]
        return super().index(request, {"dashboard_panels": panels, **(extra_context or {})})
