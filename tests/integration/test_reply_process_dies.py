"""A web process killed mid-reply: its reply ends `incomplete`, with the text so far, within a minute."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
import requests
import time_machine
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore
from django.core.management import call_command
from django.db import connection
from django.utils import timezone
from django.utils.crypto import get_random_string

from chat.models import Conversation, Message
from chat.tasks import close_abandoned_replies
from tests.conftest import ALICE_KEY, credential_create
from tests.streaming import open_stream, parse_events

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[2]


def _database_url() -> str:
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    return f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_for(probe, what: str, timeout: float = 20.0):
    """Poll a fact (a server answering, a saved row) until it holds."""
    deadline = time.monotonic() + timeout
    while not (value := probe()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout} s")
        time.sleep(0.05)
    return value


def _session_for(user) -> requests.Session:
    """A logged-in browser session made the way django.contrib.auth.login makes one (the subprocess hashes
    passwords with the production hashers, not the tests' MD5)."""
    store = SessionStore()
    store[SESSION_KEY], store[BACKEND_SESSION_KEY] = str(user.pk), "django.contrib.auth.backends.ModelBackend"
    store[HASH_SESSION_KEY] = user.get_session_auth_hash()
    store.create()
    session = requests.Session()
    session.cookies.update({"sessionid": store.session_key, "csrftoken": get_random_string(32)})
    return session


def _answers(url: str) -> bool:
    try:
        return requests.get(f"{url}/accounts/login/", timeout=10).status_code == 200
    except requests.RequestException:
        return False


@pytest.fixture
def web_process(fake_openai):
    """The app under a real uvicorn subprocess on the test database, with a short lease so it checkpoints often."""
    if connection.vendor == "sqlite":
        call_command("createcachetable", verbosity=0)  # the subprocess's embedded cache
    port = _free_port()
    env = {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "OPENAI_BASE_URL": fake_openai.base_url,
        "CHAT_LEASE_SECONDS": "1.5",
        "LOG_LEVEL": "WARNING",
        "DEBUG": "true",
    }
    command = [sys.executable, "-m", "uvicorn", "project.asgi:application", "--port", str(port), "--no-access-log"]
    process = subprocess.Popen(command, cwd=ROOT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_for(lambda: process.poll() is not None or _answers(url), "the web process answering")
        assert process.poll() is None, "the web process exited at start-up"
        yield process, url
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)


def test_it_closes_the_reply_of_a_killed_web_process_as_incomplete_within_a_minute(web_process, fake_openai, alice):
    process, url = web_process
    credential_create(alice, ALICE_KEY)
    fake_openai.tokens(400, delay=0.05)
    session = _session_for(alice)
    response = open_stream(session, url, "/chat/send/", "Write a long answer")
    seen = parse_events(response.iter_lines(decode_unicode=True), stop_after_tokens=10)
    reply_id = seen.start["assistant_message"]
    # The process saves what it has every lease / 3 while it streams; wait for a checkpoint past what we saw.
    _wait_for(
        lambda: Message.objects.get(pk=reply_id).content.startswith(seen.text),
        "a checkpoint of the text so far",
    )

    process.send_signal(signal.SIGKILL)
    process.wait(10)
    killed_at = timezone.now()
    assert fake_openai.disconnected.wait(10), "the dead process's upstream connection stayed open"

    reply = Message.objects.get(pk=reply_id)
    assert reply.state == "streaming"  # nobody has noticed yet
    # The lease lapses CHAT_LEASE_SECONDS (default 30 s) after the last renewal; beat reaps every 15 s.
    assert Conversation.objects.get(pk=reply.conversation_id).reply_lease_until <= killed_at + timedelta(seconds=2)
    with time_machine.travel(killed_at + timedelta(seconds=settings.CHAT_LEASE_SECONDS + 15)):
        assert close_abandoned_replies() == 1

    reply.refresh_from_db()
    assert reply.state == "incomplete" and "restarted" in reply.error
    everything = "".join(f"tok{i} " for i in range(400))
    assert reply.content.startswith(seen.text) and everything.startswith(reply.content)
    assert len(reply.content) < len(everything)
