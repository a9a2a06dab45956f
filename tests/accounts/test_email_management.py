"""Email addresses on /accounts/email/: a session alone cannot add one, as an added address can reset the password."""

from __future__ import annotations

import pytest
from allauth.account.models import EmailAddress
from django.core import mail

from tests.conftest import PASSWORD, user_create

pytestmark = pytest.mark.django_db


def _add(client, email: str):
    return client.post("/accounts/email/", {"action_add": "", "email": email})


def test_a_stolen_session_cannot_add_an_address_and_reset_the_password_through_it(client, alice):
    client.force_login(alice)  # a session cookie, without the password (no recent log-in in it)
    response = _add(client, "mallory@example.com")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/reauthenticate/")
    assert not EmailAddress.objects.filter(email="mallory@example.com").exists()
    client.logout()
    client.post("/accounts/password/reset/", {"email": "mallory@example.com"})
    assert all("/accounts/password/reset/key/" not in message.body for message in mail.outbox)


def test_the_owner_adds_an_address_after_confirming_the_password(client, alice):
    client.force_login(alice)
    reauthenticate = _add(client, "alice.work@example.com")["Location"]
    assert reauthenticate.startswith("/accounts/reauthenticate/")
    response = client.post(reauthenticate, {"password": PASSWORD})  # allauth then carries out the add it held back
    assert response.status_code == 302
    assert EmailAddress.objects.filter(user=alice, email="alice.work@example.com").exists()


def test_an_account_without_a_password_gets_no_reset_link(client):
    """A single sign-on account has no password to re-enter, so allauth lets its session add an address unasked; a
    reset link to that address would then give the account a password, and the thief a way in of their own."""
    sam = user_create("sam")
    sam.set_unusable_password()
    sam.save()
    client.force_login(sam)
    _add(client, "mallory@example.com")
    client.logout()
    for address in ("mallory@example.com", "sam@example.com"):
        client.post("/accounts/password/reset/", {"email": address})
    assert all("/accounts/password/reset/key/" not in message.body for message in mail.outbox)
    sam.refresh_from_db()
    assert not sam.has_usable_password()
