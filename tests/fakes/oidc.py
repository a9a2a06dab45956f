"""A fake OpenID Connect provider (OpenID Connect Core 1.0 and Discovery 1.0), as Keycloak or Entra ID would answer.

Serves discovery, JWKS, the authorization endpoint (it consents at once, as the scripted person), the token endpoint
(authorization_code grant, client_secret_post or _basic, PKCE S256) and userinfo; ID tokens are RS256-signed with
an RSA key made per server.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from .server import FakeHandler, FakeServer, RecordedRequest


class FakeOIDCProvider(FakeServer):
    def __init__(self, *, client_id: str = "byok-chat", client_secret: str = "oidc-client-secret-000001") -> None:
        super().__init__()
        self.client_id, self.client_secret = client_id, client_secret
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = secrets.token_hex(4)
        # The person who "signs in" at the provider; tests change it.
        self.person: dict[str, Any] = {
            "sub": "idp-user-1",
            "preferred_username": "erin",
            "email": "erin@corp.example",
            "email_verified": True,
            "name": "Erin Example",
        }
        self._codes: dict[str, dict[str, Any]] = {}
        self._access_tokens: dict[str, dict[str, Any]] = {}

    @property
    def issuer(self) -> str:
        return self.url

    def handle(self, http: FakeHandler, request: RecordedRequest) -> None:
        routes = {
            "/.well-known/openid-configuration": self._discovery,
            "/jwks": self._jwks,
            "/authorize": self._authorize,
            "/token": self._token,
            "/userinfo": self._userinfo,
        }
        route = routes.get(request.route)
        if route is None:
            http.send_json(404, {"error": "not_found"})
            return
        route(http, request)

    def _discovery(self, http: FakeHandler, request: RecordedRequest) -> None:
        http.send_json(
            200,
            {
                "issuer": self.issuer,
                "authorization_endpoint": f"{self.url}/authorize",
                "token_endpoint": f"{self.url}/token",
                "userinfo_endpoint": f"{self.url}/userinfo",
                "jwks_uri": f"{self.url}/jwks",
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
                "code_challenge_methods_supported": ["S256"],
                "scopes_supported": ["openid", "profile", "email"],
            },
        )

    def _jwks(self, http: FakeHandler, request: RecordedRequest) -> None:
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self._key.public_key()))
        http.send_json(200, {"keys": [{**jwk, "kid": self.kid, "use": "sig", "alg": "RS256"}]})

    def _authorize(self, http: FakeHandler, request: RecordedRequest) -> None:
        query = dict(parse_qsl(urlsplit(request.path).query))
        if query.get("client_id") != self.client_id or query.get("response_type") != "code":
            http.send_json(400, {"error": "invalid_request"})
            return
        code = secrets.token_urlsafe(16)
        self._codes[code] = {**query, "person": dict(self.person)}
        target = f"{query['redirect_uri']}?{urlencode({'code': code, 'state': query.get('state', '')})}"
        http.send_body(302, b"", "text/plain", {"Location": target})

    def _client_ok(self, request: RecordedRequest, form: dict[str, str]) -> bool:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "basic":
            client_id, _, secret = base64.b64decode(value).decode().partition(":")
        else:
            client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
        return client_id == self.client_id and hmac.compare_digest(secret, self.client_secret)

    def _token(self, http: FakeHandler, request: RecordedRequest) -> None:
        form = request.form()
        grant = self._codes.pop(form.get("code", ""), None)
        if not self._client_ok(request, form):
            http.send_json(401, {"error": "invalid_client"})
            return
        if grant is None or form.get("redirect_uri") != grant["redirect_uri"]:
            http.send_json(400, {"error": "invalid_grant"})
            return
        if "code_challenge" in grant:
            digest = hashlib.sha256(form.get("code_verifier", "").encode()).digest()
            if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != grant["code_challenge"]:
                http.send_json(400, {"error": "invalid_grant", "error_description": "PKCE verification failed"})
                return
        person = grant["person"]
        access_token = secrets.token_urlsafe(24)
        self._access_tokens[access_token] = person
        now = int(time.time())
        claims = {"iss": self.issuer, "aud": self.client_id, "iat": now, "exp": now + 300, **person}
        if grant.get("nonce"):
            claims["nonce"] = grant["nonce"]
        id_token = jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": self.kid})
        payload = {"access_token": access_token, "token_type": "Bearer", "expires_in": 300, "id_token": id_token}
        http.send_json(200, payload, {"Cache-Control": "no-store"})

    def _userinfo(self, http: FakeHandler, request: RecordedRequest) -> None:
        person = self._access_tokens.get(request.bearer or "")
        if person is None:
            http.send_json(401, {"error": "invalid_token"})
            return
        http.send_json(200, person)
