"""Refreshing OAuth2 access tokens: beat's fan-out, single flight, rotation, failures, chat meeting an expired token."""

from __future__ import annotations

import itertools
import threading
from datetime import timedelta

import pytest
import time_machine
from celery.signals import task_prerun
from django.core import mail
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from tests.conftest import CLIENT_ID, oauth_credential_create
from tokens import lifecycle, tasks
from tokens.lifecycle import CredentialError
from tokens.models import Credential, CredentialEvent, Kind, Status
from tokens.services import credential_bearer

pytestmark = pytest.mark.django_db


def _events(credential: Credential) -> list[str]:
    events = CredentialEvent.objects.filter(credential_id=credential.pk).order_by("id")
    return list(events.values_list("kind", flat=True))


def test_it_refreshes_a_client_credentials_token_before_it_expires(alice, oauth_setup, celery_eager, settings):
    credential = oauth_credential_create(alice, oauth_setup)
    assert tasks.refresh_due_credentials() == 1  # no token yet: due at once
    credential.refresh_from_db()
    first = credential.access_token.reveal()
    assert oauth_setup.is_valid_access_token(first)
    assert tasks.refresh_due_credentials() == 0  # fresh for an hour

    margin = settings.REFRESH_MARGIN_SECONDS
    with time_machine.travel(credential.access_token_expires_at - timedelta(seconds=margin - 10), tick=False):
        assert oauth_setup.is_valid_access_token(first)  # still valid, but inside the margin
        assert tasks.refresh_due_credentials() == 1
        credential.refresh_from_db()
        assert credential.access_token.reveal() != first
        assert oauth_setup.is_valid_access_token(credential.access_token.reveal())
    assert _events(credential) == ["refreshed", "refreshed"]
    assert credential.failure_count == 0 and credential.refresh_claimed_until is None


def test_it_stores_a_rotated_refresh_token_and_never_uses_the_old_one(alice, oauth_setup, celery_eager):
    original = oauth_setup.issue_refresh_token(CLIENT_ID)
    credential = oauth_credential_create(alice, oauth_setup, kind=Kind.REFRESH_TOKEN, refresh_token=original)

    seen = [original]
    for _ in range(3):
        Credential.objects.filter(pk=credential.pk).update(access_token_expires_at=timezone.now())
        assert lifecycle.credential_refresh(credential_id=credential.pk).outcome == "refreshed"
        credential.refresh_from_db()
        seen.append(credential.refresh_token.reveal())

    assert len(set(seen)) == 4  # rotated each time
    assert all(oauth_setup.refresh_token_uses[token] == 1 for token in seen[:-1])
    assert seen[-1] not in oauth_setup.refresh_token_uses  # the current one is unused so far
    assert _events(credential).count("rotated") == 3
    details = " ".join(CredentialEvent.objects.values_list("detail", flat=True))
    assert not any(token in details for token in seen)


def _all_at_once(workers: int, call, prepare=lambda: None) -> list:
    """In that many threads, run prepare, then call(prepared) released together by a barrier; collect results."""
    barrier, results = threading.Barrier(workers), []

    def run() -> None:
        try:
            prepared = prepare()
            barrier.wait(timeout=10)
            results.append(call(prepared))
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return results


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("kind", [Kind.CLIENT_CREDENTIALS, Kind.REFRESH_TOKEN])
def test_it_refreshes_once_when_many_workers_try_at_once(alice, oauth_setup, kind):
    refresh_token = oauth_setup.issue_refresh_token(CLIENT_ID) if kind == Kind.REFRESH_TOKEN else ""
    credential = oauth_credential_create(alice, oauth_setup, kind=kind, refresh_token=refresh_token)
    workers = 8
    outcomes = _all_at_once(workers, lambda _: lifecycle.credential_refresh(credential_id=credential.pk).outcome)

    assert sorted(outcomes) == ["refreshed"] + ["skipped"] * (workers - 1)
    assert len(oauth_setup.token_requests) == 1
    if refresh_token:
        assert oauth_setup.refresh_token_uses == {refresh_token: 1}
    credential.refresh_from_db()
    assert oauth_setup.is_valid_access_token(credential.access_token.reveal())


