"""The chat page as people use it: reading while it streams, versions, input methods, drafts, phone, dark mode."""

from __future__ import annotations

import json
import re

import pytest
from playwright.sync_api import Browser, Page, expect

from accounts.models import User
from chat.models import Conversation, Message, UsageRecord
from tests.browser.conftest import log_in, new_page, send_message
from tests.conftest import ALICE_KEY, credential_create
from tests.fakes.providers import FakeProvider

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PHONE = {"viewport": {"width": 390, "height": 844}, "has_touch": True, "is_mobile": True}


@pytest.fixture
def context_options() -> dict:
    return {"permissions": ["clipboard-read", "clipboard-write"]}


@pytest.fixture
def alice_page(page: Page, fake_openai, alice) -> Page:
    credential_create(alice, ALICE_KEY)
    log_in(page, "alice")
    return page


def _assistant(page: Page):
    return page.locator("[data-role=assistant]").last


# --- Reading while it streams ---------------------------------------------------------------------


def test_it_leaves_a_reader_who_scrolled_up_where_they_are(alice_page: Page, fake_openai):
    fake_openai.reply("", chunks=[f"Paragraph {n}.\n\n" for n in range(120)], delay=0.05)
    send_message(alice_page, "Write a lot")
    expect(_assistant(alice_page).locator(".bubble")).to_contain_text("Paragraph 40.")

    alice_page.locator("#messages").evaluate("(el) => { el.scrollTop = 0; }")
    jump = alice_page.locator("[data-action=jump]")
    expect(jump).to_be_visible()
    alice_page.fill("textarea[name=message]", "I can type my next question meanwhile")
    expect(_assistant(alice_page).locator(".bubble")).to_contain_text("Paragraph 80.")
    assert alice_page.locator("#messages").evaluate("(el) => el.scrollTop") == 0, "the page pulled the reader down"

    jump.click()
    expect(jump).to_be_hidden()
    expect(_assistant(alice_page)).to_have_attribute("data-state", "complete")
    at_bottom = "(el) => el.scrollHeight - el.scrollTop - el.clientHeight < 48"
    assert alice_page.locator("#messages").evaluate(at_bottom)
    expect(alice_page.locator("textarea[name=message]")).to_have_value("I can type my next question meanwhile")


def test_it_announces_the_reply_once_when_it_is_finished(alice_page: Page, fake_openai):
    fake_openai.reply("One two three four five.", delay=0.05)
    alice_page.evaluate("""() => {
      window.__announced = [];
      new MutationObserver(() => { const t = document.getElementById("announcer").textContent;
        if (t) window.__announced.push(t); })
        .observe(document.getElementById("announcer"), {childList: true, characterData: true, subtree: true});
    }""")
    send_message(alice_page, "Count")
    expect(_assistant(alice_page)).to_have_attribute("data-state", "complete")
    expect(alice_page.locator("#announcer")).to_contain_text("One two three four five.")
    assert len(alice_page.evaluate("window.__announced")) == 1
    assert alice_page.locator("#messages[aria-live]").count() == 0  # the stream itself is not read chunk by chunk


# --- Versions, copy, export -----------------------------------------------------------------------


def test_it_keeps_every_version_and_moves_between_them(alice_page: Page, fake_openai):
    fake_openai.reply("First try.").reply("Second try.").reply("Q2 answer.").reply("About Italy.")
    send_message(alice_page, "Tell me about France")
    expect(_assistant(alice_page).locator(".bubble")).to_have_text("First try.")
    alice_page.click("[data-action=regenerate]")
    expect(_assistant(alice_page).locator(".bubble")).to_have_text("Second try.")
    expect(_assistant(alice_page).locator(".version-count")).to_have_text("2 / 2")

    alice_page.click("[data-action=version-previous]")
    expect(_assistant(alice_page).locator(".bubble")).to_have_text("First try.")
    expect(_assistant(alice_page).locator(".version-count")).to_have_text("1 / 2")
    alice_page.click("[data-action=version-next]")
    expect(_assistant(alice_page).locator(".bubble")).to_have_text("Second try.")

    send_message(alice_page, "And the second question?")
    expect(_assistant(alice_page).locator(".bubble")).to_have_text("Q2 answer.")
    first_user = alice_page.locator("[data-role=user]").first
    first_user.locator("[data-action=edit]").click()
    alice_page.fill(".edit-form textarea", "Tell me about Italy")
    alice_page.click("text=Save & send")
    expect(_assistant(alice_page).locator(".bubble")).to_have_text("About Italy.")
    expect(alice_page.locator("[data-role=user]")).to_have_count(1)  # the fork starts at the edited message
    expect(alice_page.locator("[data-role=user]").first.locator(".version-count")).to_have_text("2 / 2")

    alice_page.locator("[data-role=user]").first.locator("[data-action=version-previous]").click()
    expect(alice_page.locator("[data-role=user] .bubble")).to_have_text(
        ["Tell me about France", "And the second question?"]
    )
    assert Message.objects.filter(role="assistant").count() == 4


