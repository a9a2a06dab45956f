"""No debug page, error email or log line carries a secret, even with DEBUG on."""

from __future__ import annotations

import io
import logging
import sys

import pytest
from django.core import mail
from django.test import Client

from project.errors import RedactSecrets, redact
from tests.conftest import ALICE_KEY, credential_create

pytestmark = pytest.mark.django_db

SESSION_MARK = "sessionid"


@pytest.fixture
def failing_site(settings, alice):
    settings.ROOT_URLCONF = "tests.project.failing_urls"
    credential_create(alice, ALICE_KEY)
    client = Client(raise_request_exception=False)
    client.force_login(alice)
    return client


def test_it_hides_secrets_on_the_debug_page(failing_site, settings):
    settings.DEBUG = True
    response = failing_site.post(
        "/fail/?access_token=query-secret-123456",
        {"api_key": "sk-posted-secret-0000000000001", "client_secret": "posted-client-secret-1"},
        HTTP_AUTHORIZATION="Bearer header-secret-000000000001",
    )
    page = response.content.decode()
    assert response.status_code == 500
    assert "RuntimeError" in page and "fail_holding_a_key" in page  # still a useful debug page
    for secret in (
        ALICE_KEY,
        ALICE_KEY[3:20],
        "sk-posted-secret",
        "posted-client-secret",
        "query-secret",
        "header-secret",
        failing_site.cookies[SESSION_MARK].value,
    ):
        assert secret not in page, secret


def test_it_hides_secrets_in_error_emails(failing_site, settings):
    settings.DEBUG = False
    settings.ADMINS = [("Ops", "ops@example.com")]  # Django's default logging mails them a report of each 500
    assert failing_site.get("/fail/?code=oidc-code-secret-1").status_code == 500
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    text = message.body + "".join(str(alt[0]) for alt in message.alternatives)
    assert "RuntimeError" in text
    assert ALICE_KEY not in text and ALICE_KEY[3:20] not in text
    assert "oidc-code-secret" not in text


def test_it_redacts_an_exception_message_that_quotes_a_key(failing_site, settings):
    settings.DEBUG = True
    page = failing_site.get("/fail-quoting/").content.decode()
    assert "RuntimeError" in page and "ValueError" in page and "Illegal header value" in page
    assert ALICE_KEY not in page and ALICE_KEY[3:20] not in page
    settings.DEBUG = False
    settings.ADMINS = [("Ops", "ops@example.com")]
    assert failing_site.get("/fail-quoting/").status_code == 500
    message = mail.outbox[-1]
    text = message.subject + message.body + "".join(str(alt[0]) for alt in message.alternatives)
    assert "Illegal header value" in text
    assert ALICE_KEY not in text and ALICE_KEY[3:20] not in text


@pytest.mark.parametrize("name", ["django.request", "uvicorn.error", "celery.app.trace"])
def test_it_redacts_log_records_whatever_handler_writes_them(name):
    """Django's own DEBUG console copy, uvicorn's and Celery's handlers carry no filter of ours."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)  # formats the traceback first, as the first of several handlers does
    logger = logging.getLogger(name)
    logger.addHandler(handler)
    try:
        try:
            raise ValueError(f"Illegal header value b'Bearer {ALICE_KEY}'")
        except ValueError:
            logger.error("call failed with api_key=%s", ALICE_KEY, exc_info=True)
    finally:
        logger.removeHandler(handler)
    line = stream.getvalue()
    assert "call failed with api_key=***" in line and "ValueError: Illegal header value" in line
    assert ALICE_KEY not in line


def test_it_redacts_secret_shapes_from_log_lines():
    try:
        raise ValueError(f"bad grant: refresh_token={ALICE_KEY} at https://user:hunter2@idp.example/token")
    except ValueError:
        args = ("Bearer abc.def.ghi", "/accounts/password/reset/key/3-abc/")
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "sent %s to %s", args, sys.exc_info())
    assert RedactSecrets().filter(record)
    line = logging.Formatter().format(record)
    for secret in ("abc.def.ghi", "3-abc", ALICE_KEY, "hunter2"):
        assert secret not in line, secret
    assert "sent Bearer ***" in line and "ValueError" in line


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"api_key": "sk-abc123456789012345"}', '{"api_key": "***"}'),
        ("status code=401 for model gpt-4o", "status code=401 for model gpt-4o"),
        ("GET /callback?state=s&code=xyz", "GET /callback?state=s&code=***"),
        ("password1=hunter2&username=bob", "password1=***&username=bob"),
    ],
)
def test_it_redacts_only_the_secret_parts(text, expected):
    assert redact(text) == expected


def test_it_keeps_the_arguments_formatters_read_while_redacting_them():
    """uvicorn's access log formatter unpacks record.args (address, method, path, version, status): redacting must
    leave that shape, or the line is lost to a logging error."""
    from uvicorn.logging import AccessFormatter

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(AccessFormatter('%(client_addr)s - "%(request_line)s" %(status_code)s', use_colors=False))
    logger = logging.getLogger("uvicorn.access")
    logger.addHandler(handler)
    try:
        path = "/accounts/oidc/sso/login/callback/?state=abc&code=oidc-code-secret-7"
        logger.info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "GET", path, "1.1", 200)
    finally:
        logger.removeHandler(handler)
    line = stream.getvalue()
    assert 'GET /accounts/oidc/sso/login/callback/?state=abc&code=*** HTTP/1.1" 200' in line
    assert "oidc-code-secret" not in line
