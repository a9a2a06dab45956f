"""Database work after a response has started, or off a request, never relies on asgiref's one shared thread having
a live connection: project.asgi no longer runs request signals there, so nothing else tidies that thread's."""

from __future__ import annotations

import pytest
from asgiref.sync import SyncToAsync
from django.db import connection

from chat.usage import usage_write
from tests.conftest import ALICE_KEY, credential_create
from tests.streaming import logged_in_session, send
from tokens.models import Status

pytestmark = pytest.mark.django_db(transaction=True)


def _leave_a_dead_connection_on_the_shared_thread() -> None:
    """What a database restart (or a test's teardown) leaves: a connection Django still holds, closed underneath."""

    def open_then_kill() -> None:
        connection.ensure_connection()
        connection.connection.close()

    SyncToAsync.single_thread_executor.submit(open_then_kill).result(10)


def test_a_csv_export_works_after_the_shared_threads_connection_died(asgi_server, alice):
    usage_write(user_id=alice.pk, model="gpt-4o-mini", source="web")
    session = logged_in_session(asgi_server.url, "alice")
    _leave_a_dead_connection_on_the_shared_thread()

    response = session.get(f"{asgi_server.url}/settings/usage/export.csv", timeout=10)

    assert response.status_code == 200 and "gpt-4o-mini" in response.text
    # And it hands its connection back: the next export after another death works too.
    _leave_a_dead_connection_on_the_shared_thread()
    assert "gpt-4o-mini" in session.get(f"{asgi_server.url}/settings/usage/export.csv", timeout=10).text


def test_a_rejected_key_is_recorded_after_the_shared_threads_connection_died(asgi_server, alice, fake_openai):
    """The provider module's own database calls (a 401 marks the key invalid) run in pooled threads that hand their
    connection back, not on the shared thread."""
    credential = credential_create(alice, ALICE_KEY)
    session = logged_in_session(asgi_server.url, "alice")
    _leave_a_dead_connection_on_the_shared_thread()
    fake_openai.error(401, code="invalid_api_key")

    events = send(session, asgi_server.url, "/chat/send/", "Hi")

    assert events.done["state"] == "error" and events.done["redirect"]
    credential.refresh_from_db()
    assert credential.status == Status.INVALID
