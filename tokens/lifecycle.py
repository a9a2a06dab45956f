"""What happens to a stored credential over time: events, refreshes, expiry, re-sealing.

Refreshing is single-flight per credential across every process: a worker first
claims rows by setting `refresh_claimed_until` (beat's workers a batch at once with
`SELECT ... FOR UPDATE SKIP LOCKED`, chat and "Check now" one row with a conditional
UPDATE; one winner per row on PostgreSQL and SQLite alike), talks to the token
endpoint without holding a transaction, then stores the new tokens of a whole batch
in one UPDATE under row locks. The claim is a lease, so a worker that dies
mid-refresh only delays the next attempt. A failed attempt sets `retry_at`; beat's
next scan after it is the only retry (no Celery retries).
"""

from __future__ import annotations

import logging
import math
import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from uuid import UUID

from django.conf import settings
from django.core.mail import send_mail
from django.db import DatabaseError, connection, models, transaction
from django.db.models import F, Q
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


def release_db_connection() -> None:
    """Hand the database connection back before a network call, unless a transaction needs it.

    With a connection pool (PostgreSQL) a slow provider or token endpoint would otherwise hold a pooled connection.
    """
    if not connection.in_atomic_block:
        connection.close()


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


def _lease_seconds(rows: int = 1) -> float:
    """How long a claim on `rows` credentials lasts: longer than their token requests can take, so a live
    worker never loses it (requests run REFRESH_THREADS at a time, each within the connect + read timeouts)."""
    rounds = math.ceil(rows / max(1, min(rows, settings.REFRESH_THREADS)))
    return rounds * (settings.UPSTREAM_CONNECT_TIMEOUT + settings.CHECK_TIMEOUT) + 30


def _backoff(failures: int) -> float:
    """Exponential backoff with jitter: about 30 s, 1 min, 2 min, ... capped at 30 min."""
    ceiling = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** (failures - 1))
    return random.uniform(ceiling / 2, ceiling)


