"""Secret scan over the whole test session: no secret a test created may reach a response, log, row, email or task.

A pytest plugin (loaded by tests/conftest.py). It learns the secrets as tests make them: every credential saved
(API key, client secret, refresh and access token, read through their sealed fields), and every personal API key
and /v1/ access token issued (taken from the one answer that shows it: the new-key page and POST /v1/tokens).
Each text that leaves the product is scanned as it passes, against the secrets known by then:

- HTTP responses of the test client and of the live ASGI server (body and headers; `recording_app` wraps the app),
- log records, through the same redaction filter as the real log handler,
- emails (a locmem backend that also scans), Celery task messages (`before_task_publish`),
- every table's columns, dumped at the end of each test that created a secret.

A leak fails the session, naming the secret's kind, where it was seen and in which test. Scanning is a token match
(one regex pass per text, then set membership), so it adds little to each test.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
from dataclasses import dataclass, field

import pytest
from celery.signals import before_task_publish
from django.core.mail.backends.locmem import EmailBackend
from django.db.models.signals import post_save

TOKEN = re.compile(r"[A-Za-z0-9_\-.~+/]{12,}")
NEW_API_KEY = re.compile(r"data-new-api-key[^>]*>\s*(?:<[^>]+>\s*)*([^<\s]+)")
SEALED_FIELDS = ("api_key", "client_secret", "refresh_token", "access_token")
BODY_LIMIT = 1024 * 1024


@dataclass
class Scan:
    secrets: dict[str, str] = field(default_factory=dict)  # secret -> what it is
    odd: set[str] = field(default_factory=set)  # secrets the token pattern cannot match whole
    leaks: list[str] = field(default_factory=list)
    test: str = ""
    learned_in_test: int = 0

    def learn(self, secret: str, kind: str) -> None:
        if len(secret) < 12 or secret in self.secrets:
            return
        self.secrets[secret] = kind
        self.learned_in_test += 1
        if TOKEN.fullmatch(secret) is None:
            self.odd.add(secret)

    def check(self, text: str, where: str, allowed: frozenset[str] = frozenset()) -> None:
        if not self.secrets or not text:
            return
        found = (set(TOKEN.findall(text)) & self.secrets.keys()) | {s for s in self.odd if s in text}
        for secret in found - allowed:
            self.leaks.append(f"{self.secrets[secret]} …{secret[-4:]} in {where} (test {self.test})")


SCAN = Scan()


def _credential_saved(sender, instance, **kwargs) -> None:
    for name in SEALED_FIELDS:
        secret = getattr(instance, name, None)
        if secret:
            try:
                SCAN.learn(secret.reveal(), f"credential {name}")
            except Exception:  # a row sealed under a key this test removed: nothing to learn
                continue


def _task_published(sender=None, body=None, headers=None, **kwargs) -> None:
    SCAN.check(json.dumps([body, headers], default=str), f"Celery task message {sender}")


def scan_response(method: str, path: str, status: int, headers: list[tuple[str, str]], body: str) -> None:
    """Learn what this answer issues (a new personal API key, a /v1/ access token), then scan the rest of it."""
    issued = set(NEW_API_KEY.findall(body))
    if path.rstrip("/").endswith("/v1/tokens") and status == 200:
        with contextlib.suppress(ValueError, KeyError, TypeError):
            issued.add(json.loads(body)["access_token"])
    for secret in issued:
        SCAN.learn(secret, "personal API key or access token")
    where = f"{method} {path} ({status})"
    SCAN.check("\n".join(f"{k}: {v}" for k, v in headers), f"headers of {where}")
    SCAN.check(body[:BODY_LIMIT], f"body of {where}", allowed=frozenset(issued))


class ScanningEmailBackend(EmailBackend):
    """locmem (mail.outbox) that also scans every message, alternatives included."""

    def send_messages(self, messages):
        for message in messages:
            texts = [message.subject, message.body] + [alt[0] for alt in getattr(message, "alternatives", [])]
            SCAN.check("\n".join(str(t) for t in texts), f"email “{message.subject}” to {message.to}")
        return super().send_messages(messages)


class _LogScan(logging.Handler):
    """Sees each record as the real console handler writes it: through the same redaction filter."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        from project.errors import RedactSecrets

        self.addFilter(RedactSecrets())
        self.formatter = logging.Formatter("%(name)s %(message)s")

    def emit(self, record: logging.LogRecord) -> None:
        SCAN.check(self.format(record), f"log record of {record.name}")


