"""A reply survives the browser: closing the page does not stop it, reopening follows it, Stop works from any tab."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from chat.models import Message
from tests.browser.conftest import eventually, log_in, send_message
from tests.conftest import ALICE_KEY, credential_create

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ALL_60 = "".join(f"tok{i} " for i in range(60)).strip()


@pytest.fixture
def alice_page(page: Page, fake_openai, alice) -> Page:
    credential_create(alice, ALICE_KEY)
    log_in(page, "alice")
    return page


def _assistant(page: Page):
    return page.locator("[data-role=assistant]").last


def _second_tab(page: Page, url: str) -> Page:
    """Another tab of the same browser (same cookies)."""
    tab = page.context.new_page()
    tab.goto(url)
    return tab


def test_it_finishes_a_reply_after_the_page_is_closed_and_shows_it_live_on_reopening(
    alice_page: Page, fake_openai, shoot
):
    fake_openai.tokens(60, delay=0.05, hold_after=5)
    send_message(alice_page, "Count for me")
    expect(_assistant(alice_page).locator(".bubble")).to_contain_text("tok3 ")
    url = alice_page.url
    context = alice_page.context
    alice_page.close()  # the tab goes away mid-reply

    reopened = context.new_page()
    reopened.goto(url)
    assistant = _assistant(reopened)
    expect(assistant).to_have_attribute("data-state", "streaming")
    expect(reopened.locator("[data-action=stop]")).to_be_visible()
    shoot(reopened, "relay-reopened-streaming")
    fake_openai.released.set()
    expect(assistant).to_have_attribute("data-state", "complete")
    expect(assistant.locator(".bubble")).to_have_text(ALL_60)
    assert not fake_openai.disconnected.is_set(), "the upstream saw the browser leave"
    assert fake_openai.completed_streams == 1
    saved = Message.objects.get(role="assistant")
    assert (saved.state, saved.content) == ("complete", ALL_60 + " ")


def test_it_shows_one_reply_in_two_tabs(alice_page: Page, fake_openai):
    fake_openai.tokens(60, delay=0.05, hold_after=5)
    send_message(alice_page, "Count for me")
    expect(_assistant(alice_page).locator(".bubble")).to_contain_text("tok2 ")
    other = _second_tab(alice_page, alice_page.url)
    expect(_assistant(other)).to_have_attribute("data-state", "streaming")
    expect(_assistant(other).locator(".bubble")).to_contain_text("tok4")
    fake_openai.released.set()
    for tab in (alice_page, other):
        expect(_assistant(tab)).to_have_attribute("data-state", "complete")
        expect(_assistant(tab).locator(".bubble")).to_have_text(ALL_60)


def test_it_stops_a_reply_from_another_tab(alice_page: Page, fake_openai):
    fake_openai.tokens(200, delay=0.05, hold_after=5)  # never released: only Stop ends it
    send_message(alice_page, "Count slowly")
    expect(_assistant(alice_page).locator(".bubble")).to_contain_text("tok2 ")
    other = _second_tab(alice_page, alice_page.url)
    expect(_assistant(other)).to_have_attribute("data-state", "streaming")

    other.click("[data-action=stop]")

    for tab in (other, alice_page):
        expect(_assistant(tab)).to_have_attribute("data-state", "stopped")
        expect(tab.locator("[data-action=send]")).to_be_visible()
    assert fake_openai.disconnected.wait(5), "the upstream stream was not closed after Stop"
    saved = eventually(lambda: Message.objects.filter(role="assistant", state="stopped").first())
    assert "tok199" not in saved.content
    expect(_assistant(alice_page).locator(".bubble")).to_have_text(saved.content.strip())
