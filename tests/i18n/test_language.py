"""Choosing the language: Accept-Language, the switcher at /i18n/setlang/, <html lang>, JavaScript strings."""

from __future__ import annotations

import re

import pytest

from tests.conftest import ALICE_KEY, credential_create

pytestmark = pytest.mark.django_db

ZH = {"HTTP_ACCEPT_LANGUAGE": "zh-CN,zh;q=0.9,en;q=0.5"}


def html_lang(response) -> str:
    return re.search(r'<html lang="([^"]+)"', response.content.decode()).group(1)


def test_it_serves_simplified_chinese_to_a_browser_that_asks_for_zh_cn(client):
    response = client.get("/accounts/login/", **ZH)
    page = response.content.decode()
    assert html_lang(response) == "zh-hans"
    assert response["Content-Language"] == "zh-hans"
    assert "<title>登录 · BYOK Chat</title>" in page
    assert "忘记密码？" in page


def test_it_serves_english_when_the_browser_asks_for_english_or_nothing_it_knows(client):
    assert html_lang(client.get("/accounts/login/", HTTP_ACCEPT_LANGUAGE="en-GB")) == "en"
    assert html_lang(client.get("/accounts/login/", HTTP_ACCEPT_LANGUAGE="fr-FR,de;q=0.8")) == "en"


@pytest.mark.parametrize("header", ["zh-Hans", "zh-SG", "zh;q=0.9"])
def test_it_maps_every_simplified_chinese_tag_to_zh_hans(client, header):
    assert html_lang(client.get("/accounts/login/", HTTP_ACCEPT_LANGUAGE=header)) == "zh-hans"


def test_it_shows_the_librarys_own_form_errors_in_chinese(client):
    form = {"username": "carol", "email": "c@example.com", "password1": "a sturdy passphrase 42", "password2": "x"}
    page = client.post("/accounts/signup/", form, **ZH).content.decode()
    assert "每次输入的密码必须相同。" in page  # django-allauth's own catalogue


def test_the_switcher_sets_the_language_for_the_next_pages(client):
    response = client.post("/i18n/setlang/", {"language": "zh-hans", "next": "/accounts/signup/"})
    assert response.status_code == 302 and response["Location"] == "/accounts/signup/"
    page = client.get("/accounts/signup/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "创建账号" in page
    client.post("/i18n/setlang/", {"language": "en", "next": "/accounts/signup/"})
    assert "Create your account" in client.get("/accounts/signup/", **ZH).content.decode()


def test_the_switcher_refuses_an_offsite_next_and_an_unknown_language(client):
    response = client.post("/i18n/setlang/", {"language": "zh-hans", "next": "https://evil.example/"})
    assert response["Location"] == "/"
    client.post("/i18n/setlang/", {"language": "xx", "next": "/"})
    assert html_lang(client.get("/accounts/login/", HTTP_ACCEPT_LANGUAGE="en")) == "zh-hans"


def test_every_page_carries_the_switcher(alice_client, alice):
    credential_create(alice, ALICE_KEY)
    for url in ("/chat/", "/settings/keys/", "/accounts/password/change/"):
        page = alice_client.get(url, **ZH).content.decode()
        assert 'action="/i18n/setlang/"' in page and 'name="language"' in page, url
        assert '<option value="zh-hans" lang="zh-hans" selected>简体中文</option>' in page, url


def test_the_javascript_catalogue_has_the_chat_pages_strings(client):
    response = client.get("/i18n/js/", **ZH)
    assert response.status_code == 200 and response["Content-Type"].startswith("text/javascript")
    body = response.content.decode()
    assert '"Copy": "\\u590d\\u5236"' in body or '"Copy": "复制"' in body


def test_the_chat_page_loads_the_catalogue_before_chat_js(alice_client):
    page = alice_client.get("/chat/", **ZH).content.decode()
    assert page.index('src="/i18n/js/"') < page.index("chat/chat.js")
