"""The token endpoint: OAuth 2.0 client-credentials (RFC 6749 4.4) and refresh-token (section 6) grants.

The only module that talks to token endpoints. Grants go through authlib's
OAuth2Session on a session whose connections re-check the SSRF guard, because
token URLs are always typed by users. Nothing here logs a token or a secret,
and errors carry our own words plus the RFC 6749 error code, never the
provider's raw text.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache

import requests
from authlib.integrations.requests_client import OAuth2Session
from authlib.integrations.requests_client import OAuthError as AuthlibError
from django.conf import settings
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from tokens.ssrf import UnsafeURL
from tokens.transport import guarded_adapter

logger = logging.getLogger(__name__)

# A token response without expires_in is treated as living this long, so it is still renewed now and then.
MAX_LIFETIME_SECONDS = 366 * 86400
DEFAULT_LIFETIME_SECONDS = 3600
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
    session = _session(client_id, client_secret, client_auth if client_secret else "none", scope)
    # Without rotation authlib copies the old refresh token into the answer, so the grant always holds the current one.
    return _call(lambda: session.refresh_token(token_url, refresh_token=refresh_token, **_request_kwargs()))


def _session(client_id: str, client_secret: str, client_auth: str, scope: str) -> OAuth2Session:
    session = OAuth2Session(
        client_id=client_id,
        client_secret=client_secret or None,
        token_endpoint_auth_method=client_auth,
        scope=scope or None,
    )
    session.trust_env = False
    # One pool per process, shared by every credential's session; each connection re-checks the SSRF guard.
    adapter = _adapter()
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


@lru_cache(maxsize=1)
def _adapter() -> requests.adapters.HTTPAdapter:
    return guarded_adapter()


def _request_kwargs() -> dict:
    return {"timeout": (settings.UPSTREAM_CONNECT_TIMEOUT, settings.CHECK_TIMEOUT), "allow_redirects": False}


def _call(request: Callable[[], dict]) -> TokenGrant:
    try:
        token = request()
    except UnsafeURL as exc:
        raise TokenRejected(_("Token URL refused: %(reason)s") % {"reason": exc}, "unsafe_url") from exc
    except AuthlibError as exc:
        code = str(exc.error or "")[:60]
        if code in PERMANENT_ERRORS:
            raise TokenRejected(str(MESSAGES[code]), code) from None
        raise TokenUnavailable(
            _("The token endpoint could not issue a token right now (%(code)s).") % {"code": code}, code
        ) from None
    except requests.Timeout:
        raise TokenUnavailable(_("The token endpoint did not answer in time."), "timeout") from None
    except requests.HTTPError as exc:
        status = exc.response.status_code if exc.response is not None else 0
        if status >= 500 or status == 429:
            raise TokenUnavailable(
                _("The token endpoint answered with an error (%(status)s).") % {"status": status}, str(status)
            ) from None
        raise TokenRejected(
            _("The token endpoint refused the request (%(status)s).") % {"status": status}, str(status)
        ) from None
    except requests.RequestException as exc:
        logger.info("token endpoint could not connect: %s", type(exc).__name__)
        raise TokenUnavailable(_("Could not connect to the token endpoint."), "connect") from None
    except ValueError:
        raise TokenRejected(
            _("The token endpoint's answer was not an OAuth 2.0 token response."), "bad_response"
        ) from None
    return _grant(token)


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
