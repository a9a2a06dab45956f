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
from django import forms
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.security.conftest import database_fingerprint
from tests.security.routes import every_route
from tests.security.test_ssrf import url_fields  # noqa: F401  (imports every form module)

settings.register_profile(
    "fuzz",
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "5")),
    deadline=None,
    derandomize=True,  # the same examples on every run: a CI failure reproduces locally
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
FUZZ = settings.get_profile("fuzz")

# Reply-starting POSTs and event streams run replies that outlive the request; the chat box's fields are fuzzed
# through the API's JSON below and by tests/chat's own bad-input tests.
STREAMING = ("chat:conversation-send-new", "chat:conversation-send", "chat:conversation-edit")
STREAMING += ("chat:conversation-regenerate", "chat:message-events")
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
