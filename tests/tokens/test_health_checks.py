"""Scheduled re-checks of static keys: capped, spread out, every status change an event."""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from tests.conftest import ALICE_KEY, credential_create
from tokens import tasks
from tokens.models import Credential, CredentialEvent, Status

pytestmark = pytest.mark.django_db


def _due_keys(user, count: int) -> list[Credential]:
    past = timezone.now() - timedelta(minutes=1)
    return [credential_create(user, f"sk-alice-key-{i:030d}", name=f"k{i}", next_check_at=past) for i in range(count)]


def test_it_checks_at_most_a_batch_per_scan(alice, fake_openai, celery_eager, settings):
    settings.KEY_CHECK_BATCH = 3
    _due_keys(alice, 5)
    assert tasks.validate_credentials() == 3
    assert len([r for r in fake_openai.requests if r.route == "/v1/models"]) == 3
    assert tasks.validate_credentials() == 2
    assert tasks.validate_credentials() == 0


def test_it_spreads_checks_evenly_over_the_scan_period():
    countdowns = tasks.check_countdowns(500, 300.0)
    assert countdowns[0] == 0 and countdowns[-1] < 300
    gaps = {round(b - a, 3) for a, b in itertools.pairwise(countdowns)}
    assert gaps == {0.6}  # 10,000 due keys leave as a steady 1.7 per second, never at once


def test_it_schedules_the_next_check_with_jitter(alice, fake_openai, celery_eager, settings):
    keys = _due_keys(alice, 40)
    before = timezone.now()
    tasks.validate_credentials()
    interval = settings.KEY_CHECK_INTERVAL_SECONDS
    nexts = [Credential.objects.get(pk=k.pk).next_check_at - before for k in keys]
    assert all(timedelta(seconds=interval * 0.75) <= n <= timedelta(seconds=interval * 1.25 + 5) for n in nexts)
    assert len({round(n.total_seconds()) for n in nexts}) > 30  # not all at the same moment


def test_it_records_each_status_change_and_emails_once(alice, fake_openai, celery_eager):
    (credential,) = _due_keys(alice, 1)
    fake_openai.valid_keys = {"sk-someone-else"}
    tasks.check_credential(str(credential.pk))
    credential.refresh_from_db()
    assert credential.status == Status.INVALID and "rejected" in credential.status_detail
    tasks.check_credential(str(credential.pk))  # invalid keys are not re-checked by the task
    assert len(mail.outbox) == 1

    fake_openai.valid_keys = None
    Credential.objects.filter(pk=credential.pk).update(status=Status.UNVERIFIED)
    tasks.check_credential(str(credential.pk))
    credential.refresh_from_db()
    assert credential.status == Status.ACTIVE and credential.notified_at is None
    kinds = list(CredentialEvent.objects.order_by("id").values_list("kind", "status"))
    assert kinds == [
        ("checked", "active"),
        ("status_changed", "invalid"),
        ("notified", "invalid"),
        ("checked", "unverified"),
        ("status_changed", "active"),
    ]


def test_it_postpones_a_check_when_the_provider_is_down(alice, fake_openai):
    (credential,) = _due_keys(alice, 1)
    fake_openai.error(503)
    fake_openai.close()
    tasks.check_credential(str(credential.pk))
    credential.refresh_from_db()
    assert credential.status == Status.ACTIVE
    assert credential.next_check_at > timezone.now() + timedelta(minutes=10)
    assert ALICE_KEY not in " ".join(CredentialEvent.objects.values_list("detail", flat=True))
