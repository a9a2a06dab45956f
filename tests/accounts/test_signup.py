from __future__ import annotations

import re

import pytest
from allauth.account.models import EmailAddress
from django.contrib.auth.hashers import identify_hasher
from django.core import mail

from accounts.models import Approval, User

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


def test_it_renders_the_stable_field_names(client):
    page = client.get("/accounts/signup/").content.decode()
    for name in ("username", "email", "password1", "password2"):
        assert f'name="{name}"' in page


def test_it_mails_a_confirmation_link_built_from_site_url(client, settings):
    settings.SITE_URL = "https://chat.example.org"
    client.post("/accounts/signup/", FORM)
    assert len(mail.outbox) == 1
    link = re.search(r"https://chat\.example\.org(/accounts/confirm-email/\S+/)", mail.outbox[0].body).group(1)
    client.post(link)
    assert User.objects.get(username="carol").emailaddress_set.get().verified


def test_the_confirmation_page_speaks_the_readers_language_and_says_what_to_do_with_a_dead_link(client, settings):
    settings.SITE_URL = "https://chat.example.org"
    client.post("/accounts/signup/", FORM, HTTP_ACCEPT_LANGUAGE="zh-CN")
    link = re.search(r"https://chat\.example\.org(/accounts/confirm-email/\S+/)", mail.outbox[0].body).group(1)
    page = client.get(link, HTTP_ACCEPT_LANGUAGE="zh-CN").content.decode()
    assert "确认你的电子邮箱地址" in page and "carol@example.com 属于账号 carol" in page
    assert "Email地址" not in page and "您" not in page
    dead = client.get("/accounts/confirm-email/not-a-key/", HTTP_ACCEPT_LANGUAGE="zh-CN").content.decode()
    assert 'href="/accounts/email/">重新发送一个</a>' in dead


def test_it_refuses_log_in_before_confirmation_when_verification_is_mandatory(client, settings):
    settings.ACCOUNT_EMAIL_VERIFICATION = "mandatory"
    response = client.post("/accounts/signup/", FORM)
    assert response["Location"] == "/accounts/confirm-email/"
    assert client.get("/chat/").status_code == 302


def test_it_hashes_passwords_with_argon2(client, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.Argon2PasswordHasher"]
    client.post("/accounts/signup/", FORM)
    assert identify_hasher(User.objects.get().password).algorithm == "argon2"


def test_it_explains_mismatched_passwords_and_keeps_the_input(client):
    response = client.post("/accounts/signup/", {**FORM, "password2": "something else 99"})
    assert b'role="alert"' in response.content
    assert b'value="carol"' in response.content
    assert not User.objects.exists()


def test_it_never_says_an_email_is_taken(client, alice):
    response = client.post("/accounts/signup/", {**FORM, "email": "ALICE@example.com"})
    assert b"already" not in response.content
    assert response.status_code == 302


def test_it_never_says_an_email_is_taken_with_mandatory_verification(client, alice, settings):
    """Both answers are "check your mail"; the owner of the address is told someone tried."""
    settings.ACCOUNT_EMAIL_VERIFICATION = "mandatory"
    settings.ACCOUNT_PREVENT_ENUMERATION = True
    taken = client.post("/accounts/signup/", {**FORM, "email": "ALICE@example.com"})
    fresh = client.post("/accounts/signup/", {**FORM, "username": "dave", "email": "dave@example.com"})
    assert (taken.status_code, taken["Location"]) == (fresh.status_code, fresh["Location"])
    assert not User.objects.filter(username="carol").exists()
    assert [m.to for m in mail.outbox] == [["alice@example.com"], ["dave@example.com"]]


def test_it_shows_a_closed_page_when_signup_is_closed(client, settings):
    settings.SIGNUP_OPEN = False
    response = client.post("/accounts/signup/", FORM)
    assert response.status_code == 403
    assert b"Sign-up is closed" in response.content
    assert not User.objects.exists()


def test_it_makes_a_new_account_wait_in_approval_mode(client, settings, staff):
    settings.SIGNUP_MODE = "approval"
    response = client.post("/accounts/signup/", FORM)
    assert response["Location"] == "/accounts/pending/"
    assert User.objects.get(username="carol").approval == Approval.PENDING
    assert b"data-account-pending" in client.get("/accounts/pending/").content
    assert client.get("/chat/")["Location"] == "/accounts/pending/"


def test_it_rate_limits_signups_per_address(client, settings):
    settings.ACCOUNT_RATE_LIMITS = {**settings.ACCOUNT_RATE_LIMITS, "signup": "2/h/ip"}
    for n in range(2):
        client.post("/accounts/signup/", {**FORM, "username": f"u{n}", "email": f"u{n}@example.com"})
        client.logout()
    response = client.post("/accounts/signup/", {**FORM, "username": "u9", "email": "u9@example.com"})
    assert response.status_code == 429
    assert b'role="alert"' in response.content
    assert not User.objects.filter(username="u9").exists()


@pytest.mark.parametrize("verification", ["optional", "mandatory"])
@pytest.mark.parametrize("verified", [False, True], ids=["unverified", "verified"])
def test_a_taken_email_gets_the_answer_a_fresh_one_gets(verification, verified, client, settings):
    """Whether the address belongs to an account that confirmed it or to one that never did, sign-up answers as it
    does for an unknown address: same status, same next page, no word about the address."""
    settings.ACCOUNT_EMAIL_VERIFICATION = verification
    settings.ACCOUNT_PREVENT_ENUMERATION = True if verification == "mandatory" else "strict"
    client.post("/accounts/signup/", FORM)  # carol signs up the usual way: an EmailAddress row, unverified
    EmailAddress.objects.filter(email="carol@example.com").update(verified=verified)
    client.logout()

    taken = client.post("/accounts/signup/", {**FORM, "username": "erin", "email": "CAROL@example.com"})
    client.logout()
    fresh = client.post("/accounts/signup/", {**FORM, "username": "dave", "email": "dave@example.com"})

    assert (taken.status_code, taken.get("Location")) == (fresh.status_code, fresh.get("Location"))
    assert taken.status_code == 302
    for word in (b"already", b"taken", b"in use", b"exists"):
        assert word not in taken.content
