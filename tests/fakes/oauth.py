"""A fake OAuth 2.0 token endpoint (RFC 6749), scripted per test.

Supports the client_credentials grant (section 4.4) and the refresh_token
grant (section 6) with refresh-token rotation, client authentication by HTTP
Basic (client_secret_basic, 2.3.1) or form fields (client_secret_post), and
the error responses of section 5.2.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets
import time
from collections import deque
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote_plus

from .server import FakeHandler, FakeServer, RecordedRequest

_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
_BASIC_CHALLENGE = {"WWW-Authenticate": 'Basic realm="fake-oauth"'}
_FAILURE_ERRORS = {
    400: "invalid_request",
    401: "invalid_client",
    503: "temporarily_unavailable",
}


class OAuthError(Exception):
    def __init__(
        self,
        error: str,
        description: str,
        status: int = 400,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(error)
        self.status = status
        self.payload = {"error": error, "error_description": description}
        self.headers = headers or {}


@dataclass(frozen=True)
class _Grant:
    client_id: str
    scope: str | None


@dataclass(frozen=True)
class _Failure:
    status: int
    error: str | None
    hang: bool = False
    trickle: str = ""  # "headers" or "body": send that part a byte at a time, for ever
    huge: bool = False  # answer 200 with a body of many megabytes


class FakeTokenServer(FakeServer):
    """An RFC 6749 token endpoint at ``POST /token``."""

    def __init__(self, *, expires_in: int = 3600, rotate_refresh_tokens: bool = True) -> None:
        super().__init__()
        self.expires_in = expires_in
        self.rotate_refresh_tokens = rotate_refresh_tokens
        self.grants_issued = 0
        self.refresh_token_uses: dict[str, int] = {}
        self._clients: dict[str, str | None] = {}
        self._refresh_tokens: dict[str, _Grant] = {}
        self._access_tokens: dict[str, float] = {}
        self._failures: deque[_Failure] = deque()

    @property
    def token_url(self) -> str:
        return f"{self.url}/token"

    @property
    def token_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.route == "/token"]

    def add_client(self, client_id: str, client_secret: str | None) -> None:
        """Register a client; a None secret makes it a public client."""
        with self._lock:
            self._clients[client_id] = client_secret

    def issue_refresh_token(self, client_id: str, scope: str | None = None) -> str:
        """Create a refresh token as if the client had completed an authorization."""
        with self._lock:
            return self._new_refresh_token(_Grant(client_id, scope))

    def is_valid_access_token(self, token: str | None) -> bool:
        with self._lock:
            expires_at = self._access_tokens.get(token or "")
        return expires_at is not None and time.time() < expires_at

    def expire_access_tokens(self) -> None:
        with self._lock:
            self._access_tokens.clear()

    def fail_next(self, status: int, error: str | None = None, times: int = 1) -> None:
        """Answer the next ``times`` token requests with ``status`` and ``error``."""
        with self._lock:
            self._failures.extend(_Failure(status, error) for _ in range(times))

    def hang_next(self, times: int = 1) -> None:
        """Never answer the next ``times`` token requests."""
        with self._lock:
            self._failures.extend(_Failure(0, None, hang=True) for _ in range(times))

    def trickle_next(self, part: str = "body", times: int = 1) -> None:
        """Answer the next ``times`` token requests with ``part`` ("headers" or "body") sent a byte every
        20 ms, never ending: each read succeeds, so only an overall deadline stops the caller."""
        with self._lock:
            self._failures.extend(_Failure(200, None, trickle=part) for _ in range(times))

    def huge_next(self, times: int = 1) -> None:
        """Answer the next ``times`` token requests with a 16 MB JSON body."""
        with self._lock:
            self._failures.extend(_Failure(200, None, huge=True) for _ in range(times))

    # Serving.

    def handle(self, http: FakeHandler, request: RecordedRequest) -> None:
        if request.route != "/token":
            http.send_json(404, {"error": "not_found"})
            return
        if request.method != "POST":
            payload = {"error": "invalid_request", "error_description": "Use POST."}
            http.send_json(405, payload, {**_NO_STORE, "Allow": "POST"})
            return
        with self._lock:
            failure = self._failures.popleft() if self._failures else None
        if failure is not None:
            return self._fail(http, failure)
        try:
            payload = self._token_response(request)
        except OAuthError as exc:
            http.send_json(exc.status, exc.payload, {**_NO_STORE, **exc.headers})
        else:
            http.send_json(200, payload, _NO_STORE)

    def _fail(self, http: FakeHandler, failure: _Failure) -> None:
        if failure.trickle:
            return self._trickle(http, failure.trickle)
        if failure.huge:
            padding = "x" * (16 * 1024 * 1024)
            http.send_json(200, {"access_token": "at-huge", "token_type": "Bearer", "padding": padding}, _NO_STORE)
            return
        if failure.hang:
            http.wait()
            http.drop()
            return
        error = failure.error or _FAILURE_ERRORS.get(failure.status, "server_error")
        payload = {"error": error, "error_description": "Scripted failure."}
        http.send_json(failure.status, payload, _NO_STORE)

    def _trickle(self, http: FakeHandler, part: str) -> None:
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000000\r\n\r\n"
        endless = b'{"access_token": "at-trickled", "token_type": "Bearer", "padding": "' + b"x" * 100_000_000
        if part == "body":
            if not http.write_raw(head):
                return
            source = endless
        else:
            source = head[:17] + b"X-Trickle: " + b"a" * 100_000_000  # a header line that never ends
        for index in range(len(source)):
            if not http.write_raw(source[index : index + 1]) or not http.wait(0.02):
                return

    def _token_response(self, request: RecordedRequest) -> dict[str, Any]:
        form = _parse_form(request)
        grant_type = form.get("grant_type")
        if grant_type is None:
            raise OAuthError("invalid_request", "Missing grant_type.")
        if grant_type not in ("client_credentials", "refresh_token"):
            raise OAuthError("unsupported_grant_type", f"Unsupported: {grant_type}.")
        client_id, is_public = self._authenticate(request, form)
        if grant_type == "client_credentials":
            if is_public:
                raise OAuthError("unauthorized_client", "Public clients cannot use this grant.")
            with self._lock:
                return self._issue(_Grant(client_id, form.get("scope")), refresh_token=None)
        return self._refresh(client_id, form)

    def _authenticate(self, request: RecordedRequest, form: dict[str, str]) -> tuple[str, bool]:
        """Return (client_id, is_public) or raise invalid_client."""
        header = request.headers.get("authorization")
        challenge = _BASIC_CHALLENGE if header is not None else {}
        if header is not None:
            if "client_secret" in form:
                raise OAuthError("invalid_request", "Use one client authentication method.")
            client_id, secret = _parse_basic(header)
        else:
            client_id, secret = form.get("client_id"), form.get("client_secret")
        if client_id is None or form.get("client_id", client_id) != client_id:
            raise OAuthError("invalid_client", "Client authentication failed.", 401, challenge)
        with self._lock:
            known, expected = client_id in self._clients, self._clients.get(client_id)
        if expected is None:
            ok = known and not secret
        else:
            ok = secret is not None and hmac.compare_digest(secret.encode(), expected.encode())
        if not ok:
            raise OAuthError("invalid_client", "Client authentication failed.", 401, challenge)
        return client_id, expected is None

    def _refresh(self, client_id: str, form: dict[str, str]) -> dict[str, Any]:
        token = form.get("refresh_token")
        if token is None:
            raise OAuthError("invalid_request", "Missing refresh_token.")
        # One lock for check-and-rotate, so concurrent reuse gets exactly one winner.
        with self._lock:
            self.refresh_token_uses[token] = self.refresh_token_uses.get(token, 0) + 1
            grant = self._refresh_tokens.get(token)
            if grant is None or grant.client_id != client_id:
                raise OAuthError(
                    "invalid_grant",
                    "The refresh token is invalid, expired, revoked, or was issued to another client.",
                )
            scope = form.get("scope")
            if scope is not None and not set(scope.split()) <= set((grant.scope or "").split()):
                raise OAuthError("invalid_scope", "Scope exceeds the original grant.")
            if not self.rotate_refresh_tokens:
                return self._issue(_Grant(client_id, scope or grant.scope), refresh_token=None)
            del self._refresh_tokens[token]
            new_token = self._new_refresh_token(grant)
            return self._issue(_Grant(client_id, scope or grant.scope), new_token)

    def _issue(self, grant: _Grant, refresh_token: str | None) -> dict[str, Any]:
        """Mint an access token; call with the lock held."""
        access_token = f"at_{secrets.token_urlsafe(24)}"
        self._access_tokens[access_token] = time.time() + self.expires_in
        self.grants_issued += 1
        payload: dict[str, Any] = {
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
        }
        if refresh_token is not None:
            payload["refresh_token"] = refresh_token
        if grant.scope:
            payload["scope"] = grant.scope
        return payload

    def _new_refresh_token(self, grant: _Grant) -> str:
        token = f"rt_{secrets.token_urlsafe(24)}"
        self._refresh_tokens[token] = grant
        return token


def _parse_form(request: RecordedRequest) -> dict[str, str]:
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("application/x-www-form-urlencoded"):
        raise OAuthError("invalid_request", "Expected a form-urlencoded body.")
    try:
        pairs = parse_qsl(request.body.decode(), keep_blank_values=True, strict_parsing=True)
    except ValueError as exc:  # includes UnicodeDecodeError
        raise OAuthError("invalid_request", "Malformed body.") from exc
    names = [name for name, _ in pairs]
    if len(names) != len(set(names)):
        raise OAuthError("invalid_request", "Repeated parameter.")
    # RFC 6749 3.1: a parameter sent without a value is treated as omitted.
    return {name: value for name, value in pairs if value}


def _parse_basic(header: str) -> tuple[str, str]:
    """Decode client_secret_basic: base64 of form-urlencoded id ":" secret."""
    scheme, _, encoded = header.partition(" ")
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        decoded = ""
    client_id, colon, secret = decoded.partition(":")
    if scheme.lower() != "basic" or not colon:
        raise OAuthError("invalid_client", "Malformed Basic credentials.", 401, _BASIC_CHALLENGE)
    return unquote_plus(client_id), unquote_plus(secret)
