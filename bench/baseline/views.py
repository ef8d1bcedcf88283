"""Baseline endpoints and the "traditional" history read from the write side.

- ``GET  /bench/rows/``  five rows of one table: the ceiling of the stack for a query.
- ``POST /bench/rows/``  insert one row: the ceiling of the stack for a command.
- ``GET  /bench/write-side/orders/``  the caller's whole order history assembled per
  request from the event store: load each order aggregate, then each product (for its
  current name) and each shipment. This is what the read model saves a query from.

All three use the project's default authentication and permissions (token, logged in),
exactly like the API endpoints they are compared with.
"""

from __future__ import annotations

from decimal import Decimal

from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from bench.baseline.models import BenchCustomerOrder, BenchRow
from shop.eventstore import get_app


class RowSerializer(serializers.ModelSerializer):
    class Meta:
        model = BenchRow
        fields = ["id", "name", "value", "created_at"]


class RowsApi(APIView):
    def get(self, request):
        rows = BenchRow.objects.order_by("id")[:5]
        return Response(RowSerializer(rows, many=True).data)

    def post(self, request):
        serializer = RowSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        serializer.save()
        return Response(serializer.data, status=status.HTTP_201_CREATED)


def _money(value: Decimal) -> str:
    return f"{value:.2f}"


def write_side_history(customer_id: int) -> list[dict]:
    """The customer's orders, newest first, in the query API's shape, from aggregates."""
    repository = get_app().repository
    order_ids = BenchCustomerOrder.objects.filter(customer_id=customer_id).values_list(
        "order_id", flat=True
    )
    orders = [repository.get(order_id) for order_id in order_ids]
    orders.sort(key=lambda order: (order.created_on, str(order.id)), reverse=True)
    products: dict = {}  # a product in several orders is loaded once per request
    results = []
    for order in orders:
        lines = []
        for line in order.lines:
            product = products.get(line["product_id"])
            if product is None:
                product = products[line["product_id"]] = repository.get(line["product_id"])
            lines.append(
                {
                    "product_id": str(line["product_id"]),
                    "sku": line["sku"],
                    "product_name": product.name,
                    "quantity": line["quantity"],
                    "unit_price": _money(line["unit_price"]),
                    "line_total": _money(line["unit_price"] * line["quantity"]),
                }
            )
        shipment = None
        if order.shipment_id is not None:
            s = repository.get(order.shipment_id)
            shipment = {
                "shipment_id": str(s.id),
                "carrier": s.carrier,
                "status": s.status,
                "updated_at": s.modified_on.isoformat(),
            }
        results.append(
            {
                "order_id": str(order.id),
                "customer": order.customer,
                "status": order.status,
                "placed_at": order.created_on.isoformat(),
                "total": _money(order.total),
                "shipping_address": order.shipping_address,
                "version": order.version,
                "lines": lines,
                "shipment": shipment,
            }
        )
    return results


class WriteSideHistoryApi(APIView):
    def get(self, request):
        results = write_side_history(request.user.id)
        return Response({"next": None, "previous": None, "results": results})
