from __future__ import annotations

import hashlib

import pytest
from django.apps import apps
from django.db import connection
from django.test import Client

from chat.models import Conversation, Message
from tests.conftest import ALICE_KEY, credential_create, user_create
from tokens.api_keys import api_key_create


def database_fingerprint(skip: tuple[str, ...] = ("django_session",)) -> dict[str, str]:
    """Table name -> digest of every row, to prove a refused request changed nothing."""
    prints = {}
    with connection.cursor() as cursor:
        for model in apps.get_models(include_auto_created=True):
            table = model._meta.db_table
            if table in skip or not model._meta.managed:
                continue
            columns = ", ".join(connection.ops.quote_name(f.column) for f in model._meta.concrete_fields)
            cursor.execute(f"SELECT {columns} FROM {connection.ops.quote_name(table)}")
            rows = sorted(repr(row) for row in cursor.fetchall())
            prints[table] = hashlib.sha256("\n".join(rows).encode()).hexdigest()
    return prints


class World:
    """Alice's objects of every kind that has its own route, and the people who attack them."""

    def __init__(self):
        # Preferences set, so the first visit's language and time-zone guess (saved by design) changes nothing.
        known = {"language": "en", "timezone": "UTC"}
        self.alice = user_create("alice", **known)
        self.bob = user_create("bob", **known)
        self.staff = user_create("staff", is_staff=True, is_superuser=True, **known)
        self.credential = credential_create(self.alice, ALICE_KEY)
        self.conversation = Conversation.objects.create(user=self.alice, title="Alice's plans", model="gpt-4o-mini")
        self.question = Message.objects.create(conversation=self.conversation, role="user", content="Hello")
        self.answer = Message.objects.create(conversation=self.conversation, role="assistant", content="Hi there")
        self.api_key, self.api_secret = api_key_create(user=self.alice, name="laptop")

    def object_ids(self) -> dict[str, object]:
        """Route argument values that name one of alice's objects, by URL name prefix."""
        return {
            "chat:conversation": self.conversation.pk,
            "chat:message": self.answer.pk,
            "tokens:credential": self.credential.pk,
            "api_keys:api-key": self.api_key.pk,
        }


@pytest.fixture
def world(db) -> World:
    return World()


@pytest.fixture
def enforcing_client() -> Client:
    """A test client that enforces CSRF as a browser's session would meet it."""
    return Client(enforce_csrf_checks=True)
