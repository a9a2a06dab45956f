"""Running it for a team in a real browser: approval, budgets, deactivation, one's own usage."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from accounts.models import Approval, User
from chat.usage import usage_write
from tests.browser.conftest import log_in, new_page, send_message, sign_up
from tests.conftest import ALICE_KEY, PASSWORD, credential_create

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PHONE = {"width": 390, "height": 844}
# Elements reaching past the right edge of the window, outside any region that scrolls on its own.
OVERFLOWING = """[...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > innerWidth + 1
  && !e.closest('.table-wrap')).map(e => e.tagName + '.' + e.className).slice(0, 8)"""


def _spend(user, tokens: int, model: str = "gpt-4o-mini") -> None:
    usage_write(user_id=user.pk, model=model, source="web", usage={"prompt_tokens": tokens, "completion_tokens": 0})


def test_a_new_colleague_waits_for_approval_then_gets_in(page: Page, open_page, settings, staff, shoot):
    settings.SIGNUP_MODE = "approval"
    sign_up(page, "carol")
    expect(page.locator("[data-account-pending]")).to_be_visible()
    shoot(page, "team-pending-desktop-light")
    page.goto("/chat/")
    expect(page).to_have_url(re.compile(r"/accounts/pending/$"))

    admin = open_page()
    log_in(admin, "staff")
    admin.goto("/usage/users/")
    row = admin.locator('tr[data-account="carol"][data-approval="pending"]')
    shoot(admin, "team-people-pending-desktop-light")
    row.locator("[data-action=approve]").click()
    expect(admin.locator('tr[data-account="carol"][data-approval="approved"]')).to_be_visible()
    assert User.objects.get(username="carol").approval == Approval.APPROVED

    page.goto("/chat/")
    expect(page).to_have_url(re.compile(r"/chat/$"))
    expect(page.locator("[data-account-pending]")).to_have_count(0)


def test_a_rejected_sign_up_cannot_log_in(page: Page, open_page, settings, staff):
    settings.SIGNUP_MODE = "approval"
    User.objects.create_user("dave", "dave@example.com", PASSWORD, approval=Approval.PENDING)
    admin = open_page()
    log_in(admin, "staff")
    admin.goto("/usage/users/")
    admin.locator('tr[data-account="dave"] [data-action=reject]').click()
    expect(admin.locator('tr[data-account="dave"][data-approval="rejected"]')).to_be_visible()
    page.goto("/accounts/login/")
    page.fill("input[name=username]", "dave")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]:has-text('Log in')")
    expect(page).to_have_url(re.compile(r"/accounts/inactive/"))
    page.goto("/chat/")
    expect(page).to_have_url(re.compile(r"/accounts/login/"))


def test_deactivation_ends_a_live_session(page: Page, open_page, dialogs, alice, staff):
    log_in(page, "alice")
    admin = open_page()
    log_in(admin, "staff")
    admin.goto(f"/usage/users/{alice.pk}/")
    save, deactivate = admin.locator("form.limits-form button[type=submit]"), admin.locator("[data-action=deactivate]")
    gap = deactivate.bounding_box()["y"] - (save.bounding_box()["y"] + save.bounding_box()["height"])
    assert gap >= 8, f"Save limits and Deactivate touch ({gap:.0f} px apart)"
    admin.click("[data-action=deactivate]")  # one slip of the finger must not lock a colleague out
    question = "Deactivate alice? They are logged out everywhere at once and cannot log in until reactivated."
    assert dialogs.seen == [("confirm", question)]
    expect(admin.locator("[data-action=deactivate]")).to_be_visible()
    alice.refresh_from_db()
    assert alice.is_active
    dialogs.accept = True
    admin.click("[data-action=deactivate]")
    expect(admin.locator("[data-action=reactivate]")).to_be_visible()
    page.goto("/settings/keys/")
    expect(page).to_have_url(re.compile(r"/accounts/login/"))


def test_staff_set_a_budget_and_the_colleague_is_stopped_politely(page: Page, open_page, fake_openai, alice, staff):
    credential_create(alice, ALICE_KEY)
    _spend(alice, 900)
    admin = open_page()
    log_in(admin, "staff")
    admin.goto(f"/usage/users/{alice.pk}/")
    admin.fill("input[name=monthly_token_budget]", "1000")
    admin.click("form.limits-form button[type=submit]")
    expect(admin.locator("[data-budget-remaining]")).to_contain_text("100")

    log_in(page, "alice")
    page.goto("/settings/usage/")
    expect(page.locator("[data-budget-remaining]")).to_contain_text("100 tokens")
    _spend(alice, 100)
    page.goto("/chat/")
    send_message(page, "One more question?")
    alert = page.locator("[role=alert]").filter(has_text="monthly token budget")
    expect(alert).to_be_visible()
    expect(alert).to_contain_text("resets on")
    assert fake_openai.chat_requests == []
    expect(page.locator("textarea[name=message]")).to_have_value("One more question?")


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_screenshots(browser, asgi_server, alice, bob, staff, shoot, scheme):
    alice.monthly_budget_usd = 5
    alice.save()
    User.objects.create_user("erin", "erin@example.com", PASSWORD, approval=Approval.PENDING)
    for n in range(12):
        _spend(alice, 1000 * (n + 1), "gpt-4o" if n % 3 else "gpt-4o-mini")
        _spend(bob, 500 * n, "house-model")
    for viewport, suffix in ((None, "desktop"), (PHONE, "phone")):
        page = new_page(browser, asgi_server.url, color_scheme=scheme)
        if viewport:
            page.set_viewport_size(viewport)
        log_in(page, "alice")
        page.goto("/settings/usage/")
        expect(page.locator("tr[data-usage-row]")).to_have_count(12)
        shoot(page, f"team-my-usage-{suffix}-{scheme}")
        assert page.evaluate(OVERFLOWING) == [], suffix
        page.context.close()
        page = new_page(browser, asgi_server.url, color_scheme=scheme)
        if viewport:
            page.set_viewport_size(viewport)
        log_in(page, "staff")
        for url, name in (("/usage/", "usage"), ("/usage/users/", "people"), (f"/usage/users/{alice.pk}/", "person")):
            page.goto(url)
            expect(page.locator("main")).to_be_visible()
            shoot(page, f"team-{name}-{suffix}-{scheme}")
            # Wide tables scroll inside their own region; the page itself never scrolls sideways.
            wide = page.evaluate(OVERFLOWING)
            assert wide == [], (url, suffix, wide)
        page.context.close()
