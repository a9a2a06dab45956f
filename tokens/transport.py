"""Connections that pass the SSRF guard before their TCP handshake, for both HTTP clients.

Each transport resolves the host once with `tokens.ssrf.resolve_checked`, which refuses if any
address is private, then connects to a checked address. TLS still verifies the certificate
against the host name, so pinning the address costs nothing in safety.

The async chat client's connections are asyncio transports (`AsyncioBackend`) rather than httpcore's
anyio streams: anyio opens a cancel scope around every read (about 12 µs of a 45 µs chunk in a py-spy
profile) and does TLS in Python through a memory BIO, while the event loop's own transports (uvloop's in C)
read and decrypt without either. Timeouts are the callers' (tokens.provider.stream bounds each read itself).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import http.client
import itertools
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from typing import Any, cast

import httpcore
import requests
from httpcore._backends.base import SOCKET_OPTION
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import NewConnectionError

from tokens.ssrf import UnsafeURL, aresolve_checked, resolve_checked

# Sockets opened during the current deadline-bound call (see `deadline`), so a watchdog can cut them.
_call_sockets: ContextVar[list[socket.socket] | None] = ContextVar("call_sockets", default=None)


def _track(sock: socket.socket) -> socket.socket:
    sockets = _call_sockets.get()
    if sockets is not None:
        sockets.append(sock)
    return sock


class _Watchdog:
    """One thread per process that runs each deadline's cut when it is due.

    A `threading.Timer` per call (a thread started and stopped for every token request) cost about a tenth of
    a refresh worker's CPU. Cancelled entries stay in the heap until their time and are skipped then.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._wake = threading.Condition()
        self._due: list[list] = []  # heap of [when, sequence, action or None]
        self._sequence = itertools.count()
        self._thread: threading.Thread | None = None

    def schedule(self, seconds: float, action: Callable[[], None]) -> list:
        entry = [time.monotonic() + seconds, next(self._sequence), action]
        with self._wake:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="call-deadlines", daemon=True)
                self._thread.start()
            heapq.heappush(self._due, entry)
            if self._due[0] is entry:
                self._wake.notify()
        return entry

    @staticmethod
    def cancel(entry: list) -> None:
        entry[2] = None

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._due or self._due[0][0] > time.monotonic():
                    self._wake.wait(self._due[0][0] - time.monotonic() if self._due else None)
                action = heapq.heappop(self._due)[2]
            if action is not None:
                action()


_watchdog = _Watchdog()
# A forked child has no watchdog thread and maybe a lock held by a thread that did not come along: start afresh.
os.register_at_fork(after_in_child=_watchdog.reset)


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[threading.Event]:
    """Bound a whole synchronous call, headers included, by shutting its sockets down after `seconds`.

    requests and urllib3 only bound each socket read, so a server that trickles its status line and
    headers a byte at a time could hold the caller for ever. The returned event is set if the deadline hit.
    Each connection the call uses is tracked: a new one when it connects, a kept-alive one when it sends.
    A cut never runs after the call has ended (the connection may be back in the pool, serving another call).
    """
    sockets: list[socket.socket] = []
    fired = threading.Event()
    ended = threading.Lock()

    def cut() -> None:
        if not ended.acquire(blocking=False):
            return
        fired.set()
        for sock in list(sockets):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    token = _call_sockets.set(sockets)
    entry = _watchdog.schedule(seconds, cut)
    try:
        yield fired
    finally:
        _watchdog.cancel(entry)
        ended.acquire(blocking=False)  # from here on, a cut that comes too late does nothing
        _call_sockets.reset(token)


class _InformationalSkipping(http.client.HTTPResponse):
    """http.client skips only 100 Continue: any other informational answer before the real one (103 Early Hints,
    sent by CDNs) was taken as the answer, with no body, and the real answer was never read."""

    def _read_status(self) -> tuple[str, int, str]:
        version, status, reason = super()._read_status()  # type: ignore[misc]
        if 100 < status < 200 and status != 101:
            return version, 100, reason  # begin() skips a 100's headers and reads on
        return version, status, reason


