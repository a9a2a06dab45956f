"""The OpenAI-compatible API for programs: /v1/tokens, /v1/models and /v1/chat/completions.

Only a bearer authenticates here (a personal API key or an access token from /v1/tokens); session cookies never
do, so CSRF does not apply. Every call is relayed with the person's own credential, under the same rate limit as
the web chat, and leaves one usage row. Errors take OpenAI's shape ``{"error": {"message", "type", "param",
"code"}}`` and status codes, so the openai SDK raises its usual exception classes; ``x-should-retry: false`` tells
it not to retry what a retry cannot fix.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import secrets
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import aclosing
from dataclasses import dataclass, field
from functools import wraps
from typing import Any
from urllib.parse import unquote_plus

import orjson
from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.http.response import HttpResponseBase
from django.utils import translation
from django.utils.translation import gettext as _
from django.views.decorators.csrf import csrf_exempt

from accounts import ratelimit
from chat import budgets
from chat.models import Source, State, UsageRecord
from chat.services import models_for
from chat.sse import EventStreamResponse, Outlet
from chat.tokencount import count_message_tokens, count_text_tokens
from chat.usage import usage_write
from project.errors import DATABASE_RETRY_SECONDS, DATABASE_UNAVAILABLE, database_unavailable
from project.threads import in_thread
from tokens.api_keys import ApiAuthError, ApiGrant, access_token_issue, api_bearer_verify, clean_model_list
from tokens.models import Credential
from tokens.provider import Bearer, Completion, Delta, ProviderError, stream_chat
from tokens.services import CredentialError, bearer_for, credential_for_user

logger = logging.getLogger(__name__)

# Request fields the relay cannot honour: it forwards text (and reasoning) only, for one choice.
UNSUPPORTED = ("tools", "tool_choice", "functions", "function_call", "audio", "logprobs", "top_logprobs")
# Gateways' ways to run another model than `model` (OpenRouter's `models`, LiteLLM's `fallbacks`): the key's model
# allowlist and the usage row's price would be about a model the provider did not run.
MODEL_ROUTING = ("models", "fallbacks")
# Ours to set, or names stream_chat takes as arguments: never taken from the request body.
RESERVED = ("model", "messages", "stream", "stream_options", "n", "bearer", "completion", "trim_on_overflow", "renew")
_UNREAD = object()


class ApiError(Exception):
    """An answer in OpenAI's error shape; `retry` sets x-should-retry for the SDK's retry logic."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        retry_after: int | None = None,
        retry: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param = status, message, type, code, param
        self.retry_after, self.retry = retry_after, retry

    def payload(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def error_response(error: ApiError) -> JsonResponse:
    response = JsonResponse(error.payload(), status=error.status)
    if error.retry_after:
        response["Retry-After"] = str(error.retry_after)
    if error.retry is not None:
        response["x-should-retry"] = "true" if error.retry else "false"
    if error.status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="byok", error="invalid_token"'  # RFC 6750 §3
    return response


def _secured(request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
    # /v1/ runs without SecurityMiddleware (project.asgi.BearerOnlyHandler); these are the headers that matter here.
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = response.get("Cache-Control") or "no-store"
    if settings.SECURE_HSTS_SECONDS and request.is_secure():
        hsts = f"max-age={settings.SECURE_HSTS_SECONDS}"
        if settings.SECURE_HSTS_INCLUDE_SUBDOMAINS:
            hsts += "; includeSubDomains"
        if settings.SECURE_HSTS_PRELOAD:
            hsts += "; preload"
        response["Strict-Transport-Security"] = hsts
    return response


def _plain_http_refused(request: HttpRequest) -> JsonResponse | None:
    """With SECURE_SSL_REDIRECT, refuse plain http instead of redirecting: a program that followed a redirect would
    already have sent its bearer in clear, and a 301 turns POST into GET."""
    if not settings.SECURE_SSL_REDIRECT or request.is_secure():
        return None
    return error_response(ApiError(403, _("Use https:// for this API; plain http is refused."), code="https_required"))


def api_view(method: str) -> Callable:
    """Make a bearer-only view: no CSRF check, no log-in redirect, and every answer in OpenAI's shape, including
    a wrong method (405) and an unexpected failure (500, logged)."""

    def refuse(request: HttpRequest) -> JsonResponse:
        message = _("Method %(method)s is not allowed here; use %(allowed)s.") % {
            "method": request.method,
            "allowed": method,
        }
        response = error_response(ApiError(405, message, code="method_not_allowed"))
        response["Allow"] = method
        return response

    def failed(request: HttpRequest) -> JsonResponse:
        logger.exception("API %s %s failed", request.method, request.path)
        if database_unavailable():
            return error_response(
                ApiError(
                    503,
                    str(DATABASE_UNAVAILABLE),
                    type="server_error",
                    code="database_unavailable",
                    retry_after=DATABASE_RETRY_SECONDS,
                )
            )
        return error_response(ApiError(500, _("Something went wrong on our side. Try again."), type="server_error"))

    def decorate(view: Callable) -> Callable:
        if asyncio.iscoroutinefunction(view):

            async def async_view(request: HttpRequest, *args, **kwargs) -> HttpResponseBase:
                refused = _plain_http_refused(request) or (refuse(request) if request.method != method else None)
                if refused is not None:
                    return _secured(request, refused)
                try:
                    with translation.override(translation.get_language_from_request(request)):
                        return _secured(request, await view(request, *args, **kwargs))
                except Exception:
                    return _secured(request, failed(request))

            wrapper: Callable[..., HttpResponseBase | Awaitable[HttpResponseBase]] = async_view
        else:

            def sync_view(request: HttpRequest, *args, **kwargs) -> HttpResponseBase:
                refused = _plain_http_refused(request) or (refuse(request) if request.method != method else None)
                if refused is not None:
                    return _secured(request, refused)
                try:
                    with translation.override(translation.get_language_from_request(request)):
                        return _secured(request, view(request, *args, **kwargs))
                except Exception:
                    return _secured(request, failed(request))

            wrapper = sync_view
        return csrf_exempt(login_not_required(wraps(view)(wrapper)))

    return decorate


@csrf_exempt
@login_not_required
def route_not_found(request: HttpRequest, path: str = "") -> JsonResponse:
    """Unknown /v1/ routes answer like OpenAI's, in JSON, instead of a log-in redirect."""
    message = _("Invalid URL (%(method)s %(path)s).") % {"method": request.method, "path": request.path}
    return error_response(ApiError(404, message, code="unknown_url"))


def _bearer_of(request: HttpRequest) -> str:
    scheme, _sep, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def _throttled(key: str, rate: str) -> ratelimit.Verdict:
    limit, window = ratelimit.parse_rate(rate)
    return ratelimit.hit(key, limit=limit, window=window)


def authenticate(bearer: str, ip: str) -> ApiGrant:
    """Verify the bearer; count failures per client address, refusing with 429 past API_AUTH_FAILURE_RATE_LIMIT."""
    if not bearer:
        raise ApiError(
            401,
            _("You didn't provide an API key. Send it in an Authorization header: Bearer YOUR_KEY."),
            code="invalid_api_key",
        )
    try:
        return api_bearer_verify(bearer)
    except ApiAuthError as exc:
        verdict = _throttled(f"api-auth-fail:{ip}", settings.API_AUTH_FAILURE_RATE_LIMIT)
        if not verdict.allowed:
            raise _too_many_failures(verdict) from exc
        raise ApiError(401, exc.message, code=exc.code) from exc


def _too_many_failures(verdict: ratelimit.Verdict) -> ApiError:
    return ApiError(
        429,
        _("Too many failed attempts from your address. Try again in %(seconds)s s.") % {"seconds": verdict.retry_after},
        type="requests",
        code="rate_limit_exceeded",
        retry_after=verdict.retry_after,
    )


# /v1/tokens


def _basic_credentials(request: HttpRequest) -> tuple[str, str] | None:
    scheme, _sep, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        client_id, _sep, secret = base64.b64decode(value.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return "", ""
    return unquote_plus(client_id), unquote_plus(secret)  # form-encoded before Basic, RFC 6749 §2.3.1


def _oauth_error(status: int, error: str, description: str, *, basic: bool = False) -> JsonResponse:
    """An error response of RFC 6749 §5.2."""
    response = JsonResponse({"error": error, "error_description": description}, status=status)
    response["Cache-Control"], response["Pragma"] = "no-store", "no-cache"
    if basic:
        response["WWW-Authenticate"] = 'Basic realm="byok"'
    return response


def _token_response(grant: ApiGrant, scope: list[str] | None, *, oauth: bool) -> JsonResponse:
    _row, token, lifetime = access_token_issue(grant=grant, scope=scope)
    body = {"access_token": token, "token_type": "Bearer", "expires_in": lifetime}
    if oauth and (scope or grant.allowed_models):
        body["scope"] = " ".join(scope or grant.allowed_models)
    response = JsonResponse(body)
    response["Cache-Control"], response["Pragma"] = "no-store", "no-cache"  # RFC 6749 §5.1
    return response


@api_view("POST")
def token_create(request: HttpRequest) -> HttpResponse:
    """Exchange a personal API key for an access token.

    Two forms: ``Authorization: Bearer <key>`` (errors in OpenAI's shape), or OAuth2's client-credentials grant
    (RFC 6749 §4.4: form field ``grant_type=client_credentials``, the key as client secret by HTTP Basic or in the
    body, ``client_id`` its ``byok_<prefix>``; errors per §5.2). Each address may try API_TOKEN_RATE_LIMIT times.
    """
    ip = ratelimit.client_ip(request)
    verdict = _throttled(f"api-token:{ip}", settings.API_TOKEN_RATE_LIMIT)
    is_oauth = "grant_type" in request.POST
    if not verdict.allowed:
        error = _too_many_failures(verdict)
        if is_oauth:
            response = _oauth_error(429, "slow_down", error.message)
            response["Retry-After"] = str(verdict.retry_after)
            return response
        return error_response(error)
    if is_oauth:
        return _oauth_token(request, ip)
    try:
        grant = authenticate(_bearer_of(request), ip)
        return _token_response(grant, None, oauth=False)
    except ApiError as exc:
        return error_response(exc)
    except ApiAuthError as exc:
        return error_response(ApiError(400, exc.message, code=exc.code))


def _oauth_token(request: HttpRequest, ip: str) -> JsonResponse:
    if request.POST["grant_type"] != "client_credentials":
        return _oauth_error(400, "unsupported_grant_type", _("Only grant_type=client_credentials is supported."))
    basic = _basic_credentials(request)
    if basic is not None and "client_secret" in request.POST:
        return _oauth_error(400, "invalid_request", _("Authenticate the client one way only."))
    client_id, secret = basic or (request.POST.get("client_id", ""), request.POST.get("client_secret", ""))
    if not secret or not secret.startswith(f"{client_id}_"):
        # The client id is the key's public part, so a mismatch is as wrong as a bad secret.
        return _oauth_error(401, "invalid_client", _("Unknown client or wrong secret."), basic=basic is not None)
    try:
        grant = authenticate(secret, ip)
        return _token_response(grant, clean_model_list(request.POST.get("scope", "")), oauth=True)
    except ApiError as exc:
        if exc.status == 429:
            return _oauth_error(429, "slow_down", exc.message)
        return _oauth_error(401, "invalid_client", exc.message, basic=basic is not None)
    except ApiAuthError as exc:
        return _oauth_error(400, "invalid_scope" if exc.code == "invalid_scope" else "invalid_request", exc.message)


# /v1/models


def _credential_for(grant: ApiGrant) -> Credential:
    """The key's own credential, else the owner's default: one query either way (the key's lookup joins neither)."""
    api_key = grant.api_key
    pinned = api_key.is_credential_pinned or api_key.credential_id is not None
    # Never bill another credential than the one the key was made for (deleted: the id is gone, or went meanwhile).
    credential = (
        None
        if pinned and api_key.credential_id is None
        else credential_for_user(user=grant.user, credential_id=api_key.credential_id)
    )
    if credential is None and pinned:
        raise ApiError(
            409,
            _("The credential this key was made for has been deleted. Create a new key at /settings/api-keys/."),
            code="credential_missing",
            retry=False,
        )
    if credential is None:
        raise ApiError(
            409,
            _("Add a provider credential at /settings/keys/ first: calls are paid for with your own key."),
            code="credential_missing",
            retry=False,
        )
    if not credential.is_usable:
        raise ApiError(
            409,
            _("Your credential “%(name)s” is %(status)s. Fix or replace it at /settings/keys/.")
            % {"name": credential.name, "status": credential.get_status_display().lower()},
            code="credential_unusable",
            retry=False,
        )
    return credential


@api_view("GET")
def model_list(request: HttpRequest) -> JsonResponse:
    """List the models the bearer's credential can use, narrowed to the key's allowlist (OpenAI's list shape)."""
    try:
        grant = authenticate(_bearer_of(request), ratelimit.client_ip(request))
        credential = _credential_for(grant)
        try:
            models = models_for(credential=credential)
        except CredentialError as exc:
            raise ApiError(409, str(exc), code="credential_unusable", retry=False) from exc
        except ProviderError as exc:
            raise _from_upstream(exc) from exc
    except ApiError as exc:
        return error_response(exc)
    owner = credential.name
    data = [{"id": m, "object": "model", "created": 0, "owned_by": owner} for m in models if grant.allows(m)]
    return JsonResponse({"object": "list", "data": data})


# /v1/chat/completions


@dataclass
class ApiCall:
    """A checked chat request, ready to send upstream."""

    grant: ApiGrant
    bearer: Bearer
    model: str
    messages: list[dict]
    options: dict
    stream: bool
    include_usage: bool
    has_budget: bool = True  # the person's limits include a budget (read when planning)
    id: str = field(default_factory=lambda: f"chatcmpl-{secrets.token_hex(12)}")
    created: int = field(default_factory=lambda: int(time.time()))


def _parse_body(raw: bytes) -> dict:
    try:
        body = json.loads(raw or b"null")
    except ValueError as exc:
        raise ApiError(400, _("The request body is not valid JSON."), code="invalid_json") from exc
    if not isinstance(body, dict):
        raise ApiError(400, _("The request body must be a JSON object."), code="invalid_json")
    model = body.get("model")
    if not isinstance(model, str) or not model.strip() or len(model) > 100:
        raise ApiError(400, _("You must provide a model parameter."), param="model", code="missing_required_parameter")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, _("messages must be a non-empty array."), param="messages", code="invalid_value")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise ApiError(
                400, _("Each message needs a role and content."), param=f"messages[{i}]", code="invalid_value"
            )
    for name in UNSUPPORTED:
        if body.get(name) not in (None, False, [], {}):
            raise ApiError(
                400,
                _("%(param)s is not supported by this relay yet.") % {"param": name},
                param=name,
                code="unsupported_parameter",
            )
    for name in MODEL_ROUTING:
        if body.get(name) not in (None, [], {}):
            raise ApiError(
                400,
                _("%(param)s would let the provider run another model than the one named; name one model in model.")
                % {"param": name},
                param=name,
                code="unsupported_parameter",
            )
    if body.get("n") not in (None, 1):
        raise ApiError(400, _("Only n=1 is supported."), param="n", code="unsupported_value")
    return body


def _call_plan(bearer: str, ip: str, raw: bytes) -> ApiCall:
    """Authenticate, then validate the body, check scope and the rate limit, and get the owner's provider bearer;
    write nothing. A caller without a valid bearer learns nothing about the body (401 before any 400)."""
    grant = authenticate(bearer, ip)
    body = _parse_body(raw)
    model = body["model"].strip()
    if not grant.allows(model):
        raise ApiError(
            403,
            _("This key may not use the model “%(model)s”.") % {"model": model},
            param="model",
            code="model_not_allowed",
            retry=False,
        )
    user = grant.user
    limits = budgets.limits_for(user)
    # The rate limit's Redis round trip runs beside the budget and credential lookups (PostgreSQL), not before
    # them: the time to first token was their sum. A refusal still wins over what the lookups found.
    counted = _side.submit(ratelimit.hit, f"chat:{user.pk}", limit=limits.chat_rate_limit, window=60)
    try:
        provider_bearer = _provider_bearer(grant, limits)
    finally:
        _refuse_if_limited(counted.result(), limits)
    stream_options = body.get("stream_options") or {}
    return ApiCall(
        grant=grant,
        bearer=provider_bearer,
        model=model,
        messages=body["messages"],
        options={k: v for k, v in body.items() if k not in RESERVED and k not in UNSUPPORTED},
        stream=body.get("stream") is True,
        include_usage=isinstance(stream_options, dict) and stream_options.get("include_usage") is True,
        has_budget=limits.has_budget,
    )


# Side work of a request's thread (the rate limit's Redis round trip); no database connection is opened here.
_side = ThreadPoolExecutor(8, "api-side")


def _refuse_if_limited(verdict: ratelimit.Verdict, limits: budgets.Limits) -> None:
    """One allowance a minute shared with the web chat (accounts.ratelimit)."""
    if not verdict.allowed:
        raise ApiError(
            429,
            _("Rate limit reached: %(limit)s requests per minute. Try again in %(seconds)s s.")
            % {"limit": limits.chat_rate_limit, "seconds": verdict.retry_after},
            type="requests",
            code="rate_limit_exceeded",
            retry_after=verdict.retry_after,
        )


def _provider_bearer(grant: ApiGrant, limits: budgets.Limits) -> Bearer:
    """The budget check, then the owner's credential as a provider bearer; raises ApiError."""
    try:
        budgets.budget_check(user=grant.user, limits=limits)
    except budgets.BudgetExceeded as exc:
        raise ApiError(429, exc.message, type="insufficient_quota", code="budget_exceeded", retry=False) from exc
    credential = _credential_for(grant)
    try:
        return bearer_for(user=grant.user, credential=credential)
    except CredentialError as exc:
        raise ApiError(409, str(exc), code="credential_unusable", retry=False) from exc


_ERROR_STATUS = {
    # kind: (status, type, code, whether a retry may help)
    "rate_limit": (429, "requests", "rate_limit_exceeded", True),
    "payment": (429, "insufficient_quota", "insufficient_quota", False),
    "quota": (429, "insufficient_quota", "insufficient_quota", False),
    "not_found": (404, "invalid_request_error", "model_not_found", False),
    "forbidden": (403, "invalid_request_error", "upstream_forbidden", False),
    "context_length": (400, "invalid_request_error", "context_length_exceeded", False),
    "unsupported_param": (400, "invalid_request_error", "unsupported_parameter", False),
    "bad_request": (400, "invalid_request_error", "upstream_bad_request", False),
    # The person's provider credential failed, not their key for us: not a 401 from our side.
    "auth": (502, "server_error", "upstream_credential_rejected", False),
    "unsafe_url": (502, "server_error", "upstream_refused", False),
    "timeout": (504, "server_error", "upstream_timeout", True),
}


def _from_upstream(exc: ProviderError) -> ApiError:
    """Map a provider failure to the status and code an OpenAI client expects (openai SDK's status table)."""
    status, type_, code, retry = _ERROR_STATUS.get(exc.kind, (502, "server_error", "upstream_error", True))
    if exc.kind in ("bad_request", "unsupported_param") and exc.code:
        code = exc.code
    return ApiError(
        status,
        exc.message,
        type=type_,
        code=code,
        param=exc.param or None,
        retry_after=(exc.retry_after or 1) if exc.kind == "rate_limit" else None,
        retry=retry,
    )


def _plain_text(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def _usage_numbers(call: ApiCall, completion: Completion, content: str) -> tuple[int, int, bool]:
    """Return (prompt tokens, completion tokens, estimated): the provider's counts, else our own estimate."""
    usage = completion.usage or {}
    if usage.get("prompt_tokens") is not None or usage.get("completion_tokens") is not None:
        return int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0), False
    messages = [{"role": m.get("role"), "content": _plain_text(m.get("content"))} for m in call.messages]
    return count_message_tokens(messages, call.model), count_text_tokens(content, call.model), True


def _usage_payload(call: ApiCall, completion: Completion, content: str) -> dict:
    prompt, completion_tokens, _estimated = _usage_numbers(call, completion, content)
    usage: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt + completion_tokens,
    }
    reasoning = (completion.usage or {}).get("reasoning_tokens")
    if reasoning is not None:
        usage["completion_tokens_details"] = {"reasoning_tokens": reasoning}
    return usage


def usage_save(
    call: ApiCall, completion: Completion, *, content: str, state: str, error: ProviderError | None
) -> UsageRecord | None:
    """Record the call once, whatever happened (chat.usage.usage_write); a failure to save is logged, never raised."""
    billed = not (error and not content)  # nothing was generated or billed

    def estimate() -> tuple[int, int]:
        messages = [{"role": m.get("role"), "content": _plain_text(m.get("content"))} for m in call.messages]
        return count_message_tokens(messages, call.model), count_text_tokens(content, call.model)

    try:
        return usage_write(
            user_id=call.grant.user.pk,
            model=call.model,
            source=Source.API,
            usage=completion.usage if billed else None,
            estimate=estimate if billed else None,
            api_key_id=call.grant.api_key.pk,
            credential_id=call.bearer.credential_id or None,
            status_code=completion.status_code or (error.status if error else None),
            request_id=completion.request_id,
            response_id=completion.response_id,
            latency_ms=int((time.perf_counter() - completion.started) * 1000),
            first_token_ms=int((completion.first_token_at - completion.started) * 1000)
            if completion.first_token_at
            else None,
            error_type=error.kind if error else "",
            outcome=state,
            has_budget=call.has_budget,
        )
    except Exception:
        logger.exception("could not record API usage for key %s", call.grant.api_key.pk)
        return None


async def _relayed(
    call: ApiCall, stream: AsyncGenerator[Delta, None], completion: Completion, parts: list[str], first=_UNREAD
):
    """Yield the reply's deltas; record the call once when the stream ends, fails or is dropped. `parts`: the
    reply's content as the caller collects it (from what is yielded here and what goes to completion.sink)."""
    state, error = State.STREAMING, None
    try:
        async with aclosing(stream):
            delta = await anext(stream, None) if first is _UNREAD else first
            while delta is not None:
                yield delta
                delta = await anext(stream, None)
        state = State.COMPLETE
    except ProviderError as exc:
        error, state = exc, State.INCOMPLETE if parts else State.ERROR
        raise
    finally:
        if state == State.STREAMING:  # cancelled, or closed by the client
            state = State.STOPPED
        saving = asyncio.ensure_future(
            in_thread(usage_save)(call, completion, content="".join(parts), state=state, error=error)
        )
        await asyncio.shield(saving)


class _ChunkWriter:
    """Encode chat.completion.chunk events as OpenAI sends them, with the constant part of each event pre-built."""

    def __init__(self, call: ApiCall) -> None:
        head = {"id": call.id, "object": "chat.completion.chunk", "created": call.created, "model": call.model}
        self.head = b"data: " + json.dumps(head).encode()[:-1] + b',"choices":[{"index":0,"delta":'
        self.tail = b',"usage":null}\n\n' if call.include_usage else b"}\n\n"
        self.usage_head = b"data: " + json.dumps(head).encode()[:-1] + b',"choices":[],"usage":'

    def event(self, delta: dict, finish_reason: str | None = None) -> bytes:
        finish = json.dumps(finish_reason).encode()
        return (
            self.head + json.dumps(delta).encode() + b',"logprobs":null,"finish_reason":' + finish + b"}]" + self.tail
        )

    def delta(self, delta: Delta) -> bytes:
        # A thinking model's reasoning goes where DeepSeek, vLLM and OpenRouter clients look for it.
        name = b'{"content":' if delta.kind == "content" else b'{"reasoning_content":'
        return self.head + name + orjson.dumps(delta.text) + b'},"logprobs":null,"finish_reason":null}]' + self.tail

    def usage(self, usage: dict) -> bytes:
        return self.usage_head + json.dumps(usage).encode() + b"}\n\n"


async def _sse(
    call: ApiCall, stream: AsyncGenerator[Delta, None], first: Delta | None, completion: Completion, outlet: Outlet
):
    writer = _ChunkWriter(call)
    parts: list[str] = []

    def pushed(delta: Delta) -> None:
        if delta.kind == "content":
            parts.append(delta.text)
        if write is None or not write(writer.delta(delta)):  # the client is behind: the next ones wait, yielded
            completion.sink = None

    yield writer.event({"role": "assistant", "content": ""})
    write = outlet.write
    try:
        async for delta in _relayed(call, stream, completion, parts, first):
            if delta.kind == "content":
                parts.append(delta.text)
            yield writer.delta(delta)
            if write is not None:  # what follows goes straight from the upstream's reads to the client's socket
                completion.sink = pushed
    except ProviderError as exc:
        # OpenAI ends a failed stream with an error event; the SDK raises APIError on it.
        yield b"data: " + json.dumps(_from_upstream(exc).payload()).encode() + b"\n\n"
        return
    yield writer.event({}, completion.finish_reason or "stop")
    if call.include_usage:
        yield writer.usage(_usage_payload(call, completion, "".join(parts)))
    yield b"data: [DONE]\n\n"


async def _complete(call: ApiCall, stream: AsyncGenerator[Delta, None], completion: Completion) -> JsonResponse:
    content: list[str] = []
    reasoning: list[str] = []

    def collect(delta: Delta) -> None:
        (content if delta.kind == "content" else reasoning).append(delta.text)

    completion.sink = collect  # every read straight from the connection's callback
    try:
        async for delta in _relayed(call, stream, completion, content):
            collect(delta)
    except ProviderError as exc:
        return error_response(_from_upstream(exc))
    message: dict[str, Any] = {"role": "assistant", "content": "".join(content), "refusal": None, "annotations": []}
    if reasoning:
        message["reasoning_content"] = "".join(reasoning)
    body = {
        "id": call.id,
        "object": "chat.completion",
        "created": call.created,
        "model": call.model,
        "choices": [
            {"index": 0, "message": message, "logprobs": None, "finish_reason": completion.finish_reason or "stop"}
        ],
        "usage": _usage_payload(call, completion, message["content"]),
    }
    return JsonResponse(body)


@api_view("POST")
async def chat_completions(request: HttpRequest) -> HttpResponseBase:
    """Create a chat completion with the bearer owner's credential, streamed (SSE) or whole, as OpenAI does."""
    try:
        call = await in_thread(_call_plan)(_bearer_of(request), ratelimit.client_ip(request), request.body)
    except ApiError as exc:
        return error_response(exc)
    completion = Completion(model=call.model)
    stream = stream_chat(call.bearer, model=call.model, messages=call.messages, completion=completion, **call.options)
    if not call.stream:
        return await _complete(call, stream, completion)
    # Wait for the first piece, so a provider that refuses at once gets its own status code, not a 200 stream.
    try:
        first = await anext(stream, None)
    except (ProviderError, asyncio.CancelledError) as exc:
        await stream.aclose()
        error = exc if isinstance(exc, ProviderError) else None
        state = State.ERROR if error else State.STOPPED
        await asyncio.shield(in_thread(usage_save)(call, completion, content="", state=state, error=error))
        if error is None:
            raise
        return error_response(_from_upstream(error))
    outlet = Outlet()
    return EventStreamResponse(_sse(call, stream, first, completion, outlet), outlet)
