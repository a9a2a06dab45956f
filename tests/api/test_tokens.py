"""POST /v1/tokens: a personal key for a short-lived access token, by Bearer or OAuth2 client credentials."""

from __future__ import annotations

import base64
from datetime import timedelta

import pytest
import requests
import time_machine
from django.test import RequestFactory
from django.utils import timezone

from chat.api import model_list
from tests.api.conftest import key_issue
from tests.conftest import BOB_KEY, credential_create, user_create
from tokens.api_keys import ApiAuthError, access_token_issue, api_bearer_verify, api_key_revoke
from tokens.models import AccessToken
from tokens.tasks import prune_access_tokens

pytestmark = pytest.mark.django_db(transaction=True)


def _exchange(api: str, key: str) -> requests.Response:
    return requests.post(f"{api}/tokens", headers={"Authorization": f"Bearer {key}"}, timeout=10)


def test_it_exchanges_a_key_and_the_token_calls_the_api(api, fake_openai, alice):
    issued = key_issue(alice)

    response = _exchange(api, issued.key)
    body = response.json()
    reply = requests.post(
        f"{api}/chat/completions",
        headers={"Authorization": f"Bearer {body['access_token']}"},
        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]},
        timeout=10,
    )

    assert response.status_code == 200
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600
    assert response.headers["Cache-Control"] == "no-store"
    assert body["access_token"].startswith("byokat_")
    assert reply.status_code == 200, reply.text
    assert reply.json()["choices"][0]["message"]["content"]
    stored = AccessToken.objects.get()
    assert body["access_token"] not in (stored.secret_hash, stored.prefix)


def test_it_follows_the_lifetime_setting_and_never_outlives_the_key(api, alice, settings):
    settings.API_ACCESS_TOKEN_LIFETIME = 600
    short = key_issue(alice, expires_at=timezone.now() + timedelta(seconds=120))

    assert _exchange(api, key_issue(alice).key).json()["expires_in"] == 600
    assert 100 < _exchange(api, short.key).json()["expires_in"] <= 120


def test_it_refuses_an_expired_token(alice):
    issued = key_issue(alice)
    grant = api_bearer_verify(issued.key)
    _row, token, lifetime = access_token_issue(grant=grant)
    with time_machine.travel(timezone.now() + timedelta(seconds=lifetime + 1)), pytest.raises(ApiAuthError) as late:
        api_bearer_verify(token)

    assert late.value.code == "expired"


def test_a_revoked_keys_tokens_stop_at_once(api, fake_openai, alice):
    issued = key_issue(alice)
    token = _exchange(api, issued.key).json()["access_token"]
    call = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]}
    assert requests.post(f"{api}/chat/completions", headers={"Authorization": f"Bearer {token}"}, json=call).ok

    api_key_revoke(api_key=issued.row, actor="alice")

    for bearer in (token, issued.key):
        refused = requests.post(f"{api}/chat/completions", headers={"Authorization": f"Bearer {bearer}"}, json=call)
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] in ("invalid_api_key", "revoked")
    assert len(fake_openai.chat_requests) == 1


def test_a_token_cannot_exchange_for_another_token(api, alice):
    token = _exchange(api, key_issue(alice).key).json()["access_token"]

    response = _exchange(api, token)

    assert response.status_code == 400
    assert "access_token" not in response.json()


def test_it_speaks_oauth2_client_credentials(api, fake_openai, alice):
    issued = key_issue(alice, allowed_models=["gpt-4o-mini", "gpt-4o"])
    client_id = f"byok_{issued.row.prefix}"  # the key's public part, as the settings page lists it
    basic = base64.b64encode(f"{client_id}:{issued.key}".encode()).decode()

    response = requests.post(
        f"{api}/tokens",
        data={"grant_type": "client_credentials", "scope": "gpt-4o-mini"},
        headers={"Authorization": f"Basic {basic}"},
        timeout=10,
    )
    in_body = requests.post(
        f"{api}/tokens",
        data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": issued.key},
        timeout=10,
    )

    assert response.status_code == 200, response.text
    assert response.json()["token_type"] == "Bearer" and response.json()["scope"] == "gpt-4o-mini"
    assert in_body.status_code == 200 and in_body.json()["scope"] == "gpt-4o-mini gpt-4o"
    token = response.json()["access_token"]
    outside = requests.post(
        f"{api}/chat/completions",
        headers={"Authorization": f"Bearer {token}"},
        json={"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"}]},
    )
    assert outside.status_code == 403  # narrowed by the requested scope


@pytest.mark.parametrize(
    ("data", "status", "error"),
    [
        ({"grant_type": "password", "username": "a", "password": "b"}, 400, "unsupported_grant_type"),
        ({"grant_type": "client_credentials"}, 401, "invalid_client"),
        (
            {"grant_type": "client_credentials", "client_id": "byok_x", "client_secret": "byok_x_nope"},
            401,
            "invalid_client",
        ),
    ],
)
def test_it_answers_oauth2_errors_per_rfc_6749(api, data, status, error):
    response = requests.post(f"{api}/tokens", data=data, timeout=10)

    assert response.status_code == status
    assert response.json()["error"] == error
    assert response.headers["Cache-Control"] == "no-store"