def test_it_shows_the_usage_of_the_version_in_view(alice_page: Page, fake_openai):
    fake_openai.reply("First try.", prompt_tokens=7, completion_tokens=3)
    fake_openai.reply("Second try.", prompt_tokens=7, completion_tokens=1200)
    send_message(alice_page, "Tell me about France")
    expect(_assistant(alice_page).locator("[data-usage]")).to_contain_text("10 tokens")  # as soon as it ends
    alice_page.click("[data-action=regenerate]")
    expect(_assistant(alice_page).locator(".bubble")).to_have_text("Second try.")
    expect(_assistant(alice_page).locator("[data-usage]")).to_contain_text("1,207 tokens")
    expect(_assistant(alice_page).locator("[data-usage]")).to_have_attribute("title", "7 tokens in, 1,200 out")

    alice_page.reload()
    usage = _assistant(alice_page).locator("[data-usage]")
    expect(usage).to_contain_text("1,207 tokens")
    expect(usage).to_have_attribute("title", "7 tokens in, 1,200 out")
    alice_page.click("[data-action=version-previous]")
    expect(_assistant(alice_page).locator(".bubble")).to_have_text("First try.")
    expect(_assistant(alice_page).locator("[data-usage]")).to_contain_text("10 tokens")
    alice_page.click("[data-action=version-next]")
    expect(_assistant(alice_page).locator("[data-usage]")).to_contain_text("1,207 tokens")
    assert sorted(UsageRecord.objects.values_list("message__content", "total_tokens")) == [
        ("First try.", 10),
        ("Second try.", 1207),
    ]


def test_it_copies_a_whole_message_and_exports_the_conversation(alice_page: Page, fake_openai):
    reply = "## Title\n\nSome **bold** text and `code`."
    fake_openai.reply(reply)
    send_message(alice_page, "Copy me")
    expect(_assistant(alice_page)).to_have_attribute("data-state", "complete")
    _assistant(alice_page).locator("[data-action=copy-message]").click()
    assert alice_page.evaluate("navigator.clipboard.readText()") == reply

    pk = Conversation.objects.get().pk
    markdown = alice_page.request.get(f"/chat/{pk}/export.md")
    assert markdown.ok and "attachment" in markdown.headers["content-disposition"]
    assert "Copy me" in markdown.text() and reply in markdown.text()
    exported = json.loads(alice_page.request.get(f"/chat/{pk}/export.json").text())
    assert [m["content"] for m in exported["messages"]] == ["Copy me", reply]
    assert exported["messages"][1]["parent"] == exported["messages"][0]["id"]


def test_it_refuses_another_users_export(page: Page, alice, bob):
    conversation = Conversation.objects.create(user=alice, title="Private")
    log_in(page, "bob")
    assert page.request.get(f"/chat/{conversation.pk}/export.json").status == 404
    assert page.request.get(f"/chat/{conversation.pk}/export.md").status == 404


# --- Input ----------------------------------------------------------------------------------------

ENTER_DURING_COMPOSITION = """(order) => {
  const box = document.getElementById("message");
  const enter = (composing) => {
    const event = new KeyboardEvent("keydown", {key: "Enter", code: "Enter", isComposing: composing,
                                                bubbles: true, cancelable: true});
    Object.defineProperty(event, "keyCode", {value: 229});
    box.dispatchEvent(event);
    return event.defaultPrevented;
  };
  box.dispatchEvent(new CompositionEvent("compositionstart", {data: ""}));
  box.value = "にほんご";
  let prevented;
  if (order === "chromium") {  // keydown inside the composition, then compositionend
    prevented = enter(true);
    box.dispatchEvent(new CompositionEvent("compositionend", {data: "日本語"}));
  } else {  // Safari: compositionend first, then an Enter keydown with keyCode 229
    box.dispatchEvent(new CompositionEvent("compositionend", {data: "日本語"}));
    prevented = enter(false);
  }
  return prevented;
}"""


