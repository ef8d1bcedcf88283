"""Products in the back office: the product catalog read model, listed and searched,
and the product commands (register, rename, reprice, restock) as forms that call the
same services as the API."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.urls import path, reverse

from backoffice.commands import ReadModelAdmin, api_form, command_form_view
from backoffice.money import money
from catalog.apis import ProductRegisterApi, ProductRenameApi, ProductRepriceApi, ProductRestockApi
from catalog.services import product_register, product_rename, product_reprice, product_restock
from projections.models import ProductCatalog

# The forms validate through the API's input serializers: one definition of each rule.
ProductRegisterForm = api_form(ProductRegisterApi.InputSerializer, labels={"sku": "SKU"})
ProductRenameForm = api_form(ProductRenameApi.InputSerializer)
ProductRepriceForm = api_form(ProductRepriceApi.InputSerializer)
ProductRestockForm = api_form(ProductRestockApi.InputSerializer)


@admin.register(ProductCatalog)
class ProductCatalogAdmin(ReadModelAdmin):
    list_display = ("sku", "name", "category", "price_label", "stock", "reserved",
                    "stock_available")
    list_display_links = ("sku", "name")
    search_fields = ("sku", "name", "category")
    ordering = ("sku",)
    list_per_page = 50
    readonly_fields = ("price_label",)
    fieldsets = (
        (None, {"fields": ("sku", "name", "category", "price_label", "stock", "reserved",
                           "stock_available")}),
        ("Technical details", {"classes": ("collapse",), "fields": ("product_id", "version")}),
    )
    change_list_template = "admin/catalog/product_change_list.html"
    change_form_template = "admin/catalog/product_change_form.html"

    @admin.display(description="Price", ordering="price")
    def price_label(self, product: ProductCatalog) -> str:
        return money(product.price)

    def changelist_view(self, request, extra_context=None):
        return super().changelist_view(request, {"title": "Products",
                                                 **(extra_context or {})})

    def get_urls(self):
        commands = [
            path("register/", self.staff_view(self.register_view),
                 name=self.url_name("register")),
            path("<uuid:product_id>/rename/", self.staff_view(self.rename_view),
                 name=self.url_name("rename")),
            path("<uuid:product_id>/reprice/", self.staff_view(self.reprice_view),
                 name=self.url_name("reprice")),
            path("<uuid:product_id>/restock/", self.staff_view(self.restock_view),
                 name=self.url_name("restock")),
        ]
        return commands + super().get_urls()

    def _product_url(self, saved) -> str:
        return reverse(f"admin:{self.url_name('change')}", args=[saved.aggregate_id])

    def _changelist_url(self, _saved=None) -> str:
        return reverse(f"admin:{self.url_name('changelist')}")

    def register_view(self, request: HttpRequest) -> HttpResponse:
        return command_form_view(
            self, request,
            form_class=ProductRegisterForm,
            title="Register product",
            run=product_register,
            done=lambda saved: f"Registered {request.POST.get('sku', 'the product')}",
            success_url=self._changelist_url,
            submit_label="Register",
        )

    def rename_view(self, request: HttpRequest, product_id) -> HttpResponse:
        product = self._product(product_id)
        return command_form_view(
            self, request,
            form_class=ProductRenameForm,
            title="Rename product",
            run=lambda **data: product_rename(product_id=product_id, **data),
            done=lambda saved: f"Renamed {sku(product)} to “{request.POST.get('name', '')}”",
            success_url=self._product_url,
            submit_label="Rename",
            original=product,
            initial={"name": product.name} if product else None,
            edits=(product_id, product.version if product else None),
            subject=f"Product {sku(product)}",
        )

    def reprice_view(self, request: HttpRequest, product_id) -> HttpResponse:
        product = self._product(product_id)
        return command_form_view(
            self, request,
            form_class=ProductRepriceForm,
            title="Reprice product",
            run=lambda **data: product_reprice(product_id=product_id, **data),
            done=lambda saved: f"Repriced {sku(product)}"
                               + (f" from {money(product.price)}" if product else "")
                               + f" to {money(request.POST.get('price'))}",
            success_url=self._product_url,
            submit_label="Reprice",
            original=product,
            initial={"price": product.price} if product else None,
            edits=(product_id, product.version if product else None),
            subject=f"Product {sku(product)}",
            intro="Orders already placed keep the price they were placed at.",
        )

    def restock_view(self, request: HttpRequest, product_id) -> HttpResponse:
        product = self._product(product_id)
        return command_form_view(
            self, request,
            form_class=ProductRestockForm,
            title="Restock product",
            run=lambda **data: product_restock(product_id=product_id, **data),
            done=lambda saved: f"Restocked {sku(product)} with "
                               f"{request.POST.get('quantity', '')}",
            success_url=self._product_url,
            submit_label="Restock",
            original=product,
            edits=(product_id, product.version if product else None),
            subject=f"Product {sku(product)}",
        )

    @staticmethod
    def _product(product_id) -> ProductCatalog | None:
        # Only for the page's title and initial values: the service loads the aggregate
        # itself (and reports an unknown id), whatever the read model has caught up to.
        return ProductCatalog.objects.filter(product_id=product_id).first()


def sku(product: ProductCatalog | None) -> str:
    """A product as staff name it: its SKU ("the product" while not projected yet)."""
    return product.sku if product is not None else "the product"
