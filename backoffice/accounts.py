"""Accounts in the back office: Django's user admin, plus "Forget selected customers"
(the right to erasure, ``shop.accounts.privacy``), which asks for confirmation first
and runs as the staff member who confirmed it, via the back office."""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.auth.admin import UserAdmin
from django.contrib.auth.models import User
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse

from shop.accounts.privacy import customer_forget, is_forgotten
from shop.metadata import Actor, Context
from shop.request_id import request_id_of
from shop.unit_of_work import UnitOfWork

admin.site.unregister(User)


@admin.register(User)
class ShopUserAdmin(UserAdmin):
    actions = ["forget_customers"]

    @admin.action(description="Forget selected customers (delete their personal data)",
                  permissions=["change"])
    def forget_customers(self, request: HttpRequest, users: QuerySet[User]):
        staff = [user for user in users if user.is_staff]
        customers = [user for user in users if not user.is_staff and not is_forgotten(user)]
        if request.POST.get("confirmed") != "yes":
            return TemplateResponse(request, "admin/accounts/forget_confirmation.html", {
                **self.admin_site.each_context(request),
                "title": "Forget these customers?",
                "opts": self.model._meta,
                "customers": customers,
                "staff": staff,
                "forgotten_before": [u for u in users if is_forgotten(u)],
                "selected": users,
                "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            })
        for user in staff:
            messages.error(request, f"{user.get_username()} is staff and was not forgotten: "
                                    "remove the staff status first.")
        context = Context(Actor.of(request.user), "admin", request_id_of(request))
        for user in customers:
            name = user.get_username()
            customer_forget(uow=UnitOfWork(context=context), user=user)
            messages.success(request, f"Forgot {name}: the account is now "
                                      f"{user.get_username()} and their name and addresses "
                                      "can no longer be read anywhere.")
        return None
