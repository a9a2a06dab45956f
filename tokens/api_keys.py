"""Personal API keys and the short-lived access tokens exchanged for them: issue, verify, revoke.

A key reads ``byok_<prefix>_<secret>``, an access token ``byokat_<prefix>_<secret>``: the prefix is a public,
unique id found by an indexed lookup, and only a SHA-256 of the whole string is stored and compared with
``hmac.compare_digest`` (django-rest-knox and GitHub's token format work this way). The secret is 256 random
bits, so a fast hash is enough: there is nothing to guess, unlike a password.

Access tokens are opaque and hashed rather than signed JWTs: every call must see a revoked key at once, which
means a database read per call anyway, and then a JWT only adds a signing key to guard and claims a client could
read. Opaque tokens cost one indexed lookup, like a key.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.models import LIMIT_FIELDS, Approval, User
from project.prepared import PreparedQuery
from tokens.models import AccessToken, ApiKey, Credential

KEY_PREFIX, TOKEN_PREFIX = "byok_", "byokat_"
PREFIX_LENGTH = 12
# Letters and digits only: 43 of them carry 256 bits, and a double click selects the whole key.
SECRET_ALPHABET, SECRET_LENGTH = string.ascii_letters + string.digits, 43
# Writing last_used_at on every call would make each request a write; a minute's precision is enough.
LAST_USED_PRECISION = timedelta(seconds=60)
# The columns a call's checks read of the key and its owner, out of some forty: compiling and loading each column is
# most of what the lookup costs. Any other is read on first use. The credential is not joined: most keys have none
# of their own (the owner's default is used), and chat.api reads either in one query.
GRANT_FIELDS = (
    "id",
    "user",
    "credential",
    "secret_hash",
    "is_credential_pinned",
    "allowed_models",
    "last_used_at",
    "expires_at",
    "revoked_at",
    *(f"user__{name}" for name in ("id", "is_active", "approval", *LIMIT_FIELDS)),
)
TOKEN_FIELDS = ("id", "api_key", "secret_hash", "allowed_models", "expires_at")


class ApiAuthError(Exception):
    """A bearer that does not authenticate; `code` is an OpenAI-style error code."""

    def __init__(self, message: str, *, code: str = "invalid_api_key") -> None:
        super().__init__(message)
        self.message, self.code = message, code


class ApiKeyError(Exception):
    """A personal key that cannot be created as asked; `field` names the form field at fault."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message, self.field = message, field