@pytest.mark.django_db(transaction=True)
def test_it_refreshes_once_when_many_chats_meet_an_expired_token(alice, oauth_setup):
    refresh_token = oauth_setup.issue_refresh_token(CLIENT_ID)
    credential = oauth_credential_create(alice, oauth_setup, kind=Kind.REFRESH_TOKEN, refresh_token=refresh_token)
    workers = 6
    # Every chat loads the row, expired token and all, before any of them refreshes.
    tokens = _all_at_once(
        workers,
        lambda row: credential_bearer(credential=row).token,
        prepare=lambda: Credential.objects.get(pk=credential.pk),
    )

    assert len(tokens) == workers and len(set(tokens)) == 1  # everyone waited for the one refresh
    assert oauth_setup.is_valid_access_token(tokens[0])
    assert oauth_setup.refresh_token_uses == {refresh_token: 1}


def test_it_refreshes_inline_when_chat_meets_an_expired_token(alice, oauth_setup):
    credential = oauth_credential_create(alice, oauth_setup)
    lifecycle.credential_refresh(credential_id=credential.pk)
    credential.refresh_from_db()
    old = credential.access_token.reveal()
    # Beat was down for two hours.
    with time_machine.travel(timezone.now() + timedelta(hours=2), tick=False):
        assert not oauth_setup.is_valid_access_token(old)
        bearer = credential_bearer(credential=Credential.objects.get(pk=credential.pk))
        assert bearer.token != old and oauth_setup.is_valid_access_token(bearer.token)
    assert "token=<hidden>" in repr(bearer)


def test_it_gives_up_on_invalid_grant_and_emails_once(alice, oauth_setup, celery_eager):
    credential = oauth_credential_create(alice, oauth_setup, kind=Kind.REFRESH_TOKEN, refresh_token="rt_revoked")
    assert tasks.refresh_credential(str(credential.pk)) == "failed"
    credential.refresh_from_db()
    assert credential.status == Status.NEEDS_ATTENTION
    assert "invalid_grant" in credential.status_detail
    assert len(mail.outbox) == 1 and credential.name in mail.outbox[0].subject
    assert "rt_revoked" not in mail.outbox[0].body

    # Nothing more happens: not due any more, no second email, chat says so plainly.
    assert tasks.refresh_due_credentials() == 0
    with pytest.raises(CredentialError, match="needs attention: The token endpoint refused the refresh token"):
        credential_bearer(credential=credential)
    assert len(mail.outbox) == 1
    assert len(oauth_setup.token_requests) == 1
    assert _events(credential) == ["refresh_failed", "status_changed", "notified"]


def test_it_gives_up_on_invalid_client(alice, oauth_setup):
    credential = oauth_credential_create(alice, oauth_setup, client_secret="rotated-away-by-admin")
    result = lifecycle.credential_refresh(credential_id=credential.pk)
    assert result.outcome == "failed"
    credential.refresh_from_db()
    assert credential.status == Status.NEEDS_ATTENTION and "invalid_client" in credential.status_detail
    assert len(mail.outbox) == 1


def test_it_backs_off_on_server_errors_then_needs_attention_after_five(alice, oauth_setup, settings):
    credential = oauth_credential_create(alice, oauth_setup)
    oauth_setup.fail_next(503, times=10)
    now = timezone.now()
    delays = []
    with time_machine.travel(now, tick=False) as clock:
        for attempt in range(1, settings.REFRESH_MAX_FAILURES):
            result = lifecycle.credential_refresh(credential_id=credential.pk)
            assert result.outcome == "retry"
            credential.refresh_from_db()
            assert credential.failure_count == attempt and credential.status == Status.ACTIVE
            ceiling = min(1800, 30 * 2 ** (attempt - 1))
            assert ceiling / 2 <= result.retry_in <= ceiling  # exponential, with jitter
            assert credential.retry_at == timezone.now() + timedelta(seconds=result.retry_in)
            # Not due again before its retry time.
            assert lifecycle.credential_refresh(credential_id=credential.pk).outcome == "skipped"
            delays.append(result.retry_in)
            clock.shift(result.retry_in + 1)
        result = lifecycle.credential_refresh(credential_id=credential.pk)
    assert result.outcome == "failed"
    credential.refresh_from_db()
    assert credential.status == Status.NEEDS_ATTENTION and "5 times" in credential.status_detail
    assert len(mail.outbox) == 1
    assert len(oauth_setup.token_requests) == settings.REFRESH_MAX_FAILURES
    assert delays == sorted(delays)


