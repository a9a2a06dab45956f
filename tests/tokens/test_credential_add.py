"""Adding OAuth2 credentials on /settings/keys/: checked on save, clear refusals, secrets never echoed."""

from __future__ import annotations

import base64
from datetime import UTC, date, datetime, timedelta

import pytest
from django.utils import timezone

from tests.conftest import ALICE_KEY, CLIENT_ID, CLIENT_SECRET, credential_create
from tokens.forms import AZURE_SCOPE, CredentialForm
from tokens.models import Credential, CredentialEvent, Kind

pytestmark = pytest.mark.django_db


def _client_credentials(token_server, **overrides) -> dict:
    return {
        "kind": "oauth2_client_credentials",
        "name": "Gateway",
        "token_url": token_server.token_url,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "scope": "models.read",
        "client_auth": "client_secret_basic",
        **overrides,
    }


def _refresh_token_form(token_server, refresh_token: str) -> dict:
    return {
        "kind": "oauth2_refresh_token",
        "name": "SSO",
        "token_url": token_server.token_url,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "refresh_token": refresh_token,
    }


@pytest.mark.parametrize("client_auth", ["client_secret_basic", "client_secret_post"])
def test_it_saves_a_client_credentials_credential_after_getting_a_token(alice_client, oauth_setup, client_auth):
    response = alice_client.post(
        "/settings/keys/", _client_credentials(oauth_setup, client_auth=client_auth), follow=True
    )
    credential = Credential.objects.get()
    assert (credential.kind, credential.status, credential.client_auth) == (
        Kind.CLIENT_CREDENTIALS,
        "active",
        client_auth,
    )
    token = credential.access_token.reveal()
    assert oauth_setup.is_valid_access_token(token)
    assert credential.client_secret.reveal() == CLIENT_SECRET
    request = oauth_setup.token_requests[-1]
    if client_auth == "client_secret_basic":
        basic = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        assert request.headers["authorization"] == f"Basic {basic}"
    else:
        assert request.form()["client_secret"] == CLIENT_SECRET and "authorization" not in request.headers
    assert response.context is not None  # the page rendered
    page = response.content.decode()
    assert 'data-credential-status="active"' in page
    assert CLIENT_SECRET not in page and token not in page
    assert CredentialEvent.objects.get().kind == "created"


def test_it_saves_a_refresh_token_credential_keeping_the_rotated_token(alice_client, oauth_setup):
    typed = oauth_setup.issue_refresh_token(CLIENT_ID)
    response = alice_client.post("/settings/keys/", _refresh_token_form(oauth_setup, typed))
    assert response.status_code == 302
    credential = Credential.objects.get()
    stored = credential.refresh_token.reveal()
    assert stored != typed and oauth_setup.refresh_token_uses == {typed: 1}
    assert credential.status == "active"


def test_it_refuses_a_wrong_client_secret_keeping_what_was_typed_except_secrets(alice_client, oauth_setup):
    response = alice_client.post("/settings/keys/", _client_credentials(oauth_setup, client_secret="not-the-secret"))
    assert response.status_code == 400
    page = response.content.decode()
    assert 'role="alert"' in page and "did not accept the client ID and secret (invalid_client)" in page
    assert "Nothing was saved" in page
    for kept in (f'value="{oauth_setup.token_url}"', f'value="{CLIENT_ID}"', 'value="models.read"', 'value="Gateway"'):
        assert kept in page
    assert "not-the-secret" not in page
    assert '<option value="oauth2_client_credentials" selected>' in page
    assert not Credential.objects.exists()


def test_it_refuses_a_revoked_refresh_token(alice_client, oauth_setup):
    response = alice_client.post("/settings/keys/", _refresh_token_form(oauth_setup, "rt_revoked_long_ago"))
    assert response.status_code == 400
    assert "invalid_grant" in response.content.decode()
    assert "rt_revoked_long_ago" not in response.content.decode()


def test_it_refuses_a_token_the_provider_rejects(alice_client, oauth_setup, fake_openai):
    fake_openai.authorize = lambda bearer: False
    response = alice_client.post("/settings/keys/", _client_credentials(oauth_setup))
    assert response.status_code == 400
    assert "rejected this credential (401" in response.content.decode()
    assert not Credential.objects.exists()


@pytest.mark.parametrize(
    ("missing", "message"),
    [
        ("token_url", "Enter the token URL."),
        ("client_id", "Enter the client ID."),
        ("client_secret", "Paste the client secret."),
    ],
)
def test_it_asks_for_each_missing_field(alice_client, oauth_setup, missing, message):
    response = alice_client.post("/settings/keys/", _client_credentials(oauth_setup, **{missing: ""}))
    assert response.status_code == 400
    assert message in response.content.decode()
    assert oauth_setup.token_requests == []