def credential_refresh(
    *, credential_id: UUID | str, inline: bool = False, force: bool = False, actor: str = "system"
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
        return _refresh_claimed([credential], actor=actor)[0]


def credentials_refresh_due(*, limit: int) -> list[RefreshResult]:
    """Claim up to `limit` due OAuth2 credentials (soonest expiry first) and refresh them; one result per row.

    Rows another worker is claiming right now are skipped (PostgreSQL `SKIP LOCKED`; SQLite
    serialises the claim with its IMMEDIATE transactions), so any number of workers can run this
    at once and each row is refreshed once.
    """
    now = timezone.now()
    with transaction.atomic():
        due = Credential.objects.due_for_refresh(now).order_by(F("access_token_expires_at").asc(nulls_first=True))
        ids = list(due.select_for_update(skip_locked=True).values_list("pk", flat=True)[:limit])
        lease = now + timedelta(seconds=_lease_seconds(len(ids)))
        Credential.objects.filter(pk__in=ids).update(refresh_claimed_until=lease)
    if not ids:
        return []
    return _refresh_claimed(list(Credential.objects.select_related("user").filter(pk__in=ids)), actor="system")


def _refresh_claimed(credentials: list[Credential], *, actor: str) -> list[RefreshResult]:
    """Fetch grants for claimed credentials (token requests in parallel), store them, then record the failures."""
    release_db_connection()  # the token requests may take up to their deadline
    grants = _grants_fetch(credentials)
    granted = [(c, grants[c.pk]) for c in credentials if isinstance(grants[c.pk], oauth.TokenGrant)]
    stored = _refresh_store_many(granted, actor=actor)
    results = []
    for credential in credentials:
        outcome = grants[credential.pk]
        if isinstance(outcome, oauth.TokenError):
            with user_locale(credential.user):  # failure details are stored in the owner's language
                results.append(_refresh_failed(credential, outcome, actor=actor))
        else:
            results.append(RefreshResult("refreshed" if credential.pk in stored else "skipped"))
    return results


def _grant_or_error(credential: Credential) -> oauth.TokenGrant | oauth.TokenError:
    # Runs in a pool thread, which has no language of its own: errors are worded in the owner's.
    with user_locale(credential.user):
        try:
            return grant_fetch(credential)
        except oauth.TokenError as exc:
            return exc
        except SealError:
            return oauth.TokenRejected(_("Its stored secret could not be opened; paste it again."), "sealed")
        except Exception:  # a bug must not strand the rest of a batch under its claim
            logger.exception("refreshing credential %s failed unexpectedly", credential.pk)
            return oauth.TokenUnavailable(_("The token request failed unexpectedly."), "internal")


def _grants_fetch(credentials: list[Credential]) -> dict:
    """Run each credential's grant, up to REFRESH_THREADS at once (token requests wait on the network)."""
    if len(credentials) == 1:
        return {credentials[0].pk: _grant_or_error(credentials[0])}
    pool = _token_pool(settings.REFRESH_THREADS)
    return dict(zip([c.pk for c in credentials], pool.map(_grant_or_error, credentials), strict=True))


@cache
def _token_pool(size: int) -> ThreadPoolExecutor:
    """The process's threads for token requests, made once: starting 8 threads per batch cost 5% of a worker's CPU."""
    return ThreadPoolExecutor(max_workers=max(1, size), thread_name_prefix="token-request")


# A forked Celery child starts without the parent's threads: it makes its own pool.
os.register_at_fork(after_in_child=_token_pool.cache_clear)


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
    """Store one grant (see `_refresh_store_many`); False when the credential expired or went meanwhile."""
    return credential.pk in _refresh_store_many([(credential, grant)], actor=actor)


GRANT_FIELDS: tuple[str, ...] = ("access_token", "access_token_expires_at", "last_refreshed_at", "failure_count")
GRANT_FIELDS += ("retry_at",)
GRANT_FIELDS += ("refresh_claimed_until", "status", "status_detail", "notified_at")  # and a rotated refresh_token


def _refresh_store_many(granted: list[tuple[Credential, oauth.TokenGrant]], *, actor: str) -> set:
    """Store each grant's access token, refresh token and expiry and release the claims, all rows in one pipelined
    UPDATE under row locks in one transaction; return the ids stored. Rows expired or deleted meanwhile keep nothing.
    """
    if not granted:
        return set()
    with transaction.atomic():
        locked = Credential.objects.select_for_update().filter(pk__in=[c.pk for c, _grant in granted]).order_by("pk")
        current = dict(locked.values_list("pk", "status"))
        kept = [(c, grant) for c, grant in granted if current.get(c.pk) not in (None, Status.EXPIRED)]
        events: list[dict] = []
        changed: dict[Credential, bool] = {}
        for credential, grant in kept:
            was = credential.status
            rotated = _grant_apply(credential, grant)
            changed[credential] = rotated
            with user_locale(credential.user):  # the owner's language and time zone, not the worker's
                events += _grant_events(credential, grant, rotated=rotated, recovered=was != Status.ACTIVE, actor=actor)
        _credentials_update(changed)
        CredentialEvent.objects.bulk_create([CredentialEvent(**event) for event in events])
    return {c.pk for c in changed}


def _credentials_update(changed: dict[Credential, bool]) -> None:
    """Write GRANT_FIELDS of each credential, and its refresh token where `changed` says it rotated, sealing
    secrets first as save() would; an unrotated refresh token keeps its stored value.

    One parameterised UPDATE sent for every row with executemany, which psycopg pipelines (one round trip for the
    batch). The CASE WHEN UPDATE that bulk_update builds cost about 2.5 ms of Python per row to compile (py-spy).
    """
    if not changed:
        return
    meta, qn = Credential._meta, connection.ops.quote_name
    fields = [_column(name) for name in GRANT_FIELDS]
    token = _column("refresh_token")
    assignments = [f"{qn(field.column)} = %s" for field in fields]
    assignments.append(f"{qn(token.column)} = COALESCE(%s, {qn(token.column)})")
    # Names come from the model, values are parameters.
    sql = f"UPDATE {qn(meta.db_table)} SET {', '.join(assignments)} WHERE {qn(meta.pk.column)} = %s"  # noqa: S608
    rows = [
        [field.get_db_prep_save(field.pre_save(c, False), connection) for field in fields]
        + [token.get_db_prep_save(token.pre_save(c, False), connection) if rotated else None]
        + [meta.pk.get_db_prep_value(c.pk, connection)]
        for c, rotated in changed.items()
    ]
    with connection.cursor() as cursor:
        cursor.executemany(sql, rows)


def _column(name: str) -> models.Field:
    field = Credential._meta.get_field(name)
    assert isinstance(field, models.Field)  # a column of the table, not a relation's other side
    return field


def _grant_apply(credential: Credential, grant: oauth.TokenGrant) -> bool:
    """Put the grant into the instance (not saved); return whether the refresh token was rotated."""
    rotated = credential.kind == Kind.REFRESH_TOKEN and bool(grant.refresh_token)
    rotated = rotated and grant.refresh_token != credential.refresh_token.reveal()
    credential.access_token = grant.access_token
    credential.access_token_expires_at = grant.expires_at
    if rotated:
        credential.refresh_token = grant.refresh_token
    credential.last_refreshed_at = timezone.now()
    credential.failure_count, credential.retry_at, credential.refresh_claimed_until = 0, None, None
    if credential.set_status(Status.ACTIVE, ""):
        credential.notified_at = None
    return rotated


def _grant_events(
    credential: Credential, grant: oauth.TokenGrant, *, rotated: bool, recovered: bool, actor: str
) -> list[dict]:
    until = _("New access token valid until %(moment)s.") % {"moment": zoned_text(grant.expires_at)}
    events = [_event_fields(credential, EventKind.REFRESHED, actor, until)]
    if rotated:
        detail = _("The provider issued a new refresh token; the old one is discarded.")
        events.append(_event_fields(credential, EventKind.ROTATED, actor, detail))
    if recovered:
        events.append(_event_fields(credential, EventKind.STATUS_CHANGED, actor, _("Token refreshed.")))
    return events


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
        stale = Credential.objects.sealed_with_old_key(key_id).exclude(pk__in=skip).order_by("pk")
        rows = list(stale.select_for_update(skip_locked=True)[:batch_size])
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
