from django.apps import AppConfig


class CatalogConfig(AppConfig):
    name = "catalog"
    verbose_name = "Catalog"

    def ready(self) -> None:
        from catalog.domain import Product
        from shop.eventstore import snapshot_every

        # A product's stream grows with every order reserving its stock.
        snapshot_every(Product, 50)
