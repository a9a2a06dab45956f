"""Personal keys and access tokens are never stored or logged in plaintext, and never echoed by the API."""

from __future__ import annotations

import logging
import re

import pytest
import requests

from tests.conftest import ALICE_KEY
from tests.streaming import logged_in_session
from tests.test_secrets_never_leak import _every_text_value

pytestmark = pytest.mark.django_db(transaction=True)


def test_it_never_stores_or_logs_a_key_or_token(api, fake_openai, asgi_server, caplog):
    caplog.set_level(logging.DEBUG)
    session = logged_in_session(asgi_server.url, "alice")
    page = session.post(
        f"{asgi_server.url}/settings/api-keys/",
        data={"name": "leak test", "expiry": "never", "csrfmiddlewaretoken": session.cookies["csrftoken"]},
        headers={"Referer": asgi_server.url},
    ).text
    key = re.search(r"data-new-api-key>([^<]+)<", page).group(1)
    token = requests.post(f"{api}/tokens", headers={"Authorization": f"Bearer {key}"}).json()["access_token"]
    fake_openai.error(401, message=f"Incorrect API key provided: {ALICE_KEY}")
    seen = [
        requests.post(
            f"{api}/chat/completions",
            headers={"Authorization": f"Bearer {token}"},
            json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}], "stream": True},
        ).text,
        requests.get(f"{api}/models", headers={"Authorization": f"Bearer {key[:-2]}xx"}).text,
        session.get(f"{asgi_server.url}/settings/api-keys/").text,
    ]

    haystacks = {"responses": "\n".join(seen), "logs": caplog.text, "database": _every_text_value()}
    for where, text in haystacks.items():
        for secret in (key, token, ALICE_KEY):
            assert secret not in text, f"a secret leaked into {where}"
            assert secret[-20:] not in text, f"part of a secret leaked into {where}"
