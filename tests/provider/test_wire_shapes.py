"""Wire shapes real providers and proxies send that the personalities do not: event-stream variants, reasoning and
content in other fields, finish_reason spellings, error shapes, odd statuses and wait hints. Each case is sent
verbatim by the fake provider (Reply.raw) over a real local HTTP connection."""

from __future__ import annotations

import gzip
import json
import socket
import threading
import zlib
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from tests.fakes.providers import FakeProvider, Reply
from tests.provider.conftest import bearer_for_fake, run_stream
from tokens.provider import Bearer, ProviderError, list_models

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("delivery")]


def event(payload: dict | list) -> bytes:
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


def chunk(delta: dict, finish: str | None = None) -> bytes:
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    return event({"id": "chatcmpl-1", "object": "chat.completion.chunk", "choices": [choice]})


DONE = b"data: [DONE]\n\n"
PLAIN = [
    chunk({"role": "assistant", "content": ""}),
    chunk({"content": "Hello "}),
    chunk({"content": "there."}, "stop"),
]

# (wire pieces, content type, expected content, expected reasoning)
STREAM_SHAPES = {
    # WHATWG: a byte order mark before the first field is dropped; the first event used to be lost with it.
    "bom": (
        [b"\xef\xbb\xbf" + chunk({"content": "Hello "}), *PLAIN[2:], DONE],
        "text/event-stream",
        "Hello there.",
        "",
    ),
    # OpenRouter and MiniMax: reasoning as an array of details, with no `reasoning` string beside it.
    "reasoning_details": (
        [chunk({"reasoning_details": [{"type": "reasoning.text", "text": "Weighing it. "}]}), *PLAIN, DONE],
        "text/event-stream",
        "Hello there.",
        "Weighing it. ",
    ),
    # DeepSeek-R1 distills and Qwen3 through Ollama, vLLM without a reasoning parser, Together, Groq (raw format).
    "think_tags": (
        [
            *[chunk({"content": "<think>"}), chunk({"content": "\nWeighing it.\n"}), chunk({"content": "</think>"})],
            *[chunk({"content": "\n\n"}), *PLAIN[1:], DONE],
        ],
        "text/event-stream",
        "Hello there.",
        "\nWeighing it.\n",
    ),
    "think_tags_in_one_chunk": (
        [chunk({"content": "<think>Weighing it.</think>\n\nHello there."}, "stop"), DONE],
        "text/event-stream",
        "Hello there.",
        "Weighing it.",
    ),
    # Mistral's Magistral: content as a list of parts, thinking in its own part.
    "content_parts": (
        [
            chunk({"content": [{"type": "thinking", "thinking": [{"type": "text", "text": "Weighing it."}]}]}),
            *[chunk({"content": [{"type": "text", "text": "Hello there."}]}, "stop"), DONE],
        ],
        "text/event-stream",
        "Hello there.",
        "Weighing it.",
    ),
    # OpenAI: a declined request has its words in delta.refusal and content null.
    "refusal": (
        [chunk({"content": None, "refusal": "I can't help with that."}, "stop"), DONE],
        "",
        "I can't help with that.",
        "",
    ),
    # Two chunks back to back in one event's data (Azure OpenAI, openai-python issue 663), or one per data line.
    "chunks_back_to_back": (
        [PLAIN[0], b"data: " + PLAIN[1][6:-2] + PLAIN[2][6:-2] + b"\n\n", DONE],
        "text/event-stream",
        "Hello there.",
        "",
    ),
    "chunks_one_per_data_line": (
        [PLAIN[0], b"data: " + PLAIN[1][6:-2] + b"\ndata: " + PLAIN[2][6:-2] + b"\n\n", DONE],
        "text/event-stream",
        "Hello there.",
        "",
    ),
    # Completions-style choices ({"text"}) from some local servers.
    "choice_text": (
        [event({"choices": [{"index": 0, "text": "Hello there.", "finish_reason": "stop"}]}), DONE],
        "",
        "Hello there.",
        "",
    ),
    # Gateways that label an event stream application/json, text/plain or octet-stream.
    "sse_labelled_json": ([*PLAIN, DONE], "application/json", "Hello there.", ""),
    "sse_labelled_text_plain": ([*PLAIN, DONE], "text/plain; charset=utf-8", "Hello there.", ""),
    "sse_labelled_octet_stream": ([*PLAIN, DONE], "application/octet-stream", "Hello there.", ""),
}


@pytest.mark.parametrize("shape", list(STREAM_SHAPES))
def test_it_reads_every_event_stream_shape(shape, local):
    wire, content_type, expected_content, expected_reasoning = STREAM_SHAPES[shape]
    with FakeProvider("openai") as fake:
        fake.then(raw=wire, content_type=content_type or "text/event-stream")
        content, reasoning, completion, error = run_stream(bearer_for_fake(fake))
    assert error is None
    assert (content, reasoning) == (expected_content, expected_reasoning)
    assert completion.finish_reason == "stop"


