"""Property-based fuzz of every route of the URLconf and of the /v1/ API: never a 500, never a half-written row.

Each route is asked with random and hostile query strings (GET) and form fields (POST) by an anonymous visitor,
a person and staff; the field names are those of every form of our apps plus random ones, the values random text
(control characters, NUL, huge, unicode) or known-hostile strings. A refused submission (4xx) must leave every
table as it was: it writes everything or nothing. /v1/ gets random JSON bodies with a valid personal API key.

Example counts come from the "fuzz" Hypothesis profile (FUZZ_EXAMPLES, default 5 per route): the module stays
bounded in CI; raise FUZZ_EXAMPLES for a longer local hunt.
"""

from __future__ import annotations

import json
import os

import pytest
import requests
from django import forms
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from chat.models import Message, State
from tests.security.conftest import database_fingerprint
from tests.security.routes import every_route
from tests.security.test_ssrf import url_fields  # noqa: F401  (imports every form module)
from tests.streaming import logged_in_session, parse_events

settings.register_profile(
    "fuzz",
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "5")),
    deadline=None,
    derandomize=True,  # the same examples on every run: a CI failure reproduces locally
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
FUZZ = settings.get_profile("fuzz")

# Reply-starting POSTs and a reply's event stream answer with a stream and run a reply that outlives the request:
# they are fuzzed against the live ASGI server and the fake upstream below, each read to its end.
REPLY_STARTERS = ("chat:conversation-send-new", "chat:conversation-send", "chat:conversation-edit")
REPLY_STARTERS += ("chat:conversation-regenerate",)
STREAMING = (*REPLY_STARTERS, "chat:message-events")
ROUTES = [r for r in every_route() if not r.is_api and not r.is_admin and r.name not in STREAMING]
ADMIN_ROUTES = [r for r in every_route() if r.is_admin and not r.params]


def _form_field_names() -> list[str]:
    names = set()
    pending = [forms.Form, forms.ModelForm]
    while pending:
        cls = pending.pop()
        pending += cls.__subclasses__()
        if cls.__module__.startswith(("accounts.", "tokens.", "chat.", "project.", "allauth.")):
            names |= set(getattr(cls, "base_fields", {}))
    return sorted(names | {"next", "q", "page", "since", "until", "user", "model", "language", "theme", "o"})


HOSTILE = [
    "",
    " ",
    "\x00",
    "\u202e\u200b",
    "0",
    "-1",
    "99999999999999999999",
    "9" * 5000,
    "²",
    "1e309",
    "NaN",
    "0001-01-01",
    "9999-12-31",
    "2026-02-30",
    "../../etc/passwd",
    "<script>__xss(1)</script>",
    "' OR 1=1 --",
    "%00",
    "https://evil.example/",
    "//evil.example",
    "x" * 5000,
    "中文",
    "00000000-0000-0000-0000-000000000000",
    "sk-" + "a" * 48,
]
values = st.one_of(st.sampled_from(HOSTILE), st.text(max_size=60))
fields = st.dictionaries(st.one_of(st.sampled_from(_form_field_names()), st.text(min_size=1, max_size=12)), values)
personas = st.sampled_from(["anonymous", "alice", "staff"])


def _ids(world, route) -> dict:
    ids = world.object_ids()
    prefix = next((p for p in ids if route.name.startswith(p)), None)
    return dict.fromkeys(route.params, ids[prefix] if prefix else world.alice.pk)


def _ask(client, world, route, persona: str, query: dict, data: dict) -> None:
    client.logout()
    if persona != "anonymous":
        client.force_login(getattr(world, persona))
    url = route.url(**_ids(world, route))
    answer = client.get(url, query)
    assert answer.status_code < 500, f"GET {url} {query!r} as {persona}: {answer.status_code}"
    if route.name == "accounts:logout":
        return
    before = database_fingerprint()
    answer = client.post(url, data)
    assert answer.status_code < 500, f"POST {url} {data!r} as {persona}: {answer.status_code}"
    if answer.status_code >= 400:
        assert database_fingerprint() == before, f"POST {url} {data!r} as {persona} was refused but wrote rows"


@pytest.mark.parametrize("route", [r.param() for r in ROUTES])
def test_no_input_makes_a_route_fail(route, world, client):
    @FUZZ
    @given(persona=personas, query=fields, data=fields)
    def fuzz(persona, query, data):
        _ask(client, world, route, persona, query, data)

    fuzz()


def test_no_input_makes_an_admin_list_fail(world, client):
    client.force_login(world.staff)

    @FUZZ
    @given(route=st.sampled_from(ADMIN_ROUTES), query=fields)
    def fuzz(route, query):
        answer = client.get(route.url(), query)
        assert answer.status_code < 500, f"GET {route.url()} {query!r}: {answer.status_code}"

    fuzz()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
chat_bodies = st.fixed_dictionaries(
    {},
    optional={
        "model": json_values | st.sampled_from(["gpt-4o-mini", "", "x" * 300]),
        "messages": json_values
        | st.lists(st.fixed_dictionaries({"role": json_values, "content": json_values}), max_size=3),
        "stream": json_values,
        "max_tokens": json_values,
        "temperature": json_values,
        "stream_options": json_values,
    },
)


@pytest.mark.django_db(transaction=True)
def test_no_json_makes_the_api_fail(world, client, fake_openai):
    bearer = {"Authorization": f"Bearer {world.api_secret}"}

    @FUZZ
    @given(
        body=chat_bodies | json_values,
        raw=st.binary(max_size=40),
        path=st.sampled_from(["chat/completions", "tokens", "models"]),
    )
    def fuzz(body, raw, path):
        for content in (json.dumps(body), raw):
            answer = client.post(f"/v1/{path}", content, content_type="application/json", headers=bearer)
            assert answer.status_code < 500, f"/v1/{path} {content!r}: {answer.status_code} {answer.content[:200]}"
            if answer.streaming:
                answer.close()

    fuzz()


