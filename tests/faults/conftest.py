"""Real services the fault tests own and break: a redis-server process, and the PostgreSQL test database.

Nothing is monkeypatched: Redis is a process this fixture starts, kills and starts again on the same port; the
database is made unavailable by PostgreSQL itself (connections refused and ended). The providers and token
endpoints are the local fakes of tests/fakes, stopped or scripted to fail.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator

import pytest
import redis
from django.db import connection
from kombu import pools as kombu_pools

from project.celery import app as celery_app


def wait_until(condition: Callable[[], bool], timeout: float = 20.0, every: float = 0.05) -> bool:
    """Poll condition until it holds or timeout seconds pass (for state in other processes and threads)."""
    tick = threading.Event()
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        tick.wait(every)
    return True


class RedisServer:
    """A redis-server of our own on a free port, which the test can stop and start again on that port."""

    def __init__(self) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def _answers(self) -> bool:
        try:
            return redis.Redis(port=self.port, socket_connect_timeout=0.2).ping()
        except redis.RedisError:
            return False

    def start(self) -> RedisServer:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        assert wait_until(self._answers, timeout=10), "redis-server did not start"
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()  # an outage, not a polite shutdown
            self.process.wait(10)
            self.process = None


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        pytest.skip("needs the redis-server program (Debian package redis-server); CI has it")
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture
def redis_site(settings, redis_server, monkeypatch) -> RedisServer:
    """The production configuration, on our own Redis: cache, cached sessions, reply feed and Celery broker."""
    settings.REDIS_URL = f"{redis_server.url}/0"
    settings.CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": f"{redis_server.url}/0",
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.5, "SOCKET_TIMEOUT": 0.5, "IGNORE_EXCEPTIONS": True},
        },
        "local": settings.CACHES["local"],
    }
    settings.SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"
    previous = celery_app.conf.broker_url
    settings.CELERY_BROKER_URL = f"{redis_server.url}/1"
    monkeypatch.setenv("CELERY_BROKER_URL", settings.CELERY_BROKER_URL)  # Celery prefers it to its own conf
    _broker_use(settings.CELERY_BROKER_URL)
    yield redis_server
    monkeypatch.undo()
    _broker_use(previous)


def _broker_use(url: str) -> None:
    """Point the Celery app at another broker, dropping its connection pools as Celery does after a fork."""
    if celery_app._pool is not None:
        celery_app._pool.force_close_all()
    celery_app._pool = None
    celery_app.amqp._producer_pool = None
    # kombu keeps producer pools in a process-wide registry keyed by connection; one left there still holds the
    # closed connection pool, and the next task sent to that broker fails with "Acquire on closed pool".
    kombu_pools.reset()
    celery_app.conf.broker_url = url


@contextlib.contextmanager
def database_unavailable() -> Iterator[None]:
    """PostgreSQL refuses new connections to the test database and ends the open ones; restored on exit."""
    name = connection.settings_dict["NAME"]
    admin = connection.copy()  # a connection of our own, to the maintenance database
    admin.settings_dict = {**connection.settings_dict, "NAME": "postgres", "OPTIONS": {}}
    with admin.cursor() as cursor:
        cursor.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            [name],
        )
    try:
        yield
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        admin.close()
        connection.close()  # the test's own connection was ended too; the pool checks and replaces it
