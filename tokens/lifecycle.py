"""What happens to a stored credential over time: events, refreshes, expiry, re-sealing.

Refreshing is single-flight per credential across every process: a worker first
claims the row with a conditional UPDATE of `refresh_claimed_until` (one winner,
on PostgreSQL and SQLite alike), talks to the token endpoint without holding a
transaction, then stores the new tokens in one save() under a row lock. The claim
is a lease, so a worker that dies mid-refresh only delays the next attempt.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core.mail import send_mail
from django.db import DatabaseError, transaction
from django.db.models import Q
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.preferences import user_locale
from accounts.templatetags.timetags import zoned_text
from tokens import keyring, oauth
from tokens.keyring import SealError
from tokens.models import KEY_KINDS, SEALED_FIELDS, Credential, CredentialEvent, EventKind, Kind, Status

logger = logging.getLogger(__name__)

BACKOFF_BASE_SECONDS = 30
BACKOFF_CAP_SECONDS = 30 * 60


class CredentialError(Exception):
    """A refusal the user should read: bad input, a rejected key, an unsafe URL, a token we cannot get."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class RefreshResult:
    """How a refresh attempt ended: refreshed, skipped (not due or claimed elsewhere), retry, or failed."""

    outcome: str
    message: str = ""
    retry_in: float = 0.0


# Events and notices.


def event_record(credential: Credential, kind: str, *, actor: str = "system", detail: str = "") -> CredentialEvent:
    return CredentialEvent.objects.create(**_event_fields(credential, kind, actor, detail))


def _event_fields(credential: Credential, kind: str, actor: str, detail: str) -> dict:
    return {
        "credential_id": credential.pk,
        "credential_name": credential.name,
        "user_id": credential.user_id,
        "actor": actor,
        "kind": kind,
        "status": credential.status,
        "detail": detail[:300],
    }


def credential_change_status(credential: Credential, status: str, detail: str = "", *, actor: str = "system") -> bool:
    """Apply a status; on a change, record an event and tell the owner about trouble."""
    changed = credential.set_status(status, detail)
    if changed and status == Status.ACTIVE:
        credential.notified_at = None  # working again: a later problem deserves a new email
    credential.save(update_fields=["status", "status_detail", "notified_at"])
    if not changed:
        return False
    event_record(credential, EventKind.STATUS_CHANGED, actor=actor, detail=detail)
    if status in (Status.INVALID, Status.NEEDS_ATTENTION, Status.EXPIRED):
        credential_notify_owner(credential=credential)
    return True


def credential_notify_owner(*, credential: Credential) -> bool:
    """Email the owner once per episode of trouble; return whether an email went out."""
    claimed = Credential.objects.filter(pk=credential.pk, notified_at__isnull=True).update(notified_at=timezone.now())
    if not claimed or not credential.user.email:
        return False
    url = settings.SITE_URL + reverse("tokens:credential-detail", args=[credential.pk])
    ctx = {"credential": credential, "user": credential.user, "credential_url": url, "noticed_at": timezone.now()}
    with user_locale(credential.user):  # the owner's language and time zone, not the worker's
        subject = render_to_string("emails/credential_problem-subject.txt", ctx).strip()
        text = render_to_string("emails/credential_problem-body.txt", ctx)
        html = render_to_string("emails/credential_problem-body.html", ctx)
        detail = _("Emailed %(email)s") % {"email": credential.user.email}
    send_mail(subject, text, None, [credential.user.email], html_message=html, fail_silently=True)
    event_record(credential, EventKind.NOTIFIED, detail=detail)
    return True


# Refreshing OAuth2 access tokens.


def _lease_seconds() -> float:
    # Longer than any one token request can take, so a live worker never loses its claim.
    return settings.UPSTREAM_CONNECT_TIMEOUT + settings.CHECK_TIMEOUT + 30


def _backoff(failures: int) -> float:
    """Exponential backoff with jitter: about 30 s, 1 min, 2 min, ... capped at 30 min."""
    ceiling = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** (failures - 1))
    return random.uniform(ceiling / 2, ceiling)


