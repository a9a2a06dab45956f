from __future__ import annotations

import pytest
from django.contrib.auth.hashers import identify_hasher

from accounts.models import User

pytestmark = pytest.mark.django_db

FORM = {
    "username": "carol",
    "email": "Carol@Example.com",
    "password1": "a sturdy passphrase 42",
    "password2": "a sturdy passphrase 42",
}


def test_it_creates_an_account_and_logs_in(client):
    response = client.post("/accounts/signup/", FORM)
    assert response.status_code == 302
    assert response["Location"] == "/settings/keys/"
    user = User.objects.get(username="carol")
    assert user.email == "carol@example.com"
    assert client.get("/chat/").status_code == 200


def test_it_hashes_passwords_with_argon2(client, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.Argon2PasswordHasher"]
    client.post("/accounts/signup/", FORM)
    assert identify_hasher(User.objects.get().password).algorithm == "argon2"


def test_it_explains_mismatched_passwords_and_keeps_the_input(client):
    response = client.post("/accounts/signup/", {**FORM, "password2": "something else 99"})
    assert response.status_code == 400
    assert b'role="alert"' in response.content
    assert b'value="carol"' in response.content
    assert not User.objects.exists()


def test_it_refuses_a_duplicate_email(client, alice):
    response = client.post("/accounts/signup/", {**FORM, "email": "ALICE@example.com"})
    assert response.status_code == 400
    assert b"already exists" in response.content


def test_it_shows_a_closed_page_when_signup_is_closed(client, settings):
    settings.SIGNUP_OPEN = False
    response = client.post("/accounts/signup/", FORM)
    assert response.status_code == 403
    assert b"Sign-up is closed" in response.content
    assert not User.objects.exists()


def test_it_rate_limits_signups_per_address(client, settings):
    settings.SIGNUP_RATE_LIMIT = "2/h"
    for n in range(2):
        client.post("/accounts/signup/", {**FORM, "username": f"u{n}", "email": f"u{n}@example.com"})
        client.logout()
    response = client.post("/accounts/signup/", {**FORM, "username": "u9", "email": "u9@example.com"})
    assert response.status_code == 429
    assert b"Try again in" in response.content
    assert not User.objects.filter(username="u9").exists()
