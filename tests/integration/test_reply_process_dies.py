"""A web process killed mid-reply: its reply ends `incomplete`, with the text so far, within a minute."""

from __future__ import annotations

import signal
from datetime import timedelta

import pytest
import time_machine
from django.conf import settings
from django.utils import timezone

from chat.models import Conversation, Message
from chat.tasks import close_abandoned_replies
from tests.conftest import ALICE_KEY, credential_create
from tests.integration.web import session_for, web_process
from tests.streaming import open_stream, parse_events, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def web(fake_openai):
    """One web process, with a short lease so it checkpoints often."""
    with web_process(fake_openai.base_url, CHAT_LEASE_SECONDS="1.5") as started:
        yield started


def test_it_closes_the_reply_of_a_killed_web_process_as_incomplete_within_a_minute(web, fake_openai, alice):
    process, url = web
    credential_create(alice, ALICE_KEY)
    fake_openai.tokens(400, delay=0.05)
    session = session_for(alice)
    response = open_stream(session, url, "/chat/send/", "Write a long answer")
    seen = parse_events(response.iter_lines(decode_unicode=True), stop_after_tokens=10)
    reply_id = seen.start["assistant_message"]
    # The process saves what it has every lease / 3 while it streams; wait for a checkpoint past what we saw.
    wait_for(
        lambda: Message.objects.get(pk=reply_id).content.startswith(seen.text),
        "a checkpoint of the text so far",
    )

    process.send_signal(signal.SIGKILL)
    process.wait(10)
    killed_at = timezone.now()
    assert fake_openai.disconnected.wait(10), "the dead process's upstream connection stayed open"

    reply = Message.objects.get(pk=reply_id)
    assert reply.state == "streaming"  # nobody has noticed yet
    # The lease lapses CHAT_LEASE_SECONDS (default 30 s) after the last renewal; beat reaps every 15 s.
    assert Conversation.objects.get(pk=reply.conversation_id).reply_lease_until <= killed_at + timedelta(seconds=2)
    # Production's lease (CHAT_LEASE_SECONDS) plus beat's reaping interval is the bound the issue sets: a minute.
    reap_every = settings.CELERY_BEAT_SCHEDULE["close-abandoned-replies"]["schedule"]
    assert settings.CHAT_LEASE_SECONDS + reap_every <= 60
    with time_machine.travel(killed_at + timedelta(seconds=settings.CHAT_LEASE_SECONDS + reap_every)):
        assert close_abandoned_replies() == 1

    reply.refresh_from_db()
    assert reply.state == "incomplete" and "restarted" in reply.error
    everything = "".join(f"tok{i} " for i in range(400))
    assert reply.content.startswith(seen.text) and everything.startswith(reply.content)
    assert len(reply.content) < len(everything)
