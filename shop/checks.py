"""System checks of the kernel: refuse a configuration that would break the log's order."""

from __future__ import annotations

from django.core import checks


@checks.register("eventstore")
def event_store_inserts_under_the_table_lock(app_configs, **kwargs) -> list[checks.Error]:
    """ARCHITECTURE.md rule 6: notification ids must commit in order (no DB functions)."""
    from shop.eventstore import UNSAFE_DB_FUNCTIONS, db_functions_enabled

    if db_functions_enabled():
        return [checks.Error(UNSAFE_DB_FUNCTIONS, id="shop.E001")]
    return []
