"""The SSRF guard on user-typed URLs: at save (check_url) and at connect time (guarded transports)."""

from __future__ import annotations

import pytest
from django.utils import translation

from tests.conftest import CLIENT_ID, CLIENT_SECRET
from tokens import oauth, provider
from tokens.ssrf import UnsafeURL, check_url


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://api.example.com/v1", "Only https:// URLs are allowed."),
        ("ftp://api.example.com/v1", "Enter a full URL starting with https://."),
        ("https://user:pw@api.example.com/v1", "Leave user names and passwords out of the URL."),
        ("https://127.0.0.1/v1", "127.0.0.1 resolves to a private or reserved address (127.0.0.1)"),
        ("https://localhost/v1", "localhost resolves to a private or reserved address"),
        ("https://[::1]/v1", "resolves to a private or reserved address (::1)"),
        ("https://10.0.0.8/v1", "(10.0.0.8)"),
        ("https://172.16.4.4/v1", "(172.16.4.4)"),
        ("https://192.168.1.10/v1", "(192.168.1.10)"),
        ("https://169.254.169.254/latest/meta-data", "(169.254.169.254)"),
        ("https://[fe80::1]/v1", "(fe80::1)"),
        ("https://[::ffff:127.0.0.1]/v1", "(::ffff:127.0.0.1)"),
        ("https://metadata.google.internal/computeMetadata", "Cloud metadata addresses are not allowed."),
        ("https://0.0.0.0/v1", "(0.0.0.0)"),
    ],
)
def test_it_refuses_unsafe_urls_with_a_clear_reason(url, message):
    with pytest.raises(UnsafeURL) as caught:
        check_url(url)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("url", "hinted"),
    [
        ("http://api.example.com/v1", True),
        ("https://127.0.0.1/v1", True),
        ("https://192.168.1.10/v1", True),
        ("https://169.254.169.254/latest/meta-data", False),
        ("https://[::ffff:169.254.169.254]/v1", False),
        ("https://metadata.google.internal/computeMetadata", False),
    ],
)
def test_it_says_how_a_local_server_can_be_allowed_except_for_metadata(url, hinted):
    with pytest.raises(UnsafeURL) as caught:
        check_url(url)
    assert ("administrator adds its host name to UPSTREAM_ALLOWLIST" in str(caught.value)) is hinted


def test_it_refuses_in_the_readers_language():
    with translation.override("zh-hans"), pytest.raises(UnsafeURL) as caught:
        check_url("http://localhost:11434")
    assert str(caught.value).startswith("只允许使用 https:// 地址。")
    assert "需要管理员把它的主机名加入 UPSTREAM_ALLOWLIST 后才能使用" in str(caught.value)


def test_it_accepts_a_public_https_address():
    assert check_url("https://8.8.8.8/v1/") == "https://8.8.8.8/v1"


def test_it_lets_the_allowlist_through(settings):
    settings.UPSTREAM_ALLOWLIST = ["127.0.0.1", "localhost"]
    assert check_url("http://127.0.0.1:8080/v1") == "http://127.0.0.1:8080/v1"
    assert check_url("https://localhost/v1") == "https://localhost/v1"
    with pytest.raises(UnsafeURL):
        check_url("https://10.0.0.8/v1")  # only the listed hosts


def test_it_lets_everything_through_with_allow_insecure_upstreams(settings):
    settings.ALLOW_INSECURE_UPSTREAMS = True
    assert check_url("http://10.0.0.8:11434/v1") == "http://10.0.0.8:11434/v1"


def test_it_refuses_at_connect_time_a_token_url_that_now_resolves_privately(token_server, settings):
    """A URL saved while its host was trusted, then used after: the connection itself is refused."""
    token_server.add_client(CLIENT_ID, CLIENT_SECRET)
    token_url = token_server.token_url.replace("127.0.0.1", "localhost")
    settings.UPSTREAM_ALLOWLIST = ["localhost"]
    assert check_url(token_url) == token_url  # accepted at save
    settings.UPSTREAM_ALLOWLIST = []  # "DNS changed": the name now leads somewhere private
    with pytest.raises(oauth.TokenRejected, match="Token URL refused: localhost resolves to a private"):
        oauth.fetch_client_credentials(
            token_url=token_url,
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            scope="",
            client_auth="client_secret_basic",
        )
    assert token_server.requests == []  # not a byte of the secret left the process


def test_it_refuses_at_connect_time_a_base_url_that_now_resolves_privately(fake_openai, settings):
    base_url = fake_openai.base_url.replace("127.0.0.1", "localhost")
    with pytest.raises(provider.ProviderError, match="localhost resolves to a private"):
        provider.list_models(provider.Bearer("1", base_url, "sk-secret-bearer", guarded=True))
    assert fake_openai.requests == []


def test_it_trusts_the_operators_own_base_url(fake_openai):
    # OPENAI_BASE_URL points at 127.0.0.1 here; the operator configured it, so it is not guarded.
    assert provider.list_models(provider.Bearer("1", fake_openai.base_url, "sk-any", guarded=False))
