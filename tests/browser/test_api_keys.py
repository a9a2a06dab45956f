"""The API journey in a real browser: create a personal key, use it from the openai SDK, revoke it."""

from __future__ import annotations

import openai
import pytest
import requests
from playwright.sync_api import Page, expect

from chat.models import UsageRecord
from tests.api.conftest import key_issue
from tests.browser.conftest import log_in, new_page
from tests.conftest import ALICE_KEY, credential_create

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PHONE = {"width": 390, "height": 844}


def _create_key(page: Page, name: str, models: str = "") -> str:
    page.goto("/settings/api-keys/")
    page.fill("input[name=name]", name)
    page.select_option("select[name=expiry]", "30")
    page.fill("input[name=allowed_models]", models)
    page.click("form[data-api-key-form] button[type=submit]")
    key = page.locator("[data-new-api-key]")
    expect(key).to_be_visible()
    return key.inner_text().strip()


def test_it_creates_a_key_that_a_program_uses_and_revokes_it(page, asgi_server, fake_openai, alice, dialogs):
    credential_create(alice, ALICE_KEY)
    log_in(page, "alice")
    key = _create_key(page, "notebook", "gpt-4o-mini")

    token = requests.post(f"{asgi_server.url}/v1/tokens", headers={"Authorization": f"Bearer {key}"}).json()
    client = openai.OpenAI(base_url=f"{asgi_server.url}/v1", api_key=token["access_token"], max_retries=0)
    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}], stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert UsageRecord.objects.get().api_key.name == "notebook"

    page.goto("/settings/api-keys/")
    listed = page.locator("li[data-api-key]")
    expect(listed).to_have_attribute("data-api-key-state", "active")
    expect(listed).to_contain_text("gpt-4o-mini")
    expect(page.locator("[data-new-api-key]")).to_have_count(0)  # shown once only
    assert key not in page.content()

    listed.locator("[data-action=revoke]").click()  # the confirm is dismissed: nothing happens
    expect(listed).to_have_attribute("data-api-key-state", "active")
    dialogs.accept = True
    listed.locator("[data-action=revoke]").click()
    expect(page.locator("li[data-api-key]")).to_have_attribute("data-api-key-state", "revoked")
    assert dialogs.seen and "notebook" in dialogs.seen[0][1]
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}])


def test_it_shows_a_form_error_without_losing_what_was_typed(page, alice):
    log_in(page, "alice")
    page.goto("/settings/api-keys/")
    page.fill("input[name=allowed_models]", "gpt-4o")
    page.select_option("select[name=expiry]", "date")
    page.click("form[data-api-key-form] button[type=submit]")

    expect(page.locator("[role=alert]").first).to_be_visible()
    expect(page.locator("input[name=allowed_models]")).to_have_value("gpt-4o")


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_screenshots(browser, asgi_server, alice, staff, shoot, scheme):
    credential_create(alice, ALICE_KEY)
    key_issue(alice, name="CI pipeline", allowed_models=["gpt-4o-mini", "gpt-4.1"])
    key_issue(alice, name="old laptop")
    alice.api_keys.filter(name="old laptop").update(revoked_by="alice", revoked_at="2026-11-01T10:00:00Z")
    for viewport, suffix in ((None, "desktop"), (PHONE, "phone")):
        page = new_page(browser, asgi_server.url, color_scheme=scheme)
        if viewport:
            page.set_viewport_size(viewport)
        log_in(page, "alice")
        _create_key(page, "editor plugin")
        shoot(page, f"api-keys-new-{suffix}-{scheme}")
        page.goto("/settings/api-keys/")
        expect(page.locator("li[data-api-key]")).to_have_count(4 if suffix == "phone" else 3)
        page.context.close()
    page = new_page(browser, asgi_server.url, color_scheme=scheme)
    log_in(page, "staff")
    page.goto("/settings/api-keys/")
    expect(page.locator("tr[data-api-key]")).to_have_count(4)
    shoot(page, f"api-keys-staff-desktop-{scheme}")
    page.context.close()
