from django.apps import AppConfig


class ShopConfig(AppConfig):
    name = "shop"
    verbose_name = "Shop"

    def ready(self) -> None:
        # Registers the system checks and the OpenAPI bearer token scheme.
        from shop import checks, schema  # noqa: F401
