"""Recorded /v1/ responses validate against OpenAI's published schemas (vendored in tests/api/openai_schemas.json)."""

from __future__ import annotations

import json

import pytest
import requests

from tests.api.conftest import key_issue
from tests.api.openai_schema import validate

pytestmark = pytest.mark.django_db(transaction=True)

HI = [{"role": "user", "content": "Hi"}]


def _post(api: str, key: str, **body) -> requests.Response:
    return requests.post(
        f"{api}/chat/completions", headers={"Authorization": f"Bearer {key}"}, json=body, timeout=20, stream=True
    )


def test_a_completion_matches_the_schema(api, fake_openai, alice):
    response = _post(api, key_issue(alice).key, model="gpt-4o-mini", messages=HI)

    validate("CreateChatCompletionResponse", response.json())


def test_every_stream_chunk_matches_the_schema(api, fake_openai, alice):
    fake_openai.reply("a few words here")
    response = _post(
        api, key_issue(alice).key, model="gpt-4o-mini", messages=HI, stream=True, stream_options={"include_usage": True}
    )

    events = [line[6:] for line in response.iter_lines(decode_unicode=True) if line.startswith("data: ")]

    assert response.headers["content-type"].startswith("text/event-stream")
    assert events[-1] == "[DONE]"
    for event in events[:-1]:
        validate("CreateChatCompletionStreamResponse", json.loads(event))


def test_the_model_list_matches_the_schema(api, alice):
    response = requests.get(f"{api}/models", headers={"Authorization": f"Bearer {key_issue(alice).key}"}, timeout=10)

    validate("ListModelsResponse", response.json())


@pytest.mark.parametrize(
    ("bearer", "body", "status"),
    [
        ("byok_000000000000_wrong", {"model": "gpt-4o-mini", "messages": HI}, 401),
        (None, {"model": "gpt-4o", "messages": HI}, 403),
        (None, {"model": "gpt-4o-mini", "messages": "Hi"}, 400),
        (None, {"model": "gpt-4o-mini", "messages": HI, "tools": [{"type": "function"}]}, 400),
        (None, {"model": "gpt-4o-mini", "messages": HI, "n": 3}, 400),
    ],
)
def test_errors_match_the_schema(api, alice, bearer, body, status):
    key = key_issue(alice, allowed_models=["gpt-4o-mini"]).key

    response = _post(api, bearer or key, **body)

    assert response.status_code == status
    validate("ErrorResponse", response.json())


def test_a_malformed_body_gets_an_openai_error(api, alice):
    response = requests.post(
        f"{api}/chat/completions",
        headers={"Authorization": f"Bearer {key_issue(alice).key}", "Content-Type": "application/json"},
        data=b"{not json",
        timeout=10,
    )

    assert response.status_code == 400
    validate("ErrorResponse", response.json())


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", "/chat/completions", 405), ("POST", "/models", 405), ("GET", "/embeddings", 404), ("GET", "/", 404)],
)
def test_wrong_routes_and_methods_answer_in_openais_shape(api, method, path, status):
    response = requests.request(method, f"{api}{path}", allow_redirects=False, timeout=10)

    assert response.status_code == status
    validate("ErrorResponse", response.json())