def recording_app(app):
    """Wrap an ASGI app so every answer it sends (headers and body) is scanned."""

    async def recorded(scope, receive, send):
        if scope["type"] != "http":
            return await app(scope, receive, send)
        answer = {"status": 0, "headers": [], "body": bytearray()}

        def watch_body(data: bytes) -> None:
            if len(answer["body"]) < BODY_LIMIT:
                answer["body"] += data

        async def sending(message):
            if message["type"] == "http.response.start":
                answer["status"] = message["status"]
                answer["headers"] = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in message["headers"]]
            elif message["type"] == "http.response.body":
                watch_body(message.get("body", b""))
            await send(message)

        # Bytes a relay writes past `send` (project.asgi.direct_writer) are scanned too.
        sending.__wrapped__ = send  # type: ignore[attr-defined]
        sending.watch_body = watch_body  # type: ignore[attr-defined]

        try:
            await app(scope, receive, sending)
        finally:
            body = answer["body"].decode("utf-8", errors="replace")
            scan_response(scope["method"], scope["path"], answer["status"], answer["headers"], body)

    return recorded


def _dump_every_table() -> str:
    from django.apps import apps
    from django.db import connection

    values: list[str] = []
    with connection.cursor() as cursor:
        for model in apps.get_models(include_auto_created=True):
            if not model._meta.managed:
                continue
            columns = ", ".join(connection.ops.quote_name(f.column) for f in model._meta.concrete_fields)
            cursor.execute(f"SELECT {columns} FROM {connection.ops.quote_name(model._meta.db_table)}")
            values += [f"{value}" for row in cursor.fetchall() for value in row]
    return "\n".join(values)


def _recording_client(client_class) -> None:
    """The test client's answers are scanned too (streamed ones are left to the test that reads them)."""
    request = client_class.request

    def recorded(self, **environ):
        response = request(self, **environ)
        if hasattr(response, "__await__"):
            return response  # AsyncClient: see below
        _scan_test_response(environ, response)
        return response

    async def recorded_async(self, **environ):
        response = await request(self, **environ)
        _scan_test_response(environ, response)
        return response

    client_class.request = recorded_async if client_class.__name__ == "AsyncClient" else recorded


def _scan_test_response(environ: dict, response) -> None:
    if response.streaming:
        return
    body = response.content.decode("utf-8", errors="replace")
    path = environ.get("PATH_INFO", "")
    scan_response(environ.get("REQUEST_METHOD", "GET"), path, response.status_code, list(response.items()), body)


def pytest_configure(config) -> None:
    from django.test import AsyncClient, Client

    from tokens.models import Credential

    _recording_client(Client)
    _recording_client(AsyncClient)
    post_save.connect(_credential_saved, sender=Credential, weak=False, dispatch_uid="secret-scan")
    before_task_publish.connect(_task_published, weak=False, dispatch_uid="secret-scan")
    logging.getLogger().addHandler(_LogScan())


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    SCAN.test, SCAN.learned_in_test = item.nodeid, 0
    try:
        return (yield)
    finally:
        # Before the fixtures' teardown rolls the rows back; only where this test made a secret.
        uses_db = {"db", "transactional_db"} & set(item.fixturenames) or item.get_closest_marker("django_db")
        if SCAN.learned_in_test and uses_db:
            SCAN.check(_dump_every_table(), "a table")


def pytest_sessionfinish(session, exitstatus) -> None:
    if SCAN.leaks:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        lines = sorted(set(SCAN.leaks))
        if reporter is not None:
            reporter.write_sep("=", f"secret scan: {len(lines)} leaks", red=True)
            for line in lines:
                reporter.write_line(line)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
