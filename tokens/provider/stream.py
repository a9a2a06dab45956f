"""Streamed chat completions over the shared httpx.AsyncClient, read incrementally.

Server-sent events (WHATWG HTML "Server-sent events" 9.2.6) are split from the bytes as they arrive
(`EventSplitter`) and each event's JSON is parsed from bytes by orjson, so a hostile upstream costs linear CPU;
every read is bounded in time and every event, reply and error body in size. The stream ends where the protocol
says: at `data: [DONE]`, or UPSTREAM_TAIL_SECONDS of silence after a finish_reason (some servers hold the
connection open), not only when the socket closes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import aclosing, suppress
from dataclasses import dataclass, field
from functools import partial
from typing import NamedTuple

import httpx
import orjson
from django.conf import settings
from django.utils.translation import gettext as _

from project.threads import in_thread
from tokens.http1 import ResponseBody, pushable, raw_body
from tokens.provider import client
from tokens.provider.encoding import decompressor, inflated
from tokens.provider.endpoint import Bearer
from tokens.provider.errors import ProviderError, error_from_body, error_in_stream
from tokens.provider.usage import normalise_usage
from tokens.ssrf import UnsafeURL

logger = logging.getLogger(__name__)

RESENDS = 2
ERROR_BODY_BYTES = 64 * 1024


class Delta(NamedTuple):
    """A piece of the reply: kind "content" or "reasoning" (a thinking model's visible reasoning)."""

    kind: str
    text: str


@dataclass
class Completion:
    """What the stream told us besides text; filled in while streaming.

    usage: normalised {prompt_tokens, completion_tokens, reasoning_tokens, total_tokens} or None if not
    sent. started / first_token_at: time.perf_counter() values. notes: what we did that the person
    should know (translated), e.g. older turns dropped after a context-length refusal.
    """

    model: str
    status_code: int | None = None
    request_id: str = ""
    response_id: str | None = None
    usage: dict | None = None
    finish_reason: str | None = None
    started: float = field(default_factory=time.perf_counter)
    first_token_at: float | None = None
    attempts: int = 0
    dropped_stream_options: bool = False
    trimmed_turns: int = 0
    renewed_bearer: bool = False
    notes: list[str] = field(default_factory=list)
    # Reasoning inside the content between <think> tags (Ollama, vLLM without a reasoning parser, DeepSeek-R1
    # distills on Together or Groq): THINK_UNSEEN until the first content, then THINK_INSIDE, THINK_AFTER (the
    # blank lines after </think>) or THINK_NONE.
    think: int = 0
    think_blank: str = ""  # blank content before the first word, held until we know whether <think> follows
    # Set by the consumer: the deltas of the reads that follow go to sink(delta) as they arrive, from the
    # connection's callback, instead of being yielded (see _read_events); None: yielded again from the next read.
    sink: Callable[[Delta], None] | None = field(default=None, repr=False)


Renew = Callable[[Bearer, ProviderError, str], Awaitable[Bearer | None]]

THINK_UNSEEN, THINK_INSIDE, THINK_AFTER, THINK_NONE = 0, 1, 2, 3
# finish_reason spellings that mean OpenAI's "length" or "stop" (Anthropic-style and Gemini-style gateways, TGI).
_FINISH = {
    "max_tokens": "length",
    "max_output_tokens": "length",
    "model_length": "length",
    "end_turn": "stop",
    "eos": "stop",
    "eos_token": "stop",
    "stop_sequence": "stop",
    "safety": "content_filter",
    "recitation": "content_filter",
}


def _payload(model: str, messages: list[dict], stream_options: bool, options: dict) -> bytes:
    body = {"model": model, "messages": messages, "stream": True, **options}
    if stream_options:
        body["stream_options"] = {"include_usage": True}
    return json.dumps(body).encode()


async def stream_chat(
    bearer: Bearer,
    *,
    model: str,
    messages: list[dict],
    completion: Completion,
    trim_on_overflow: bool = False,
    renew: Renew | None = None,
    **options: object,
) -> AsyncGenerator[Delta, None]:
    """Yield Delta(kind, text) pieces of one chat completion as they arrive; raise ProviderError.

    Sends one request. It is re-sent only when the provider certainly did not start: the connection
    failed before the request went out, or it answered 502/503/504 (up to RESENDS times). Never after
    a timeout. Before any output it also retries once: without `stream_options` if the provider
    refuses that field (recorded on the credential); with a renewed bearer after a 401 (`renew`,
    default tokens.services.bearer_rejected); with older turns dropped after a context-length
    refusal when `trim_on_overflow`. After output has started, a failure raises kind "cut" (or the
    provider's own error) and the text so far stays with the caller.
    """
    renew = renew or _renew_default
    stream_options, retried = bearer.stream_options, set()
    resends = 0
    while True:
        completion.attempts += 1
        body = _payload(model, messages, stream_options, options)
        try:
            async with aclosing(_attempt(bearer, model, body, completion)) as deltas:
                async for delta in deltas:
                    yield delta
            return
        except ProviderError as exc:
            failure = exc
        if completion.first_token_at is not None:
            raise failure
        if failure.kind == "unsupported_param" and stream_options and "stream_options" not in retried:
            retried.add("stream_options")
            stream_options, completion.dropped_stream_options = False, True
            await _forget_stream_options(bearer)
            continue
        if failure.kind == "auth" and "auth" not in retried:
            retried.add("auth")
            renewed = await renew(bearer, failure, model)
            if renewed is not None:
                bearer, completion.renewed_bearer = renewed, True
                continue
        if failure.kind == "context_length" and trim_on_overflow and "trim" not in retried:
            retried.add("trim")
            trimmed, dropped = trim_for_overflow(messages, failure.provider_message)
            if dropped:
                messages, completion.trimmed_turns = trimmed, dropped
                completion.notes.append(
                    _("The model's window was smaller than the conversation: the oldest %(n)s turns were left out.")
                    % {"n": dropped}
                )
                continue
        if failure.kind == "forbidden":
            await _report(bearer, failure, model)
        if not failure.resendable or resends >= RESENDS:
            raise failure
        resends += 1
        wait = min(failure.retry_after or 0, 10) or 0.25 * 2**resends + random.uniform(0, 0.25)
        await asyncio.sleep(wait)


async def _attempt(bearer: Bearer, model: str, body: bytes, completion: Completion) -> AsyncGenerator[Delta, None]:
    loop = asyncio.get_running_loop()
    start = loop.time()
    first_deadline = start + settings.UPSTREAM_FIRST_TOKEN_TIMEOUT
    end = start + settings.UPSTREAM_MAX_SECONDS
    headers = {
        **bearer.headers(),
        "Content-Type": "application/json",
        "Accept": "text/event-stream, application/json",
        "Accept-Encoding": "identity",
    }
    try:
        request = client.post(bearer.chat_url(model), body, headers)
    except (UnicodeEncodeError, httpx.InvalidURL) as exc:
        raise ProviderError(
            "bad_request", _("The credential or base URL holds characters that cannot be sent; enter it again.")
        ) from exc
    try:
        async with asyncio.timeout_at(min(first_deadline, end)):
            response = await client.send(request, bearer.guarded)
    except TimeoutError as exc:
        raise _timeout_error() from exc
    except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
        # The request never left: a re-send cannot bill twice.
        raise ProviderError(
            "connection", _("Could not connect to the provider. Try again in a moment."), resendable=True
        ) from exc
    except httpx.HTTPError as exc:
        raise ProviderError("connection", _("The connection to the provider failed. Try again.")) from exc
    except UnsafeURL as exc:
        raise ProviderError("unsafe_url", _("Refused to connect: %(reason)s") % {"reason": exc}) from exc
    try:
        completion.status_code = response.status_code
        completion.request_id = (response.headers.get("x-request-id") or response.headers.get("apim-request-id", ""))[
            :100
        ]
        raw, source = raw_body(response), pushable(response)
        encoding = response.headers.get("content-encoding")
        if encoding:  # a CDN that compressed anyway
            decoder = decompressor(encoding)
            if decoder is not None:
                raw, source = inflated(raw, decoder), None
        if response.status_code >= 400:
            body = await _read_capped(raw, ERROR_BODY_BYTES, first_deadline)
            raise error_from_body(
                response.status_code, body, headers=response.headers, model=model, secret=bearer.token
            )
        if response.status_code >= 300:  # never followed: the target could be anywhere, the guard's included
            raise ProviderError(
                "bad_response",
                _("The provider redirected the request (%(status)s). Enter the address it redirects to.")
                % {"status": response.status_code},
                status=response.status_code,
            )
        content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
        head = b""
        if content_type not in ("text/event-stream", "application/x-ndjson", ""):
            # Some gateways label an event stream application/json or text/plain: look at what came first.
            head = await _read_capped(raw, settings.UPSTREAM_MAX_EVENT_BYTES, first_deadline, first_only=True)
            if not _SSE_START.match(head):
                if content_type != "application/json":
                    raise ProviderError(
                        "bad_response",
                        _("The provider answered with %(type)s instead of a chat completion. Check the base URL.")
                        % {"type": content_type[:60]},
                    )
                body = head + await _read_capped(raw, settings.UPSTREAM_MAX_REPLY_BYTES - len(head), end)
                for delta in _completion_from_json(body, completion, bearer, model):
                    yield delta
                return
        reader = _read_events(raw, head, completion, bearer, model, first_deadline, end, None if head else source)
        async with aclosing(reader) as deltas:
            async for delta in deltas:
                yield delta
    finally:
        await response.aclose()


def _timeout_error() -> ProviderError:
    return ProviderError("timeout", _("The provider did not answer in time. Try again in a moment."))


# The start of a server-sent event stream (after an optional byte order mark and blank lines).
_SSE_START = re.compile(rb"^(\xef\xbb\xbf)?\s*(data|event|id|retry|error)?:")


async def _read_capped(raw: AsyncIterator[bytes], limit: int, deadline: float, *, first_only: bool = False) -> bytes:
    """Read a whole (error or JSON) body, refusing more than `limit` bytes or past `deadline`; with
    `first_only`, just the first non-empty read."""
    parts: list[bytes] = []
    size = 0
    try:
        while True:
            async with asyncio.timeout_at(deadline):
                chunk = await anext(raw, None)
            if chunk is None:
                return b"".join(parts)
            size += len(chunk)
            if size > limit:
                raise ProviderError("too_large", _("The provider's answer was too large to read."))
            if first_only and chunk:
                return chunk
            parts.append(chunk)
    except TimeoutError as exc:
        raise _timeout_error() from exc
    except httpx.HTTPError as exc:
        raise ProviderError("connection", _("The connection to the provider failed. Try again.")) from exc


class _ReadWatch:
    """Cancel the task while it waits on a read past `deadline`: like asyncio.timeout_at, but one timer per
    period instead of one per read (asyncio.timeout_at costs about 5 µs a read; the chat budget is 100 µs a
    chunk end to end). Moving the deadline is an assignment; the timer re-arms itself when it fires early."""

    def __init__(self, deadline: float) -> None:
        self.loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        if task is None:  # a read outside any task: every caller of ours runs in one (asyncio's or uvloop's)
            raise RuntimeError("_ReadWatch needs a running task")
        self.task = task
        self.deadline, self.reading, self.fired = deadline, False, False
        self.handle = self.loop.call_at(deadline, self._check)

    def _check(self) -> None:
        now = self.loop.time()
        if now < self.deadline:
            self.handle = self.loop.call_at(self.deadline, self._check)
        elif self.reading:
            self.fired = True
            self.task.cancel()
        else:  # the consumer holds us, not the network: look again once a read has started
            self.handle = self.loop.call_at(now + 0.05, self._check)

    def expired(self) -> bool:
        """After a CancelledError: was it ours? If so, take it back so the task is not left cancelled."""
        if self.fired and self.task.uncancel() == 0:
            self.fired = False
            return True
        return False

    def close(self) -> None:
        self.handle.cancel()


class _EventReader:
    """The synchronous half of reading an event stream: `feed(bytes)` -> the deltas in it, with the caps checked
    and the read deadline moved. `done` once `data: [DONE]` came; `error` (a ProviderError) once the stream failed,
    after the deltas that came before the failure in the same read."""

    def __init__(self, completion: Completion, bearer: Bearer, model: str, watch: _ReadWatch, end: float) -> None:
        self.completion, self.bearer, self.model, self.watch, self.end = completion, bearer, model, watch, end
        self.events = EventSplitter()
        self.total = self.chars = 0
        # Read once: each read of a Django setting goes through LazySettings' __getattribute__ (5 % of a relay).
        self.max_event, self.max_bytes = settings.UPSTREAM_MAX_EVENT_BYTES, settings.UPSTREAM_MAX_REPLY_BYTES
        self.max_chars = settings.UPSTREAM_MAX_REPLY_CHARS
        self.idle, self.tail = settings.UPSTREAM_READ_TIMEOUT, settings.UPSTREAM_TAIL_SECONDS
        self.done = False
        self.error: ProviderError | None = None

    def feed(self, chunk: bytes) -> list[Delta]:
        completion = self.completion
        self.total += len(chunk)
        found = self.events.feed(chunk)
        if self.events.pending > self.max_event or self.total > self.max_bytes:
            self.error = _cut_or(completion, ProviderError("too_large", _("The provider sent more than we accept.")))
            return []
        deltas: list[Delta] = []
        try:
            for name, data in found:
                if data == b"[DONE]":
                    self.done = True
                    return deltas
                for delta in _apply(_json(data, name), name, completion, self.bearer, self.model):
                    self.chars += len(delta.text)
                    if self.chars > self.max_chars:
                        self.error = _cut_or(
                            completion, ProviderError("too_large", _("The reply is longer than we accept."))
                        )
                        return deltas
                    deltas.append(delta)
        except ProviderError as exc:
            self.error = exc
            return deltas
        if completion.finish_reason is not None:
            # Done but for the usage chunk and [DONE]; some servers then hold the connection open.
            self.watch.deadline = min(self.end, self.watch.loop.time() + self.tail)
        elif completion.first_token_at is not None:
            self.watch.deadline = min(self.end, self.watch.loop.time() + self.idle)
        return deltas

    def push(self, sink: Callable[[Delta], None], chunk: bytes) -> bool:
        """`ResponseBody.pushed`'s handler: each delta to `sink`; True once no more should be pushed (the stream is done
        or failed, or the consumer took its sink back)."""
        for delta in self.feed(chunk):
            sink(delta)
        return self.done or self.error is not None or self.completion.sink is not sink


async def _read_events(
    raw: AsyncIterator[bytes],
    head: bytes,
    completion: Completion,
    bearer: Bearer,
    model: str,
    first_deadline: float,
    end: float,
    body: ResponseBody | None = None,
) -> AsyncGenerator[Delta, None]:
    """Yield the deltas of an event stream; `head` is what was already read of it. While `completion.sink` is set
    and `body` can push its reads, the deltas go to the sink from the connection's callback instead."""
    watch = _ReadWatch(min(first_deadline, end))
    reader = _EventReader(completion, bearer, model, watch, end)
    if head:
        raw = _prepend(head, raw)
    chunk: bytes | None
    try:
        while True:
            watch.reading = True
            try:
                sink = completion.sink
                if sink is not None and body is not None and not body.ended:
                    await body.pushed(partial(reader.push, sink))
                    chunk = b""  # all read so far went to the sink
                else:
                    chunk = await anext(raw, None)
            except asyncio.CancelledError:
                if not watch.expired():
                    raise
                if completion.finish_reason is not None:
                    return  # finished; the usage chunk and [DONE] did not come
                raise _cut_or(completion, _timeout_error()) from None
            watch.reading = False
            if chunk is None:
                break
            for delta in reader.feed(chunk) if chunk else ():
                yield delta
            if reader.error is not None:
                raise reader.error
            if reader.done:
                await _finish_body(raw)
                if completion.first_token_at is None and completion.finish_reason is None:
                    # [DONE] with nothing before it: an empty success would hide the failure.
                    raise ProviderError("cut", _("The provider ended the stream before the reply started."))
                return
    except httpx.HTTPError as exc:
        if completion.finish_reason is None:
            raise _cut_or(completion, ProviderError("connection", _("The connection to the provider broke."))) from exc
        return
    finally:
        watch.close()
    if completion.finish_reason is None:
        raise _cut_or(completion, ProviderError("cut", _("The provider ended the stream before the reply started.")))


async def _prepend(head: bytes, raw: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    yield head
    async for chunk in raw:
        yield chunk


# The body's last chunk follows [DONE] at once, usually in the same read; a server that holds the connection open
# after it is not waited for longer than this.
BODY_END_SECONDS = 0.05
BODY_END_BYTES = 4096


async def _finish_body(raw: AsyncIterator[bytes]) -> None:
    """Read the little that follows `data: [DONE]` up to the end of the response body, so that httpcore puts the
    connection back in its pool: it keeps only connections whose response was read to the end, and without this
    every reply opened a new TCP (and TLS) connection. Gives up after BODY_END_SECONDS or BODY_END_BYTES; the
    connection is then closed, as before."""
    left = BODY_END_BYTES
    with suppress(TimeoutError, httpx.HTTPError):
        async with asyncio.timeout(BODY_END_SECONDS):
            while left > 0:
                chunk = await anext(raw, None)
                if chunk is None:
                    return
                left -= len(chunk)


def _cut_or(completion: Completion, error: ProviderError) -> ProviderError:
    """After some text, any failure is a cut reply (partial text kept); before, the error itself."""
    if completion.first_token_at is None:
        return error
    cut = ProviderError(
        "cut",
        _("The provider stopped sending before the reply was finished."),
        status=completion.status_code,
    )
    cut.__cause__ = error
    return cut


class EventSplitter:
    """Split server-sent events out of bytes as they arrive: `feed(bytes)` returns [(event name, data)] (bytes).

    Lines end in LF, CRLF or CR; a blank line dispatches; `data` lines are joined with LF, an event without data is
    dropped, comments and other fields are ignored (WHATWG HTML 9.2.6). `pending` is the size of the event still
    incomplete, for the caller's cap.
    """

    def __init__(self) -> None:
        self._rest = b""

    @property
    def pending(self) -> int:
        return len(self._rest)

    def feed(self, chunk: bytes) -> list[tuple[bytes, bytes]]:
        if (
            not self._rest
            and chunk.startswith(b"data: ")
            and chunk.endswith(b"\n\n")
            and chunk.find(b"\n") == len(chunk) - 2
            and b"\r" not in chunk
        ):  # the usual read: one whole event of one data line
            return [(b"", chunk[6:-2])]
        text = self._rest + chunk if self._rest else chunk
        if b"\r" in text:
            # A CR at the end may be half of a CRLF split between reads: keep it raw until the next one.
            tail = b"\r" if text.endswith(b"\r") else b""
            text = text[: len(text) - len(tail)].replace(b"\r\n", b"\n").replace(b"\r", b"\n") + tail
        *blocks, self._rest = text.split(b"\n\n")
        events = []
        for block in blocks:
            if block.startswith(b"data: ") and b"\n" not in block:  # the usual shape, one data line
                events.append((b"", block[6:]))
                continue
            name, data = b"", []
            for line in block.split(b"\n"):
                field, _colon, value = line.partition(b":")
                if value[:1] == b" ":
                    value = value[1:]
                if field[:3] == b"\xef\xbb\xbf":  # a byte order mark before the first field (WHATWG: dropped)
                    field = field[3:]
                if field == b"data":
                    data.append(value)
                elif field == b"event":
                    name = value
                elif field == b"error":  # llama.cpp's server sends `error: {json}` for a failure mid-stream
                    name, data = b"error", [value]
            if data:
                events.append((name, b"\n".join(data)))
        return events


def _json(data: bytes, event_name: bytes = b"") -> object:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        pass
    text = data.decode("utf-8", "replace")
    try:  # orjson refuses invalid UTF-8; read it as the text it mostly is
        return json.loads(text)
    except ValueError:
        pass
    chunks = _concatenated(text)
    if chunks:
        return chunks
    if event_name == b"error":  # `event: error` with the provider's words as plain text
        return {"error": {"message": text[:2000]}}
    logger.debug("skipped a non-JSON event")
    return None


_DECODER = json.JSONDecoder()


def _concatenated(text: str) -> list[dict] | None:
    """Several chunks in one event's data, back to back or one per line (Azure OpenAI did this, openai-python
    issue 663): the list of them, or None unless the whole text is such objects."""
    chunks, index, end = [], 0, len(text)
    try:
        while index < end:
            value, index = _DECODER.raw_decode(text, index)
            if not isinstance(value, dict):
                return None
            chunks.append(value)
            while index < end and text[index] in " \t\r\n":
                index += 1
    except ValueError:
        return None
    return chunks if len(chunks) > 1 else None


def _apply(chunk: object, event_name: bytes, completion: Completion, bearer: Bearer, model: str) -> list[Delta]:
    if not isinstance(chunk, dict):
        if isinstance(chunk, list):  # chunks back to back in one event, or Gemini's [{"error": ...}]
            return [d for one in chunk if isinstance(one, dict) for d in _apply(one, b"", completion, bearer, model)]
        return []
    if "error" in chunk or event_name == b"error":
        raise error_in_stream(chunk, model=model, secret=bearer.token)
    completion.response_id = completion.response_id or _text(chunk.get("id"), 200)
    if chunk.get("usage"):
        completion.usage = normalise_usage(chunk["usage"]) or completion.usage
    deltas: list[Delta] = []
    choices = chunk.get("choices")
    if not choices and chunk.get("object") == "error":  # vLLM's error event: {"object": "error", "message": ...}
        raise error_in_stream(chunk, model=model, secret=bearer.token)
    for choice in choices or ():
        if not isinstance(choice, dict):
            continue
        delta = choice.get("delta") or choice.get("message") or {}
        if not delta and isinstance(choice.get("text"), str):  # a completions-style choice (some local servers)
            delta = {"content": choice["text"]}
        if isinstance(delta, dict):
            reasoning = delta.get("reasoning_content") or delta.get("reasoning")
            if reasoning and isinstance(reasoning, str):
                deltas.append(Delta("reasoning", reasoning))
            elif reasoning is None and "reasoning_details" in delta:
                deltas += _reasoning_details(delta["reasoning_details"])
            content = delta.get("content")
            if content and isinstance(content, str):
                if completion.think == THINK_NONE:
                    deltas.append(Delta("content", content))
                else:
                    deltas += _think_tags(content, completion)
            elif isinstance(content, list):
                deltas += _content_parts(content)
            elif not content and isinstance(delta.get("refusal"), str) and delta["refusal"]:
                deltas.append(Delta("content", delta["refusal"]))  # OpenAI: the model declined, in its own words
        finish = choice.get("finish_reason")
        if finish:
            if finish == "error":  # OpenRouter: the upstream failed mid-reply
                raise error_in_stream(chunk.get("error") or {"message": ""}, model=model, secret=bearer.token)
            finish = _text(finish, 40)
            completion.finish_reason = _FINISH.get(finish.lower(), finish) if finish else None
    if deltas and completion.first_token_at is None:
        completion.first_token_at = time.perf_counter()
    return deltas


def _reasoning_details(details: object) -> list[Delta]:
    """OpenRouter's and MiniMax's `reasoning_details`: [{"type": "reasoning.text" | "reasoning.summary", "text" |
    "summary": ...}]; encrypted entries carry no readable text and are skipped."""
    deltas = []
    for detail in details if isinstance(details, list) else ():
        if isinstance(detail, dict):
            text = detail.get("text") or detail.get("summary")
            if text and isinstance(text, str):
                deltas.append(Delta("reasoning", text))
    return deltas


def _content_parts(parts: list) -> list[Delta]:
    """Content as a list of parts: {"type": "text", "text"} and Mistral Magistral's {"type": "thinking",
    "thinking": [{"type": "text", "text"}]}."""
    deltas = []
    for part in parts:
        if not isinstance(part, dict):
            continue
        if part.get("type") == "thinking":
            inner = part.get("thinking")
            if isinstance(inner, str) and inner:
                deltas.append(Delta("reasoning", inner))
            elif isinstance(inner, list):
                deltas += [Delta("reasoning", d.text) for d in _content_parts(inner)]
        elif isinstance(part.get("text"), str) and part["text"]:
            deltas.append(Delta("content", part["text"]))
    return deltas


def _think_tags(content: str, completion: Completion) -> list[Delta]:
    """Split reasoning a model writes into its content between <think> and </think> (a reply that starts with
    <think>, as DeepSeek-R1 distills and Qwen3 do through Ollama or vLLM; each tag is one token, so one chunk)."""
    stripped = content.lstrip()
    if completion.think == THINK_AFTER:
        completion.think = THINK_AFTER if not stripped else THINK_NONE
        return [Delta("content", stripped)] if stripped else []
    if completion.think == THINK_UNSEEN:
        if not stripped:
            completion.think_blank += content[:1000]  # wait to see whether <think> comes
            return []
        if not stripped.startswith("<think>"):
            completion.think = THINK_NONE
            return [Delta("content", completion.think_blank + content)]
        completion.think, content = THINK_INSIDE, stripped[len("<think>") :]
    end = content.find("</think>")
    if end < 0:
        return [Delta("reasoning", content)] if content else []
    completion.think = THINK_NONE
    thought, answer = content[:end], content[end + len("</think>") :].lstrip()
    deltas = [Delta("reasoning", thought)] if thought else []
    if answer:
        deltas.append(Delta("content", answer))
    else:
        completion.think = THINK_AFTER
    return deltas


def _completion_from_json(raw: bytes, completion: Completion, bearer: Bearer, model: str) -> list[Delta]:
    """A provider that answers stream: true with one JSON completion (some proxies and local servers)."""
    try:
        payload = json.loads(raw)
    except ValueError as exc:
        raise ProviderError("bad_response", _("The provider sent a reply that could not be read.")) from exc
    if isinstance(payload, dict) and "error" in payload:
        raise error_in_stream(payload, model=model, secret=bearer.token)
    deltas = _apply(payload, b"", completion, bearer, model)
    if not deltas and completion.finish_reason is None:
        if isinstance(payload, dict) and ("detail" in payload or "message" in payload):  # a 200 with only an error
            raise error_in_stream(payload, model=model, secret=bearer.token)
        raise ProviderError("bad_response", _("The provider's answer held no reply."))
    completion.finish_reason = completion.finish_reason or "stop"
    return deltas


def _text(value: object, limit: int) -> str | None:
    return value[:limit] if isinstance(value, str) else None


async def _renew_default(bearer: Bearer, error: ProviderError, model: str) -> Bearer | None:
    from tokens.services import bearer_rejected

    return await in_thread(bearer_rejected)(bearer=bearer, status=error.status or 401, model=model)


async def _report(bearer: Bearer, error: ProviderError, model: str) -> None:
    from tokens.services import bearer_rejected

    await in_thread(bearer_rejected)(bearer=bearer, status=error.status or 403, model=model)


async def _forget_stream_options(bearer: Bearer) -> None:
    from tokens.services import bearer_learned

    await in_thread(bearer_learned)(bearer=bearer, stream_options=False)


def trim_for_overflow(messages: list[dict], provider_message: str) -> tuple[list[dict], int]:
    """Drop the oldest turns (keeping the system prompt and the last turn) after a context-length refusal.

    When the provider names its limit and our count ("maximum context length is 8192 tokens ... resulted in
    10500 tokens", OpenAI and vLLM wording), drop enough turns to fit that ratio with room to answer; otherwise
    drop the older half.
    """
    system = messages[:1] if messages and messages[0].get("role") == "system" else []
    turns = messages[len(system) :]
    if len(turns) <= 1:
        return messages, 0
    numbers = [int(n) for n in re.findall(r"(\d{3,7}) tokens", provider_message)]
    sizes = [len(json.dumps(turn)) for turn in turns]
    keep_share = 0.5
    if len(numbers) >= 2 and max(numbers[:2]) > 0:
        keep_share = max(0.1, min(numbers[:2]) / max(numbers[:2]) * 0.75)
    budget, kept_from, total = sum(sizes) * keep_share, len(turns) - 1, sizes[-1]
    for index in range(len(turns) - 2, -1, -1):
        if total + sizes[index] > budget:
            break
        total, kept_from = total + sizes[index], index
    dropped = max(1, kept_from)
    return system + turns[dropped:], dropped