def test_it_retries_a_timeout_at_retry_at_from_beat_not_through_celery(alice, oauth_setup, settings, celery_eager):
    settings.CHECK_TIMEOUT = 0.3
    credential = oauth_credential_create(alice, oauth_setup)
    oauth_setup.hang_next()
    now = timezone.now()
    with time_machine.travel(now, tick=False) as clock:
        assert tasks.refresh_credentials() == 0  # returns normally: no Celery retry is scheduled
        credential.refresh_from_db()
        assert credential.failure_count == 1 and credential.refresh_claimed_until is None
        assert now + timedelta(seconds=15) <= credential.retry_at <= now + timedelta(seconds=30)
        assert tasks.refresh_due_credentials() == 0  # backing off
        clock.move_to(credential.retry_at + timedelta(seconds=1))
        assert tasks.refresh_due_credentials() == 1  # beat's next scan is the retry
    credential.refresh_from_db()
    assert credential.failure_count == 0 and credential.retry_at is None
    assert oauth_setup.is_valid_access_token(credential.access_token.reveal())
    assert _events(credential) == ["refresh_failed", "refreshed"]


def test_it_fans_out_one_task_per_batch_and_refreshes_every_due_credential(alice, oauth_setup, settings, celery_eager):
    settings.REFRESH_BATCH_SIZE = 3
    credentials = [oauth_credential_create(alice, oauth_setup, name=f"c{i}") for i in range(7)]
    batches = []

    def count(task=None, **kwargs) -> None:
        batches.append(task.name)

    task_prerun.connect(count, weak=False)
    try:
        assert tasks.refresh_due_credentials() == 7
    finally:
        task_prerun.disconnect(count)
    assert batches.count("tokens.tasks.refresh_credentials") == 3  # ceil(7 / 3)
    assert len(oauth_setup.token_requests) == 7
    for credential in credentials:
        credential.refresh_from_db()
        assert oauth_setup.is_valid_access_token(credential.access_token.reveal())
        assert credential.refresh_claimed_until is None


def test_it_refreshes_a_batch_in_a_constant_number_of_queries(alice, oauth_setup):
    def queries_for(count: int) -> int:
        for i in range(count):
            oauth_credential_create(alice, oauth_setup, name=f"{count}-{i}")
        with CaptureQueriesContext(connection) as captured:
            results = lifecycle.credentials_refresh_due(limit=count)
        assert [r.outcome for r in results] == ["refreshed"] * count
        return len(captured)

    small, large = queries_for(2), queries_for(10)
    # Claim, load, lock, one UPDATE for all rows, one INSERT of events; plus the 4 SAVEPOINT/RELEASE statements
    # of running inside the test's transaction.
    assert small == large <= 10


def test_it_stores_rotated_and_unrotated_refresh_tokens_of_one_batch(alice, oauth_setup):
    first = oauth_setup.issue_refresh_token(CLIENT_ID)
    rotating = oauth_credential_create(
        alice, oauth_setup, name="rotating", kind=Kind.REFRESH_TOKEN, refresh_token=first
    )
    plain = oauth_credential_create(alice, oauth_setup, name="client credentials")
    assert lifecycle.credentials_refresh_due(limit=10) == [lifecycle.RefreshResult("refreshed")] * 2
    rotating.refresh_from_db()
    second = rotating.refresh_token.reveal()
    assert second not in ("", first)

    oauth_setup.rotate_refresh_tokens = False  # the provider now answers without a new refresh token
    Credential.objects.update(access_token_expires_at=timezone.now())
    assert lifecycle.credentials_refresh_due(limit=10) == [lifecycle.RefreshResult("refreshed")] * 2
    for credential in (rotating, plain):
        credential.refresh_from_db()
        assert oauth_setup.is_valid_access_token(credential.access_token.reveal())
        assert credential.status == Status.ACTIVE and credential.refresh_claimed_until is None
    assert rotating.refresh_token.reveal() == second  # kept, still sealed for its row
    assert not plain.refresh_token
    assert _events(rotating) == ["refreshed", "rotated", "refreshed"]


