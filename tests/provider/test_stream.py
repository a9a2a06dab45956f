"""stream_chat against provider personalities: replies, reasoning, endings, errors, retries."""

from __future__ import annotations

import asyncio
import json

import pytest

from tests.fakes.providers import FakeProvider
from tests.provider.conftest import bearer_for_fake, run_stream
from tokens.provider import Completion, stream_chat

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("delivery")]

CHATTY = ["openai", "azure_classic", "azure_v1", "deepseek", "openrouter", "ollama", "together", "strict"]


@pytest.mark.parametrize("name", CHATTY)
def test_it_streams_a_reply_from_every_personality(name, local):
    with FakeProvider(name) as fake:
        model = fake.personality.models[0]
        content, reasoning, completion, error = run_stream(bearer_for_fake(fake), model)
    assert error is None
    assert content == "Hello there."
    assert completion.finish_reason == "stop"
    if fake.personality.reasoning_field:
        assert reasoning == "Thinking it over. "
    if fake.personality.usage == "never":
        assert completion.usage is None  # counted locally by the caller
    else:
        assert completion.usage["completion_tokens"] > 0
    assert fake.chat_requests[-1].json()["model"] == model


def test_it_counts_reasoning_tokens_in_usage(local):
    with FakeProvider("deepseek") as fake:
        fake.then(text="Four.", reasoning="two plus two is four")
        content, reasoning, completion, _error = run_stream(bearer_for_fake(fake), "deepseek-reasoner")
    assert (content, reasoning.strip()) == ("Four.", "two plus two is four")
    assert completion.usage["reasoning_tokens"] == 5


# What json.loads makes of numbers providers really send, and of broken or hostile ones.
ODD_NUMBERS = [float("nan"), float("inf"), -float("inf"), -5, 1e300, 10**40, 2.5, "12", True, None, [], {"n": 1}]


@pytest.mark.parametrize("number", ODD_NUMBERS, ids=repr)
def test_it_reads_any_usage_numbers_without_failing_the_reply(number, local):
    odd = {"prompt_tokens": number, "completion_tokens": number, "total_tokens": number}
    odd["completion_tokens_details"] = {"reasoning_tokens": number}
    with FakeProvider("openai") as fake:
        fake.then(text="Still here.", usage=odd)
        content, _reasoning, completion, error = run_stream(bearer_for_fake(fake))
    assert error is None and content == "Still here." and completion.finish_reason == "stop"
    assert completion.usage is None  # nothing sane in it: the caller counts locally


def test_it_keeps_the_sane_half_of_usage(local):
    with FakeProvider("openai") as fake:
        fake.then(usage={"prompt_tokens": 7.0, "completion_tokens": float("nan"), "total_tokens": -1})
        _content, _reasoning, completion, error = run_stream(bearer_for_fake(fake))
    assert error is None
    assert completion.usage == {
        "prompt_tokens": 7,
        "completion_tokens": None,
        "reasoning_tokens": None,
        "total_tokens": None,
    }


@pytest.mark.parametrize("number", [float("nan"), float("inf"), -3, "9", True], ids=repr)
def test_it_writes_exactly_one_usage_row_whatever_the_numbers(number, asgi_server, alice, local):
    from chat.models import UsageRecord
    from tests.conftest import credential_create
    from tests.streaming import logged_in_session, send

    with FakeProvider("openai") as fake:
        credential_create(alice, fake.key, base_url=fake.base_url)
        fake.then(text="Counted.", usage={"prompt_tokens": number, "completion_tokens": number})
        session = logged_in_session(asgi_server.url, "alice")
        events = send(session, asgi_server.url, "/chat/send/", "Count me")
    assert events.done["state"] == "complete" and events.text == "Counted."
    row = UsageRecord.objects.get()  # exactly one
    assert row.is_estimated and row.prompt_tokens > 0 and row.completion_tokens > 0
    assert row.total_tokens == row.prompt_tokens + row.completion_tokens


def test_it_waits_for_a_slow_thinker_without_sending_twice(local, settings):
    settings.UPSTREAM_READ_TIMEOUT = 0.2  # the idle gap once a reply runs; the first token may take longer
    settings.UPSTREAM_FIRST_TOKEN_TIMEOUT = 30
    with FakeProvider("slow_thinker") as fake:
        content, reasoning, _completion, error = run_stream(bearer_for_fake(fake), "o3")
    assert error is None and content == "Hello there." and reasoning
    assert len(fake.chat_requests) == 1


