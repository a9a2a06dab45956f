from __future__ import annotations

import re

import pytest
from django.core import mail

from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db


def test_it_logs_in_and_out(client, alice):
    response = client.post("/accounts/login/", {"username": "alice", "password": PASSWORD})
    assert response.status_code == 302 and response["Location"] == "/chat/"
    assert client.post("/accounts/logout/").status_code == 302
    assert client.get("/chat/")["Location"].startswith("/accounts/login/")


def test_it_shows_an_alert_for_a_wrong_password(client, alice):
    response = client.post("/accounts/login/", {"username": "alice", "password": "nope"})
    assert response.status_code == 200
    assert b'role="alert"' in response.content


def test_it_rate_limits_login_attempts(client, alice, settings):
    settings.LOGIN_RATE_LIMIT = "3/5m"
    for _ in range(3):
        client.post("/accounts/login/", {"username": "alice", "password": "nope"})
    response = client.post("/accounts/login/", {"username": "alice", "password": PASSWORD})
    assert response.status_code == 429


@pytest.mark.parametrize("path", ["/chat/", "/settings/keys/", "/accounts/password/change/", "/usage/"])
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
        {"old_password": PASSWORD, "new_password1": "another good phrase 7", "new_password2": "another good phrase 7"},
    )
    assert response.status_code == 302
    alice.refresh_from_db()
    assert alice.check_password("another good phrase 7")


def test_it_resets_a_password_by_email(client, alice):
    client.post("/accounts/password/reset/", {"email": "alice@example.com"})
    assert len(mail.outbox) == 1
    link = re.search(r"http://testserver(/accounts/password/reset/\S+/)", mail.outbox[0].body).group(1)
    form_url = client.get(link)["Location"]
    response = client.post(form_url, {"new_password1": "reset phrase works 8", "new_password2": "reset phrase works 8"})
    assert response.status_code == 302
    alice.refresh_from_db()
    assert alice.check_password("reset phrase works 8")
