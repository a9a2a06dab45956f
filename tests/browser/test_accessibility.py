"""Every page, walked from the URLconf, light, dark and phone: axe-core finds no serious or critical violation,
each page has one h1, and on a 390 px phone nothing scrolls sideways and every tap target is at least 44 px.

A route is a page when a GET answers HTML to the first of anonymous, a pending account, alice or staff; id routes
take alice's objects from `_ids`, and an id route it cannot fill fails the walk, so a new page cannot be forgotten.
The states no plain GET reaches are added by hand: the error pages (403, the CSRF 403, 404, 500), sign-up closed,
a valid password-reset link and the admin's log-in.

axe-core is vendored for tests only (tests/browser/vendor/axe.min.js, from the npm package, MPL-2.0). The page's
CSP is bypassed so the test can inject it; the app's own pages are what is checked. With SCREENSHOTS=1 every
audited page is also saved under screenshots/<variant>/ (git-ignored) for a look.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest
from allauth.account.forms import default_token_generator
from allauth.account.utils import user_pk_to_url_str
from django.template.loader import render_to_string
from django.test import Client
from django.urls import reverse
from playwright.sync_api import Browser, Page, expect

from accounts.models import Approval
from chat.models import Conversation, Message, UsageRecord
from chat.usage import usage_write
from tests.browser.conftest import log_in, new_page
from tests.conftest import ALICE_KEY, PASSWORD, credential_create, user_create
from tests.security.routes import every_route
from tokens.api_keys import api_key_create

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

AXE = Path(__file__).parent / "vendor" / "axe.min.js"
RUN_AXE = """async () => {
  const result = await axe.run(document, { resultTypes: ["violations"] });
  return result.violations
    .filter((v) => ["serious", "critical"].includes(v.impact))
    .map((v) => ({ id: v.id, impact: v.impact, help: v.help,
                   targets: v.nodes.slice(0, 3).map((n) => n.target.join(" ")) }));
}"""
# Horizontal overflow, and visible tap targets smaller than 44 x 44 px. A link inside a sentence is exempt
# (WCAG 2.5.8's inline exception): it is as tall as the line it sits in.
PHONE_CHECKS = """(width) => {
  const problems = [];
  const root = document.documentElement;
  if (root.scrollWidth > width || window.innerWidth > width) {
    const wide = [...document.querySelectorAll("body *")]
      .filter((el) => el.getBoundingClientRect().right > width + 1)
      .map((el) => el.tagName.toLowerCase() + (el.className ? "." + el.className : ""));
    problems.push({ id: "overflow", help: `page is ${root.scrollWidth}px wide on a ${width}px screen`,
                    targets: wide.slice(0, 5) });
  }
  const inline = (el) => el.tagName === "A" && getComputedStyle(el).display === "inline"
    && el.parentElement.closest("p, li, td, dd, .muted, .help, small") !== null;
  const controls = "a[href], button, select, summary, input:not([type=hidden]), textarea, [role=button]";
  const small = [...document.querySelectorAll(controls)]
    .filter((el) => {
      const box = el.getBoundingClientRect();
      if (!box.width || !box.height || getComputedStyle(el).visibility === "hidden" || inline(el)) return false;
      // A check box or radio is tapped through its label too: the label is its target when that is larger.
      const label = el.closest("label") || (el.labels && el.labels[0]);
      const target = label && label.getBoundingClientRect().height >= 44 ? label.getBoundingClientRect() : box;
      return target.width < 44 || target.height < 44;
    });
  if (small.length) problems.push({ id: "tap-target", help: `${small.length} targets under 44 px`,
    targets: small.slice(0, 5).map((el) => {
      const box = el.getBoundingClientRect(), text = (el.textContent || el.name || "").trim().slice(0, 20);
      return `${el.tagName.toLowerCase()} "${text}" ${Math.round(box.width)}x${Math.round(box.height)}`;
    }) });
  return problems;
}"""
PERSONAS = ("anonymous", "pending", "alice", "staff")
VARIANTS = {
    "light": {"color_scheme": "light"},
    "dark": {"color_scheme": "dark"},
    "phone": {"color_scheme": "light", "viewport": {"width": 390, "height": 844}, "has_touch": True, "is_mobile": True},
    "phone-dark": {
        "color_scheme": "dark",
        "viewport": {"width": 390, "height": 844},
        "has_touch": True,
        "is_mobile": True,
    },
}


@dataclass
class Site:
    """Alice's objects of every kind a page shows, and the people who look at them."""

    alice: object
    staff: object
    pending: object
    conversation: Conversation
    reply: Message
    credential: object
    api_key: object

    def ids(self, route) -> dict[str, object]:
        """The arguments of an id route, from alice's objects; fails for a route nobody mapped yet."""
        by_prefix = {
            "chat:conversation": {"pk": self.conversation.pk},
            "chat:message": {"pk": self.reply.pk},
            "tokens:credential": {"pk": self.credential.pk},
            "api_keys:api-key": {"pk": self.api_key.pk},
            "usage:user": {"pk": self.alice.pk},
            "account_reset_password_from_key": {"uidb36": "1", "key": "not-a-token"},  # the expired-link page
            "account_confirm_email": {"key": "not-a-key"},  # the bad-link page
            "openid_connect": {"provider_id": "nobody"},  # no such provider: not a page
        }
        found = next((ids for prefix, ids in by_prefix.items() if route.name.startswith(prefix)), None)
        assert found is not None and set(found) == set(route.params), f"map {route.name} ({route.route}) in Site.ids"
        return found


