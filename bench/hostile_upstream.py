"""A hostile OpenAI-compatible upstream for the provider benchmark: serves forever on the port given (0: any, printed).

POST /v1/chat/completions streams, by the model name asked for:
  line    5 MB of `data: xxxx...` with no line break, then closes (the issue's quadratic-CPU input)
  huge    13.6 MB of valid content events, then [DONE] (the issue's memory input)
  trickle one byte every 50 ms, forever
GET /v1/models trickles a list one byte every 50 ms.
"""

from __future__ import annotations

import asyncio
import json
import sys

LINE = 5 * 1024 * 1024
HUGE = int(13.6 * 1024 * 1024)


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


async def _handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        if head.startswith(b"GET"):
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n")
            while True:
                writer.write(b" ")
                await writer.drain()
                await asyncio.sleep(0.05)
        length = next(
            (int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")), 0
        )
        body = json.loads(await reader.readexactly(length)) if length else {}
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
        mode = body.get("model", "line")
        if mode == "line":
            writer.write(_chunk(b"data: "))
            piece = _chunk(b"x" * 65536)
            for _ in range(LINE // 65536):
                writer.write(piece)
                await writer.drain()
        elif mode == "huge":
            event = b'data: {"choices":[{"index":0,"delta":{"content":"' + b"z" * 8000 + b'"}}]}\n\n'
            for _ in range(HUGE // len(event)):
                writer.write(_chunk(event))
                await writer.drain()
            writer.write(
                _chunk(b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n')
            )
        else:
            while True:
                writer.write(_chunk(b"x"))
                await writer.drain()
                await asyncio.sleep(0.05)
        writer.write(b"0\r\n\r\n")
        await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


async def main() -> None:
    server = await asyncio.start_server(_handle, "127.0.0.1", int(sys.argv[1]) if len(sys.argv) > 1 else 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
