"""Everything that writes credentials, talks to providers about them, or opens their secrets."""

from __future__ import annotations

import logging
import random
import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.models import User
from accounts.templatetags.timetags import zoned_text
from project.prepared import PreparedQuery
from tokens import oauth, provider
from tokens.keyring import SealError
from tokens.lifecycle import (
    CredentialError,
    access_token_for,
    credential_change_status,
    credential_refresh,
    event_record,
    grant_fetch,
    release_db_connection,
)
from tokens.models import BEARER_FIELDS, KEY_KINDS, ClientAuth, Credential, EventKind, Kind, Status
from tokens.pasted import secret_problem
from tokens.provider import Bearer, quoting
from tokens.ssrf import UnsafeURL, check_url

logger = logging.getLogger(__name__)


def mask(secret: str) -> str:
    """Show a secret as its prefix family and last four characters: sk-…abcd."""
    secret = secret.strip()
    prefix = "sk-" if secret.startswith("sk-") else ""
    return f"{prefix}…{secret[-4:]}" if len(secret) >= 8 else "…"


def _next_check_at(now: datetime) -> datetime:
    # Jitter spreads re-checks over the whole interval so keys never hit upstream at once.
    interval = settings.KEY_CHECK_INTERVAL_SECONDS
    return now + timedelta(seconds=interval * random.uniform(0.75, 1.25))


def _guarded_url(url: str, field: str, label: str) -> str:
    if not url:
        return ""
    try:
        return check_url(url)
    except UnsafeURL as exc:
        raise CredentialError(
            _("%(field)s refused: %(reason)s") % {"field": label, "reason": exc}, field=field
        ) from exc


def _configure_endpoint(credential: Credential, base_url: str, api_version: str, default_model: str) -> None:
    """Normalise the pasted base URL (see provider.normalise_base_url) onto the credential; an Azure URL
    pasted as a plain API key makes it an Azure OpenAI credential, whose keys go in an api-key header."""
    base_url = base_url.strip()
    if base_url and "://" not in base_url:
        base_url = f"https://{base_url}"
    try:
        pasted = (
            provider.normalise_base_url(base_url, kind=credential.kind, api_version=api_version) if base_url else None
        )
    except ValueError as exc:
        raise CredentialError(str(exc), field="api_version") from exc
    if credential.kind == Kind.AZURE_OPENAI and pasted is None:
        raise CredentialError(
            _("Enter your Azure OpenAI endpoint, e.g. https://YOUR-RESOURCE.openai.azure.com."), field="base_url"
        )
    if pasted and pasted.is_azure and credential.kind == Kind.API_KEY:
        credential.kind = Kind.AZURE_OPENAI
    credential.base_url = _guarded_url(pasted.base_url if pasted else "", "base_url", _("Base URL"))
    credential.api_version = pasted.api_version if pasted else ""
    credential.default_model = (default_model or (pasted.deployment if pasted else "")).strip()[:200]


def credential_create(
    *,
    user: User,
    name: str,
    kind: str = Kind.API_KEY,
    api_key: str = "",
    base_url: str = "",
    token_url: str = "",
    client_id: str = "",
    client_secret: str = "",
    client_auth: str = ClientAuth.BASIC,
    scope: str = "",
    refresh_token: str = "",
    expires_at: datetime | None = None,
    api_version: str = "",
    default_model: str = "",
    context_window: int | None = None,
) -> Credential:
    """Check a new credential against its provider and store it sealed; refuse what the provider rejects.

    OAuth2 kinds first get an access token from the token endpoint, then list models with it.
    """
    if kind not in Kind.values:
        raise CredentialError(_("Choose what kind of credential this is."), field="kind")
    if expires_at is not None and expires_at <= timezone.now():
        raise CredentialError(_("Choose an expiry in the future."))
    credential = Credential(
        user=user,
        name=name.strip() or str(Kind(kind).label),
        kind=kind,
        expires_at=expires_at,
        context_window=context_window,
    )
    _configure_endpoint(credential, base_url, api_version, default_model)
    bearer = _secrets_configure(
        credential, api_key, token_url, client_id, client_auth, scope, client_secret, refresh_token
    )
    _verify_new(credential, bearer)
    with transaction.atomic():
        credential.is_default = not user.credentials.filter(is_default=True).exists()
        credential.save()
        event_record(credential, EventKind.CREATED, actor=user.username, detail=credential.status_detail)
    return credential