def test_it_still_refuses_a_web_page_for_a_chat_completion(local):
    with FakeProvider("openai") as fake:
        fake.then(raw=[b"<!doctype html><html><body>Open WebUI</body></html>"], content_type="text/html")
        _content, _reasoning, _completion, error = run_stream(bearer_for_fake(fake))
    assert error.kind == "bad_response" and "text/html" in error.message


@pytest.mark.parametrize(
    ("sent", "meant"),
    [
        ("max_tokens", "length"),  # Anthropic-style gateways
        ("MAX_TOKENS", "length"),  # Gemini-style
        ("eos_token", "stop"),  # Hugging Face TGI
        ("end_turn", "stop"),
        ("SAFETY", "content_filter"),
        ("tool_calls", "tool_calls"),  # OpenAI's own names are kept
    ],
)
def test_it_reads_every_spelling_of_finish_reason(sent, meant, local):
    with FakeProvider("openai") as fake:
        fake.then(raw=[chunk({"content": "Cut short"}, sent), DONE])
        content, _reasoning, completion, error = run_stream(bearer_for_fake(fake))
    assert error is None and content == "Cut short"
    assert completion.finish_reason == meant


# (wire pieces, content type, the provider's words, kind)
ERRORS_IN_A_200 = {
    # `event: error` whose data is plain text, after some text.
    "event_error_plain_text": (
        [chunk({"content": "Partial "}), b"event: error\ndata: Model crashed: out of memory\n\n"],
        "text/event-stream",
        "Model crashed: out of memory",
        "server",
    ),
    # llama.cpp's server: an `error:` field instead of `data:`.
    "llama_cpp_error_field": (
        [
            chunk({"content": "Partial "}),
            b'error: {"code":500,"message":"context shift is disabled","type":"server_error"}\n\n',
        ],
        "text/event-stream",
        "context shift is disabled",
        "server",
    ),
    # vLLM: {"object": "error", ...} as an event, then [DONE]; it used to end as an empty success.
    "vllm_object_error": (
        [
            event(
                {"object": "error", "message": "The model ran out of KV cache", "type": "BadRequestError", "code": 400}
            ),
            DONE,
        ],
        "text/event-stream",
        "The model ran out of KV cache",
        "bad_request",
    ),
    # Gemini's OpenAI-compatible endpoint: an array around the error.
    "gemini_array_in_stream": (
        [chunk({"content": "Partial "}), event([{"error": {"code": 429, "message": "Resource has been exhausted"}}])],
        "text/event-stream",
        "Resource has been exhausted",
        "rate_limit",
    ),
    # A 200 JSON answer that is only an error, FastAPI-style or vLLM-style.
    "json_detail": (
        [json.dumps({"detail": "Model is still loading"}).encode()],
        "application/json",
        "Model is still loading",
        "server",
    ),
    "json_vllm": (
        [json.dumps({"object": "error", "message": "KV cache full", "code": 503}).encode()],
        "application/json",
        "KV cache full",
        "server",
    ),
}


@pytest.mark.parametrize("shape", list(ERRORS_IN_A_200))
def test_it_shows_the_providers_words_for_every_error_shape_in_a_200(shape, local):
    wire, content_type, words, kind = ERRORS_IN_A_200[shape]
    with FakeProvider("openai") as fake:
        fake.then(raw=wire, content_type=content_type)
        content, _reasoning, _completion, error = run_stream(bearer_for_fake(fake))
        assert len(fake.chat_requests) == 1
    assert error is not None and error.kind == kind and words in error.message
    assert content == ("Partial " if b"Partial" in wire[0] else "")  # text before the error is kept


def test_it_fails_a_stream_that_says_done_and_nothing_else(local):
    with FakeProvider("openai") as fake:
        fake.then(raw=[b": keep-alive\n\n", DONE])
        content, _reasoning, _completion, error = run_stream(bearer_for_fake(fake))
    assert content == "" and error is not None and error.kind == "cut"


