"""The back office's admin site: it names the shop, its index is a dashboard, and its
app list is grouped in the shop's own sections (:data:`SECTIONS`), not by Django app.

Panels are added to the dashboard with :meth:`ShopAdminSite.add_dashboard_panel` (a
template and a function giving its context; ``backoffice.apps`` adds the one there
is). The site replaces Django's default one (``backoffice.apps.BackofficeAdminConfig``),
so ``admin.site`` and ``@admin.register`` are this.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib import admin
from django.http import HttpRequest, HttpResponse

#: The index's sections, in order: (name, ((app label, model class name, its name in
#: the list), ...)). A registered model named nowhere here is listed after them, under
#: its app's name.
SECTIONS: tuple[tuple[str, tuple[tuple[str, str, str], ...]], ...] = (
    ("Shop", (
        ("projections", "OrderHistory", "Orders"),
        ("projections", "ProductCatalog", "Products"),
        ("projections", "SalesDaily", "Sales"),
        ("projections", "Activity", "Activity"),
    )),
    ("Accounts", (
        ("auth", "User", "Users"),
        ("auth", "Group", "Groups"),
    )),
    ("Read models", (
        ("projections", "Checkpoint", "Projection status"),
    )),
    ("Security", (
        ("axes", "AccessAttempt", "Access attempts"),
        ("axes", "AccessFailureLog", "Access failures"),
        ("axes", "AccessLog", "Access log"),
        ("knox", "AuthToken", "API tokens"),
    )),
)


def section_label(name: str) -> str:
    return f"section-{name.lower().replace(' ', '-')}"


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

    def get_app_list(self, request: HttpRequest, app_label: str | None = None
                     ) -> list[dict[str, Any]]:
        """The index and the side bar: :data:`SECTIONS` first, in their order, then any
        other app as Django lists it. An app's own page (``app_label``) stays Django's."""
        apps = super().get_app_list(request, app_label)
        if app_label is not None:
            return apps
        models = {(app["app_label"], model["object_name"]): (app, model)
                  for app in apps for model in app["models"]}
        sections, placed = [], set()
        for name, members in SECTIONS:
            rows = []
            for app_label_, object_name, title in members:
                found = models.get((app_label_, object_name))
                if found is not None:
                    rows.append({**found[1], "name": title})
                    placed.add((app_label_, object_name))
            if rows:
                sections.append({
                    "name": name, "app_label": section_label(name),
                    "app_url": rows[0]["admin_url"], "has_module_perms": True,
                    "models": rows,
                })
        for app in apps:
            rest = [m for m in app["models"] if (app["app_label"], m["object_name"]) not in placed]
            if rest:
                sections.append({**app, "models": rest})
        return sections

    def index(self, request: HttpRequest, extra_context: dict[str, Any] | None = None
              ) -> HttpResponse:
        panels = [
            {"template": panel.template, **panel.context(request)}
            for panel in self.dashboard_panels
        ]
        return super().index(request, {"dashboard_panels": panels, **(extra_context or {})})
