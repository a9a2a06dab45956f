from __future__ import annotations

from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.utils import timezone, translation
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
    closed = 0
    for language in dict(settings.LANGUAGES):  # the note is stored in its reader's language
        readers = [language, ""] if language == settings.LANGUAGE_CODE else [language]
        with translation.override(language):
            closed += (
                Message.objects.abandoned(cutoff)
                .filter(conversation__user__language__in=readers)
                .update(state=State.INCOMPLETE, error=_("The server restarted while this reply was being written."))
            )
    return closed
