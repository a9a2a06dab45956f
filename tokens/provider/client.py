"""The shared HTTP transports for provider calls, one pair per event loop: one for the site's default provider,
one guarded pool (every connection passes the SSRF guard before its TCP handshake) for user-typed base URLs.

Chat calls go as httpx requests straight to the transport (`post`, `send`), not through an httpx.AsyncClient:
they follow no redirect and keep no cookie, and the client's per-request work (merging its defaults, the cookie
jar's extraction, the auth and redirect flows) was about a tenth of a chat request's CPU (py-spy, 2026-12-01). With
no cookie jar at all, a Set-Cookie from one user's provider call can never ride on another's. The synchronous
calls (model lists, checks, token requests) use requests sessions whose cookie policy is `refuse_cookies`.
"""

from __future__ import annotations

import asyncio
import functools
import weakref
from http.cookiejar import DefaultCookiePolicy

import httpx
from django.conf import settings

from tokens.http1 import Http1Transport

_transports: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[bool, httpx.AsyncBaseTransport]] = (
    weakref.WeakKeyDictionary()
)


# Idle connections kept per transport (all hosts together): enough for a burst of replies to reuse warm
# connections, few enough that a provider's idle sockets do not pile up.
KEEPALIVE_CONNECTIONS = 512
# What httpx.AsyncClient sent before the caller's headers (its Accept and Accept-Encoding are always overridden).
DEFAULT_HEADERS = {"Connection": "keep-alive", "User-Agent": f"python-httpx/{httpx.__version__}"}


def refuse_cookies() -> DefaultCookiePolicy:
    """A cookie policy that accepts no cookie from anywhere."""
    return DefaultCookiePolicy(allowed_domains=[])


def _timeouts() -> dict[str, float | None]:
    """The transport's timeouts (seconds), as httpx passes them in a request's `timeout` extension. Reads are
    bounded per read by the caller (first-token wait, idle gap, overall deadline)."""
    return {"connect": settings.UPSTREAM_CONNECT_TIMEOUT, "read": None, "write": 10.0, "pool": 10.0}


def transport(guarded: bool) -> httpx.AsyncBaseTransport:
    """The shared transport for this event loop."""
    per_loop = _transports.setdefault(asyncio.get_running_loop(), {})
    if guarded not in per_loop:
        ssl_context = httpx.create_ssl_context()  # loading the CA bundle takes ~0.25 s: once per transport
        per_loop[guarded] = Http1Transport(ssl_context=ssl_context, guarded=guarded, keepalive=KEEPALIVE_CONNECTIONS)
    return per_loop[guarded]


@functools.lru_cache(maxsize=256)
def _url(text: str) -> httpx.URL:
    return httpx.URL(text)


def post(url: str, content: bytes, headers: dict[str, str]) -> httpx.Request:
    """A POST of `content` to `url` with DEFAULT_HEADERS, then `headers`, and the transport's timeouts.

    Raises httpx.InvalidURL (a URL httpx cannot parse) and UnicodeEncodeError (a header that is not ASCII), as
    httpx.AsyncClient.build_request does.
    """
    return httpx.Request(
        "POST", _url(url), content=content, headers={**DEFAULT_HEADERS, **headers}, extensions={"timeout": _timeouts()}
    )


async def send(request: httpx.Request, guarded: bool) -> httpx.Response:
    """`request` through this loop's transport (`guarded` or not); the response's body is not read yet.

    Raises httpx's transport errors (ConnectError, ConnectTimeout, WriteTimeout, RemoteProtocolError, ...) and
    tokens.ssrf.UnsafeURL from the guarded transport.
    """
    response = await transport(guarded).handle_async_request(request)
    response.request = request
    return response
