"""Paced reads: the chunks that arrive between two reads go on as one batch (one body part, one list of deltas),
and nothing is lost or held back at the start."""

from __future__ import annotations

import asyncio
import socket
import threading

import httpcore
import httpx
import pytest

from tokens.provider import Bearer, Completion, stream_chat_batches
from tokens.transport import AsyncioBackend, BatchedConnectionPool

pytestmark = pytest.mark.django_db(transaction=True)

EVENTS = [b'data: {"choices":[{"delta":{"content":"w%d "}}]}\n\n' % i for i in range(5)]


def _serve_once(body_chunks: list[bytes]) -> tuple[int, threading.Event]:
    """A server that answers one request with all `body_chunks` as HTTP chunks in a single write."""
    listener = socket.create_server(("127.0.0.1", 0))
    done = threading.Event()

    def run() -> None:
        conn, _ = listener.accept()
        with conn, listener:
            conn.recv(65536)
            head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
            chunks = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in body_chunks)
            conn.sendall(head + chunks + b"0\r\n\r\n")
            done.wait(5)

    threading.Thread(target=run, daemon=True).start()
    return listener.getsockname()[1], done


async def _parts(pool: httpcore.AsyncConnectionPool, port: int) -> list[bytes]:
    transport = httpx.AsyncHTTPTransport()
    transport._pool = pool
    # Head and body come in one write, so the body is in the socket when the head has been read.
    url = f"http://127.0.0.1:{port}/"
    async with httpx.AsyncClient(transport=transport) as http, http.stream("GET", url) as response:
        return [part async for part in response.aiter_raw()]


def test_it_hands_on_the_chunks_of_one_read_as_one_part():
    port, done = _serve_once(EVENTS)
    parts = asyncio.run(_parts(BatchedConnectionPool(network_backend=AsyncioBackend()), port))
    done.set()
    assert parts == [b"".join(EVENTS)]


def test_httpcores_own_pool_gives_a_part_per_chunk():
    """What the batched pool changes: without it each HTTP chunk is its own part."""
    port, done = _serve_once(EVENTS)
    parts = asyncio.run(_parts(httpcore.AsyncConnectionPool(network_backend=AsyncioBackend()), port))
    done.set()
    assert parts == EVENTS


def _batches(fake_openai, interval: float) -> list[list[str]]:
    bearer = Bearer("", fake_openai.base_url, "sk-test", guarded=False)

    async def run() -> list[list[str]]:
        async with asyncio.timeout(20):  # a guard against hanging, not a measurement
            completion = Completion(model="gpt-4o-mini")
            messages = [{"role": "user", "content": "Hi"}]
            stream = stream_chat_batches(
                bearer, model="gpt-4o-mini", messages=messages, completion=completion, interval=interval
            )
            return [[delta.text for delta in batch] async for batch in stream]

    return asyncio.run(run())


def test_paced_reads_gather_the_pieces_that_arrive_meanwhile(fake_openai):
    fake_openai.tokens(20, delay=0.02)
    batches = _batches(fake_openai, interval=0.2)
    assert "".join(text for batch in batches for text in batch) == "".join(f"tok{i} " for i in range(20))
    assert batches[0][0] == "tok0 "
    assert len(batches) < 10  # 20 pieces over ~0.4 s, read at most every 0.2 s after the first
