from __future__ import annotations

import asyncio

import pytest

from tests.fakes.providers import FakeProvider
from tokens.provider import Bearer, Completion, ProviderError, normalise_base_url, stream_chat


def bearer_for_fake(fake: FakeProvider, *, key: str | None = None, **changes) -> Bearer:
    """The Bearer a credential would get after pasting what the provider's docs show."""
    p = fake.personality
    kind = "azure_openai" if p.auth_header == "api-key" else "api_key"
    pasted = fake.base_url + ("/openai/deployments/gpt4o?api-version=2024-10-21" if p.azure_classic else "")
    url = normalise_base_url(pasted, kind=kind)
    fields = {"kind": kind, "api_version": url.api_version, "guarded": True, **changes}
    return Bearer("", url.base_url, key or fake.key, **fields)


DELIVERY = {"pushed": False}


@pytest.fixture(params=["yielded", "pushed"])
def delivery(request):
    """Run the test twice: run_stream takes every delta as yielded, then (as the chat and the API do) only the
    first, the rest pushed to completion.sink from the connection's callback."""
    DELIVERY["pushed"] = request.param == "pushed"
    yield request.param
    DELIVERY["pushed"] = False


def run_stream(bearer: Bearer, model: str = "gpt-4o-mini", messages=None, **options):
    """Stream one reply; return (content, reasoning, completion, error or None)."""
    completion = Completion(model=model)
    messages = messages or [{"role": "user", "content": "Hello?"}]
    pushed = DELIVERY["pushed"]

    async def consume():
        content, reasoning = [], []

        def take(delta):
            (content if delta.kind == "content" else reasoning).append(delta.text)

        try:
            async with asyncio.timeout(20):  # a guard against hanging, not a measurement
                async for delta in stream_chat(
                    bearer, model=model, messages=messages, completion=completion, **options
                ):
                    take(delta)
                    if pushed:
                        completion.sink = take
        except ProviderError as exc:
            return "".join(content), "".join(reasoning), exc
        return "".join(content), "".join(reasoning), None

    content, reasoning, error = asyncio.run(consume())
    return content, reasoning, completion, error


@pytest.fixture
def local(settings):
    settings.UPSTREAM_ALLOWLIST = ["127.0.0.1"]
    return settings
