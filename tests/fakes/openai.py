"""A fake OpenAI Chat Completions upstream, scripted per test.

The wire format follows OpenAI's published OpenAPI spec: ListModelsResponse,
CreateChatCompletionResponse, CreateChatCompletionStreamResponse (server-sent
events ending in ``data: [DONE]``) and ErrorResponse.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Self

from .server import FakeHandler, FakeServer, RecordedRequest

DEFAULT_MODELS = ["gpt-4o-mini", "gpt-4o"]
DEFAULT_REPLY = "Hello from the fake."
FINGERPRINT = "fp_fake0000"

_MISSING_KEY = (
    "You didn't provide an API key. You need to provide your API key in an "
    "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY). "
    "You can obtain an API key from https://platform.openai.com/account/api-keys."
)
_WRONG_KEY = (
    "Incorrect API key provided: {masked}. You can find your API key at https://platform.openai.com/account/api-keys."
)
# status -> (message, type, code) used when error() is not told otherwise.
_ERROR_DEFAULTS: dict[int, tuple[str, str, str | None]] = {
    400: ("Invalid request.", "invalid_request_error", None),
    401: ("Incorrect API key provided.", "invalid_request_error", "invalid_api_key"),
    403: (
        "You are not allowed to sample from this model.",
        "invalid_request_error",
        None,
    ),
    404: (
        "The model does not exist or you do not have access to it.",
        "invalid_request_error",
        "model_not_found",
    ),
    429: ("Rate limit reached for requests.", "requests", "rate_limit_exceeded"),
    500: (
        "The server had an error while processing your request. Sorry about that!",
        "server_error",
        None,
    ),
    503: (
        "The engine is currently overloaded, please try again later.",
        "server_error",
        None,
    ),
}


@dataclass(frozen=True)
class _Reply:
    text: str
    pieces: tuple[str, ...]
    delay: float = 0.0
    usage: bool = True
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cut_after: int | None = None  # close the socket after this many pieces
    hold_after: int | None = None  # after this many pieces, wait for FakeOpenAI.released


@dataclass(frozen=True)
class _Error:
    status: int
    payload: dict[str, Any]
    headers: dict[str, str]


@dataclass(frozen=True)
class _Hang:
    pass


_Action = _Reply | _Error | _Hang


def split_words(text: str) -> list[str]:
    """Split text into word pieces that keep their whitespace ("Hello ", "world")."""
    return re.findall(r"\s*\S+\s*", text) or ([text] if text else [])


def mask_key(key: str) -> str:
    """Mask a key the way OpenAI's error messages do: ``sk-***...abcd``."""
    if len(key) < 12:
        return "*" * len(key)
    return f"{key[:3]}{'*' * (len(key) - 7)}{key[-4:]}"


