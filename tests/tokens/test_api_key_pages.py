from __future__ import annotations

import pytest

from tests.conftest import ALICE_KEY, BOB_KEY, credential_create
from tests.fakes.server import FakeServer
from tokens.models import Credential, CredentialEvent

pytestmark = pytest.mark.django_db


def test_it_checks_and_saves_a_key_showing_only_a_mask(alice_client, fake_openai):
    fake_openai.valid_keys = {ALICE_KEY}
    response = alice_client.post(
        "/settings/keys/", {"kind": "api_key", "name": "Work", "api_key": ALICE_KEY}, follow=True
    )
    credential = Credential.objects.get()
    assert credential.status == "active" and credential.is_default
    assert fake_openai.requests[-1].route == "/v1/models" and fake_openai.requests[-1].bearer == ALICE_KEY
    page = response.content.decode()
    assert 'data-credential-status="active"' in page
    assert "sk-…0001" in page
    assert ALICE_KEY not in page
    assert CredentialEvent.objects.get().kind == "created"


def test_it_refuses_a_rejected_key_and_stores_nothing(alice_client, fake_openai):
    fake_openai.valid_keys = {"sk-some-other-key"}
    response = alice_client.post("/settings/keys/", {"kind": "api_key", "name": "Work", "api_key": ALICE_KEY})
    assert response.status_code == 400
    page = response.content.decode()
    assert 'role="alert"' in page and "rejected this credential (401" in page
    assert "keys page" not in page.split('role="alert"')[1].split("</")[0]  # it is the keys page
    assert 'value="Work"' in page  # what they typed stays, except the secret
    assert ALICE_KEY not in page
    assert not Credential.objects.exists()


def test_it_stores_an_unverified_key_when_the_provider_is_unreachable(alice_client, settings):
    server = FakeServer()
    settings.OPENAI_BASE_URL = server.url + "/v1"
    server.close()  # nothing listens there any more
    response = alice_client.post("/settings/keys/", {"kind": "api_key", "name": "", "api_key": ALICE_KEY}, follow=True)
    credential = Credential.objects.get()
    assert credential.status == "unverified"
    assert "Could not connect" in credential.status_detail
    assert 'data-credential-status="unverified"' in response.content.decode()


def test_it_replaces_a_key(alice_client, alice, fake_openai):
    credential = credential_create(alice, ALICE_KEY)
    new_key = "sk-alice-replacement-key-0000000009"
    response = alice_client.post(f"/settings/keys/{credential.pk}/replace/", {"api_key": new_key}, follow=True)
    credential.refresh_from_db()
    assert credential.api_key.reveal() == new_key and credential.hint == "sk-…0009"
    assert new_key not in response.content.decode()


def test_it_deletes_a_key_and_promotes_another_default(alice_client, alice):
    first = credential_create(alice, ALICE_KEY)
    second = credential_create(alice, "sk-alice-second-0000000000000000000")
    alice_client.post(f"/settings/keys/{first.pk}/delete/")
    assert list(Credential.objects.all()) == [second]
    second.refresh_from_db()
    assert second.is_default
    assert CredentialEvent.objects.filter(kind="deleted", credential_id=first.pk).exists()


def test_it_makes_a_key_the_default(alice_client, alice):
    first = credential_create(alice, ALICE_KEY)
    second = credential_create(alice, "sk-alice-second-0000000000000000000")
    alice_client.post(f"/settings/keys/{second.pk}/default/")
    first.refresh_from_db()
    second.refresh_from_db()
    assert second.is_default and not first.is_default


def test_it_shows_the_history(alice_client, alice, fake_openai):
    alice_client.post("/settings/keys/", {"kind": "api_key", "name": "Work", "api_key": ALICE_KEY})
    credential = Credential.objects.get()
    alice_client.post(f"/settings/keys/{credential.pk}/check/")
    page = alice_client.get(f"/settings/keys/{credential.pk}/").content.decode()
    assert "Created" in page and "Checked" in page
    assert ALICE_KEY not in page


@pytest.mark.parametrize(
    ("method", "suffix"),
    [("get", ""), ("post", "replace/"), ("post", "check/"), ("post", "default/"), ("post", "delete/")],
)
def test_it_hides_other_users_credentials(client, alice, bob, method, suffix):
    theirs = credential_create(alice, ALICE_KEY)
    client.force_login(bob)
    response = getattr(client, method)(f"/settings/keys/{theirs.pk}/{suffix}", {"api_key": BOB_KEY})
    assert response.status_code == 404
    theirs.refresh_from_db()
    assert theirs.api_key.reveal() == ALICE_KEY


def test_it_sends_anonymous_visitors_to_log_in(client, alice):
    credential = credential_create(alice, ALICE_KEY)
    response = client.get(f"/settings/keys/{credential.pk}/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def test_it_refuses_a_private_base_url(alice_client, fake_openai):
    response = alice_client.post(
        "/settings/keys/", {"kind": "api_key", "name": "x", "api_key": ALICE_KEY, "base_url": "http://127.0.0.1:9/v1"}
    )
    assert response.status_code == 400
    assert "Only https:// URLs are allowed" in response.content.decode()
    assert not Credential.objects.exists()
