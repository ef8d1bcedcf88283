from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "shop.accounts"
    label = "accounts"
    verbose_name = "Accounts"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.contrib.auth.models import User
        from django.db.models.signals import post_save

        from shop.accounts import services

        # Whatever saves a user (registration, the admin, createsuperuser) keeps its
        # normalised name claimed.
        post_save.connect(services.user_after_save, sender=User,
                          dispatch_uid="accounts.user_after_save")
        # ... and an account deactivated, or without a password login, loses its tokens.
        post_save.connect(services.user_tokens_end_with_account, sender=User,
                          dispatch_uid="accounts.user_tokens_end_with_account")
