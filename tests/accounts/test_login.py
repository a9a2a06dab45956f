from __future__ import annotations

import re

import pytest
from django.core import mail

from tests.conftest import PASSWORD, user_create

pytestmark = pytest.mark.django_db


def _limits(settings, **rates: str) -> None:
    settings.ACCOUNT_RATE_LIMITS = {**settings.ACCOUNT_RATE_LIMITS, **rates}


def test_it_logs_in_and_out(client, alice):
    response = client.post("/accounts/login/", {"username": "alice", "password": PASSWORD})
    assert response.status_code == 302 and response["Location"] == "/chat/"
    assert client.post("/accounts/logout/").status_code == 302
    assert client.get("/chat/")["Location"].startswith("/accounts/login/")


def test_it_renders_the_stable_field_names(client):
    page = client.get("/accounts/login/").content.decode()
    assert 'name="username"' in page and 'name="password"' in page
    assert 'name="login"' not in page


@pytest.mark.parametrize("field", ["username", "login"])
def test_it_accepts_username_and_allauths_login_field(client, alice, field):
    response = client.post("/accounts/login/", {field: "alice", "password": PASSWORD})
    assert response.status_code == 302 and response["Location"] == "/chat/"


def test_it_logs_in_with_the_email_address_too(client, alice):
    response = client.post("/accounts/login/", {"username": "ALICE@example.com", "password": PASSWORD})
    assert response.status_code == 302


def test_it_follows_a_safe_next_only(client, alice):
    ok = client.post("/accounts/login/", {"username": "alice", "password": PASSWORD, "next": "/settings/keys/"})
    assert ok["Location"] == "/settings/keys/"
    client.logout()
    evil = client.post("/accounts/login/", {"username": "alice", "password": PASSWORD, "next": "https://evil.test/"})
    assert evil["Location"] == "/chat/"


def test_it_shows_an_alert_for_a_wrong_password(client, alice):
    response = client.post("/accounts/login/", {"username": "alice", "password": "nope"})
    assert response.status_code == 200
    assert b'role="alert"' in response.content
    assert "_auth_user_id" not in client.session


def test_it_refuses_an_inactive_account(client, alice):
    alice.is_active = False
    alice.save()
    client.post("/accounts/login/", {"username": "alice", "password": PASSWORD})
    assert "_auth_user_id" not in client.session


def test_it_limits_failed_logins_per_address(client, alice, bob, settings):
    _limits(settings, login_failed="3/5m/ip,100/5m/key")
    for name in ("alice", "bob", "nobody"):
        client.post("/accounts/login/", {"username": name, "password": "nope"})
    response = client.post("/accounts/login/", {"username": "alice", "password": PASSWORD})
    assert b"Too many failed login attempts" in response.content
    assert "_auth_user_id" not in client.session


def test_it_limits_failed_logins_per_account_from_any_address(client, alice, settings):
    """Guesses spread over many addresses, by user name and by email, still lock the one account."""
    _limits(settings, login_failed="100/5m/ip,3/5m/key")
    for n, login in enumerate(["alice", "ALICE", "alice@example.com"]):
        client.post("/accounts/login/", {"username": login, "password": "nope"}, REMOTE_ADDR=f"198.51.100.{n}")
    response = client.post("/accounts/login/", {"username": "alice", "password": PASSWORD}, REMOTE_ADDR="192.0.2.9")
    assert b"Too many failed login attempts" in response.content
    assert "_auth_user_id" not in client.session
    user_create("carol")  # another account is not locked by alice's guesses
    response = client.post("/accounts/login/", {"username": "carol", "password": PASSWORD}, REMOTE_ADDR="192.0.2.9")
    assert response.status_code == 302


def test_admin_login_goes_through_the_throttled_login(client, staff, settings):
    response = client.get("/admin/login/?next=/admin/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/?next=")
    # Django's own admin form is not reachable: a POST of credentials there logs nobody in.
    client.post("/admin/login/", {"username": "staff", "password": PASSWORD})
    assert "_auth_user_id" not in client.session
    _limits(settings, login_failed="2/5m/ip,100/5m/key")
    for _ in range(2):
        client.post("/accounts/login/?next=/admin/", {"username": "staff", "password": "nope"})
    response = client.post("/accounts/login/?next=/admin/", {"username": "staff", "password": PASSWORD})
    assert "_auth_user_id" not in client.session and b"Too many failed login attempts" in response.content


