from __future__ import annotations

from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.utils import timezone
from django.utils.translation import gettext as _

from chat.models import Message, State, UsageRecord


@shared_task
def prune_usage() -> int:
    """Delete usage rows older than USAGE_RETENTION_DAYS (0 keeps them forever)."""
    if settings.USAGE_RETENTION_DAYS <= 0:
        return 0
    cutoff = timezone.now() - timedelta(days=settings.USAGE_RETENTION_DAYS)
    deleted, _ = UsageRecord.objects.older_than(cutoff).delete()
    return deleted


@shared_task
def close_abandoned_replies() -> int:
    """Mark replies left 'streaming' by a web process that died as incomplete, keeping their text."""
    cutoff = timezone.now() - timedelta(minutes=15)
    return Message.objects.abandoned(cutoff).update(
        state=State.INCOMPLETE, error=_("The server restarted while this reply was being written.")
    )
