"""The shared httpx.AsyncClient per event loop: one for the site's default provider, one guarded pool
(every connection passes the SSRF guard before its TCP handshake) for user-typed base URLs.

Neither keeps cookies: a Set-Cookie from one user's provider call must never ride on another's.
"""

from __future__ import annotations

import asyncio
import weakref
from http.cookiejar import CookieJar, DefaultCookiePolicy

import httpcore
import httpx
from django.conf import settings

from tokens.transport import AsyncioBackend, GuardedNetworkBackend

_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[bool, httpx.AsyncClient]] = (
    weakref.WeakKeyDictionary()
)


# Idle connections kept per client. httpcore's pool walks all its connections on every request and release, so a
# few hundred idle ones cost more CPU at 250 streams than the handshakes they save (kit runs, 2026-11-30).
KEEPALIVE_CONNECTIONS = 32


def no_cookies() -> CookieJar:
    """A cookie jar that refuses every cookie."""
    return CookieJar(policy=refuse_cookies())


def refuse_cookies() -> DefaultCookiePolicy:
    """A cookie policy that accepts no cookie from anywhere."""
    return DefaultCookiePolicy(allowed_domains=[])


def _new_client(guarded: bool) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=4000, max_keepalive_connections=KEEPALIVE_CONNECTIONS, keepalive_expiry=30)
    ssl_context = httpx.create_ssl_context()  # loading the CA bundle takes ~0.25 s: once per client
    transport = httpx.AsyncHTTPTransport(verify=ssl_context, limits=limits, trust_env=False)
    # httpx takes no network backend; give its pool one on the loop's own transports (guarded ones resolve and
    # check the address first).
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=ssl_context,
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        network_backend=GuardedNetworkBackend() if guarded else AsyncioBackend(),
    )
    # Reads are bounded per read by the caller (first-token wait, idle gap, overall deadline).
    timeout = httpx.Timeout(connect=settings.UPSTREAM_CONNECT_TIMEOUT, read=None, write=10.0, pool=10.0)
    return httpx.AsyncClient(
        transport=transport, timeout=timeout, follow_redirects=False, trust_env=False, cookies=no_cookies()
    )


def client(guarded: bool) -> httpx.AsyncClient:
    """The shared client for this event loop."""
    per_loop = _clients.setdefault(asyncio.get_running_loop(), {})
    if guarded not in per_loop:
        per_loop[guarded] = _new_client(guarded)
    return per_loop[guarded]
