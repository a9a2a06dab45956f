from __future__ import annotations

import pytest

from chat.models import Conversation, Message, UsageRecord
from chat.services import trim_history
from tests.conftest import credential_create
from tests.streaming import logged_in_session, send

pytestmark = pytest.mark.django_db(transaction=True)


def test_it_sends_the_whole_conversation_with_its_system_prompt(asgi_server, fake_openai, session):
    fake_openai.reply("First answer.").reply("Second answer.")
    first = send(session, asgi_server.url, "/chat/send/", "First question", system_prompt="Be terse.")
    path = f"/chat/{first.start['conversation']}/send/"
    send(session, asgi_server.url, path, "Second question")
    assert fake_openai.chat_requests[-1].json()["messages"] == [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": "First question"},
        {"role": "assistant", "content": "First answer."},
        {"role": "user", "content": "Second question"},
    ]
    assert Conversation.objects.get().title == "First question"


def test_it_uses_the_chosen_model(asgi_server, fake_openai, session):
    events = send(session, asgi_server.url, "/chat/send/", "Hi", model="gpt-4o")
    assert fake_openai.chat_requests[-1].json()["model"] == "gpt-4o"
    assert Conversation.objects.get(pk=events.start["conversation"]).model == "gpt-4o"


def _thread(conversation_id: int) -> list[str]:
    return [m.content for m in Conversation.objects.get(pk=conversation_id).messages.thread()]


def test_it_regenerates_the_last_reply_keeping_the_earlier_version(asgi_server, fake_openai, session):
    fake_openai.reply("Meh.").reply("Much better.")
    first = send(session, asgi_server.url, "/chat/send/", "Tell me a joke")
    again = send(session, asgi_server.url, f"/chat/{first.start['conversation']}/regenerate/", "")
    assert again.text == "Much better."
    assert _thread(first.start["conversation"]) == ["Tell me a joke", "Much better."]
    thread = Conversation.objects.get().messages.thread()
    assert [m.content for m in thread[-1].versions] == ["Meh.", "Much better."] and thread[-1].version == 2
    assert fake_openai.chat_requests[-1].json()["messages"] == [{"role": "user", "content": "Tell me a joke"}]
    assert UsageRecord.objects.count() == 2  # each version's call stays recorded


def test_it_edits_the_last_message_and_answers_again(asgi_server, fake_openai, session):
    fake_openai.reply("Paris.").reply("Rome.")
    first = send(session, asgi_server.url, "/chat/send/", "Capital of France?")
    again = send(session, asgi_server.url, f"/chat/{first.start['conversation']}/edit/", "Capital of Italy?")
    assert again.text == "Rome."
    assert _thread(first.start["conversation"]) == ["Capital of Italy?", "Rome."]
    assert Message.objects.count() == 4


def test_it_edits_an_earlier_message_forking_the_conversation(asgi_server, fake_openai, session):
    fake_openai.reply("A1").reply("A2").reply("A1 again")
    first = send(session, asgi_server.url, "/chat/send/", "Q1")
    pk = first.start["conversation"]
    send(session, asgi_server.url, f"/chat/{pk}/send/", "Q2")
    q1 = Message.objects.get(content="Q1")

    send(session, asgi_server.url, f"/chat/{pk}/edit/", "Q1 edited", message_id=q1.pk)

    assert _thread(pk) == ["Q1 edited", "A1 again"]
    assert fake_openai.chat_requests[-1].json()["messages"] == [{"role": "user", "content": "Q1 edited"}]
    q1.select()  # back to the first version: its whole branch returns
    assert _thread(pk) == ["Q1", "A1", "Q2", "A2"]


def test_it_regenerates_an_earlier_reply_from_its_own_history(asgi_server, fake_openai, session):
    fake_openai.reply("A1").reply("A2").reply("A1 bis")
    first = send(session, asgi_server.url, "/chat/send/", "Q1")
    pk = first.start["conversation"]
    send(session, asgi_server.url, f"/chat/{pk}/send/", "Q2")
    a1 = Message.objects.get(content="A1")

    send(session, asgi_server.url, f"/chat/{pk}/regenerate/", "", message_id=a1.pk)

    assert _thread(pk) == ["Q1", "A1 bis"]
    assert fake_openai.chat_requests[-1].json()["messages"] == [{"role": "user", "content": "Q1"}]


def test_it_refuses_to_edit_a_message_of_another_conversation(asgi_server, fake_openai, session):
    first = send(session, asgi_server.url, "/chat/send/", "Q1")
    other = send(session, asgi_server.url, "/chat/send/", "Elsewhere")
    foreign = Message.objects.get(content="Elsewhere")
    refused = send(session, asgi_server.url, f"/chat/{first.start['conversation']}/edit/", "x", message_id=foreign.pk)
    assert refused.status == 409 and other.start["conversation"] != first.start["conversation"]


def test_it_refuses_an_overlong_message_before_saving_it(asgi_server, fake_openai, session, settings):
    settings.CHAT_MAX_MESSAGE_CHARS = 20
    events = send(session, asgi_server.url, "/chat/send/", "x" * 21)
    assert events.status == 413 and "the limit is 20" in events.body["error"]
    assert not Message.objects.exists() and not fake_openai.chat_requests


