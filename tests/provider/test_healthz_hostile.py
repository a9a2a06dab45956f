"""The web process stays responsive while a hostile upstream streams into a chat (the 100 ms figure is in bench)."""

from __future__ import annotations

import threading

import pytest
import requests

from tests.conftest import ALICE_KEY, credential_create
from tests.fakes.providers import FakeProvider
from tests.streaming import logged_in_session, send

pytestmark = pytest.mark.django_db(transaction=True)


def test_healthz_answers_while_a_hostile_upstream_streams(asgi_server, alice, settings):
    settings.UPSTREAM_MAX_EVENT_BYTES = 256 * 1024 * 1024  # let the junk flow: the point is the loop stays free
    with FakeProvider("hostile", hostile="endless_line", hostile_pause=0.005) as fake:
        settings.OPENAI_BASE_URL = fake.base_url
        credential_create(alice, ALICE_KEY)
        session = logged_in_session(asgi_server.url, "alice")
        done = {}

        def chat() -> None:
            done["events"] = send(session, asgi_server.url, "/chat/send/", "hi")

        thread = threading.Thread(target=chat, daemon=True)
        thread.start()
        assert fake.wait_for_requests(1, timeout=20)
        while fake.sent_bytes < 2 * 1024 * 1024 and thread.is_alive():
            threading.Event().wait(0.01)  # the junk is flowing into the web process
        health = requests.get(f"{asgi_server.url}/healthz", timeout=10)  # a guard, not a measurement
        still_streaming = not fake.client_left.is_set() and not fake.release.is_set()
        fake.release.set()
        thread.join(30)
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert still_streaming  # answered while the hostile upstream was still sending
    assert done["events"].done["state"] in ("error", "incomplete")  # the junk never became a reply


def test_a_provider_echoing_the_key_never_gets_it_shown_or_stored(asgi_server, alice, settings):
    from chat.models import Message, UsageRecord
    from tokens.models import CredentialEvent

    with FakeProvider("openrouter", key=ALICE_KEY) as fake:
        settings.OPENAI_BASE_URL = fake.base_url
        credential_create(alice, ALICE_KEY)
        message = f"Key {ALICE_KEY} has no credit left (Authorization: Bearer {ALICE_KEY})"
        fake.then(text="Partial", error={"error": {"code": 402, "message": message}})
        fake.then(status=401, error={"error": {"message": f"Incorrect API key provided: {ALICE_KEY}"}})
        session = logged_in_session(asgi_server.url, "alice")
        first = send(session, asgi_server.url, "/chat/send/", "hi")
        second = send(session, asgi_server.url, "/chat/send/", "again")
    shown = repr(first.__dict__) + repr(second.__dict__)
    assert "no credit left" in first.done["error"] and "Incorrect API key" in second.done["error"]
    stored = repr(list(Message.objects.values())) + repr(list(UsageRecord.objects.values()))
    stored += repr(list(CredentialEvent.objects.values()))
    assert ALICE_KEY not in shown and ALICE_KEY not in stored


def test_pages_and_healthz_answer_while_a_trickled_model_list_is_waited_on(asgi_server, alice, settings):
    settings.UPSTREAM_ALLOWLIST = ["127.0.0.1"]
    settings.CHECK_TIMEOUT = 60  # the list holds its request a minute; other requests must not wait for it
    with FakeProvider("openai", hostile="trickle_models") as fake:
        credential_create(alice, fake.key, base_url=fake.base_url)
        session = logged_in_session(asgi_server.url, "alice")
        other = logged_in_session(asgi_server.url, "alice")  # its own connection, as another tab would have
        listing = threading.Thread(target=lambda: session.get(f"{asgi_server.url}/chat/models/", timeout=90))
        listing.daemon = True
        listing.start()
        assert fake.wait_for_requests(1, timeout=20)
        # Timeouts are guards against hanging, not measurements: a blocked page would wait the full minute.
        page = other.get(f"{asgi_server.url}/settings/keys/", timeout=20)
        health = requests.get(f"{asgi_server.url}/healthz", timeout=20)
        still_listing = listing.is_alive() and not fake.client_left.is_set()
        fake.close()
    assert page.status_code == 200 and health.status_code == 200
    assert still_listing  # answered while the provider was still trickling its list