def test_it_refuses_a_scope_wider_than_the_key(api, alice):
    issued = key_issue(alice, allowed_models=["gpt-4o-mini"])
    client_id = "byok_" + issued.row.prefix

    response = requests.post(
        f"{api}/tokens",
        data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": issued.key, "scope": "o3"},
        timeout=10,
    )

    assert response.status_code == 400 and response.json()["error"] == "invalid_scope"


def test_it_throttles_guessing_at_the_token_endpoint(api, alice, settings):
    settings.API_TOKEN_RATE_LIMIT = "5/m"
    issued = key_issue(alice)
    guesses = [_exchange(api, f"byok_{issued.row.prefix}_guess{i}").status_code for i in range(5)]

    throttled = _exchange(api, issued.key)

    assert guesses == [401] * 5
    assert throttled.status_code == 429 and int(throttled.headers["Retry-After"]) >= 1
    assert "access_token" not in throttled.json()


def test_it_throttles_failed_bearers_on_every_endpoint(api, settings):
    settings.API_AUTH_FAILURE_RATE_LIMIT = "3/5m"
    statuses = [
        requests.get(f"{api}/models", headers={"Authorization": f"Bearer byok_{i:012d}_nope"}).status_code
        for i in range(5)
    ]

    assert statuses == [401, 401, 401, 429, 429]


def test_a_session_cookie_never_authenticates(api, alice):
    session = requests.Session()
    session.get(f"{api.removesuffix('/v1')}/accounts/login/")
    session.post(
        f"{api.removesuffix('/v1')}/accounts/login/",
        data={
            "username": "alice",
            "password": "correct horse battery staple",
            "csrfmiddlewaretoken": session.cookies["csrftoken"],
        },
        headers={"Referer": api},
    )
    assert "sessionid" in session.cookies

    models = session.get(f"{api}/models")
    chat = session.post(
        f"{api}/chat/completions", json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]}
    )
    token = session.post(f"{api}/tokens")

    assert [models.status_code, chat.status_code, token.status_code] == [401, 401, 401]
    assert models.json()["error"]["code"] == "invalid_api_key"


def test_a_key_only_ever_acts_for_its_owner(api, fake_openai, alice):
    bob = user_create("bob")
    credential_create(bob, BOB_KEY)
    bobs = key_issue(bob)

    requests.post(
        f"{api}/chat/completions",
        headers={"Authorization": f"Bearer {bobs.key}"},
        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]},
    )

    assert fake_openai.chat_requests[-1].bearer == BOB_KEY


def test_beat_prunes_expired_access_tokens(alice):
    grant = api_bearer_verify(key_issue(alice).key)
    _expired, _token, lifetime = access_token_issue(grant=grant)
    with time_machine.travel(timezone.now() + timedelta(seconds=lifetime + 1)):
        fresh, _token, _lifetime = access_token_issue(grant=grant)

        assert prune_access_tokens() == 1

    assert list(AccessToken.objects.all()) == [fresh]


def test_errors_follow_the_callers_language(api):
    english = requests.get(f"{api}/models", timeout=10)
    chinese = requests.get(f"{api}/models", headers={"Accept-Language": "zh-CN,zh;q=0.9"}, timeout=10)

    assert english.json()["error"]["message"].startswith("You didn't provide an API key")
    assert chinese.json()["error"]["message"].startswith("你没有提供 API 密钥")
    assert chinese.headers["X-Content-Type-Options"] == "nosniff"


def test_a_pending_or_rejected_account_cannot_use_its_key(api, alice):
    issued = key_issue(alice)
    for approval in ("pending", "rejected"):
        type(alice).objects.filter(pk=alice.pk).update(approval=approval)

        assert _exchange(api, issued.key).status_code == 401


def test_a_bearer_is_checked_before_the_body(api):
    """Without a valid bearer the caller learns nothing about what the endpoint would accept."""
    for body in (b"not json", b"[]", b'{"model": ""}'):
        answer = requests.post(
            f"{api}/chat/completions", data=body, headers={"Authorization": "Bearer byok_000000000000_nope"}
        )
        assert answer.status_code == 401, body
        assert answer.json()["error"]["code"] == "invalid_api_key"


def test_plain_http_is_refused_not_redirected_when_https_is_required(api, alice_key, settings):
    settings.SECURE_SSL_REDIRECT = True
    answer = requests.get(f"{api}/models", headers={"Authorization": f"Bearer {alice_key.key}"}, allow_redirects=False)

    assert answer.status_code == 403
    assert answer.json()["error"]["code"] == "https_required"
    assert "Strict-Transport-Security" not in answer.headers


def test_https_answers_carry_hsts(alice_key, settings):
    settings.SECURE_SSL_REDIRECT, settings.SECURE_HSTS_SECONDS = True, 3600
    request = RequestFactory().get("/v1/models", secure=True, HTTP_AUTHORIZATION="Bearer nope")
    answer = model_list(request)

    assert answer.status_code == 401
    assert answer["Strict-Transport-Security"].startswith("max-age=3600")
