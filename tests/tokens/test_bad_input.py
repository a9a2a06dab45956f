"""Input that used to end in a 500: malformed ids, absurd token lifetimes, a ciphertext moved between rows."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest
from django.utils import timezone

from tests.conftest import ALICE_KEY, BOB_KEY, credential_create
from tokens import oauth
from tokens.models import Credential, Status
from tokens.services import CredentialError, credential_bearer, credential_for_user

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("credential_id", ["abc", "1'", "\x00", "9" * 40, "00000000-0000-0000-0000-00000000000g", "１"])
def test_it_treats_a_malformed_credential_id_as_not_found(alice, credential_id):
    credential_create(alice, ALICE_KEY)
    assert credential_for_user(user=alice, credential_id=credential_id) is None


@pytest.mark.parametrize("expires_in", [10**30, 1e300, math.inf, "9" * 400, [3600], {"s": 1}, -5, "soon"])
def test_it_bounds_any_expires_in(expires_in):
    before = timezone.now()
    grant = oauth._grant({"access_token": "tok", "expires_in": expires_in})
    assert before <= grant.expires_at <= timezone.now() + timedelta(days=367)


def test_it_refuses_a_ciphertext_moved_from_another_row(alice, bob):
    mine = credential_create(alice, ALICE_KEY)
    theirs = credential_create(bob, BOB_KEY)
    Credential.objects.filter(pk=mine.pk).update(
        api_key=Credential.objects.values("api_key").get(pk=theirs.pk)["api_key"]
    )
    mine = Credential.objects.get(pk=mine.pk)
    with pytest.raises(CredentialError, match="could not be opened"):
        credential_bearer(credential=mine)
    mine.refresh_from_db()
    assert mine.status == Status.NEEDS_ATTENTION