def test_it_answers_429_past_the_login_rate(client, settings):
    _limits(settings, login="2/m/ip")
    for _ in range(2):
        client.post("/accounts/login/", {"username": "x", "password": "y"})
    response = client.post("/accounts/login/", {"username": "x", "password": "y"})
    assert response.status_code == 429 and b'role="alert"' in response.content


PRIVATE = ["/chat/", "/settings/keys/", "/accounts/password/change/", "/usage/", "/accounts/2fa/"]


@pytest.mark.parametrize("path", PRIVATE)
def test_it_requires_login(client, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=")


@pytest.mark.parametrize("path", ["/accounts/signup/", "/accounts/login/", "/accounts/password/reset/"])
def test_it_leaves_public_pages_open(client, path):
    assert client.get(path).status_code == 200


def test_it_changes_the_password(client, alice):
    client.force_login(alice)
    response = client.post(
        "/accounts/password/change/",
        {"oldpassword": PASSWORD, "password1": "another good phrase 7", "password2": "another good phrase 7"},
    )
    assert response.status_code == 302
    alice.refresh_from_db()
    assert alice.check_password("another good phrase 7")


def _reset_link(body: str) -> str:
    return re.search(r"https?://\S+?(/accounts/password/reset/key/\S+/)", body).group(0)


def test_it_resets_a_password_by_email(client, alice, settings):
    settings.SITE_URL = "https://chat.example.org"
    settings.ALLOWED_HOSTS = ["testserver", "evil.test"]  # even a host the site answers to never makes the link
    client.post("/accounts/password/reset/", {"email": "alice@example.com"}, HTTP_HOST="evil.test")
    assert len(mail.outbox) == 1
    link = _reset_link(mail.outbox[0].body)
    assert link.startswith("https://chat.example.org/accounts/password/reset/key/")
    assert "evil.test" not in mail.outbox[0].body
    form_url = client.get(link.removeprefix("https://chat.example.org"))["Location"]
    response = client.post(form_url, {"password1": "reset phrase works 8", "password2": "reset phrase works 8"})
    assert response.status_code == 302
    alice.refresh_from_db()
    assert alice.check_password("reset phrase works 8")


def test_it_links_the_unknown_account_mail_to_site_url_whatever_the_host(client, alice, settings):
    settings.SITE_URL = "https://chat.example.org"
    settings.ALLOWED_HOSTS = ["testserver", "evil.test", "chat.example.org"]
    for host in ("evil.test", "chat.example.org:6666"):  # another name the site answers to, or a port of the sender's
        mail.outbox.clear()
        client.post("/accounts/password/reset/", {"email": "nobody@example.com"}, HTTP_HOST=host)
        assert len(mail.outbox) == 1
        assert "https://chat.example.org/accounts/signup/" in mail.outbox[0].body
        assert host not in mail.outbox[0].body


def test_it_answers_a_reset_for_an_unknown_address_the_same_way(client, alice):
    known = client.post("/accounts/password/reset/", {"email": "alice@example.com"})
    unknown = client.post("/accounts/password/reset/", {"email": "nobody@example.com"})
    assert (known.status_code, known["Location"]) == (unknown.status_code, unknown["Location"])


def test_it_limits_reset_mails_per_email_and_per_address(client, alice, bob, settings):
    _limits(settings, reset_password="3/h/ip,2/h/key")
    for _ in range(3):
        client.post("/accounts/password/reset/", {"email": "alice@example.com"}, REMOTE_ADDR=f"198.51.100.{_}")
    assert len(mail.outbox) == 2  # per email
    mail.outbox.clear()
    for _ in range(4):
        client.post("/accounts/password/reset/", {"email": "bob@example.com"}, REMOTE_ADDR="192.0.2.1")
    for _ in range(2):
        client.post("/accounts/password/reset/", {"email": "bob@example.com"}, REMOTE_ADDR="192.0.2.1")
    assert len(mail.outbox) <= 2
