"""Everything that writes credentials, talks to providers about them, or opens their secrets."""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.template.loader import render_to_string
from django.utils import timezone

from accounts.models import User
from tokens import provider
from tokens.models import Credential, CredentialEvent, EventKind, Kind, Status
from tokens.ssrf import UnsafeURL, check_url

logger = logging.getLogger(__name__)


class CredentialError(Exception):
    """A refusal the user should read: bad input, a rejected key, an unsafe URL."""


@dataclass(frozen=True)
class Bearer:
    """What chat needs to call a provider for one user."""

    credential_id: str
    base_url: str
    token: str
    guarded: bool

    def __repr__(self) -> str:
        return f"Bearer(credential_id={self.credential_id!r}, base_url={self.base_url!r}, token=<hidden>)"


def mask(secret: str) -> str:
    """Show a secret as its prefix family and last four characters: sk-…abcd."""
    secret = secret.strip()
    prefix = "sk-" if secret.startswith("sk-") else ""
    return f"{prefix}…{secret[-4:]}" if len(secret) >= 8 else "…"


def event_record(credential: Credential, kind: str, *, actor: str = "system", detail: str = "") -> CredentialEvent:
    return CredentialEvent.objects.create(
        credential_id=credential.pk,
        credential_name=credential.name,
        user_id=credential.user_id,
        actor=actor,
        kind=kind,
        status=credential.status,
        detail=detail[:300],
    )


def _next_check_at(now: datetime) -> datetime:
    # Jitter spreads re-checks over the whole interval so keys never hit upstream at once.
    interval = settings.KEY_CHECK_INTERVAL_SECONDS
    return now + timedelta(seconds=interval * random.uniform(0.75, 1.25))


def _guarded_base_url(base_url: str) -> str:
    if not base_url:
        return ""
    try:
        return check_url(base_url)
    except UnsafeURL as exc:
        raise CredentialError(f"Base URL refused: {exc}") from exc


def credential_create(
    *, user: User, name: str, api_key: str, base_url: str = "", expires_at: datetime | None = None
) -> Credential:
    """Check an API key against its provider and store it sealed; refuse keys the provider rejects."""
    api_key = api_key.strip()
    if not api_key:
        raise CredentialError("Paste your API key.")
    credential = Credential(
        user=user,
        name=name.strip() or "API key",
        kind=Kind.API_KEY,
        base_url=_guarded_base_url(base_url.strip()),
        hint=mask(api_key),
        expires_at=expires_at,
    )
    credential.api_key = api_key
    _verify_new(credential, api_key)
    with transaction.atomic():
        credential.is_default = not user.credentials.filter(is_default=True).exists()
        credential.save()
        event_record(credential, EventKind.CREATED, actor=user.username, detail=credential.status_detail)
    return credential


def _verify_new(credential: Credential, bearer: str) -> None:
    now = timezone.now()
    try:
        provider.list_models(base_url=credential.effective_base_url(), bearer=bearer, guarded=bool(credential.base_url))
    except provider.Rejected as exc:
        raise CredentialError(f"{exc} It was not saved; check it and paste it again.") from exc
    except provider.Unreachable as exc:
        credential.set_status(Status.UNVERIFIED, f"Saved without a check: {exc} We will retry.")
        credential.next_check_at = now + timedelta(minutes=5)
    else:
        credential.set_status(Status.ACTIVE, "")
        credential.last_checked_at = now
        credential.next_check_at = _next_check_at(now)


def credential_replace_key(*, credential: Credential, api_key: str, actor: str) -> Credential:
    """Swap in a new API key for an existing credential, checked like a new one."""
    api_key = api_key.strip()
    if not api_key:
        raise CredentialError("Paste the new API key.")
    credential.api_key = api_key
    credential.hint = mask(api_key)
    _verify_new(credential, api_key)
    credential.failure_count, credential.notified_at = 0, None
    credential.save()
    event_record(credential, EventKind.UPDATED, actor=actor, detail="Key replaced. " + credential.status_detail)
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