class _ReusedTracking(HTTPConnection):
    response_class = _InformationalSkipping

    def request(self, *args: Any, **kwargs: Any) -> None:
        if self.sock is not None:  # kept alive from an earlier call: the current call's deadline must reach it
            _track(self.sock)
        super().request(*args, **kwargs)


class _TrackedConnection(_ReusedTracking):
    def _new_conn(self) -> socket.socket:
        return _track(super()._new_conn())


class _TrackedHTTPSConnection(_TrackedConnection, HTTPSConnection):
    pass


class _GuardedConnection(_ReusedTracking):
    def _new_conn(self) -> socket.socket:
        try:
            addresses = resolve_checked(self._dns_host, self.port)
        except UnsafeURL:
            raise
        except OSError as exc:
            raise NewConnectionError(self, str(exc)) from exc
        error: OSError | None = None
        for address in addresses:
            try:
                sock = socket.create_connection((address, self.port), self.timeout, self.source_address)
            except OSError as exc:
                error = exc
                continue
            for option in self.socket_options or ():
                sock.setsockopt(*option)
            return _track(sock)
        raise NewConnectionError(self, f"Failed to establish a new connection: {error}")


class _GuardedHTTPSConnection(_GuardedConnection, HTTPSConnection):
    pass


class _GuardedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _GuardedConnection


class _GuardedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _GuardedHTTPSConnection


class _GuardedAdapter(HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _GuardedHTTPPool, "https": _GuardedHTTPSPool}


class _TrackedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _TrackedConnection


class _TrackedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _TrackedHTTPSConnection


class _TrackedAdapter(HTTPAdapter):
    """For trusted URLs (the operator's OPENAI_BASE_URL): no guard, but sockets a deadline can cut."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _TrackedHTTPPool, "https": _TrackedHTTPSPool}


def guarded_adapter(**pool: Any) -> HTTPAdapter:
    """A requests transport adapter whose every connection passes the SSRF guard before connecting (`pool`: the
    HTTPAdapter's pool_connections, pool_maxsize, ...)."""
    return _GuardedAdapter(**pool)


def guarded_session(guarded: bool = True) -> requests.Session:
    """A session without proxies from the environment whose connections a `deadline` can cut;
    `guarded` ones also pass the SSRF guard before connecting."""
    session = requests.Session()
    session.trust_env = False
    adapter = _GuardedAdapter() if guarded else _TrackedAdapter()
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


class GuardedNetworkBackend(httpcore.AsyncNetworkBackend):
    """httpcore backend for the async chat client: resolve, check, then connect to the checked address."""

    def __init__(self) -> None:
        self._inner = AsyncioBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            addresses = await aresolve_checked(host, port)
        except UnsafeURL:
            raise
        except OSError as exc:
            raise httpcore.ConnectError(str(exc)) from exc
        error: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    address, port, timeout=timeout, local_address=local_address, socket_options=socket_options
                )
            except httpcore.ConnectError as exc:
                error = exc
        raise httpcore.ConnectError(str(error))

    async def connect_unix_socket(self, *args: Any, **kwargs: Any) -> httpcore.AsyncNetworkStream:
        raise OSError("Unix sockets are not allowed for user-supplied upstreams.")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


# httpcore streams on asyncio transports


class _Reader(asyncio.Protocol):
    """Collect what a connection receives for `AsyncioStream.read`, pausing the socket past HIGH_WATER bytes."""

    HIGH_WATER = 256 * 1024

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.size = 0
        self.eof = False
        self.error: Exception | None = None
        self.waiter: asyncio.Future | None = None
        self.drained: asyncio.Future | None = None  # set while the transport's write buffer is full
        self.transport: asyncio.Transport | None = None
        self.paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A cast, not an isinstance check: uvloop's TCP transports are not asyncio.Transport subclasses.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.chunks.append(data)
        self.size += len(data)
        if self.size > self.HIGH_WATER and not self.paused:
            self.paused = True
            assert self.transport is not None  # data comes only after connection_made
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        self.error = exc
        self._wake()
        if self.drained is not None and not self.drained.done():
            self.drained.set_result(None)

    def pause_writing(self) -> None:
        self.drained = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self.drained is not None and not self.drained.done():
            self.drained.set_result(None)
        self.drained = None

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)