# (status, content type, body, kind, the provider's words or "")
ERROR_ANSWERS = {
    # Gemini's OpenAI-compatible endpoint answers errors as a one-element array.
    "gemini_array": (
        400,
        "application/json",
        json.dumps([{"error": {"code": 400, "message": "API key not valid.", "status": "INVALID_ARGUMENT"}}]),
        "bad_request",
        "API key not valid.",
    ),
    # Cloudflare's and nginx's error pages: the title says what happened.
    "cloudflare_520": (
        520,
        "text/html",
        "<!DOCTYPE html><html><head><title>api.example.com | 520: Web server is returning an unknown error</title>"
        "</head><body><p>" + "x" * 3000 + "</p></body></html>",
        "server",
        "520: Web server is returning an unknown error",
    ),
    "nginx_413": (
        413,
        "text/html",
        "<html><head><title>413 Request Entity Too Large</title></head><body><center>nginx</center></body></html>",
        "context_length",
        "413 Request Entity Too Large",
    ),
    # Cloudflare's bot check in front of an API: a web page, not the provider refusing the model.
    "cloudflare_403_challenge": (
        403,
        "text/html",
        "<!DOCTYPE html><html><head><title>Just a moment...</title></head><body>Checking your browser</body></html>",
        "forbidden",
        "firewall or proxy",
    ),
    "timeout_408": (408, "application/json", json.dumps({"error": {"message": "Request timed out"}}), "timeout", ""),
    "redirect_301": (301, "text/html", "<html>Moved</html>", "bad_response", ""),
    "redirect_307_empty": (307, "", "", "bad_response", ""),
}


@pytest.mark.parametrize("shape", list(ERROR_ANSWERS))
def test_it_classifies_every_error_answer_shape(shape, local):
    status, content_type, body, kind, words = ERROR_ANSWERS[shape]
    # A redirect is never followed, whatever it points at.
    headers = {"Location": "http://169.254.169.254/latest/meta-data/"} if 300 <= status < 400 else {}
    with FakeProvider("openai") as fake:
        fake.then(raw=[body.encode()], status=status, content_type=content_type, headers=headers)
        _content, _reasoning, _completion, error = run_stream(bearer_for_fake(fake))
        assert len(fake.chat_requests) == 1
    assert error.kind == kind and error.status == status
    assert words in error.message and str(status) in error.message
    if shape == "cloudflare_403_challenge":  # the page's title, and no blame on the model
        assert "Just a moment" in error.message and "gpt-4o-mini" not in error.message


def _in(seconds: int) -> str:
    return format_datetime(datetime.now(UTC) + timedelta(seconds=seconds), usegmt=True)


@pytest.mark.parametrize(
    ("headers", "low", "high"),
    [
        ({"Retry-After": "30"}, 30, 30),
        ({"Retry-After": "@in 120"}, 100, 121),  # an HTTP-date (RFC 9110 10.2.3)
        ({"x-ratelimit-reset-requests": "1m30s"}, 90, 90),  # OpenAI's Go durations
        ({"x-ratelimit-reset-requests": "2m59.56s"}, 180, 180),  # Groq's
        ({"x-ratelimit-reset-requests": "20ms"}, 1, 1),
        (
            {
                "x-ratelimit-remaining-tokens": "0",
                "x-ratelimit-reset-tokens": "6m0s",
                "x-ratelimit-reset-requests": "1s",
            },
            360,
            360,
        ),
        ({"retry-after-ms": "1500"}, 2, 2),
    ],
    ids=["seconds", "http_date", "duration", "fractional_duration", "milliseconds", "spent_tokens", "retry_after_ms"],
)
def test_it_reads_every_wait_hint(headers, low, high, local):
    headers = {k: _in(int(v.split()[1])) if v.startswith("@in") else v for k, v in headers.items()}
    with FakeProvider("openai") as fake:
        fake.then(
            status=429,
            error={"error": {"message": "Rate limit reached", "code": "rate_limit_exceeded"}},
            headers=headers,
        )
        _content, _reasoning, _completion, error = run_stream(bearer_for_fake(fake))
    assert error.kind == "rate_limit" and low <= error.retry_after <= high
    assert f"{error.retry_after} s" in error.message


def test_it_shows_thinking_written_in_think_tags_apart_from_the_answer(asgi_server, provider):
    from chat.models import Message
    from tests.streaming import logged_in_session, send

    provider.then(
        raw=[
            *[chunk({"content": "<think>"}), chunk({"content": "Two and two."}), chunk({"content": "</think>\n\n"})],
            *[chunk({"content": "Four."}, "stop"), DONE],
        ]
    )
    session = logged_in_session(asgi_server.url, "alice")
    events = send(session, asgi_server.url, "/chat/send/", "Two plus two?")
    assert events.done["state"] == "complete"
    assert events.text == "Four." and "".join(events.reasoning) == "Two and two."
    message = Message.objects.get(pk=events.start["assistant_message"])
    assert (message.content, message.reasoning) == ("Four.", "Two and two.")
    page = session.get(f"{asgi_server.url}/chat/{events.start['conversation']}/").text
    assert "data-reasoning" in page and "&lt;think&gt;" not in page


