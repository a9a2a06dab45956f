"""The database is briefly unavailable: a clear 503 page (or JSON for programs), nothing half-written, and the
site serves again as soon as it is back.

PostgreSQL only: the fault is a database server refusing and ending connections. The embedded SQLite database is a
file inside the web process's own machine; it has no server to lose.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from django.db import connection

from chat.models import Conversation, Message
from tests.conftest import ALICE_KEY, credential_create, user_create
from tests.faults.conftest import database_unavailable, wait_until
from tests.streaming import logged_in_session
from tokens.api_keys import api_key_create
from tokens.models import Credential

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _database_server():
    if connection.vendor != "postgresql":
        pytest.skip("a database server outage needs PostgreSQL (DATABASE_URL); SQLite has no server; runs in CI")


@pytest.fixture
def alice_session(asgi_server, fake_openai):
    alice = user_create("alice")
    credential_create(alice, ALICE_KEY)
    session = logged_in_session(asgi_server.url, "alice")
    session.api_key = api_key_create(user=alice, name="script")[1]
    return session


def _post(session, url: str, data: dict):
    """POST as the pages do: the chat box's fetch asks for an event stream, forms for a page."""
    accept = "text/event-stream" if url.endswith("/send/") else "text/html"
    return session.post(
        url,
        data={**data, "csrfmiddlewaretoken": session.cookies["csrftoken"]},
        headers={"Referer": url, "Accept": accept},
        timeout=30,
    )


def test_it_answers_a_clear_503_and_writes_nothing_while_the_database_is_away(alice_session, asgi_server):
    base = asgi_server.url
    before = (Credential.objects.count(), Conversation.objects.count(), Message.objects.count())

    with database_unavailable(), ThreadPoolExecutor(6) as pool:  # at once: each waits out the pool's timeout
        asked = [
            pool.submit(alice_session.get, f"{base}/chat/", timeout=30),
            pool.submit(alice_session.get, f"{base}/settings/keys/", timeout=30),
            pool.submit(_post, alice_session, f"{base}/settings/keys/", {"kind": "api_key", "api_key": ALICE_KEY}),
            pool.submit(_post, alice_session, f"{base}/chat/send/", {"message": "Are you there?"}),
            pool.submit(alice_session.get, f"{base}/healthz", timeout=30),
            pool.submit(
                alice_session.get,
                f"{base}/v1/models",
                headers={"Authorization": f"Bearer {alice_session.api_key}"},
                timeout=30,
            ),
        ]
        *answers, health, api = [future.result() for future in asked]

    for answer in answers:
        assert answer.status_code == 503, (answer.url, answer.status_code)
        assert "database is unavailable" in answer.text and "try again" in answer.text, answer.text[:300]
        assert "Traceback" not in answer.text
        assert answer.headers.get("Retry-After")
    assert health.status_code == 503, (health.status_code, health.text[:500])
    assert health.json()["database"] is False
    assert api.status_code == 503 and api.json()["error"]["type"] == "server_error", api.text
    assert wait_until(lambda: alice_session.get(f"{base}/chat/", timeout=30).status_code == 200, timeout=15)
    assert (Credential.objects.count(), Conversation.objects.count(), Message.objects.count()) == before


def test_the_503_page_is_translated(asgi_server):
    visitor = requests.Session()
    headers = {"Accept-Language": "zh-Hans", "Accept": "text/html", "Referer": f"{asgi_server.url}/accounts/login/"}
    visitor.get(f"{asgi_server.url}/accounts/login/", headers=headers, timeout=30)
    with database_unavailable():
        page = visitor.post(
            f"{asgi_server.url}/accounts/login/",
            data={"username": "alice", "password": "x", "csrfmiddlewaretoken": visitor.cookies["csrftoken"]},
            headers=headers,
            timeout=30,
        )
    assert page.status_code == 503
    assert 'lang="zh-hans"' in page.text
    assert "数据库" in page.text
