"""A reply outlives the request that started it: follow it from any tab, stop it from any tab, keep-alives."""

from __future__ import annotations

from contextlib import suppress
from datetime import timedelta

import pytest
import requests
from asgiref.sync import async_to_sync
from django.db import connection
from django.utils import timezone
from psycopg_pool import PoolTimeout

from chat.models import Conversation, Message, UsageRecord
from tests.asgi_server import AsgiLiveServer
from tests.conftest import ALICE_KEY, credential_create, user_create
from tests.streaming import follow, logged_in_session, open_stream, parse_events, send, stop, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

ALL_200 = "".join(f"tok{i} " for i in range(200))


def _start(session, asgi_server, path: str = "/chat/send/"):
    """Open a reply and read its first five text events; return the open response, its lines and what was read."""
    response = open_stream(session, asgi_server.url, path, "Go on")
    assert response.status_code == 200
    lines = response.iter_lines(decode_unicode=True)
    return response, lines, parse_events(lines, stop_after_tokens=5)


def test_it_keeps_generating_when_the_browser_leaves_and_resumes_from_the_last_event(asgi_server, fake_openai, session):
    fake_openai.tokens(200, delay=0.01)
    response, _lines, seen = _start(session, asgi_server)
    response.close()  # the tab is closed mid-reply
    message_id = seen.start["assistant_message"]
    assert seen.start["events_url"] == f"/chat/messages/{message_id}/events/"
    assert int(seen.last_id) == len(seen.text)

    rest = follow(session, asgi_server.url, message_id, last_event_id=seen.last_id)

    assert seen.text + rest.text == ALL_200  # nothing lost, nothing twice
    assert rest.start["assistant_message"] == message_id
    assert rest.done["state"] == "complete" and rest.done["finish"] == "stop"
    assert not fake_openai.disconnected.is_set() and fake_openai.completed_streams == 1
    reply = Message.objects.get(pk=message_id)
    assert (reply.content, reply.state, reply.finish_reason) == (ALL_200, "complete", "stop")
    assert UsageRecord.objects.get().outcome == "complete"
    assert Conversation.objects.get().reply_lease_until is None  # the lease is given back


def test_it_shows_two_tabs_the_same_reply(asgi_server, fake_openai, session):
    fake_openai.tokens(50, delay=0.01)
    _response, lines, seen = _start(session, asgi_server)
    second_tab = follow(session, asgi_server.url, seen.start["assistant_message"])
    first_tab = parse_events(lines)
    assert seen.text + first_tab.text == second_tab.text == "".join(f"tok{i} " for i in range(50))
    assert first_tab.done == second_tab.done and second_tab.done["state"] == "complete"


def test_it_stops_from_another_tab_and_closes_upstream(asgi_server, fake_openai, session):
    fake_openai.tokens(200, delay=0.02)
    _response, lines, seen = _start(session, asgi_server)
    message_id = seen.start["assistant_message"]

    answer = stop(session, asgi_server.url, message_id)

    assert answer.status_code == 200 and answer.json() == {"state": "stopped"}
    assert fake_openai.disconnected.wait(10), "upstream request was not closed"
    first_tab = parse_events(lines)
    assert first_tab.done["state"] == "stopped"
    reply = Message.objects.get(pk=message_id)
    assert reply.state == "stopped" and reply.content == seen.text + first_tab.text
    assert 5 <= len(reply.content.split()) < 200
    usage = UsageRecord.objects.get()
    assert usage.outcome == "stopped" and usage.completion_tokens >= 5
    # Stopping again, or following afterwards, tells the saved state.
    assert stop(session, asgi_server.url, message_id).json() == {"state": "stopped"}
    later = follow(session, asgi_server.url, message_id, last_event_id=str(len(reply.content) - 5))
    assert later.text == reply.content[-5:] and later.done["state"] == "stopped"


def test_it_sends_keep_alives_while_upstream_is_silent(asgi_server, fake_openai, session, settings):
    settings.CHAT_KEEPALIVE_SECONDS = 0.1
    settings.UPSTREAM_FIRST_TOKEN_TIMEOUT = 1.0
    fake_openai.hang()
    events = send(session, asgi_server.url, "/chat/send/", "Anyone?")
    assert events.keepalives >= 3
    assert events.done["state"] == "error"


def test_it_takes_over_a_lapsed_lease_and_closes_the_dead_reply(asgi_server, fake_openai, session, alice):
    conversation = Conversation.objects.create(
        user=alice, reply_lease="x" * 32, reply_lease_until=timezone.now() - timedelta(seconds=1)
    )
    dead = Message.objects.create(conversation=conversation, role="assistant", state="streaming", content="Half")
    events = send(session, asgi_server.url, f"/chat/{conversation.pk}/send/", "Again")
    assert events.done["state"] == "complete"
    dead.refresh_from_db()
    assert (dead.state, dead.content) == ("incomplete", "Half")


