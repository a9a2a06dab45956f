"""A prepared query gives what its queryset would: the same rows, related objects and converted values."""

from __future__ import annotations

import uuid

import pytest

from chat.models import Conversation
from project.prepared import PreparedQuery
from tests.conftest import credential_create
from tokens.models import Credential

pytestmark = pytest.mark.django_db

BY_OWNER = PreparedQuery(
    lambda user_id: Conversation.objects.select_related("credential", "user").filter(user_id=user_id).order_by("pk"),
    -7301,
)


def test_it_builds_the_same_instances_as_the_orm(alice, bob):
    key = credential_create(alice, "sk-alice-0123456789abcdef", default_model="gpt-4o")
    mine = [Conversation.objects.create(user=alice, title=f"t{i}", credential=key) for i in range(3)]
    Conversation.objects.create(user=bob, title="not mine")

    for _ in range(2):  # the second run reuses the SQL compiled by the first
        found = BY_OWNER.all(alice.pk)
        assert [c.pk for c in found] == [c.pk for c in mine]
        assert [c.title for c in found] == ["t0", "t1", "t2"]
        assert all(c.credential == key and c.user == alice for c in found)
        assert found[0].credential.api_key.reveal() == "sk-alice-0123456789abcdef"  # the sealed field's converter
        assert found[0]._state.adding is False and found[0]._state.db == "default"
    assert BY_OWNER.all(bob.pk)[0].title == "not mine"
    assert BY_OWNER.first(-1) is None


def test_values_are_parameters_never_sql(alice):
    by_name = PreparedQuery(lambda name: Credential.objects.filter(name=name), "\x00name")
    credential_create(alice, "sk-alice-0123456789abcdef", name="k'; DROP TABLE tokens_credential; --")
    assert by_name.first("k'; DROP TABLE tokens_credential; --") is not None
    assert by_name.first("k") is None


def test_a_sample_that_is_not_a_parameter_is_refused_at_once(alice):
    prepared = PreparedQuery(lambda pk: Credential.objects.filter(pk=uuid.UUID(int=1)), uuid.UUID(int=2))
    with pytest.raises(ValueError, match="0 times"):
        prepared.first(uuid.UUID(int=3))
