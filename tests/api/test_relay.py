"""The relay behind /v1/chat/completions: reasoning, failures mid-stream, clients that leave, token refresh."""

from __future__ import annotations

import json
import socket
import time

import openai
import pytest
import requests

from chat.models import UsageRecord
from tests.api.conftest import key_issue
from tests.browser.conftest import eventually
from tests.conftest import credential_create
from tests.fakes.providers import FakeProvider

pytestmark = pytest.mark.django_db(transaction=True)

HI = [{"role": "user", "content": "Hi"}]


def _client(api: str, key) -> openai.OpenAI:
    return openai.OpenAI(base_url=api, api_key=key, max_retries=0, timeout=20)


@pytest.fixture
def deepseek(local_upstreams):
    with FakeProvider("deepseek") as fake:
        yield fake


def test_it_relays_a_thinking_models_reasoning(asgi_server, deepseek, alice):
    credential_create(alice, deepseek.key, base_url=deepseek.base_url)
    client = _client(f"{asgi_server.url}/v1", key_issue(alice).key)
    deepseek.then(text="It is 42.", reasoning="Six times seven.").then(text="It is 42.", reasoning="Six times seven.")

    chunks = list(client.chat.completions.create(model="deepseek-reasoner", messages=HI, stream=True))
    whole = client.chat.completions.create(model="deepseek-reasoner", messages=HI)

    deltas = [c.choices[0].delta for c in chunks if c.choices]
    assert "".join(getattr(d, "reasoning_content", None) or "" for d in deltas).strip() == "Six times seven."
    assert "".join(d.content or "" for d in deltas).strip() == "It is 42."
    assert whole.choices[0].message.content.strip() == "It is 42."
    assert whole.choices[0].message.reasoning_content.strip() == "Six times seven."
    assert deepseek.chat_requests[-1].headers["authorization"] == f"Bearer {deepseek.key}"


def test_a_reply_cut_upstream_ends_with_an_error_event(api, fake_openai, alice):
    fake_openai.cut("one two three four five", after_chunks=2)
    stream = _client(api, key_issue(alice).key).chat.completions.create(model="gpt-4o-mini", messages=HI, stream=True)

    received = []
    with pytest.raises(openai.APIError):
        for chunk in stream:
            received.append(chunk.choices[0].delta.content or "")

    assert "".join(received) == "one two "
    row = UsageRecord.objects.get()
    assert (row.outcome, row.error_type) == ("incomplete", "cut")
    assert row.completion_tokens > 0  # what was generated is counted


def test_a_client_that_leaves_stops_the_upstream_call_and_leaves_one_row(api, fake_openai, alice):
    fake_openai.tokens(400, delay=0.02)
    response = requests.post(
        f"{api}/chat/completions",
        headers={"Authorization": f"Bearer {key_issue(alice).key}"},
        json={"model": "gpt-4o-mini", "messages": HI, "stream": True},
        stream=True,
        timeout=20,
    )
    lines = response.iter_lines()
    first = [next(lines) for _ in range(6)]
    response.close()

    assert first[0].startswith(b"data: ")
    assert fake_openai.disconnected.wait(10), "the upstream call went on after the client left"
    row = eventually(lambda: UsageRecord.objects.first(), message="no usage row")
    assert row.outcome == "stopped" and row.completion_tokens > 0


def test_the_sdk_refreshes_an_access_token_before_it_expires(api, fake_openai, alice, settings):
    settings.API_ACCESS_TOKEN_LIFETIME = 61  # a minute's margin: every request exchanges again
    key = key_issue(alice).key
    exchanged = []

    def access_token() -> str:
        body = requests.post(f"{api}/tokens", headers={"Authorization": f"Bearer {key}"}, timeout=10).json()
        exchanged.append((time.time(), body["expires_in"]))
        return body["access_token"]

    client = _client(api, access_token)
    client.chat.completions.create(model="gpt-4o-mini", messages=HI)
    client.models.list()

    assert len(exchanged) == 2
    assert {r.bearer for r in fake_openai.chat_requests} == {fake_openai.chat_requests[0].bearer}
    assert json.loads(fake_openai.chat_requests[0].body)["model"] == "gpt-4o-mini"


def test_a_call_over_budget_is_refused_with_openais_error_and_nothing_goes_upstream(api, fake_openai, alice):
    from chat.usage import usage_write

    alice.monthly_token_budget = 100
    alice.save()
    usage_write(user_id=alice.pk, model="gpt-4o-mini", source="web", usage={"prompt_tokens": 100})
    with pytest.raises(openai.RateLimitError) as refused:
        _client(api, key_issue(alice).key).chat.completions.create(model="gpt-4o-mini", messages=HI)
    assert refused.value.code == "budget_exceeded" and "monthly token budget" in refused.value.message
    assert fake_openai.chat_requests == []
    assert UsageRecord.objects.count() == 1  # the refusal is not a model call


def test_a_client_that_reads_slowly_gets_every_chunk_in_order(api, fake_openai, alice):
    # About 2 MB of events at the fake's full speed, read 1 KB at a time through a small receive buffer: the
    # app's writes outrun the client, so uvicorn pauses them and the relay must wait for it without losing or
    # reordering a chunk.
    n = 10_000
    fake_openai.tokens(n)
    host, port = api.removeprefix("http://").split("/")[0].split(":")
    body = json.dumps({"model": "gpt-4o-mini", "messages": HI, "stream": True}).encode()
    request = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: %b\r\nAuthorization: Bearer %b\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%b"
    ) % (host.encode(), key_issue(alice).key.encode(), len(body), body)
    with socket.socket() as conn:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        conn.settimeout(20)
        conn.connect((host, int(port)))
        conn.sendall(request)
        answer = bytearray()
        while chunk := conn.recv(1024):
            answer += chunk

    head, _, chunked = bytes(answer).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    events, rest = [], chunked
    while True:  # undo the chunked transfer coding
        size, _, rest = rest.partition(b"\r\n")
        if int(size, 16) == 0:
            break
        events.append(rest[: int(size, 16)])
        rest = rest[int(size, 16) + 2 :]
    stream = b"".join(events).decode()
    payloads = [line[6:] for line in stream.split("\n\n") if line.startswith("data: ")]
    assert payloads[-1] == "[DONE]"
    chunks = [json.loads(p) for p in payloads[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "".join(f"tok{i} " for i in range(n))
    row = eventually(lambda: UsageRecord.objects.first(), message="no usage row")
    assert row.outcome == "complete" and UsageRecord.objects.count() == 1