def _secrets_configure(
    credential: Credential,
    api_key: str,
    token_url: str,
    client_id: str,
    client_auth: str,
    scope: str,
    client_secret: str,
    refresh_token: str,
) -> str:
    """Put the kind's secrets on the credential; return the token to check it with (OAuth2: run the grant)."""
    if credential.kind in KEY_KINDS:
        return _api_key_configure(credential, api_key.strip())
    secrets = {"client_secret": client_secret.strip(), "refresh_token": refresh_token.strip()}
    _oauth_configure(credential, token_url.strip(), client_id.strip(), client_auth, scope.strip(), **secrets)
    return _oauth_first_token(credential)


def credential_update(
    *,
    credential: Credential,
    actor: str,
    name: str = "",
    base_url: str = "",
    api_version: str = "",
    default_model: str = "",
    context_window: int | None = None,
    api_key: str = "",
    token_url: str = "",
    client_id: str = "",
    client_secret: str = "",
    client_auth: str = "",
    scope: str = "",
    refresh_token: str = "",
    **_ignored: object,
) -> Credential:
    """Change a saved credential of any kind in place, checked like a new one before anything is stored.

    An empty secret keeps the stored one; OAuth2 kinds run their grant again with the new settings.
    A refusal raises CredentialError and leaves the stored row as it was.
    """
    changed = Credential.objects.get(pk=credential.pk)
    changed.name = (name.strip() or changed.name)[:80]
    changed.context_window = context_window
    _configure_endpoint(changed, base_url, api_version, default_model)
    if changed.kind in KEY_KINDS:
        api_key = api_key.strip() or changed.api_key.reveal()
    else:
        client_secret = client_secret.strip() or changed.client_secret.reveal()
        refresh_token = refresh_token.strip() or changed.refresh_token.reveal()
    client_auth = client_auth or changed.client_auth
    token = _secrets_configure(changed, api_key, token_url, client_id, client_auth, scope, client_secret, refresh_token)
    _verify_new(changed, token)
    changed.sends_stream_options = True  # a new endpoint deserves a fresh look
    changed.failure_count, changed.notified_at, changed.retry_at = 0, None, None
    changed.save()
    detail = _("Settings changed. %(detail)s") % {"detail": changed.status_detail}
    event_record(changed, EventKind.UPDATED, actor=actor, detail=detail)
    return changed


def _api_key_configure(credential: Credential, api_key: str) -> str:
    if not api_key:
        raise CredentialError(_("Paste your API key."), field="api_key")
    problem = secret_problem(api_key)
    if problem:
        raise CredentialError(problem, field="api_key")
    credential.api_key = api_key
    credential.hint = mask(api_key)
    return api_key


def _oauth_configure(
    credential: Credential,
    token_url: str,
    client_id: str,
    client_auth: str,
    scope: str,
    *,
    client_secret: str,
    refresh_token: str,
) -> None:
    if not token_url:
        raise CredentialError(_("Enter the token URL."), field="token_url")
    if not client_id:
        raise CredentialError(_("Enter the client ID."), field="client_id")
    if credential.kind == Kind.CLIENT_CREDENTIALS and not client_secret:
        raise CredentialError(_("Paste the client secret."), field="client_secret")
    if credential.kind == Kind.REFRESH_TOKEN and not refresh_token:
        raise CredentialError(_("Paste the refresh token."), field="refresh_token")
    if client_auth not in ClientAuth.values:
        raise CredentialError(_("Choose how the client authenticates."), field="client_auth")
    credential.token_url = _guarded_url(token_url, "token_url", _("Token URL"))
    credential.client_id, credential.client_auth, credential.scope = client_id, client_auth, scope
    credential.client_secret = client_secret
    credential.refresh_token = refresh_token
    credential.hint = mask(client_secret if credential.kind == Kind.CLIENT_CREDENTIALS else refresh_token)


