"""Connections that re-check the SSRF guard against the address actually connected to.

The check runs after the TCP connect and before a byte is sent, so a bearer never
reaches a private address even if DNS changed since the URL was saved.
"""

from __future__ import annotations

from typing import Any

import httpcore
import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from tokens.ssrf import check_address


class _GuardedConnection(HTTPConnection):
    def _new_conn(self) -> Any:
        sock = super()._new_conn()
        try:
            check_address(self.host, sock.getpeername()[0])
        except Exception:
            sock.close()
            raise
        return sock


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


def guarded_adapter() -> HTTPAdapter:
    """A requests transport adapter whose every connection re-checks the SSRF guard."""
    return _GuardedAdapter()


def guarded_session() -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    adapter = _GuardedAdapter()
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


class GuardedNetworkBackend(httpcore.AsyncNetworkBackend):
    """httpcore backend for the async chat client: refuse private peers before sending."""

    def __init__(self) -> None:
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(self, host: str, port: int, **kwargs: Any) -> httpcore.AsyncNetworkStream:
        stream = await self._inner.connect_tcp(host, port, **kwargs)
        try:
            check_address(host, stream.get_extra_info("server_addr")[0])
        except Exception:
            await stream.aclose()
            raise
        return stream

    async def connect_unix_socket(self, *args: Any, **kwargs: Any) -> httpcore.AsyncNetworkStream:
        raise OSError("Unix sockets are not allowed for user-supplied upstreams.")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)
