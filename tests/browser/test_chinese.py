"""A Chinese reader's journey (Accept-Language zh-CN, browser in Shanghai): every page, refusal, error and email
in Chinese, every time in Shanghai time. Each page is scanned for English outside a short allowlist.

SCREENSHOTS=1 saves every page, desktop and phone, under screenshots/zh-*.png.
"""

from __future__ import annotations

import re

import pytest
from django.core import mail
from playwright.sync_api import Page, expect

from accounts.models import User
from chat.models import Conversation, UsageRecord
from tests.browser.conftest import send_message, sign_up
from tests.conftest import PASSWORD, user_create
from tokens.models import Credential

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

LI_KEY = "sk-proj-li-000000000000000000000000000000004e2a"
REJECTED_KEY = "sk-proj-rejected-00000000000000000000000000007777"
NEW_PASSWORD = "一个足够长的新密码 2026"
LONG_TITLE = "关于下季度华东区渠道合作伙伴返利政策调整的会议纪要整理与后续待办事项跟进"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 860}

# Words that stay as they are in a Chinese interface: names, protocols, codes, keys on the keyboard.
ALLOWED = {
    "BYOK", "Chat", "API", "OAuth2", "OAuth", "Azure", "OpenAI", "Entra", "Microsoft", "ID", "URL", "URLs", "HTTP",
    "Basic", "CSV", "Token", "GUID", "IANA", "UTC", "SHA", "JSON", "Enter", "Shift", "English", "Ollama", "DeepSeek",
    "OpenRouter", "SDK", "curl", "Python", "README", "Notebook", "byok", "api-version", "v1", "client_secret_basic",
    "client_secret_post", "stream_options", "invalid_grant", "invalid_client",
}  # fmt: skip
VISIBLE_TEXT = """() => {
  const parts = [document.title, document.body.innerText];
  for (const el of document.querySelectorAll("[placeholder], [title], [aria-label], [data-confirm]")) {
    if (el.closest("[hidden], template, [data-english-ok]")) continue;
    parts.push(el.getAttribute("placeholder") || "", el.getAttribute("title") || "",
               el.getAttribute("aria-label") || "", el.getAttribute("data-confirm") || "");
  }
  for (const el of document.querySelectorAll("code, pre, select[name=timezone], [data-english-ok]")) {
    parts.push("\\u0000" + el.innerText);  // marked for removal below: code, zone ids, user data
  }
  return parts;
}"""


def english_words(page: Page, *own: str) -> list[str]:
    """English words on the page outside code, URLs, quoted provider text, the allowlist and `own` (user data)."""
    parts = page.evaluate(VISIBLE_TEXT)
    text = "\n".join(p for p in parts if not p.startswith("\u0000"))
    for excluded in [p[1:] for p in parts if p.startswith("\u0000")]:
        text = text.replace(excluded, " ")
    text = re.sub(r"https?://\S+|\b[A-Z][a-z]+/[\w/+-]+|/[\w/.?=&-]+|“[^”]*”|\bsk-\S+|\b[\w.-]+@[\w.-]+", " ", text)
    for word in own:
        text = re.sub(rf"\b{re.escape(word)}\b", " ", text)
    text = re.sub(r"\b(gpt|o\d|claude|deepseek)[\w.:-]*", " ", text)  # model ids
    return [w for w in re.findall(r"[A-Za-z][A-Za-z_-]*[A-Za-z0-9]|[A-Za-z]{2,}", text) if w not in ALLOWED]


@pytest.fixture
def context_options() -> dict:
    return {"locale": "zh-CN", "timezone_id": "Asia/Shanghai"}


# The number of lines the text of each `label.picker` (the composer's model and key labels) takes.
PICKER_LINES = """() => [...document.querySelectorAll("label.picker")].map((label) => {
  const range = document.createRange(); range.selectNodeContents(label.firstChild);
  return new Set([...range.getClientRects()].map((r) => Math.round(r.top))).size; })"""


@pytest.fixture
def look(shoot):
    """Check a page has no stray English, then (SCREENSHOTS=1) save it at desktop and phone width."""

    def check(page: Page, name: str, *own: str) -> None:
        page.wait_for_load_state()
        assert english_words(page, *own) == [], f"English on {name} ({page.url})"
        assert page.locator("html").get_attribute("lang") == "zh-hans", name
        shoot(page, f"zh-{name}")
        page.set_viewport_size(PHONE)
        shoot(page, f"zh-{name}-phone")
        # A short label beside a field ("模型") must not break between its characters on a narrow screen.
        assert page.evaluate(PICKER_LINES) in ([], [1] * page.locator("label.picker").count()), name
        page.set_viewport_size(DESKTOP)

    return check