@dataclass(frozen=True)
class ApiGrant:
    """What a verified bearer may do: whose it is, through which key, for which models, until when."""

    user: User
    api_key: ApiKey
    allowed_models: tuple[str, ...]
    expires_at: datetime | None
    via_token: bool

    def allows(self, model: str) -> bool:
        return not self.allowed_models or model in self.allowed_models


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _new_secret(kind: str) -> tuple[str, str]:
    """Return (prefix, whole bearer) for a fresh key or token."""
    prefix = secrets.token_hex(PREFIX_LENGTH // 2)
    secret = "".join(secrets.choice(SECRET_ALPHABET) for _position in range(SECRET_LENGTH))
    return prefix, f"{kind}{prefix}_{secret}"


def _split(bearer: str) -> tuple[str, str] | None:
    """Return (kind, prefix) of a well-formed bearer, else None."""
    for kind in (TOKEN_PREFIX, KEY_PREFIX):
        if bearer.startswith(kind):
            rest = bearer[len(kind) :]
            if len(rest) > PREFIX_LENGTH + 1 and rest[PREFIX_LENGTH] == "_":
                return kind, rest[:PREFIX_LENGTH]
    return None


def clean_model_list(text: str) -> list[str]:
    """Split a typed list of model ids (commas, spaces or new lines) into unique ids, in order."""
    seen: dict[str, None] = {}
    for item in text.replace(",", " ").split():
        seen.setdefault(item[:100], None)
    return list(seen)


def api_key_create(
    *,
    user: User,
    name: str,
    expires_at: datetime | None = None,
    allowed_models: list[str] | None = None,
    credential: Credential | None = None,
) -> tuple[ApiKey, str]:
    """Create a personal API key; return the row and the whole key, which exists only in this return value.

    Raises ApiKeyError for an expiry in the past or a credential that is not the user's.
    """
    if expires_at is not None and expires_at <= timezone.now():
        raise ApiKeyError(_("Choose an expiry in the future."), field="expiry")
    if credential is not None and credential.user_id != user.pk:
        raise ApiKeyError(_("Choose one of your own credentials."), field="credential")
    prefix, key = _new_secret(KEY_PREFIX)
    api_key = ApiKey.objects.create(
        user=user,
        name=name.strip()[:80] or _("API key"),
        prefix=prefix,
        secret_hash=_digest(key),
        expires_at=expires_at,
        allowed_models=list(allowed_models or []),
        credential=credential,
        is_credential_pinned=credential is not None,
    )
    return api_key, key


def api_key_revoke(*, api_key: ApiKey, actor: str) -> None:
    """Revoke a key and delete its access tokens; both stop authenticating with the next request."""
    with transaction.atomic():
        ApiKey.objects.filter(pk=api_key.pk, revoked_at__isnull=True).update(
            revoked_at=timezone.now(), revoked_by=actor[:150]
        )
        AccessToken.objects.filter(api_key_id=api_key.pk).delete()
    api_key.refresh_from_db(fields=["revoked_at", "revoked_by"])


def access_token_issue(*, grant: ApiGrant, scope: list[str] | None = None) -> tuple[AccessToken, str, int]:
    """Issue an access token for a verified personal key; return (row, token, lifetime in seconds).

    The token carries the key's model allowlist, narrowed to `scope` when given (RFC 6749 §3.3), and never
    outlives the key. Raises ApiAuthError (code "invalid_scope") when `scope` asks for a model the key may not use.
    """
    if grant.via_token:
        raise ApiAuthError(_("Exchange a personal API key, not an access token."), code="invalid_api_key")
    allowed = list(grant.allowed_models)
    if scope:
        refused = [model for model in scope if not grant.allows(model)]
        if refused:
            raise ApiAuthError(
                _("This key may not use: %(models)s.") % {"models": ", ".join(refused)}, code="invalid_scope"
            )
        allowed = scope
    now = timezone.now()
    expires_at = now + timedelta(seconds=settings.API_ACCESS_TOKEN_LIFETIME)
    if grant.expires_at is not None:
        expires_at = min(expires_at, grant.expires_at)
    prefix, token = _new_secret(TOKEN_PREFIX)
    row = AccessToken.objects.create(
        api_key=grant.api_key, prefix=prefix, secret_hash=_digest(token), allowed_models=allowed, expires_at=expires_at
    )
    return row, token, max(0, int((expires_at - now).total_seconds()))


def api_bearer_verify(bearer: str) -> ApiGrant:
    """Check a personal API key or access token and return what it grants.

    One indexed query; the hash is compared in constant time. Raises ApiAuthError for anything that does not
    authenticate now: unknown, malformed, expired, revoked, or its owner deactivated.
    """
    parts = _split(bearer.strip())
    if parts is None:
        raise ApiAuthError(_("Incorrect API key provided. Create one at /settings/api-keys/."))
    kind, prefix = parts
    now = timezone.now()
    api_key: ApiKey | None
    expires_at: datetime | None
    if kind == TOKEN_PREFIX:
        token = _TOKEN_BY_PREFIX.first(prefix)
        if token is None or not hmac.compare_digest(token.secret_hash, _digest(bearer.strip())):
            raise ApiAuthError(_("Incorrect or revoked access token provided."))
        if token.expires_at <= now:
            raise ApiAuthError(_("This access token has expired; exchange your key for a new one."), code="expired")
        api_key, allowed, expires_at = token.api_key, token.allowed_models, token.expires_at
    else:
        api_key = _KEY_BY_PREFIX.first(prefix)
        if api_key is None or not hmac.compare_digest(api_key.secret_hash, _digest(bearer.strip())):
            raise ApiAuthError(_("Incorrect API key provided. Create one at /settings/api-keys/."))
        allowed, expires_at = api_key.allowed_models, api_key.expires_at
    if api_key.revoked_at is not None:
        raise ApiAuthError(_("This API key has been revoked."), code="revoked")
    if api_key.expires_at is not None and api_key.expires_at <= now:
        raise ApiAuthError(_("This API key has expired. Create a new one at /settings/api-keys/."), code="expired")
    if not api_key.user.is_active or api_key.user.approval == Approval.REJECTED:
        raise ApiAuthError(_("This account is deactivated."), code="account_inactive")
    if api_key.user.approval == Approval.PENDING:  # SIGNUP_MODE=approval: nothing works until staff approve
        raise ApiAuthError(_("Waiting for approval"), code="account_pending")
    _touch(api_key, now)
    return ApiGrant(api_key.user, api_key, tuple(allowed), expires_at, via_token=kind == TOKEN_PREFIX)


# By the unique prefix, without sorting by Meta.ordering; compiled once (project.prepared).
_KEY_BY_PREFIX = PreparedQuery(
    lambda prefix: ApiKey.objects.select_related("user").only(*GRANT_FIELDS).filter(prefix=prefix).order_by(),
    "\x00prefix",
)
_TOKEN_BY_PREFIX = PreparedQuery(
    lambda prefix: (
        AccessToken.objects.select_related("api_key__user")
        .only(*TOKEN_FIELDS, *(f"api_key__{name}" for name in GRANT_FIELDS))
        .filter(prefix=prefix)
        .order_by()
    ),
    "\x00prefix",
)


def _touch(api_key: ApiKey, now: datetime) -> None:
    if api_key.last_used_at is None or now - api_key.last_used_at >= LAST_USED_PRECISION:
        ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
        api_key.last_used_at = now


def access_tokens_prune(*, now: datetime | None = None) -> int:
    """Delete access tokens that have expired; return how many."""
    return AccessToken.objects.filter(expires_at__lte=now or timezone.now()).delete()[0]
