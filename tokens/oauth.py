"""The token endpoint: OAuth 2.0 client-credentials (RFC 6749 4.4) and refresh-token (section 6) grants.

The only module that talks to token endpoints. Grants go through authlib's
OAuth2Session on a session whose connections re-check the SSRF guard, because
token URLs are always typed by users. Every grant has one overall deadline
(UPSTREAM_CONNECT_TIMEOUT + CHECK_TIMEOUT, headers and body included), reads at
most TOKEN_BODY_BYTES and keeps no cookies. Nothing here logs a token or a secret,
and errors carry our own words plus the RFC 6749 error code, never the
provider's raw text.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache

import requests
import urllib3
from authlib.integrations.requests_client import OAuth2Session
from authlib.integrations.requests_client import OAuthError as AuthlibError
from django.conf import settings
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from tokens.provider.client import refuse_cookies
from tokens.ssrf import UnsafeURL
from tokens.transport import deadline, guarded_adapter

logger = logging.getLogger(__name__)

# A token response without expires_in is treated as living this long, so it is still renewed now and then.
MAX_LIFETIME_SECONDS = 366 * 86400
DEFAULT_LIFETIME_SECONDS = 3600
# A token response is a few hundred bytes (RFC 6749 5.1); JWT access tokens stay within a few KB.
TOKEN_BODY_BYTES = 64 * 1024
# Error codes that mean "this configuration will never work" (RFC 6749 5.2); no retry helps.
PERMANENT_ERRORS = {
    "invalid_client",
    "invalid_grant",
    "unauthorized_client",
    "unsupported_grant_type",
    "invalid_scope",
    "invalid_request",
    "access_denied",
}
MESSAGES = {
    "invalid_client": gettext_lazy("The token endpoint did not accept the client ID and secret (invalid_client)."),
    "invalid_grant": gettext_lazy(
        "The token endpoint refused the refresh token: it is expired, revoked or already used "
        "(invalid_grant). Sign in with the provider again and paste a new one."
    ),
    "unauthorized_client": gettext_lazy("This client may not use this grant type (unauthorized_client)."),
    "unsupported_grant_type": gettext_lazy(
        "The token endpoint does not support this grant type (unsupported_grant_type)."
    ),
    "invalid_scope": gettext_lazy("The token endpoint refused the scope (invalid_scope)."),
    "invalid_request": gettext_lazy("The token endpoint said the request was malformed (invalid_request)."),
    "access_denied": gettext_lazy("The token endpoint denied access (access_denied)."),
}


@dataclass
class TokenError(Exception):
    """A failed grant, with a message fit for the user."""

    message: str
    code: str = ""

    def __str__(self) -> str:
        return self.message


class TokenRejected(TokenError):
    """The token endpoint refused the client or grant; retrying will not help."""


class TokenUnavailable(TokenError):
    """The token endpoint could not answer now (network, timeout, 429, 5xx); try again later."""


@dataclass(frozen=True)
class TokenGrant:
    """What a successful grant returned. `refresh_token` is the one to keep (new if rotated)."""

    access_token: str
    expires_at: datetime
    refresh_token: str = ""

    def __repr__(self) -> str:
        return f"TokenGrant(expires_at={self.expires_at.isoformat()}, tokens=<hidden>)"


def fetch_client_credentials(
    *, token_url: str, client_id: str, client_secret: str, scope: str, client_auth: str
) -> TokenGrant:
    """Get an access token with the client-credentials grant."""
    session = _session(client_id, client_secret, client_auth, scope)
    return _call(lambda: session.fetch_token(token_url, grant_type="client_credentials", **_request_kwargs()))


def refresh(
    *, token_url: str, client_id: str, client_secret: str, refresh_token: str, scope: str, client_auth: str
) -> TokenGrant:
    """Trade a refresh token for a new access token (and, with rotation, a new refresh token)."""
    # Without rotation authlib copies the old refresh token into the answer, so the grant always holds the current one.
    session = _session(client_id, client_secret, client_auth if client_secret else "none", scope)
    return _call(lambda: session.refresh_token(token_url, refresh_token=refresh_token, **_request_kwargs()))


def _session(client_id: str, client_secret: str, client_auth: str, scope: str) -> OAuth2Session:
    session = OAuth2Session(
        client_id=client_id,
        client_secret=client_secret or None,
        token_endpoint_auth_method=client_auth,
        scope=scope or None,
    )
    session.trust_env = False
    session.cookies.set_policy(refuse_cookies())
    session.hooks["response"].append(_read_capped)
    # One connection pool per process, shared by every grant's session (never closed with it), so connections to a
    # token endpoint are kept alive: a TCP connection per grant cost the refresh bench 40% more CPU. Each new
    # connection re-checks the SSRF guard; the deadline cuts whichever socket a grant uses, new or kept alive.
    adapter = _adapter()
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


@cache
def _adapter() -> requests.adapters.HTTPAdapter:
    # As many kept-alive connections per token endpoint as a refresh batch sends at once: with requests' default
    # of 10, 32 threads threw away and reopened a connection for most grants (1,296 in the refresh bench, not 64).
    return guarded_adapter(pool_maxsize=max(10, settings.REFRESH_THREADS))


os.register_at_fork(after_in_child=_adapter.cache_clear)  # a forked worker opens its own connections


class _TooLarge(Exception):
    pass


def _read_capped(response: requests.Response, *args: object, **kwargs: object) -> requests.Response:
    """Read the body before requests does, refusing more than TOKEN_BODY_BYTES (a response hook)."""
    body = response.raw.read(TOKEN_BODY_BYTES + 1, decode_content=True) or b""
    if len(body) > TOKEN_BODY_BYTES:
        response.close()
        raise _TooLarge
    response._content, response._content_consumed = body, True  # type: ignore[attr-defined]  # requests' own flag
    return response


def _request_kwargs() -> dict:
    return {"timeout": (settings.UPSTREAM_CONNECT_TIMEOUT, settings.CHECK_TIMEOUT), "allow_redirects": False}


def _call(request: Callable[[], dict]) -> TokenGrant:
    """Run one grant request within the overall deadline; map every failure to a TokenError."""
    with deadline(settings.UPSTREAM_CONNECT_TIMEOUT + settings.CHECK_TIMEOUT) as expired:
        try:
            token = request()
        except Exception as exc:
            # A trickling endpoint is cut by shutting its socket: whatever that raised, it was the deadline.
            if expired.is_set():
                raise TokenUnavailable(_("The token endpoint did not answer in time."), "timeout") from None
            error = _token_error(exc)
            if error is None:
                raise
            raise error from None
    return _grant(token)


def _token_error(exc: Exception) -> TokenError | None:
    """The TokenError for what a grant request raised; None for anything else (a bug: let it show)."""
    if isinstance(exc, UnsafeURL):
        return TokenRejected(_("Token URL refused: %(reason)s") % {"reason": exc}, "unsafe_url")
    if isinstance(exc, AuthlibError):
        code = str(exc.error or "")[:60]
        if code in PERMANENT_ERRORS:
            return TokenRejected(str(MESSAGES[code]), code)
        return TokenUnavailable(
            _("The token endpoint could not issue a token right now (%(code)s).") % {"code": code}, code
        )
    if isinstance(exc, _TooLarge):
        return TokenRejected(_("The token endpoint's answer was too large to be a token response."), "too_large")
    if isinstance(exc, requests.Timeout):
        return TokenUnavailable(_("The token endpoint did not answer in time."), "timeout")
    if isinstance(exc, requests.HTTPError):
        status = exc.response.status_code if exc.response is not None else 0
        if status >= 500 or status == 429:
            return TokenUnavailable(
                _("The token endpoint answered with an error (%(status)s).") % {"status": status}, str(status)
            )
        return TokenRejected(
            _("The token endpoint refused the request (%(status)s).") % {"status": status}, str(status)
        )
    if isinstance(exc, requests.JSONDecodeError):
        return TokenRejected(_("The token endpoint's answer was not an OAuth 2.0 token response."), "bad_response")
    if isinstance(exc, requests.RequestException | urllib3.exceptions.HTTPError | OSError):
        logger.info("token endpoint could not connect: %s", type(exc).__name__)
        return TokenUnavailable(_("Could not connect to the token endpoint."), "connect")
    if isinstance(exc, ValueError):
        return TokenRejected(_("The token endpoint's answer was not an OAuth 2.0 token response."), "bad_response")
    return None


def _grant(token: dict) -> TokenGrant:
    access_token = token.get("access_token")
    if not isinstance(access_token, str) or not access_token:
        raise TokenRejected(_("The token endpoint's answer held no access token."), "bad_response")
    try:
        lifetime = int(token.get("expires_in") or DEFAULT_LIFETIME_SECONDS)
    except (TypeError, ValueError, OverflowError):  # "soon", [3600], Infinity
        lifetime = DEFAULT_LIFETIME_SECONDS
    # RFC 6749 5.1 gives no upper bound; a year is past any real token's life and fits any date arithmetic.
    lifetime = min(lifetime, MAX_LIFETIME_SECONDS)
    refresh_token = token.get("refresh_token")
    return TokenGrant(
        access_token=access_token,
        expires_at=timezone.now() + timedelta(seconds=max(lifetime, 0)),
        refresh_token=refresh_token if isinstance(refresh_token, str) else "",
    )
