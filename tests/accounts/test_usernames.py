"""User names: NFKC form, unique across case, width and homoglyphs (in the database too); reserved names refused."""

from __future__ import annotations

import importlib

import pytest
from django.apps import apps
from django.db import IntegrityError, transaction

from accounts.models import User
from accounts.usernames import username_key
from tests.conftest import PASSWORD, user_create

pytestmark = pytest.mark.django_db


def _signup(client, username: str):
    form = {"username": username, "email": "new@example.com", "password1": PASSWORD, "password2": PASSWORD}
    return client.post("/accounts/signup/", form)


@pytest.mark.parametrize(
    "look_alike",
    # Case, width, other scripts; then Latin letters and digits most fonts draw alike (capital I for l, 1 for l).
    ["ALICE", "Ａlice", "ａｌｉｃｅ", "аlice", "αlice", "aIice", "a1ice", "AL1CE", "aIlce"],
)
def test_it_refuses_a_look_alike_of_a_taken_name(client, alice, look_alike):
    response = _signup(client, look_alike)
    assert b"too close to one that is" in response.content
    assert User.objects.count() == 1


@pytest.mark.parametrize("name", ["system", "System", "ѕуѕtеm", "admin", "ROOT", "staff", "adm1n", "r00t", "systern"])
def test_it_refuses_reserved_names(client, name):
    response = _signup(client, name)
    assert b"reserved" in response.content
    assert not User.objects.exists()


def test_it_stores_the_nfkc_form_and_logs_in_by_any_width(client):
    _signup(client, "Ｃarol")
    assert User.objects.get().username == "Carol"
    client.logout()
    response = client.post("/accounts/login/", {"username": "Ｃarol", "password": PASSWORD})
    assert response.status_code == 302


def test_other_scripts_are_welcome(client):
    assert _signup(client, "张伟").status_code == 302
    assert User.objects.get().username == "张伟"


def test_the_database_refuses_a_look_alike_too(alice):
    with pytest.raises(IntegrityError), transaction.atomic():
        user_create("Аlice")  # Cyrillic А, straight past the forms


def test_the_admin_form_explains_a_look_alike(client, alice, db):
    """A Cyrillic А: Django's own case-insensitive check does not see it; the key does."""
    admin = user_create("boss", is_staff=True, is_superuser=True)
    client.force_login(admin)
    response = client.post(
        "/admin/accounts/user/add/", {"username": "Аlice", "password1": PASSWORD, "password2": PASSWORD}
    )
    assert b"too close to one that is" in response.content
    assert User.objects.count() == 2


def test_the_migration_keys_existing_look_alikes_apart(alice):
    twin = user_create("ALICE_twin")
    User.objects.filter(pk=twin.pk).update(username="ALICE", username_key=None)
    User.objects.filter(pk=alice.pk).update(username_key=None)
    migration = importlib.import_module("accounts.migrations.0008_backfill_username_key")
    migration.backfill(apps, None)
    keys = dict(User.objects.values_list("pk", "username_key"))
    assert keys == {alice.pk: username_key("alice"), twin.pk: f"{username_key('alice')}~{twin.pk}"}


@pytest.mark.parametrize(
    ("taken", "look_alike"), [("bill", "biII"), ("modem", "rnodem"), ("owen", "0wen"), ("will", "vvill")]
)
def test_it_refuses_latin_look_alikes_of_a_taken_name(client, taken, look_alike):
    user_create(taken)
    response = _signup(client, look_alike)
    assert b"too close to one that is" in response.content
    assert User.objects.count() == 1


def test_the_re_key_migration_keeps_existing_latin_look_alikes_apart(alice):
    """Accounts that already differ only by I and l keep working: the older one gets the key, the newer <key>~<id>."""
    twin = user_create("twin")
    User.objects.filter(pk=twin.pk).update(username="aIice", username_key="aiice")  # its key before this change
    User.objects.filter(pk=alice.pk).update(username_key="alice")
    migration = importlib.import_module("accounts.migrations.0011_rekey_latin_look_alikes")
    migration.rekey(apps, None)
    keys = dict(User.objects.values_list("pk", "username_key"))
    assert keys == {alice.pk: username_key("alice"), twin.pk: f"{username_key('alice')}~{twin.pk}"}
    assert username_key("alice") == username_key("aIice") != "alice"