def _conversation(user) -> tuple[Conversation, Message]:
    """A conversation with everything the page can show: versions, thinking, code, math, a table, a stop."""
    conversation = Conversation.objects.create(user=user, title="Everything at once", model="gpt-4o-mini")
    question = Message.objects.create(conversation=conversation, role="user", content="Show me everything")
    Message.objects.create(conversation=conversation, role="assistant", content="An earlier answer.", parent=question)
    reply = Message.objects.create(
        conversation=conversation,
        role="assistant",
        parent=question,
        reasoning="First I think about **tables**.",
        content="## Result\n\n| a | b |\n| - | -: |\n| 1 | 2 |\n\n```python\nprint('hi')\n```\n\n\\(A = \\pi r^2\\)\n",
    )
    UsageRecord.objects.create(
        user=user,
        model="gpt-4o-mini",
        message=reply,
        prompt_tokens=12,
        completion_tokens=1200,
        total_tokens=1212,
        cost_usd=Decimal("0.000734"),
    )  # the version's usage line beside its model
    for n in range(12):  # the usage breakdown's widest row: many calls, most failed, a model without a price
        usage_write(
            user_id=user.pk,
            model="gpt-nonexistent-preview",
            source="web",
            usage={"prompt_tokens": 120_000, "completion_tokens": 9_000},
            status_code=404 if n % 3 else 200,
            error_type="not_found" if n % 3 else "",
            outcome="error" if n % 3 else "complete",
        )
    Message.objects.create(conversation=conversation, role="user", content="And then?")
    Message.objects.create(conversation=conversation, role="assistant", content="Half an ans", state="stopped")
    return conversation, reply


@pytest.fixture
def site(alice, staff) -> Site:
    conversation, reply = _conversation(alice)
    api_key, _secret = api_key_create(user=alice, name="laptop")
    pending = user_create("newcomer", approval=Approval.PENDING)
    return Site(alice, staff, pending, conversation, reply, credential_create(alice, ALICE_KEY), api_key)


def _pages(site: Site) -> dict[str, list[str]]:
    """Persona -> the paths of the URLconf that answer that persona's GET with an HTML page (first persona wins).

    Run in a thread of its own: Playwright's loop runs in the test's, and the test client's async views need none.
    """
    clients = {"anonymous": Client()}
    for persona in PERSONAS[1:]:
        clients[persona] = Client()
        clients[persona].force_login(getattr(site, persona))
    pages: dict[str, list[str]] = {persona: [] for persona in PERSONAS}
    for route in every_route():
        if route.is_api or route.is_admin or route.route == "" or route.name == "healthz":  # a redirect; JSON
            continue
        path = route.url(**site.ids(route)) if route.params else route.url()
        for persona in PERSONAS:
            response = clients[persona].get(path)
            if response.status_code == 200 and response.get("Content-Type", "").startswith("text/html"):
                pages[persona].append(path)
                break
    return pages


def _audit(page: Page, name: str, variant: str, shoot) -> list[dict]:
    page.wait_for_load_state()
    shoot(page, f"{variant}/{name.strip('/').replace('/', '_') or 'root'}")
    page.add_script_tag(path=str(AXE))
    problems = page.evaluate(RUN_AXE)
    h1s = page.locator("h1").count()
    if h1s != 1:
        problems.append({"id": "one-h1", "impact": "serious", "help": f"{h1s} h1 elements", "targets": []})
    if variant.startswith("phone"):
        problems += page.evaluate(PHONE_CHECKS, page.viewport_size["width"])
        if "/admin/" in page.url:  # Django's own admin keeps Django's sizes; it must still fit the screen
            problems = [problem for problem in problems if problem["id"] != "tap-target"]
    return problems


def _visit(page: Page, paths: list[str], variant: str, shoot) -> dict[str, list]:
    found = {}
    for path in paths:
        page.goto(path)
        if problems := _audit(page, path, variant, shoot):
            found[path] = problems
    return found


