"""Orders in the back office: the order history read model with filters and search, an
order page (what staff need first: number, customer, status, total, address; then its
lines, its commands and its timeline as sentences; ids and versions folded away under
"Technical details"), and the order commands (cancel).

``backoffice/shipping.py`` registers this admin with the shipment commands added:
shipping builds on orders (a shipment is for an order), never the other way round."""

from __future__ import annotations

import json
import re
from typing import Any

from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.db.models import Q
from django.http import HttpRequest, HttpResponse
from django.urls import path, reverse
from django.utils.formats import localize
from django.utils.timezone import localtime

from backoffice.commands import (
    ReadModelAdmin,
    api_form,
    carry_version,
    command_form_view,
    run_for_each,
)
from backoffice.money import money
from backoffice.names import event_sentence, label, order_name, version_label
from catalog.domain import SKU_PATTERN
from orders.apis import OrderCancelApi
from orders.domain import PLACED
from orders.domain import STATUSES as ORDER_STATUSES
from orders.services import order_cancel
from projections.activity import WAYS_IN, actor_name
from projections.models import OrderHistory
from projections.selectors import aggregate_events, order_events
from shop.errors import NotFound

SKU_SEARCH = re.compile(SKU_PATTERN)


class StatusFilter(admin.SimpleListFilter):
    """Every status the domain knows, not only those present in the rows."""

    title = "status"
    parameter_name = "status"
    statuses: tuple[str, ...] = ORDER_STATUSES

    def lookups(self, request, model_admin):
        return [(status, status.replace("_", " ")) for status in self.statuses]

    def queryset(self, request, queryset):
        value = self.value()
        return queryset.filter(**{self.parameter_name: value}) if value else queryset


OrderCancelForm = api_form(OrderCancelApi.InputSerializer)


@admin.action(description="Cancel selected orders")
def cancel_orders(model_admin, request, queryset):
    reason = f"Cancelled in the admin by {request.user.get_username()}."
    run_for_each(
        request, queryset,
        lambda order, uow: order_cancel(uow=uow, order_id=order.order_id,
                                        user_id=request.user.pk, is_staff=True,
                                        reason=reason),
        done=lambda order, _saved: f"Cancelled order {order.number}",
        about=str,
    )


class OrderHistoryAdmin(ReadModelAdmin):
    list_display: tuple = ("order_number", "customer", "status_label", "total_label", "placed")
    list_display_links = ("order_number",)
    list_filter: tuple = (StatusFilter, "placed_at")
    date_hierarchy = "placed_at"
    search_fields = ("customer", "order_id", "shipment_id")
    search_help_text = "Order number, customer (username), order id, shipment id or SKU."
    ordering = ("-placed_at", "-order_id")
    list_per_page = 50
    actions: tuple = (cancel_orders,)
    readonly_fields = ("status_label", "total_label", "address", "shipment_status_label")
    fieldsets = (
        (None, {"fields": ("number", "customer", "status_label", "total_label", "address",
                           "placed_at")}),
        ("Shipment", {"fields": ("carrier", "shipment_status_label", "shipment_updated_at")}),
        ("Technical details", {
            "classes": ("collapse",),
            "fields": ("order_id", "customer_id", "version", "shipment_id", "shipment_version"),
        }),
    )
    change_form_template = "admin/orders/order_change_form.html"

    @admin.display(description="Order", ordering="number")
    def order_number(self, order: OrderHistory) -> str:
        return str(order.number) if order.number else str(order.order_id)[:8]

    @admin.display(description="Status", ordering="status")
    def status_label(self, order: OrderHistory) -> str:
        return label(order.status)

    @admin.display(description="Total", ordering="total")
    def total_label(self, order: OrderHistory) -> str:
        return money(order.total)

    @admin.display(description="Shipping address")
    def address(self, order: OrderHistory) -> str:
        if order.shipping_address is None:
            return "— (forgotten with the customer)"
        return order.shipping_address

    @admin.display(description="Shipment status")
    def shipment_status_label(self, order: OrderHistory) -> str:
        return label(order.shipment_status) or "no shipment yet"

    @admin.display(description="Placed", ordering="placed_at")
    def placed(self, order: OrderHistory) -> str:
        return localize(localtime(order.placed_at))

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None
                        ) -> HttpResponse:
        return super().changelist_view(request, {"title": "Orders", **(extra_context or {})})

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip().lstrip("#")
        if term.isdigit():
            # An order number (or, rarely, the all-digit start of an id): a number's
            # digits inside other ids are no match.
            match = Q(number=int(term)) if len(term) <= 18 else Q(pk__in=[])  # a bigint
            if len(term) >= 8:  # long enough to be the start of an id someone copied
                match |= Q(order_id__istartswith=term) | Q(shipment_id__istartswith=term)
            return queryset.filter(match), False
        found, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        if SKU_SEARCH.match(term):
            # Orders with a line whose SKU starts with the term. The lines are JSON;
            # matching their text works on PostgreSQL and SQLite alike.
            found = found | queryset.filter(lines__icontains=f'"sku": "{term}')
        return found, may_have_duplicates

    def get_urls(self):
        commands = [
            path("<uuid:order_id>/cancel/", self.staff_view(self.cancel_view),
                 name=self.url_name("cancel")),
        ]
        return commands + super().get_urls()

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "",
                    extra_context: dict[str, Any] | None = None) -> HttpResponse:
        order = self.get_object(request, unquote(object_id))
        if order is not None:
            extra_context = {**(extra_context or {}), **self._order_page_context(request, order)}
        return super().change_view(request, object_id, form_url, extra_context)

    def _order_page_context(self, request: HttpRequest, order: OrderHistory) -> dict[str, Any]:
        """What the order page shows beside the fields (a subclass adds its commands)."""
        return {
            "lines": [{**line, "unit_price": money(line.get("unit_price")),
                       "line_total": money(line.get("line_total"))}
                      for line in order.lines or []],
            "total_label": money(order.total),
            "status_label": label(order.status),
            "shipment_status_label": label(order.shipment_status),
            "timeline": order_timeline(request, order),
            "can_cancel": order.status == PLACED,
            # The version shown travels with the form: a cancel posted from a page
            # shown before someone else changed the order saves nothing and says so.
            "cancel_form": carry_version(OrderCancelForm(), order.version),
            "cancel_url": self._url("cancel", order),
        }

    def _url(self, view: str, order: OrderHistory) -> str:
        return reverse(f"admin:{self.url_name(view)}", args=[order.order_id])

    def _order_page_url(self, order_id) -> str:
        return reverse(f"admin:{self.url_name('change')}", args=[order_id])

    def cancel_view(self, request: HttpRequest, order_id) -> HttpResponse:
        order = OrderHistory.objects.filter(pk=order_id).first()
        return command_form_view(
            self, request,
            form_class=OrderCancelForm,
            title="Cancel order",
            run=lambda *, uow, reason: order_cancel(
                uow=uow, order_id=order_id, user_id=request.user.pk, is_staff=True,
                reason=reason,
            ),
            done=f"Cancelled {order_name(order)}; its stock reservations are released",
            success_url=self._order_page_url(order_id),
            submit_label="Cancel order",
            original=order,
            edits=(order_id, order.version if order else None),
            subject=order_name(order).capitalize(),
        )