def test_a_chinese_reader_meets_no_english_from_sign_up_to_password_reset(page, open_page, fake_openai, look):
    fake_openai.valid_keys = {LI_KEY}
    page.goto("/accounts/signup/")
    expect(page.get_by_role("heading", level=1)).to_have_text("创建账号")
    look(page, "signup")

    # Django's own form errors come in Chinese too.
    page.fill("input[name=username]", "li")
    page.fill("input[name=email]", "li@example.com")
    page.fill("input[name=password1]", PASSWORD)
    page.fill("input[name=password2]", PASSWORD + "x")
    page.click("main form button[type=submit]")
    expect(page.get_by_role("alert").first).to_contain_text("每次输入的密码必须相同")
    look(page, "signup-error", "li")
    page.fill("input[name=password1]", PASSWORD)
    page.fill("input[name=password2]", PASSWORD)
    page.click("main form button[type=submit]")

    # Keys: a missing key, a key the provider refuses, then one it accepts.
    expect(page).to_have_url(re.compile(r"/settings/keys/$"))
    expect(page.locator(".flash-success")).to_contain_text("欢迎")
    look(page, "keys-empty", "li")
    page.click("form[data-credential-form] button[type=submit]")
    expect(page.get_by_role("alert").first).to_contain_text("请粘贴你的 API 密钥")
    page.fill("input[name=api_key]", REJECTED_KEY)
    page.click("form[data-credential-form] button[type=submit]")
    expect(page.get_by_role("alert").first).to_contain_text("服务商拒绝了这个凭据")
    expect(page.get_by_role("alert").first).to_contain_text("凭据未保存")
    look(page, "keys-rejected", "li")
    page.fill("input[name=api_key]", LI_KEY)
    page.click("form[data-credential-form] button[type=submit]")
    expect(page.locator("li[data-credential-status]")).to_have_attribute("data-credential-status", "active")
    expect(page.locator(".flash")).to_contain_text("服务商验证通过")
    look(page, "keys-active", "li")
    credential = Credential.objects.get(user__username="li")
    page.goto(f"/settings/keys/{credential.pk}/")
    expect(page.locator("time").first).to_have_attribute("datetime", re.compile(r"\+08:00$"))
    look(page, "key-detail", "li")

    # Chat: a streamed reply, then an upstream rate limit explained in Chinese.
    fake_openai.reply("你好！有什么可以帮你？", delay=0.01)
    page.goto("/chat/")
    look(page, "chat-empty", "li")
    send_message(page, "你好，介绍一下你自己")
    assistant = page.locator("[data-role=assistant]")
    expect(assistant).to_have_attribute("data-state", "complete")
    fake_openai.error(429, headers={"retry-after": "7"})
    send_message(page, "再说一遍")
    expect(assistant.last).to_have_attribute("data-state", "error")
    expect(assistant.last).to_contain_text("服务商正在限制这个凭据的请求频率（429）")
    look(page, "chat-error", "li")
    Conversation.objects.create(user=User.objects.get(username="li"), title=LONG_TITLE)
    page.reload()
    expect(page.locator(".sidebar-group").first).to_have_text("今天")
    long_link = page.locator(".conversation-link", has_text=LONG_TITLE[:10])
    # One line, cut with an ellipsis, inside the sidebar: never wrapped or pushing the layout wider.
    assert long_link.evaluate("a => a.scrollWidth > a.clientWidth && getComputedStyle(a).textOverflow") == "ellipsis"
    assert long_link.evaluate(
        "a => a.getBoundingClientRect().height < 2.2 * parseFloat(getComputedStyle(a).fontSize) + 20"
    )
    look(page, "chat-reloaded", "li")

    # Profile: the browser's zone was saved on the first visit; times follow it.
    page.goto("/settings/profile/")
    expect(page.locator("select[name=timezone]")).to_have_value("Asia/Shanghai")
    look(page, "profile", "li")

    # Usage: a non-staff reader is refused in Chinese; staff see every call in their own time.
    response = page.goto("/usage/")
    assert response is not None and response.status == 403
    look(page, "usage-forbidden", "li")
    page.goto("/settings/api-keys/")
    look(page, "api-keys", "li")

    user_create("wang", is_staff=True, language="zh-hans", timezone="Asia/Shanghai")
    staff = open_page()
    staff.goto("/accounts/login/")
    staff.fill("input[name=username]", "wang")
    staff.fill("input[name=password]", PASSWORD)
    staff.click("main form button[type=submit]")
    expect(staff).to_have_url(re.compile(r"/chat/$"))
    staff.goto("/usage/")
    rows = staff.locator("tr[data-usage-row][data-user=li]")
    expect(rows).to_have_count(2)
    expect(rows.first.locator("time")).to_have_attribute("datetime", re.compile(r"\+08:00$"))
    assert UsageRecord.objects.count() == 2
    look(staff, "usage-staff", "li", "wang")
    staff.goto("/usage/users/")
    look(staff, "people", "li", "wang")
    staff.goto(f"/usage/users/{User.objects.get(username='li').pk}/")
    look(staff, "person", "li", "wang")
    page.goto("/settings/usage/")
    expect(page.locator("tr[data-usage-row]")).to_have_count(2)
    look(page, "my-usage", "li")

    # Password reset, the email included.
    page.context.clear_cookies()
    page.goto("/accounts/password/reset/")
    look(page, "password-reset")
    page.fill("input[name=email]", "li@example.com")
    page.click("main form button[type=submit]")
    expect(page.get_by_role("heading", level=1)).to_have_text("请查收邮件")
    look(page, "password-reset-sent")
    message = mail.outbox[-1]
    assert message.subject == "重置你的 BYOK Chat 密码"
    assert "li，你好：" in message.body and "有人申请重置你的 BYOK Chat 账号密码" in message.body
    link = re.search(r"https?://\S+?(/accounts/password/reset/key/\S+/)", message.body).group(1)  # on SITE_URL
    page.goto(link)
    expect(page.get_by_role("heading", level=1)).to_have_text("设置新密码")
    look(page, "password-reset-confirm")
    page.fill("input[name=password1]", NEW_PASSWORD)
    page.fill("input[name=password2]", NEW_PASSWORD)
    page.click("main form button[type=submit]")
    expect(page.get_by_role("heading", level=1)).to_have_text("密码已设置")
    look(page, "password-reset-done")
    page.goto("/accounts/login/")
    look(page, "login")
    page.goto("/no-such-page/")
    look(page, "not-found")


