"""An asyncio (uvloop) OpenAI-compatible streaming fake for the chat benchmark.

tests/fakes/openai.py's FakeOpenAI spends one thread per stream, which caps it
well below the thousands of streams the benchmark holds; this one spends one
timer callback per chunk. It writes the same wire format, byte for byte: the
frames come from FakeOpenAI's own `_ChunkEncoder`.

The last user message scripts each stream: "n=200 d=20 g=7" means 200 tokens
"tok0 ", "tok1 ", ... every 20 ms, held until group 7 is released (so a step's
streams all run at once). Control routes: GET /control/count?g=7,
POST /control/release?g=7 (each held stream then starts at a random phase within
one token delay), GET /control/stats.

Run: python -m bench.fake_upstream  (prints the port on stdout, serves until killed).
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import sys
import time
from collections import defaultdict
from urllib.parse import parse_qs, urlsplit

from tests.fakes.openai import _ChunkEncoder, _Reply

_SCRIPT = re.compile(r"\b([ndg])=([\w.-]+)")
_STATS = {"requests": 0, "streams_started": 0, "streams_completed": 0, "frames": 0, "clients_gone": 0}
_groups: dict[str, list[Stream]] = defaultdict(list)
_arrived: dict[str, int] = defaultdict(int)
_released: set[str] = set()


def _script(body: dict) -> tuple[int, float, str]:
    users = [m.get("content", "") for m in body.get("messages", []) if m.get("role") == "user"]
    found = dict(_SCRIPT.findall(str(users[-1]) if users else ""))
    return int(found.get("n", 200)), float(found.get("d", 20)) / 1000, found.get("g", "")


class Stream:
    """One streamed reply, paced by loop.call_at against a fixed schedule."""

    def __init__(self, protocol: Server, body: dict) -> None:
        n, self.delay, self.group = _script(body)
        pieces = tuple(f"tok{i} " for i in range(n))
        encoder = _ChunkEncoder(_Reply("".join(pieces), pieces, self.delay, completion_tokens=n), body)
        self.frames = list(encoder.head())
        self.tail = encoder.tail()
        self.protocol, self.index, self.started = protocol, 0, 0.0

    def start(self, phase: float = 0.0) -> None:
        _STATS["streams_started"] += 1
        self.started = self.protocol.loop.time() + phase
        self.protocol.loop.call_at(self.started, self.tick)

    def tick(self) -> None:
        transport = self.protocol.transport
        if transport.is_closing():
            return
        if self.index < len(self.frames):
            transport.write(self.frames[self.index])
            _STATS["frames"] += 1
            self.index += 1
            self.protocol.loop.call_at(self.started + self.index * self.delay, self.tick)
            return
        transport.write(self.tail)
        _STATS["streams_completed"] += 1
        self.protocol.stream = None
        self.protocol.request_done()


class Server(asyncio.Protocol):
    """HTTP/1.1 with keep-alive, Content-Length request bodies only (httpx and the SDK send those)."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.buffer = b""
        self.stream: Stream | None = None
        self.transport: asyncio.Transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        if self.stream is not None:
            _STATS["clients_gone"] += 1

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.stream is None:
            self.request_done()

    def request_done(self) -> None:
        """Serve the next complete request in the buffer, if any."""
        head, sep, rest = self.buffer.partition(b"\r\n\r\n")
        if not sep:
            return
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        length = int(headers.get("content-length", 0))
        if len(rest) < length:
            return
        body, self.buffer = rest[:length], rest[length:]
        _STATS["requests"] += 1
        self.route(method, target, body)

    def route(self, method: str, target: str, body: bytes) -> None:
        url = urlsplit(target)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        if method == "POST" and url.path == "/v1/chat/completions":
            self.chat(json.loads(body))
        elif url.path == "/control/count":
            self.json({"arrived": _arrived[query.get("g", "")]})
        elif method == "POST" and url.path == "/control/release":
            group = query.get("g", "")
            _released.add(group)
            for stream in _groups.pop(group, []):
                stream.start(random.uniform(0, stream.delay))
            self.json({"released": group})
        elif url.path == "/control/stats":
            self.json({**_STATS, "cpu_seconds": time.process_time()})
        else:
            self.json({"error": {"message": "not found", "type": "invalid_request_error"}}, 404)

    def json(self, payload: dict, status: int = 200) -> None:
        body = json.dumps(payload).encode()
        self.transport.write(
            b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
            % (status, len(body), body)
        )
        self.request_done()

    def chat(self, body: dict) -> None:
        self.stream = Stream(self, body)
        self.transport.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n"
            b"Transfer-Encoding: chunked\r\nCache-Control: no-cache\r\nx-request-id: req_bench\r\n\r\n"
        )
        group = self.stream.group
        if group:
            _arrived[group] += 1
            if group not in _released:
                _groups[group].append(self.stream)
                return
        self.stream.start()


async def serve(port: int = 0) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Server, "127.0.0.1", port, backlog=4096)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()


def main() -> None:
    import uvloop

    uvloop.run(serve(int(sys.argv[1]) if len(sys.argv) > 1 else 0))


if __name__ == "__main__":
    main()
