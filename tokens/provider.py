"""Calls to an OpenAI-compatible provider made by the tokens app: list models to check a credential."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache

import requests
from django.conf import settings

from tokens.ssrf import UnsafeURL
from tokens.transport import guarded_session

logger = logging.getLogger(__name__)


@dataclass
class ProviderError(Exception):
    """A failed call, with a message fit for the user (never the upstream's raw text)."""

    message: str
    status: int | None = None
    code: str = ""

    def __str__(self) -> str:
        return self.message


class Rejected(ProviderError):
    """The provider refused the credential (401 or 403)."""


class Unreachable(ProviderError):
    """The provider could not answer now (network, timeout, 429, 5xx); try again later."""


def _error_code(response: requests.Response) -> str:
    try:
        error = response.json().get("error") or {}
        return str(error.get("code") or error.get("type") or "")[:60] if isinstance(error, dict) else ""
    except ValueError:
        return ""


def list_models(*, base_url: str, bearer: str, guarded: bool) -> list[str]:
    """Return the model ids this bearer may use, via GET {base_url}/models."""
    try:
        response = _session(guarded).get(
            f"{base_url.rstrip('/')}/models",
            headers={"Authorization": f"Bearer {bearer}", "Accept": "application/json"},
            timeout=(settings.UPSTREAM_CONNECT_TIMEOUT, settings.CHECK_TIMEOUT),
            allow_redirects=False,
        )
    except UnsafeURL as exc:
        raise Rejected(str(exc)) from exc
    except requests.Timeout as exc:
        raise Unreachable("The provider did not answer in time.") from exc
    except requests.RequestException as exc:
        logger.info("models check could not connect: %s", type(exc).__name__)
        raise Unreachable("Could not connect to the provider.") from exc

    code = _error_code(response) if response.status_code >= 400 else ""
    if response.status_code in (401, 403):
        raise Rejected(
            f"The provider rejected this credential ({response.status_code}{', ' + code if code else ''}).",
            response.status_code,
            code,
        )
    if response.status_code == 429:
        raise Unreachable("The provider is rate limiting this credential right now (429).", 429, code)
    if response.status_code >= 400:
        raise Unreachable(f"The provider answered with an error ({response.status_code}).", response.status_code, code)
    try:
        return sorted(item["id"] for item in response.json()["data"])
    except (ValueError, KeyError, TypeError) as exc:
        raise Unreachable("The provider's answer was not an OpenAI-compatible model list.") from exc


@lru_cache(maxsize=2)
def _session(guarded: bool) -> requests.Session:
    return guarded_session() if guarded else requests.Session()
