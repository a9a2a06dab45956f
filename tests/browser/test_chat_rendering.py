"""One renderer for live, stopped and saved replies: what streams in is what a reload shows.

The page renders every assistant message with chat/static/chat/render.js (markdown-it, KaTeX as
MathML, highlight.js, DOMPurify); these tests hold it to that: formatted while streaming, after
Stop and after reload, with identical HTML, math, highlighted code and CJK emphasis.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from chat.models import Message
from tests.browser.conftest import eventually, log_in, send_message
from tests.conftest import ALICE_KEY, credential_create

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

RICH = """## 计划

这是**「重要」**的事，也是*（注意）*的。

The area is \\(A = \\pi r^2\\) and $x^2 + y^2 = z^2$; it costs $5 and $10.

$$E = mc^2$$

\\[\\int_0^1 x\\,dx = \\tfrac12\\]

```python
def area(r):
    return 3.14 * r ** 2
```

| Left | Right |
| :--- | ---: |
| a | 1 |
"""

HTML_WITHOUT_COPY_BUTTONS = """(el) => {
  const copy = el.cloneNode(true);
  copy.querySelectorAll(".copy").forEach((button) => button.remove());
  return copy.innerHTML;
}"""


def _pieces(text: str, size: int = 6) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


@pytest.fixture
def alice_page(page: Page, fake_openai, alice) -> Page:
    credential_create(alice, ALICE_KEY)
    log_in(page, "alice")
    return page


def _check_rich(body) -> None:
    expect(body.locator("h2")).to_have_text("计划")
    expect(body.locator("strong")).to_have_text("「重要」")
    expect(body.locator("em")).to_have_text("（注意）")
    expect(body.locator("math annotation").first).to_have_text("A = \\pi r^2")  # backslashes kept
    expect(body.locator("math")).to_have_count(4)  # \( \), $x^2…$, $$ $$, \[ \]; not "$5 and $10"
    expect(body).to_contain_text("it costs $5 and $10.")
    expect(body.locator("pre code .hljs-keyword").first).to_have_text("def")
    expect(body.locator("td.align-right")).to_have_text("1")
    assert "**「" not in body.inner_text() and "##" not in body.inner_text()


def test_it_formats_while_streaming_and_the_reload_is_identical(alice_page: Page, fake_openai, shoot):
    fake_openai.reply(RICH, chunks=_pieces(RICH), delay=0.03)

    send_message(alice_page, "Plan, please")

    assistant = alice_page.locator("[data-role=assistant]").last
    body = assistant.locator(".bubble")
    expect(body.locator("h2")).to_have_text("计划")
    assert assistant.get_attribute("data-state") == "streaming", "the heading showed only after the reply ended"
    expect(assistant).to_have_attribute("data-state", "complete")
    _check_rich(body)
    live = body.evaluate(HTML_WITHOUT_COPY_BUTTONS)
    shoot(alice_page, "chat-rendering")

    alice_page.reload()
    body = alice_page.locator("[data-role=assistant]").last.locator(".bubble")
    _check_rich(body)
    assert body.evaluate(HTML_WITHOUT_COPY_BUTTONS) == live


def test_it_keeps_the_formatting_after_stop_and_after_reload(alice_page: Page, fake_openai):
    head = "## Steps\n\n1. **First** step\n2. Second step\n\n```js\nconst x = 1;\n```\n\n"
    pieces = [head, *[f"Line {n} of a long tail.\n\n" for n in range(200)]]
    fake_openai.reply("".join(pieces), chunks=pieces, delay=0.15)

    send_message(alice_page, "Steps")
    assistant = alice_page.locator("[data-role=assistant]").last
    body = assistant.locator(".bubble")
    expect(body).to_contain_text("Line 2 of")
    alice_page.click("[data-action=stop]")

    expect(assistant).to_have_attribute("data-state", "stopped")
    expect(body.locator("h2")).to_have_text("Steps")
    expect(body.locator("ol li strong")).to_have_text("First")
    expect(body.locator("pre code .hljs-keyword")).to_have_text("const")
    assert "##" not in body.inner_text()
    stopped = body.evaluate(HTML_WITHOUT_COPY_BUTTONS)
    shown = body.inner_text()
    saved = eventually(lambda: Message.objects.filter(role="assistant", state="stopped").first())

    alice_page.reload()
    body = alice_page.locator("[data-role=assistant]").last.locator(".bubble")
    expect(body.locator("h2")).to_have_text("Steps")
    if saved.content.strip().endswith(shown.strip().splitlines()[-1]):
        assert body.evaluate(HTML_WITHOUT_COPY_BUTTONS) == stopped
    else:  # the server kept a chunk that was on its way when Stop was pressed: the same renderer, more text
        assert body.evaluate(HTML_WITHOUT_COPY_BUTTONS).startswith(stopped.rsplit("<p>", 1)[0])
