"""Credentials as people paste them: base URLs from each provider's docs, Azure, pasted keys, edits, rejections."""

from __future__ import annotations

import pytest

from tests.conftest import CLIENT_ID, CLIENT_SECRET, credential_create, oauth_credential_create
from tests.fakes.providers import FakeProvider
from tests.streaming import logged_in_session, send
from tokens.models import Credential, CredentialEvent, Kind, Status

pytestmark = pytest.mark.django_db(transaction=True)


def _add(client, fake: FakeProvider, pasted: str, *, query: str = "", **fields):
    data = {"kind": "api_key", "name": fake.personality.name, "api_key": fake.key, "base_url": pasted, **fields}
    return client.post("/settings/keys/" + query, data)


@pytest.mark.parametrize(
    ("name", "suffix", "expected_path"),
    [
        ("openai", "/v1", "/v1"),
        ("openai", "/v1/", "/v1"),
        ("openai", "/v1/chat/completions", "/v1"),  # the full endpoint from a curl example
        ("ollama", "", "/v1"),  # http://localhost:11434, as Ollama's docs show
        ("together", "/v1/models", "/v1"),
        ("openrouter", "/api", "/api/v1"),  # found by trying /v1 once
        ("openrouter", "/api/v1/chat/completions", "/api/v1"),
        ("deepseek", "", "/v1"),
        ("ollama", "/api/chat", "/v1"),  # Ollama's native endpoint, from its docs' curl examples
        ("ollama", "/api/tags", "/v1"),
        ("ollama", "/api/generate/", "/v1"),
        ("openai", "/v1/v1", "/v1"),  # a base ending in /v1 with /v1 pasted again
        ("openai", "/v1/v1/chat/completions", "/v1"),
    ],
)
def test_it_saves_base_urls_as_the_docs_show_them(name, suffix, expected_path, alice_client, local):
    with FakeProvider(name) as fake:
        response = _add(alice_client, fake, fake.url + suffix)
    assert response.status_code == 302, response.content.decode()[:2000]
    credential = Credential.objects.get()
    assert credential.base_url == fake.url + expected_path
    assert credential.status == Status.ACTIVE


def test_it_makes_an_azure_classic_url_an_azure_credential(alice_client, local):
    with FakeProvider("azure_classic") as fake:
        pasted = f"{fake.url}/openai/deployments/gpt4o/chat/completions?api-version=2024-10-21"
        response = _add(alice_client, fake, pasted)
    assert response.status_code == 302
    credential = Credential.objects.get()
    assert (credential.kind, credential.base_url) == (Kind.AZURE_OPENAI, fake.url)
    assert (credential.api_version, credential.default_model) == ("2024-10-21", "gpt4o")
    assert credential.status == Status.ACTIVE
    assert fake.requests[-1].headers.get("api-key") == fake.key and "authorization" not in fake.requests[-1].headers


def test_it_saves_an_azure_v1_endpoint(alice_client, local):
    with FakeProvider("azure_v1") as fake:
        response = _add(alice_client, fake, f"{fake.url}/openai/v1/", kind="azure_openai")
    assert response.status_code == 302
    credential = Credential.objects.get()
    assert (credential.base_url, credential.api_version) == (f"{fake.url}/openai/v1", "")


def test_it_asks_for_a_correct_api_version(alice_client, local):
    with FakeProvider("azure_classic") as fake:
        response = _add(alice_client, fake, fake.url, kind="azure_openai", api_version="October 2024")
    assert response.status_code == 400 and "is not an Azure api-version" in response.content.decode()


def test_it_says_what_to_type_when_nothing_answers_at_the_url(alice_client, local):
    with FakeProvider("openai") as fake:
        response = _add(alice_client, fake, f"{fake.url}/nothing/here")
    page = response.content.decode()
    assert response.status_code == 400 and 'role="alert"' in page and "usually ending in /v1" in page
    assert not Credential.objects.exists()


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        ("sk-abcdefghijklmnop\u200b", "hidden character (U+200B, zero-width space) at position 20"),
        ("sk\u2013abcdefghijklmnop", "typographic dash (U+2013) at position 3"),
        ("sk-abcdefgh\nijklmnop", "line break at position 12"),
        ("sk-abcdefgh\u00a0ijklmnop", "hidden character (U+00A0, no-break space) at position 12"),
        ("\ufeffsk-abcdefghijklmnop", "hidden character (U+FEFF, byte order mark) at position 1"),
        ("sk-abc defghijklmnop", "space at position 7"),
    ],
)
@pytest.mark.parametrize("kind", ["api_key", "azure_openai"])
def test_it_names_the_problem_in_a_pasted_key(key, problem, kind, alice_client, local):
    with FakeProvider("openai") as fake:
        response = _add(alice_client, fake, fake.base_url, kind=kind, api_key=key)
    page = response.content.decode()
    assert response.status_code == 400
    assert 'role="alert"' in page and problem in page
    assert key not in page and not Credential.objects.exists() and fake.requests == []


