"""The fakes speak real HTTP; these tests pin their wire format and scripting."""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote_plus

import httpx
import pytest
import requests

from .oauth import FakeTokenServer
from .openai import FakeOpenAI, mask_key

KEY = "sk-test-0123456789abcdef"


@pytest.fixture
def openai() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(valid_keys={KEY}) as fake:
        yield fake


@pytest.fixture
def oauth() -> Iterator[FakeTokenServer]:
    with FakeTokenServer() as fake:
        fake.add_client("app", "s3cret")
        yield fake


def _chat_body(stream: bool = False, include_usage: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "say hi please"}],
    }
    if stream:
        body["stream"] = True
    if include_usage:
        body["stream_options"] = {"include_usage": True}
    return body


def _sse_data(lines: Iterator[str]) -> list[str]:
    return [line.removeprefix("data: ") for line in lines if line.startswith("data: ")]


def _stream(fake: FakeOpenAI, **body: Any) -> tuple[httpx.Response, list[str]]:
    with httpx.stream(
        "POST",
        f"{fake.base_url}/chat/completions",
        json=_chat_body(stream=True, **body),
        headers={"Authorization": f"Bearer {KEY}"},
    ) as response:
        return response, _sse_data(response.iter_lines())


def test_it_streams_spec_chunks_with_usage(openai: FakeOpenAI) -> None:
    openai.reply("Hello there world")

    response, data = _stream(openai, include_usage=True)

    assert response.headers["content-type"].startswith("text/event-stream")
    assert re.fullmatch(r"req_[0-9a-f]+", response.headers["x-request-id"])
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert {c["model"] for c in chunks} == {"gpt-4o-mini"}
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["id"].startswith("chatcmpl-")
    deltas = [c["choices"][0]["delta"] for c in chunks[:-1]]
    assert deltas[0] == {"role": "assistant", "content": ""}
    assert [d.get("content") for d in deltas[1:-1]] == ["Hello ", "there ", "world"]
    assert deltas[-1] == {}
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert all(c["usage"] is None for c in chunks[:-1])
    usage_chunk = chunks[-1]
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"]["prompt_tokens"] == 3
    assert usage_chunk["usage"]["completion_tokens"] == 3
    assert usage_chunk["usage"]["total_tokens"] == 6
    assert openai.completed_streams == 1


def test_it_omits_usage_unless_asked(openai: FakeOpenAI) -> None:
    openai.reply("a b", chunks=["a", " b"], prompt_tokens=7, completion_tokens=2)

    _, data = _stream(openai)

    chunks = [json.loads(d) for d in data[:-1]]
    assert all("usage" not in c for c in chunks)
    assert [c["choices"][0]["delta"].get("content") for c in chunks] == [
        "",
        "a",
        " b",
        None,
    ]


def test_it_returns_a_chat_completion_and_records_the_request(
    openai: FakeOpenAI,
) -> None:
    response = requests.post(
        f"{openai.base_url}/chat/completions",
        json=_chat_body(),
        headers={"Authorization": f"Bearer {KEY}"},
        timeout=5,
    )

    assert response.status_code == 200
    assert response.headers["x-request-id"].startswith("req_")
    payload = response.json()
    assert payload["object"] == "chat.completion"
    assert payload["id"].startswith("chatcmpl-")
    choice = payload["choices"][0]
    assert choice["message"]["content"] == "Hello from the fake."
    assert choice["message"]["refusal"] is None
    assert choice["finish_reason"] == "stop"
    assert payload["usage"]["total_tokens"] == 3 + 4
    [recorded] = openai.chat_requests
    assert recorded.bearer == KEY
    assert recorded.json()["messages"][0]["content"] == "say hi please"


def test_it_lists_models(openai: FakeOpenAI) -> None:
    openai.models = ["m1"]

    response = httpx.get(f"{openai.base_url}/models", headers={"Authorization": f"Bearer {KEY}"})

    assert response.json() == {
        "object": "list",
        "data": [
            {
                "id": "m1",
                "object": "model",
                "created": 1_700_000_000,
                "owned_by": "openai",
            }
        ],
    }


@pytest.mark.parametrize("key", ["sk-wrong-key-0000abcd", None])
def test_it_rejects_bad_keys_with_spec_error(openai: FakeOpenAI, key: str | None) -> None:
    headers = {"Authorization": f"Bearer {key}"} if key else {}

    response = httpx.post(f"{openai.base_url}/chat/completions", json=_chat_body(), headers=headers)

    assert response.status_code == 401
    assert response.headers["x-request-id"].startswith("req_")
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert error["code"] == "invalid_api_key"
    assert error["param"] is None
    if key:
        assert key not in response.text
        assert mask_key(key) in error["message"]
        assert error["message"].endswith(".") and "abcd" in error["message"]
    assert openai.pending == 0


def test_it_refuses_bodies_the_real_api_refuses(openai: FakeOpenAI) -> None:
    openai.reply("kept for later")
    url = f"{openai.base_url}/chat/completions"
    headers = {"Authorization": f"Bearer {KEY}"}

    no_model = httpx.post(url, json={"messages": []}, headers=headers)
    stray_options = httpx.post(url, json=_chat_body(include_usage=True), headers=headers)

    assert no_model.status_code == stray_options.status_code == 400
    assert stray_options.json()["error"]["param"] == "stream_options"
    assert openai.pending == 1


