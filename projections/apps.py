from django.apps import AppConfig


class ProjectionsConfig(AppConfig):
    name = "projections"
    # What staff see in the back office's breadcrumbs (Orders, Products, Sales and
    # Activity are read models): "Home › Shop › Orders".
    verbose_name = "Shop"

    def ready(self) -> None:
        from projections.apis import ProjectionsHealthSerializer
        from projections.metrics import ProjectionCollector
        from projections.selectors import orders_export
        from projections.status import health_of_projections
        from projections.tasks import on_events_saved
        from shop import health, metrics
        from shop.accounts.privacy import contribute_export
        from shop.eventstore import events_saved

        events_saved.connect(on_events_saved, dispatch_uid="projections.trigger")
        contribute_export("orders", orders_export)
        health.contribute("projections", health_of_projections, ProjectionsHealthSerializer)
        metrics.collect_at_scrape("projections", ProjectionCollector)