def test_it_names_the_problem_in_a_pasted_client_secret(alice_client, oauth_setup):
    data = {
        "kind": "oauth2_client_credentials",
        "token_url": oauth_setup.token_url,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET + "\u200b",
    }
    response = alice_client.post("/settings/keys/", data)
    assert response.status_code == 400 and "U+200B" in response.content.decode()


def test_it_edits_an_api_key_credential_in_place(alice_client, alice, local):
    with FakeProvider("deepseek") as fake:
        credential = credential_create(alice, fake.key, base_url="https://api.example.com/v1")
        response = alice_client.post(
            f"/settings/keys/{credential.pk}/",
            {"name": "DeepSeek", "base_url": fake.url, "default_model": "deepseek-chat", "context_window": "64000"},
        )
    assert response.status_code == 302, response.content.decode()[:3000]
    credential.refresh_from_db()
    assert (credential.name, credential.base_url) == ("DeepSeek", f"{fake.url}/v1")
    assert (credential.default_model, credential.context_window) == ("deepseek-chat", 64000)
    assert credential.api_key.reveal() == fake.key  # kept: the secret field was left empty


def test_it_keeps_the_stored_credential_when_an_edit_is_refused(alice_client, alice, local):
    with FakeProvider("openai") as fake:
        credential = credential_create(alice, fake.key, base_url=fake.base_url)
        response = alice_client.post(
            f"/settings/keys/{credential.pk}/", {"name": "X", "api_key": "sk-wrong-key-1234", "base_url": fake.base_url}
        )
    assert response.status_code == 400 and 'role="alert"' in response.content.decode()
    credential.refresh_from_db()
    assert credential.name == "OpenAI" and credential.api_key.reveal() == fake.key


