"""Issue 7's "Done when", first case, end to end and scaled down: a reasoning model that says nothing for longer than
both the read-idle timeout and the idle timeout of a proxy in front of the app (75 s against nginx's 60 s) still
gives one complete reply, its thinking shown and saved, from one upstream request."""

from __future__ import annotations

import pytest

from tests.conftest import ALICE_KEY, credential_create
from tests.fakes.providers import FakeProvider
from tests.fakes.proxy import IdleCuttingProxy
from tests.streaming import logged_in_session, send

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize("personality", ["slow_thinker", "openrouter"])
def test_a_long_silent_thinker_behind_an_idle_cutting_proxy_gives_one_complete_reply(
    personality, asgi_server, alice, settings
):
    from chat.models import Message, Role

    # Scale: 2 s of silence against a 1 s proxy idle timeout and a 1 s read-idle gap; keep-alives every 0.2 s
    # (production: 75 s, 60 s, UPSTREAM_READ_TIMEOUT 60 s, CHAT_KEEPALIVE_SECONDS 10 s).
    settings.CHAT_KEEPALIVE_SECONDS = 0.2
    settings.UPSTREAM_READ_TIMEOUT = 1.0
    settings.UPSTREAM_FIRST_TOKEN_TIMEOUT = 30
    with (
        FakeProvider(personality, key=ALICE_KEY, think_seconds=2.0) as fake,
        IdleCuttingProxy(asgi_server.url, idle=1.0) as proxy,
    ):
        settings.OPENAI_BASE_URL = fake.base_url
        credential_create(alice, ALICE_KEY)
        session = logged_in_session(proxy.url, "alice")
        events = send(session, proxy.url, "/chat/send/", "Think it over")
    assert proxy.cuts == 0
    assert events.done["state"] == "complete" and events.text == "Hello there."
    assert "".join(events.reasoning).strip() == "Thinking it over."
    assert len(fake.chat_requests) == 1  # sent once: never re-sent after a wait
    reply = Message.objects.get(role=Role.ASSISTANT)
    assert reply.content == "Hello there." and reply.reasoning.strip() == "Thinking it over."
