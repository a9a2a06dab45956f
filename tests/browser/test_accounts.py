"""Accounts in a real browser: two-factor set-up and log-in, single sign-on; screenshots in both themes and sizes."""

from __future__ import annotations

import copy
import re
import time

import pytest
import time_machine
from playwright.sync_api import Page, expect

from project.settings import oidc_providers
from tests.accounts.totp import totp_code
from tests.browser.conftest import log_in
from tests.conftest import PASSWORD
from tests.fakes.oidc import FakeOIDCProvider

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 860}


@pytest.fixture
def shoot_all(shoot):
    """Screenshot a page at desktop and phone width, in light and dark colours."""

    def take(page: Page, name: str) -> None:
        for scheme in ("light", "dark"):
            page.emulate_media(color_scheme=scheme)
            for size, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
                page.set_viewport_size(viewport)
                shoot(page, f"accounts-{name}-{size}-{scheme}")
        page.emulate_media(color_scheme="light")
        page.set_viewport_size(DESKTOP)

    return take


def test_login_and_signup_pages(page: Page, shoot_all):
    page.goto("/accounts/login/")
    expect(page.locator("input[name=username]")).to_be_visible()
    shoot_all(page, "login")
    page.goto("/accounts/signup/")
    for name in ("username", "email", "password1", "password2"):
        expect(page.locator(f"input[name={name}]")).to_be_visible()
    shoot_all(page, "signup")


def test_two_factor_from_the_profile_to_the_next_log_in(page: Page, alice, shoot_all):
    log_in(page, "alice")
    page.goto("/settings/profile/")
    page.click("a[data-link=two-factor]")
    expect(page).to_have_url(re.compile(r"/accounts/2fa/$"))
    shoot_all(page, "2fa-index")
    page.click("main a[href='/accounts/2fa/totp/activate/'], main button:has-text('Activate')")
    expect(page).to_have_url(re.compile(r"/accounts/reauthenticate/"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Confirm it's you")
    shoot_all(page, "2fa-reauthenticate")
    page.fill("input[name=password]", PASSWORD)
    page.click("main form button[type=submit]")
    expect(page).to_have_url(re.compile(r"/accounts/2fa/totp/activate/$"))
    secret = page.locator("[data-totp-secret]").inner_text().strip()
    assert re.fullmatch(r"[A-Z2-7]{16,}", secret)
    shoot_all(page, "2fa-activate")
    page.fill("input[name=code]", "000000")
    page.click("main form button[type=submit]")
    expect(page.get_by_role("alert").first).to_contain_text("check that your phone sets its clock automatically")
    with time_machine.travel(time.time(), tick=False):  # the code and its check in one 30 s period
        page.fill("input[name=code]", totp_code(secret))
        page.click("main form button[type=submit]")
        expect(page).to_have_url(re.compile(r"/accounts/2fa/recovery-codes/$"))
    shoot_all(page, "2fa-recovery-codes")

    page.context.clear_cookies()
    page.goto("/accounts/login/")
    page.fill("input[name=username]", "alice")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]:has-text('Log in')")
    expect(page).to_have_url(re.compile(r"/accounts/2fa/authenticate/$"))
    expect(page.locator("input[name=code]")).to_be_visible()
    shoot_all(page, "2fa-code")
    with time_machine.travel(time.time() + 60, tick=False):  # past the activation's code and its tolerance
        page.fill("input[name=code]", totp_code(secret))
        page.click("main form button[type=submit]")
        expect(page).to_have_url(re.compile(r"/chat/$"))


def test_sign_in_with_the_identity_provider(page: Page, settings, shoot_all):
    with FakeOIDCProvider() as idp:
        settings.SOCIALACCOUNT_PROVIDERS = oidc_providers(
            provider_id="corp",
            name="Corp SSO",
            server_url=idp.url,
            client_id=idp.client_id,
            client_secret=idp.client_secret,
        )
        csp = copy.deepcopy(settings.CONTENT_SECURITY_POLICY)
        csp["DIRECTIVES"]["form-action"].append(idp.url)  # as settings.py adds OIDC_SERVER_URL's origin
        settings.CONTENT_SECURITY_POLICY = csp
        page.goto("/accounts/login/")
        button = page.get_by_role("button", name="Sign in with Corp SSO")
        expect(button).to_be_visible()
        shoot_all(page, "login-sso")
        button.click()
        expect(page).to_have_url(re.compile(r"/(chat|settings/keys)/$"))
        expect(page.locator("header .account-link")).to_have_text("erin")