@pytest.mark.parametrize("order", ["chromium", "safari"])
def test_it_never_sends_on_the_enter_that_ends_an_input_method_composition(alice_page: Page, fake_openai, order):
    alice_page.focus("textarea[name=message]")
    prevented = alice_page.evaluate(ENTER_DURING_COMPOSITION, order)

    assert prevented is False
    expect(alice_page.locator("[data-role=user]")).to_have_count(0)
    expect(alice_page.locator("textarea[name=message]")).to_have_value("にほんご")
    assert fake_openai.chat_requests == []

    alice_page.keyboard.press("Enter")  # a plain Enter afterwards sends
    expect(alice_page.locator("[data-role=user] .bubble")).to_have_text("にほんご")


def test_it_counts_characters_and_refuses_an_overlong_message_before_sending(alice_page: Page, settings):
    settings.CHAT_MAX_MESSAGE_CHARS = 50
    alice_page.reload()
    counter = alice_page.locator("#composer-count")
    box = alice_page.locator("textarea[name=message]")

    box.fill("x" * 45)
    expect(counter).to_have_text(re.compile(r"45 / 50"))
    box.fill("ü" * 60)
    expect(counter).to_contain_text("too long")
    expect(box).to_have_attribute("aria-invalid", "true")
    expect(alice_page.locator("[data-action=send]")).to_be_disabled()
    box.press("Enter")
    expect(alice_page.locator("[data-role=user]")).to_have_count(0)
    expect(box).to_have_value("ü" * 60)  # nothing cut
    box.fill("short")
    expect(counter).to_be_hidden()
    expect(alice_page.locator("[data-action=send]")).to_be_enabled()


def test_it_clears_drafts_on_log_out(alice_page: Page, bob):
    credential_create(bob, "sk-bob-000000000000000000000000000001")
    alice_page.fill("textarea[name=message]", "alice's secret draft")
    alice_page.reload()
    expect(alice_page.locator("textarea[name=message]")).to_have_value("alice's secret draft")

    alice_page.click("text=Log out")
    expect(alice_page).to_have_url(re.compile(r"/accounts/login/"))
    assert alice_page.evaluate("Object.keys(localStorage).filter((k) => k.startsWith('byok-draft:'))") == []
    log_in(alice_page, "bob")
    expect(alice_page.locator("textarea[name=message]")).to_have_value("")


def test_it_names_the_tab_after_the_conversation_and_has_a_favicon(alice_page: Page, fake_openai):
    expect(alice_page).to_have_title(re.compile(r"^New chat · "))
    send_message(alice_page, "Plan a trip to Kyoto")
    expect(_assistant(alice_page)).to_have_attribute("data-state", "complete")
    expect(alice_page).to_have_title(re.compile(r"^Plan a trip to Kyoto · "))
    icon = alice_page.locator("link[rel=icon]").get_attribute("href")
    assert alice_page.request.get(icon).ok
    assert alice_page.request.get("/favicon.ico").ok


# --- Phone ----------------------------------------------------------------------------------------


def test_it_fits_a_phone(browser: Browser, asgi_server, fake_openai, alice, shoot):
    credential_create(alice, ALICE_KEY)
    Conversation.objects.create(user=alice, title="An older chat")
    table = (
        "| "
        + " | ".join(f"column {n}" for n in range(12))
        + " |\n|"
        + " --- |" * 12
        + "\n| "
        + " | ".join("value" for _ in range(12))
        + " |\n"
    )
    fake_openai.reply("Here:\n\n" + table)
    page = new_page(browser, asgi_server.url, has_touch=True, is_mobile=True)
    page.set_viewport_size(PHONE["viewport"])
    log_in(page, "alice")

    sidebar = page.locator("#sidebar")
    assert sidebar.bounding_box()["x"] + sidebar.bounding_box()["width"] <= 0, "the sidebar takes the screen"
    box = page.locator("textarea[name=message]")
    assert box.bounding_box()["width"] > 300
    box.fill("first line")
    box.press("Enter")  # on a touch screen Enter is a new line; Send sends
    expect(box).to_have_value("first line\n")
    box.type("second line")
    page.locator("[data-action=send]").tap()
    expect(page.locator("[data-role=user] .bubble")).to_have_text("first line\nsecond line")
    expect(_assistant(page)).to_have_attribute("data-state", "complete")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390, "the wide table widened the page"
    scroller = _assistant(page).locator("table")
    assert scroller.evaluate("(el) => el.scrollWidth > el.clientWidth"), "the table should scroll in its own box"
    shoot(page, "phone-chat")

    for target in ["[data-action=send]", "[data-action=open-drawer]", "text=Log out", ".account-link"]:
        size = page.locator(target).bounding_box()
        assert size["height"] >= 44 and size["width"] >= 44, f"{target} is {size}"
        assert size["y"] >= 0 and size["x"] + size["width"] <= 390, f"{target} is off screen"

    page.locator("[data-action=open-drawer]").tap()
    expect(sidebar).to_be_in_viewport()
    link = page.locator(".conversation-link", has_text="An older chat")
    assert link.bounding_box()["height"] >= 44
    shoot(page, "phone-drawer")
    link.tap()
    expect(page).to_have_title(re.compile(r"^An older chat"))
    page.context.close()