def credential_change_status(credential: Credential, status: str, detail: str = "", *, actor: str = "system") -> bool:
    """Apply a status; on a change, record an event and tell the owner about trouble."""
    if not credential.set_status(status, detail):
        credential.save(update_fields=["status", "status_detail"])
        return False
    credential.save(update_fields=["status", "status_detail"])
    event_record(credential, EventKind.STATUS_CHANGED, actor=actor, detail=detail)
    if status in (Status.INVALID, Status.NEEDS_ATTENTION, Status.EXPIRED):
        credential_notify_owner(credential=credential)
    return True


def credential_notify_owner(*, credential: Credential) -> bool:
    """Email the owner once per episode of trouble; return whether an email went out."""
    claimed = Credential.objects.filter(pk=credential.pk, notified_at__isnull=True).update(notified_at=timezone.now())
    if not claimed or not credential.user.email:
        return False
    ctx = {"credential": credential, "user": credential.user}
    subject = render_to_string("emails/credential_problem-subject.txt", ctx).strip()
    send_mail(
        subject,
        render_to_string("emails/credential_problem-body.txt", ctx),
        None,
        [credential.user.email],
        html_message=render_to_string("emails/credential_problem-body.html", ctx),
        fail_silently=True,
    )
    event_record(credential, EventKind.NOTIFIED, detail=f"Emailed {credential.user.email}")
    return True


def credential_check(*, credential: Credential, actor: str = "system") -> Credential:
    """Re-check a stored credential against its provider and record what changed."""
    now = timezone.now()
    try:
        bearer = credential_bearer(credential=credential)
        provider.list_models(base_url=bearer.base_url, bearer=bearer.token, guarded=bearer.guarded)
    except provider.Rejected as exc:
        status, detail = Status.INVALID, str(exc)
    except (provider.Unreachable, CredentialError) as exc:
        # Not the credential's fault: keep its status and look again soon.
        credential.next_check_at = now + timedelta(minutes=15)
        credential.save(update_fields=["next_check_at"])
        event_record(credential, EventKind.CHECKED, actor=actor, detail=f"Check postponed: {exc}")
        return credential
    else:
        status, detail = Status.ACTIVE, ""
        if credential.status != Status.ACTIVE:
            credential.notified_at = None
    credential.last_checked_at = now
    credential.next_check_at = _next_check_at(now)
    credential.save(update_fields=["last_checked_at", "next_check_at", "notified_at"])
    event_record(credential, EventKind.CHECKED, actor=actor, detail=detail or "Provider accepted it.")
    credential_change_status(credential, status, detail, actor=actor)
    return credential


def credential_mark_invalid(*, credential: Credential, detail: str) -> None:
    """Called when the provider rejects a credential during chat."""
    credential_change_status(credential, Status.INVALID, detail)


def credential_for_user(*, user: User, credential_id: str | None = None) -> Credential | None:
    """Pick the credential a chat should use: the one asked for, else the default, else any usable."""
    credentials = user.credentials.all()
    if credential_id:
        return credentials.filter(pk=credential_id).first()
    return credentials.filter(is_default=True).first() or credentials.usable().order_by("created_at").first()


def credential_bearer(*, credential: Credential) -> Bearer:
    """Return base URL and bearer ready to use, refreshing an OAuth2 token inline if it has expired."""
    if credential.status == Status.EXPIRED:
        raise CredentialError(f"“{credential.name}” has expired. Add a new credential on the keys page.")
    if credential.kind == Kind.API_KEY:
        token = credential.api_key.reveal()
    else:
        from tokens.lifecycle import access_token_for

        token = access_token_for(credential)
    return Bearer(
        credential_id=str(credential.pk),
        base_url=credential.effective_base_url(),
        token=token,
        guarded=bool(credential.base_url),
    )