def _oauth_first_token(credential: Credential) -> str:
    """Run the grant once before saving, keeping the tokens it returns (a rotated refresh token included)."""
    release_db_connection()
    try:
        grant = grant_fetch(credential)
    except oauth.TokenError as exc:
        raise CredentialError(_("%(error)s Nothing was saved.") % {"error": exc}) from exc
    credential.access_token = grant.access_token
    credential.access_token_expires_at = grant.expires_at
    credential.last_refreshed_at = timezone.now()
    if grant.refresh_token:
        credential.refresh_token = grant.refresh_token
    return grant.access_token


# What a failed model list says about the credential itself.
REJECTING_KINDS = ("auth", "payment", "unsafe_url")
# A 403 on the list often means a key restricted to chat (OpenAI project keys without models.read).
UNPROVEN_KINDS = ("forbidden", "not_found", "bad_response", "bad_request", "too_large")


def _verify_new(credential: Credential, token: str) -> None:
    now = timezone.now()
    release_db_connection()
    try:
        _list_probing_v1(credential, token)
    except provider.ProviderError as exc:
        if exc.kind in REJECTING_KINDS:
            reason = exc.message
            if exc.kind == "auth":  # its usual message sends people to the keys page, where this is shown
                reason = quoting(_("The provider rejected this credential (401)."), exc.provider_message)
            raise CredentialError(
                _("%(reason)s It was not saved; check it and paste it again.") % {"reason": reason}
            ) from exc
        if exc.kind == "not_found":
            raise CredentialError(
                _(
                    "Nothing OpenAI-compatible answered at %(url)s (404). Enter the base URL your provider's "
                    "documentation shows, usually ending in /v1 (for example https://api.example.com/v1)."
                )
                % {"url": credential.effective_base_url()},
                field="base_url",
            ) from exc
        credential.set_status(Status.UNVERIFIED, _("Saved without a check: %(reason)s") % {"reason": exc.message})
        retry = 5 if exc.kind not in UNPROVEN_KINDS else 60 * 6
        credential.next_check_at = now + timedelta(minutes=retry)
    else:
        credential.set_status(Status.ACTIVE, "")
        credential.last_checked_at = now
        credential.next_check_at = _next_check_at(now)


def _list_probing_v1(credential: Credential, token: str) -> list[str]:
    """List models; if nothing answers at the typed base URL, try it once with /v1 added (OpenRouter's /api)."""
    try:
        return provider.list_models(bearer_of(credential, token))
    except provider.ProviderError as exc:
        base = credential.base_url
        if exc.kind != "not_found" or not base or base.endswith("/v1") or credential.api_version:
            raise
        credential.base_url = f"{base}/v1"
        try:
            return provider.list_models(bearer_of(credential, token))
        except provider.ProviderError:
            credential.base_url = base
            raise exc from None


def credential_replace_key(*, credential: Credential, api_key: str, actor: str) -> Credential:
    """Swap in a new API key for an existing credential, checked like a new one."""
    api_key = api_key.strip()
    if not api_key:
        raise CredentialError(_("Paste the new API key."))
    credential.api_key = api_key
    credential.hint = mask(api_key)
    _verify_new(credential, api_key)
    credential.failure_count, credential.notified_at = 0, None
    credential.save()
    event_record(
        credential,
        EventKind.UPDATED,
        actor=actor,
        detail=_("Key replaced. %(detail)s") % {"detail": credential.status_detail},
    )
    return credential


