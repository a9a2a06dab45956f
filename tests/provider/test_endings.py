"""How replies end, in web chat: a reply cut by the output limit can be continued (appended to the same answer),
a content filter's ending is said, and turns dropped after a context-length refusal are told, live and saved."""

from __future__ import annotations

import pytest
import requests

from chat.models import Message, UsageRecord
from tests.streaming import logged_in_session, send

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def session(asgi_server, provider):
    return logged_in_session(asgi_server.url, "alice")


def _continue(session, server_url: str, conversation: int, message_id: int):
    return send(session, server_url, f"/chat/{conversation}/continue/", "", message_id=str(message_id))


def test_it_continues_an_answer_cut_by_the_output_limit(session, asgi_server, provider):
    provider.then(text="The first half of a long", finish="length").then(text=" answer, and its end.")
    cut = send(session, asgi_server.url, "/chat/send/", "Tell me everything")
    assert cut.done["state"] == "complete" and cut.done["finish"] == "length"
    conversation, answer = cut.start["conversation"], cut.start["assistant_message"]
    page = session.get(f"{asgi_server.url}/chat/{conversation}/").text
    assert 'data-finish="length"' in page and 'data-action="continue"' in page

    more = _continue(session, asgi_server.url, conversation, answer)

    assert more.start["assistant_message"] == answer  # the same answer, not a new turn
    assert more.text == "The first half of a long answer, and its end."  # from its start, so a reader resumes
    assert more.done["finish"] == "stop"
    message = Message.objects.get(pk=answer)
    assert (message.content, message.finish_reason, message.state) == (
        "The first half of a long answer, and its end.",
        "stop",
        "complete",
    )
    assert Message.objects.filter(role="assistant").count() == 1 and Message.objects.filter(role="user").count() == 1
    sent = provider.chat_requests[-1].json()["messages"]
    assert sent[-1] == {"role": "assistant", "content": "The first half of a long"}  # the model picks up from there
    assert sent[-2] == {"role": "user", "content": "Tell me everything"}
    assert UsageRecord.objects.count() == 2  # one row per call
    page = session.get(f"{asgi_server.url}/chat/{conversation}/").text
    assert 'data-finish="stop"' in page and 'data-action="continue"' not in page


def test_it_keeps_the_answer_and_its_continue_button_when_continuing_fails(session, asgi_server, provider):
    provider.then(text="Cut here", finish="length").then(status=500, error={"error": {"message": "boom"}})
    cut = send(session, asgi_server.url, "/chat/send/", "Go")
    more = _continue(session, asgi_server.url, cut.start["conversation"], cut.start["assistant_message"])
    assert more.done["state"] == "incomplete" and more.done["error"] and more.done["finish"] == "length"
    message = Message.objects.get(pk=cut.start["assistant_message"])
    assert (message.content, message.finish_reason) == ("Cut here", "length")
    page = session.get(f"{asgi_server.url}/chat/{cut.start['conversation']}/").text
    assert 'data-action="continue"' in page


def test_it_continues_only_the_last_answer(session, asgi_server, provider):
    provider.then(text="One", finish="length").then(text="Two")
    first = send(session, asgi_server.url, "/chat/send/", "First")
    conversation = first.start["conversation"]
    send(session, asgi_server.url, f"/chat/{conversation}/send/", "Second")
    refused = _continue(session, asgi_server.url, conversation, first.start["assistant_message"])
    assert refused.status == 409 and refused.body["error"]
    user_message = first.start["user_message"]
    assert _continue(session, asgi_server.url, conversation, user_message).status == 409
    assert _continue(session, asgi_server.url, conversation, 0).status == 409
    assert len(provider.chat_requests) == 2


def test_it_hides_continue_from_other_users(session, asgi_server, provider, bob):
    provider.then(text="Mine", finish="length")
    cut = send(session, asgi_server.url, "/chat/send/", "Private")
    bobs = logged_in_session(asgi_server.url, "bob")
    refused = _continue(bobs, asgi_server.url, cut.start["conversation"], cut.start["assistant_message"])
    assert refused.status == 404
    anonymous = requests.post(
        f"{asgi_server.url}/chat/{cut.start['conversation']}/continue/", allow_redirects=False, timeout=10
    )
    assert anonymous.status_code in (302, 403)
    assert len(provider.chat_requests) == 1


def test_it_says_when_a_content_filter_ended_the_reply(session, asgi_server, provider):
    provider.then(text="Partly answered", finish="content_filter")
    events = send(session, asgi_server.url, "/chat/send/", "Something risky")
    assert events.done["finish"] == "content_filter"
    page = session.get(f"{asgi_server.url}/chat/{events.start['conversation']}/").text
    assert 'data-finish="content_filter"' in page and "note-content-filter" in page
    assert 'data-action="continue"' not in page


def test_it_tells_the_user_when_turns_were_dropped_after_a_context_length_refusal(session, asgi_server, provider):
    refusal = "This model's maximum context length is 1000 tokens. However, your messages resulted in 2000 tokens."
    provider.then(text="ok").then(text="ok")
    first = send(session, asgi_server.url, "/chat/send/", "question one " * 50)
    conversation = first.start["conversation"]
    send(session, asgi_server.url, f"/chat/{conversation}/send/", "question two " * 50)
    provider.then(status=400, error={"error": {"message": refusal, "code": "context_length_exceeded"}})
    provider.then(text="Answered with less history.")

    events = send(session, asgi_server.url, f"/chat/{conversation}/send/", "And now?")

    assert events.text == "Answered with less history." and events.done["trimmed"] > 0
    message = Message.objects.get(pk=events.start["assistant_message"])
    assert message.trimmed_turns == events.done["trimmed"]
    page = session.get(f"{asgi_server.url}/chat/{conversation}/").text
    assert "note-trimmed" in page and "left out to fit" in page