@pytest.mark.django_db(transaction=True)
def test_it_refreshes_each_credential_once_when_batches_race(alice, oauth_setup, settings):
    settings.REFRESH_BATCH_SIZE = 3
    rotating = [oauth_setup.issue_refresh_token(CLIENT_ID) for _ in range(10)]
    ids = [
        oauth_credential_create(alice, oauth_setup, name=f"rt{i}", kind=Kind.REFRESH_TOKEN, refresh_token=token).pk
        for i, token in enumerate(rotating)
    ]
    ids += [oauth_credential_create(alice, oauth_setup, name=f"cc{i}").pk for i in range(10)]

    def drain(_) -> int:
        refreshed = 0
        while results := lifecycle.credentials_refresh_due(limit=3):
            refreshed += sum(r.outcome == "refreshed" for r in results)
        return refreshed

    assert sum(_all_at_once(6, drain)) == 20
    assert len(oauth_setup.token_requests) == 20  # no credential refreshed twice
    assert oauth_setup.refresh_token_uses == dict.fromkeys(rotating, 1)
    for credential in Credential.objects.filter(pk__in=ids):
        assert oauth_setup.is_valid_access_token(credential.access_token.reveal())
        assert credential.refresh_claimed_until is None
    assert CredentialEvent.objects.filter(kind="refreshed").count() == 20


@pytest.mark.django_db(transaction=True)
def test_it_refreshes_once_when_a_batch_and_chats_meet_the_same_expired_token(alice, oauth_setup):
    refresh_token = oauth_setup.issue_refresh_token(CLIENT_ID)
    credential = oauth_credential_create(alice, oauth_setup, kind=Kind.REFRESH_TOKEN, refresh_token=refresh_token)

    def either(index: int):
        if index % 2:
            return lifecycle.credentials_refresh_due(limit=5)
        return credential_bearer(credential=Credential.objects.get(pk=credential.pk)).token

    counter = itertools.count()  # next() on it is atomic: each thread gets its own index
    results = _all_at_once(6, either, prepare=lambda: next(counter))
    tokens = {r for r in results if isinstance(r, str)}
    assert len(tokens) == 1 and oauth_setup.is_valid_access_token(tokens.pop())
    assert oauth_setup.refresh_token_uses == {refresh_token: 1}


def test_it_recovers_and_resets_the_failure_count(alice, oauth_setup):
    credential = oauth_credential_create(alice, oauth_setup)
    oauth_setup.fail_next(500)
    assert lifecycle.credential_refresh(credential_id=credential.pk).outcome == "retry"
    Credential.objects.filter(pk=credential.pk).update(retry_at=timezone.now())
    assert lifecycle.credential_refresh(credential_id=credential.pk).outcome == "refreshed"
    credential.refresh_from_db()
    assert credential.failure_count == 0 and credential.retry_at is None
    assert _events(credential) == ["refresh_failed", "refreshed"]


def test_it_keeps_nothing_when_the_credential_expired_during_the_refresh(alice, oauth_setup):
    credential = oauth_credential_create(alice, oauth_setup)
    grant = lifecycle.grant_fetch(credential)
    Credential.objects.filter(pk=credential.pk).update(status=Status.EXPIRED)
    assert not lifecycle._refresh_store(credential, grant, actor="system")
    credential.refresh_from_db()
    assert not credential.access_token


def test_it_skips_api_keys_and_unusable_credentials(alice, oauth_setup, celery_eager):
    from tests.conftest import ALICE_KEY, credential_create

    credential_create(alice, ALICE_KEY)
    oauth_credential_create(alice, oauth_setup, name="broken", status=Status.INVALID)
    oauth_credential_create(alice, oauth_setup, name="gone", status=Status.EXPIRED)
    assert tasks.refresh_due_credentials() == 0
    assert oauth_setup.token_requests == []
