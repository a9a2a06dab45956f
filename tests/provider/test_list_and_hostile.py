"""Model lists in every shape, and upstreams that try to hurt us: caps, deadlines, cookies."""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading

import httpx
import pytest

from tests.fakes.providers import FakeProvider
from tests.provider.conftest import bearer_for_fake, run_stream
from tokens.http1 import Http1Transport
from tokens.provider import Bearer, Completion, ProviderError, list_models, model_ids, stream_chat
from tokens.ssrf import UnsafeURL, address_is_public
from tokens.transport import guarded_session

MESSAGES = [{"role": "user", "content": "Hello?"}]

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("delivery")]


@pytest.mark.parametrize(
    "name", ["openai", "azure_classic", "azure_v1", "deepseek", "openrouter", "ollama", "together", "strict"]
)
def test_it_lists_models_from_every_personality(name, local):
    with FakeProvider(name) as fake:
        assert list_models(bearer_for_fake(fake)) == sorted(fake.personality.models)


@pytest.mark.parametrize(
    ("payload", "ids"),
    [
        ({"object": "list", "data": [{"id": "b"}, {"id": "a"}, {"id": "a"}]}, ["a", "b"]),
        ([{"id": "m1", "type": "chat"}], ["m1"]),
        ({"models": [{"name": "llama3.2:latest", "model": "llama3.2:latest"}]}, ["llama3.2:latest"]),
        ({"models": [{"name": "models/gemini-2.0-flash"}]}, ["models/gemini-2.0-flash"]),
        ({"data": ["x", "y"]}, ["x", "y"]),
        ({"data": {"gpt4o": {"model": "gpt-4o"}}}, ["gpt4o"]),
        ({"data": [{"id": ""}, {"id": 5}, None, {"id": "ok"}, {"id": "z" * 500}]}, ["ok"]),
    ],
)
def test_it_reads_every_list_shape(payload, ids):
    assert model_ids(payload) == ids


@pytest.mark.parametrize("payload", [{"error": "nope"}, "text", 3, {"object": "list"}])
def test_it_refuses_what_is_not_a_list(payload):
    with pytest.raises(ProviderError) as caught:
        model_ids(payload)
    assert caught.value.kind == "bad_response"


def test_it_stops_a_trickled_model_list_at_the_deadline(local, settings):
    settings.CHECK_TIMEOUT = 0.5
    with FakeProvider("openai", hostile="trickle_models") as fake, pytest.raises(ProviderError) as caught:
        list_models(bearer_for_fake(fake))
    assert caught.value.kind == "timeout"


def test_it_keeps_no_cookies_between_calls(local):
    with FakeProvider("openai", hostile="cookie") as fake:
        bearer = bearer_for_fake(fake)
        list_models(bearer)
        list_models(bearer)
    assert all("cookie" not in r.headers for r in fake.requests)


def test_it_keeps_no_cookies_from_a_stream(local):
    async def two_users_stream(first, second) -> None:
        # One event loop, so both calls share the process's pooled client, as two users' chats do.
        for bearer in (first, second):
            completion = Completion(model="gpt-4o-mini")
            async for _delta in stream_chat(bearer, model="gpt-4o-mini", messages=MESSAGES, completion=completion):
                pass

    with FakeProvider("openai") as fake:
        fake.then(headers={"Set-Cookie": "tracker=alice; Path=/"})
        asyncio.run(two_users_stream(bearer_for_fake(fake), bearer_for_fake(fake)))
    assert len(fake.chat_requests) == 2
    assert all("cookie" not in r.headers for r in fake.requests)


def test_it_stops_reading_an_endless_event(local, settings):
    settings.UPSTREAM_MAX_EVENT_BYTES = 256 * 1024
    with FakeProvider("hostile", hostile="endless_line") as fake:
        _content, _reasoning, _completion, error = run_stream(bearer_for_fake(fake))
        assert fake.client_left.wait(10)  # we hung up; the upstream did not get to stop us
        fake.release.set()
    assert error.kind == "too_large"
    assert fake.sent_bytes < 8 * 1024 * 1024  # bounded by the cap and socket buffers, not by the upstream


