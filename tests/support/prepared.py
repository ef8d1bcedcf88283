"""The statements psycopg has prepared on this thread's read connection."""

from __future__ import annotations

from shop.databases import read_connection


def prepared_statements(containing: str) -> list[str]:
    """The text of each statement prepared on this thread's read connection that
    contains ``containing``."""
    with read_connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements "
                       "WHERE strpos(statement, %s) > 0", [containing])
        return [statement for (statement,) in cursor.fetchall()]
