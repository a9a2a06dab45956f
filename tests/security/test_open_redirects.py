"""Open redirects: no view sends a person off-site, whatever `next=`, the form or the Referer says.

Log-in, log-out and set-language are tried by hand; then every route of the URLconf is tried with hostile
`next` values (query and form) and a hostile Referer, and any redirect it answers must stay on this site.
"""

from __future__ import annotations

import pytest
from django.utils.http import url_has_allowed_host_and_scheme

from chat.models import Message
from tests.conftest import PASSWORD
from tests.security.routes import every_route
from tests.streaming import wait_for

HOSTILE = [
    "https://evil.example/",
    "//evil.example/",
    "///evil.example/",
    "/\\evil.example/",
    "\\\\evil.example",
    "https:evil.example",
    " //evil.example",
    "http://testserver@evil.example/",
    "/%09/evil.example",
    "javascript:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "https://evil.example\\@testserver/",
]


def assert_stays_here(response) -> None:
    if response.status_code in (301, 302, 303, 307, 308):
        location = response["Location"]
        browser_reads = "".join(c for c in location if c not in "\t\n\r").strip()  # as a browser parses it (WHATWG)
        assert url_has_allowed_host_and_scheme(browser_reads, {"testserver"}), location
        assert not location.lower().lstrip().startswith(("javascript:", "data:")), location


@pytest.mark.parametrize("target", HOSTILE)
def test_log_in_refuses_an_external_next(target, world, client):
    response = client.post(
        f"/accounts/login/?next={target}", {"username": "alice", "password": PASSWORD, "next": target}
    )
    assert response.status_code == 302  # logged in...
    assert_stays_here(response)  # ...and kept on the site


@pytest.mark.parametrize("target", HOSTILE)
def test_log_out_refuses_an_external_next(target, world, client):
    client.force_login(world.alice)
    assert_stays_here(client.post(f"/accounts/logout/?next={target}", {"next": target}))


@pytest.mark.parametrize("target", HOSTILE)
def test_setlang_refuses_an_external_next_and_referer(target, world, client):
    response = client.post("/i18n/setlang/", {"language": "zh-hans", "next": target}, headers={"Referer": target})
    assert_stays_here(response)


# The admin's redirects are Django's own (checked with url_has_allowed_host_and_scheme there); CSRF covers it.
ROUTES = [r for r in every_route() if not r.is_api and not r.is_admin]


@pytest.mark.parametrize("route", [r.param() for r in ROUTES])
def test_no_route_redirects_off_site(route, world, client, fake_openai):
    client.force_login(world.alice)
    ids = {
        name: value
        for prefix, value in world.object_ids().items()
        if route.name.startswith(prefix)
        for name in route.params
    }
    url = route.url(**ids)
    for target in ("https://evil.example/", "/\\evil.example/"):
        assert_stays_here(client.get(url, {"next": target}, headers={"Referer": target}))
        if route.name != "account_logout":
            assert_stays_here(client.post(f"{url}?next={target}", {"next": target}, headers={"Referer": target}))
    # A reply-starting POST answers an event stream; the reply it started runs on after the request (on the
    # process's background loop under this sync client) and is let finish before the test's database goes.
    wait_for(lambda: not Message.objects.filter(state="streaming").exists(), "the started replies ending")
