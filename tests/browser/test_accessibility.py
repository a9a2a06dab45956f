"""axe-core on every page of the app, light and dark, desktop and phone: no serious or critical violations.

axe-core is vendored for tests only (tests/browser/vendor/axe.min.js, from the npm package, MPL-2.0).
The page's CSP is bypassed so the test can inject it; the app's own pages are what is checked.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page

from chat.models import Conversation, Message
from tests.browser.conftest import log_in, new_page
from tests.conftest import ALICE_KEY, credential_create

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

AXE = Path(__file__).parent / "vendor" / "axe.min.js"
RUN_AXE = """async () => {
  const result = await axe.run(document, { resultTypes: ["violations"] });
  return result.violations
    .filter((v) => ["serious", "critical"].includes(v.impact))
    .map((v) => ({ id: v.id, impact: v.impact, help: v.help,
                   targets: v.nodes.slice(0, 3).map((n) => n.target.join(" ")) }));
}"""
ANONYMOUS = [
    "/accounts/login/",
    "/accounts/signup/",
    "/accounts/password/reset/",
    "/accounts/password/reset/done/",
    "/accounts/password/reset/key/1-not-a-token/",  # the expired-link page
    "/accounts/password/reset/key/done/",
]
SIGNED_IN = [
    "/chat/",
    "/chat/{conversation}/",
    "/settings/keys/",
    "/settings/keys/{credential}/",
    "/accounts/password/change/",
    "/accounts/2fa/",
    "/accounts/2fa/totp/activate/",
    "/accounts/email/",
    "/settings/profile/",
    "/settings/api-keys/",
    "/settings/usage/",
    "/chat/999999/",  # the 404 page
]
STAFF = ["/usage/", "/usage/users/", "/usage/users/{alice}/"]


def _conversation(user) -> Conversation:
    """A conversation with everything the page can show: versions, thinking, code, math, a table, a stop."""
    conversation = Conversation.objects.create(user=user, title="Everything at once", model="gpt-4o-mini")
    question = Message.objects.create(conversation=conversation, role="user", content="Show me everything")
    Message.objects.create(conversation=conversation, role="assistant", content="An earlier answer.", parent=question)
    Message.objects.create(
        conversation=conversation,
        role="assistant",
        parent=question,
        reasoning="First I think about **tables**.",
        content="## Result\n\n| a | b |\n| - | -: |\n| 1 | 2 |\n\n```python\nprint('hi')\n```\n\n\\(A = \\pi r^2\\)\n",
    )
    Message.objects.create(conversation=conversation, role="user", content="And then?")
    Message.objects.create(conversation=conversation, role="assistant", content="Half an ans", state="stopped")
    return conversation


def _audit(page: Page, paths: list[str]) -> dict[str, list]:
    found = {}
    for path in paths:
        page.goto(path)
        page.wait_for_load_state()
        page.add_script_tag(path=str(AXE))
        violations = page.evaluate(RUN_AXE)
        h1s = page.locator("h1").count()
        if h1s != 1:
            violations.append({"id": "one-h1", "impact": "serious", "help": f"{h1s} h1 elements", "targets": []})
        if violations:
            found[path] = violations
    return found


@pytest.mark.parametrize(
    "options",
    [
        {"color_scheme": "light"},
        {"color_scheme": "dark"},
        {"color_scheme": "light", "viewport": {"width": 390, "height": 844}, "has_touch": True, "is_mobile": True},
    ],
    ids=["light", "dark", "phone"],
)
def test_it_has_no_serious_accessibility_violations_on_any_page(
    browser: Browser, asgi_server, fake_openai, alice, staff, options
):
    credential = credential_create(alice, ALICE_KEY)
    conversation = _conversation(alice)
    viewport = options.pop("viewport", None)
    found = {}

    page = new_page(browser, asgi_server.url, bypass_csp=True, **options)
    if viewport:
        page.set_viewport_size(viewport)
    found.update(_audit(page, ANONYMOUS))
    log_in(page, "alice")
    paths = [p.format(conversation=conversation.pk, credential=credential.pk) for p in SIGNED_IN]
    found.update(_audit(page, paths))
    page.context.close()

    page = new_page(browser, asgi_server.url, bypass_csp=True, **options)
    if viewport:
        page.set_viewport_size(viewport)
    page.goto("/accounts/login/")
    page.fill("input[name=username]", "staff")
    page.fill("input[name=password]", "correct horse battery staple")
    page.click("button[type=submit]:has-text('Log in')")
    page.wait_for_url("**/chat/")
    found.update(_audit(page, [p.format(alice=alice.pk) for p in STAFF]))
    page.context.close()

    assert found == {}, "\n".join(f"{path}: {v}" for path, violations in found.items() for v in violations)
