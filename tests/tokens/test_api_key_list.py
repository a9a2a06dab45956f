"""/settings/api-keys/: create (shown once), list, revoke; staff see everyone's keys' metadata."""

from __future__ import annotations

import hashlib
import logging
import re
from datetime import timedelta

import pytest
from django.utils import timezone

from tests.api.conftest import key_issue
from tests.conftest import ALICE_KEY, PASSWORD, credential_create, user_create
from tokens.api_keys import ApiAuthError, api_bearer_verify
from tokens.models import ApiKey

pytestmark = pytest.mark.django_db

KEY_RE = re.compile(r"data-new-api-key>(byok_[0-9a-f]{12}_[A-Za-z0-9_\-]+)<")


@pytest.fixture
def alice_client(client, alice):
    """Signed in with the password just now: creating a key asks for it again unless it was typed in the last 5 min."""
    assert client.post("/accounts/login/", {"username": "alice", "password": PASSWORD}).status_code == 302
    return client


def test_a_session_alone_cannot_create_a_key_until_the_password_is_typed_again(client, alice):
    """A key outlives the session (a new password, two-factor, logging out): a stolen cookie must not mint one."""
    client.force_login(alice)  # a session without a recent log-in, as a copied cookie is
    response = client.post("/settings/api-keys/", {"name": "thief", "expiry": "never"})
    assert response.status_code == 302 and response["Location"].startswith("/accounts/reauthenticate/")
    assert not ApiKey.objects.exists()
    page = client.post(response["Location"], {"password": PASSWORD}).content.decode()  # allauth then carries it out
    assert KEY_RE.search(page) and ApiKey.objects.get().name == "thief"


def test_it_creates_a_key_shown_once_and_stores_only_its_hash(alice_client, alice, caplog):
    caplog.set_level(logging.DEBUG)
    credential = credential_create(alice, ALICE_KEY)
    response = alice_client.post(
        "/settings/api-keys/",
        {
            "name": "laptop",
            "expiry": "7",
            "allowed_models": "gpt-4o-mini, gpt-4o gpt-4o-mini",
            "credential": credential.pk,
        },
    )

    key = KEY_RE.search(response.content.decode()).group(1)
    row = ApiKey.objects.get()
    assert response.status_code == 200 and response["Cache-Control"].startswith("max-age=0")
    assert (row.name, row.allowed_models, row.credential) == ("laptop", ["gpt-4o-mini", "gpt-4o"], credential)
    assert timedelta(days=6) < row.expires_at - timezone.now() <= timedelta(days=7)
    assert row.secret_hash == hashlib.sha256(key.encode()).hexdigest() and key.startswith(f"byok_{row.prefix}_")
    again = alice_client.get("/settings/api-keys/").content.decode()
    assert key not in again and f"byok_{row.prefix}…" in again
    assert key not in caplog.text
    assert api_bearer_verify(key).user == alice


def test_it_keeps_what_was_typed_on_a_bad_form(alice_client):
    response = alice_client.post("/settings/api-keys/", {"name": "", "allowed_models": "gpt-4o", "expiry": "date"})

    assert response.status_code == 400
    page = response.content.decode()
    assert 'role="alert"' in page and 'value="gpt-4o"' in page
    assert not ApiKey.objects.exists()


def test_it_refuses_another_users_credential(alice_client, bob):
    bobs = credential_create(bob, "sk-bob-0000000000000000000000000")

    response = alice_client.post("/settings/api-keys/", {"name": "x", "expiry": "never", "credential": bobs.pk})

    assert response.status_code == 400 and not ApiKey.objects.exists()


def test_it_lists_and_revokes_at_once(alice_client, alice):
    issued = key_issue(alice, name="ci")
    page = alice_client.get("/settings/api-keys/").content.decode()
    assert 'data-action="revoke"' in page and "ci" in page

    response = alice_client.post(f"/settings/api-keys/{issued.row.pk}/revoke/", follow=True)

    issued.row.refresh_from_db()
    assert issued.row.state == "revoked" and issued.row.revoked_by == "alice"
    assert 'data-api-key-state="revoked"' in response.content.decode()
    with pytest.raises(ApiAuthError):
        api_bearer_verify(issued.key)


def test_bob_cannot_revoke_alices_key(client, alice, bob):
    issued = key_issue(alice)
    client.force_login(bob)

    response = client.post(f"/settings/api-keys/{issued.row.pk}/revoke/")

    assert response.status_code == 404
    assert api_bearer_verify(issued.key).user == alice
    assert f"byok_{issued.row.prefix}" not in client.get("/settings/api-keys/").content.decode()


def test_staff_see_everyones_key_metadata_and_revoke(client, alice, staff):
    issued = key_issue(alice, name="alice-notebook")
    client.force_login(staff)

    page = client.get("/settings/api-keys/").content.decode()
    client.post(f"/settings/api-keys/{issued.row.pk}/revoke/")

    assert "alice-notebook" in page and f"byok_{issued.row.prefix}…" in page
    assert issued.row.secret_hash not in page
    issued.row.refresh_from_db()
    assert issued.row.state == "revoked" and issued.row.revoked_by == "staff"


def test_staff_who_are_not_superusers_cannot_revoke_a_superusers_key(client, staff):
    root = user_create("root", is_staff=True, is_superuser=True)
    issued = key_issue(root, name="backup-job")
    client.force_login(staff)
    assert client.post(f"/settings/api-keys/{issued.row.pk}/revoke/").status_code == 404
    assert api_bearer_verify(issued.key).user == root
    assert "backup-job" not in client.get("/settings/api-keys/").content.decode()
    client.force_login(root)
    client.post(f"/settings/api-keys/{issued.row.pk}/revoke/")  # a superuser still manages it, as its owner
    issued.row.refresh_from_db()
    assert issued.row.state == "revoked"


def test_anonymous_is_sent_to_log_in(client):
    assert client.get("/settings/api-keys/")["Location"].startswith("/accounts/login/")
    assert client.post("/settings/api-keys/1/revoke/")["Location"].startswith("/accounts/login/")
