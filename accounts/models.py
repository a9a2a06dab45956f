from __future__ import annotations

from django.contrib.auth.models import AbstractUser
from django.db import models


class User(AbstractUser):
    email = models.EmailField("email address", blank=True)
    chat_rate_limit = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Chat requests per minute for this user; empty uses the site default.",
    )
