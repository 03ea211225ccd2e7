from django.contrib.auth.models import AbstractUser, UserManager
from django.db import models
from django.db.models.functions import Lower


class User(AbstractUser):
    """A person, or a team's service account (a user that only ever acts through tokens)."""

    email = models.EmailField("email address", blank=True)
    is_service_account = models.BooleanField(
        default=False, help_text="A team's robot user: it has no password and acts only through tokens."
    )

    objects = UserManager()

    class Meta:
        constraints = [
            models.UniqueConstraint(Lower("email"), condition=~models.Q(email=""), name="user_email_unique_ci"),
        ]

    def __str__(self) -> str:
        return self.email or self.username
