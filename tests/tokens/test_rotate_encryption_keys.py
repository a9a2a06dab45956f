"""manage.py rotate_encryption_keys: re-seal under the first key, in batches, resumable, while rows stay readable."""

from __future__ import annotations

import threading

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, transaction

from tests.conftest import ALICE_KEY, CLIENT_ID, credential_create, oauth_credential_create
from tokens import lifecycle
from tokens.keyring import generate_key
from tokens.models import SEALED_FIELDS, Credential, CredentialEvent, Kind

pytestmark = pytest.mark.django_db

OLD, NEW = generate_key("old1"), generate_key("new2")


def _secrets() -> dict:
    """Every row's plaintext secrets, opened with whatever keys are configured now."""
    return {c.pk: tuple(getattr(c, name).reveal() for name in SEALED_FIELDS) for c in Credential.objects.order_by("pk")}


def _key_ids() -> set[str]:
    ids = set()
    for row in Credential.objects.values(*SEALED_FIELDS):
        ids |= {value.partition("$")[0] for value in row.values() if value}
    return ids


@pytest.fixture
def sealed_under_old(alice, bob, token_server, settings):
    settings.ENCRYPTION_KEYS = [OLD]
    for i in range(4):
        credential_create(alice, f"sk-alice-key-{i:030d}", name=f"key {i}")
    credential_create(bob, ALICE_KEY.replace("alice", "bob-x"), name="bob's")
    oauth_credential_create(
        alice, token_server, kind=Kind.REFRESH_TOKEN, refresh_token="rt_abc", access_token="at_abc", name="sso"
    )
    before = _secrets()
    settings.ENCRYPTION_KEYS = [NEW, OLD]  # the operator puts a new key first
    return before


def test_it_reseals_in_batches_and_every_row_opens_throughout(sealed_under_old):
    batches = 0
    while True:
        done, broken = lifecycle.credentials_reseal(batch_size=2)
        assert not broken
        if not done:
            break
        batches += 1
        assert _secrets() == sealed_under_old  # readable mid-rotation, old and new keys side by side
    assert batches == 3
    assert _key_ids() == {"new2"}
    assert CredentialEvent.objects.filter(kind="resealed").count() == 6
    assert "rt_abc" not in " ".join(CredentialEvent.objects.values_list("detail", flat=True))


def test_it_lets_the_old_key_go_once_it_finishes(sealed_under_old, settings):
    lifecycle.credentials_reseal(batch_size=3)  # an earlier run stopped half way
    call_command("rotate_encryption_keys", "--batch-size", "2")  # resumes
    settings.ENCRYPTION_KEYS = [NEW]
    assert _secrets() == sealed_under_old
    call_command("rotate_encryption_keys")  # nothing left: a no-op
    assert CredentialEvent.objects.filter(kind="resealed").count() == 6


def test_it_reports_rows_no_key_opens_and_finishes_the_rest(sealed_under_old, alice, settings):
    settings.ENCRYPTION_KEYS = [generate_key("lost")]
    orphan = credential_create(alice, "sk-alice-orphan-000000000000000000", name="orphan")
    settings.ENCRYPTION_KEYS = [NEW, OLD]
    with pytest.raises(CommandError, match="1 could not be opened"):
        call_command("rotate_encryption_keys")
    assert Credential.objects.sealed_with_old_key("new2").get() == orphan


def test_it_keeps_serving_refreshes_during_rotation(sealed_under_old, alice, oauth_setup):
    refresh_token = oauth_setup.issue_refresh_token(CLIENT_ID)
    credential = oauth_credential_create(alice, oauth_setup, kind=Kind.REFRESH_TOKEN, refresh_token=refresh_token)
    lifecycle.credentials_reseal(batch_size=2)
    assert lifecycle.credential_refresh(credential_id=credential.pk).outcome == "refreshed"
    call_command("rotate_encryption_keys")
    credential.refresh_from_db()
    assert oauth_setup.is_valid_access_token(credential.access_token.reveal())
    assert _key_ids() == {"new2"}


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_it_skips_locked_rows_and_comes_back_for_them(sealed_under_old):
    locked_pk = Credential.objects.order_by("pk").values_list("pk", flat=True).first()
    locked, release = threading.Event(), threading.Event()

    def hold_lock() -> None:
        try:
            with transaction.atomic():
                Credential.objects.select_for_update().get(pk=locked_pk)
                locked.set()
                release.wait(timeout=30)
        finally:
            connection.close()

    holder = threading.Thread(target=hold_lock)
    holder.start()
    assert locked.wait(timeout=10)
    done, _ = lifecycle.credentials_reseal(batch_size=100)
    assert done == 5  # everything but the locked row, without waiting for it
    assert list(Credential.objects.sealed_with_old_key("new2").values_list("pk", flat=True)) == [locked_pk]
    release.set()
    holder.join(timeout=10)
    call_command("rotate_encryption_keys")
    assert _key_ids() == {"new2"}


def test_it_reseals_two_factor_secrets_too(alice, settings):
    from allauth.mfa.models import Authenticator
    from allauth.mfa.totp.internal.auth import TOTP

    from tokens import mfa

    settings.ENCRYPTION_KEYS = [OLD]
    totp = TOTP.activate(alice, "JBSWY3DPEHPK3PXP").instance
    settings.ENCRYPTION_KEYS = [NEW, OLD]
    call_command("rotate_encryption_keys")
    totp.refresh_from_db()
    assert totp.data["secret"].startswith("new2$")
    settings.ENCRYPTION_KEYS = [NEW]  # the old key can go: the secret still opens
    assert mfa.MFAAdapter().decrypt(totp.data["secret"]) == "JBSWY3DPEHPK3PXP"
    assert Authenticator.objects.count() == 1
