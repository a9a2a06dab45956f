"""What the user sees and what is saved when upstream fails, stops or is cut."""

from __future__ import annotations

import pytest
import requests
from django.conf import settings as django_settings
from django.test import override_settings

from chat.models import Message, UsageRecord
from tests.conftest import ALICE_KEY
from tests.streaming import open_stream, parse_events, send

pytestmark = pytest.mark.django_db(transaction=True)


def test_it_shows_when_to_retry_after_a_429(asgi_server, fake_openai, session):
    fake_openai.error(429, headers={"retry-after": "7"})
    events = send(session, asgi_server.url, "/chat/send/", "Hello?")
    assert events.done["state"] == "error"
    assert "Try again in 7 s" in events.done["error"]
    assert len(fake_openai.chat_requests) == 1  # 429 is not retried
    assert Message.objects.filter(role="user", content="Hello?").exists()
    assert UsageRecord.objects.get().error_type == "rate_limit"


def test_it_retries_a_server_error_before_the_first_token(asgi_server, fake_openai, session):
    fake_openai.error(502).error(503).reply("Recovered.")
    events = send(session, asgi_server.url, "/chat/send/", "Hello?")
    assert events.text == "Recovered." and events.done["state"] == "complete"
    assert len(fake_openai.chat_requests) == 3


def test_it_gives_up_after_repeated_server_errors(asgi_server, fake_openai, session):
    fake_openai.error(500).error(500).error(500)
    events = send(session, asgi_server.url, "/chat/send/", "Hello?")
    assert events.done["state"] == "error"
    assert "server error (500)" in events.done["error"]
    assert "Internal" not in events.done["error"]  # never the upstream's raw text


def test_it_keeps_the_partial_reply_when_upstream_cuts_the_stream(asgi_server, fake_openai, session):
    fake_openai.cut("one two three four five six", after_chunks=3)
    events = send(session, asgi_server.url, "/chat/send/", "Count")
    assert events.text == "one two three "
    assert events.done["state"] == "incomplete"
    assert "stopped sending" in events.done["error"]
    reply = Message.objects.get(role="assistant")
    assert (reply.content, reply.state) == ("one two three ", "incomplete")
    usage = UsageRecord.objects.get()
    assert usage.is_estimated and usage.completion_tokens > 0 and usage.error_type == "cut"


def test_it_times_out_a_hanging_upstream(asgi_server, fake_openai, session, settings):
    settings.UPSTREAM_FIRST_TOKEN_TIMEOUT = 1.5  # room to connect on a busy machine; the wait is what times out
    fake_openai.hang().hang().hang()
    events = send(session, asgi_server.url, "/chat/send/", "Anyone?")
    assert events.done["state"] == "error"
    assert "did not answer in time" in events.done["error"]
    assert len(fake_openai.chat_requests) == 1  # never re-sent after a timeout: it may have been generating


def test_it_says_when_the_provider_is_unreachable(asgi_server, session, settings):
    settings.OPENAI_BASE_URL = "http://127.0.0.1:9/v1"
    events = send(session, asgi_server.url, "/chat/send/", "Anyone?")
    assert events.done["state"] == "error"
    assert "Could not connect" in events.done["error"]
    assert UsageRecord.objects.get().error_type == "connection"


def test_it_refuses_a_second_generation_in_the_same_conversation(asgi_server, fake_openai, session):
    fake_openai.tokens(50, delay=0.05)
    first = open_stream(session, asgi_server.url, "/chat/send/", "Long one")
    lines = first.iter_lines(decode_unicode=True)
    start = parse_events([next(lines), next(lines), next(lines)]).start
    second = send(session, asgi_server.url, f"/chat/{start['conversation']}/send/", "Me too")
    assert second.status == 409
    assert "still being written" in second.body["error"]
    assert not Message.objects.filter(content="Me too").exists()
    first.close()


def test_it_does_not_leak_the_key_in_errors(asgi_server, fake_openai, session):
    fake_openai.error(401, message=f"Incorrect API key provided: {ALICE_KEY}")
    raw = requests.post(
        f"{asgi_server.url}/chat/send/",
        data={"message": "hi", "csrfmiddlewaretoken": session.cookies["csrftoken"]},
        headers={"Referer": f"{asgi_server.url}/chat/"},
        cookies=session.cookies,
        timeout=30,
    ).text
    assert ALICE_KEY not in raw and ALICE_KEY[-10:] not in raw


def test_it_still_chats_when_the_cache_is_down(asgi_server, fake_openai, session):
    unreachable = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": "redis://127.0.0.1:9/0",
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.2, "IGNORE_EXCEPTIONS": True},
        },
        "local": django_settings.CACHES["local"],
    }
    # The production configuration with Redis gone: cached sessions, rate limits and locks all degrade.
    with override_settings(CACHES=unreachable, SESSION_ENGINE="django.contrib.sessions.backends.cached_db"):
        events = send(session, asgi_server.url, "/chat/send/", "Still there?")
    assert events.done["state"] == "complete"
    assert Message.objects.get(role="assistant").state == "complete"


def test_followers_hear_the_end_even_when_saving_the_reply_fails(asgi_server, fake_openai, session, monkeypatch):
    """A failure of our own after the turn is saved (here: the final save) still ends every follower's stream."""
    from chat import services

    def broken_finish(*args, **kwargs):
        raise RuntimeError("a bug of ours while saving")

    monkeypatch.setattr(services, "reply_finish", broken_finish)
    fake_openai.reply("All of it.")
    events = send(session, asgi_server.url, "/chat/send/", "Hello?")
    assert events.done["state"] == "error"
    assert "Your message is saved" in events.done["error"]
    assert Message.objects.filter(role="user", content="Hello?").exists()
