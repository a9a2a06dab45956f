"""project.asgi's handlers send Django's request signals on the event loop, once per request, not through a thread."""

from __future__ import annotations

import asyncio
import threading

import pytest
import requests
from django.core import signals

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def heard():
    """(signal name, path or None, ran on the event loop's thread) for each request signal sent while the test runs."""
    calls: list[tuple[str, str | None, bool]] = []
    lock, ended = threading.Lock(), threading.Event()

    def on_the_loop() -> bool:
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # a worker thread (asgiref's sync_to_async) has no running loop
            return False
        return True

    def started(sender, scope=None, **kwargs):
        with lock:
            calls.append(("started", scope and scope["path"], on_the_loop()))

    def finished(sender, **kwargs):
        with lock:
            calls.append(("finished", None, on_the_loop()))
        ended.set()  # after the answer has gone out: the client may hear it first

    signals.request_started.connect(started, weak=False)
    signals.request_finished.connect(finished, weak=False)
    yield calls, ended
    signals.request_started.disconnect(started)
    signals.request_finished.disconnect(finished)


@pytest.mark.parametrize("path", ["/v1/models", "/accounts/login/", "/healthz"])
def test_each_request_sends_started_and_finished_once_on_the_event_loop(asgi_server, heard, path):
    calls, ended = heard
    response = requests.get(f"{asgi_server.url}{path}", timeout=10)
    response.close()

    assert response.status_code in (200, 401)
    assert ended.wait(10)
    assert [name for name, _path, _loop in calls] == ["started", "finished"]
    assert calls[0][1] == path
    assert all(loop for _name, _path, loop in calls), calls
