from __future__ import annotations

import pytest
from django.core.cache import cache

from accounts.models import User
from tests.asgi_server import AsgiLiveServer
from tests.fakes.oauth import FakeTokenServer
from tests.fakes.openai import FakeOpenAI
from tokens.models import Credential, Kind, Status
from tokens.services import mask

ALICE_KEY = "sk-alice-test-key-000000000000000000000001"
BOB_KEY = "sk-bob-test-key-0000000000000000000000000002"
PASSWORD = "correct horse battery staple"


@pytest.fixture(autouse=True)
def _test_settings(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.SECURE_SSL_REDIRECT = False
    if not settings.REDIS_URL:
        settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    cache.clear()  # with REDIS_URL this flushes the test run's own Redis database
    yield
    cache.clear()


def user_create(username: str, **extra) -> User:
    return User.objects.create_user(username, f"{username}@example.com", PASSWORD, **extra)


def credential_create(user: User, api_key: str, **fields) -> Credential:
    """Store a credential directly, as if it had been checked and saved."""
    credential = Credential(
        user=user,
        name=fields.pop("name", "OpenAI"),
        kind=fields.pop("kind", Kind.API_KEY),
        status=fields.pop("status", Status.ACTIVE),
        hint=mask(api_key),
        is_default=fields.pop("is_default", not user.credentials.exists()),
        **fields,
    )
    credential.api_key = api_key
    credential.save()
    return credential


@pytest.fixture
def alice(db) -> User:
    return user_create("alice")


@pytest.fixture
def bob(db) -> User:
    return user_create("bob")


@pytest.fixture
def staff(db) -> User:
    return user_create("staff", is_staff=True)


@pytest.fixture
def alice_client(client, alice):
    client.force_login(alice)
    return client


@pytest.fixture
def fake_openai(settings):
    """A local OpenAI-compatible server, used as the site's default provider."""
    with FakeOpenAI() as fake:
        settings.OPENAI_BASE_URL = fake.base_url
        yield fake


@pytest.fixture
def token_server():
    with FakeTokenServer() as fake:
        yield fake


@pytest.fixture
def asgi_server(transactional_db):
    """The app under uvicorn on a free port; requests hit the real ASGI stack."""
    server = AsgiLiveServer().start()
    yield server
    server.stop()