def credential_set_expiry(*, credential: Credential, expires_at: datetime | None, actor: str) -> Credential:
    """Set or clear the owner's expiry; when it passes, beat wipes the secrets."""
    if expires_at is not None and expires_at <= timezone.now():
        raise CredentialError(_("Choose an expiry in the future."))
    credential.expires_at = expires_at
    credential.save(update_fields=["expires_at"])
    detail = _("Expiry set to %(moment)s.") % {"moment": zoned_text(expires_at)} if expires_at else _("Expiry removed.")
    event_record(credential, EventKind.UPDATED, actor=actor, detail=detail)
    return credential


def credential_delete(*, credential: Credential, actor: str) -> None:
    with transaction.atomic():
        event_record(credential, EventKind.DELETED, actor=actor)
        was_default = credential.is_default
        credential.delete()
        if was_default:
            successor = credential.user.credentials.usable().order_by("created_at").first()
            if successor:
                successor.is_default = True
                successor.save(update_fields=["is_default"])


def credential_make_default(*, credential: Credential) -> None:
    with transaction.atomic():
        Credential.objects.filter(user_id=credential.user_id, is_default=True).update(is_default=False)
        Credential.objects.filter(pk=credential.pk).update(is_default=True)


def credential_check(*, credential: Credential, actor: str = "system") -> Credential:
    """Re-check a stored credential against its provider and record what changed."""
    now = timezone.now()
    if credential.is_oauth:
        result = credential_refresh(credential_id=credential.pk, force=True, actor=actor)
        credential.refresh_from_db()
        if result.outcome == "failed":
            return credential  # the refused grant is recorded and the credential needs attention
    try:
        bearer = credential_bearer(credential=credential)
        release_db_connection()
        provider.list_models(bearer)
    except (provider.ProviderError, CredentialError) as exc:
        if not isinstance(exc, provider.ProviderError) or exc.kind not in REJECTING_KINDS:
            # Not the credential's fault: keep its status and look again soon.
            credential.next_check_at = now + timedelta(minutes=15)
            credential.save(update_fields=["next_check_at"])
            event_record(
                credential, EventKind.CHECKED, actor=actor, detail=_("Check postponed: %(error)s") % {"error": exc}
            )
            return credential
        # A token fresh from the grant yet refused needs its owner (scope, audience); a refused key is dead.
        status, detail = (Status.NEEDS_ATTENTION if credential.is_oauth else Status.INVALID), str(exc)
    else:
        status, detail = Status.ACTIVE, ""
        if credential.status != Status.ACTIVE:
            credential.notified_at = None
    credential.last_checked_at = now
    credential.next_check_at = _next_check_at(now)
    credential.save(update_fields=["last_checked_at", "next_check_at", "notified_at"])
    event_record(credential, EventKind.CHECKED, actor=actor, detail=detail or _("Provider accepted it."))
    credential_change_status(credential, status, detail, actor=actor)
    return credential


def credential_mark_invalid(*, credential: Credential, detail: str) -> None:
    """Called when the provider rejects a credential during chat."""
    credential_change_status(credential, Status.INVALID, detail)


def credential_for_user(*, user: User, credential_id: str | uuid.UUID | None = None) -> Credential | None:
    """Pick the credential a chat should use: the one asked for, else the default, else any usable."""
    if credential_id:
        try:
            pk = uuid.UUID(str(credential_id))
        except ValueError:  # a malformed id is just not one of theirs
            return None
        found = _CREDENTIAL_BY_ID.first(user.pk, pk)
    else:
        found = _DEFAULT_CREDENTIAL.first(user.pk)
    if found is None and not credential_id:
        found = user.credentials.only(*BEARER_FIELDS).usable().order_by("created_at").first()
    if found is not None:
        found.user = user  # as user.credentials would have set it
    return found


