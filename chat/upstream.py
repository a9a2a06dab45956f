"""Stream chat completions from an OpenAI-compatible API.

One pooled httpx.AsyncClient per event loop (and one more for user-supplied base
URLs, whose connections re-check the SSRF guard). Server-sent events are parsed
here directly: building an SDK object per chunk costs more CPU than the whole
rest of the relay. Error mapping follows the openai SDK's status-to-error table.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import time
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpcore
import httpx
from django.conf import settings

from tokens.services import Bearer
from tokens.ssrf import UnsafeURL
from tokens.transport import GuardedNetworkBackend

RETRIES_BEFORE_FIRST_TOKEN = 2
_CODE = re.compile(r"^[a-z0-9_.\-]{1,60}$")


class UpstreamError(Exception):
    """A failed call, described for a person; `kind` drives what the app does next."""

    def __init__(
        self, kind: str, message: str, *, status: int | None = None, retry_after: int | None = None, code: str = ""
    ) -> None:
        super().__init__(message)
        self.kind, self.message, self.status, self.retry_after, self.code = kind, message, status, retry_after, code

    @property
    def retryable(self) -> bool:
        return self.kind in ("server", "timeout", "connection")


@dataclass
class Completion:
    """What the stream told us besides text; filled in while streaming."""

    model: str
    status_code: int | None = None
    request_id: str = ""
    response_id: str | None = None
    usage: dict | None = None
    finish_reason: str | None = None
    started: float = field(default_factory=time.perf_counter)
    first_token_at: float | None = None


_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[bool, httpx.AsyncClient]] = (
    weakref.WeakKeyDictionary()
)


def _timeout() -> httpx.Timeout:
    return httpx.Timeout(
        connect=settings.UPSTREAM_CONNECT_TIMEOUT, read=settings.UPSTREAM_READ_TIMEOUT, write=10.0, pool=10.0
    )


def _new_client(guarded: bool) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=4000, max_keepalive_connections=200, keepalive_expiry=30)
    transport = httpx.AsyncHTTPTransport(limits=limits, trust_env=False)
    if guarded:
        # httpx takes no network backend; give its pool one that checks each peer address.
        transport._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=GuardedNetworkBackend(),
        )
    return httpx.AsyncClient(transport=transport, timeout=_timeout(), follow_redirects=False, trust_env=False)


def client(guarded: bool) -> httpx.AsyncClient:
    """The shared client for this event loop."""
    per_loop = _clients.setdefault(asyncio.get_running_loop(), {})
    if guarded not in per_loop:
        per_loop[guarded] = _new_client(guarded)
    return per_loop[guarded]


def _error_from_response(status: int, body: bytes, headers: httpx.Headers, model: str) -> UpstreamError:
    try:
        error = json.loads(body).get("error") or {}
    except (ValueError, AttributeError):
        error = {}
    raw_code = str(error.get("code") or error.get("type") or "") if isinstance(error, dict) else ""
    code = raw_code if _CODE.match(raw_code) else ""
    if status == 401:
        return UpstreamError(
            "auth", "The provider rejected your credential (401). Update it on the keys page.", status=status, code=code
        )
    if status == 403:
        return UpstreamError(
            "auth", "The provider refused this credential (403). Check it on the keys page.", status=status, code=code
        )
    if status == 404:
        return UpstreamError(
            "not_found", f"The model “{model}” is not available to this credential (404).", status=status, code=code
        )
    if status == 429:
        if code == "insufficient_quota":
            return UpstreamError(
                "quota",
                "Your provider account has run out of quota (429). Add credit and retry.",
                status=status,
                code=code,
            )
        retry_after = _retry_after(headers)
        wait = f" Try again in {retry_after} s." if retry_after else " Try again shortly."
        return UpstreamError(
            "rate_limit",
            "The provider is rate limiting this credential (429)." + wait,
            status=status,
            retry_after=retry_after,
            code=code,
        )
    if status >= 500:
        return UpstreamError(
            "server", f"The provider had a server error ({status}). Try again in a moment.", status=status, code=code
        )
    detail = f": {code}" if code else ""
    return UpstreamError(
        "bad_request", f"The provider refused the request ({status}{detail}).", status=status, code=code
    )


def _retry_after(headers: httpx.Headers) -> int | None:
    value = headers.get("retry-after") or headers.get("x-ratelimit-reset-requests")
    try:
        return max(1, int(float(value))) if value else None
    except ValueError:
        return None


def _payload(model: str, messages: list[dict]) -> bytes:
    return json.dumps(
        {"model": model, "messages": messages, "stream": True, "stream_options": {"include_usage": True}}
    ).encode()


async def stream_completion(
    bearer: Bearer, *, model: str, messages: list[dict], completion: Completion
) -> AsyncIterator[str]:
    """Yield reply text as it arrives; retry transient failures only before the first token."""
    url = f"{bearer.base_url}/chat/completions"
    headers = {
        "Authorization": f"Bearer {bearer.token}",
        "Content-Type": "application/json",
        "Accept": "text/event-stream",
        "Accept-Encoding": "identity",
    }
    body = _payload(model, messages)
    for attempt in range(RETRIES_BEFORE_FIRST_TOKEN + 1):
        try:
            async with client(bearer.guarded).stream("POST", url, content=body, headers=headers) as response:
                completion.status_code = response.status_code
                completion.request_id = response.headers.get("x-request-id", "")[:100]
                if response.status_code >= 400:
                    raise _error_from_response(response.status_code, await response.aread(), response.headers, model)
                async for text in _read_events(response, completion):
                    yield text
                return
        except UpstreamError as exc:
            failure = exc
        except httpx.TimeoutException:
            failure = UpstreamError("timeout", "The provider did not answer in time. Try again in a moment.")
        except httpx.TransportError:
            failure = UpstreamError("connection", "Could not connect to the provider. Try again in a moment.")
        except UnsafeURL as exc:
            failure = UpstreamError("connection", f"Refused to connect: {exc}")
        except ValueError:
            failure = UpstreamError("server", "The provider sent a reply that could not be read.")
        if completion.first_token_at is not None:
            raise UpstreamError(
                "cut", "The provider stopped sending before the reply was finished.", status=completion.status_code
            ) from failure
        if not failure.retryable or attempt == RETRIES_BEFORE_FIRST_TOKEN:
            raise failure
        await asyncio.sleep(0.25 * 2**attempt + random.uniform(0, 0.25))


async def _read_events(response: httpx.Response, completion: Completion) -> AsyncIterator[str]:
    buffer = b""
    done = False
    async for raw in response.aiter_raw():
        buffer += raw
        if b"\r" in buffer:
            buffer = buffer.replace(b"\r\n", b"\n")
        *events, buffer = buffer.split(b"\n\n")
        texts = []
        for event in events:
            for line in event.split(b"\n"):
                if not line.startswith(b"data:"):
                    continue
                data = line[5:].strip()
                if data == b"[DONE]":
                    done = True
                    continue
                text = _apply_chunk(json.loads(data), completion)
                if text:
                    texts.append(text)
        if texts:
            if completion.first_token_at is None:
                completion.first_token_at = time.perf_counter()
            yield "".join(texts)
    if not done and completion.finish_reason is None:
        raise UpstreamError(
            "cut", "The provider ended the stream before the reply was finished.", status=completion.status_code
        )


def _apply_chunk(chunk: dict, completion: Completion) -> str:
    if "error" in chunk:
        raise UpstreamError("server", "The provider reported an error in the middle of the reply.")
    completion.response_id = completion.response_id or chunk.get("id")
    if chunk.get("usage"):
        completion.usage = chunk["usage"]
    text = ""
    for choice in chunk.get("choices") or ():
        delta = choice.get("delta") or {}
        text += delta.get("content") or ""
        if choice.get("finish_reason"):
            completion.finish_reason = choice["finish_reason"]
    return text
