"""Real web processes for tests: the app under uvicorn subprocesses on the test database (and Redis, if set)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore
from django.core.management import call_command
from django.db import connection
from django.utils.crypto import get_random_string

from tests.streaming import wait_for

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


def _answers(url: str) -> bool:
    try:
        return requests.get(f"{url}/accounts/login/", timeout=10).status_code == 200
    except requests.RequestException:
        return False


def session_for(user) -> requests.Session:
    """A logged-in browser session made the way django.contrib.auth.login makes one (the subprocess hashes
    passwords with the production hashers, not the tests' MD5)."""
    store = SessionStore()
    store[SESSION_KEY], store[BACKEND_SESSION_KEY] = str(user.pk), "django.contrib.auth.backends.ModelBackend"
    store[HASH_SESSION_KEY] = user.get_session_auth_hash()
    store.create()
    session = requests.Session()
    session.cookies.update({"sessionid": store.session_key, "csrftoken": get_random_string(32)})
    return session


@contextmanager
def web_process(upstream_url: str, **env: str) -> Iterator[tuple[subprocess.Popen, str]]:
    """Run `uvicorn project.asgi:application` as a child process; yield it and its base URL; kill it after."""
    if connection.vendor == "sqlite":
        call_command("createcachetable", verbosity=0)  # the subprocess's embedded cache
    port = _free_port()
    env = {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "OPENAI_BASE_URL": upstream_url,
        "LOG_LEVEL": "WARNING",
        "DEBUG": "true",
        **env,
    }
    command = [sys.executable, "-m", "uvicorn", "project.asgi:application", "--port", str(port), "--no-access-log"]
    process = subprocess.Popen(command, cwd=ROOT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: process.poll() is not None or _answers(url), "the web process answering", timeout=60)
        assert process.poll() is None, "the web process exited at start-up"
        yield process, url
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)
