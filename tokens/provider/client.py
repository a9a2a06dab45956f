"""The shared httpx.AsyncClient per event loop: one for the site's default provider, one guarded pool
(every connection passes the SSRF guard before its TCP handshake) for user-typed base URLs.

Neither keeps cookies: a Set-Cookie from one user's provider call must never ride on another's.
"""

from __future__ import annotations

import asyncio
import weakref
from http.cookiejar import CookieJar, DefaultCookiePolicy

import httpx
from django.conf import settings

from tokens.http1 import Http1Transport

_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[bool, httpx.AsyncClient]] = (
    weakref.WeakKeyDictionary()
)


# Idle connections kept per client (all hosts together): enough for a burst of replies to reuse warm connections,
# few enough that a provider's idle sockets do not pile up.
KEEPALIVE_CONNECTIONS = 512


def no_cookies() -> CookieJar:
    """A cookie jar that refuses every cookie."""
    return CookieJar(policy=refuse_cookies())


def refuse_cookies() -> DefaultCookiePolicy:
    """A cookie policy that accepts no cookie from anywhere."""
    return DefaultCookiePolicy(allowed_domains=[])


def _new_client(guarded: bool) -> httpx.AsyncClient:
    ssl_context = httpx.create_ssl_context()  # loading the CA bundle takes ~0.25 s: once per client
    transport = Http1Transport(ssl_context=ssl_context, guarded=guarded, keepalive=KEEPALIVE_CONNECTIONS)
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
