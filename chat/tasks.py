from __future__ import annotations

from datetime import datetime, time, timedelta

from celery import shared_task
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from chat.budgets import budget_alert_send, budget_digest_send
from chat.models import BudgetAlert, UsageRecord
from chat.services import replies_reap
from chat.usage import ROLLUPS

PRUNE_BATCH = 5000


def _retention_cutoff(now: datetime) -> datetime:
    """Midnight (site time zone) USAGE_RETENTION_DAYS ago, so whole days go and the roll-up stays equal to the rows."""
    zone = timezone.get_default_timezone()
    day = timezone.localtime(now, zone).date() - timedelta(days=settings.USAGE_RETENTION_DAYS)
    return datetime.combine(day, time.min, tzinfo=zone)


@shared_task
def prune_usage(batch_size: int = PRUNE_BATCH) -> int:
    """Delete usage rows older than USAGE_RETENTION_DAYS (0 keeps them forever), batch by batch.

    Each batch is its own short transaction on at most batch_size rows picked by primary key,
    so no lock is held for long and the web keeps writing while old rows go.
    """
    if settings.USAGE_RETENTION_DAYS <= 0:
        return 0
    cutoff = _retention_cutoff(timezone.now())
    deleted = 0
    while True:
        ids = list(UsageRecord.objects.older_than(cutoff).order_by().values_list("id", flat=True)[:batch_size])
        if not ids:
            break
        with transaction.atomic():
            deleted += UsageRecord.objects.filter(id__in=ids).delete()[0]
    for rollup, period, _keys in ROLLUPS:
        rollup.objects.filter(**{f"{period}__lt": cutoff.date() if period == "day" else cutoff}).delete()
    return deleted


@shared_task
def close_abandoned_replies() -> int:
    """Mark replies whose web process died (their lease lapsed) incomplete, keeping the text saved so far."""
    return replies_reap()


@shared_task
def send_budget_alert(alert_id: int) -> bool:
    alert = BudgetAlert.objects.select_related("user").filter(pk=alert_id).first()
    return budget_alert_send(alert=alert) if alert else False


@shared_task
def send_budget_digest() -> int:
    return budget_digest_send()
