"""The foundation issue's journeys in a real browser: sign up, add a key, chat, staff sees the call."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from chat.models import Message, UsageRecord
from tests.browser.conftest import log_in, send_message
from tests.conftest import ALICE_KEY, BOB_KEY, PASSWORD, credential_create, user_create
from tests.streaming import logged_in_session, send
from tokens.models import Credential

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CAROL_KEY = "sk-proj-carol-0000000000000000000000000000009f3c"
REJECTED_KEY = "sk-proj-rejected-00000000000000000000000000007777"


def _sign_up(page: Page, username: str) -> None:
    page.fill("input[name=username]", username)
    page.fill("input[name=email]", f"{username}@example.com")
    page.fill("input[name=password1]", PASSWORD)
    page.fill("input[name=password2]", PASSWORD)
    page.click("form button[type=submit]:has-text('Sign up')")


def _usage_row(page: Page, username: str, model: str = "gpt-4o-mini"):
    return page.locator(f'tr[data-usage-row][data-user="{username}"][data-model="{model}"]')


def test_it_takes_a_new_user_from_sign_up_to_a_streamed_reply_that_staff_can_see(
    page, open_page, fake_openai, staff, shoot
):
    fake_openai.valid_keys = {CAROL_KEY}
    fake_openai.reply("Hi Carol, glad to help.", delay=0.02)

    page.goto("/accounts/signup/")
    shoot(page, "01-signup")
    _sign_up(page, "carol")

    expect(page).to_have_url(re.compile(r"/settings/keys/$"))
    expect(page.locator("[data-credential-status]")).to_have_count(0)
    shoot(page, "03-keys-empty")

    page.fill("input[name=api_key]", CAROL_KEY)
    page.click("form button[type=submit]:has-text('Check and save')")

    credential = page.locator("li[data-credential-status]")
    expect(credential).to_have_count(1)
    expect(credential).to_have_attribute("data-credential-status", "active")
    expect(credential).to_contain_text("sk-…9f3c")
    assert CAROL_KEY not in page.content()
    shoot(page, "04-keys-active")

    credential.get_by_role("link", name="Details & history").click()
    expect(page).to_have_url(re.compile(r"/settings/keys/[0-9a-f-]+/$"))
    expect(page.locator("[data-credential-status]")).to_have_attribute("data-credential-status", "active")
    expect(page.locator("body")).to_contain_text("sk-…9f3c")
    assert CAROL_KEY not in page.content()
    shoot(page, "05-key-detail")

    page.get_by_role("link", name="Chat", exact=True).click()
    expect(page).to_have_url(re.compile(r"/chat/$"))
    shoot(page, "06-chat-empty")
    send_message(page, "Hello, who are you?")

    expect(page.locator("[data-role=user] .bubble")).to_have_text("Hello, who are you?")
    assistant = page.locator("[data-role=assistant]")
    expect(assistant).to_have_attribute("data-state", "complete")
    expect(assistant.locator(".bubble")).to_have_text("Hi Carol, glad to help.")
    expect(page).to_have_url(re.compile(r"/chat/\d+/$"))
    assert [r.bearer for r in fake_openai.chat_requests] == [CAROL_KEY]
    assert fake_openai.chat_requests[0].json()["messages"] == [{"role": "user", "content": "Hello, who are you?"}]

    staff_page = open_page()
    staff_page.goto("/accounts/login/")
    shoot(staff_page, "02-login")
    log_in(staff_page, "staff")
    staff_page.get_by_role("link", name="Usage", exact=True).click()
    expect(staff_page).to_have_url(re.compile(r"/usage/$"))
    row = _usage_row(staff_page, "carol")
    expect(row).to_have_count(1)
    expect(row).not_to_have_class(re.compile(r"is-error"))
    assert CAROL_KEY not in staff_page.content()


def test_it_refuses_a_key_the_provider_rejects_and_does_not_store_it(page, fake_openai, alice, shoot):
    fake_openai.valid_keys = {ALICE_KEY}
    log_in(page, "alice")
    page.goto("/settings/keys/")

    page.fill("input[name=api_key]", REJECTED_KEY)
    page.click("form button[type=submit]:has-text('Check and save')")

    alert = page.get_by_role("alert")
    expect(alert).to_be_visible()
    expect(alert).to_contain_text("not saved")
    shoot(page, "03b-keys-rejected")
    expect(page.locator("[data-credential-status]")).to_have_count(0)
    assert REJECTED_KEY not in page.content()
    assert not Credential.objects.filter(user=alice).exists()
    # It really was checked with the provider, with the key that was pasted.
    assert REJECTED_KEY in [r.bearer for r in fake_openai.requests if r.route == "/v1/models"]


def test_it_sends_with_the_users_own_key_not_someone_elses(page, fake_openai, alice, bob):
    credential_create(alice, ALICE_KEY)
    credential_create(bob, BOB_KEY)
    fake_openai.reply("Only for Bob.")
    log_in(page, "bob")

    send_message(page, "Whose key is this?")

    expect(page.locator("[data-role=assistant]")).to_have_attribute("data-state", "complete")
    assert [r.bearer for r in fake_openai.chat_requests] == [BOB_KEY]


def test_it_takes_a_user_without_a_key_to_the_keys_page_and_keeps_their_text(page, fake_openai, alice, shoot):
    log_in(page, "alice")
    draft = "Plan a three-day trip to Lisbon\nwith a budget."

    page.fill("textarea[name=message]", draft)
    page.click("[data-action=send]")

    expect(page).to_have_url(re.compile(r"/settings/keys/\?next=chat$"))
    expect(page.get_by_role("alert").first).to_contain_text("API key")
    shoot(page, "03c-keys-needed-to-chat")
    assert fake_openai.chat_requests == []
    assert not Message.objects.exists()

    page.fill("input[name=api_key]", ALICE_KEY)  # the key saved, the page leads back to the chat and the text
    page.click("form button[type=submit]:has-text('Check and save')")
    expect(page).to_have_url(re.compile(r"/chat/$"))
    expect(page.locator("textarea[name=message]")).to_have_value(draft)
    expect(page.locator(".flash-success")).to_contain_text("The provider accepted it")


def test_it_shows_staff_every_call_with_user_model_and_outcome(page, asgi_server, fake_openai, alice, bob, shoot):
    credential_create(alice, ALICE_KEY)
    credential_create(bob, BOB_KEY)
    fake_openai.reply("One.", prompt_tokens=12, completion_tokens=3)
    fake_openai.reply("Two.", prompt_tokens=20, completion_tokens=5)
    fake_openai.error(429, headers={"retry-after": "7"})
    alice_session = logged_in_session(asgi_server.url, "alice")
    bob_session = logged_in_session(asgi_server.url, "bob")
    assert send(alice_session, asgi_server.url, "/chat/send/", "first").done["state"] == "complete"
    assert send(bob_session, asgi_server.url, "/chat/send/", "second", model="gpt-4o").done["state"] == "complete"
    assert send(alice_session, asgi_server.url, "/chat/send/", "third").done["state"] == "error"
    assert UsageRecord.objects.count() == 3
    user_create("root", is_staff=True)

    log_in(page, "root")
    page.goto("/usage/")

    expect(_usage_row(page, "alice")).to_have_count(2)
    expect(_usage_row(page, "bob", "gpt-4o")).to_have_count(1)
    expect(page.locator("[data-total=requests]")).to_have_text("3")
    expect(page.locator("[data-total=errors]")).to_have_text("1")
    expect(_usage_row(page, "alice").and_(page.locator(".is-error"))).to_have_count(1)
    expect(_usage_row(page, "bob", "gpt-4o")).to_contain_text("25")  # 20 in + 5 out
    shoot(page, "09-usage")

    page.fill("input[name=user]", "bob")
    page.click("form.filters button[type=submit]")
    expect(page.locator("tr[data-usage-row]")).to_have_count(1)
    expect(_usage_row(page, "bob", "gpt-4o")).to_have_count(1)


def test_it_forbids_the_usage_dashboard_to_a_non_staff_user(page, fake_openai, alice, shoot):
    credential_create(alice, ALICE_KEY)
    log_in(page, "alice")
    expect(page.get_by_role("link", name="Usage", exact=True)).to_have_count(0)

    response = page.goto("/usage/")

    assert response is not None and response.status == 403
    expect(page.locator("tr[data-usage-row]")).to_have_count(0)
    shoot(page, "10-forbidden")


def test_it_sends_an_anonymous_visitor_to_log_in(page):
    page.goto("/chat/")
    expect(page).to_have_url(re.compile(r"/accounts/login/\?next=/chat/$"))
    page.goto("/usage/")
    expect(page).to_have_url(re.compile(r"/accounts/login/\?next=/usage/$"))
