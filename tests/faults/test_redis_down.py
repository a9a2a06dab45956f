"""Redis goes away while people chat: pages still serve, replies finish, and limits fail the documented way.

Documented direction (README "Security and fault suites"): per-minute rate limits live in Redis and fail open (a
Redis outage must not lock everyone out; they apply again as soon as it is back); monthly budgets live in the
database and stay enforced; log-in throttles (allauth) fail closed; sessions fall back to the database; a reply
being written keeps going in its process.
"""

from __future__ import annotations

import pytest
import requests

from chat.models import Message
from chat.usage import usage_write
from tests.conftest import ALICE_KEY, PASSWORD, credential_create, user_create
from tests.streaming import logged_in_session, open_stream, parse_events, send

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def alice_session(redis_site, asgi_server, fake_openai):
    alice = user_create("alice")
    credential_create(alice, ALICE_KEY)
    return alice, logged_in_session(asgi_server.url, "alice")


def test_a_reply_finishes_and_pages_serve_when_redis_dies_mid_reply(
    alice_session, redis_site, asgi_server, fake_openai
):
    _alice, session = alice_session
    fake_openai.tokens(20, delay=0.05)
    response = open_stream(session, asgi_server.url, "/chat/send/", "Tell me a long story")
    lines = response.iter_lines(decode_unicode=True)
    first = parse_events(lines, stop_after_tokens=3)

    redis_site.stop()
    rest = parse_events(lines)

    assert rest.done["state"] == "complete", rest.done
    assert "".join(first.tokens + rest.tokens) == "".join(f"tok{i} " for i in range(20))
    reply = Message.objects.get(role="assistant")
    assert (reply.state, reply.content) == ("complete", "".join(f"tok{i} " for i in range(20)))
    for path in ("/chat/", f"/chat/{reply.conversation_id}/", "/settings/keys/", "/settings/usage/"):
        page = session.get(f"{asgi_server.url}{path}", timeout=30)
        assert page.status_code == 200, (path, page.status_code)
    assert "tok19" in session.get(f"{asgi_server.url}/chat/{reply.conversation_id}/", timeout=30).text


def test_log_in_throttles_fail_closed_while_redis_is_down(alice_session, redis_site, asgi_server):
    """allauth's throttle cannot count without its cache, so it refuses (429, with a message) rather than let
    password guesses through uncounted; people already signed in keep working, and log-in returns with Redis."""
    _alice, session = alice_session
    redis_site.stop()
    visitor = requests.Session()
    visitor.get(f"{asgi_server.url}/accounts/login/", timeout=30)
    refused = visitor.post(
        f"{asgi_server.url}/accounts/login/",
        data={"username": "alice", "password": PASSWORD, "csrfmiddlewaretoken": visitor.cookies["csrftoken"]},
        headers={"Referer": f"{asgi_server.url}/accounts/login/"},
        timeout=30,
    )
    assert refused.status_code == 429 and 'role="alert"' in refused.text
    assert session.get(f"{asgi_server.url}/chat/", timeout=30).status_code == 200
    redis_site.start()
    logged_in_session(asgi_server.url, "alice")


def test_rate_limits_fail_open_while_redis_is_down_and_apply_again_after(alice_session, redis_site, asgi_server):
    alice, session = alice_session
    alice.chat_rate_limit = 1
    alice.save(update_fields=["chat_rate_limit"])
    redis_site.stop()

    during = [send(session, asgi_server.url, "/chat/send/", f"Outage {i}") for i in range(2)]

    assert [e.done.get("state") for e in during] == ["complete", "complete"]  # not enforced: Redis holds the count
    redis_site.start()
    after = [send(session, asgi_server.url, "/chat/send/", f"Back {i}") for i in range(2)]
    assert after[0].done["state"] == "complete"
    assert after[1].status == 429 and "this minute" in after[1].body["error"], after[1]
    assert not Message.objects.filter(content="Back 1").exists()  # refused before anything was stored or sent


def test_budgets_stay_enforced_while_redis_is_down(alice_session, redis_site, asgi_server, fake_openai):
    alice, session = alice_session
    alice.monthly_token_budget = 100
    alice.save(update_fields=["monthly_token_budget"])
    # Recorded as a call records it, so every roll-up budgets may read has it.
    usage_write(
        user_id=alice.pk, model="gpt-4o-mini", source="web", usage={"prompt_tokens": 50, "completion_tokens": 100}
    )
    redis_site.stop()

    refused = send(session, asgi_server.url, "/chat/send/", "One more?")

    assert refused.status == 402, refused
    assert "budget" in refused.body["error"].lower() and "resets" in refused.body["error"].lower(), refused.body
    assert fake_openai.chat_requests == []  # nothing sent upstream
