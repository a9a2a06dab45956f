from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from tokens.fields import SealedField


class Kind(models.TextChoices):
    API_KEY = "api_key", _("API key")
    CLIENT_CREDENTIALS = "oauth2_client_credentials", _("OAuth2 client credentials")
    REFRESH_TOKEN = "oauth2_refresh_token", _("OAuth2 refresh token")
    AZURE_OPENAI = "azure_openai", "Azure OpenAI"


class Status(models.TextChoices):
    ACTIVE = "active", _("Active")
    UNVERIFIED = "unverified", _("Unverified")
    INVALID = "invalid", _("Invalid")
    NEEDS_ATTENTION = "needs_attention", _("Needs attention")
    EXPIRED = "expired", _("Expired")


class ClientAuth(models.TextChoices):
    BASIC = "client_secret_basic", _("HTTP Basic (client_secret_basic)")
    POST = "client_secret_post", _("Form body (client_secret_post)")


# Kinds whose secret is a static key sent as is (no token endpoint).
KEY_KINDS = (Kind.API_KEY, Kind.AZURE_OPENAI)
SEALED_FIELDS = ("api_key", "client_secret", "refresh_token", "access_token")
# What choosing a credential for a call and making its bearer read (tokens.services.credential_bearer and the status
# checks): the chat and API paths load only these of its 29 columns, since compiling and loading each column is
# what a query costs here. Anything else is read on first use; a refresh re-reads the whole row.
BEARER_FIELDS = (
    "id",
    "user_id",
    "name",
    "kind",
    "status",
    "status_detail",
    "base_url",
    "api_version",
    "default_model",
    "context_window",
    "sends_stream_options",
    "api_key",
    "access_token",
    "access_token_expires_at",
)


class CredentialQuerySet(models.QuerySet):
    def usable(self) -> CredentialQuerySet:
        return self.exclude(status__in=[Status.INVALID, Status.EXPIRED])

    def due_for_check(self, now: datetime) -> CredentialQuerySet:
        return self.filter(kind__in=KEY_KINDS, next_check_at__lte=now).exclude(status=Status.EXPIRED)

    def due_for_refresh(self, now: datetime) -> CredentialQuerySet:
        """OAuth2 credentials whose access token expires within the margin, not backing off, not claimed."""
        margin = timedelta(seconds=settings.REFRESH_MARGIN_SECONDS)
        return (
            self.exclude(kind__in=KEY_KINDS)
            .filter(status__in=[Status.ACTIVE, Status.UNVERIFIED])
            .filter(Q(access_token_expires_at__isnull=True) | Q(access_token_expires_at__lte=now + margin))
            .filter(Q(retry_at__isnull=True) | Q(retry_at__lte=now))
            .unclaimed(now)
        )

    def unclaimed(self, now: datetime) -> CredentialQuerySet:
        return self.filter(Q(refresh_claimed_until__isnull=True) | Q(refresh_claimed_until__lt=now))

    def sealed_with_old_key(self, key_id: str) -> CredentialQuerySet:
        """Rows holding any secret not sealed under master key `key_id`."""
        stale = Q()
        for name in SEALED_FIELDS:
            stale |= ~Q(**{name: ""}) & ~Q(**{f"{name}__startswith": f"{key_id}$"})
        return self.filter(stale)

    def past_expiry(self, now: datetime) -> CredentialQuerySet:
        return self.filter(expires_at__lte=now).exclude(status=Status.EXPIRED)