def _signed_in(browser: Browser, url: str, options: dict, username: str) -> Page:
    page = new_page(browser, url, bypass_csp=True, **options)
    if username == "newcomer":
        page.goto("/accounts/login/")
        page.fill("input[name=username]", username)
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]:has-text('Log in')")
        page.wait_for_url("**/accounts/pending/")
    else:
        log_in(page, username)
    return page


def _states_no_get_reaches(page: Page, variant: str, shoot, settings, site: Site) -> dict[str, list]:
    """The 404 and CSRF-403 pages as alice meets them, the 403 of a staff page, and the 500 page."""
    found = {}
    page.goto("/chat/999999/")
    found["404"] = _audit(page, "404", variant, shoot)
    page.goto("/usage/")
    found["403"] = _audit(page, "403", variant, shoot)
    page.goto("/settings/profile/")
    with page.expect_navigation(wait_until="load"):
        page.evaluate(
            "() => { const f = document.querySelector('form[method=post]'); "
            "f.querySelector('[name=csrfmiddlewaretoken]').value = 'forged'; f.submit(); }"
        )
    expect(page.locator("h1")).to_have_text("Page expired")
    found["403-csrf"] = _audit(page, "403_csrf", variant, shoot)
    page.set_content(render_to_string("500.html"))
    found["500"] = _audit(page, "500", variant, shoot)
    return {name: problems for name, problems in found.items() if problems}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_page_passes_axe_and_fits_a_phone(
    browser: Browser, asgi_server, fake_openai, site, settings, shoot, variant
):
    options = dict(VARIANTS[variant])
    with ThreadPoolExecutor(1) as thread:
        pages = thread.submit(_pages, site).result()
    assert len(pages["anonymous"]) >= 5 and len(pages["alice"]) >= 8 and len(pages["staff"]) >= 3, pages
    assert "/accounts/pending/" in pages["pending"], pages["pending"]
    found = {}

    page = new_page(browser, asgi_server.url, bypass_csp=True, **options)
    found.update(_visit(page, pages["anonymous"] + ["/admin/login/"], variant, shoot))
    key = {"uidb36": user_pk_to_url_str(site.alice), "key": default_token_generator.make_token(site.alice)}
    found.update(_visit(page, [reverse("account_reset_password_from_key", kwargs=key)], variant, shoot))
    settings.SIGNUP_MODE = "closed"
    page.goto("/accounts/signup/")
    if problems := _audit(page, "signup-closed", variant, shoot):
        found["signup closed"] = problems
    page.context.close()

    for persona in ("pending", "alice", "staff"):
        page = _signed_in(browser, asgi_server.url, options, getattr(site, persona).username)
        found.update(_visit(page, pages[persona], variant, shoot))
        if persona == "alice":
            found.update(_states_no_get_reaches(page, variant, shoot, settings, site))
        page.context.close()

    assert found == {}, "\n".join(f"{path}: {v}" for path, problems in found.items() for v in problems)


TEXT_MIDDLE = """(el) => { const range = document.createRange(); range.selectNodeContents(el);
  const box = range.getBoundingClientRect(); return box.top + box.height / 2; }"""


@pytest.mark.parametrize("language", ["en", "zh-hans"])
def test_the_phone_header_lines_up_and_hides_the_skip_link_until_focused(browser: Browser, asgi_server, language):
    user_create("lin", language=language)
    page = new_page(browser, asgi_server.url, viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    log_in(page, "lin")
    expect(page.locator("html")).to_have_attribute("lang", language)
    name, log_out = page.locator(".account-link"), page.locator("[data-logout] button")
    assert abs(name.evaluate(TEXT_MIDDLE) - log_out.evaluate(TEXT_MIDDLE)) < 2  # one line, not the name 10 px higher
    skip = page.locator(".skip-link")
    assert skip.bounding_box()["y"] + skip.bounding_box()["height"] <= 0  # not a sliver of border above the header
    page.keyboard.press("Tab")
    expect(skip).to_be_focused()
    assert skip.bounding_box()["y"] >= 0
    page.context.close()


@pytest.mark.parametrize(
    ("path", "heading"), [("/settings/keys/", "Add a credential"), ("/settings/api-keys/", "Create an API key")]
)
def test_an_empty_list_points_at_the_form_wherever_the_layout_put_it(
    browser: Browser, asgi_server, path: str, heading: str
):
    user_create("ines")
    page = new_page(browser, asgi_server.url, viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    log_in(page, "ines")
    page.goto(path)
    empty = page.locator("p.empty")
    expect(empty).not_to_contain_text("right")  # on a phone the form is below the list, not beside it
    empty.get_by_role("link").click()
    expect(page.get_by_role("heading", name=heading)).to_be_in_viewport()
    page.context.close()