def credential_refresh(
    *, credential_id: str, inline: bool = False, force: bool = False, actor: str = "system"
) -> RefreshResult:
    """Get a new access token for one OAuth2 credential, unless another process is already doing it.

    Beat's workers refresh what is due (inside the margin, not backing off);
    `inline` is chat meeting an expired token, which refreshes at once, backoff or not;
    `force` is the owner's "Check now", which re-runs the grant whatever the status (not expired).
    """
    now = timezone.now()
    rows = Credential.objects.filter(pk=credential_id)
    if force:
        rows = rows.exclude(kind__in=KEY_KINDS).exclude(status=Status.EXPIRED).unclaimed(now)
    elif inline:
        rows = rows.exclude(kind__in=KEY_KINDS).filter(status__in=[Status.ACTIVE, Status.UNVERIFIED]).unclaimed(now)
        rows = rows.filter(Q(access_token_expires_at__isnull=True) | Q(access_token_expires_at__lte=now))
    else:
        rows = rows.due_for_refresh(now)
    if not rows.update(refresh_claimed_until=now + timedelta(seconds=_lease_seconds())):
        return RefreshResult("skipped")
    credential = Credential.objects.select_related("user").filter(pk=credential_id).first()
    if credential is None:
        return RefreshResult("skipped")
    with user_locale(credential.user):  # failure details are stored in the owner's language
        return _refresh_claimed(credential, actor)


def _refresh_claimed(credential: Credential, actor: str) -> RefreshResult:
    try:
        grant = grant_fetch(credential)
    except oauth.TokenError as exc:
        return _refresh_failed(credential, exc, actor=actor)
    except SealError:
        error = oauth.TokenRejected(_("Its stored secret could not be opened; paste it again."), "sealed")
        return _refresh_failed(credential, error, actor=actor)
    _refresh_store(credential, grant, actor=actor)
    return RefreshResult("refreshed")


def grant_fetch(credential: Credential) -> oauth.TokenGrant:
    """Run the credential's grant at its token endpoint; saved or not, its secrets are read from the instance."""
    if credential.kind == Kind.CLIENT_CREDENTIALS:
        return oauth.fetch_client_credentials(
            token_url=credential.token_url,
            client_id=credential.client_id,
            client_secret=credential.client_secret.reveal(),
            scope=credential.scope,
            client_auth=credential.client_auth,
        )
    return oauth.refresh(
        token_url=credential.token_url,
        client_id=credential.client_id,
        client_secret=credential.client_secret.reveal(),
        refresh_token=credential.refresh_token.reveal(),
        scope=credential.scope,
        client_auth=credential.client_auth,
    )


def _refresh_store(credential: Credential, grant: oauth.TokenGrant, *, actor: str) -> bool:
    """Store access token, refresh token and expiry in one save(), under a row lock; release the claim."""
    rotated = credential.kind == Kind.REFRESH_TOKEN and bool(grant.refresh_token)
    rotated = rotated and grant.refresh_token != credential.refresh_token.reveal()
    fields = ["access_token", "access_token_expires_at", "last_refreshed_at", "failure_count", "retry_at"]
    fields += ["refresh_claimed_until", "status", "status_detail", "notified_at"]
    with transaction.atomic():
        # Expired or deleted while we were at the token endpoint: keep nothing.
        current = Credential.objects.select_for_update().filter(pk=credential.pk).values_list("status", flat=True)
        if current.first() in (None, Status.EXPIRED):
            return False
        credential.access_token = grant.access_token
        credential.access_token_expires_at = grant.expires_at
        if rotated:
            credential.refresh_token = grant.refresh_token
            fields.append("refresh_token")
        credential.last_refreshed_at = timezone.now()
        credential.failure_count, credential.retry_at, credential.refresh_claimed_until = 0, None, None
        was = credential.status
        if credential.set_status(Status.ACTIVE, ""):
            credential.notified_at = None
        credential.save(update_fields=fields)
        until = _("New access token valid until %(moment)s.") % {"moment": zoned_text(grant.expires_at)}
        events = [_event_fields(credential, EventKind.REFRESHED, actor, until)]
        if rotated:
            detail = _("The provider issued a new refresh token; the old one is discarded.")
            events.append(_event_fields(credential, EventKind.ROTATED, actor, detail))
        if was != Status.ACTIVE:
            events.append(_event_fields(credential, EventKind.STATUS_CHANGED, actor, _("Token refreshed.")))
        CredentialEvent.objects.bulk_create([CredentialEvent(**event) for event in events])
    return True


