from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from tokens import services
from tokens.models import Credential

logger = logging.getLogger(__name__)

CHECK_BATCH = 500


@shared_task
def validate_credentials() -> int:
    """Fan out one check per due API key, spread across the scan period."""
    now = timezone.now()
    ids = list(
        Credential.objects.due_for_check(now).order_by("next_check_at").values_list("pk", flat=True)[:CHECK_BATCH]
    )
    spread = max(1, int(settings.CELERY_BEAT_SCHEDULE["validate-credentials"]["schedule"]))
    for index, pk in enumerate(ids):
        check_credential.apply_async((str(pk),), countdown=index * spread // max(1, len(ids)))
    return len(ids)


@shared_task
def check_credential(credential_id: str) -> None:
    credential = Credential.objects.filter(pk=credential_id).select_related("user").first()
    if credential is None:
        return
    if credential.next_check_at and credential.next_check_at > timezone.now():
        return  # another run got here first
    services.credential_check(credential=credential)
