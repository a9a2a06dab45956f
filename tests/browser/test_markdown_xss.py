"""Hostile model output is rendered inert in a real browser; ordinary Markdown still renders.

The page's Content-Security-Policy is bypassed here so that a script that ran would show up:
these tests check the sanitiser itself, not only the CSP behind it.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import log_in, send_message
from tests.conftest import ALICE_KEY, credential_create

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CODE = 'print("hi")'
HOSTILE_REPLY = f"""# Heading One

## Heading Two

- item one
- item two

| Name | Value |
| --- | --- |
| alpha | 1 |
| beta | 2 |

```python
{CODE}
```

<script>window.__pwned=1</script>

<img src=x onerror="window.__pwned=1">

[click](javascript:window.__pwned=1)

[d](data:text/html,<script>alert(1)</script>)

<iframe src="https://example.com"></iframe>

<a href="#" style="position:fixed;top:0;left:0;width:100%;height:100%">x</a>

<svg onload="window.__pwned=1"><circle r="5"/></svg>

![pixel](javascript:window.__pwned=1)

<javascript:window.__pwned=1>

[a safe link](https://example.com/docs)
"""

# Everything a message body must never contain, as (description, count) pairs, computed in the page.
INSPECT_BODIES = """() => {
  const bodies = [...document.querySelectorAll("[data-role] .bubble")];
  const all = bodies.flatMap((body) => [...body.querySelectorAll("*")]);
  const attrs = all.flatMap((el) => [...el.attributes].map((a) => [el.tagName.toLowerCase(), a.name, a.value]));
  return {
    bodies: bodies.length,
    forbiddenTags: all.map((el) => el.tagName.toLowerCase())
      .filter((tag) => ["script", "iframe", "svg", "object", "embed", "style", "form", "input"].includes(tag)),
    handlers: attrs.filter(([, name]) => name.startsWith("on")),
    styles: attrs.filter(([, name]) => name === "style"),
    badUrls: attrs.filter(([, name, value]) => ["href", "src"].includes(name)
      && /^\\s*(javascript|data|vbscript):/i.test(value)),
  };
}"""

WITHOUT_COPY_BUTTONS = """(el) => {
  const copy = el.cloneNode(true);
  copy.querySelectorAll(".copy").forEach((button) => button.remove());
  return copy.innerHTML;
}"""


@pytest.fixture
def context_options() -> dict:
    return {"bypass_csp": True, "permissions": ["clipboard-read", "clipboard-write"]}


@pytest.fixture
def alice_page(page: Page, fake_openai, alice) -> Page:
    credential_create(alice, ALICE_KEY)
    log_in(page, "alice")
    return page


def _assert_inert(page: Page, dialogs) -> None:
    found = page.evaluate(INSPECT_BODIES)
    assert found["bodies"] >= 2
    assert found["forbiddenTags"] == []
    assert found["handlers"] == []
    assert found["styles"] == []
    assert found["badUrls"] == []
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert dialogs.seen == []


def test_it_renders_a_hostile_reply_inert_and_the_markdown_intact(alice_page: Page, fake_openai, dialogs, shoot):
    fake_openai.reply(HOSTILE_REPLY, delay=0.005)

    send_message(alice_page, "Show me everything you can render")

    assistant = alice_page.locator("[data-role=assistant]").last
    expect(assistant).to_have_attribute("data-state", "complete")
    body = assistant.locator(".bubble")
    expect(body.locator("h1")).to_have_text("Heading One")
    expect(body.locator("h2")).to_have_text("Heading Two")
    expect(body.locator("li")).to_have_text(["item one", "item two"])
    expect(body.locator("table th")).to_have_text(["Name", "Value"])
    expect(body.locator("table tbody tr")).to_have_count(2)
    expect(body.locator("pre code")).to_have_text(CODE)
    expect(body.locator("pre .copy")).to_have_count(1)
    _assert_inert(alice_page, dialogs)
    safe_link = body.locator("a", has_text="a safe link")
    expect(safe_link).to_have_attribute("href", "https://example.com/docs")
    expect(safe_link).to_have_attribute("rel", "noopener noreferrer nofollow")
    streamed_html = body.evaluate(WITHOUT_COPY_BUTTONS)
    shoot(alice_page, "07-chat-markdown")

    alice_page.reload()
    assistant = alice_page.locator("[data-role=assistant]").last
    expect(assistant).to_have_attribute("data-state", "complete")
    body = assistant.locator(".bubble")
    expect(body.locator("pre .copy")).to_have_count(1)
    _assert_inert(alice_page, dialogs)
    assert body.evaluate(WITHOUT_COPY_BUTTONS) == streamed_html


def test_it_copies_a_code_block(alice_page: Page, fake_openai):
    fake_openai.reply(f"Run this:\n\n```python\n{CODE}\n```\n")
    send_message(alice_page, "Give me code")

    copy = alice_page.locator("[data-role=assistant] pre .copy")
    copy.click()

    expect(copy).to_have_text("Copied")
    assert alice_page.evaluate("navigator.clipboard.readText()").strip() == CODE


def test_it_shows_the_users_own_markup_as_typed(alice_page: Page, fake_openai, dialogs):
    typed = '<b>hi</b> <img src=x onerror="window.__pwned=1"> **not bold**'
    send_message(alice_page, typed)

    user = alice_page.locator("[data-role=user] .bubble")
    expect(user).to_have_text(typed)
    expect(alice_page.locator("[data-role=assistant]")).to_have_attribute("data-state", "complete")
    expect(user.locator("b, img, strong")).to_have_count(0)
    _assert_inert(alice_page, dialogs)

    alice_page.reload()
    user = alice_page.locator("[data-role=user] .bubble")
    expect(user).to_have_text(typed)
    expect(user.locator("b, img, strong")).to_have_count(0)
    _assert_inert(alice_page, dialogs)


def test_it_keeps_a_long_code_line_inside_the_chat_column(alice_page: Page, fake_openai):
    command = "curl https://api.example.com/v1/things -H 'Authorization: Bearer $TOKEN' " + "-d 'x=1' " * 40
    fake_openai.reply(f"Run:\n\n```sh\n{command}\n```\n")

    send_message(alice_page, "How do I call it?")

    expect(alice_page.locator("[data-role=assistant]")).to_have_attribute("data-state", "complete")
    width = alice_page.viewport_size["width"]
    pre = alice_page.locator("[data-role=assistant] pre").bounding_box()
    send = alice_page.locator("[data-action=send]").bounding_box()
    assert pre is not None and pre["x"] + pre["width"] <= width, "the code block runs off the screen"
    assert send is not None and send["x"] + send["width"] <= width, "the Send button was pushed off the screen"
    assert alice_page.evaluate("document.documentElement.scrollWidth") <= width
