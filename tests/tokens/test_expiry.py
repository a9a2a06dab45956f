"""Owner-set expiry: when it passes, beat wipes the secrets, records it and tells the owner."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.core import mail
from django.utils import timezone

from tests.conftest import ALICE_KEY, CLIENT_ID, credential_create, oauth_credential_create
from tokens import lifecycle, tasks
from tokens.lifecycle import CredentialError
from tokens.models import Credential, CredentialEvent, Kind, Status
from tokens.services import credential_bearer

pytestmark = pytest.mark.django_db

SEALED = ("api_key", "client_secret", "refresh_token", "access_token")


def test_it_wipes_an_api_key_when_its_expiry_passes(alice):
    credential = credential_create(alice, ALICE_KEY, expires_at=timezone.now() + timedelta(days=1))
    assert tasks.expire_credentials() == 0
    with time_machine.travel(timezone.now() + timedelta(days=1, minutes=1), tick=False):
        assert tasks.expire_credentials() == 1
        assert tasks.expire_credentials() == 0  # once
    raw = Credential.objects.filter(pk=credential.pk).values(*SEALED).get()
    assert raw == dict.fromkeys(SEALED, "")
    credential.refresh_from_db()
    assert credential.status == Status.EXPIRED and "secrets deleted" in credential.status_detail
    assert CredentialEvent.objects.filter(credential_id=credential.pk, kind="expired").count() == 1
    assert len(mail.outbox) == 1 and "has expired" in mail.outbox[0].subject
    with pytest.raises(CredentialError, match="has expired"):
        credential_bearer(credential=credential)


def test_it_wipes_every_secret_of_an_oauth_credential(alice, oauth_setup):
    refresh_token = oauth_setup.issue_refresh_token(CLIENT_ID)
    credential = oauth_credential_create(alice, oauth_setup, kind=Kind.REFRESH_TOKEN, refresh_token=refresh_token)
    lifecycle.credential_refresh(credential_id=credential.pk)
    Credential.objects.filter(pk=credential.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert lifecycle.credential_expire(credential_id=credential.pk)
    raw = Credential.objects.filter(pk=credential.pk).values(*SEALED, "access_token_expires_at").get()
    assert raw == {**dict.fromkeys(SEALED, ""), "access_token_expires_at": None}
    assert tasks.refresh_due_credentials() == 0  # nothing left to refresh


def test_it_shows_the_expired_status_on_the_keys_page(alice_client, alice):
    credential = credential_create(alice, ALICE_KEY, expires_at=timezone.now() - timedelta(minutes=1))
    tasks.expire_credentials()
    page = alice_client.get("/settings/keys/").content.decode()
    assert f'data-credential-status="expired" data-credential-id="{credential.pk}"' in page
