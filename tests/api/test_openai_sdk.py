"""The official openai SDK as a real client of /v1/ on the live ASGI app, with the fake provider behind it."""

from __future__ import annotations

import openai
import pytest

from chat.models import UsageRecord
from tests.api.conftest import key_issue
from tests.conftest import ALICE_KEY, credential_create

pytestmark = pytest.mark.django_db(transaction=True)


def _client(api: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=api, api_key=key, max_retries=0, timeout=20)


def test_it_completes_with_the_owners_credential(api, fake_openai, alice):
    issued = key_issue(alice)
    fake_openai.reply("Hello from upstream.", prompt_tokens=11, completion_tokens=4)

    reply = _client(api, issued.key).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}], temperature=0.2
    )

    assert reply.choices[0].message.content == "Hello from upstream."
    assert reply.choices[0].finish_reason == "stop"
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens, reply.usage.total_tokens) == (11, 4, 15)
    sent = fake_openai.chat_requests[-1]
    assert sent.bearer == ALICE_KEY  # the person's own provider key, never our key
    assert sent.json()["temperature"] == 0.2
    assert sent.json()["messages"] == [{"role": "user", "content": "Hi"}]
    row = UsageRecord.objects.get()
    assert (row.user, row.api_key, row.prompt_tokens, row.completion_tokens) == (alice, issued.row, 11, 4)
    assert row.outcome == "complete"


def test_it_streams_chunks_and_usage_when_asked(api, fake_openai, alice):
    issued = key_issue(alice)
    fake_openai.reply("one two three", prompt_tokens=5, completion_tokens=3)

    chunks = list(
        _client(api, issued.key).chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "Count"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )

    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "one two three"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == 8
    assert all(c.usage is None for c in chunks[:-1])
    assert len({c.id for c in chunks}) == 1
    row = UsageRecord.objects.get()
    assert (row.api_key, row.total_tokens, row.outcome) == (issued.row, 8, "complete")


def test_it_streams_without_usage_unless_asked(api, fake_openai, alice):
    issued = key_issue(alice)
    fake_openai.reply("short reply")

    chunks = list(
        _client(api, issued.key).chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}], stream=True
        )
    )

    assert all(c.choices for c in chunks)
    assert not any(getattr(c, "usage", None) for c in chunks)
    assert UsageRecord.objects.get().total_tokens > 0


def test_it_lists_models_narrowed_to_the_allowlist(api, fake_openai, alice):
    everything = key_issue(alice)
    narrow = key_issue(alice, allowed_models=["gpt-4o-mini"])

    all_ids = [m.id for m in _client(api, everything.key).models.list()]
    narrow_ids = [m.id for m in _client(api, narrow.key).models.list()]

    assert set(all_ids) == set(fake_openai.models)
    assert narrow_ids == ["gpt-4o-mini"]


def test_it_maps_errors_to_the_sdk_exception_classes(api, fake_openai, alice):
    issued = key_issue(alice, allowed_models=["gpt-4o-mini"])
    client = _client(api, issued.key)
    hi = [{"role": "user", "content": "Hi"}]

    with pytest.raises(openai.AuthenticationError) as bad_key:
        _client(api, issued.key[:-4] + "AAAA").chat.completions.create(model="gpt-4o-mini", messages=hi)
    assert bad_key.value.code == "invalid_api_key"

    with pytest.raises(openai.PermissionDeniedError) as outside:
        client.chat.completions.create(model="gpt-4o", messages=hi)
    assert outside.value.code == "model_not_allowed"

    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="gpt-4o-mini", messages=[])

    fake_openai.error(500)  # not re-sent: the provider may have started
    with pytest.raises(openai.InternalServerError) as upstream_down:
        client.chat.completions.create(model="gpt-4o-mini", messages=hi)
    assert upstream_down.value.status_code == 502

    fake_openai.error(429, headers={"Retry-After": "7"})
    with pytest.raises(openai.RateLimitError) as limited:
        client.chat.completions.create(model="gpt-4o-mini", messages=hi, stream=True)
    assert limited.value.response.headers["retry-after"] == "7"

    fake_openai.error(429, code="insufficient_quota", type="insufficient_quota")
    with pytest.raises(openai.RateLimitError) as quota:
        client.chat.completions.create(model="gpt-4o-mini", messages=hi)
    assert quota.value.code == "insufficient_quota"
    assert quota.value.response.headers["x-should-retry"] == "false"


def test_it_refuses_past_the_shared_rate_limit_with_retry_after(api, fake_openai, alice, settings):
    settings.CHAT_RATE_LIMIT_PER_MINUTE = 2
    client = _client(api, key_issue(alice).key)
    hi = [{"role": "user", "content": "Hi"}]
    client.chat.completions.create(model="gpt-4o-mini", messages=hi)
    client.chat.completions.create(model="gpt-4o-mini", messages=hi)

    with pytest.raises(openai.RateLimitError) as limited:
        client.chat.completions.create(model="gpt-4o-mini", messages=hi)

    assert limited.value.code == "rate_limit_exceeded"
    assert 1 <= int(limited.value.response.headers["retry-after"]) <= 60
    assert len(fake_openai.chat_requests) == 2  # nothing sent upstream for the refused call


def test_a_key_made_for_a_deleted_credential_stops_rather_than_bill_another(api, fake_openai, alice):
    work = credential_create(alice, "sk-alice-work-00000000000000000000000", name="Work", is_default=False)
    issued = key_issue(alice, credential=work)
    work.delete()  # alice's default credential remains

    with pytest.raises(openai.ConflictError) as refused:
        _client(api, issued.key).chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}]
        )

    assert refused.value.code == "credential_missing"
    assert fake_openai.chat_requests == []


@pytest.mark.parametrize(
    "routing", [{"models": ["gpt-4o"]}, {"fallbacks": ["gpt-4o"]}, {"fallbacks": [{"gpt-4o-mini": ["gpt-4o"]}]}]
)
def test_a_body_cannot_route_past_the_model_it_names(api, fake_openai, alice, routing):
    """Gateways pick another model from these (OpenRouter's `models`, LiteLLM's `fallbacks`): the key's allowlist and
    the usage row's price would then be about a model the provider did not run."""
    client = _client(api, key_issue(alice, allowed_models=["gpt-4o-mini"]).key)
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}], extra_body=routing
        )
    assert refused.value.code == "unsupported_parameter" and next(iter(routing)) in refused.value.message
    assert fake_openai.chat_requests == []