MODEL_LIST = json.dumps({"object": "list", "data": [{"id": "gpt-4o"}, {"id": "qwen2.5:7b"}]}).encode()
# 64 MB of spaces: about 64 KB compressed.
BOMB = gzip.compress(b" " * (64 * 1024 * 1024), compresslevel=9)

# (body, Content-Encoding, the ids or the error kind)
COMPRESSED_LISTS = {
    "gzip": (gzip.compress(MODEL_LIST), "gzip", ["gpt-4o", "qwen2.5:7b"]),
    "gzip_unlabelled": (gzip.compress(MODEL_LIST), "", ["gpt-4o", "qwen2.5:7b"]),  # some Cloudflare edges
    "deflate": (zlib.compress(MODEL_LIST), "deflate", ["gpt-4o", "qwen2.5:7b"]),
    "bomb": (BOMB, "gzip", "too_large"),
    "brotli": (b"\x1b\x00\x00", "br", "bad_response"),
    "broken_gzip": (b"\x1f\x8b" + b"\x00" * 40, "gzip", "bad_response"),
}


@pytest.mark.parametrize("shape", list(COMPRESSED_LISTS))
def test_it_reads_a_model_list_compressed_against_our_asking(shape, local):
    body, coding, expected = COMPRESSED_LISTS[shape]
    headers = {"Content-Encoding": coding} if coding else {}
    with FakeProvider("openai") as fake:
        pieces = [body[i : i + 8192] for i in range(0, len(body), 8192)]
        fake.models_reply = Reply(raw=pieces, content_type="application/json", headers=headers)
        if isinstance(expected, list):
            assert list_models(bearer_for_fake(fake)) == expected
        else:
            with pytest.raises(ProviderError) as caught:
                list_models(bearer_for_fake(fake))
            assert caught.value.kind == expected and caught.value.message


@pytest.mark.parametrize("shape", ["gzip", "deflate", "bomb"])
def test_it_reads_a_stream_compressed_against_our_asking(shape, local, settings):
    settings.UPSTREAM_MAX_EVENT_BYTES = 1024 * 1024
    wire = b"".join([*PLAIN, DONE])
    body = {"gzip": gzip.compress(wire), "deflate": zlib.compress(wire), "bomb": BOMB}[shape]
    with FakeProvider("openai") as fake:
        coding = "deflate" if shape == "deflate" else "gzip"
        fake.then(raw=[body[i : i + 4096] for i in range(0, len(body), 4096)], headers={"Content-Encoding": coding})
        content, _reasoning, completion, error = run_stream(bearer_for_fake(fake))
    if shape == "bomb":
        assert error.kind == "too_large"
    else:
        assert (content, error, completion.finish_reason) == ("Hello there.", None, "stop")


def test_it_reads_a_compressed_error_body(local):
    body = gzip.compress(json.dumps({"error": {"message": "Insufficient credits", "code": 402}}).encode())
    with FakeProvider("openai") as fake:
        fake.then(raw=[body], status=402, content_type="application/json", headers={"Content-Encoding": "gzip"})
        _content, _reasoning, _completion, error = run_stream(bearer_for_fake(fake))
    assert error.kind == "payment" and "Insufficient credits" in error.message


INFORMATIONAL = {
    "early_hints_103": b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n",  # CDNs
    "processing_102": b"HTTP/1.1 102 Processing\r\n\r\n",
    "continue_100": b"HTTP/1.1 100 Continue\r\n\r\n",
}


@pytest.fixture
def informational_server():
    """A server that answers every request with an informational response, then the real one."""
    server = socket.create_server(("127.0.0.1", 0))
    answers: dict[str, bytes] = {}

    def serve() -> None:
        while True:
            try:
                connection, _ = server.accept()
            except OSError:
                return
            with connection:
                connection.recv(65536)
                body, content_type = answers["body"], answers["type"]
                head = b"HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %d\r\n" % (content_type, len(body))
                connection.sendall(answers["first"] + head + b"Connection: close\r\n\r\n" + body)

    threading.Thread(target=serve, daemon=True).start()
    yield answers, f"http://127.0.0.1:{server.getsockname()[1]}/v1"
    server.close()


@pytest.mark.parametrize("first", list(INFORMATIONAL))
def test_it_reads_the_answer_after_an_informational_response(first, informational_server, local):
    answers, base_url = informational_server
    bearer = Bearer("", base_url, "sk-informational-0001", guarded=True)
    answers.update(first=INFORMATIONAL[first], body=MODEL_LIST, type=b"application/json")
    assert list_models(bearer) == ["gpt-4o", "qwen2.5:7b"]
    answers.update(body=b"".join([*PLAIN, DONE]), type=b"text/event-stream")
    content, _reasoning, _completion, error = run_stream(bearer)
    assert (content, error) == ("Hello there.", None)
