# Written by hand on 2026-12-07.

from django.db import migrations

POSTGRESQL = [
    # btree_gin: a GIN index can then hold a plain column's values beside the lexemes.
    "CREATE EXTENSION IF NOT EXISTS btree_gin",
    # One text index for every search: over the lexemes alone it serves a search as
    # the index it replaces did (a GIN index answers any subset of its columns alike);
    # with a category, it finds the category's matches itself, instead of ANDing a
    # bitmap of the lexeme's every product with one of the category's every product.
    """CREATE INDEX catalog_category_search ON projections_productcatalog
       USING gin (category, search_vector) WITH (fastupdate = off)""",
    "DROP INDEX IF EXISTS catalog_search_vector",
]
POSTGRESQL_REVERSE = [
    """CREATE INDEX catalog_search_vector ON projections_productcatalog
       USING gin (search_vector) WITH (fastupdate = off)""",
    "DROP INDEX IF EXISTS catalog_category_search",
]


def run(statements: list[str]):
    def operation(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            for sql in statements:
                schema_editor.execute(sql)
    return operation


class Migration(migrations.Migration):

    dependencies = [
        ('projections', '0011_catalog_terms'),
    ]

    operations = [
        migrations.RunPython(run(POSTGRESQL), run(POSTGRESQL_REVERSE)),
    ]
