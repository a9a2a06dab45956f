from __future__ import annotations

import pytest

from chat.models import Conversation, Message
from tests.conftest import ALICE_KEY, credential_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def conversation(alice):
    conversation = Conversation.objects.create(user=alice, title="Trip to Lisbon")
    Message.objects.create(conversation=conversation, role="user", content="Where should I eat <b>tonight</b>?")
    Message.objects.create(conversation=conversation, role="assistant", content="Try **Taberna** <script>x()</script>")
    return conversation


def test_it_renders_assistant_markdown_safely_and_user_text_as_typed(alice_client, conversation):
    page = alice_client.get(f"/chat/{conversation.pk}/").content.decode()
    assert "Where should I eat &lt;b&gt;tonight&lt;/b&gt;?" in page
    # The reply's Markdown source, escaped, for the page's one renderer (chat/static/chat/render.js).
    assert "Try **Taberna** &lt;script&gt;x()&lt;/script&gt;</div>" in page
    assert "<script>x()" not in page
    assert 'data-role="assistant" data-state="complete"' in page


def test_it_searches_titles_and_message_text(alice_client, alice, conversation):
    Conversation.objects.create(user=alice, title="Tax return")
    assert "Trip to Lisbon" in alice_client.get("/chat/?q=taberna").content.decode()
    page = alice_client.get("/chat/?q=tax").content.decode()
    assert "Tax return" in page and "Trip to Lisbon" not in page


def test_it_renames_and_sets_a_system_prompt(alice_client, conversation):
    alice_client.post(f"/chat/{conversation.pk}/rename/", {"title": "Food in Lisbon"})
    alice_client.post(f"/chat/{conversation.pk}/system-prompt/", {"system_prompt": "You are a food critic."})
    conversation.refresh_from_db()
    assert (conversation.title, conversation.system_prompt) == ("Food in Lisbon", "You are a food critic.")


def test_it_deletes_a_conversation(alice_client, conversation):
    response = alice_client.post(f"/chat/{conversation.pk}/delete/")
    assert response.status_code == 302
    assert not Conversation.objects.exists() and not Message.objects.exists()


def test_it_lists_models_from_the_credential_and_caches_them(alice_client, alice, fake_openai):
    credential_create(alice, ALICE_KEY)
    fake_openai.models = ["gpt-4o", "gpt-4o-mini", "o3"]
    assert alice_client.get("/chat/models/").json() == {"models": ["gpt-4o", "gpt-4o-mini", "o3"], "error": ""}
    alice_client.get("/chat/models/")
    assert len([r for r in fake_openai.requests if r.route == "/v1/models"]) == 1
    assert fake_openai.requests[-1].bearer == ALICE_KEY


def test_it_falls_back_to_the_default_model_when_listing_fails(alice_client, alice, fake_openai):
    credential_create(alice, ALICE_KEY)
    fake_openai.valid_keys = {"someone-else"}
    body = alice_client.get("/chat/models/").json()
    assert body["models"] == ["gpt-4o-mini"] and "rejected" in body["error"]


def test_it_sends_anonymous_visitors_to_log_in(client, conversation):
    response = client.get(f"/chat/{conversation.pk}/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def test_it_groups_the_sidebar_by_age(alice_client, alice, conversation):
    from datetime import timedelta

    from django.utils import timezone

    Conversation.objects.create(user=alice, title="Older plan", updated_at=timezone.now() - timedelta(days=3))
    page = alice_client.get("/chat/").content.decode()
    assert page.index(">Today<") < page.index("Trip to Lisbon") < page.index(">Previous 7 days<")
    assert page.index(">Previous 7 days<") < page.index("Older plan")
