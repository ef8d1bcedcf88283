"""The front door: ``/`` says what this server is and where to go from here."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_safe


@require_safe
def front_door(request: HttpRequest) -> HttpResponse:
    """The shop's name and links to the API docs, the back office, health and a first
    request (the README's curl example, with this server's address)."""
    return render(request, "shop/front.html", {
        "shop_name": settings.SHOP_NAME,
        "base": request.build_absolute_uri("/").rstrip("/"),
        "demo": settings.DEBUG,  # seed_demo's customer exists only in development
    })
