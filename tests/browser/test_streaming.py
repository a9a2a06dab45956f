"""Streaming in the browser: text arrives progressively, Stop really stops, upstream failures are explained."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from chat.models import Message
from tests.browser.conftest import eventually, log_in, send_message
from tests.conftest import ALICE_KEY, credential_create

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

WORDS = [
    "Streaming ",
    "replies ",
    "should ",
    "appear ",
    "word ",
    "by ",
    "word, ",
    "not ",
    "all ",
    "at ",
    "once ",
    "after ",
    "a ",
    "long ",
    "wait.",
]

# Record what the newest assistant bubble shows at every DOM change, with its state at that moment.
RECORD_SAMPLES = """() => {
  window.__samples = [];
  const list = document.getElementById("messages");
  new MutationObserver(() => {
    const articles = list.querySelectorAll('[data-role="assistant"]');
    const last = articles[articles.length - 1];
    if (!last) return;
    window.__samples.push({state: last.dataset.state, text: last.querySelector(".bubble").textContent});
  }).observe(list, {subtree: true, childList: true, characterData: true, attributes: true});
}"""


@pytest.fixture
def alice_page(page: Page, fake_openai, alice) -> Page:
    credential_create(alice, ALICE_KEY)
    log_in(page, "alice")
    return page


def _assistant(page: Page):
    return page.locator("[data-role=assistant]").last


def _saved_assistant() -> Message:
    """Wait until the server has saved the reply (it is written once, after the stream ends)."""
    return eventually(
        lambda: Message.objects.filter(role="assistant").exclude(state="streaming").first(),
        message="the assistant message was never saved with a final state",
    )


def test_it_shows_the_reply_growing_while_it_streams(alice_page: Page, fake_openai):
    final = "".join(WORDS)
    fake_openai.reply(final, chunks=WORDS, delay=0.15)
    alice_page.evaluate(RECORD_SAMPLES)

    send_message(alice_page, "Show me streaming")

    assistant = _assistant(alice_page)
    expect(assistant).to_have_attribute("data-state", "streaming")
    expect(assistant).to_have_attribute("data-state", "complete")
    expect(assistant.locator(".bubble")).to_have_text(final)

    samples = alice_page.evaluate("window.__samples")
    streamed = [s["text"] for s in samples if s["state"] == "streaming" and s["text"]]
    assert streamed, "no text was visible while the reply was streaming"
    for text in streamed:
        assert final.startswith(text), f"{text!r} is not a prefix of the final reply"
    partials = {text for text in streamed if len(text) < len(final)}
    assert len(partials) >= 5, f"the reply arrived in too few visible steps: {sorted(partials, key=len)}"


def test_it_offers_stop_only_while_a_reply_streams(alice_page: Page, fake_openai):
    fake_openai.tokens(20, delay=0.1)
    send_button, stop_button = alice_page.locator("[data-action=send]"), alice_page.locator("[data-action=stop]")
    expect(send_button).to_be_visible()
    expect(stop_button).to_be_hidden()

    send_message(alice_page, "Count")

    expect(_assistant(alice_page)).to_have_attribute("data-state", "streaming")
    expect(stop_button).to_be_visible()
    expect(send_button).to_be_hidden()
    expect(_assistant(alice_page)).to_have_attribute("data-state", "complete")
    expect(send_button).to_be_visible()
    expect(stop_button).to_be_hidden()


def test_it_stops_the_reply_and_the_upstream_call_and_keeps_the_partial_text(alice_page: Page, fake_openai, shoot):
    fake_openai.tokens(200, delay=0.1)

    send_message(alice_page, "Count slowly")
    assistant = _assistant(alice_page)
    expect(assistant.locator(".bubble")).to_contain_text("tok2 ")
    alice_page.click("[data-action=stop]")

    expect(assistant).to_have_attribute("data-state", "stopped")
    expect(alice_page.locator("[data-action=send]")).to_be_visible()
    shown = assistant.locator(".bubble").inner_text()
    assert shown.startswith("tok0 tok1 tok2") and "tok199" not in shown
    assert fake_openai.disconnected.wait(5), "the upstream stream was not closed after Stop"
    assert fake_openai.completed_streams == 0

    saved = _saved_assistant()
    assert saved.state == "stopped"
    assert saved.content.startswith(shown.strip()) and "tok199" not in saved.content

    alice_page.reload()
    assistant = _assistant(alice_page)
    expect(assistant).to_have_attribute("data-state", "stopped")
    expect(assistant.locator(".bubble")).to_contain_text(shown.strip())
    expect(alice_page.locator("[data-role=user] .bubble")).to_have_text("Count slowly")
    shoot(alice_page, "08b-chat-stopped")


def test_it_marks_a_reply_the_upstream_cut_off_as_incomplete(alice_page: Page, fake_openai):
    fake_openai.cut("The quick brown fox jumps over the lazy dog.", after_chunks=4)

    send_message(alice_page, "Tell me about foxes")

    assistant = _assistant(alice_page)
    expect(assistant).to_have_attribute("data-state", "incomplete")
    expect(assistant.locator(".bubble")).to_have_text("The quick brown fox")
    note = assistant.locator(".msg-note")
    expect(note).to_be_visible()
    expect(note).to_contain_text(re.compile(r"before the reply was finished|cut|interrupt", re.I))

    alice_page.reload()
    assistant = _assistant(alice_page)
    expect(assistant).to_have_attribute("data-state", "incomplete")
    expect(assistant.locator(".bubble")).to_have_text("The quick brown fox")
    expect(assistant.locator(".msg-note")).to_be_visible()


def test_it_explains_an_upstream_rate_limit_and_keeps_the_users_message(alice_page: Page, fake_openai, shoot):
    fake_openai.error(429, headers={"retry-after": "20"})

    send_message(alice_page, "Are we there yet?")

    assistant = _assistant(alice_page)
    expect(assistant).to_have_attribute("data-state", "error")
    note = assistant.locator(".msg-note")
    expect(note).to_contain_text(re.compile(r"rate limit", re.I))
    expect(note).to_contain_text("20")
    expect(note).not_to_contain_text("{")  # a sentence, not the provider's raw JSON
    expect(alice_page.locator("[data-role=user] .bubble")).to_have_text("Are we there yet?")

    alice_page.reload()
    expect(alice_page.locator("[data-role=user] .bubble")).to_have_text("Are we there yet?")
    assistant = _assistant(alice_page)
    expect(assistant).to_have_attribute("data-state", "error")
    expect(assistant.locator(".msg-note")).to_contain_text(re.compile(r"rate limit", re.I))
    shoot(alice_page, "08a-chat-error")