def test_it_hides_other_peoples_replies(asgi_server, fake_openai, session, alice):
    conversation = Conversation.objects.create(user=alice)
    reply = Message.objects.create(conversation=conversation, role="assistant", content="Mine")
    bob = user_create("bob")
    credential_create(bob, "sk-bob-000000000000000000000000000000")
    bobs = logged_in_session(asgi_server.url, "bob")
    assert bobs.get(f"{asgi_server.url}/chat/messages/{reply.pk}/events/", timeout=10).status_code == 404
    assert stop(bobs, asgi_server.url, reply.pk).status_code == 404
    anonymous = requests.get(f"{asgi_server.url}/chat/messages/{reply.pk}/events/", allow_redirects=False, timeout=10)
    assert anonymous.status_code == 302
    assert follow(session, asgi_server.url, reply.pk).text == "Mine"


def test_it_finishes_a_reply_started_under_a_sync_server(client, fake_openai, alice):
    """Django's test client, like a WSGI server, runs an async view on a loop that closes when the view returns.

    The reply must not live (and die) on that loop, nor make its shutdown wait: it runs on the process's
    background loop, and a follower on yet another loop (the response, read here) sees all of it.
    """
    credential_create(alice, ALICE_KEY)
    client.force_login(alice)
    fake_openai.tokens(50, delay=0.01)

    response = client.post("/chat/send/", {"message": "Go on"})

    assert response.status_code == 200 and response["Content-Type"].startswith("text/event-stream")

    async def read() -> bytes:
        return b"".join([events async for events in response.streaming_content])

    events = parse_events(async_to_sync(read)().decode().splitlines())
    assert events.text == "".join(f"tok{i} " for i in range(50)) and events.done["state"] == "complete"
    reply = Message.objects.get(role="assistant")
    assert (reply.state, reply.content) == ("complete", events.text)
    assert not fake_openai.disconnected.is_set() and fake_openai.completed_streams == 1
    assert Conversation.objects.get().reply_lease_until is None


def test_it_saves_a_reply_as_incomplete_when_the_server_shuts_down_under_it(fake_openai, alice, transactional_db):
    credential_create(alice, ALICE_KEY)
    server = AsgiLiveServer().start()
    try:
        session = logged_in_session(server.url, "alice")
        fake_openai.tokens(400, delay=0.02)
        response = open_stream(session, server.url, "/chat/send/", "Go on")
        seen = parse_events(response.iter_lines(decode_unicode=True), stop_after_tokens=5)
        response.close()
    finally:
        server.stop()  # the server's loop closes under the running reply

    assert not server._thread.is_alive(), "the loop's shutdown hung"
    assert fake_openai.disconnected.wait(10), "upstream was left open"
    reply = Message.objects.get(pk=seen.start["assistant_message"])
    assert reply.state == "incomplete" and "restarted" in reply.error
    assert reply.content.startswith(seen.text) and len(reply.content.split()) < 400
    assert UsageRecord.objects.get().outcome == "incomplete"
    assert Conversation.objects.get().reply_lease_until is None


@pytest.fixture
def small_pool():
    """The process's PostgreSQL pool cut to 4 connections that give up waiting after 0.3 s (production: 20, 10 s)."""
    options = connection.settings_dict.get("OPTIONS", {}).get("pool")
    if connection.vendor != "postgresql" or not isinstance(options, dict):
        pytest.skip("needs PostgreSQL's connection pool; runs when DATABASE_URL is PostgreSQL")
    before = dict(options)
    connection.close()
    connection.close_pool()
    options.update(min_size=1, max_size=4, timeout=0.3)
    yield connection
    connection.close()
    connection.close_pool()
    options.clear()
    options.update(before)


def test_it_saves_the_reply_once_the_exhausted_pool_gives_a_connection_again(
    small_pool, asgi_server, fake_openai, session, caplog
):
    fake_openai.tokens(40, delay=0.02)
    _response, lines, seen = _start(session, asgi_server)
    held = []
    with suppress(PoolTimeout):  # take every connection the pool has: the reply's final save finds none
        while True:
            held.append(small_pool.pool.getconn(timeout=0.5))

    message_id = seen.start["assistant_message"]
    wait_for(lambda: f"saving reply {message_id} again" in caplog.text, "a retry of the final save")
    for conn in held:
        small_pool.pool.putconn(conn)

    rest = parse_events(lines)
    assert rest.done["state"] == "complete"
    reply = Message.objects.get(pk=message_id)
    assert (reply.state, reply.content) == ("complete", "".join(f"tok{i} " for i in range(40)))
    assert UsageRecord.objects.get().outcome == "complete"
    assert Conversation.objects.get().reply_lease_until is None


def test_it_sends_the_text_that_came_meanwhile_in_one_event(asgi_server, fake_openai, session, settings):
    settings.CHAT_STREAM_FLUSH_SECONDS = 0.05
    fake_openai.tokens(60, delay=0.005)  # 300 ms of tokens: about six flushes
    response = open_stream(session, asgi_server.url, "/chat/send/", "Go on")
    events = parse_events(response.iter_lines(decode_unicode=True))
    assert "".join(events.tokens) == "".join(f"tok{i} " for i in range(60))
    assert len(events.tokens) <= 20  # one event per chunk would be 60
    assert events.done["state"] == "complete"
    assert int(events.last_id) == len("".join(events.tokens))  # offsets still count characters
