"""The broker (Redis) or the worker is down: credentials still save, and due checks catch up once it is back.

A credential saved while its provider was also unreachable is stored "unverified" with a check due soon; beat cannot
hand that check to a worker while the broker is down (and says so in its log); when the broker returns, the next
beat pass enqueues it and a real worker runs it.
"""

from __future__ import annotations

import pytest
from celery.contrib.testing.worker import start_worker
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerError

from project.celery import app
from tests.conftest import ALICE_KEY, user_create
from tests.faults.conftest import wait_until
from tokens.models import Credential
from tokens.tasks import validate_credentials

pytestmark = pytest.mark.django_db(transaction=True)


def test_credentials_save_without_a_broker_and_their_checks_catch_up(redis_site, client, fake_openai, settings):
    alice = user_create("alice", language="en", timezone="UTC")
    client.force_login(alice)
    redis_site.stop()  # broker and cache gone
    provider = settings.OPENAI_BASE_URL
    settings.OPENAI_BASE_URL = "http://127.0.0.1:9/v1"  # and the provider unreachable at that moment

    saved = client.post("/settings/keys/", {"kind": "api_key", "name": "Main", "api_key": ALICE_KEY}, follow=True)

    assert saved.status_code == 200
    credential = Credential.objects.get(user=alice)
    assert credential.status == "unverified" and credential.api_key.reveal() == ALICE_KEY
    assert "Saved" in saved.content.decode()
    Credential.objects.filter(pk=credential.pk).update(next_check_at=timezone.now())  # its re-check is due
    with pytest.raises(BrokerError):
        validate_credentials()  # beat's pass cannot enqueue while the broker is down; the check stays due
    settings.OPENAI_BASE_URL = provider

    redis_site.start()
    with start_worker(app, perform_ping_check=False, pool="solo", loglevel="WARNING", shutdown_timeout=10):
        # The failed pass pushed the check three scan periods out (a lost task is retried then); skip that wait.
        Credential.objects.filter(pk=credential.pk).update(next_check_at=timezone.now())
        assert validate_credentials() == 1

        def checked() -> bool:
            credential.refresh_from_db()
            return credential.status == "active"

        assert wait_until(checked, timeout=30), credential.status
    assert fake_openai.requests[-1].bearer == ALICE_KEY
