"""Per-address limits count the real peer: X-Forwarded-For is believed only from FORWARDED_ALLOW_IPS."""

from __future__ import annotations

import pytest
import requests

from tests.asgi_server import AsgiLiveServer
from tests.conftest import user_create

pytestmark = pytest.mark.django_db(transaction=True)


def _failed_logins(server_url: str, count: int) -> list[bool]:
    """Whether each of `count` wrong guesses, each from a new forwarded address, was refused as too many."""
    refused = []
    for n in range(count):
        session = requests.Session()
        session.get(f"{server_url}/accounts/login/", timeout=10)
        response = session.post(
            f"{server_url}/accounts/login/",
            data={"username": f"nobody{n}", "password": "guess", "csrfmiddlewaretoken": session.cookies["csrftoken"]},
            headers={"Referer": f"{server_url}/accounts/login/", "X-Forwarded-For": f"203.0.113.{n + 1}"},
            timeout=10,
        )
        refused.append(response.status_code == 429 or "Too many failed login attempts" in response.text)
    return refused


@pytest.fixture
def served(settings, transactional_db):
    settings.ACCOUNT_RATE_LIMITS = {**settings.ACCOUNT_RATE_LIMITS, "login_failed": "3/5m/ip,100/5m/key"}
    user_create("alice")

    def serve(forwarded_allow_ips: list[str]) -> AsgiLiveServer:
        settings.FORWARDED_ALLOW_IPS = forwarded_allow_ips
        return AsgiLiveServer().start()

    servers = []
    yield lambda ips: servers.append(serve(ips)) or servers[-1]
    for server in servers:
        server.stop()


def test_it_ignores_a_rotating_forwarded_for_by_default(served):
    server = served([])
    assert _failed_logins(server.url, 5) == [False, False, False, True, True]


def test_it_believes_forwarded_for_from_a_configured_proxy(served):
    server = served(["127.0.0.1"])
    assert not any(_failed_logins(server.url, 5))
