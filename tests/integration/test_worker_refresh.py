"""Beat's refresh task on a real Celery worker, over the configured broker (filesystem here, Redis in CI)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
from celery.contrib.testing.worker import start_worker
from celery.signals import task_postrun
from django.utils import timezone

from project.celery import app
from tests.conftest import CLIENT_ID, oauth_credential_create
from tokens.models import Credential, CredentialEvent, Kind
from tokens.tasks import refresh_due_credentials

pytestmark = pytest.mark.django_db(transaction=True)

WAIT_SECONDS = 30


def _wait_until(condition: Callable[[], bool], finished: threading.Event) -> bool:
    """Wake on every finished task (or every second, for the broker's polling) until `condition` holds."""
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            return False
        finished.wait(timeout=1)
        finished.clear()
    return True


class Finished(threading.Event):
    """Set whenever the worker finishes a task; remembers the names of the tasks it ran."""

    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []


@pytest.fixture
def worker():
    finished = Finished()

    def on_postrun(sender=None, **kwargs) -> None:
        finished.names.append(sender.name)
        finished.set()

    task_postrun.connect(on_postrun, weak=False)
    with start_worker(app, perform_ping_check=False, pool="solo", concurrency=1, shutdown_timeout=10):
        yield finished
    task_postrun.disconnect(on_postrun)


def test_it_refreshes_due_credentials_in_a_real_worker(alice, oauth_setup, worker):
    refresh_token = oauth_setup.issue_refresh_token(CLIENT_ID)
    client_credentials = oauth_credential_create(alice, oauth_setup, name="cc")
    rotating = oauth_credential_create(
        alice, oauth_setup, name="rt", kind=Kind.REFRESH_TOKEN, refresh_token=refresh_token
    )
    ids = [client_credentials.pk, rotating.pk]

    refresh_due_credentials.delay()  # what beat sends every REFRESH_SCAN_SECONDS

    def all_fresh() -> bool:
        rows = Credential.objects.filter(pk__in=ids, access_token_expires_at__gt=timezone.now())
        return rows.count() == 2

    assert _wait_until(all_fresh, worker), "the worker did not refresh both credentials in time"
    for credential in Credential.objects.filter(pk__in=ids):
        assert oauth_setup.is_valid_access_token(credential.access_token.reveal())
        assert credential.last_refreshed_at is not None
    assert oauth_setup.refresh_token_uses == {refresh_token: 1}
    assert CredentialEvent.objects.filter(kind="refreshed").count() == 2
    assert CredentialEvent.objects.filter(kind="rotated", credential_id=rotating.pk).count() == 1

    # The next beat finds nothing due: the tokens are good for an hour.
    refresh_due_credentials.delay()
    assert _wait_until(lambda: worker.names.count(refresh_due_credentials.name) == 2, worker)
    assert len(oauth_setup.token_requests) == 2