def error_payload(message: str, type: str, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


class FakeOpenAI(FakeServer):
    """OpenAI-compatible ``/v1/models`` and ``/v1/chat/completions``."""

    def __init__(
        self,
        *,
        models: list[str] | None = None,
        valid_keys: set[str] | None = None,
        authorize: Callable[[str | None], bool] | None = None,
    ) -> None:
        super().__init__()
        self.models = list(models or DEFAULT_MODELS)
        self.valid_keys = valid_keys
        self.authorize = authorize
        self.default_reply = DEFAULT_REPLY
        self.disconnected = threading.Event()
        self.released = threading.Event()
        self.completed_streams = 0
        self._script: deque[_Action] = deque()

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.route == "/v1/chat/completions"]

    @property
    def pending(self) -> int:
        """Return how many scripted responses are still queued."""
        with self._lock:
            return len(self._script)

    # Scripting: each chat completion request takes the next action in order.

    def reply(
        self,
        text: str,
        *,
        chunks: list[str] | None = None,
        delay: float = 0.0,
        usage: bool = True,
        prompt_tokens: int | None = None,
        completion_tokens: int | None = None,
    ) -> Self:
        pieces = tuple(chunks if chunks is not None else split_words(text))
        return self._push(_Reply(text, pieces, delay, usage, prompt_tokens, completion_tokens))

    def error(
        self,
        status: int,
        message: str | None = None,
        type: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Self:
        fallback_type = "server_error" if status >= 500 else "invalid_request_error"
        default_message, default_type, default_code = _ERROR_DEFAULTS.get(status, ("Error.", fallback_type, None))
        payload = error_payload(message or default_message, type or default_type, code or default_code)
        return self._push(_Error(status, payload, dict(headers or {})))

    def cut(self, text: str, after_chunks: int) -> Self:
        """Stream ``after_chunks`` pieces of ``text``, then close the socket."""
        return self._push(_Reply(text, tuple(split_words(text)), cut_after=after_chunks))

    def hang(self) -> Self:
        """Accept the request and never answer (until close() or the client leaves)."""
        return self._push(_Hang())

    def tokens(self, n: int, delay: float = 0.0, hold_after: int | None = None) -> Self:
        """Stream ``n`` pieces "tok0 ", "tok1 ", ... with ``delay`` between them; with ``hold_after``, stop after
        that many pieces until the test sets ``released`` (so "still streaming" is a state, not a race)."""
        pieces = tuple(f"tok{i} " for i in range(n))
        return self._push(_Reply("".join(pieces), pieces, delay, completion_tokens=n, hold_after=hold_after))

    def _push(self, action: _Action) -> Self:
        with self._lock:
            self._script.append(action)
        return self

    def _next_action(self) -> _Action:
        with self._lock:
            if self._script:
                return self._script.popleft()
        return _Reply(self.default_reply, tuple(split_words(self.default_reply)))

    def on_client_gone(self) -> None:
        self.disconnected.set()

    # Serving.

    def handle(self, http: FakeHandler, request: RecordedRequest) -> None:
        routes = {
            ("GET", "/v1/models"): self._list_models,
            ("POST", "/v1/chat/completions"): self._chat,
        }
        view = routes.get((request.method, request.route.rstrip("/")))
        if view is None:
            message = f"Invalid URL ({request.method} {request.route})"
            self._send(http, 404, error_payload(message, "invalid_request_error"))
        elif not self._authorized(request.bearer):
            self._send(http, 401, self._auth_error(request.bearer))
        else:
            view(http, request)

    def _authorized(self, bearer: str | None) -> bool:
        if self.valid_keys is not None and bearer not in self.valid_keys:
            return False
        if self.authorize is not None:
            return self.authorize(bearer)
        return bearer is not None

    @staticmethod
    def _auth_error(bearer: str | None) -> dict[str, Any]:
        message = _WRONG_KEY.format(masked=mask_key(bearer)) if bearer else _MISSING_KEY
        return error_payload(message, "invalid_request_error", "invalid_api_key")

    def _send(
        self,
        http: FakeHandler,
        status: int,
        payload: dict[str, Any],
        headers: dict[str, str] | None = None,
    ) -> None:
        http.send_json(status, payload, {**_request_id(), **(headers or {})})

    def _list_models(self, http: FakeHandler, request: RecordedRequest) -> None:
        data = [
            {
                "id": model,
                "object": "model",
                "created": 1_700_000_000,
                "owned_by": "openai",
            }
            for model in self.models
        ]
        self._send(http, 200, {"object": "list", "data": data})

    def _chat(self, http: FakeHandler, request: RecordedRequest) -> None:
        try:
            body = request.json()
        except ValueError:
            body = None
        problem = _refusal(body)
        if problem is not None:
            return self._send(http, 400, problem)
        action = self._next_action()
        if isinstance(action, _Error):
            self._send(http, action.status, action.payload, action.headers)
        elif isinstance(action, _Hang):
            http.wait()
            http.drop()
        elif body.get("stream") is True:
            self._stream(http, action, body)
        elif action.cut_after is not None:
            http.drop()  # a cut non-streaming call: the server vanishes, no response
        elif http.wait(action.delay * len(action.pieces)):
            self._send(http, 200, _completion(action, body))

    def _stream(self, http: FakeHandler, reply: _Reply, body: dict[str, Any]) -> None:
        encoder = _ChunkEncoder(reply, body)
        headers = {**_request_id(), "Cache-Control": "no-cache"}
        if not http.start_chunked(200, "text/event-stream; charset=utf-8", headers):
            return
        # Pace against a fixed schedule so per-chunk overhead does not add up.
        started = time.monotonic()
        for index, frame in enumerate(encoder.head()):
            if index == (reply.hold_after or -2) + 1:  # frame 0 is the role frame
                while not self.released.is_set():
                    if not http.wait(0.05):
                        return
                started = time.monotonic() - index * reply.delay
            pause = started + index * reply.delay - time.monotonic()
            if pause > 0 and not http.wait(pause):
                return
            if not http.write_raw(frame):
                return
        if reply.cut_after is not None:
            http.drop()
        elif http.write_raw(encoder.tail()):
            with self._lock:
                self.completed_streams += 1


def _refusal(body: Any) -> dict[str, Any] | None:
    """Return the error the real API gives for a body it refuses, else None."""
    if not isinstance(body, dict):
        message = "We could not parse the JSON body of your request."
        return error_payload(message, "invalid_request_error")
    if not isinstance(body.get("model"), str) or not body["model"]:
        return error_payload("you must provide a model parameter", "invalid_request_error")
    if body.get("stream_options") is not None and body.get("stream") is not True:
        message = "The 'stream_options' parameter is only allowed when 'stream' is enabled."
        return error_payload(message, "invalid_request_error", param="stream_options")
    return None


def _request_id() -> dict[str, str]:
    return {"x-request-id": f"req_{secrets.token_hex(16)}"}


def _usage(reply: _Reply, body: dict[str, Any]) -> dict[str, Any]:
    prompt = reply.prompt_tokens
    if prompt is None:
        prompt = sum(len(text.split()) for text in _message_texts(body))
    completion = reply.completion_tokens
    if completion is None:
        completion = len(reply.text.split())
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _message_texts(body: dict[str, Any]) -> list[str]:
    texts = []
    for message in body.get("messages") or []:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            texts += [str(p.get("text", "")) for p in content if isinstance(p, dict)]
    return texts


def _completion(reply: _Reply, body: dict[str, Any]) -> dict[str, Any]:
    message = {
        "role": "assistant",
        "content": reply.text,
        "refusal": None,
        "annotations": [],
    }
    payload: dict[str, Any] = {
        "id": f"chatcmpl-{secrets.token_hex(12)}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body["model"],
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": "stop"}],
        "service_tier": "default",
        "system_fingerprint": FINGERPRINT,
    }
    if reply.usage:
        payload["usage"] = _usage(reply, body)
    return payload


class _ChunkEncoder:
    """Encode one stream's SSE frames; content frames are filled into a template."""

    _SLOT = "\x00slot\x00"

    def __init__(self, reply: _Reply, body: dict[str, Any]) -> None:
        options = body.get("stream_options")
        self.include_usage = isinstance(options, dict) and options.get("include_usage") is True
        self.reply, self.body = reply, body
        self.base = {
            "id": f"chatcmpl-{secrets.token_hex(12)}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": body["model"],
            "system_fingerprint": FINGERPRINT,
        }
        template = self._data(self._choices({"content": self._SLOT}))
        self.prefix, self.suffix = template.split(json.dumps(self._SLOT).encode())

    def head(self) -> Iterator[bytes]:
        """Yield the role frame, then each content frame (lazily, so TTFT stays flat)."""
        yield self.event({"role": "assistant", "content": ""})
        for piece in self.reply.pieces[: self.reply.cut_after]:
            yield FakeHandler.frame(self.prefix + json.dumps(piece).encode() + self.suffix)

    def tail(self) -> bytes:
        """Return the finish frame, the usage frame if asked for, [DONE], the last chunk."""
        tail = self.event({}, "stop")
        if self.include_usage and self.reply.usage:
            usage = _usage(self.reply, self.body)
            tail += FakeHandler.frame(self._data([], usage=usage))
        return tail + FakeHandler.frame(b"data: [DONE]\n\n") + FakeHandler.LAST_CHUNK

    def event(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        return FakeHandler.frame(self._data(self._choices(delta, finish)))

    @staticmethod
    def _choices(delta: dict[str, Any], finish: str | None = None) -> list[dict[str, Any]]:
        return [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]

    def _data(self, choices: list[dict[str, Any]], **extra: Any) -> bytes:
        payload = {**self.base, "choices": choices, **extra}
        if self.include_usage:
            payload.setdefault("usage", None)
        return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"
