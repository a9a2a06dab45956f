"""The audit trail as users and staff see it: every event with time and actor, never a secret."""

from __future__ import annotations

import pytest
from django.utils import timezone

from tests.conftest import CLIENT_ID, CLIENT_SECRET, oauth_credential_create
from tokens import lifecycle
from tokens.models import Credential, CredentialEvent, Kind

pytestmark = pytest.mark.django_db


@pytest.fixture
def refreshed(alice, oauth_setup) -> tuple[Credential, list[str]]:
    first = oauth_setup.issue_refresh_token(CLIENT_ID)
    credential = oauth_credential_create(alice, oauth_setup, kind=Kind.REFRESH_TOKEN, refresh_token=first)
    lifecycle.credential_refresh(credential_id=credential.pk)
    credential.refresh_from_db()
    secrets = [CLIENT_SECRET, first, credential.refresh_token.reveal(), credential.access_token.reveal()]
    return credential, secrets


def test_it_shows_the_owner_each_refresh_and_rotation(alice_client, refreshed):
    credential, secrets = refreshed
    page = alice_client.get(f"/settings/keys/{credential.pk}/").content.decode()
    assert "Token refreshed" in page and "Refresh token rotated" in page and "by system" in page
    assert 'data-credential-status="active"' in page
    assert "Access token expires" in page and "Token URL" in page
    assert not any(secret in page for secret in secrets)


def test_it_shows_needs_attention_plainly_on_the_keys_page(alice_client, alice, oauth_setup):
    credential = oauth_credential_create(alice, oauth_setup, kind=Kind.REFRESH_TOKEN, refresh_token="rt_dead")
    lifecycle.credential_refresh(credential_id=credential.pk)
    page = alice_client.get("/settings/keys/").content.decode()
    assert 'data-credential-status="needs_attention"' in page
    assert "Needs attention" in page and "invalid_grant" in page
    detail = alice_client.get(f"/settings/keys/{credential.pk}/").content.decode()
    assert "Refresh failed" in detail and "Owner notified" in detail


def test_it_shows_staff_everyones_events_in_the_admin(client, staff, refreshed):
    credential, secrets = refreshed
    client.force_login(staff)
    staff.is_superuser = True
    staff.save()
    events = client.get("/admin/tokens/credentialevent/").content.decode()
    assert "Token refreshed" in events and credential.name in events and "alice" in events
    detail = client.get(f"/admin/tokens/credential/{credential.pk}/change/").content.decode()
    assert not any(secret in events + detail for secret in secrets)


def test_it_keeps_the_trail_after_deletion(alice_client, refreshed):
    credential, _ = refreshed
    alice_client.post(f"/settings/keys/{credential.pk}/delete/")
    kinds = set(CredentialEvent.objects.filter(credential_id=credential.pk).values_list("kind", flat=True))
    assert {"refreshed", "rotated", "deleted"} <= kinds
    assert CredentialEvent.objects.filter(kind="deleted", actor="alice", created_at__lte=timezone.now()).exists()
