"""The periodic key check really runs in a Celery worker on the configured broker."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from celery.contrib.testing.worker import start_worker
from django.core import mail
from django.utils import timezone

from project.celery import app
from tests.conftest import ALICE_KEY, credential_create
from tokens.models import CredentialEvent
from tokens.tasks import validate_credentials

pytestmark = pytest.mark.django_db(transaction=True)


def _wait_until(condition, timeout: float = 20.0) -> bool:
    tick = threading.Event()
    for _ in range(int(timeout / 0.1)):
        if condition():
            return True
        tick.wait(0.1)
    return condition()


def test_it_rechecks_due_keys_in_a_worker_and_records_the_change(fake_openai, alice):
    credential = credential_create(alice, ALICE_KEY, next_check_at=timezone.now() - timedelta(minutes=1))
    fake_openai.valid_keys = {"sk-someone-else"}  # the provider has revoked alice's key

    with start_worker(app, perform_ping_check=False, pool="solo", loglevel="WARNING", shutdown_timeout=10):
        validate_credentials.delay()

        def invalid() -> bool:
            credential.refresh_from_db()
            return credential.status == "invalid"

        assert _wait_until(invalid), f"status stayed {credential.status}"

    assert fake_openai.requests[-1].route == "/v1/models" and fake_openai.requests[-1].bearer == ALICE_KEY
    assert CredentialEvent.objects.filter(credential_id=credential.pk, kind="status_changed", status="invalid").exists()
    assert credential.next_check_at > timezone.now()
    assert len(mail.outbox) == 1 and "needs attention" in mail.outbox[0].subject
    assert f"/settings/keys/{credential.pk}/" in mail.outbox[0].body
    assert ALICE_KEY not in mail.outbox[0].body + mail.outbox[0].alternatives[0][0]
