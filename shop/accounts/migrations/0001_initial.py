"""Usernames claimed by their normalised form; API tokens move to django-rest-knox.

Existing users get their key (when two existing names already collide, the older
account keeps it). DRF's ``authtoken`` table is dropped: its tokens were stored in
plain text and never expired, so clients log in again once (``/api/auth/token/``).
"""

import unicodedata

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def username_key(username: str) -> str:  # frozen copy of services.username_key
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", username).casefold())


def claim_existing_usernames(apps, schema_editor):
    User = apps.get_model(*settings.AUTH_USER_MODEL.split("."))
    UsernameKey = apps.get_model("accounts", "UsernameKey")
    claimed: set[str] = set()
    keys = []
    db = schema_editor.connection.alias  # the database being migrated
    for user_id, username in User.objects.using(db).order_by("pk").values_list("pk", "username"):
        key = username_key(username)
        if key not in claimed:
            claimed.add(key)
            keys.append(UsernameKey(user_id=user_id, key=key))
    UsernameKey.objects.using(db).bulk_create(keys, batch_size=1000)


def drop_plain_text_tokens(apps, schema_editor):
    connection = schema_editor.connection
    if "authtoken_token" in connection.introspection.table_names():
        schema_editor.execute("DROP TABLE authtoken_token")
    schema_editor.execute("DELETE FROM django_migrations WHERE app = 'authtoken'")


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
        ("knox", "0009_extend_authtoken_field"),
    ]

    operations = [
        migrations.CreateModel(
            name="UsernameKey",
            fields=[
                ("user", models.OneToOneField(
                    on_delete=django.db.models.deletion.CASCADE, primary_key=True,
                    related_name="username_key", serialize=False,
                    to=settings.AUTH_USER_MODEL)),
                ("key", models.TextField(unique=True)),
            ],
        ),
        migrations.RunPython(claim_existing_usernames, migrations.RunPython.noop),
        migrations.RunPython(drop_plain_text_tokens, migrations.RunPython.noop),
    ]
