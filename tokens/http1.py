"""HTTP/1.1 for the async chat client: an httpx transport that parses responses with httptools (llhttp, the C
parser of Node.js and of uvicorn) on the event loop's own transports.

httpx stays the client (requests, headers, URLs, exceptions); this replaces httpcore + h11 under it. In a py-spy
profile of the bench kit at 100 streams, h11's pure-Python parsing and httpcore's per-event bookkeeping were about
a quarter of the web process's CPU: each 20 ms token is one chunked-encoding read. Here a read is one
`data_received` callback into the C parser, which hands the decoded body straight to the waiting reader.

What httpcore did for us and is kept: keep-alive pooling (KEEPALIVE idle connections per client, dropped after
`keepalive_expiry` or as soon as the server closes or writes to an idle one), informational (1xx) responses
skipped, bodies delimited by Content-Length, chunked encoding or the connection's end, TLS verified against the
host name, and httpx's exception classes (ConnectError, ConnectTimeout, WriteTimeout, ReadError,
RemoteProtocolError). Response headers are capped at MAX_HEAD_BYTES, as h11 capped them. Reads have no timeout
of their own: the chat's callers bound each one (tokens.provider.stream). Guarded connections resolve and check
the address before the TCP handshake (tokens.ssrf), as tokens.transport's do.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, cast

import httptools
import httpx

from tokens.ssrf import aresolve_checked

MAX_HEAD_BYTES = 64 * 1024  # a status line and headers larger than this are refused
HIGH_WATER = 256 * 1024  # body bytes buffered before the socket is paused
_NO_BODY = (204, 304)
QUICKACK = getattr(socket, "TCP_QUICKACK", None)
# Reads closer together than this are a burst, acknowledged at once (see _Connection.data_received); so are the
# first reads of each response.
BURST_SECONDS = 0.005
QUICK_READS = 4
# The response extension that holds the body itself (raw_body reads it).
BODY = "byok.http1.body"

Key = tuple[bytes, bytes, int]  # scheme, host, port


class _Connection(asyncio.Protocol):
    """One TCP (or TLS) connection and the response being read on it."""

    def __init__(self, key: Key) -> None:
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.eof = False
        self.error: Exception | None = None
        self.waiter: asyncio.Future | None = None
        self.listener: Callable[[], None] | None = None  # called instead of waking the waiter (ResponseBody.pushed)
        self.drained: asyncio.Future | None = None
        self.paused = False
        self.idle_until = 0.0
        self.socket = None
        self.read_at = float("-inf")
        self._start()

    def _start(self) -> None:
        self.status = 0
        self.reason = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.headers_done = self.complete = self.informational = self.keep_alive = False
        self.delimited = False  # the body has a Content-Length or is chunked (else it ends with the connection)
        self.head_bytes = 0
        self.chunks: list[bytes] = []
        self.size = 0
        self.reads = 0

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A cast, not an isinstance check: uvloop's TCP transports are not asyncio.Transport subclasses.
        self.transport = cast(asyncio.Transport, transport)
        self.socket = transport.get_extra_info("socket")

    def data_received(self, data: bytes) -> None:
        # An upstream that keeps Nagle's algorithm on holds each small write until the last is acknowledged, and
        # Linux delays an ACK on a kept-alive connection (up to 40 ms): a reply sent in a burst stalled 40 ms, and
        # the head, the role chunk and the first token, written one after another, waited about 4 ms each (8 ms
        # of the API's time to first token in the bench kit). So the first reads of a response and the reads of
        # a burst are acknowledged at once (TCP_QUICKACK, not permanent: tcp(7)); tokens spaced out need no help,
        # and a system call and an ACK per read there cost 8 % more CPU per reply.
        now = time.monotonic()
        self.reads += 1
        if (
            (self.reads <= QUICK_READS or now - self.read_at < BURST_SECONDS)
            and QUICKACK is not None
            and self.socket is not None
        ):
            with contextlib.suppress(OSError):
                self.socket.setsockopt(socket.IPPROTO_TCP, QUICKACK, 1)
        self.read_at = now
        if not self.headers_done:
            self.head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(httpx.RemoteProtocolError("the server switched protocols"))
        except httptools.HttpParserError as exc:
            self._fail(httpx.RemoteProtocolError(f"malformed HTTP response: {exc}"))
        if not self.headers_done and self.head_bytes > MAX_HEAD_BYTES and self.error is None:
            self._fail(httpx.RemoteProtocolError("the response headers are too large"))
        if self.size > HIGH_WATER and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self.eof = True
        if self.headers_done and not self.delimited and self.error is None:
            self.complete = True  # a body delimited by the connection's end has ended
        self._wake()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is None and not self.eof:
            self.eof_received()
        self.eof = True
        if exc is not None and self.error is None and not self.complete:
            self.error = httpx.ReadError(str(exc) or type(exc).__name__)
        self._wake()
        if self.drained is not None and not self.drained.done():
            self.drained.set_result(None)

    def pause_writing(self) -> None:
        self.drained = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self.drained is not None and not self.drained.done():
            self.drained.set_result(None)
        self.drained = None

    # httptools callbacks

    def on_message_begin(self) -> None:
        if self.complete:  # an answer after the one we asked for (a 408 on a kept-alive connection): not reusable
            self._fail(httpx.RemoteProtocolError("the server sent an answer nobody asked for"))

    def on_status(self, reason: bytes) -> None:
        self.reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200:  # 100 Continue, 103 Early Hints: the real answer follows
            self.informational = True
            self.headers, self.reason = [], b""
            return
        self.status, self.headers_done = status, True
        for name, value in self.headers:
            lowered = name.lower()
            if lowered == b"content-length" or (lowered == b"transfer-encoding" and b"chunked" in value.lower()):
                self.delimited = True
        if status in _NO_BODY:
            self.delimited = True

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)
        self.size += len(body)

    def on_message_complete(self) -> None:
        if self.informational:
            self.informational = False
            self.head_bytes = 0
            return
        self.complete = True
        self.keep_alive = self.parser.should_keep_alive()  # read while the message's flags are still set

    # for the transport

    def _fail(self, error: Exception) -> None:
        if self.error is None:
            self.error = error
        if self.transport is not None:
            self.transport.close()

    def _wake(self) -> None:
        if self.listener is not None:
            self.listener()
        elif self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    async def wait(self) -> None:
        self.waiter = asyncio.get_running_loop().create_future()
        try:
            await self.waiter
        finally:
            self.waiter = None

    def take(self) -> bytes:
        data = self.chunks[0] if len(self.chunks) == 1 else b"".join(self.chunks)
        self.chunks.clear()
        self.size = 0
        if self.paused and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()
        return data

    def reusable(self) -> bool:
        """True when the answer was read whole and the connection can carry another request."""
        return (
            self.complete
            and not self.chunks
            and not self.eof
            and self.error is None
            and self.keep_alive
            and self.transport is not None
            and not self.transport.is_closing()
        )

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class ResponseBody(httpx.AsyncByteStream):
    """A response body as it arrives; the connection goes back to the pool once the body has been read whole."""

    def __init__(self, connection: _Connection, pool: Http1Transport) -> None:
        self._connection, self._pool, self._closed = connection, pool, False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        connection = self._connection
        while True:
            if connection.chunks:
                yield connection.take()
            elif connection.complete:
                break
            elif connection.error is not None:
                raise connection.error
            elif connection.eof:
                raise httpx.RemoteProtocolError("peer closed connection without sending complete message body")
            else:
                await connection.wait()
        await self.aclose()

    @property
    def ended(self) -> bool:
        """Nothing more will arrive: the body is complete, or the connection ended or failed."""
        connection = self._connection
        return connection.complete or connection.eof or connection.error is not None

    async def pushed(self, handler: Callable[[bytes], bool]) -> None:
        """Hand each read of the body to `handler(data)` from the connection's own callback, without waking this
        task for it; return once `handler` returns True (it wants no more pushed) or the body has ended or failed
        (iterate on to learn which). Raises what `handler` raises. Cancelling the wait stops the pushing.

        A task woken per read, through the chain of async generators between the socket and the client, was most
        of a relay's CPU when each 20 ms token is a read; this is how an asyncio protocol relays.
        """
        connection = self._connection
        done = asyncio.get_running_loop().create_future()

        def on_read() -> None:
            if done.done():
                return
            try:
                while connection.chunks:
                    if handler(connection.take()):
                        done.set_result(None)
                        return
            except Exception as exc:
                done.set_exception(exc)
                return
            if self.ended:
                done.set_result(None)

        on_read()
        if done.done():
            return done.result()
        connection.listener = on_read
        try:
            await done
        finally:
            connection.listener = None

    async def aclose(self) -> None:
        if not self._closed:  # pooled if read whole, else closed: the rest cannot be told from the next answer
            self._closed = True
            self._pool.release(self._connection)


def pushable(response: httpx.Response) -> ResponseBody | None:
    """The body of a response that came through this transport, whose reads can be pushed (`ResponseBody.pushed`)."""
    body = response.extensions.get(BODY)
    return body if isinstance(body, ResponseBody) else None


def raw_body(response: httpx.Response) -> AsyncIterator[bytes]:
    """The body's bytes as they arrive, as `response.aiter_raw()` yields them, read straight from this transport's
    body when the response came through it: httpx's aiter_raw wraps it in three more async generators a read
    (the client's bound stream, the byte counter, a re-chunker), one chat token each. Closing the response still
    closes the body."""
    body = pushable(response)
    return aiter(body) if body is not None else response.aiter_raw()


class Http1Transport(httpx.AsyncBaseTransport):
    """An httpx transport for http:// and https:// over HTTP/1.1 (see the module docstring).

    `guarded`: resolve each host with tokens.ssrf.aresolve_checked (raising UnsafeURL) and connect to a checked
    address. `keepalive`: idle connections kept (all hosts together); `keepalive_expiry`: seconds one may idle.
    """

    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext,
        guarded: bool = False,
        keepalive: int = 32,
        keepalive_expiry: float = 30.0,
    ) -> None:
        self._ssl, self._guarded = ssl_context, guarded
        self._keepalive, self._expiry = keepalive, keepalive_expiry
        self._idle: dict[Key, list[_Connection]] = {}
        self._idle_count = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        scheme = url.raw_scheme
        if scheme not in (b"http", b"https"):
            raise httpx.UnsupportedProtocol(f"Request URL has an unsupported protocol '{url.scheme}://'.")
        if request.method in ("HEAD", "CONNECT"):  # llhttp cannot be told that such an answer has no body
            raise httpx.UnsupportedProtocol(f"{request.method} is not supported by this transport.")
        port = url.port or (443 if scheme == b"https" else 80)
        key: Key = (scheme, url.raw_host, port)
        timeouts = request.extensions.get("timeout", {})
        body = b"".join([part async for part in cast(AsyncIterator[bytes], request.stream)])
        head = [b"%s %s HTTP/1.1\r\n" % (request.method.encode(), url.raw_path)]
        head += [b"%s: %s\r\n" % (name, value) for name, value in request.headers.raw]
        message = b"".join(head) + b"\r\n" + body

        connection = self._reused(key) or await self._connect(key, url.host, timeouts.get("connect"))
        try:
            assert connection.transport is not None  # set by connection_made before create_connection returns
            connection.transport.write(message)
            if connection.drained is not None:
                try:
                    async with asyncio.timeout(timeouts.get("write")):
                        await asyncio.shield(connection.drained)
                except TimeoutError as exc:
                    raise httpx.WriteTimeout("timed out writing the request") from exc
            while not connection.headers_done:
                if connection.error is not None:
                    raise connection.error
                if connection.eof:
                    raise httpx.RemoteProtocolError("Server disconnected without sending a response.")
                await connection.wait()
        except BaseException:
            connection.close()
            raise
        stream = ResponseBody(connection, self)
        return httpx.Response(
            connection.status,
            headers=connection.headers,
            stream=stream,
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": connection.reason, BODY: stream},
        )

    def _reused(self, key: Key) -> _Connection | None:
        idle = self._idle.get(key)
        now = asyncio.get_running_loop().time()
        while idle:
            connection = idle.pop()
            self._idle_count -= 1
            # An idle connection the server has closed, or written to, cannot carry a request (reusable() says).
            if connection.idle_until > now and connection.reusable():
                connection._start()
                return connection
            connection.close()
        return None

    async def _connect(self, key: Key, host: str, timeout: float | None) -> _Connection:
        loop = asyncio.get_running_loop()
        scheme, _host, port = key
        tls: dict[str, Any] = {"ssl": self._ssl, "server_hostname": host} if scheme == b"https" else {}
        if self._guarded:
            try:
                addresses = await aresolve_checked(host, port)  # UnsafeURL (a ValueError) goes to the caller as is
            except OSError as exc:
                raise httpx.ConnectError(str(exc)) from exc
        else:
            addresses = [host]
        error: Exception | None = None
        for address in addresses:
            try:
                async with asyncio.timeout(timeout):
                    _transport, connection = await loop.create_connection(
                        lambda: _Connection(key), address, port, **tls
                    )
                return connection
            except TimeoutError as exc:
                raise httpx.ConnectTimeout("timed out connecting to the server") from exc
            except (OSError, ssl.SSLError) as exc:
                error = exc
        raise httpx.ConnectError(str(error))

    def release(self, connection: _Connection) -> None:
        """Keep a connection whose response was read whole for the next request, or close it."""
        if not connection.reusable():
            connection.close()
            return
        if self._idle_count >= self._keepalive:
            self._evict_one()
        connection.idle_until = asyncio.get_running_loop().time() + self._expiry
        self._idle.setdefault(connection.key, []).append(connection)
        self._idle_count += 1

    def _evict_one(self) -> None:
        key = max(self._idle, key=lambda k: len(self._idle[k]))
        self._idle[key].pop(0).close()
        self._idle_count -= 1

    async def aclose(self) -> None:
        for connections in self._idle.values():
            for connection in connections:
                connection.close()
        self._idle.clear()
        self._idle_count = 0
