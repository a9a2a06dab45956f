"""The provider or its token endpoint fails: each ends in a sentence a person understands, and nothing typed is lost.

Provider down, slow before the first token, 5xx, and cut mid-stream, through the live ASGI server; then the page
reopened shows the question and what came of it. tests/chat/test_reply_failures.py holds the finer rules (retries,
429 wait hints, never re-sending after a timeout); this suite asserts the person's side of each fault.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from django.utils.html import escape

from chat.models import Message
from tests.conftest import ALICE_KEY, CLIENT_ID, credential_create, oauth_credential_create, user_create
from tests.streaming import logged_in_session, send
from tokens import tasks
from tokens.models import Credential, CredentialEvent

pytestmark = pytest.mark.django_db(transaction=True)


def _down(fake, settings) -> None:
    settings.OPENAI_BASE_URL = "http://127.0.0.1:9/v1"  # nothing listens on the discard port


def _slow(fake, settings) -> None:
    settings.UPSTREAM_FIRST_TOKEN_TIMEOUT = 1.5
    fake.hang()


def _server_error(fake, settings) -> None:
    fake.error(500, message="Internal error: stack trace at worker-7 <pre>").error(500).error(500)


def _cut(fake, settings) -> None:
    fake.cut("one two three four five six", after_chunks=3)


FAULTS = {
    "down": (_down, "error", "Could not connect", ""),
    "slow": (_slow, "error", "did not answer in time", ""),
    "5xx": (_server_error, "error", "server error (500)", ""),
    "cut": (_cut, "incomplete", "stopped sending", "one two three "),
}


@pytest.mark.parametrize("fault", FAULTS)
def test_a_provider_fault_ends_in_a_plain_message_and_keeps_the_question(fault, asgi_server, fake_openai, settings):
    make, state, says, kept = FAULTS[fault]
    alice = user_create("alice")
    credential_create(alice, ALICE_KEY)
    session = logged_in_session(asgi_server.url, "alice")
    make(fake_openai, settings)
    question = f"What happens when the provider is {fault}?"

    events = send(session, asgi_server.url, "/chat/send/", question)

    assert events.done["state"] == state, events.done
    error = events.done["error"]
    ours, _, theirs = error.partition(" The provider said: ")
    assert says in ours and ours.rstrip().endswith("."), error  # our sentence first, not a code
    assert not theirs or (theirs.startswith("“") and theirs.endswith("”")), error  # theirs only quoted, as text
    assert events.text == kept
    reply = Message.objects.get(role="assistant")
    assert (reply.state, reply.content) == (state, kept)
    page = session.get(f"{asgi_server.url}/chat/{reply.conversation_id}/", timeout=30).text
    assert escape(question) in page  # the question is stored and shown again
    assert escape(says) in page or says in page


def test_the_token_endpoint_down_during_refresh(asgi_server, fake_openai, token_server, local_upstreams):
    """Tokens already issued keep working while the endpoint is down; after they expire, a clear message."""
    token_server.add_client(CLIENT_ID, "secret-0000000000000001")
    fake_openai.authorize = lambda bearer: bearer == "at-still-valid"
    alice = user_create("alice")
    credential = oauth_credential_create(
        alice,
        token_server,
        client_secret="secret-0000000000000001",
        access_token="at-still-valid",
        access_token_expires_at=timezone.now() + timedelta(minutes=3),  # inside the refresh margin: due
    )
    session = logged_in_session(asgi_server.url, "alice")
    token_server.close()  # the identity provider is down

    tasks.refresh_credential(str(credential.pk))  # beat tries, and fails softly
    credential.refresh_from_db()
    assert credential.status == "active" and credential.failure_count == 1
    failed = CredentialEvent.objects.filter(credential_id=credential.pk, kind="refresh_failed").get()
    assert "secret-0000000000000001" not in failed.detail
    still = send(session, asgi_server.url, "/chat/send/", "Still working?")
    assert still.done["state"] == "complete", still.done

    Credential.objects.filter(pk=credential.pk).update(
        access_token_expires_at=timezone.now() - timedelta(seconds=1), retry_at=None
    )
    expired = send(session, asgi_server.url, "/chat/send/", "And now?")

    error = expired.body.get("error", "") or expired.done.get("error", "")
    assert error and error.rstrip().endswith("."), expired
    assert "token" in error.lower(), error
    assert Message.objects.filter(role="user", content="And now?").exists() or expired.status >= 400
    assert "secret-0000000000000001" not in error