def test_it_gives_up_on_a_silent_provider_after_the_first_token_wait_only_once(local, settings):
    settings.UPSTREAM_FIRST_TOKEN_TIMEOUT = 1.5
    with FakeProvider("slow_thinker", think_seconds=10) as fake:
        _content, _reasoning, _completion, error = run_stream(bearer_for_fake(fake), "o3")
    assert error.kind == "timeout"
    assert len(fake.chat_requests) == 1  # never re-sent after a timeout: it may be generating (and billing)


def test_it_keeps_comments_from_counting_as_a_reply(local, settings):
    settings.UPSTREAM_FIRST_TOKEN_TIMEOUT = 30
    with FakeProvider("openrouter", think_seconds=0.6) as fake:
        content, _reasoning, _completion, error = run_stream(bearer_for_fake(fake), "openai/gpt-4o")
    assert error is None and content == "Hello there."


@pytest.mark.parametrize("finish", ["length", "content_filter"])
def test_it_reports_the_finish_reason(finish, local):
    with FakeProvider("openai") as fake:
        fake.then(text="Cut short", finish=finish)
        _content, _, completion, error = run_stream(bearer_for_fake(fake))
    assert error is None and completion.finish_reason == finish


def test_it_shows_a_json_completion_sent_to_a_stream_request(local):
    with FakeProvider("deepseek") as fake:
        fake.then(text="Whole answer.", reasoning="quietly", json_body=True)
        content, reasoning, completion, error = run_stream(bearer_for_fake(fake), "deepseek-chat")
    assert (content, reasoning, error) == ("Whole answer.", "quietly", None)
    assert completion.usage["total_tokens"] > 0 and completion.finish_reason == "stop"


def test_it_ends_at_done_even_if_the_socket_stays_open(local):
    with FakeProvider("openai") as fake:
        fake.then(text="Done here.", hold_after_done=True)
        content, _, _completion, error = run_stream(bearer_for_fake(fake))
        assert fake.release.is_set() is False  # the provider still holds the connection open
        fake.release.set()
    assert (content, error) == ("Done here.", None)


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        *[(402, "payment"), (401, "auth"), (403, "forbidden"), (429, "rate_limit"), ("server_error", "server")],
        # A status as a string; digits int() refuses ("²" passes str.isdigit()), or too many for it.
        *[("402", "payment"), ("²", "server"), ("9" * 5000, "server")],
    ],
    ids=lambda value: repr(value)[:12],
)
def test_it_classifies_an_error_inside_a_200_stream_and_keeps_the_text(code, kind, local):
    with FakeProvider("openrouter") as fake:
        error = {"code": code, "message": "Insufficient credits. Add more using https://openrouter.ai/credits"}
        fake.then(text="Partial answer here", error={"error": error})
        content, _, _completion, exc = run_stream(bearer_for_fake(fake), "openai/gpt-4o")
    assert content == "Partial answer "  # everything before the error, including the same read
    assert exc.kind == kind
    assert "Insufficient credits" in exc.message  # the provider's own words, as plain text
    assert len(fake.chat_requests) == 1  # never re-sent


def test_it_caps_the_providers_words_and_masks_secrets(local):
    secret = "sk-proj-" + "a" * 40
    with FakeProvider("openrouter") as fake:
        bearer = bearer_for_fake(fake)
        message = f"<b>Bad</b> key {bearer.token} or {secret}\n\x1b[31m" + "x" * 2000
        fake.then(text="", error={"error": {"code": 400, "message": message}})
        _, _, _, exc = run_stream(bearer, "openai/gpt-4o")
    assert bearer.token not in exc.message and secret not in exc.message
    assert len(exc.provider_message) <= 300 and "\x1b" not in exc.message and "\n" not in exc.message


def test_it_retries_once_without_stream_options_for_a_strict_provider(local):
    with FakeProvider("strict") as fake:
        content, _, completion, _error = run_stream(bearer_for_fake(fake))
    assert content == "Hello there." and completion.dropped_stream_options
    first, second = (r.json() for r in fake.chat_requests)
    assert "stream_options" in first and "stream_options" not in second


def test_it_does_not_send_stream_options_once_refused(local):
    with FakeProvider("strict") as fake:
        content, _, _completion, _error = run_stream(bearer_for_fake(fake, stream_options=False))
    assert content == "Hello there." and len(fake.chat_requests) == 1


@pytest.mark.parametrize("status", [502, 503, 504])
def test_it_resends_when_the_provider_certainly_did_not_start(status, local):
    with FakeProvider("openai") as fake:
        fake.then(status=status, error={"error": {"message": "upstream unavailable"}})
        content, _, _completion, _error = run_stream(bearer_for_fake(fake))
    assert content == "Hello there." and len(fake.chat_requests) == 2


