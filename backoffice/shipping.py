"""Shipments in the back office. A shipment has no table of its own on the read side: the
order history carries it (shipment id, carrier, status), so staff work shipments from
the order pages. This module registers the order history's admin: the orders' own
(``backoffice/orders.py``) plus the shipment commands: create a shipment for an order,
advance a shipment's status (a form on the order page, and changelist actions for
many at once). Shipping builds on orders, so the arrow points from here to there."""

from __future__ import annotations

from functools import partial
from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.urls import path

from backoffice.commands import api_form, carry_version, command_form_view, run_for_each
from backoffice.names import label, order_name
from backoffice.orders import OrderHistoryAdmin, StatusFilter
from orders.domain import PLACED
from projections.models import OrderHistory
from shipping.apis import ShipmentCreateApi, ShipmentStatusChangeApi
from shipping.domain import CREATED, DELIVERED, STATUSES, next_status, statuses_after
from shipping.services import shipment_change_status, shipment_create
from shop.errors import InvalidState

# The order comes from the page, so the form has only the carrier.
ShipmentCreateForm = api_form(ShipmentCreateApi.InputSerializer, fields=["carrier"])


class ShipmentAdvanceForm(api_form(ShipmentStatusChangeApi.InputSerializer)):
    """The status to move a shipment to: only the ones it can still reach."""

    def __init__(self, *args: Any, current: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.current = current
        # No shipment on the row yet (it may lag the log): every move but "created".
        self.reachable = statuses_after(current or CREATED)
        self.fields["status"].widget.choices = [(s, label(s)) for s in self.reachable]

    def clean_status(self) -> str:
        status = self.cleaned_data["status"]
        if status not in self.reachable:
            raise forms.ValidationError(
                f"A {label(self.current)} shipment can only move forward, to "
                + " or ".join(label(s) for s in self.reachable) + "."
                if self.reachable else "A delivered shipment cannot move."
            )
        return status


class ShipmentStatusFilter(StatusFilter):
    title = "shipment status"
    parameter_name = "shipment_status"
    statuses = STATUSES
    NONE = "none"

    def lookups(self, request, model_admin):
        return [(self.NONE, "no shipment"), *super().lookups(request, model_admin)]

    def queryset(self, request, queryset):
        if self.value() == self.NONE:
            return queryset.filter(shipment_id=None)
        return super().queryset(request, queryset)


def _advance_action(status: str):
    to = label(status)

    @admin.action(description=f"Advance selected shipments to “{to}”")
    def advance(model_admin, request, queryset):
        with_shipment = queryset.exclude(shipment_id=None)
        skipped = queryset.count() - with_shipment.count()
        if skipped:
            model_admin.message_user(
                request, f"{skipped} selected order(s) have no shipment yet; skipped.",
                level="warning",
            )
        run_for_each(
            request, with_shipment,
            lambda order, uow: shipment_change_status(uow=uow, shipment_id=order.shipment_id,
                                                      status=status),
            done=lambda order, _saved: f"Shipment of order {order.number} is now {to}",
            about=str,
        )

    advance.__name__ = f"advance_shipments_to_{status}"
    return advance


@admin.register(OrderHistory)
class OrderShipmentAdmin(OrderHistoryAdmin):
    """The order history's admin: the order commands (``backoffice/orders.py``) and the
    shipment commands, keyed by the order's row."""

    list_display = (*OrderHistoryAdmin.list_display, "shipment")
    list_filter = (StatusFilter, ShipmentStatusFilter, "placed_at")
    actions = (
        *OrderHistoryAdmin.actions,
        *(_advance_action(status) for status in STATUSES[1:]),
    )

    @admin.display(description="Shipment", ordering="shipment_status")
    def shipment(self, order: OrderHistory) -> str:
        if order.shipment_id is None:
            return "—"
        return f"{label(order.shipment_status)} · {order.carrier}"

    def get_urls(self):
        commands = [
            path("<uuid:order_id>/shipment/create/",
                 self.staff_view(self.shipment_create_view),
                 name=self.url_name("shipment_create")),
            path("<uuid:order_id>/shipment/status/",
                 self.staff_view(self.shipment_status_view),
                 name=self.url_name("shipment_status")),
        ]
        return commands + super().get_urls()

    def _order_page_context(self, request: HttpRequest, order: OrderHistory) -> dict[str, Any]:
        shipped = order.shipment_id is not None
        return {
            **super()._order_page_context(request, order),
            "can_ship": order.status == PLACED and not shipped,
            "can_advance": shipped and order.shipment_status != DELIVERED,
            # Each form carries the version it is shown for (of the order it ships, of
            # the shipment it advances): a post about a changed one saves nothing.
            "shipment_create_form": carry_version(ShipmentCreateForm(), order.version),
            "shipment_advance_form": carry_version(
                ShipmentAdvanceForm(
                    current=order.shipment_status,
                    initial={"status": next_status(order.shipment_status)},
                ),
                order.shipment_version,
            ),
            "shipment_create_url": self._url("shipment_create", order),
            "shipment_status_url": self._url("shipment_status", order),
        }

    def shipment_create_view(self, request: HttpRequest, order_id) -> HttpResponse:
        order = self.model.objects.filter(pk=order_id).first()
        return command_form_view(
            self, request,
            form_class=ShipmentCreateForm,
            title="Create shipment",
            run=lambda **data: shipment_create(order_id=order_id, **data),
            done=lambda saved: f"Created a shipment for {order_name(order)}; "
                               "the order is shipped",
            success_url=self._order_page_url(order_id),
            submit_label="Create shipment",
            original=order,
            edits=(order_id, order.version if order else None),
            subject=order_name(order).capitalize(),
        )

    def shipment_status_view(self, request: HttpRequest, order_id) -> HttpResponse:
        order = self.model.objects.filter(pk=order_id).first()
        shipment_id = getattr(order, "shipment_id", None)
        current = getattr(order, "shipment_status", None)

        def advance(*, uow, status: str):
            # The row may lag behind the log; the service is what decides.
            if shipment_id is None:
                raise InvalidState(f"{order_name(order).capitalize()} has no shipment yet.")
            return shipment_change_status(uow=uow, shipment_id=shipment_id, status=status)

        return command_form_view(
            self, request,
            form_class=partial(ShipmentAdvanceForm, current=current),
            title="Advance shipment",
            run=advance,
            done=lambda saved: f"The shipment of {order_name(order)} is now "
                               f"{label(request.POST.get('status', ''))}",
            success_url=self._order_page_url(order_id),
            submit_label="Change status",
            original=order,
            initial={"status": next_status(current)},
            edits=(shipment_id, getattr(order, "shipment_version", None)),
            subject=f"The shipment of {order_name(order)}",
        )