@pytest.mark.parametrize("field", ["message", "model", "system_prompt"])
def test_it_refuses_a_null_character_before_saving_anything(field, asgi_server, fake_openai, session):
    """PostgreSQL text cannot hold NUL: once the reply had started, the turn could not be saved (found by the fuzz)."""
    fields = {"message": "Hello", field: "Hel\x00lo"}
    events = send(session, asgi_server.url, "/chat/send/", **fields)
    assert events.status == 400 and events.body["error"] == "Null characters are not allowed."
    assert not Message.objects.exists() and not fake_openai.chat_requests


@pytest.mark.parametrize("path", ["/chat/send/", "regenerate"])
def test_it_refuses_a_model_id_longer_than_its_column(path, asgi_server, fake_openai, session):
    """Model columns hold 100 characters: a longer id failed the save after the reply started, on PostgreSQL."""
    first = send(session, asgi_server.url, "/chat/send/", "Hello")
    if path == "regenerate":
        path = f"/chat/{first.start['conversation']}/regenerate/"
    events = send(session, asgi_server.url, path, "Again", model="m" * 101)
    assert events.status == 400 and events.body["error"] == "That model id is 101 characters; the limit is 100."
    assert Message.objects.count() == 2 and len(fake_openai.chat_requests) == 1
    assert send(session, asgi_server.url, "/chat/send/", "Once more", model="m" * 100).done["state"] == "complete"


def test_it_rate_limits_per_user_with_an_admin_override(asgi_server, fake_openai, session, alice, settings):
    settings.CHAT_RATE_LIMIT_PER_MINUTE = 2
    for n in range(2):
        assert send(session, asgi_server.url, "/chat/send/", f"msg {n}").done["state"] == "complete"
    refused = send(session, asgi_server.url, "/chat/send/", "one more")
    assert refused.status == 429 and "Try again in" in refused.body["error"]
    alice.chat_rate_limit = 10
    alice.save()
    assert send(session, asgi_server.url, "/chat/send/", "now allowed").done["state"] == "complete"


def test_it_sends_a_user_without_a_key_to_the_keys_page(asgi_server, fake_openai, bob):
    session = logged_in_session(asgi_server.url, "bob")
    events = send(session, asgi_server.url, "/chat/send/", "Hello")
    assert events.status == 409
    assert events.body["redirect"] == "/settings/keys/?next=chat"
    assert "Add an API key" in events.body["error"]
    page = session.get(f"{asgi_server.url}{events.body['redirect']}").text
    assert "Add an API key to start chatting" in page


def test_it_hides_other_users_conversations(asgi_server, fake_openai, session, bob):
    events = send(session, asgi_server.url, "/chat/send/", "Private")
    conversation = events.start["conversation"]
    credential_create(bob, "sk-bob-key-0000000000000000000000000")
    intruder = logged_in_session(asgi_server.url, "bob")
    for path in ("/", "/send/", "/edit/", "/regenerate/"):
        if path == "/":
            status = intruder.get(f"{asgi_server.url}/chat/{conversation}/").status_code
        else:
            status = send(intruder, asgi_server.url, f"/chat/{conversation}{path}", "mine now").status
        assert status == 404, path
    for path in ("rename/", "system-prompt/", "delete/"):
        response = intruder.post(
            f"{asgi_server.url}/chat/{conversation}/{path}",
            data={"title": "x", "csrfmiddlewaretoken": intruder.cookies["csrftoken"]},
            headers={"Referer": asgi_server.url},
        )
        assert response.status_code == 404, path
    assert Conversation.objects.get(pk=conversation).title == "Private"


def test_it_trims_the_oldest_turns_to_fit_the_context_window():
    messages = [{"role": "system", "content": "Be kind."}] + [
        {"role": "user" if n % 2 == 0 else "assistant", "content": "word " * 2000} for n in range(6)
    ]
    trimmed, dropped = trim_history(messages, 8_192)
    assert dropped == 3
    assert trimmed[0] == {"role": "system", "content": "Be kind."}
    assert trimmed[1:] == messages[4:]


def test_it_keeps_the_whole_history_when_the_window_is_unknown():
    messages = [{"role": "user", "content": "word " * 20_000}] * 3
    assert trim_history(messages, None) == (messages, 0)  # the provider decides; see tests/provider


def test_it_says_on_the_page_when_history_was_trimmed(asgi_server, fake_openai, session, alice):
    alice.credentials.update(context_window=8_192)  # the owner's override for a model we do not know
    conversation = Conversation.objects.create(user=alice, title="Long", model="unknown-local-model")
    for n in range(6):
        Message.objects.create(
            conversation=conversation, role="user" if n % 2 == 0 else "assistant", content="w " * 2500
        )
    events = send(session, asgi_server.url, f"/chat/{conversation.pk}/send/", "And now?")
    assert events.start["trimmed"] > 0
    sent = fake_openai.chat_requests[-1].json()["messages"]
    assert sent[-1] == {"role": "user", "content": "And now?"} and len(sent) < 7
    page = session.get(f"{asgi_server.url}/chat/{conversation.pk}/").text
    assert "left out to fit unknown-local-model’s context window" in page
