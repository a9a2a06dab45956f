from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.db import models
from django.utils.translation import gettext_lazy as _


class User(AbstractUser):
    email = models.EmailField(_("email address"), blank=True)
    chat_rate_limit = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text=_("Chat requests per minute for this user; empty uses the site default."),
    )
    timezone = models.CharField(
        _("time zone"),
        max_length=64,
        blank=True,
        help_text=_("IANA name, e.g. Asia/Shanghai; empty until first visit."),
    )
    language = models.CharField(
        _("language"), max_length=16, blank=True, choices=settings.LANGUAGES, help_text=_("Empty: the browser's.")
    )