@pytest.mark.parametrize(
    ("token_url", "message"),
    [
        ("http://login.example.com/token", "Token URL refused: Only https:// URLs are allowed."),
        ("https://127.0.0.1:8443/token", "Token URL refused: 127.0.0.1 resolves to a private or reserved address"),
        ("https://169.254.169.254/latest/token", "resolves to a private or reserved address (169.254.169.254)"),
        ("https://10.1.2.3/token", "resolves to a private or reserved address (10.1.2.3)"),
    ],
)
def test_it_refuses_an_unsafe_token_url(alice_client, token_server, fake_openai, token_url, message):
    response = alice_client.post("/settings/keys/", _client_credentials(token_server, token_url=token_url))
    assert response.status_code == 400
    page = response.content.decode()
    assert message in page and 'class="field-error" role="alert"' in page
    assert token_server.token_requests == [] and not Credential.objects.exists()


def test_it_fills_the_azure_preset_from_a_tenant_id():
    form = CredentialForm(
        {
            "kind": "oauth2_client_credentials",
            "preset": "azure",
            "tenant_id": "11111111-2222-3333-4444-555555555555",
            "client_id": "app",
            "client_secret": "s",
        }
    )
    assert form.is_valid(), form.errors
    fields = form.credential_fields()
    assert fields["token_url"] == (
        "https://login.microsoftonline.com/11111111-2222-3333-4444-555555555555/oauth2/v2.0/token"
    )
    assert fields["scope"] == AZURE_SCOPE == "https://cognitiveservices.azure.com/.default"
    assert fields["client_auth"] == "client_secret_basic"


def test_it_refuses_a_malformed_tenant_id():
    form = CredentialForm({"kind": "oauth2_client_credentials", "preset": "azure", "tenant_id": "../../evil"})
    assert not form.is_valid() and "tenant ID" in form.errors["tenant_id"][0]


def test_it_marks_every_field_with_the_kinds_it_belongs_to(alice_client):
    page = alice_client.get("/settings/keys/").content.decode()
    assert 'name="refresh_token"' in page and 'data-kinds="oauth2_refresh_token"' in page
    assert 'data-kinds="oauth2_client_credentials oauth2_refresh_token"' in page
    assert "tokens/keys.js" in page and "tokens/keys.css" in page
    assert "style=" not in page and "<script>" not in page  # strict CSP: no inline style or script


@pytest.mark.parametrize(("choice", "days"), [("1", 1), ("7", 7), ("30", 30)])
def test_it_sets_an_expiry_when_saving(alice_client, fake_openai, choice, days):
    alice_client.post("/settings/keys/", {"kind": "api_key", "name": "Temp", "api_key": ALICE_KEY, "expiry": choice})
    expires_at = Credential.objects.get().expires_at
    assert abs(expires_at - (timezone.now() + timedelta(days=days))) < timedelta(minutes=1)


def test_it_sets_an_expiry_date(alice_client, fake_openai):
    day = date.today() + timedelta(days=3)
    alice_client.post(
        "/settings/keys/",
        {"kind": "api_key", "name": "Temp", "api_key": ALICE_KEY, "expiry": "date", "expires_on": day.isoformat()},
    )
    assert Credential.objects.get().expires_at == datetime(day.year, day.month, day.day, tzinfo=UTC)


def test_it_refuses_an_expiry_date_in_the_past(alice_client, fake_openai):
    response = alice_client.post(
        "/settings/keys/",
        {"kind": "api_key", "name": "Temp", "api_key": ALICE_KEY, "expiry": "date", "expires_on": "2020-01-01"},
    )
    assert response.status_code == 400 and "Pick a day after today." in response.content.decode()


def test_it_changes_the_expiry_of_a_saved_credential(alice_client, alice):
    credential = credential_create(alice, ALICE_KEY)
    response = alice_client.post(f"/settings/keys/{credential.pk}/expiry/", {"expiry": "7"}, follow=True)
    credential.refresh_from_db()
    assert credential.expires_at is not None
    assert "Expiry set to" in response.content.decode()
    alice_client.post(f"/settings/keys/{credential.pk}/expiry/", {"expiry": "never"})
    credential.refresh_from_db()
    assert credential.expires_at is None
    assert CredentialEvent.objects.filter(kind="updated", detail="Expiry removed.", actor="alice").exists()


def test_it_hides_the_expiry_form_of_other_users_credentials(client, alice, bob):
    theirs = credential_create(alice, ALICE_KEY)
    client.force_login(bob)
    assert client.post(f"/settings/keys/{theirs.pk}/expiry/", {"expiry": "1"}).status_code == 404
    theirs.refresh_from_db()
    assert theirs.expires_at is None


def test_it_sends_anonymous_visitors_to_log_in_from_the_expiry_form(client, alice):
    credential = credential_create(alice, ALICE_KEY)
    response = client.post(f"/settings/keys/{credential.pk}/expiry/", {"expiry": "1"})
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
