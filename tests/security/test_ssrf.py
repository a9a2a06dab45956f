"""SSRF through every URL field: refused when saved and again when connecting, with a clear message, never a 500.

The URL fields come from the forms themselves (every Form class of our apps; a field is a URL field if it is a
URLField, renders as <input type="url"> or is named like one), so a URL field added tomorrow fails
`test_every_url_field_is_attacked` until it is attacked here. Loopback variants carry the port of a canary
listener on 127.0.0.1 and ::1: the suite proves that no TCP handshake reached it, not only that a message came back.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import socket

import pytest
from django import forms

from tests.conftest import ALICE_KEY, CLIENT_ID, CLIENT_SECRET, credential_create, oauth_credential_create
from tests.fakes.server import FakeServer
from tests.security.conftest import database_fingerprint
from tokens import oauth, provider
from tokens.models import Credential, CredentialEvent, Kind

FORM_MODULES = ("accounts.forms", "tokens.forms", "chat.forms")
URL_NAMES = ("url", "endpoint", "uri", "link", "webhook")


class Canary:
    """Listening sockets on 127.0.0.1 and ::1 (one port) that count every connection ever made to them."""

    def __init__(self) -> None:
        self.v4 = socket.create_server(("127.0.0.1", 0))
        self.port = self.v4.getsockname()[1]
        self.sockets = [self.v4]
        with contextlib.suppress(OSError):
            self.sockets.append(socket.create_server(("::1", self.port), family=socket.AF_INET6))
        for sock in self.sockets:
            sock.setblocking(False)

    def connections(self) -> int:
        count = 0
        for sock in self.sockets:
            while True:
                try:
                    conn, _ = sock.accept()
                except BlockingIOError:
                    break
                conn.close()
                count += 1
        return count

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()


@pytest.fixture
def alice_client(client, world):
    """Alice signed in, her language and zone already chosen (a first visit saves them, by design)."""
    client.force_login(world.alice)
    return client


@pytest.fixture
def alice(world):
    return world.alice


@pytest.fixture
def canary():
    listener = Canary()
    yield listener
    listener.close()


def hostile_urls(port: int) -> list[str]:
    """The guard's hostile variants; the loopback ones aim at `port` (the canary)."""
    loopback_hosts = [
        "127.0.0.1",
        "127.1",  # short form
        "2130706433",  # decimal
        "0x7f000001",  # hex
        "0x7f.0.0.1",
        "0177.0.0.1",  # octal
        "017700000001",
        "localhost",
        "LOCALHOST.",
        socket.gethostname(),  # a real name of this machine, resolving to loopback through /etc/hosts
        "[::1]",
        "[::ffff:127.0.0.1]",  # IPv4-mapped
        "[::ffff:7f00:1]",
        "[0:0:0:0:0:ffff:127.0.0.1]",
        "[64:ff9b::7f00:1]",  # NAT64 well-known prefix around 127.0.0.1
        "[64:ff9b::127.0.0.1]",
        "[::127.0.0.1]",  # IPv4-compatible
        "[2002:7f00:1::1]",  # 6to4 of 127.0.0.1
        "０x7f.0.0.1",  # fullwidth digit
        "0.0.0.0",
        "0",
        "[::]",
    ]
    elsewhere = [
        "https://10.0.0.8/v1",
        "https://172.16.4.4/v1",
        "https://192.168.1.10/v1",
        "https://100.64.0.1/v1",  # carrier-grade NAT
        "https://169.254.169.254/latest/meta-data/",
        "https://[::ffff:169.254.169.254]/latest/",
        "https://[64:ff9b::a9fe:a9fe]/latest/",  # NAT64 of the metadata address
        "https://[64:ff9b:1::a9fe:a9fe]/latest/",  # local-use NAT64
        "https://[2002:a9fe:a9fe::]/latest/",  # 6to4 of the metadata address
        "https://[::a9fe:a9fe]/latest/",  # IPv4-compatible metadata
        "https://2852039166/latest/",  # 169.254.169.254 in decimal
        "https://metadata.google.internal/computeMetadata/v1/",
        "https://[fe80::1]/v1",
        "https://[fc00::1]/v1",
        "https://[fec0::1]/v1",  # site-local
        "https://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/v1",  # Teredo
        "https://224.0.0.1/v1",
        "https://255.255.255.255/v1",
        "https://user:password@api.openai.com/v1",  # credentials in the URL
        "https://:sk-in-url@api.openai.com/v1",
        "http://api.openai.com/v1",  # not https
        "file:///etc/passwd",
        "gopher://127.0.0.1:25/",
        "ftp://api.openai.com/",
        "javascript:alert(1)",
    ]
    return [f"https://{host}:{port}/v1" for host in loopback_hosts] + elsewhere