def order_timeline(request: HttpRequest, order: OrderHistory) -> list[dict[str, Any]]:
    """The order's events and its shipment's, oldest first, from the event store.

    Each row: ``{aggregate, type, version, timestamp, data, what, version_label, by,
    details}``: ``what`` the event as a sentence ("Shipment dispatched (DHL)"),
    ``version_label`` whose version it made ("shipment v2"), ``details`` the data as
    staff read it: ``[(label, text)]`` (see :func:`readable`). The order's own come
    from the query side's ``order_events`` (the same timeline as
    ``GET /api/queries/orders/{id}/events``).
    """
    try:
        rows = [{"aggregate": "order", **event}
                for event in order_events(user=request.user, order_id=order.order_id)]
    except NotFound:
        rows = []
    if order.shipment_id is not None:
        rows += [{"aggregate": "shipment", **event}
                 for event in aggregate_events(order.shipment_id)]
    rows.sort(key=lambda row: row["timestamp"])
    for row in rows:
        row["what"] = event_sentence(row["type"], row["data"], order.carrier)
        row["version_label"] = version_label(row["aggregate"], row["version"])
        row["details"] = readable(row["data"])
        row["by"] = by_whom(row)
    return rows


def by_whom(row: dict[str, Any]) -> str:
    """Who caused a timeline's event, and how: "admin (back office)", "the shop"."""
    actor = row.get("actor") or {}
    name = actor_name(actor.get("kind", "system"), actor.get("username"))
    way = WAYS_IN.get(row.get("via") or "")
    return f"{name} ({way})" if way else name


#: What a timeline's details leave out: ids and numbers the page says elsewhere.
HIDDEN_DETAILS = {"customer_id", "order_id", "shipment_id", "user_id"}
MONEY_DETAILS = {"total", "unit_price", "line_total", "price"}


def readable(data: dict[str, Any]) -> list[tuple[str, str]]:
    """An event's data as ``(label, text)`` pairs: "shipping address", order lines as
    "2 × MUG-1 at €19.99", money in the shop's currency, anything else as plain text
    or compact JSON; ids (shown under "Technical details") left out."""
    details = []
    for key in sorted(data):
        if key in HIDDEN_DETAILS:
            continue
        value = data[key]
        if isinstance(value, list) and all(
            isinstance(item, dict) and {"sku", "quantity"} <= set(item) for item in value
        ):
            text = "; ".join(
                f"{item['quantity']} × {item['sku']}"
                + (f" at {money(item['unit_price'])}" if "unit_price" in item else "")
                for item in value
            )
        elif isinstance(value, dict | list):
            text = json.dumps(value, sort_keys=True)
        elif value in ("", None):
            text = "—"
        elif key in MONEY_DETAILS:
            text = money(value)
        else:
            text = str(value)
        details.append((key.replace("_", " "), text))
    return details
