"""Synchronous provider calls (requests): list the models a bearer may use, which also checks it.

Every call has an overall deadline (CHECK_TIMEOUT) and reads at most UPSTREAM_MAX_LIST_BYTES, so a
provider that trickles its answer or sends an endless one cannot hold a worker (or, through it, a
pooled database connection: callers release theirs first, see tokens.services).
"""

from __future__ import annotations

import json
import logging
import time

import requests
from django.conf import settings
from django.utils.translation import gettext as _

from tokens.provider.client import refuse_cookies
from tokens.provider.encoding import decompressor, inflate
from tokens.provider.endpoint import Bearer
from tokens.provider.errors import ProviderError, error_from_body
from tokens.ssrf import UnsafeURL
from tokens.transport import deadline as call_deadline
from tokens.transport import guarded_session

logger = logging.getLogger(__name__)

MAX_MODELS = 5000
ERROR_BODY_BYTES = 64 * 1024
# Keys a model entry carries its id under: OpenAI `id`, Ollama's native `name` / `model`, Gemini `name`.
_ID_KEYS = ("id", "model", "name", "slug")


def list_models(bearer: Bearer) -> list[str]:
    """Return the model ids this bearer may use (sorted, unique) via GET models; raise ProviderError.

    Accepts every list shape providers return: OpenAI's {"data": [{"id"}]}, a bare array (Together),
    {"models": [{"name"|"model"}]} (Ollama's native /api/tags, Gemini), {"data": ["id"]}, and
    {"data": {...: {...}}} maps; ids are kept as sent (OpenRouter's "vendor/model:tag").
    """
    raw = get_json_bytes(bearer, bearer.models_url(), limit=settings.UPSTREAM_MAX_LIST_BYTES)
    try:
        payload = json.loads(raw)
    except ValueError as exc:
        raise ProviderError(
            "bad_response", _("The provider's answer was not a model list. Check the base URL.")
        ) from exc
    return model_ids(payload)


def model_ids(payload: object) -> list[str]:
    """Pull model ids out of any list shape (see list_models); raise ProviderError if there is no list."""
    entries = payload
    if isinstance(payload, dict):
        entries = next((payload[key] for key in ("data", "models", "result") if key in payload), None)
        if isinstance(entries, dict):
            entries = [{"id": key, **value} if isinstance(value, dict) else key for key, value in entries.items()]
    if not isinstance(entries, list):
        raise ProviderError("bad_response", _("The provider's answer was not a model list. Check the base URL."))
    ids = set()
    for entry in entries[:MAX_MODELS]:
        if isinstance(entry, dict):
            entry = next((entry[key] for key in _ID_KEYS if isinstance(entry.get(key), str)), None)
        if isinstance(entry, str) and 0 < len(entry.strip()) <= 200:
            ids.add(entry.strip())
    return sorted(ids)


def get_json_bytes(bearer: Bearer, url: str, *, limit: int) -> bytes:
    """GET url with the bearer's headers; return the body (at most `limit` bytes) or raise ProviderError."""
    with call_deadline(settings.UPSTREAM_CONNECT_TIMEOUT + settings.CHECK_TIMEOUT) as expired:
        try:
            body = _get(bearer, url, limit)
        except ProviderError:
            if not expired.is_set():
                raise
        if expired.is_set():  # whatever came back was cut short by the deadline
            raise ProviderError("timeout", _("The provider did not answer in time."))
        return body


def _get(bearer: Bearer, url: str, limit: int) -> bytes:
    with _session(bearer.guarded) as session:
        return _get_with(session, bearer, url, limit)


def _get_with(session: requests.Session, bearer: Bearer, url: str, limit: int) -> bytes:
    deadline = time.monotonic() + settings.CHECK_TIMEOUT
    # Connection: close and a session per call, so every call opens (and its deadline tracks) its own connection.
    headers = {**bearer.headers(), "Accept": "application/json", "Accept-Encoding": "identity", "Connection": "close"}
    try:
        response = session.get(
            url,
            headers=headers,
            timeout=(settings.UPSTREAM_CONNECT_TIMEOUT, settings.CHECK_TIMEOUT),
            allow_redirects=False,
            stream=True,
        )
    except UnsafeURL as exc:
        raise ProviderError("unsafe_url", _("Refused to connect: %(reason)s") % {"reason": exc}) from exc
    except (UnicodeError, ValueError) as exc:
        raise ProviderError(
            "bad_request", _("The credential or base URL holds characters that cannot be sent; enter it again.")
        ) from exc
    except requests.Timeout as exc:
        raise ProviderError("timeout", _("The provider did not answer in time.")) from exc
    except requests.RequestException as exc:
        logger.info("models call could not connect: %s", type(exc).__name__)
        raise ProviderError("connection", _("Could not connect to the provider.")) from exc
    with response:
        status = response.status_code
        body = _read(response, ERROR_BODY_BYTES if status >= 400 else limit, deadline)
    if status >= 400:
        raise error_from_body(status, body, headers=response.headers, secret=bearer.token)
    if 300 <= status < 400:
        raise ProviderError(
            "bad_response",
            _("The provider redirected the request (%(status)s). Enter the address it redirects to.")
            % {"status": status},
        )
    return body


def _read(response: requests.Response, limit: int, deadline: float) -> bytes:
    parts: list[bytes] = []
    size, decoder = 0, None
    try:
        # read1 returns what one socket read gave: a trickled body meets the deadline between reads.
        while chunk := response.raw.read1(16 * 1024, decode_content=False):
            if not parts and decoder is None:  # a CDN that compressed anyway, labelled or not
                decoder = decompressor(response.headers.get("content-encoding", ""), chunk)
            for piece in inflate(decoder, chunk) if decoder else (chunk,):
                size += len(piece)
                if size > limit:
                    raise ProviderError("too_large", _("The provider's answer was too large to read."))
                parts.append(piece)
            if time.monotonic() > deadline:
                raise ProviderError("timeout", _("The provider did not answer in time."))
    except requests.RequestException as exc:
        raise ProviderError("connection", _("The connection to the provider failed.")) from exc
    except OSError as exc:
        raise ProviderError("timeout", _("The provider did not answer in time.")) from exc
    return b"".join(parts)


def _session(guarded: bool) -> requests.Session:
    session = guarded_session(guarded)
    session.cookies.set_policy(refuse_cookies())
    return session