ROUTES_BY_NAME = {r.name: r for r in every_route()}
# The chat box's fields: always a message (else nearly every example is refused), the others often present.
chat_fields = st.fixed_dictionaries(
    {"message": values | st.text(min_size=1, max_size=200)},
    optional={
        "model": values,
        "credential": values,
        "system_prompt": values,
        "message_id": values | st.sampled_from(["1", "2", "3"]),
    },
)
chat_forms = st.tuples(fields, chat_fields).map(lambda pair: {**pair[0], **pair[1]})
# What a browser can put in a header: printable ASCII (requests refuses leading spaces).
header_values = st.sampled_from(["", "0", "-1", "1e309", "99999999999999999999", "9" * 5000, "abc"]) | st.text(
    alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=30
)


@pytest.fixture
def live_sessions(world, asgi_server, fake_openai, settings) -> dict[str, requests.Session]:
    """Anonymous, alice (who owns the world's conversation) and bob, on the live ASGI server; no rate limit."""
    settings.CHAT_RATE_LIMIT_PER_MINUTE = 1_000_000
    anonymous = requests.Session()
    anonymous.get(f"{asgi_server.url}/accounts/login/", timeout=10)
    return {
        "anonymous": anonymous,
        "alice": logged_in_session(asgi_server.url, "alice"),
        "bob": logged_in_session(asgi_server.url, "bob"),
    }


def _read_reply(answer: requests.Response) -> dict:
    """Read a reply's event stream to its end; return its start payload. The reply has ended and is saved."""
    events = parse_events(answer.iter_lines(decode_unicode=True))
    assert events.done, f"{answer.url}: the stream ended without a done event"
    assert events.start, f"{answer.url}: no start event before done: {events.done}"
    reply = Message.objects.get(pk=events.start["assistant_message"])
    assert reply.state != State.STREAMING, f"{answer.url}: done was sent but the reply is still {reply.state}"
    return events.start


@pytest.mark.parametrize("name", REPLY_STARTERS)
def test_no_input_makes_a_reply_route_fail(name, world, asgi_server, live_sessions):
    """Send, edit and regenerate with random and hostile chat fields: a refusal writes nothing; a started reply
    ends with a done event, is saved (no row left streaming) and keeps the person's text as they typed it."""
    route = ROUTES_BY_NAME[name]
    url = asgi_server.url + route.url(**_ids(world, route))
    outcomes: list[int | str] = []

    @FUZZ
    @given(persona=st.sampled_from(["alice", "alice", "bob", "anonymous"]), data=chat_forms)
    @example(persona="alice", data={"message": " Hello <b>there</b> 中文 \u202e ", "model": "x" * 100})
    @example(persona="alice", data={"message": "Hello", "model": "x" * 300})
    @example(persona="alice", data={"message": "Hello\x00", "system_prompt": "\x00"})
    def fuzz(persona, data):
        session = live_sessions[persona]
        before = database_fingerprint()
        answer = session.post(
            url,
            data={**data, "csrfmiddlewaretoken": session.cookies["csrftoken"]},
            headers={"Accept": "text/event-stream", "Referer": f"{asgi_server.url}/chat/"},
            stream=True,
            allow_redirects=False,
            timeout=60,
        )
        with answer:
            assert answer.status_code < 500, f"POST {url} {data!r} as {persona}: {answer.status_code}"
            if not answer.headers.get("content-type", "").startswith("text/event-stream"):
                outcomes.append(answer.status_code)
                assert answer.status_code >= 300, f"POST {url} {data!r} as {persona}: {answer.status_code}"
                assert database_fingerprint() == before, f"POST {url} {data!r} as {persona} was refused but wrote"
                return
            assert persona == "alice", f"POST {url} as {persona} started a reply"
            outcomes.append("started")
            start = _read_reply(answer)
        if name != "chat:conversation-regenerate":
            typed = Message.objects.get(pk=start["user_message"])
            assert typed.role == "user" and typed.content == data["message"].strip()
        assert not Message.objects.filter(state=State.STREAMING).exists()

    fuzz()
    assert "started" in outcomes, f"no example started a reply: {outcomes}"


def test_no_input_makes_a_reply_stream_fail(world, asgi_server, live_sessions):
    """A reply's events with random query strings and Last-Event-ID headers: never a 500; the owner's stream ends."""
    url = asgi_server.url + ROUTES_BY_NAME["chat:message-events"].url(pk=world.answer.pk)

    @FUZZ
    @given(persona=st.sampled_from(["alice", "bob", "anonymous"]), query=fields, last_event_id=header_values)
    def fuzz(persona, query, last_event_id):
        session = live_sessions[persona]
        headers = {"Accept": "text/event-stream", "Last-Event-ID": last_event_id}
        with session.get(url, params=query, headers=headers, stream=True, allow_redirects=False, timeout=60) as answer:
            assert answer.status_code < 500, f"GET {url} {query!r} {last_event_id!r} as {persona}"
            if persona == "alice":
                assert answer.headers["content-type"].startswith("text/event-stream"), answer.status_code
                _read_reply(answer)
            else:
                assert answer.status_code in (302, 404), f"GET {url} as {persona}: {answer.status_code}"

    fuzz()


def test_every_streaming_route_is_fuzzed():
    """A new streaming route must join the live fuzz above, not only the exclusion list."""
    assert {r.name for r in every_route() if r.name in STREAMING} == set(STREAMING)