class AsyncioStream(httpcore.AsyncNetworkStream):
    def __init__(self, transport: asyncio.Transport, reader: _Reader) -> None:
        self._transport, self._reader = transport, reader

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        reader = self._reader
        if not reader.chunks and not reader.eof:
            reader.waiter = asyncio.get_running_loop().create_future()
            try:
                if timeout is None:  # the chat client's case: its caller bounds each read
                    await reader.waiter
                else:
                    async with asyncio.timeout(timeout):
                        await reader.waiter
            except TimeoutError as exc:
                raise httpcore.ReadTimeout("timed out") from exc
            finally:
                reader.waiter = None
        if not reader.chunks:
            if reader.error is not None:
                raise httpcore.ReadError(str(reader.error)) from reader.error
            return b""
        data = reader.chunks[0] if len(reader.chunks) == 1 else b"".join(reader.chunks)
        reader.chunks.clear()
        if len(data) > max_bytes:
            data, rest = data[:max_bytes], data[max_bytes:]
            reader.chunks.append(rest)
        reader.size = len(reader.chunks[0]) if reader.chunks else 0
        if reader.paused and reader.size <= reader.HIGH_WATER // 4:
            reader.paused = False
            self._transport.resume_reading()
        return data

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if self._transport.is_closing():
            raise httpcore.WriteError("the connection is closed")
        self._transport.write(buffer)
        drained = self._reader.drained
        if drained is not None:
            try:
                async with asyncio.timeout(timeout):
                    await asyncio.shield(drained)
            except TimeoutError as exc:
                raise httpcore.WriteTimeout("timed out") from exc

    async def aclose(self) -> None:
        self._transport.close()

    async def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            transport = await loop.start_tls(
                self._transport,
                self._reader,
                ssl_context,
                server_hostname=server_hostname,
                ssl_handshake_timeout=timeout,
            )
        except TimeoutError as exc:
            self._transport.close()
            raise httpcore.ConnectTimeout("TLS handshake timed out") from exc
        except (OSError, ssl.SSLError) as exc:
            self._transport.close()
            raise httpcore.ConnectError(str(exc)) from exc
        assert transport is not None  # None only when the loop is closing
        self._reader.transport = transport
        return AsyncioStream(transport, self._reader)

    def get_extra_info(self, info: str) -> Any:
        if info == "ssl_object":
            return self._transport.get_extra_info("ssl_object")
        if info == "client_addr":
            return self._transport.get_extra_info("sockname")
        if info == "server_addr":
            return self._transport.get_extra_info("peername")
        if info == "socket":
            return self._transport.get_extra_info("socket")
        if info == "is_readable":  # an idle keep-alive connection the server has closed (or written to)
            return bool(self._reader.chunks) or self._reader.eof
        return None


class AsyncioBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend on the running event loop's transports (see the module docstring)."""

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                transport, reader = await loop.create_connection(
                    _Reader, host, port, local_addr=(local_address, 0) if local_address else None
                )
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout("timed out") from exc
        except OSError as exc:
            raise httpcore.ConnectError(str(exc)) from exc
        sock = transport.get_extra_info("socket")
        for option in socket_options or ():
            sock.setsockopt(*option)
        return AsyncioStream(transport, reader)

    async def connect_unix_socket(self, *args: Any, **kwargs: Any) -> httpcore.AsyncNetworkStream:
        raise OSError("Unix sockets are not used by the chat client.")

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
