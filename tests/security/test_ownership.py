"""Ownership on every object route: bob gets 404 for alice's objects, and nothing of hers changes.

Routes come from the URLconf; a route with an id argument that is not mapped to an object kind here fails
`test_every_object_route_is_mapped`, so a new owned-object view cannot be forgotten.
"""

from __future__ import annotations

import pytest

from tests.security.conftest import database_fingerprint
from tests.security.routes import every_route

# Staff pages take other people's ids on purpose; a non-staff person must not reach them at all.
STAFF_PREFIXES = ("usage:",)
OBJECT_ROUTES = [
    r
    for r in every_route()
    if not r.is_admin and not r.is_api and any(conv in ("int", "uuid") for conv in r.params.values())
]


def _prefix(route, world) -> str | None:
    return next((prefix for prefix in world.object_ids() if route.name.startswith(prefix)), None)


def test_every_object_route_is_mapped(world):
    unmapped = [r.route for r in OBJECT_ROUTES if _prefix(r, world) is None and not r.name.startswith(STAFF_PREFIXES)]
    assert not unmapped, f"add these routes to World.object_ids (tests/security/conftest.py): {unmapped}"
    assert len(OBJECT_ROUTES) >= 10


@pytest.mark.parametrize("route", [r.param() for r in OBJECT_ROUTES])
def test_bob_gets_404_for_alices_object(route, world, client):
    client.force_login(world.bob)
    if route.name.startswith(STAFF_PREFIXES):
        ids = dict.fromkeys(route.params, world.alice.pk)
        before = database_fingerprint()
        assert client.get(route.url(**ids)).status_code in (302, 403, 404, 405)  # 405: POST-only, says nothing
        assert client.post(route.url(**ids)).status_code in (302, 403, 404)
        assert database_fingerprint() == before
        return
    value = world.object_ids()[_prefix(route, world)]
    url = route.url(**dict.fromkeys(route.params, value))
    before = database_fingerprint()

    answers = [client.get(url).status_code, client.post(url, {"name": "mine", "message": "mine"}).status_code]

    assert set(answers) <= {404, 405}, f"{url}: {answers}"
    assert 404 in answers
    assert database_fingerprint() == before


@pytest.mark.parametrize("route", OBJECT_ROUTES, ids=lambda r: r.route)
def test_anonymous_is_sent_to_log_in(route, world, client):
    value = world.object_ids().get(_prefix(route, world) or "", world.alice.pk)
    response = client.get(route.url(**dict.fromkeys(route.params, value)))

    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_alice_reaches_her_own_objects(world, client):
    """The 404s above are about the owner, not broken URLs: alice herself gets her pages."""
    client.force_login(world.alice)
    reached = 0
    for route in OBJECT_ROUTES:
        prefix = _prefix(route, world)
        if prefix is None:
            continue
        response = client.get(route.url(**dict.fromkeys(route.params, world.object_ids()[prefix])))
        assert response.status_code in (200, 302, 405), f"{route.route}: {response.status_code}"
        reached += response.status_code == 200
    assert reached >= 3
