"""Two web processes on one PostgreSQL and Redis: a reply started on one is followed and stopped from the other."""

from __future__ import annotations

import pytest

from chat.models import Message, UsageRecord
from tests.conftest import ALICE_KEY, credential_create
from tests.integration.web import session_for, web_process
from tests.streaming import follow_stream, open_stream, parse_events, stop

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis]

EVERYTHING = "".join(f"tok{i} " for i in range(400))


@pytest.fixture
def two_processes(fake_openai):
    with web_process(fake_openai.base_url) as a, web_process(fake_openai.base_url) as b:
        yield a[1], b[1]


def test_it_follows_and_stops_on_one_process_a_reply_running_on_another(two_processes, fake_openai, alice):
    url_a, url_b = two_processes
    credential_create(alice, ALICE_KEY)
    fake_openai.tokens(400, delay=0.03)
    session = session_for(alice)

    started = open_stream(session, url_a, "/chat/send/", "Write a long answer")
    seen = parse_events(started.iter_lines(decode_unicode=True), stop_after_tokens=5)
    started.close()  # the tab on process A is closed
    reply_id = seen.start["assistant_message"]

    # Another tab, served by process B, resumes from the last event it saw and goes on live.
    followed = follow_stream(session, url_b, reply_id, last_event_id=seen.last_id)
    lines = followed.iter_lines(decode_unicode=True)
    live = parse_events(lines, stop_after_tokens=10)
    assert live.start["assistant_message"] == reply_id
    assert EVERYTHING.startswith(seen.text + live.text) and len(live.tokens) >= 10
    assert not fake_openai.disconnected.is_set()

    assert stop(session, url_b, reply_id).json() == {"state": "stopped"}  # Stop, on B, answers once A has stopped

    assert fake_openai.disconnected.wait(10), "process A did not close its upstream request"
    rest = parse_events(lines)
    assert rest.done["state"] == "stopped"
    reply = Message.objects.get(pk=reply_id)
    assert reply.state == "stopped" and reply.content == seen.text + live.text + rest.text
    assert len(reply.content) < len(EVERYTHING) and fake_openai.completed_streams == 0
    assert UsageRecord.objects.get().outcome == "stopped"
