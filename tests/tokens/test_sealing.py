from __future__ import annotations

import pytest

from tests.conftest import ALICE_KEY, credential_create
from tokens.keyring import SealError, generate_key
from tokens.models import Credential

pytestmark = pytest.mark.django_db

K1, K2 = generate_key("k1"), generate_key("k2")


def test_it_stores_only_ciphertext(alice, settings):
    settings.ENCRYPTION_KEYS = [K1]
    credential = credential_create(alice, ALICE_KEY)
    raw = Credential.objects.filter(pk=credential.pk).values_list("api_key", flat=True).get()
    assert raw.startswith("k1$")
    assert ALICE_KEY not in raw
    assert Credential.objects.get(pk=credential.pk).api_key.reveal() == ALICE_KEY


def test_it_never_prints_the_secret(alice):
    credential = credential_create(alice, ALICE_KEY)
    loaded = Credential.objects.get(pk=credential.pk)
    assert ALICE_KEY not in repr(loaded.api_key) + str(loaded.api_key) + repr(loaded.__dict__)


def test_it_refuses_a_tampered_ciphertext(alice):
    credential = credential_create(alice, ALICE_KEY)
    raw = Credential.objects.filter(pk=credential.pk).values_list("api_key", flat=True).get()
    flipped = raw[:-6] + ("A" if raw[-6] != "A" else "B") + raw[-5:]
    Credential.objects.filter(pk=credential.pk).update(api_key=flipped)
    with pytest.raises(SealError):
        Credential.objects.get(pk=credential.pk).api_key.reveal()


def test_it_refuses_a_ciphertext_moved_to_another_users_row(alice, bob):
    theirs = credential_create(alice, ALICE_KEY)
    mine = credential_create(bob, "sk-bob-original-key-000000000000000")
    stolen = Credential.objects.filter(pk=theirs.pk).values_list("api_key", flat=True).get()
    Credential.objects.filter(pk=mine.pk).update(api_key=stolen)
    with pytest.raises(SealError):
        Credential.objects.get(pk=mine.pk).api_key.reveal()


def test_it_refuses_a_ciphertext_moved_to_another_row_of_the_same_user(alice):
    first = credential_create(alice, ALICE_KEY)
    second = credential_create(alice, "sk-alice-second-key-00000000000000")
    Credential.objects.filter(pk=second.pk).update(
        api_key=Credential.objects.filter(pk=first.pk).values_list("api_key", flat=True).get()
    )
    with pytest.raises(SealError):
        Credential.objects.get(pk=second.pk).api_key.reveal()


def test_it_refuses_to_open_without_the_sealing_key(alice, settings):
    settings.ENCRYPTION_KEYS = [K1]
    credential = credential_create(alice, ALICE_KEY)
    settings.ENCRYPTION_KEYS = [K2]
    with pytest.raises(SealError, match="no longer holds"):
        Credential.objects.get(pk=credential.pk).api_key.reveal()


def test_it_opens_with_any_listed_key_and_seals_with_the_first(alice, settings):
    settings.ENCRYPTION_KEYS = [K1]
    old = credential_create(alice, ALICE_KEY)
    settings.ENCRYPTION_KEYS = [K2, K1]
    assert Credential.objects.get(pk=old.pk).api_key.reveal() == ALICE_KEY
    new = credential_create(alice, "sk-alice-new-key-00000000000000000")
    assert Credential.objects.get(pk=new.pk).api_key.key_id == "k2"


def test_it_rejects_a_malformed_key_list(alice, settings):
    from django.core.exceptions import ImproperlyConfigured

    settings.ENCRYPTION_KEYS = ["k1:not-base64-of-32-bytes"]
    with pytest.raises(ImproperlyConfigured):
        credential_create(alice, ALICE_KEY)
