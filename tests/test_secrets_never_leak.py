"""After a full journey, the plaintext key is nowhere: not in any table, page, event stream or log line."""

from __future__ import annotations

import logging

import pytest
from django.apps import apps
from django.db import connection

from tests.conftest import user_create
from tests.streaming import logged_in_session, send

pytestmark = pytest.mark.django_db(transaction=True)

SECRET = "sk-proj-LEAKCANARY0123456789abcdefghijklmnop"


def _every_text_value() -> str:
    values = []
    with connection.cursor() as cursor:
        for model in apps.get_models():
            table = model._meta.db_table
            columns = [f.column for f in model._meta.concrete_fields]
            cursor.execute(f"SELECT {', '.join(connection.ops.quote_name(c) for c in columns)} FROM {table}")
            values += [str(value) for row in cursor.fetchall() for value in row]
    return "\n".join(values)


def test_it_never_leaks_the_key(asgi_server, fake_openai, caplog):
    caplog.set_level(logging.DEBUG)
    fake_openai.valid_keys = {SECRET}
    user_create("alice")
    user_create("root", is_staff=True, is_superuser=True)
    alice = logged_in_session(asgi_server.url, "alice")
    seen = []

    page = alice.post(
        f"{asgi_server.url}/settings/keys/",
        data={"kind": "api_key", "name": "Main", "api_key": SECRET, "csrfmiddlewaretoken": alice.cookies["csrftoken"]},
        headers={"Referer": asgi_server.url},
    )
    seen.append(page.text)
    fake_openai.reply("Fine, thanks.").error(401, message=f"Incorrect API key provided: {SECRET}")
    seen.append(str(send(alice, asgi_server.url, "/chat/send/", "How are you?")))
    seen.append(str(send(alice, asgi_server.url, "/chat/send/", "Again?")))
    for path in ("/settings/keys/", "/chat/", "/chat/models/"):
        seen.append(alice.get(f"{asgi_server.url}{path}").text)

    root = logged_in_session(asgi_server.url, "root")
    for path in (
        "/usage/",
        "/usage/export.csv",
        "/admin/tokens/credential/",
        "/admin/tokens/credentialevent/",
        "/admin/chat/usagerecord/",
    ):
        seen.append(root.get(f"{asgi_server.url}{path}").text)
    credential_id = _credential_id()
    seen.append(root.get(f"{asgi_server.url}/admin/tokens/credential/{credential_id}/change/").text)

    assert fake_openai.chat_requests[0].bearer == SECRET  # the key was really used
    haystacks = {"pages": "\n".join(seen), "logs": caplog.text, "database": _every_text_value()}
    for where, text in haystacks.items():
        assert SECRET not in text, f"key leaked into {where}"
        assert SECRET[8:30] not in text, f"part of the key leaked into {where}"


def _credential_id() -> str:
    from tokens.models import Credential

    return str(Credential.objects.get().pk)
