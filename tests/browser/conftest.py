"""Browser fixtures: one Chromium per test module, a fresh context and page per test, against the real ASGI app.

Playwright's sync API runs an event loop in the test thread, so the Django ORM called from a test
would refuse to run; DJANGO_ALLOW_ASYNC_UNSAFE lets it, as in djangoproject.com's EndToEndTests.

Chromium comes from the system (CHROMIUM_PATH, default /usr/bin/chromium); nothing is downloaded.
``SCREENSHOTS=1 .venv/bin/python -m pytest tests/browser`` also saves full-page PNGs of the main
screens under screenshots/ (git-ignored) for a visual review.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Dialog, Page, expect, sync_playwright

from tests.conftest import PASSWORD

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TIMEOUT_MS = 10_000
SCREENSHOT_DIR = Path(__file__).resolve().parents[2] / "screenshots"

expect.set_options(timeout=TIMEOUT_MS)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Chromium for one test module.

    Module scope, not session: while Playwright runs, its event loop counts as running in this thread,
    so DJANGO_ALLOW_ASYNC_UNSAFE is set for exactly that span and both end before the next module,
    leaving Django's async-safety check on for the rest of the suite.
    """
    path = os.environ.get("CHROMIUM_PATH") or "/usr/bin/chromium"
    if not Path(path).is_file():
        pytest.fail(
            f"Chromium not found at {path}. Install Debian's chromium package (apt-get install chromium) "
            "or point CHROMIUM_PATH at a Chromium binary; the browser tests do not download browsers.",
            pytrace=False,
        )
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=path, headless=True, args=CHROMIUM_ARGS)
            yield browser
            browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@dataclass
class Dialogs:
    """Every alert/confirm/prompt the page opened; confirms are accepted only when a test says so."""

    seen: list[tuple[str, str]] = field(default_factory=list)
    accept: bool = False

    def handle(self, dialog: Dialog) -> None:
        self.seen.append((dialog.type, dialog.message))
        if self.accept:
            dialog.accept()
        else:
            dialog.dismiss()


@pytest.fixture
def dialogs() -> Dialogs:
    return Dialogs()


@pytest.fixture
def context_options() -> dict:
    """Extra browser context options; a module overrides this fixture to change them."""
    return {}


def new_page(browser: Browser, base_url: str, **options) -> Page:
    options.setdefault("viewport", {"width": 1280, "height": 860})
    context = browser.new_context(base_url=base_url, **options)
    context.set_default_timeout(TIMEOUT_MS)
    return context.new_page()


@pytest.fixture
def page(browser: Browser, asgi_server, dialogs: Dialogs, context_options: dict) -> Iterator[Page]:
    page = new_page(browser, asgi_server.url, **context_options)
    context = page.context
    page.on("dialog", dialogs.handle)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert not errors, f"uncaught JavaScript errors on the page: {errors}"


@pytest.fixture
def open_page(browser: Browser, asgi_server, dialogs: Dialogs):
    """Open another page in its own context (another person's browser); closed after the test."""
    pages: list[Page] = []

    def open_() -> Page:
        page = new_page(browser, asgi_server.url)
        page.on("dialog", dialogs.handle)
        pages.append(page)
        return page

    yield open_
    for page in pages:
        page.context.close()


def log_in(page: Page, username: str, password: str = PASSWORD) -> None:
    page.goto("/accounts/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]:has-text('Log in')")
    expect(page).to_have_url(re.compile(r"/chat/$"))
    page.wait_for_load_state()  # chat.js is deferred; let it attach its handlers before typing


def sign_up(page: Page, username: str) -> None:
    """Fill and send the sign-up form as a person would, with <username>@example.com and the test password."""
    page.goto("/accounts/signup/")
    page.fill("input[name=username]", username)
    page.fill("input[name=email]", f"{username}@example.com")
    page.fill("input[name=password1]", PASSWORD)
    page.fill("input[name=password2]", PASSWORD)
    page.click("main form button[type=submit]")


def send_message(page: Page, text: str) -> None:
    page.wait_for_load_state()  # deferred scripts (translations, then chat.js) have run by "load"
    page.fill("textarea[name=message]", text)
    page.click("[data-action=send]")


@pytest.fixture
def shoot():
    """Save a full-page PNG under screenshots/ when SCREENSHOTS=1; otherwise do nothing."""
    enabled = os.environ.get("SCREENSHOTS") == "1"

    def take(page: Page, name: str) -> None:
        if enabled:
            path = SCREENSHOT_DIR / f"{name}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(path), full_page=True, animations="disabled")

    return take


def eventually(probe, *, timeout: float = 5.0, message: str = "condition not met"):
    """Return probe()'s first truthy value, polling a server-side fact (e.g. a saved row) until timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{message} within {timeout} s")
        time.sleep(0.05)