def test_it_edits_an_oauth_credential_in_place_running_the_grant(alice_client, alice, oauth_setup, fake_openai):
    credential = oauth_credential_create(alice, oauth_setup, status=Status.NEEDS_ATTENTION, client_secret="old-wrong")
    response = alice_client.post(
        f"/settings/keys/{credential.pk}/",
        {"token_url": oauth_setup.token_url, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET},
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    credential.refresh_from_db()
    assert credential.status == Status.ACTIVE and credential.client_secret.reveal() == CLIENT_SECRET


def test_it_hides_the_edit_form_from_other_users(client, alice, bob):
    credential = credential_create(alice, "sk-alice-0000000000001")
    client.force_login(bob)
    assert client.post(f"/settings/keys/{credential.pk}/", {"name": "mine"}).status_code == 404


def test_it_sends_anonymous_visitors_to_log_in_from_the_edit_form(client, alice):
    credential = credential_create(alice, "sk-alice-0000000000001")
    response = client.post(f"/settings/keys/{credential.pk}/", {"name": "mine"})
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_check_now_runs_the_grant_again(alice_client, alice, oauth_setup, fake_openai):
    credential = oauth_credential_create(alice, oauth_setup, status=Status.NEEDS_ATTENTION, access_token="cached")
    alice_client.post(f"/settings/keys/{credential.pk}/check/")
    credential.refresh_from_db()
    assert credential.status == Status.ACTIVE
    assert credential.access_token.reveal() != "cached"
    assert any(r.route.endswith("/token") for r in oauth_setup.requests)


def test_it_fetches_a_new_token_once_after_a_401_in_chat(asgi_server, alice, oauth_setup, fake_openai):
    credential = oauth_credential_create(alice, oauth_setup)
    session = logged_in_session(asgi_server.url, "alice")
    send(session, asgi_server.url, "/chat/send/", "First")  # gets a token
    fake_openai.error(401, code="invalid_api_key")
    events = send(session, asgi_server.url, "/chat/send/", "Second")
    assert events.done["state"] == "complete" and events.text
    credential.refresh_from_db()
    assert credential.status == Status.ACTIVE
    tokens = [r.bearer for r in fake_openai.chat_requests]
    assert len(tokens) == 3 and tokens[1] != tokens[2]  # the refused token, then a new one


def test_it_leaves_the_credential_alone_after_a_per_model_403(asgi_server, alice, fake_openai):
    credential = credential_create(alice, "sk-alice-0000000000001")
    session = logged_in_session(asgi_server.url, "alice")
    fake_openai.error(403, message="You are not allowed to sample from this model")
    events = send(session, asgi_server.url, "/chat/send/", "Hi", model="o1-pro")
    assert events.done["state"] == "error" and "“o1-pro”" in events.done["error"]
    credential.refresh_from_db()
    assert credential.status == Status.ACTIVE
    assert not CredentialEvent.objects.filter(credential_id=credential.pk, kind="status_changed").exists()


@pytest.mark.parametrize(
    ("pasted", "kind", "base_url", "api_version", "deployment"),
    [
        ("https://api.groq.com/openai/v1", "api_key", "https://api.groq.com/openai/v1", "", ""),
        ("https://api.mistral.ai/v1/", "api_key", "https://api.mistral.ai/v1", "", ""),
        ("https://api.together.xyz", "api_key", "https://api.together.xyz/v1", "", ""),
        ("http://localhost:1234/v1/chat/completions", "api_key", "http://localhost:1234/v1", "", ""),
        ("https://res.openai.azure.com/", "azure_openai", "https://res.openai.azure.com/openai/v1", "", ""),
        (
            "https://res.openai.azure.com/openai/deployments/gpt4o?api-version=2024-10-21",
            "api_key",
            "https://res.openai.azure.com",
            "2024-10-21",
            "gpt4o",
        ),
        (
            "https://res.cognitiveservices.azure.com/openai/v1/chat/completions",
            "api_key",
            "https://res.cognitiveservices.azure.com/openai/v1",
            "",
            "",
        ),
        (
            "https://res.openai.azure.com/openai/deployments/o4-mini/chat/completions?api-version=2025-04-01-preview",
            "azure_openai",
            "https://res.openai.azure.com",
            "2025-04-01-preview",
            "o4-mini",
        ),
    ],
)
def test_it_normalises_base_urls(pasted, kind, base_url, api_version, deployment):
    from tokens.provider import normalise_base_url

    url = normalise_base_url(pasted, kind=kind)
    assert (url.base_url, url.api_version, url.deployment) == (base_url, api_version, deployment)


def test_new_chats_start_with_the_credentials_default_model(alice_client, alice):
    credential_create(alice, "sk-alice-0000000000001", default_model="gpt4o-deployment")
    page = alice_client.get("/chat/").content.decode()
    assert 'name="model"' in page and 'value="gpt4o-deployment"' in page and 'list="model-suggestions"' in page


class RestrictedKeyProvider(FakeProvider):
    """OpenAI project keys without the models.read permission: GET /models is 403, chat works."""

    def _models(self, http, route):
        message = "You have insufficient permissions for this operation. Missing scopes: api.model.read."
        self._error(http, 403, message, None)


def test_it_saves_a_key_whose_model_list_is_forbidden_and_chats_with_it(asgi_server, alice_client, local):
    with RestrictedKeyProvider("openai") as fake:
        response = _add(alice_client, fake, fake.base_url)
        assert response.status_code == 302
        credential = Credential.objects.get()
        assert credential.status == Status.UNVERIFIED  # not refused: the key may well be good for chat
        session = logged_in_session(asgi_server.url, "alice")
        events = send(session, asgi_server.url, "/chat/send/", "Hi")
    assert events.done["state"] == "complete" and events.text == "Hello there."


def test_a_first_key_added_from_the_chat_leads_back_to_the_chat(alice_client, local):
    with FakeProvider("openai") as fake:
        response = _add(alice_client, fake, fake.url + "/v1", query="?next=chat")
    assert response.status_code == 302 and response["Location"] == "/chat/"
    assert Credential.objects.get().status == Status.ACTIVE


def test_the_base_url_field_shows_the_sites_default_provider(alice_client, settings):
    settings.OPENAI_BASE_URL = "http://models.internal:8000/v1"
    page = alice_client.get("/settings/keys/").content.decode()
    assert 'placeholder="http://models.internal:8000/v1"' in page
    assert "https://api.openai.com/v1" not in page