@pytest.mark.parametrize("status", [401, 402, 403, 429, 500])
def test_it_never_resends_refusals_or_errors_that_may_have_started(status, local):
    with FakeProvider("openai") as fake:
        fake.then(status=status, error={"error": {"message": "no"}}).then(status=status, error={"error": {}})
        _, _, _, error = run_stream(bearer_for_fake(fake), renew=_no_renewal)
    assert error is not None and len(fake.chat_requests) == 1


async def _no_renewal(bearer, error, model):
    return None


def test_it_retries_a_401_once_with_a_renewed_bearer(local):
    with FakeProvider("openai", key="fresh-token-0002") as fake:
        stale = bearer_for_fake(fake, key="stale-token-0001")

        async def renew(bearer, error, model):
            return bearer_for_fake(fake)

        content, _, completion, _error = run_stream(stale, renew=renew)
    assert content == "Hello there." and completion.renewed_bearer
    assert [r.bearer for r in fake.chat_requests] == ["stale-token-0001", "fresh-token-0002"]


def test_it_trims_and_retries_once_after_a_context_length_error(local):
    long_history = [{"role": "system", "content": "Be brief."}]
    for n in range(10):
        long_history += [{"role": "user", "content": f"question {n} " * 50}, {"role": "assistant", "content": "ok"}]
    long_history.append({"role": "user", "content": "And now?"})
    message = "This model's maximum context length is 1000 tokens. However, your messages resulted in 2000 tokens."
    with FakeProvider("openai") as fake:
        fake.then(status=400, error={"error": {"message": message, "code": "context_length_exceeded"}})
        content, _, completion, _error = run_stream(bearer_for_fake(fake), messages=long_history, trim_on_overflow=True)
    assert content == "Hello there." and completion.trimmed_turns > 0 and completion.notes
    sent = fake.chat_requests[-1].json()["messages"]
    assert sent[0] == long_history[0] and sent[-1] == long_history[-1]
    assert len(json.dumps(sent)) < len(json.dumps(long_history)) * 0.6


def test_it_does_not_trim_for_programs(local):
    with FakeProvider("openai") as fake:
        fake.then(status=400, error={"error": {"message": "too long", "code": "context_length_exceeded"}})
        _, _, _, error = run_stream(bearer_for_fake(fake), messages=[{"role": "user", "content": "a"}] * 3)
    assert error.kind == "context_length" and len(fake.chat_requests) == 1


@pytest.mark.parametrize("split", [1, 2, 3, 7, 1000])
def test_it_splits_events_whatever_the_reads_and_line_endings(split):
    from tokens.provider.stream import EventSplitter

    wire = (
        b": a comment\r\n\r\n"
        b"data: one\r\n\r\n"
        b"event: reasoning\rdata: two\rdata:three\r\r"
        b"id: 4\nretry: 10\ndata\n\n"
        b"event: empty\n\n"
        b'data: {"x": 1}\n\n'
        b"data: incomplete"
    )
    splitter, events = EventSplitter(), []
    for start in range(0, len(wire), split):
        events += splitter.feed(wire[start : start + split])
    assert events == [(b"", b"one"), (b"reasoning", b"two\nthree"), (b"", b""), (b"", b'{"x": 1}')]
    assert splitter.pending == len(b"data: incomplete")


@pytest.mark.parametrize(
    "read",
    [b'data: {"x": 1}\n\n', b"data:  two spaces\n\n", b"data: [DONE]\n\n", b"data: a\ndata: b\n\n", b"data: a\r\n\r\n"],
)
def test_a_read_of_one_whole_event_splits_as_any_other(read):
    from tokens.provider.stream import EventSplitter

    byte_by_byte = EventSplitter()
    expected = [event for i in range(len(read)) for event in byte_by_byte.feed(read[i : i + 1])]
    assert EventSplitter().feed(read) == expected


def test_it_reuses_the_connection_for_the_next_reply(local):
    # The reader stops at [DONE]; unless the body is read to its end, httpcore drops the connection and every
    # reply pays a new TCP and TLS handshake.
    async def three_replies(bearer):
        for _ in range(3):
            completion = Completion(model="gpt-4o-mini")
            messages = [{"role": "user", "content": "Hello?"}]
            text = [
                d.text async for d in stream_chat(bearer, model="gpt-4o-mini", messages=messages, completion=completion)
            ]
            assert "".join(text) == "Hello there." and completion.finish_reason == "stop"

    with FakeProvider("openai") as fake:
        asyncio.run(three_replies(bearer_for_fake(fake)))
        assert len(fake.chat_requests) == 3
        assert fake.connections_accepted == 1
