"""Connections for the synchronous HTTP client (requests) that pass the SSRF guard before their TCP handshake,
and per-call deadlines that cut them.

Each connection resolves the host once with `tokens.ssrf.resolve_checked`, which refuses if any
address is private, then connects to a checked address. TLS still verifies the certificate
against the host name, so pinning the address costs nothing in safety. The async chat client's
connections are tokens.http1's.
"""

from __future__ import annotations

import contextlib
import heapq
import http.client
import itertools
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import NewConnectionError

from tokens.ssrf import UnsafeURL, resolve_checked

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
