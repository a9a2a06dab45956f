from __future__ import annotations

import pytest

from tests.conftest import ALICE_KEY, credential_create
from tests.streaming import logged_in_session


@pytest.fixture
def session(asgi_server, fake_openai, alice):
    """Alice, with an API key, logged in to the live ASGI server."""
    credential_create(alice, ALICE_KEY)
    return logged_in_session(asgi_server.url, "alice")
