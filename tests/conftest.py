from __future__ import annotations

import pytest
from django.conf import settings as django_settings
from django.core.cache import cache, caches
from django.db import connections

from accounts.models import User
from tests.asgi_server import AsgiLiveServer
from tests.fakes.oauth import FakeTokenServer
from tests.fakes.openai import FakeOpenAI
from tests.fakes.providers import FakeProvider
from tokens.models import Credential, Kind, Status
from tokens.services import mask

pytest_plugins = ["tests.secret_scan"]

ALICE_KEY = "sk-alice-test-key-000000000000000000000001"
BOB_KEY = "sk-bob-test-key-0000000000000000000000000002"
PASSWORD = "correct horse battery staple"

# Server and worker threads must not keep connections open past a test, or the test database cannot be dropped.
django_settings.DATABASES["default"]["CONN_MAX_AGE"] = 0


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_teardown(item):
    """End the replies a test started on the process's background loop (a sync test client's) before the test's
    fixtures are torn down: one still saving while the database is flushed deadlocked the flush's TRUNCATE."""
    from chat import relay

    relay._stop_background_replies()


@pytest.fixture(scope="session", autouse=True)
def _release_database_sessions(django_db_setup, django_db_blocker):
    """End connections that server and worker threads left open, so the test database can be dropped."""
    yield
    with django_db_blocker.unblock():
        connection = connections["default"]
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
        connection.close()
        if getattr(connection, "pool", None) is not None:
            connection.close_pool()


@pytest.fixture(autouse=True)
def _test_settings(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.EMAIL_BACKEND = "tests.secret_scan.ScanningEmailBackend"  # locmem (mail.outbox), scanned
    settings.SECURE_SSL_REDIRECT = False
    if not settings.REDIS_URL:
        settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}} | {
            "local": settings.CACHES["local"]
        }
    cache.clear()  # with REDIS_URL this flushes the test run's own Redis database
    caches["local"].clear()  # rows a flushed or rolled-back database no longer has
    yield
    cache.clear()
    caches["local"].clear()


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


# Credential lifecycle (tokens): OAuth2 credentials, eager Celery, PostgreSQL-only tests.

CLIENT_ID, CLIENT_SECRET = "alice-app", "alice-client-secret-0000000001"


@pytest.fixture
def local_upstreams(settings):
    """Let user-typed URLs point at the fakes on 127.0.0.1 (the SSRF guard refuses them otherwise)."""
    settings.UPSTREAM_ALLOWLIST = ["127.0.0.1"]
    return settings


@pytest.fixture
def provider(alice, local_upstreams):
    """Alice's credential on the "openai" provider personality (tests/fakes/providers.py), scripted per test."""
    with FakeProvider("openai") as fake:
        credential_create(alice, fake.key, base_url=fake.base_url)
        yield fake


@pytest.fixture
def oauth_setup(token_server, fake_openai, local_upstreams):
    """A token server with alice's client, and an OpenAI fake that accepts only its live access tokens."""
    token_server.add_client(CLIENT_ID, CLIENT_SECRET)
    fake_openai.authorize = token_server.is_valid_access_token
    return token_server


def oauth_credential_create(user: User, token_server: FakeTokenServer, **fields) -> Credential:
    """Store an OAuth2 credential directly, as if it had been checked and saved (no token yet, so it is due)."""
    kind = fields.pop("kind", Kind.CLIENT_CREDENTIALS)
    credential = Credential(
        user=user,
        name=fields.pop("name", "Gateway"),
        kind=kind,
        status=fields.pop("status", Status.ACTIVE),
        token_url=token_server.token_url,
        client_id=fields.pop("client_id", CLIENT_ID),
        is_default=fields.pop("is_default", not user.credentials.exists()),
        hint="…0001",
        **{k: v for k, v in fields.items() if k not in ("client_secret", "refresh_token", "access_token")},
    )
    credential.client_secret = fields.get("client_secret", CLIENT_SECRET)
    credential.refresh_token = fields.get("refresh_token", "")
    credential.access_token = fields.get("access_token", "")
    credential.save()
    return credential


@pytest.fixture
def celery_eager():
    """Run .delay()/.apply_async() in-process, so a beat task's fan-out can be tested without a broker."""
    from project.celery import app

    app.conf.task_always_eager = True
    yield app
    app.conf.task_always_eager = False


@pytest.fixture(autouse=True)
def _postgres_only(request):
    if request.node.get_closest_marker("postgres"):
        from django.db import connection

        if connection.vendor != "postgresql":
            pytest.skip("needs PostgreSQL row locks (FOR UPDATE SKIP LOCKED); runs when DATABASE_URL is PostgreSQL")


@pytest.fixture(autouse=True)
def _redis_only(request):
    if request.node.get_closest_marker("redis") and not django_settings.REDIS_URL:
        pytest.skip("needs a Redis server; runs when REDIS_URL is set (CI)")
