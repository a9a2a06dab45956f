"""Provider personalities: one local server that behaves like a given real provider, deviations included.

Each personality is taken from the provider's own documentation and from bug reports in LibreChat,
Open WebUI and LiteLLM (see the README's provider compatibility table):

- openai: /v1, Bearer, {"object": "list", "data": [{"id"}]}, usage only with stream_options, [DONE].
- azure_classic: /openai/deployments/{deployment}/chat/completions?api-version=..., `api-key` header,
  models at /openai/models?api-version=..., deployment names as model ids.
- azure_v1: /openai/v1/..., `api-key` header, model = deployment name.
- deepseek: `delta.reasoning_content` before `delta.content`; usage.completion_tokens_details.reasoning_tokens.
- openrouter: /api/v1, `delta.reasoning`, ": OPENROUTER PROCESSING" comments, errors inside a 200 stream
  ({"error": {"code": 402, "message": ...}}), ids like "openai/gpt-4o" and "deepseek/deepseek-r1:free".
- ollama: /v1 on a bare host:11434, native /api/tags list {"models": [{"name", "model"}]}.
- together: /v1/models answers a bare JSON array.
- strict: refuses unknown fields (400 naming stream_options), never sends usage.
- slow_thinker: accepts, says nothing for `think_seconds`, then reasons and answers (reasoning models, model loading).
- hostile: whatever `hostile` is set to: endless_line, huge_reply, trickle_models, cookie, endless_reasoning.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

from .server import FakeHandler, FakeServer, RecordedRequest


@dataclass(frozen=True)
class Personality:
    name: str
    prefix: str = "/v1"
    auth_header: str = "authorization"
    models: tuple[str, ...] = ("gpt-4o-mini", "gpt-4o")
    models_shape: str = "openai"  # openai | bare | ollama
    reasoning_field: str = ""  # reasoning_content | reasoning
    usage: str = "on_request"  # on_request | never | always
    strict: bool = False
    azure_classic: bool = False
    comments: bool = False
    think_seconds: float = 0.0
    hostile: str = ""
    hostile_pause: float = 0.0  # between 64 KB pieces of a hostile stream; 0 = as fast as the socket takes


PERSONALITIES = {
    p.name: p
    for p in (
        Personality("openai"),
        Personality("azure_classic", prefix="", auth_header="api-key", models=("gpt4o",), azure_classic=True),
        Personality("azure_v1", prefix="/openai/v1", auth_header="api-key", models=("gpt4o", "o4-mini-prod")),
        Personality("deepseek", models=("deepseek-chat", "deepseek-reasoner"), reasoning_field="reasoning_content"),
        Personality(
            "openrouter",
            prefix="/api/v1",
            models=("openai/gpt-4o", "deepseek/deepseek-r1:free"),
            reasoning_field="reasoning",
            usage="always",
            comments=True,
        ),
        Personality("ollama", models=("llama3.2:latest", "qwen3:8b"), models_shape="ollama"),
        Personality("together", models=("meta-llama/Llama-3.3-70B-Instruct-Turbo",), models_shape="bare"),
        Personality("strict", usage="never", strict=True),
        Personality("slow_thinker", models=("o3",), reasoning_field="reasoning_content", think_seconds=1.0),
        Personality("hostile", hostile="endless_line"),
    )
}


@dataclass
class Reply:
    """One scripted answer to a chat request."""

    text: str = "Hello there."
    reasoning: str = ""
    finish: str = "stop"
    status: int = 200
    error: dict | None = None  # an error payload: HTTP body if status >= 400, else sent inside the stream
    json_body: bool = False  # answer stream: true with one application/json completion
    hold_after_done: bool = False  # keep the connection open after [DONE]
    hold_after_reasoning: bool = False  # wait for `release` between the reasoning and the answer
    think_seconds: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    usage: Any = None  # sent as the usage object instead of honest counts (NaN, strings, ...), when set
    # Sent verbatim instead of a scripted reply: the body (chunked; a list is written piece by piece, as separate
    # reads) with `status`, `content_type` and `headers`, so a test can put any wire shape a real server sends.
    raw: bytes | list[bytes] | None = None
    content_type: str = "text/event-stream"


class FakeProvider(FakeServer):
    """A provider personality on 127.0.0.1; chat requests take scripted Replies, else a default one."""

    def __init__(self, personality: str | Personality, *, key: str = "sk-personality-key-0001", **changes: Any):
        super().__init__()
        base = PERSONALITIES[personality] if isinstance(personality, str) else personality
        self.personality = replace(base, **changes)
        self.key = key
        self.script: deque[Reply] = deque()
        self.release = threading.Event()  # lets a hostile stream end when the test says so
        self.client_left = threading.Event()
        self.sent_bytes = 0
        self.models_reply: Reply | None = None  # a raw answer to GET models (see Reply.raw), when set

    @property
    def base_url(self) -> str:
        """What the provider's docs tell people to paste."""
        if self.personality.name == "ollama":
            return self.url  # Ollama's docs show http://localhost:11434
        return f"{self.url}{self.personality.prefix}"

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.method == "POST" and r.route.endswith("/chat/completions")]

    def then(self, **reply: Any) -> Self:
        self.script.append(Reply(**reply))
        return self

    def on_client_gone(self) -> None:
        self.client_left.set()

    # Serving.

    def handle(self, http: FakeHandler, request: RecordedRequest) -> None:
        p = self.personality
        route = request.route.rstrip("/")
        if not self._authorized(request):
            return self._error(http, 401, "Incorrect API key provided.", "invalid_api_key")
        query = parse_qs(urlsplit(request.path).query)
        if p.azure_classic and not query.get("api-version"):
            return self._error(http, 404, "Resource not found", "404")
        if request.method == "GET" and route in (f"{p.prefix}/models", "/openai/models", "/api/tags"):
            return self._models(http, route)
        if request.method == "POST" and self._is_chat(route):
            return self._chat(http, request)
        self._error(http, 404, f"Invalid URL ({request.method} {request.route})", None)

    def _is_chat(self, route: str) -> bool:
        if self.personality.azure_classic:
            parts = route.split("/")
            return route.startswith("/openai/deployments/") and parts[-2:] == ["chat", "completions"]
        return route == f"{self.personality.prefix}/chat/completions"

    def _authorized(self, request: RecordedRequest) -> bool:
        if self.personality.auth_header == "api-key":
            return request.headers.get("api-key") == self.key
        return request.bearer == self.key

    def _error(self, http: FakeHandler, status: int, message: str, code: Any, **extra: Any) -> None:
        error = {"message": message, "type": "invalid_request_error", "param": None, "code": code, **extra}
        http.send_json(status, {"error": error}, {"x-request-id": f"req_{secrets.token_hex(8)}"})

    def _models(self, http: FakeHandler, route: str) -> None:
        p = self.personality
        if self.models_reply is not None:
            return self._raw(http, self.models_reply)
        if p.hostile == "trickle_models":
            return self._trickle(http)
        if route == "/api/tags" or p.models_shape == "ollama":
            payload: Any = {"models": [{"name": m, "model": m, "size": 1} for m in p.models]}
            if route != "/api/tags":  # Ollama's /v1/models is OpenAI-shaped
                payload = {
                    "object": "list",
                    "data": [{"id": m, "object": "model", "owned_by": "library"} for m in p.models],
                }
        elif p.models_shape == "bare":
            payload = [{"id": m, "object": "model", "type": "chat"} for m in p.models]
        else:
            payload = {"object": "list", "data": [{"id": m, "object": "model", "owned_by": p.name} for m in p.models]}
        headers = {"Set-Cookie": f"session={secrets.token_hex(8)}; Path=/"} if p.hostile == "cookie" else {}
        http.send_json(200, payload, headers)

    def _trickle(self, http: FakeHandler) -> None:
        body = json.dumps({"data": [{"id": "gpt-4o"}]}).encode() + b" " * 4000
        http.send_response(200)
        http.send_header("Content-Type", "application/json")
        http.send_header("Content-Length", str(len(body)))
        if not http._flush_headers():
            return
        for index in range(len(body)):
            if not http.write_raw(body[index : index + 1]) or not http.wait(0.05):
                return

    def _chat(self, http: FakeHandler, request: RecordedRequest) -> None:
        p = self.personality
        try:
            body = request.json()
        except ValueError:
            return self._error(http, 400, "We could not parse the JSON body of your request.", None)
        if p.strict and "stream_options" in body:
            message = "Unrecognized request argument supplied: stream_options"
            return self._error(http, 400, message, None, param="stream_options")
        reply = self.script.popleft() if self.script else Reply(think_seconds=p.think_seconds)
        if reply.raw is not None:
            return self._raw(http, reply)
        if reply.status >= 400:
            return http.send_json(reply.status, reply.error or {"error": {"message": "error"}}, reply.headers)
        if p.hostile and p.hostile not in ("cookie", "trickle_models"):
            return self._hostile(http)
        model = body.get("model", "")
        if reply.json_body or not body.get("stream"):
            return http.send_json(200, self._completion(reply, model, body))
        self._stream(http, reply, model, body)

    def _raw(self, http: FakeHandler, reply: Reply) -> None:
        if not http.start_chunked(reply.status, reply.content_type, reply.headers):
            return
        for piece in [reply.raw] if isinstance(reply.raw, bytes) else reply.raw or []:
            if piece and not http.write_raw(FakeHandler.frame(piece)):
                return
        http.write_raw(FakeHandler.LAST_CHUNK)

    def _usage(self, reply: Reply, body: dict) -> Any:
        if reply.usage is not None:
            return reply.usage
        prompt = sum(len(str(m.get("content", "")).split()) for m in body.get("messages", []))
        reasoning = len(reply.reasoning.split())
        completion = len(reply.text.split()) + reasoning
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "completion_tokens_details": {"reasoning_tokens": reasoning},
        }

    def _completion(self, reply: Reply, model: str, body: dict) -> dict:
        message = {"role": "assistant", "content": reply.text}
        if reply.reasoning and self.personality.reasoning_field:
            message[self.personality.reasoning_field] = reply.reasoning
        return {
            "id": f"chatcmpl-{secrets.token_hex(8)}",
            "object": "chat.completion",
            "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": reply.finish}],
            "usage": self._usage(reply, body),
        }

    def _stream(self, http: FakeHandler, reply: Reply, model: str, body: dict) -> None:
        p = self.personality
        if not http.start_chunked(200, "text/event-stream", {"x-request-id": "req_personality", **reply.headers}):
            return
        base = {"id": f"chatcmpl-{secrets.token_hex(8)}", "object": "chat.completion.chunk", "model": model}

        def event(payload: dict) -> bool:
            data = b"data: " + json.dumps({**base, **payload}).encode() + b"\n\n"
            return http.write_raw(FakeHandler.frame(data))

        def delta(values: dict, finish: str | None = None) -> bool:
            return event({"choices": [{"index": 0, "delta": values, "finish_reason": finish}]})

        if not self._think(http, reply.think_seconds):
            return
        delta({"role": "assistant", "content": ""})
        reasoning = reply.reasoning or ("Thinking it over." if p.reasoning_field else "")
        if reasoning and p.reasoning_field:
            for word in reasoning.split(" "):
                delta({p.reasoning_field: word + " ", "content": None if p.name == "deepseek" else ""})
        if reply.hold_after_reasoning and not self.release.wait(30):
            return
        for word in reply.text.split(" ")[:-1]:
            delta({"content": word + " "})
        last = reply.text.split(" ")[-1]
        if reply.error is not None:  # OpenRouter: an error inside the 200 stream, after any text so far
            event({"error": reply.error.get("error", reply.error), "choices": []})
            http.write_raw(FakeHandler.LAST_CHUNK)
            return
        delta({"content": last}, reply.finish)
        wants_usage = (body.get("stream_options") or {}).get("include_usage")
        if p.usage == "always" or (p.usage == "on_request" and wants_usage):
            event({"choices": [], "usage": self._usage(reply, body)})
        http.write_raw(FakeHandler.frame(b"data: [DONE]\n\n"))
        if reply.hold_after_done:
            self.release.wait(30)
        http.write_raw(FakeHandler.LAST_CHUNK)

    def _think(self, http: FakeHandler, seconds: float) -> bool:
        """Say nothing (or only SSE comments, like OpenRouter) for `seconds`."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if self.personality.comments and not http.write_raw(FakeHandler.frame(b": OPENROUTER PROCESSING\n\n")):
                return False
            if not http.wait(min(left, 0.2)):
                return False
        return True

    def _hostile(self, http: FakeHandler) -> None:
        """Stream junk until the client leaves or the test releases it; count what was sent."""
        mode = self.personality.hostile
        if not http.start_chunked(200, "text/event-stream", {"Set-Cookie": "tracker=1; Path=/"}):
            return
        if mode == "endless_line":
            piece = FakeHandler.frame(b"data: " + b"x" * 65_530)
        elif mode == "endless_reasoning":
            one = b'data: {"choices":[{"index":0,"delta":{"reasoning_content":"' + b"y" * 60_000 + b'"}}]}\n\n'
            piece = FakeHandler.frame(one)
        else:  # huge_reply: valid content events without end
            one = b'data: {"choices":[{"index":0,"delta":{"content":"' + b"z" * 60_000 + b'"}}]}\n\n'
            piece = FakeHandler.frame(one)
        while not self.release.is_set():
            if not http.write_raw(piece):
                return
            with self._lock:
                self.sent_bytes += len(piece)
            if self.personality.hostile_pause and not http.wait(self.personality.hostile_pause):
                return
        http.write_raw(FakeHandler.LAST_CHUNK)
