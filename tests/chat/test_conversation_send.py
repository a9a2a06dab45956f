from __future__ import annotations

import pytest

from chat.models import Conversation, Message, UsageRecord
from tests.conftest import ALICE_KEY, credential_create
from tests.streaming import logged_in_session, send

pytestmark = pytest.mark.django_db(transaction=True)


def test_it_streams_a_reply_with_the_users_own_key(asgi_server, fake_openai, alice):
    credential_create(alice, ALICE_KEY)
    fake_openai.reply("Hello Alice, nice to meet you.", delay=0.01, prompt_tokens=11, completion_tokens=7)
    session = logged_in_session(asgi_server.url, "alice")

    events = send(session, asgi_server.url, "/chat/send/", "Hi there")

    assert events.text == "Hello Alice, nice to meet you."
    assert len(events.tokens) > 1
    assert events.done["state"] == "complete"
    request = fake_openai.chat_requests[-1]
    assert request.bearer == ALICE_KEY
    body = request.json()
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["messages"] == [{"role": "user", "content": "Hi there"}]
    conversation = Conversation.objects.get(user=alice)
    assert [(m.role, m.content, m.state) for m in conversation.messages.all()] == [
        ("user", "Hi there", "complete"),
        ("assistant", "Hello Alice, nice to meet you.", "complete"),
    ]
    usage = UsageRecord.objects.get()
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (11, 7, 18)
    assert usage.user == alice and usage.status_code == 200 and not usage.is_estimated
    assert usage.request_id.startswith("req_") and usage.response_id.startswith("chatcmpl-")


def test_it_keeps_the_message_and_explains_an_upstream_401(asgi_server, fake_openai, alice):
    credential = credential_create(alice, ALICE_KEY)
    fake_openai.error(401, code="invalid_api_key")
    session = logged_in_session(asgi_server.url, "alice")

    events = send(session, asgi_server.url, "/chat/send/", "Are you there?")

    assert events.done["state"] == "error"
    assert "rejected this credential" in events.done["error"]
    assert Message.objects.filter(role="user", content="Are you there?").exists()
    credential.refresh_from_db()
    assert credential.status == "invalid"
    assert UsageRecord.objects.get().error_type == "auth"
