"""Single sign-on through OpenID Connect, end to end against a local provider (tests/fakes/oidc.py)."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
import requests
from allauth.socialaccount.models import SocialAccount

from accounts.models import Approval, User
from project.settings import oidc_providers
from tests.fakes.oidc import FakeOIDCProvider

pytestmark = pytest.mark.django_db


@pytest.fixture
def idp(settings):
    with FakeOIDCProvider() as provider:
        settings.SOCIALACCOUNT_PROVIDERS = oidc_providers(
            provider_id="corp",
            name="Corp SSO",
            server_url=provider.url,
            client_id=provider.client_id,
            client_secret=provider.client_secret,
        )
        yield provider


def sign_in_with_idp(client) -> object:
    """Press "Sign in with Corp SSO", let the provider consent, come back; returns the callback's response."""
    start = client.post("/accounts/oidc/corp/login/?process=login")
    assert start.status_code == 302, start.content[:500]
    consent = requests.get(start["Location"], allow_redirects=False, timeout=10)
    back = urlsplit(consent.headers["Location"])
    return client.get(f"{back.path}?{back.query}")


def test_the_login_page_offers_the_provider(client, idp):
    page = client.get("/accounts/login/").content.decode()
    assert "Sign in with Corp SSO" in page and 'action="/accounts/oidc/corp/login/' in page


def test_no_button_without_a_provider(client):
    assert "Sign in with" not in client.get("/accounts/login/").content.decode()


def test_it_signs_in_and_creates_the_account(client, idp):
    response = sign_in_with_idp(client)
    assert response.status_code == 302 and response["Location"] in ("/chat/", "/settings/keys/")
    user = User.objects.get(username="erin")
    assert client.session["_auth_user_id"] == str(user.pk)
    assert user.email == "erin@corp.example"
    assert SocialAccount.objects.get(user=user).uid == "idp-user-1"
    token_calls = [r for r in idp.requests if r.route == "/token"]
    assert len(token_calls) == 1 and "code_verifier" in token_calls[0].form()  # PKCE


def test_the_same_person_comes_back_to_the_same_account(client, idp):
    sign_in_with_idp(client)
    client.logout()
    idp.person["preferred_username"] = "erin.renamed"
    sign_in_with_idp(client)
    assert User.objects.count() == 1


def test_a_closed_site_refuses_new_sso_accounts(client, idp, settings):
    settings.SIGNUP_MODE = "closed"
    response = sign_in_with_idp(client)
    assert response.status_code == 403 and b"Sign-up is closed" in response.content
    assert not User.objects.exists()


def test_an_existing_sso_account_still_signs_in_when_closed(client, idp, settings):
    sign_in_with_idp(client)
    client.logout()
    settings.SIGNUP_MODE = "closed"
    sign_in_with_idp(client)
    assert "_auth_user_id" in client.session


def test_approval_mode_keeps_a_new_sso_account_waiting(client, idp, settings):
    settings.SIGNUP_MODE = "approval"
    sign_in_with_idp(client)
    assert User.objects.get(username="erin").approval == Approval.PENDING
    assert client.get("/chat/")["Location"] == "/accounts/pending/"


def test_a_wrong_client_secret_signs_nobody_in(client, idp, settings):
    app = settings.SOCIALACCOUNT_PROVIDERS["openid_connect"]["APPS"][0]
    app["secret"] = "not-the-secret"
    response = sign_in_with_idp(client)
    assert "_auth_user_id" not in client.session and not User.objects.exists()
    assert b"not-the-secret" not in response.content


def test_an_email_claim_never_takes_over_an_existing_account(client, idp, alice):
    idp.person["email"] = "alice@example.com"
    idp.person["preferred_username"] = "alice"
    sign_in_with_idp(client)
    assert client.session.get("_auth_user_id") != str(alice.pk)
    assert not SocialAccount.objects.filter(user=alice).exists()


@pytest.mark.parametrize("name", ["ＥＲＩＮ", "еrin", "admin", "system", ""])
def test_an_idp_name_that_is_taken_reserved_or_a_look_alike_gets_a_name_of_its_own(client, idp, name):
    """The provider's preferred_username is a suggestion: never a 500, never someone else's account or a reserved
    name."""
    User.objects.create_user("erin", "erin.local@example.com", "x" * 20)
    idp.person["preferred_username"] = name
    response = sign_in_with_idp(client)
    assert response.status_code == 302, response.content[:300]
    user = User.objects.get(pk=client.session["_auth_user_id"])
    assert user.username not in ("erin", "admin", "system")
    assert user.email == "erin@corp.example"
