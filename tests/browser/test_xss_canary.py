"""Hostile stored fields and provider text run no script in a real browser, on every page that shows them.

Every text field of every row holds live markup (tests/security/hostile.py); each payload calls `__xss(n)`, which
an init script defines as a canary recording n. The Content-Security-Policy is bypassed, so anything injected would
run: the test proves the escaping and the client-side rendering, not only the CSP behind them. Model ids from the
provider's list and a provider's error message are hostile too. tests/browser/test_markdown_xss.py covers
hostile Markdown replies; tests/security/test_xss.py the server-rendered HTML of every route.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser.conftest import TIMEOUT_MS, log_in, send_message
from tests.security.conftest import World
from tests.security.hostile import PAYLOADS, fill_every_text_field, rows_add
from tokens.models import Credential

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CANARY = "window.__xss = (n) => { (window.__xssHits = window.__xssHits || []).push(n); };"
HOSTILE_MODELS = [p.format(n=900 + i) for i, p in enumerate(PAYLOADS[:4])]


def _reader(browser: Browser, base_url: str, dialogs) -> Page:
    context = browser.new_context(base_url=base_url, bypass_csp=True, viewport={"width": 1280, "height": 860})
    context.set_default_timeout(TIMEOUT_MS)
    context.add_init_script(CANARY)
    page = context.new_page()
    page.on("dialog", dialogs.handle)
    return page


def _visit_all(page: Page, paths: list[str], dialogs) -> None:
    for path in paths:
        response = page.goto(path)
        assert response is not None and response.status < 500, f"{path}: {response and response.status}"
        page.wait_for_load_state("load")
        page.evaluate("document.querySelectorAll('details').forEach((d) => { d.open = true; })")  # thinking, menus
        hits = page.evaluate("window.__xssHits || []")
        assert hits == [], f"{path} ran hostile script from fields {hits}"
        assert dialogs.seen == [], f"{path} opened {dialogs.seen}"


@pytest.fixture
def hostile(asgi_server, fake_openai, browser, dialogs):
    world = World()
    rows_add(world)
    fake_openai.models = HOSTILE_MODELS
    alice_page = _reader(browser, asgi_server.url, dialogs)
    staff_page = _reader(browser, asgi_server.url, dialogs)
    log_in(alice_page, "alice")
    log_in(staff_page, "staff")
    fill_every_text_field()  # after logging in: the usernames are hostile now
    # The credential must still reach the fake provider, whose model list is the hostile part.
    Credential.objects.filter(pk=world.credential.pk).update(base_url="", api_version="")
    yield world, alice_page, staff_page
    alice_page.context.close()
    staff_page.context.close()


def test_no_stored_field_runs_script_on_any_page(hostile, dialogs):
    world, alice_page, staff_page = hostile
    alice_page.goto("/settings/profile/")
    alice_page.evaluate("document.body.insertAdjacentHTML('beforeend', '<img src=x onerror=__xss(-1)>')")
    alice_page.wait_for_function("(window.__xssHits || []).includes(-1)")  # the canary would see an injection
    alice_page.evaluate("window.__xssHits = []")
    credential, conversation = world.credential.pk, world.conversation.pk
    _visit_all(
        alice_page,
        [
            "/chat/",
            f"/chat/{conversation}/",
            "/settings/keys/",
            f"/settings/keys/{credential}/",
            "/settings/api-keys/",
            "/settings/usage/",
            "/settings/profile/",
        ],
        dialogs,
    )
    _visit_all(
        staff_page,
        [
            "/usage/",
            "/usage/users/",
            f"/usage/users/{world.alice.pk}/",
            "/admin/chat/usagerecord/",
            "/admin/chat/conversation/",
            "/admin/tokens/credential/",
            f"/admin/tokens/credential/{credential}/change/",
            "/admin/tokens/credentialevent/",
            "/admin/accounts/user/",
            f"/admin/accounts/user/{world.alice.pk}/change/",
        ],
        dialogs,
    )


def test_hostile_model_ids_and_provider_errors_run_no_script(hostile, fake_openai, dialogs):
    world, alice_page, _staff = hostile
    alice_page.goto(f"/chat/{world.conversation.pk}/")
    model = alice_page.locator("[name=model]")
    model.fill("")
    model.focus()  # the suggestions (a datalist or menu) come from the provider's hostile list
    fake_openai.error(400, message='<img src=x onerror="__xss(990)"> bad request')
    send_message(alice_page, "Which models?")

    expect(alice_page.locator("[data-role=assistant]").last).to_have_attribute("data-state", "error")
    assert alice_page.evaluate("window.__xssHits || []") == []
    alice_page.reload()
    alice_page.wait_for_load_state("load")
    assert alice_page.evaluate("window.__xssHits || []") == []
    assert dialogs.seen == []