@pytest.mark.parametrize("mode", ["huge_reply", "endless_reasoning"])
@pytest.mark.parametrize("cap", ["UPSTREAM_MAX_REPLY_BYTES", "UPSTREAM_MAX_REPLY_CHARS"])
def test_it_stops_a_reply_past_the_size_cap_and_keeps_what_came(mode, cap, local, settings):
    setattr(settings, cap, 1024 * 1024)
    with FakeProvider("hostile", hostile=mode) as fake:
        content, reasoning, _completion, error = run_stream(bearer_for_fake(fake))
        assert fake.client_left.wait(10)
        fake.release.set()
    assert error.kind == "cut" and error.__cause__.kind == "too_large"
    assert 0 < len(content + reasoning) <= 1024 * 1024


@pytest.mark.parametrize(
    "address",
    [
        "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
        "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
        "64:ff9b:1::808:808",  # local-use NAT64
        "2002:7f00:1::1",  # 6to4 of 127.0.0.1
        "2002:808:808::1",  # 6to4 at all
        "::7f00:1",  # IPv4-compatible 127.0.0.1
        "::a9fe:a9fe",  # IPv4-compatible 169.254.169.254
        "fec0::1",  # site-local
        "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo
        "::ffff:10.0.0.1",
    ],
)
def test_it_refuses_ipv6_forms_that_embed_private_ipv4(address):
    assert address_is_public(address) is False


def test_it_accepts_nat64_of_a_public_address():
    assert address_is_public("64:ff9b::808:808") is True
    assert address_is_public("2606:4700:4700::1111") is True


@pytest.fixture
def listener():
    """A TCP port on 127.0.0.1 that records whether anyone completed a handshake."""
    server = socket.create_server(("127.0.0.1", 0))
    server.setblocking(False)
    yield server
    server.close()


def _handshakes(server: socket.socket) -> int:
    count = 0
    while True:
        try:
            server.accept()[0].close()
            count += 1
        except BlockingIOError:
            return count


def test_it_refuses_before_any_tcp_handshake_with_a_private_address_sync(listener, settings):
    port = listener.getsockname()[1]
    with pytest.raises(UnsafeURL):
        guarded_session().get(f"http://localhost:{port}/v1/models", timeout=2)
    assert _handshakes(listener) == 0


def test_it_refuses_before_any_tcp_handshake_with_a_private_address_async(listener, settings):
    port = listener.getsockname()[1]

    async def connect():
        transport = Http1Transport(ssl_context=ssl.create_default_context(), guarded=True)
        async with httpx.AsyncClient(transport=transport) as client:
            await client.get(f"http://localhost:{port}/v1/models")

    with pytest.raises(UnsafeURL):
        asyncio.run(connect())
    assert _handshakes(listener) == 0


def test_it_refuses_a_private_stream_target_without_sending_the_key(listener):
    port = listener.getsockname()[1]
    _, _, _, error = run_stream(Bearer("", f"http://localhost:{port}/v1", "sk-secret-0001", guarded=True))
    assert error.kind == "unsafe_url" and "sk-secret" not in error.message
    assert _handshakes(listener) == 0


@pytest.fixture
def header_trickler():
    """A server that sends a status line, then one header byte every 50 ms, for ever (until the test ends)."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        connection, _ = server.accept()
        connection.recv(65536)
        connection.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
        while not stop.wait(0.05):
            try:
                connection.sendall(b"a")
            except OSError:
                return
        connection.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}/v1"
    stop.set()
    server.close()


@pytest.mark.parametrize("guarded", [True, False])
def test_it_stops_trickled_headers_at_the_deadline(header_trickler, guarded, local, settings):
    settings.CHECK_TIMEOUT, settings.UPSTREAM_CONNECT_TIMEOUT = 0.5, 0.5
    with pytest.raises(ProviderError) as caught:
        list_models(Bearer("", header_trickler, "sk-any-0001", guarded=guarded))
    assert caught.value.kind == "timeout"
