"""What one chat request costs before its upstream call and in all: statements, Redis round trips, thread hops.

These are the per-request costs behind the time to first token (issue 9's single-stream target); counted, not
timed, so they hold on a loaded machine. Run with -s to see each request's timeline.
"""

from __future__ import annotations

import json

import pytest
import requests
from django.conf import settings
from django.db import connection

from chat.models import Conversation, UsageRecord
from tests.api.conftest import key_issue
from tests.conftest import ALICE_KEY, credential_create
from tests.fakes.openai import DEFAULT_REPLY
from tests.request_cost import Recorder, request_cost
from tests.streaming import logged_in_session, send

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def recorded(fake_openai):
    """The recorder, marking "upstream" when the fake receives the chat request."""
    handle = fake_openai.handle
    with request_cost() as recorder:

        def marked(http, request):
            if request.route == "/v1/chat/completions":
                recorder.mark("upstream")
            return handle(http, request)

        fake_openai.handle = marked
        yield recorder
        fake_openai.handle = handle


def _report(title: str, recorder: Recorder, checks: str) -> None:
    print(f"\n--- {title}\n{recorder.timeline()}")
    for kind in ("sql", "redis", "hop"):
        print(f"{kind}: {recorder.count(kind, before=checks)} before the call starts, {recorder.count(kind)} in all")


def test_a_web_send_in_a_conversation_costs_few_statements_before_the_upstream_call(
    asgi_server, fake_openai, alice, recorded
):
    credential_create(alice, ALICE_KEY)
    session = logged_in_session(asgi_server.url, "alice")
    fake_openai.reply("First answer.", prompt_tokens=5, completion_tokens=3)
    first = send(session, asgi_server.url, "/chat/send/", "Hello")
    conversation = Conversation.objects.get(pk=first.start["conversation"])
    fake_openai.reply("Second answer.", prompt_tokens=9, completion_tokens=3)
    recorded.events.clear()
    recorded.mark("request")

    events = send(session, asgi_server.url, f"/chat/{conversation.pk}/send/", "And again")

    recorded.mark("done")
    _report("web send, second turn", recorded, "upstream")
    assert events.text == "Second answer." and events.done["state"] == "complete"
    assert UsageRecord.objects.filter(conversation=conversation).count() == 2
    # The checks: the user (its session is in Redis, or one more statement without it), the conversation with its
    # credential, the thread; then the lease, and only then the upstream call, while the turn is saved.
    lease = 'sql:SET "reply_lease" = %s, "reply_lease_until" = %s'
    session = 0 if settings.REDIS_URL else 1
    assert recorded.count("sql", before=lease) <= 3 + session, recorded.statements(before=lease)
    assert recorded.index(lease) < recorded.index("upstream")
    # The lease (which also records the model and credential), the turn (the user's and the assistant's message),
    # and at the end the reply, its usage row with the roll-ups and the lease's release: on PostgreSQL the turn is
    # one statement and the end one pipeline, a round trip each.
    turn, finish = (1, 7) if connection.vendor == "postgresql" else (2, 7)
    assert recorded.count("sql", before="done") <= 4 + turn + finish + session, recorded.statements(before="done")
    trips = 6 if connection.vendor == "postgresql" else 4 + turn + 2 + finish
    assert recorded.count("trip", before="done") <= trips + session, recorded.timeline()
    assert recorded.count("redis", before="done") <= 2  # the session's GET, the rate limit's one pipeline
    # The middleware stack, then checks and saving the turn in that same thread; then saving the reply.
    assert recorded.count("hop", before="upstream") <= 2, recorded.timeline()
    assert recorded.count("hop", before="done") <= 3, recorded.timeline()


def test_a_v1_streamed_call_costs_few_statements_before_the_upstream_call(asgi_server, fake_openai, alice, recorded):
    credential_create(alice, ALICE_KEY)
    key = key_issue(alice).key
    url, headers = f"{asgi_server.url}/v1/chat/completions", {"Authorization": f"Bearer {key}"}
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}], "stream": True}
    requests.post(url, json=body, headers=headers, timeout=10).close()  # last_used_at is written once a minute
    recorded.events.clear()
    recorded.mark("request")

    with requests.post(url, json=body, headers=headers, stream=True, timeout=10) as response:
        lines = [line for line in response.iter_lines(decode_unicode=True) if line.startswith("data: ")]

    recorded.mark("done")
    _report("/v1 streamed call", recorded, "upstream")
    assert lines[-1] == "data: [DONE]"
    text = "".join(json.loads(line[6:])["choices"][0]["delta"].get("content", "") for line in lines[:-2])
    assert text == DEFAULT_REPLY
    # The key with its owner, its credential (its own or the person's default); then the usage row with its
    # four roll-ups, one pipeline (one round trip) on PostgreSQL.
    assert recorded.count("sql", before="upstream") <= 2, recorded.statements(before="upstream")
    assert recorded.count("sql", before="done") <= 2 + 5, recorded.statements(before="done")
    trips = 3 if connection.vendor == "postgresql" else 2 + 7  # SQLite: BEGIN, 5 statements, COMMIT
    assert recorded.count("trip", before="done") <= trips, recorded.timeline()
    assert recorded.count("redis", before="upstream") <= 1  # the rate limit's one pipeline
    # The checks in one hop; the usage row in another (and the previous call's response closing may land here).
    assert recorded.count("hop", before="upstream") <= 1, recorded.timeline()
    assert recorded.count("hop", before="done") <= 2, recorded.timeline()