# At most one row can match (a primary key; one default per person, a constraint): no ORDER BY. Compiled once
# (project.prepared).
_CREDENTIAL_BY_ID = PreparedQuery(
    lambda user_id, pk: Credential.objects.only(*BEARER_FIELDS).filter(user_id=user_id, pk=pk).order_by(),
    -7301,
    uuid.UUID(int=7301),
)
_DEFAULT_CREDENTIAL = PreparedQuery(
    lambda user_id: Credential.objects.only(*BEARER_FIELDS).filter(user_id=user_id, is_default=True).order_by(),
    -7301,
)


def bearer_of(credential: Credential, token: str) -> Bearer:
    """The provider call description for a credential (saved or not) and a token."""
    return Bearer(
        credential_id=str(credential.pk or ""),
        base_url=credential.effective_base_url(),
        token=token,
        guarded=bool(credential.base_url),
        kind=credential.kind,
        api_version=credential.api_version,
        stream_options=credential.sends_stream_options,
    )


def credential_bearer(*, credential: Credential) -> Bearer:
    """Return base URL and bearer ready to use, refreshing an OAuth2 token inline if it has expired."""
    if credential.status == Status.EXPIRED:
        raise CredentialError(
            _("“%(name)s” has expired. Add a new credential on the keys page.") % {"name": credential.name}
        )
    try:
        token = credential.api_key.reveal() if credential.kind in KEY_KINDS else access_token_for(credential)
    except SealError:
        # Moved between rows, tampered with, or sealed under a master key no longer configured.
        detail = _("Its stored secret could not be opened; paste it again.")
        credential_change_status(credential, Status.NEEDS_ATTENTION, detail)
        raise CredentialError(
            _("“%(name)s” cannot be used: %(detail)s") % {"name": credential.name, "detail": detail}
        ) from None
    return bearer_of(credential, token)


def bearer_for(*, user: User, credential: Credential) -> Bearer:
    """The bearer for `user`'s own credential (contract 1); raise CredentialError if it cannot be used."""
    if credential.user_id != user.pk:
        raise CredentialError(_("No such credential."))
    return credential_bearer(credential=credential)


def bearer_rejected(*, bearer: Bearer, status: int, model: str = "") -> Bearer | None:
    """Record that the provider refused `bearer` during a call; return a renewed bearer to retry with, or None.

    401 on an OAuth2 credential: drop the access token and run the grant once more; only a refused
    grant marks it needs-attention (in tokens.lifecycle). 401 on a key: the key is invalid. 403 is
    per model (OpenAI "not allowed to sample from this model"): the credential is left alone.
    """
    if not bearer.credential_id:
        return None
    credential = Credential.objects.filter(pk=bearer.credential_id).first()
    if credential is None or status != 401:
        return None
    if credential.kind in KEY_KINDS:
        credential_mark_invalid(credential=credential, detail=_("The provider rejected this key (401)."))
        return None
    Credential.objects.filter(pk=credential.pk).update(access_token="", access_token_expires_at=None)
    detail = _("The provider refused the access token (401) for %(model)s.") % {"model": model}
    event_record(credential, EventKind.CHECKED, detail=detail)
    result = credential_refresh(credential_id=credential.pk, inline=True)
    credential.refresh_from_db()
    if result.outcome != "refreshed" or not credential.access_token:
        return None
    return bearer_of(credential, credential.access_token.reveal())


def bearer_learned(*, bearer: Bearer, stream_options: bool) -> None:
    """Remember that this credential's provider refuses `stream_options` (usage is then counted locally)."""
    if not bearer.credential_id:
        return
    changed = Credential.objects.filter(pk=bearer.credential_id, sends_stream_options=True).update(
        sends_stream_options=stream_options
    )
    if changed:
        credential = Credential.objects.get(pk=bearer.credential_id)
        event_record(credential, EventKind.UPDATED, detail=_("The provider refused stream_options; no longer sent."))
