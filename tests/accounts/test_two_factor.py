"""TOTP two-factor (allauth.mfa): set up from /accounts/2fa/, asked for at log-in, required of staff by a setting."""

from __future__ import annotations

import re
import time

import pytest
import time_machine
from allauth.account.models import EmailAddress
from allauth.mfa.models import Authenticator

from tests.accounts.totp import totp_code
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db


def _log_in(client, username: str):
    return client.post("/accounts/login/", {"username": username, "password": PASSWORD})


def _confirm_password(client) -> None:
    """allauth asks for the password again before an authenticator is added."""
    response = client.get("/accounts/2fa/totp/activate/")
    if response.status_code == 302:
        assert response["Location"].startswith("/accounts/reauthenticate/")
        client.post(response["Location"], {"password": PASSWORD})


def _activate(client) -> str:
    """Turn on TOTP through the pages, as a person would; returns the secret shown."""
    _confirm_password(client)
    page = client.get("/accounts/2fa/totp/activate/").content.decode()
    secret = re.search(r"data-totp-secret>([A-Z2-7]+)<", page).group(1)
    with time_machine.travel(time.time(), tick=False):  # the code and its check in one 30 s period
        response = client.post("/accounts/2fa/totp/activate/", {"code": totp_code(secret)})
    assert response.status_code == 302, response.content.decode()[:2000]
    return secret


def test_it_links_two_factor_from_the_profile(alice_client):
    assert 'href="/accounts/2fa/"' in alice_client.get("/settings/profile/").content.decode()


def test_it_sets_up_totp_and_seals_the_secret(client, alice):
    _log_in(client, "alice")
    _confirm_password(client)
    page = client.get("/accounts/2fa/totp/activate/").content.decode()
    assert 'name="code"' in page and "data-totp-secret" in page
    assert ">Six-digit code</label>" in page and 'inputmode="numeric"' in page  # a digit keyboard on phones
    secret = _activate(client)
    authenticator = Authenticator.objects.get(user=alice, type=Authenticator.Type.TOTP)
    assert secret not in str(authenticator.data)  # sealed with ENCRYPTION_KEYS, not stored as typed
    assert Authenticator.objects.filter(user=alice, type=Authenticator.Type.RECOVERY_CODES).exists()


def test_it_says_what_to_do_when_the_email_is_unconfirmed(client, alice):
    EmailAddress.objects.create(user=alice, email=alice.email, verified=False, primary=True)
    _log_in(client, "alice")
    response = client.get("/accounts/2fa/totp/activate/", follow=True)
    assert response.redirect_chain[-1][0] == "/accounts/2fa/"
    page = response.content.decode()
    assert "follow the link in the email we sent you, or send it again from Email addresses" in page
    assert not Authenticator.objects.filter(user=alice).exists()


def test_it_refuses_a_wrong_code_at_set_up(client, alice):
    _log_in(client, "alice")
    _confirm_password(client)
    response = client.post("/accounts/2fa/totp/activate/", {"code": "000000"})
    assert b'role="alert"' in response.content
    assert "Enter the six-digit code your app shows now" in response.content.decode()
    assert not Authenticator.objects.filter(user=alice).exists()


@pytest.fixture
def alice_with_totp(client, alice) -> str:
    _log_in(client, "alice")
    secret = _activate(client)
    client.post("/accounts/logout/")
    return secret


def test_log_in_then_asks_for_the_code(client, alice, alice_with_totp):
    response = _log_in(client, "alice")
    assert response["Location"] == "/accounts/2fa/authenticate/"
    assert "_auth_user_id" not in client.session
    page = client.get("/accounts/2fa/authenticate/").content.decode()
    assert 'name="code"' in page
    wrong = client.post("/accounts/2fa/authenticate/", {"code": "000000"})
    assert b'role="alert"' in wrong.content and "_auth_user_id" not in client.session
    # Two periods on: the activation's code is out of the window (and spent: allauth refuses a replay).
    with time_machine.travel(time.time() + 60, tick=False):
        right = client.post("/accounts/2fa/authenticate/", {"code": totp_code(alice_with_totp)})
    assert right.status_code == 302 and right["Location"] == "/chat/"
    assert client.session["_auth_user_id"] == str(alice.pk)


def test_a_recovery_code_works_once(client, alice, alice_with_totp):
    from allauth.mfa.recovery_codes.internal.auth import RecoveryCodes

    codes = RecoveryCodes(Authenticator.objects.get(user=alice, type=Authenticator.Type.RECOVERY_CODES))
    code = codes.get_unused_codes()[0]
    _log_in(client, "alice")
    assert client.post("/accounts/2fa/authenticate/", {"code": code}).status_code == 302
    client.post("/accounts/logout/")
    _log_in(client, "alice")
    client.post("/accounts/2fa/authenticate/", {"code": code})
    assert "_auth_user_id" not in client.session


@pytest.mark.parametrize("path", ["/usage/", "/admin/"])
def test_staff_must_set_up_two_factor_when_required(client, staff, settings, path):
    settings.MFA_REQUIRED_FOR_STAFF = True
    _log_in(client, "staff")
    assert client.get(path)["Location"] == "/accounts/2fa/totp/activate/"
    _activate(client)
    assert client.get(path).status_code == 200


def test_staff_are_not_forced_by_default(client, staff):
    _log_in(client, "staff")
    assert client.get("/usage/").status_code == 200


def test_the_requirement_leaves_everyone_else_alone(client, alice, settings):
    settings.MFA_REQUIRED_FOR_STAFF = True
    _log_in(client, "alice")
    assert client.get("/chat/").status_code == 200


@pytest.mark.django_db(transaction=True)  # allauth sends its signals once the change commits
def test_turning_two_factor_on_or_off_ends_every_other_session(client, alice):
    """A session stolen before two-factor was set up must not outlive it (nor its removal); this one goes on."""
    from django.test import Client

    other = Client()
    _log_in(other, "alice")
    _log_in(client, "alice")
    old_key = client.session.session_key
    _activate(client)
    assert client.session.session_key != old_key  # the session that made the change gets a new key
    assert client.get("/settings/profile/").status_code == 200
    response = other.get("/settings/profile/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")

    alice.refresh_from_db()
    other.force_login(alice)  # a session made after the change is fine...
    assert other.get("/settings/profile/").status_code == 200
    response = client.post("/accounts/2fa/totp/deactivate/")
    assert response.status_code == 302 and response["Location"] != "/accounts/reauthenticate/"  # still fresh
    assert not Authenticator.objects.filter(user=alice, type=Authenticator.Type.TOTP).exists()
    assert client.get("/settings/profile/").status_code == 200
    assert other.get("/settings/profile/").status_code == 302  # ...until the next change


def test_sessions_from_before_the_epoch_stay_valid(client, alice):
    """Existing sessions survive the upgrade that added the epoch: at 0 the hash is Django's own."""
    from django.contrib.auth.base_user import AbstractBaseUser

    assert alice.get_session_auth_hash() == AbstractBaseUser._get_session_auth_hash(alice)
