"""XSS through every field shown back: every stored text field holds live markup, every page is read, none shows it raw.

Fields come from the models (tests/security/hostile.py), pages from the URLconf and the admin's registry, so a new
field or page is attacked without being listed. The owner, another person and staff each read every page they can;
a page that shows a hostile value unescaped, answers 500, or serves non-HTML as HTML fails. The CSV exports must
neutralise cells a spreadsheet would run (OWASP CSV injection). tests/browser/test_xss_canary.py runs the same
rows in Chromium with a `window.__xss` canary, for what the pages render client-side.
"""

from __future__ import annotations

import csv
import io

import pytest
from asgiref.sync import async_to_sync
from django.contrib import admin
from django.urls import reverse
from django.utils.html import escape

from tests.security.hostile import fill_every_text_field, rows_add, rows_missing
from tests.security.routes import every_route

SKIPPED = ("accounts:logout",)  # POST only; logging out mid-walk would end the reader's session
GET_ROUTES = [r for r in every_route() if not r.is_api and not r.is_admin and r.name not in SKIPPED]
# Fields each reader must meet (escaped) somewhere, so a page that stopped showing them is noticed too.
OWNER_SEES = {
    "ApiKey.name",
    "Conversation.model",
    "Conversation.system_prompt",
    "Conversation.title",
    "Credential.api_version",
    "Credential.base_url",
    "Credential.client_id",
    "Credential.default_model",
    "Credential.hint",
    "Credential.name",
    "Credential.scope",
    "Credential.status_detail",
    "Credential.token_url",
    "CredentialEvent.detail",
    "Message.content",
    "Message.error",
    "Message.finish_reason",
    "Message.model",
    "Message.reasoning",
    "UsageRecord.error_type",
    "UsageRecord.model",
    "UsageRecord.request_id",
    "User.username",
}
STAFF_SEES = {
    "ApiKey.name",
    "ApiKey.revoked_by",
    "Conversation.title",
    "Credential.name",
    "Credential.status_detail",
    "CredentialEvent.detail",
    "PriceOverride.model",
    "PriceOverride.note",
    "UsageDaily.model",
    "UsageRecord.model",
    "UsageRecord.request_id",
    "UsageRecord.response_id",
    "User.email",
    "User.username",
}
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


@pytest.fixture
def hostile_world(world):
    rows_add(world)
    values = fill_every_text_field()
    return world, values


def _body(response) -> str:
    if response.streaming and response.is_async:

        async def read() -> bytes:
            return b"".join([chunk async for chunk in response.streaming_content])

        return async_to_sync(read)().decode(errors="replace")
    if response.streaming:
        return b"".join(response.streaming_content).decode(errors="replace")
    return response.content.decode(errors="replace")


def _read_every_page(client, urls: list[str], values: dict[str, str]) -> set[str]:
    """GET each url; fail on a 500, on HTML showing a hostile value raw, or on HTML served for data.

    Return the fields seen escaped, to prove the pages really showed them."""
    shown = set()
    for url in urls:
        response = client.get(url)
        assert response.status_code < 500, f"{url} answered {response.status_code}"
        kind = response.get("Content-Type", "")
        if "text/event-stream" in kind:
            response.close()
            continue
        body = _body(response)
        if "text/html" in kind:
            raw = [f"{field} ({value!r})" for value, field in values.items() if value in body]
            assert not raw, f"{url} shows these fields unescaped: {raw}"
            shown |= {field for value, field in values.items() if escape(value) in body}
        else:
            assert response.get("X-Content-Type-Options") == "nosniff", f"{url} ({kind}) may be sniffed as HTML"
        if url.endswith(".csv") and response.status_code == 200:
            _assert_no_formula(url, body)
    return shown


def _assert_no_formula(url: str, body: str) -> int:
    rows = list(csv.reader(io.StringIO(body)))
    cells = [cell for row in rows[1:] for cell in row]
    assert not [c for c in cells if c.startswith(FORMULA_STARTS)], f"{url} has cells a spreadsheet would run"
    return len(rows) - 1


def _urls(world, routes, staff: bool) -> list[str]:
    ids = world.object_ids()
    urls = []
    for route in routes:
        prefix = next((p for p in ids if route.name.startswith(p)), None)
        if route.name.startswith("usage:") and not staff:
            continue
        value = ids[prefix] if prefix else world.alice.pk
        urls.append(route.url(**dict.fromkeys(route.params, value)))
    return urls


def test_every_model_with_text_fields_has_a_hostile_row(hostile_world):
    assert rows_missing() == [], "add a row of these models in tests/security/hostile.py rows_add"


@pytest.mark.django_db(transaction=True)  # the async views hand their connection back, as under the live server
def test_the_owner_sees_her_hostile_fields_escaped_everywhere(hostile_world, client):
    world, values = hostile_world
    client.force_login(world.alice)
    shown = _read_every_page(client, [*_urls(world, GET_ROUTES, staff=False), "/settings/keys/?next=chat"], values)
    assert not OWNER_SEES - shown, f"no page showed {OWNER_SEES - shown}"


def test_staff_see_everyones_hostile_fields_escaped_everywhere(hostile_world, client):
    world, values = hostile_world
    client.force_login(world.staff)
    urls = [url for url in _urls(world, GET_ROUTES, staff=True) if url.startswith(("/usage/", "/settings/usage/"))]
    urls += ["/usage/?model=gpt-4o-mini", f"/usage/?user={world.alice.pk}", "/usage/export.csv"]
    for model in admin.site._registry:
        info = model._meta.app_label, model._meta.model_name
        urls.append(reverse("admin:{}_{}_changelist".format(*info)))
        urls.append(reverse("admin:{}_{}_changelist".format(*info)) + "?q=%3Cscript%3E")
        urls += [reverse("admin:{}_{}_change".format(*info), args=[row.pk]) for row in model._default_manager.all()]
    shown = _read_every_page(client, urls, values)
    assert not STAFF_SEES - shown, f"no page showed {STAFF_SEES - shown}"


def test_the_exports_neutralise_formulas(hostile_world, client):
    world, _values = hostile_world
    client.force_login(world.alice)
    assert _assert_no_formula("/settings/usage/export.csv", _body(client.get("/settings/usage/export.csv"))) == 2
    client.force_login(world.staff)
    assert _assert_no_formula("/usage/export.csv", _body(client.get("/usage/export.csv"))) == 2
