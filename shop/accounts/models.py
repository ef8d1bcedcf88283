from django.conf import settings
from django.db import models


class UsernameKey(models.Model):
    """A user's name as compared for uniqueness: NFKC, case-folded, NFKC again
    (``username_key``). The unique index makes the database the judge, so two
    concurrent registrations of ``John`` and ``ＪＯＨＮ`` cannot both succeed."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                                primary_key=True, related_name="username_key")
    key = models.TextField(unique=True)

    def __str__(self) -> str:
        return self.key
