"""CSRF on every route of the URLconf: a POST without a token is refused (403) and changes nothing.

The routes come from `get_resolver()`, so a view added tomorrow is checked without anyone listing it here.
/v1/ is the API for programs: CSRF-exempt by design because it reads only the Authorization header, so it must
never accept a session cookie instead.
"""

from __future__ import annotations

import pytest

from tests.security.conftest import database_fingerprint
from tests.security.routes import every_route

ROUTES = every_route()
SITE_ROUTES = [r for r in ROUTES if not r.is_api]
API_ROUTES = [r for r in ROUTES if r.is_api]


def test_it_enumerates_the_whole_site():
    names = {r.name for r in ROUTES}
    expected_names = ("account_login", "mfa_index", "tokens:credential-list", "chat:conversation-send")
    for expected in (*expected_names, "api:chat-completions"):
        assert expected in names
    assert len(SITE_ROUTES) > 30  # the admin's routes are walked too


@pytest.mark.parametrize("route", [r.param() for r in SITE_ROUTES])
def test_it_refuses_a_post_without_a_valid_token(route, world, enforcing_client, client):
    client.get("/accounts/login/")
    foreign = client.cookies["csrftoken"].value  # another visitor's token
    enforcing_client.force_login(world.staff if route.is_admin else world.alice)
    ids = {
        name: value
        for prefix, value in world.object_ids().items()
        if route.name.startswith(prefix)
        for name in route.params
    }
    before = database_fingerprint()

    bare = enforcing_client.post(route.url(**ids), {"name": "x", "message": "x", "api_key": "sk-x"})
    borrowed = enforcing_client.post(
        route.url(**ids), {"csrfmiddlewaretoken": foreign, "message": "x"}, headers={"X-CSRFToken": foreign}
    )

    assert bare.status_code == 403, f"{route.route} answered {bare.status_code} to a POST without CSRF token"
    assert borrowed.status_code == 403, f"{route.route} took another session's token"
    assert database_fingerprint() == before


def test_only_the_api_is_exempt():
    exempt = [r.route for r in ROUTES if getattr(r.callback, "csrf_exempt", False)]
    assert exempt, "the /v1/ API is expected to be CSRF-exempt (bearer only)"
    assert all(route.startswith("v1/") for route in exempt), exempt


@pytest.mark.django_db(transaction=True)
def test_the_api_never_takes_a_session_cookie(world, enforcing_client):
    """A signed-in browser's cookie is not a bearer: /v1/ answers 401 and stores nothing."""
    enforcing_client.force_login(world.alice)
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    before = database_fingerprint()

    answers = {
        "tokens": enforcing_client.post("/v1/tokens"),
        "models": enforcing_client.get("/v1/models"),
        "completions": enforcing_client.post("/v1/chat/completions", body, content_type="application/json"),
        "streamed": enforcing_client.post(
            "/v1/chat/completions", {**body, "stream": True}, content_type="application/json"
        ),
    }

    assert {name: a.status_code for name, a in answers.items()} == dict.fromkeys(answers, 401)
    assert {len(API_ROUTES)} <= {4}  # a new /v1/ route must be added above
    assert database_fingerprint() == before
