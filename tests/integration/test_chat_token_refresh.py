"""A user chats for hours on an OAuth2 credential and never meets an expired token."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from tests.conftest import CLIENT_ID, oauth_credential_create
from tests.streaming import logged_in_session, send
from tokens import lifecycle, tasks
from tokens.models import Credential, Kind

pytestmark = pytest.mark.django_db(transaction=True)


def test_it_keeps_chat_working_across_refreshes_and_a_beat_outage(
    asgi_server, alice, oauth_setup, fake_openai, celery_eager
):
    refresh_token = oauth_setup.issue_refresh_token(CLIENT_ID)
    oauth_credential_create(alice, oauth_setup, kind=Kind.REFRESH_TOKEN, refresh_token=refresh_token)
    session = logged_in_session(asgi_server.url, "alice")
    start = timezone.now()

    tasks.refresh_due_credentials()  # beat's first pass gives it a token
    first = send(session, asgi_server.url, "/chat/send/", "Hello")
    assert first.done["state"] == "complete"
    bearers = [fake_openai.chat_requests[-1].bearer]

    # 58 minutes on: inside the refresh margin, beat refreshes before the token runs out.
    with time_machine.travel(start + timedelta(minutes=58), tick=True):
        assert tasks.refresh_due_credentials() == 1
        assert send(session, asgi_server.url, "/chat/send/", "Still there?").done["state"] == "complete"
        bearers.append(fake_openai.chat_requests[-1].bearer)

    # Three hours on and beat was down all along: chat refreshes inline, once, and the reply still comes.
    with time_machine.travel(start + timedelta(hours=3), tick=True):
        assert not oauth_setup.is_valid_access_token(bearers[-1])
        events = send(session, asgi_server.url, "/chat/send/", "And now?")
        assert events.done["state"] == "complete", events
        bearers.append(fake_openai.chat_requests[-1].bearer)

    assert len(set(bearers)) == 3  # a new access token each time, none of them expired when used
    assert all(uses == 1 for uses in oauth_setup.refresh_token_uses.values())
    assert len(oauth_setup.refresh_token_uses) == 3


def test_it_tells_the_user_plainly_when_the_credential_needs_attention(asgi_server, alice, oauth_setup, fake_openai):
    credential = oauth_credential_create(alice, oauth_setup, kind=Kind.REFRESH_TOKEN, refresh_token="rt_revoked")
    lifecycle.credential_refresh(credential_id=credential.pk)
    assert Credential.objects.get(pk=credential.pk).status == "needs_attention"
    session = logged_in_session(asgi_server.url, "alice")

    events = send(session, asgi_server.url, "/chat/send/", "Hello?")

    message = events.body.get("error", "") or events.done.get("error", "")
    assert "needs attention" in message and "keys page" in message
    assert fake_openai.chat_requests == []
