from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.core.management import call_command

pytestmark = pytest.mark.django_db


def test_it_reports_healthy_services(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": True, "broker": True}


def test_it_reports_an_unreachable_broker(client, settings):
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:9/0"
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["broker"] is False


def test_it_has_no_pending_migrations():
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)


@pytest.mark.django_db(transaction=True)
def test_it_answers_while_the_loops_shared_threads_are_busy():
    """Reply saves run on the event loop's default thread pool; the check must not queue behind them (a hostile
    upstream's replies being counted and saved held it for seconds in bench/bench_provider.py)."""
    from django.test import RequestFactory

    from project.views import healthz

    async def probe() -> int:
        loop, gate = asyncio.get_running_loop(), threading.Event()
        loop.set_default_executor(ThreadPoolExecutor(1))
        busy = loop.run_in_executor(None, gate.wait)  # the one shared thread, taken
        try:
            async with asyncio.timeout(10):  # a guard: queued behind `busy`, the check would wait for ever
                response = await healthz(RequestFactory().get("/healthz"))
        finally:
            gate.set()
            await busy
        return response.status_code

    assert asyncio.run(probe()) == 200