class Credential(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="credentials")
    name = models.CharField(max_length=80)
    kind = models.CharField(max_length=32, choices=Kind.choices, default=Kind.API_KEY)
    is_default = models.BooleanField(default=False)
    base_url = models.URLField(max_length=300, blank=True, help_text=_("Empty means the site's default API."))
    api_version = models.CharField(max_length=40, blank=True, help_text=_("Azure OpenAI classic api-version."))
    default_model = models.CharField(
        max_length=200, blank=True, help_text=_("Model (Azure: deployment) to start with.")
    )
    context_window = models.PositiveIntegerField(
        null=True, blank=True, help_text=_("Tokens the model takes; overrides the catalogue. Empty: catalogue.")
    )
    sends_stream_options = models.BooleanField(
        default=True, help_text=_("False once the provider refused stream_options; usage is then counted locally.")
    )
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.UNVERIFIED)
    status_detail = models.CharField(max_length=300, blank=True)
    hint = models.CharField(max_length=24, blank=True, help_text=_("Masked form of the secret, e.g. sk-…abcd."))

    api_key = SealedField()
    token_url = models.URLField(max_length=300, blank=True)
    client_id = models.CharField(max_length=200, blank=True)
    client_secret = SealedField()
    client_auth = models.CharField(max_length=24, choices=ClientAuth.choices, default=ClientAuth.BASIC)
    scope = models.CharField(max_length=300, blank=True)
    refresh_token = SealedField()
    access_token = SealedField()
    access_token_expires_at = models.DateTimeField(null=True, blank=True)

    expires_at = models.DateTimeField(null=True, blank=True, help_text=_("Owner-set expiry of the credential."))
    created_at = models.DateTimeField(auto_now_add=True)
    last_checked_at = models.DateTimeField(null=True, blank=True)
    next_check_at = models.DateTimeField(null=True, blank=True)
    last_refreshed_at = models.DateTimeField(null=True, blank=True)
    retry_at = models.DateTimeField(null=True, blank=True)
    refresh_claimed_until = models.DateTimeField(
        null=True, blank=True, help_text=_("A worker is refreshing this token until then; others keep off.")
    )
    failure_count = models.PositiveIntegerField(default=0)
    notified_at = models.DateTimeField(null=True, blank=True)

    objects = CredentialQuerySet.as_manager()

    class Meta:
        verbose_name = _("credential")
        verbose_name_plural = _("credentials")
        ordering = ["-is_default", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["user"], condition=Q(is_default=True), name="one_default_credential_per_user"
            ),
        ]
        indexes = [
            models.Index(fields=["kind", "next_check_at"]),
            models.Index(fields=["access_token_expires_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_kind_display()})"

    @property
    def is_oauth(self) -> bool:
        return self.kind not in KEY_KINDS

    @property
    def is_usable(self) -> bool:
        return self.status not in (Status.INVALID, Status.EXPIRED)

    def effective_base_url(self) -> str:
        return (self.base_url or settings.OPENAI_BASE_URL).rstrip("/")

    def access_token_is_fresh(self, now: datetime | None = None) -> bool:
        now = now or timezone.now()
        return bool(self.access_token) and (self.access_token_expires_at is None or self.access_token_expires_at > now)

    def set_status(self, status: str, detail: str = "") -> bool:
        """Set status and detail; return whether the status changed."""
        changed = status != self.status
        self.status, self.status_detail = status, detail[:300]
        return changed

    def wipe_secrets(self) -> None:
        for name in SEALED_FIELDS:
            setattr(self, name, "")
        self.access_token_expires_at = None


class EventKind(models.TextChoices):
    CREATED = "created", _("Created")
    UPDATED = "updated", _("Updated")
    CHECKED = "checked", _("Checked")
    STATUS_CHANGED = "status_changed", _("Status changed")
    REFRESHED = "refreshed", _("Token refreshed")
    REFRESH_FAILED = "refresh_failed", _("Refresh failed")
    ROTATED = "rotated", _("Refresh token rotated")
    RESEALED = "resealed", _("Re-sealed under new master key")
    EXPIRED = "expired", _("Expired")
    NOTIFIED = "notified", _("Owner notified")
    DELETED = "deleted", _("Deleted")


class CredentialEvent(models.Model):
    """Audit trail. Survives the credential's deletion; never holds a secret."""

    credential_id = models.UUIDField(db_index=True)
    credential_name = models.CharField(max_length=80)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="credential_events")
    actor = models.CharField(max_length=150, help_text=_("Username, or 'system' for beat and workers."))
    kind = models.CharField(max_length=20, choices=EventKind.choices)
    status = models.CharField(max_length=20, choices=Status.choices, blank=True)
    detail = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        verbose_name = _("credential event")
        verbose_name_plural = _("credential events")
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.credential_name}: {self.get_kind_display()}"


class ApiKeyQuerySet(models.QuerySet):
    def live(self, now: datetime) -> ApiKeyQuerySet:
        """Keys that still authenticate: not revoked, not past their expiry."""
        return self.filter(revoked_at__isnull=True).filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))


class ApiKey(models.Model):
    """A personal API key for programs calling /v1/. Only its public prefix and a SHA-256 of it are stored."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(_("name"), max_length=80)
    prefix = models.CharField(max_length=16, unique=True, help_text=_("Public id: the part of the key after byok_."))
    secret_hash = models.CharField(max_length=64, help_text=_("SHA-256 of the whole key, hex."))
    credential = models.ForeignKey(
        Credential,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="api_keys",
        help_text=_("Empty means the owner's default credential."),
    )
    is_credential_pinned = models.BooleanField(
        default=False,
        help_text=_("Created for one credential: if that is deleted, the key stops rather than falls back."),
    )
    allowed_models = models.JSONField(default=list, blank=True, help_text=_("Model ids; empty allows every model."))
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.CharField(max_length=150, blank=True)

    objects = ApiKeyQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = _("personal API key")
        verbose_name_plural = _("personal API keys")

    def __str__(self) -> str:
        return f"{self.name} (byok_{self.prefix}…)"

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    def allows(self, model: str) -> bool:
        return not self.allowed_models or model in self.allowed_models

    @property
    def state(self) -> str:
        """One of "active", "expired", "revoked"."""
        if self.revoked_at is not None:
            return "revoked"
        return "active" if self.expires_at is None or self.expires_at > timezone.now() else "expired"

    def get_state_display(self) -> str:
        return str({"active": _("Active"), "expired": _("Expired"), "revoked": _("Revoked")}[self.state])


class AccessToken(models.Model):
    """A short-lived bearer issued for a personal API key; dies with it. Stored as prefix plus SHA-256."""

    api_key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="access_tokens")
    prefix = models.CharField(max_length=16, unique=True)
    secret_hash = models.CharField(max_length=64)
    allowed_models = models.JSONField(default=list, blank=True, help_text=_("Model ids; empty allows every model."))
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"access token byokat_{self.prefix}…"

    def allows(self, model: str) -> bool:
        return not self.allowed_models or model in self.allowed_models