def url_fields() -> set[tuple[str, str]]:
    """(form class, field name) of every URL-taking field of every form in our apps."""
    for module in FORM_MODULES:
        with contextlib.suppress(ModuleNotFoundError):
            importlib.import_module(module)
    found = set()
    pending = [forms.Form, forms.ModelForm]
    while pending:
        cls = pending.pop()
        pending += cls.__subclasses__()
        if not cls.__module__.startswith(("accounts.", "tokens.", "chat.", "project.")):
            continue
        for name, field in getattr(cls, "base_fields", {}).items():
            if (
                isinstance(field, forms.URLField)
                or getattr(field.widget, "input_type", "") == "url"
                or any(part in name.lower() for part in URL_NAMES)
            ):
                found.add((cls.__name__, name))
    return found


# How each URL field is submitted: the credential form's kinds that take it, and the in-place edit form.
ADD_FORMS = {
    "base_url": [
        {"kind": Kind.API_KEY, "api_key": ALICE_KEY},
        {"kind": Kind.AZURE_OPENAI, "api_key": ALICE_KEY, "api_version": "2024-10-21"},
    ],
    "token_url": [
        {"kind": Kind.CLIENT_CREDENTIALS, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET},
        {"kind": Kind.REFRESH_TOKEN, "client_id": CLIENT_ID, "refresh_token": "rt-alice-0000000000000001"},
    ],
}
ATTACKED = {("CredentialForm", "base_url"), ("CredentialForm", "token_url")}
ATTACKED |= {("CredentialEditForm", "base_url"), ("CredentialEditForm", "token_url")}


def test_every_url_field_is_attacked():
    fields = url_fields()
    assert ("CredentialForm", "base_url") in fields and ("CredentialForm", "token_url") in fields
    assert fields <= ATTACKED, f"attack these URL fields in tests/security/test_ssrf.py: {fields - ATTACKED}"


def _refused(response, url: str) -> None:
    assert response.status_code == 400, f"{url}: {response.status_code}"
    errors = (response.context.get("edit_form") or response.context["form"]).errors
    assert errors, f"{url} was not refused with a message"
    text = " ".join(str(message) for messages in errors.values() for message in messages)
    assert "Traceback" not in text and len(text) > 10, text
    assert 'role="alert"' in response.content.decode()


@pytest.mark.parametrize("field", sorted(ADD_FORMS))
def test_it_refuses_every_hostile_url_at_save(field, alice_client, canary):
    before = database_fingerprint()
    first, *others = ADD_FORMS[field]
    for index, url in enumerate(hostile_urls(canary.port)):
        # Every variant with the field's first kind, a spread of them with its other kinds (each costs a page).
        for extra in [first, *others] if index % 4 == 0 else [first]:
            response = alice_client.post("/settings/keys/", {"name": "x", **extra, field: url})
            _refused(response, url)
    assert database_fingerprint() == before
    assert canary.connections() == 0


@pytest.mark.parametrize("field", sorted(ADD_FORMS))
def test_it_refuses_every_hostile_url_when_editing(field, alice, alice_client, canary, token_server):
    credential = (
        credential_create(alice, ALICE_KEY)
        if field == "base_url"
        else oauth_credential_create(alice, token_server, kind=Kind.CLIENT_CREDENTIALS)
    )
    before = database_fingerprint()
    for url in hostile_urls(canary.port):
        response = alice_client.post(f"/settings/keys/{credential.pk}/", {"name": "x", field: url})
        _refused(response, url)
    assert database_fingerprint() == before
    assert canary.connections() == 0


def _stored(alice, kind: str, url: str) -> Credential:
    """A credential whose URL turned hostile after it was saved (DNS changed, an old row, a restored backup)."""
    if kind == "token_url":
        credential = Credential(user=alice, name="x", kind=Kind.CLIENT_CREDENTIALS, client_id=CLIENT_ID, hint="…0001")
        credential.client_secret = CLIENT_SECRET
        credential.token_url = url
    else:
        credential = Credential(user=alice, name="x", kind=Kind.API_KEY, hint="…0001", base_url=url.rstrip("/"))
        credential.api_key = ALICE_KEY
    credential.save()
    return credential