# --- Dark mode ------------------------------------------------------------------------------------

BACKGROUND = "getComputedStyle(document.querySelector('.chat-main')).backgroundColor"


def _is_dark(page: Page) -> bool:
    red, green, blue = (int(n) for n in re.findall(r"\d+", page.evaluate(BACKGROUND))[:3])
    return red + green + blue < 200


def test_it_follows_the_system_and_remembers_a_chosen_theme(browser: Browser, asgi_server, alice):
    page = new_page(browser, asgi_server.url, color_scheme="dark")
    log_in(page, "alice")
    assert _is_dark(page)
    toggle = page.locator(".theme-toggle")

    toggle.click()  # system -> light
    expect(page.locator("html")).to_have_attribute("data-theme", "light")
    assert not _is_dark(page)
    assert User.objects.get(username="alice").theme == "light"
    page.reload()
    assert not _is_dark(page)

    toggle.click()  # light -> dark
    expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    assert _is_dark(page)
    page.context.close()

    other = new_page(browser, asgi_server.url, color_scheme="light")  # another device, same person
    log_in(other, "alice")
    assert _is_dark(other)
    other.context.close()


def test_it_shows_saved_thinking_collapsed_and_rendered(alice_page: Page, alice):
    conversation = Conversation.objects.create(user=alice, title="Thoughtful")
    question = Message.objects.create(conversation=conversation, role="user", content="Why?")
    Message.objects.create(
        conversation=conversation,
        role="assistant",
        parent=question,
        reasoning="Consider **both** sides.",
        content="Because.",
    )
    alice_page.goto(f"/chat/{conversation.pk}/")
    thinking = _assistant(alice_page).locator("[data-reasoning]")
    expect(thinking).not_to_have_attribute("open", "")
    thinking.locator("summary").click()
    expect(thinking.locator("strong")).to_have_text("both")
    expect(_assistant(alice_page).locator(".bubble")).to_have_text("Because.")


@pytest.mark.parametrize("personality", ["deepseek", "openrouter"])
def test_it_shows_thinking_live_then_the_answer_and_keeps_it(page: Page, alice, local_upstreams, personality):
    with FakeProvider(personality) as provider:
        credential_create(alice, provider.key, base_url=provider.base_url)
        provider.then(reasoning="Six times **seven** is forty-two.", text="It is 42.", hold_after_reasoning=True)
        log_in(page, "alice")
        send_message(page, "What is six times seven?")

        # The provider has sent its thinking and holds the answer back: the thinking is on the page, open, live.
        reply = _assistant(page)
        thinking = reply.locator("[data-reasoning]")
        expect(thinking.locator("strong")).to_have_text("seven")
        expect(thinking).to_contain_text("is forty-two.")
        expect(thinking).to_have_attribute("open", "")
        expect(reply).to_have_attribute("data-state", "streaming")
        expect(reply.locator(".bubble")).to_have_text("")

        provider.release.set()
        expect(reply).to_have_attribute("data-state", "complete")
        expect(reply.locator(".bubble")).to_have_text("It is 42.")
        expect(thinking).not_to_have_attribute("open", "")  # folded away once the answer is there

        page.reload()
        thinking = _assistant(page).locator("[data-reasoning]")
        thinking.locator("summary").click()
        expect(thinking.locator("strong")).to_have_text("seven")
        expect(_assistant(page).locator(".bubble")).to_have_text("It is 42.")
    saved = Message.objects.get(role="assistant")
    assert saved.reasoning.strip() == "Six times **seven** is forty-two." and saved.content == "It is 42."
