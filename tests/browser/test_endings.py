"""How a reply ended, in the browser: output limit (a note and Continue), content filter, turns dropped after a
context-length refusal; live, and the same after a reload."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from chat.models import Message
from tests.browser.conftest import log_in, send_message

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def alice_page(page: Page, provider) -> Page:
    log_in(page, "alice")
    return page


def _shoot_all(page: Page, shoot, name: str) -> None:
    """Desktop and phone, light and dark (saved only with SCREENSHOTS=1)."""
    for width, height, size in ((1280, 860, "desktop"), (390, 844, "phone")):
        page.set_viewport_size({"width": width, "height": height})
        for scheme in ("light", "dark"):
            page.emulate_media(color_scheme=scheme)
            shoot(page, f"{name}-{size}-{scheme}")
    page.set_viewport_size({"width": 1280, "height": 860})
    page.emulate_media(color_scheme="light")


def _assistant(page: Page):
    return page.locator("[data-role=assistant]").last


def test_it_offers_continue_for_a_reply_cut_by_the_output_limit(alice_page: Page, provider, shoot):
    provider.then(text="Step one, step two,", finish="length").then(text=" step three. Done.")
    send_message(alice_page, "List every step")
    answer = _assistant(alice_page)
    expect(answer).to_have_attribute("data-finish", "length")
    expect(answer.locator(".note-length")).to_be_visible()
    _shoot_all(alice_page, shoot, "chat-cut-by-length")

    alice_page.reload()
    answer = _assistant(alice_page)
    expect(answer).to_have_attribute("data-finish", "length")
    answer.locator('[data-action="continue"]').click()

    expect(answer).to_have_attribute("data-finish", "stop")
    expect(answer).to_have_attribute("data-state", "complete")
    expect(answer.locator(".bubble")).to_have_text("Step one, step two, step three. Done.")
    expect(answer.locator('[data-action="continue"]')).to_have_count(0)
    expect(alice_page.locator("[data-role=assistant]")).to_have_count(1)
    assert provider.chat_requests[-1].json()["messages"][-1]["content"] == "Step one, step two,"

    alice_page.reload()
    answer = _assistant(alice_page)
    expect(answer.locator(".bubble")).to_have_text("Step one, step two, step three. Done.")
    expect(answer).to_have_attribute("data-finish", "stop")
    expect(answer.locator(".note-length")).to_have_count(0)
    assert Message.objects.get(role="assistant").content == "Step one, step two, step three. Done."


def test_it_continues_live_without_a_reload(alice_page: Page, provider):
    provider.then(text="Half", finish="length").then(text=" and whole.")
    send_message(alice_page, "Go")
    answer = _assistant(alice_page)
    answer.locator('[data-action="continue"]').click()
    expect(answer.locator(".bubble")).to_have_text("Half and whole.")
    expect(answer).to_have_attribute("data-finish", "stop")


def test_it_says_a_content_filter_stopped_the_reply(alice_page: Page, provider, shoot):
    provider.then(text="I can only say this much", finish="content_filter")
    send_message(alice_page, "Something the filter dislikes")
    answer = _assistant(alice_page)
    expect(answer).to_have_attribute("data-finish", "content_filter")
    expect(answer.locator(".note-content-filter")).to_be_visible()
    expect(answer.locator('[data-action="continue"]')).to_have_count(0)

    alice_page.reload()
    answer = _assistant(alice_page)
    expect(answer).to_have_attribute("data-finish", "content_filter")
    expect(answer.locator(".note-content-filter")).to_be_visible()
    _shoot_all(alice_page, shoot, "chat-content-filter")


def test_it_tells_the_user_older_turns_were_dropped_to_fit(alice_page: Page, provider, shoot):
    refusal = "This model's maximum context length is 1000 tokens. However, your messages resulted in 2000 tokens."
    provider.then(text="First.").then(status=400, error={"error": {"message": refusal}}).then(text="Fitted.")
    send_message(alice_page, "An early question " * 40)
    expect(_assistant(alice_page)).to_have_attribute("data-state", "complete")
    send_message(alice_page, "And now?")
    answer = _assistant(alice_page)
    expect(answer.locator(".bubble")).to_have_text("Fitted.")
    expect(answer.locator(".note-trimmed")).to_be_visible()

    alice_page.reload()
    expect(_assistant(alice_page).locator(".note-trimmed")).to_be_visible()
    _shoot_all(alice_page, shoot, "chat-trimmed")