@pytest.mark.django_db
def test_it_refuses_every_hostile_url_when_connecting(alice, canary):
    """The transports' own guard, for every variant: models list, chat stream and token endpoint."""

    urls = [url for url in hostile_urls(canary.port) if url.startswith(("http://", "https://")) and "@" not in url]
    # (Credentials in the URL and other schemes are never stored: the save-time check refuses them by shape.)

    async def stream_all() -> list[provider.ProviderError]:
        errors = []
        for url in urls:
            bearer = provider.Bearer("1", url.rstrip("/"), ALICE_KEY, guarded=True)
            with pytest.raises(provider.ProviderError) as streamed:
                async for _delta in provider.stream_chat(
                    bearer, model="m", messages=[{"role": "user", "content": "hi"}], completion=provider.Completion("m")
                ):
                    pass
            errors.append(streamed.value)
        return errors

    streamed = asyncio.run(stream_all())
    for url, stream_error in zip(urls, streamed, strict=True):
        with pytest.raises(provider.ProviderError) as listed:
            provider.list_models(provider.Bearer("1", url.rstrip("/"), ALICE_KEY, guarded=True))
        with pytest.raises(oauth.TokenError) as granted:
            oauth.fetch_client_credentials(
                token_url=url,
                client_id=CLIENT_ID,
                client_secret=CLIENT_SECRET,
                scope="",
                client_auth="client_secret_basic",
            )
        for error in (listed.value, stream_error):
            # Refused by the guard, or not even a sendable URL for the client; the canary proves nothing connected.
            assert error.kind in ("unsafe_url", "connection", "bad_request"), (url, error.kind, error.message)
            assert ALICE_KEY not in error.message
        assert str(granted.value) and CLIENT_SECRET not in str(granted.value)
    assert canary.connections() == 0


@pytest.mark.parametrize("field", ["base_url", "token_url"])
def test_a_stored_hostile_url_is_refused_by_check_now_and_refresh(field, alice, alice_client, canary):
    from tokens.tasks import refresh_credential

    stored = [url for url in hostile_urls(canary.port) if url.startswith("https://") and "@" not in url]
    for url in stored[::3]:  # a spread of the variants: each costs a page, a check and a refresh
        credential = _stored(alice, field, url)
        response = alice_client.post(f"/settings/keys/{credential.pk}/check/", follow=True)
        assert response.status_code == 200
        credential.refresh_from_db()
        assert credential.status in ("invalid", "needs_attention", "unverified"), (url, credential.status)
        if field == "token_url":
            refresh_credential(str(credential.pk))
            credential.refresh_from_db()
        # The reason is on the credential's page: its status, or the check's event ("Check postponed: ...").
        event = CredentialEvent.objects.filter(credential_id=credential.pk).first()
        reason = credential.status_detail or (event.detail if event else "")
        assert reason, url
        assert ALICE_KEY not in reason and CLIENT_SECRET not in reason
        page = alice_client.get(f"/settings/keys/{credential.pk}/").content.decode()
        assert ALICE_KEY not in page and CLIENT_SECRET not in page
        credential.delete()
    assert canary.connections() == 0


@pytest.mark.django_db(transaction=True)
def test_a_chat_through_a_stored_hostile_url_says_why(asgi_server, alice, canary):
    from chat.models import Message
    from tests.streaming import logged_in_session, send

    alice.credentials.all().delete()
    credential = _stored(alice, "base_url", f"https://127.0.0.1:{canary.port}/v1")
    credential.is_default = True
    credential.save()
    session = logged_in_session(asgi_server.url, "alice")

    events = send(session, asgi_server.url, "/chat/send/", "Hello over there")

    assert events.status == 200 and events.done["state"] == "error"
    assert "private or reserved address" in events.done["error"], events.done
    assert Message.objects.filter(role="user", content="Hello over there").exists()  # the typed text is kept
    assert canary.connections() == 0


class Redirector(FakeServer):
    """A 'public' provider and token endpoint that answers every request with a redirect to `target`."""

    target = ""

    def handle(self, http, request) -> None:
        http.send_body(307, b"", "text/plain", {"Location": self.target})


@pytest.mark.django_db
def test_a_redirect_to_a_private_address_is_not_followed(alice_client, canary, settings):
    settings.UPSTREAM_ALLOWLIST = ["127.0.0.1"]  # the redirector plays a public host
    with Redirector() as redirector:
        for target in (f"http://localhost:{canary.port}/v1/models", "http://169.254.169.254/latest/meta-data/"):
            redirector.target = target
            response = alice_client.post(
                "/settings/keys/",
                {"kind": "api_key", "name": "x", "api_key": ALICE_KEY, "base_url": redirector.url},
                follow=True,
            )
            oauth_response = alice_client.post(
                "/settings/keys/",
                {
                    "kind": Kind.CLIENT_CREDENTIALS,
                    "name": "y",
                    "client_id": CLIENT_ID,
                    "client_secret": CLIENT_SECRET,
                    "token_url": f"{redirector.url}/token",
                },
                follow=True,
            )
            for answer in (response, oauth_response):
                # Refused, or saved unverified with the reason shown: either way the person reads why.
                assert answer.status_code in (200, 400), target
                assert "redirect" in answer.content.decode().lower(), target
            Credential.objects.filter(user__username="alice").exclude(name="OpenAI").delete()
        assert len(redirector.requests) >= 4
    assert canary.connections() == 0
