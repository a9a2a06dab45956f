"""Connections that pass the SSRF guard before their TCP handshake, for both HTTP clients.

Each transport resolves the host once with `tokens.ssrf.resolve_checked`, which refuses if any
address is private, then connects to a checked address. TLS still verifies the certificate
against the host name, so pinning the address costs nothing in safety.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

import httpcore
import requests
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


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[threading.Event]:
    """Bound a whole synchronous call, headers included, by shutting its sockets down after `seconds`.

    requests and urllib3 only bound each socket read, so a server that trickles its status line and
    headers a byte at a time could hold the caller for ever. The returned event is set if the deadline hit.
    Connections opened inside are not reused (callers send `Connection: close`), so each is tracked.
    """
    sockets: list[socket.socket] = []
    fired = threading.Event()

    def cut() -> None:
        fired.set()
        for sock in list(sockets):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    token = _call_sockets.set(sockets)
    timer = threading.Timer(seconds, cut)
    timer.daemon = True
    timer.start()
    try:
        yield fired
    finally:
        timer.cancel()
        _call_sockets.reset(token)


class _TrackedConnection(HTTPConnection):
    def _new_conn(self) -> socket.socket:
        return _track(super()._new_conn())


class _TrackedHTTPSConnection(_TrackedConnection, HTTPSConnection):
    pass


class _GuardedConnection(HTTPConnection):
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


def guarded_adapter() -> HTTPAdapter:
    """A requests transport adapter whose every connection passes the SSRF guard before connecting."""
    return _GuardedAdapter()


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
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(self, host: str, port: int, **kwargs: Any) -> httpcore.AsyncNetworkStream:
        try:
            addresses = await aresolve_checked(host, port)
        except UnsafeURL:
            raise
        except OSError as exc:
            raise httpcore.ConnectError(str(exc)) from exc
        error: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(address, port, **kwargs)
            except httpcore.ConnectError as exc:
                error = exc
        raise httpcore.ConnectError(str(error))

    async def connect_unix_socket(self, *args: Any, **kwargs: Any) -> httpcore.AsyncNetworkStream:
        raise OSError("Unix sockets are not allowed for user-supplied upstreams.")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)