def test_a_chinese_sign_up_waiting_for_approval_is_told_so_in_chinese(page, settings, look):
    settings.SIGNUP_MODE = "approval"
    sign_up(page, "zhao")
    expect(page.locator("[data-account-pending]")).to_be_visible()
    look(page, "pending", "zhao")


def test_a_new_chinese_account_is_told_how_to_turn_on_two_factor_and_manages_its_addresses(page, dialogs, look):
    sign_up(page, "wang")
    expect(page).to_have_url(re.compile(r"/settings/keys/$"))

    # Two-factor waits for a confirmed address, and the refusal says where to go.
    page.goto("/accounts/2fa/")
    page.get_by_role("link", name="激活").click()
    expect(page).to_have_url(re.compile(r"/accounts/2fa/$"))
    expect(page.locator(".flash")).to_contain_text("开启两步验证前，请先确认你的电子邮箱地址")
    look(page, "2fa-unconfirmed-email", "wang")

    page.goto("/accounts/email/")
    expect(page.get_by_role("heading", level=1)).to_have_text("电子邮箱地址")
    expect(page.locator("main")).not_to_contain_text("您")
    look(page, "email-addresses", "wang")

    dialogs.accept = True
    page.fill("input[name=email]:not([type=radio])", "wang.work@example.com")
    page.get_by_role("button", name="添加", exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("确认是你本人")  # a new address needs the password again
    look(page, "reauthenticate", "wang")
    page.fill("input[name=password]", PASSWORD)
    page.get_by_role("button", name="继续").click()
    expect(page.locator("main")).to_contain_text("wang.work@example.com")
    page.get_by_label(re.compile("wang@example.com")).check()
    page.get_by_role("button", name="移除").click()
    expect(page.locator(".flash").last).to_contain_text("wang@example.com 是你的主地址，不能移除")
    page.get_by_label(re.compile("wang.work@example.com")).check()
    page.get_by_role("button", name="移除").click()
    expect(page.locator(".flash").last).to_contain_text("已从你的账号中移除 wang.work@example.com")
    assert dialogs.seen[-1] == ("confirm", "移除选中的电子邮箱地址？")
    look(page, "email-removed", "wang")
