from __future__ import annotations

from dataclasses import dataclass

import pytest

from accounts.models import User
from tests.conftest import ALICE_KEY, credential_create
from tokens.api_keys import api_key_create
from tokens.models import ApiKey


@dataclass
class Issued:
    row: ApiKey
    key: str


def key_issue(user: User, **fields) -> Issued:
    row, key = api_key_create(user=user, name=fields.pop("name", "script"), **fields)
    return Issued(row, key)


@pytest.fixture
def alice_key(alice) -> Issued:
    return key_issue(alice)


@pytest.fixture
def api(asgi_server, fake_openai, alice):
    """The live ASGI app with alice holding a provider credential for the fake; returns the /v1 base URL."""
    credential_create(alice, ALICE_KEY)
    return f"{asgi_server.url}/v1"