def test_it_delegates_auth_to_a_callable() -> None:
    with FakeOpenAI(authorize=lambda token: token == "at_good") as fake:
        url = f"{fake.base_url}/models"
        assert httpx.get(url, headers={"Authorization": "Bearer at_good"}).status_code == 200
        assert httpx.get(url, headers={"Authorization": "Bearer at_bad"}).status_code == 401


def test_it_scripts_errors_in_order(openai: FakeOpenAI) -> None:
    openai.error(429, headers={"retry-after": "2"}).error(500).reply("ok")
    url = f"{openai.base_url}/chat/completions"
    headers = {"Authorization": f"Bearer {KEY}"}

    first = requests.post(url, json=_chat_body(), headers=headers, timeout=5)
    second = requests.post(url, json=_chat_body(), headers=headers, timeout=5)
    third = requests.post(url, json=_chat_body(), headers=headers, timeout=5)

    assert first.status_code == 429
    assert first.headers["retry-after"] == "2"
    assert first.json()["error"]["code"] == "rate_limit_exceeded"
    assert second.status_code == 500
    assert second.json()["error"]["type"] == "server_error"
    assert third.json()["choices"][0]["message"]["content"] == "ok"


def test_it_cuts_a_stream_mid_way(openai: FakeOpenAI) -> None:
    openai.cut("one two three four", after_chunks=2)
    data: list[str] = []

    with (
        pytest.raises(httpx.RemoteProtocolError),
        httpx.stream(
            "POST",
            f"{openai.base_url}/chat/completions",
            json=_chat_body(stream=True),
            headers={"Authorization": f"Bearer {KEY}"},
        ) as response,
    ):
        for line in response.iter_lines():
            data += _sse_data(iter([line]))

    contents = [json.loads(d)["choices"][0]["delta"]["content"] for d in data]
    assert contents == ["", "one ", "two "]
    assert openai.completed_streams == 0


@pytest.mark.parametrize("delay", [0.0, 0.005])
def test_it_notices_the_client_leaving(openai: FakeOpenAI, delay: float) -> None:
    openai.tokens(100_000, delay=delay)

    with httpx.stream(
        "POST",
        f"{openai.base_url}/chat/completions",
        json=_chat_body(stream=True),
        headers={"Authorization": f"Bearer {KEY}"},
    ) as response:
        first = next(response.iter_lines())
    assert first.startswith("data: ")

    assert openai.disconnected.wait(5)
    assert openai.completed_streams == 0


def test_it_streams_benchmark_tokens(openai: FakeOpenAI) -> None:
    openai.tokens(50)

    _, data = _stream(openai)

    contents = [json.loads(d)["choices"][0]["delta"].get("content") for d in data[1:-2]]
    assert contents == [f"tok{i} " for i in range(50)]


def test_a_hang_does_not_block_close() -> None:
    fake = FakeOpenAI().start()
    fake.hang()
    errors: list[Exception] = []

    def call() -> None:
        try:
            httpx.post(
                f"{fake.base_url}/chat/completions",
                json=_chat_body(),
                headers={"Authorization": "Bearer x"},
                timeout=10,
            )
        except httpx.HTTPError as exc:
            errors.append(exc)

    caller = threading.Thread(target=call)
    caller.start()
    assert fake.wait_for_requests(1)
    started = time.monotonic()
    fake.close()
    caller.join(5)

    assert time.monotonic() - started < 2
    assert not caller.is_alive()
    assert len(errors) == 1
    assert not fake.disconnected.is_set()


def test_a_hang_notices_a_client_timeout(openai: FakeOpenAI) -> None:
    openai.hang()

    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            f"{openai.base_url}/chat/completions",
            json=_chat_body(),
            headers={"Authorization": f"Bearer {KEY}"},
            timeout=0.2,
        )

    assert openai.disconnected.wait(5)


# Token endpoint.


def _basic(client_id: str, secret: str) -> dict[str, str]:
    raw = f"{quote_plus(client_id)}:{quote_plus(secret)}".encode()
    return {"Authorization": f"Basic {base64.b64encode(raw).decode()}"}


def test_it_issues_client_credentials_with_basic_auth(oauth: FakeTokenServer) -> None:
    oauth.add_client("my app:1", "p@ss:w=rd+")

    response = requests.post(
        oauth.token_url,
        data={"grant_type": "client_credentials", "scope": "chat"},
        headers=_basic("my app:1", "p@ss:w=rd+"),
        timeout=5,
    )

    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    token = response.json()
    assert token["token_type"] == "Bearer"
    assert token["expires_in"] == 3600
    assert token["scope"] == "chat"
    assert "refresh_token" not in token
    assert oauth.is_valid_access_token(token["access_token"])
    assert not oauth.is_valid_access_token("at_unknown")
    assert oauth.grants_issued == 1