def _refresh_failed(credential: Credential, error: oauth.TokenError, *, actor: str) -> RefreshResult:
    """Count the failure, back off, and after a permanent refusal or too many failures ask the owner."""
    failures = credential.failure_count + 1
    give_up = isinstance(error, oauth.TokenRejected) or failures >= settings.REFRESH_MAX_FAILURES
    delay = 0.0 if give_up else _backoff(failures)
    credential.failure_count = failures
    credential.retry_at = None if give_up else timezone.now() + timedelta(seconds=delay)
    credential.refresh_claimed_until = None
    try:
        credential.save(update_fields=["failure_count", "retry_at", "refresh_claimed_until"])
    except DatabaseError:
        return RefreshResult("skipped")  # deleted meanwhile
    detail = _("%(error)s (failure %(count)d)") % {"error": error, "count": failures}
    event_record(credential, EventKind.REFRESH_FAILED, actor=actor, detail=detail)
    if not give_up:
        return RefreshResult("retry", str(error), delay)
    if isinstance(error, oauth.TokenRejected):
        detail = str(error)
    else:
        detail = _("Refreshing failed %(count)d times: %(error)s") % {"count": failures, "error": error}
    credential_change_status(credential, Status.NEEDS_ATTENTION, detail, actor=actor)
    return RefreshResult("failed", detail)


def access_token_for(credential: Credential) -> str:
    """Return a usable access token, refreshing inline under the same claim beat uses if it has expired."""
    deadline = time.monotonic() + _lease_seconds()
    while True:
        if credential.access_token_is_fresh():
            return credential.access_token.reveal()
        if credential.status not in (Status.ACTIVE, Status.UNVERIFIED):
            raise CredentialError(
                _("Your credential “%(name)s” is %(status)s: %(detail)s Fix or replace it on the keys page.")
                % {
                    "name": credential.name,
                    "status": credential.get_status_display().lower(),
                    "detail": credential.status_detail,
                }
            )
        result = credential_refresh(credential_id=credential.pk, inline=True)
        credential.refresh_from_db()
        if result.outcome == "refreshed":
            return credential.access_token.reveal()
        if result.outcome == "retry":
            raise CredentialError(
                _("Could not get a fresh access token for “%(name)s”: %(error)s Try again in a minute.")
                % {"name": credential.name, "error": result.message}
            )
        if result.outcome == "skipped":
            if time.monotonic() > deadline:
                raise CredentialError(
                    _("“%(name)s” is still being refreshed. Try again in a moment.") % {"name": credential.name}
                )
            # Another process holds the claim and is refreshing right now: wait for its result.
            threading.Event().wait(0.05)


# Owner-set expiry.


def credential_expire(*, credential_id: str, now: datetime | None = None) -> bool:
    """Wipe the secrets of a credential whose owner-set expiry has passed, record it, tell the owner."""
    now = now or timezone.now()
    with transaction.atomic():
        credential = Credential.objects.select_for_update().filter(pk=credential_id).past_expiry(now).first()
        if credential is None:
            return False
        credential.wipe_secrets()
        credential.refresh_claimed_until = credential.retry_at = credential.notified_at = None
        with user_locale(credential.user):
            detail = _("Expired on %(moment)s as set by its owner; secrets deleted.") % {
                "moment": zoned_text(credential.expires_at)
            }
        credential.set_status(Status.EXPIRED, detail)
        credential.save()
        event_record(credential, EventKind.EXPIRED, detail=detail)
    credential_notify_owner(credential=credential)
    return True


# Master-key rotation.


def credentials_reseal(*, batch_size: int, skip: set | frozenset = frozenset()) -> tuple[int, set]:
    """Re-seal one batch of rows still sealed under an older master key; return (re-sealed, unopenable ids).

    Rows another transaction holds are skipped (skip_locked) and picked up by a later batch.
    """
    key_id = keyring.current_key_id()
    broken: set = set()
    with transaction.atomic():
        rows = Credential.objects.sealed_with_old_key(key_id).exclude(pk__in=skip).order_by("pk")
        rows = list(rows.select_for_update(skip_locked=True)[:batch_size])
        events = []
        for credential in rows:
            try:
                fields = _reseal(credential, key_id)
            except SealError:
                broken.add(credential.pk)
                continue
            credential.save(update_fields=fields)
            detail = _("Re-sealed %(fields)s under master key %(key)s.") % {"fields": ", ".join(fields), "key": key_id}
            events.append(CredentialEvent(**_event_fields(credential, EventKind.RESEALED, "system", detail)))
        CredentialEvent.objects.bulk_create(events)
    return len(rows) - len(broken), broken


def _reseal(credential: Credential, key_id: str) -> list[str]:
    fields = []
    for name in SEALED_FIELDS:
        secret = getattr(credential, name)
        if secret and secret.key_id != key_id:
            setattr(credential, name, secret.reveal())  # a plain value is sealed again, under the first key, on save
            fields.append(name)
    return fields
