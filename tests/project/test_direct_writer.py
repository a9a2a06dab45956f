"""project.asgi.direct_writer: event-stream bytes written from a callback, straight to uvicorn's transport."""

from __future__ import annotations

import pytest
import requests

from project.asgi import direct_writer
from tests.asgi_server import AsgiLiveServer


async def _app(scope, receive, send):
    """Answers which way its body went: 'direct' (written past `send`) or 'send'."""
    headers = [(b"content-type", b"text/plain")]
    if scope["path"] == "/sized":  # a body of known length is not chunked: only `send` may write it
        headers.append((b"content-length", b"4"))
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    write = direct_writer(send)
    if write is not None:
        assert write(b"direct") is True
    else:
        await send({"type": "http.response.body", "body": b"send", "more_body": True})
    await send({"type": "http.response.body"})


@pytest.fixture
def serve():
    servers = []

    def start(**options) -> str:
        servers.append(AsgiLiveServer(_app, **options).start())
        return servers[-1].url

    yield start
    for server in servers:
        server.stop()


def test_it_writes_a_chunk_past_send_under_uvicorns_httptools_protocol(serve):
    response = requests.get(serve(http="httptools"), timeout=10)

    assert response.headers["transfer-encoding"] == "chunked"
    assert response.text == "direct"


def test_it_leaves_other_protocols_to_send(serve):
    assert requests.get(serve(http="h11"), timeout=10).text == "send"


def test_it_leaves_a_body_of_known_length_to_send(serve):
    response = requests.get(serve(http="httptools") + "/sized", timeout=10)

    assert response.headers["content-length"] == "4"
    assert response.text == "send"