def test_it_accepts_client_secret_post(oauth: FakeTokenServer) -> None:
    form = {
        "grant_type": "client_credentials",
        "client_id": "app",
        "client_secret": "s3cret",
    }

    response = httpx.post(oauth.token_url, data=form)

    assert response.status_code == 200
    access_token = response.json()["access_token"]
    with FakeOpenAI(authorize=oauth.is_valid_access_token) as upstream:
        url = f"{upstream.base_url}/models"
        ok = httpx.get(url, headers={"Authorization": f"Bearer {access_token}"})
        assert ok.status_code == 200
        oauth.expire_access_tokens()
        assert httpx.get(url, headers={"Authorization": f"Bearer {access_token}"}).status_code == 401


def test_it_rotates_refresh_tokens_and_rejects_reuse(oauth: FakeTokenServer) -> None:
    old = oauth.issue_refresh_token("app", scope="chat")
    form = {"grant_type": "refresh_token", "refresh_token": old}

    first = requests.post(oauth.token_url, data=form, auth=("app", "s3cret"), timeout=5)
    reused = requests.post(oauth.token_url, data=form, auth=("app", "s3cret"), timeout=5)

    assert first.status_code == 200
    new = first.json()["refresh_token"]
    assert new != old
    assert first.json()["scope"] == "chat"
    assert reused.status_code == 400
    assert reused.json()["error"] == "invalid_grant"
    assert oauth.refresh_token_uses == {old: 2}
    again = requests.post(
        oauth.token_url,
        data={"grant_type": "refresh_token", "refresh_token": new},
        auth=("app", "s3cret"),
        timeout=5,
    )
    assert again.status_code == 200


def test_only_one_concurrent_refresh_wins(oauth: FakeTokenServer) -> None:
    token = oauth.issue_refresh_token("app")
    barrier = threading.Barrier(8)
    statuses: list[int] = []

    def refresh() -> None:
        barrier.wait(5)
        form = {"grant_type": "refresh_token", "refresh_token": token}
        statuses.append(httpx.post(oauth.token_url, data=form, auth=("app", "s3cret")).status_code)

    threads = [threading.Thread(target=refresh) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)

    assert sorted(statuses) == [200] + [400] * 7
    assert oauth.refresh_token_uses[token] == 8


def test_it_refreshes_a_public_client(oauth: FakeTokenServer) -> None:
    oauth.add_client("spa", None)
    token = oauth.issue_refresh_token("spa")
    form = {"grant_type": "refresh_token", "refresh_token": token, "client_id": "spa"}

    assert httpx.post(oauth.token_url, data=form).status_code == 200
    cc = httpx.post(oauth.token_url, data={"grant_type": "client_credentials", "client_id": "spa"})
    assert cc.json()["error"] == "unauthorized_client"


@pytest.mark.parametrize(
    ("kwargs", "status", "error", "challenge"),
    [
        ({"auth": ("app", "wrong")}, 401, "invalid_client", True),
        (
            {"data": {"client_id": "app", "client_secret": "wrong"}},
            401,
            "invalid_client",
            False,
        ),
        (
            {"data": {"client_id": "nobody", "client_secret": "x"}},
            401,
            "invalid_client",
            False,
        ),
        ({}, 401, "invalid_client", False),
        (
            {"auth": ("app", "s3cret"), "grant_type": "password"},
            400,
            "unsupported_grant_type",
            False,
        ),
        (
            {"auth": ("app", "s3cret"), "grant_type": None},
            400,
            "invalid_request",
            False,
        ),
        (
            {"auth": ("app", "s3cret"), "grant_type": "refresh_token"},
            400,
            "invalid_request",
            False,
        ),
    ],
)
def test_it_rejects_bad_token_requests(
    oauth: FakeTokenServer,
    kwargs: dict[str, Any],
    status: int,
    error: str,
    challenge: bool,
) -> None:
    grant_type = kwargs.pop("grant_type", "client_credentials")
    data = {
        **kwargs.pop("data", {}),
        **({"grant_type": grant_type} if grant_type else {}),
    }

    response = httpx.post(oauth.token_url, data=data, **kwargs)

    assert response.status_code == status
    assert response.json()["error"] == error
    assert ("www-authenticate" in response.headers) is challenge
    assert oauth.grants_issued == 0


def test_it_scripts_token_failures(oauth: FakeTokenServer) -> None:
    oauth.fail_next(503, times=2)
    form = {"grant_type": "client_credentials"}

    statuses = [httpx.post(oauth.token_url, data=form, auth=("app", "s3cret")).status_code for _ in range(3)]

    assert statuses == [503, 503, 200]
    assert len(oauth.token_requests) == 3


def test_a_token_hang_notices_a_client_timeout(oauth: FakeTokenServer) -> None:
    oauth.hang_next()
    form = {"grant_type": "client_credentials"}

    with pytest.raises(httpx.ReadTimeout):
        httpx.post(oauth.token_url, data=form, auth=("app", "s3cret"), timeout=0.2)

    response = httpx.post(oauth.token_url, data=form, auth=("app", "s3cret"))
    assert response.status_code == 200
