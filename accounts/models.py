from __future__ import annotations

from decimal import Decimal
from typing import Any, ClassVar

from allauth.mfa.models import Authenticator as MfaAuthenticator
from django.conf import settings
from django.contrib.auth.models import AbstractUser, UserManager
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q
from django.http import HttpRequest
from django.utils.crypto import salted_hmac
from django.utils.translation import gettext_lazy as _

from accounts.usernames import normalize, username_key
from project.prepared import PreparedQuery


class Theme(models.TextChoices):
    SYSTEM = "system", _("System")
    LIGHT = "light", _("Light")
    DARK = "dark", _("Dark")


class Approval(models.TextChoices):
    APPROVED = "approved", _("Approved")
    PENDING = "pending", _("Waiting for approval")
    REJECTED = "rejected", _("Rejected")


class AccountManager(UserManager["User"]):
    def get(self, *args: Any, **kwargs: Any) -> User:
        # ModelBackend.get_user runs `get(pk=<int>)` for every signed-in request; compiling that queryset was most of
        # its cost (10 % of a chat send's CPU in the bench kit), so that one lookup runs prepared.
        if not args and kwargs.keys() == {"pk"} and type(kwargs["pk"]) is int and self._db in (None, "default"):
            user = _USER_BY_PK.first(kwargs["pk"])
            if user is None:
                raise self.model.DoesNotExist(f"{self.model._meta.object_name} matching query does not exist.")
            return user
        return super().get(*args, **kwargs)

    def filter_by_login(self, login: str) -> models.QuerySet:
        """Accounts a typed log-in name means: the user name, or the email address (any case)."""
        if not login:
            return self.none()
        return self.filter(Q(username_key=username_key(login)) | Q(email__iexact=login)).order_by("pk")


# The person's own limits (chat.budgets.limits_for reads them before every call).
LIMIT_FIELDS = ("chat_rate_limit", "monthly_budget_usd", "monthly_token_budget")


class User(AbstractUser):
    objects: ClassVar[AccountManager] = AccountManager()
    # username_key (accounts/usernames.py): one account per look-alike family of names (case, width, homoglyphs).
    username_key = models.CharField(max_length=150, unique=True, null=True, editable=False)

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
    theme = models.CharField(
        max_length=6, choices=Theme.choices, default=Theme.SYSTEM, help_text="Colour theme; system follows the device."
    )

    @property
    def next_theme(self) -> str:
        """The theme the toggle switches to: system, then light, then dark, then system again."""
        order = list(Theme.values)
        return order[(order.index(self.theme) + 1) % len(order)]

    # SIGNUP_MODE=approval: a pending account may log in but sees only the waiting page (ApprovalMiddleware).
    approval = models.CharField(_("approval"), max_length=10, choices=Approval.choices, default=Approval.APPROVED)
    monthly_budget_usd = models.DecimalField(
        _("monthly budget (USD)"),
        max_digits=12,
        decimal_places=2,
        null=True,
        blank=True,
        help_text=_("Estimated cost allowed per calendar month; empty uses the team default."),
        validators=[MinValueValidator(Decimal(0))],
    )
    monthly_token_budget = models.PositiveBigIntegerField(
        _("monthly token budget"),
        null=True,
        blank=True,
        help_text=_("Tokens (input + output) allowed per calendar month; empty uses the team default."),
    )

    def clean(self) -> None:
        super().clean()
        if not self.username:
            return
        self.username = normalize(self.username)
        clash = User.objects.filter(username_key=username_key(self.username)).exclude(pk=self.pk)
        if clash.exists():
            raise ValidationError({"username": _("This user name is taken, or too close to one that is.")})

    def save(self, *args, **kwargs) -> None:
        self.username_key = username_key(self.username)
        update_fields = kwargs.get("update_fields")
        if update_fields is not None and "username" in update_fields:
            kwargs["update_fields"] = {*update_fields, "username_key"}
        super().save(*args, **kwargs)

    # Raised when a way of signing in is added or removed (two-factor): every session made before then ends.
    session_epoch = models.PositiveIntegerField(default=0, editable=False)

    @property
    def is_pending(self) -> bool:
        return self.approval == Approval.PENDING

    def _get_session_auth_hash(self, secret: str | None = None) -> str:
        """Django's HMAC of the password (which it checks on every request, so a password change ends other
        sessions), over the session epoch as well once it was raised. At 0 it is Django's own hash, so sessions made
        before the epoch existed stay valid."""
        if not self.session_epoch:
            return super()._get_session_auth_hash(secret=secret)  # type: ignore[misc]  # private in Django, absent from the stubs
        key_salt = "accounts.User.get_session_auth_hash"
        value = f"{self.password}:{self.session_epoch}"
        return salted_hmac(key_salt, value, secret=secret, algorithm="sha256").hexdigest()


_USER_BY_PK = PreparedQuery(lambda pk: User.objects.filter(pk=pk).order_by(), -7301)


class AuthenticatedHttpRequest(HttpRequest):
    """For type checkers: a request that LoginRequiredMiddleware let through, so its user is signed in."""

    user: User


class Authenticator(MfaAuthenticator):
    """allauth's two-factor authenticators under names the admin can translate (allauth's model has none, so the
    admin showed "Authenticators" in every language)."""

    class Meta:
        proxy = True
        verbose_name = _("authenticator")
        verbose_name_plural = _("authenticators")
