from __future__ import annotations

import logging
import math
from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from accounts.preferences import user_locale
from tokens import api_keys, lifecycle, services
from tokens.models import KEY_KINDS, Credential

logger = logging.getLogger(__name__)

# Expiry needs no network; a beat run handles this many and the next run the rest.
EXPIRE_BATCH = 1000


@shared_task
def validate_credentials() -> int:
    """Fan out one check per due API key, spread across the scan period."""
    now = timezone.now()
    # At most KEY_CHECK_BATCH leave per scan, spread over the scan period: a backlog drains at a steady rate.
    due = Credential.objects.due_for_check(now).order_by("next_check_at")
    ids = list(due.values_list("pk", flat=True)[: settings.KEY_CHECK_BATCH])
    if not ids:
        return 0
    period = settings.CELERY_BEAT_SCHEDULE["validate-credentials"]["schedule"]
    # Push these out of the next scan's reach; the check sets the real next time. A lost task retries after this.
    Credential.objects.filter(pk__in=ids).update(next_check_at=now + timedelta(seconds=period * 3))
    for pk, countdown in zip(ids, check_countdowns(len(ids), period), strict=True):
        check_credential.apply_async((str(pk),), countdown=countdown)
    return len(ids)


def check_countdowns(count: int, period: float) -> list[float]:
    """Spread `count` checks evenly over `period` seconds, so upstream sees a steady trickle, never a burst."""
    return [round(index * period / count, 3) for index in range(count)]


@shared_task
def check_credential(credential_id: str) -> None:
    credential = Credential.objects.filter(pk=credential_id, kind__in=KEY_KINDS).select_related("user").first()
    if credential is None or not credential.is_usable:
        return
    with user_locale(credential.user):  # what the check finds is stored in the owner's language
        services.credential_check(credential=credential)


@shared_task
def refresh_due_credentials() -> int:
    """Fan out one `refresh_credentials` task per REFRESH_BATCH_SIZE credentials due now; return how many are due.

    The batches claim their rows when they run, not here, so a lost or late message holds nothing back:
    the next scan sees the rows still due.
    """
    due = Credential.objects.due_for_refresh(timezone.now()).count()
    for _ in range(math.ceil(due / settings.REFRESH_BATCH_SIZE)):
        refresh_credentials.delay()
    return due


@shared_task
def refresh_credentials() -> int:
    """Claim and refresh up to REFRESH_BATCH_SIZE due credentials; return how many were refreshed.

    A failure sets the row's `retry_at` (backoff) and beat's next scan after it retries: no Celery retry.
    """
    results = lifecycle.credentials_refresh_due(limit=settings.REFRESH_BATCH_SIZE)
    return sum(result.outcome == "refreshed" for result in results)


@shared_task
def refresh_credential(credential_id: str) -> str:
    """Refresh one credential now if it is due; failures wait for `retry_at` like the batches'."""
    return lifecycle.credential_refresh(credential_id=credential_id).outcome


@shared_task
def expire_credentials() -> int:
    """Wipe the secrets of credentials whose owner-set expiry has passed."""
    now = timezone.now()
    ids = list(Credential.objects.past_expiry(now).values_list("pk", flat=True)[:EXPIRE_BATCH])
    return sum(lifecycle.credential_expire(credential_id=pk, now=now) for pk in ids)


@shared_task
def prune_access_tokens() -> int:
    """Delete expired access tokens; they no longer authenticate, so the rows are only clutter."""
    return api_keys.access_tokens_prune()
