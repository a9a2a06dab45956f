"""No database connection is held while a provider or token endpoint is being waited on.

Each fake records, while it handles the request (so while the caller is blocked on the network), whether the
calling thread's database connection is still open. On PostgreSQL with the pool, a closed connection is one
handed back to the pool for other requests (pg_stat_activity cannot tell: the pool keeps its backends). SQLite's
in-memory test database cannot be closed, so these run on PostgreSQL only.
"""

from __future__ import annotations

import pytest
from django.db import connections

from tests.conftest import CLIENT_ID, CLIENT_SECRET, credential_create, oauth_credential_create
from tests.fakes.oauth import FakeTokenServer
from tests.fakes.providers import FakeProvider
from tokens.lifecycle import credential_refresh
from tokens.models import Credential, CredentialEvent
from tokens.services import credential_check

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]


class Watching:
    """Mixin: note whether `caller`'s connection is open each time a request is handled."""

    def watch(self, caller) -> None:
        self.caller, self.held = caller, []

    def handle(self, http, request):
        self.held.append(self.caller.connection is not None)
        super().handle(http, request)


class WatchingProvider(Watching, FakeProvider):
    pass


class WatchingTokenServer(Watching, FakeTokenServer):
    pass


class AnyTokenProvider(WatchingProvider):
    def _authorized(self, request) -> bool:
        return bool(request.bearer)


def test_it_holds_no_connection_during_a_trickled_key_check(alice, local, settings):
    settings.CHECK_TIMEOUT = 1.0
    with WatchingProvider("openai", hostile="trickle_models") as fake:
        credential = credential_create(alice, fake.key, base_url=fake.base_url)
        fake.watch(connections["default"])  # this thread's connection, not a per-thread proxy
        credential_check(credential=credential)
    assert fake.held == [False]
    credential.refresh_from_db()
    assert credential.status == "active"  # a slow provider is not the key's fault: the check is postponed
    assert CredentialEvent.objects.filter(credential_id=credential.pk, detail__contains="in time").exists()


def test_it_holds_no_connection_during_a_refresh(alice, local, settings):
    with WatchingTokenServer() as token_server:
        token_server.add_client(CLIENT_ID, CLIENT_SECRET)
        credential = oauth_credential_create(alice, token_server)
        token_server.watch(connections["default"])  # this thread's connection, not a per-thread proxy
        result = credential_refresh(credential_id=credential.pk, force=True)
    assert result.outcome == "refreshed"
    assert token_server.held == [False]


def test_it_holds_no_connection_while_a_new_oauth_credential_is_checked(alice_client, local):
    with WatchingTokenServer() as token_server, AnyTokenProvider("openai") as fake:
        token_server.add_client(CLIENT_ID, CLIENT_SECRET)
        token_server.watch(connections["default"])  # this thread's connection, not a per-thread proxy
        fake.watch(connections["default"])  # this thread's connection, not a per-thread proxy
        alice_client.post(
            "/settings/keys/",
            {
                "kind": "oauth2_client_credentials",
                "name": "Gateway",
                "token_url": token_server.token_url,
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
                "client_auth": "client_secret_basic",
                "base_url": fake.base_url,
            },
        )
    assert token_server.held == [False]
    assert fake.held == [False]
    assert Credential.objects.count() == 1
