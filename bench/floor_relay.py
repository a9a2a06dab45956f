"""The floor of a Python relay: it parses nothing, authenticates nobody and records nothing.

`python bench/floor_relay.py PORT UPSTREAM_PORT` serves 127.0.0.1:PORT. Each request is read up to the end of its
body and sent, unchanged but for `Connection: close`, to 127.0.0.1:UPSTREAM_PORT on a new connection; every byte
the upstream sends back is written to the client the moment it arrives, and the client's connection is closed
with the upstream's. On uvloop, with asyncio protocols (no streams, no tasks per chunk): about the least CPU a
Python process can spend relaying a server-sent event stream. bench/bench_floor.py measures it with the bench kit's
client beside the kit's fake upstream, to show what any relay on this machine costs before it does any work.
"""

from __future__ import annotations

import asyncio
import sys

import uvloop


class _Upstream(asyncio.Protocol):
    def __init__(self, client: asyncio.Transport) -> None:
        self.client = client

    def data_received(self, data: bytes) -> None:
        self.client.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.client.close()


class _Client(asyncio.Protocol):
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port, self.buffer = upstream_port, b""
        self.relaying: asyncio.Future | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        head, blank, body = self.buffer.partition(b"\r\n\r\n")
        if not blank:
            return
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if len(body) < length:
            return
        self.buffer = b""
        lines = [line for line in head.split(b"\r\n") if not line.lower().startswith(b"connection:")]
        request = b"\r\n".join([*lines, b"Connection: close"]) + b"\r\n\r\n" + body
        self.relaying = asyncio.ensure_future(self._relay(request))

    async def _relay(self, request: bytes) -> None:
        loop = asyncio.get_running_loop()
        upstream, _ = await loop.create_connection(
            lambda: _Upstream(self.transport),
            "127.0.0.1",
            self.upstream_port,  # type: ignore[arg-type]
        )
        upstream.write(request)


async def serve(port: int, upstream_port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Client(upstream_port), "127.0.0.1", port, backlog=4096)
    await server.serve_forever()


if __name__ == "__main__":
    uvloop.run(serve(int(sys.argv[1]), int(sys.argv[2])))
