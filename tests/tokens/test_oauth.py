"""tokens.oauth against a real RFC 6749 token endpoint on 127.0.0.1."""

from __future__ import annotations

import base64
import logging
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.utils import timezone

from tests.conftest import CLIENT_ID, CLIENT_SECRET
from tokens import oauth


@pytest.fixture
def endpoint(token_server, local_upstreams):
    token_server.add_client(CLIENT_ID, CLIENT_SECRET)
    return token_server


def _client_credentials(endpoint, **overrides) -> oauth.TokenGrant:
    fields = {
        "token_url": endpoint.token_url,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "scope": "models.read",
        "client_auth": "client_secret_basic",
        **overrides,
    }
    return oauth.fetch_client_credentials(**fields)


def test_it_authenticates_with_client_secret_basic(endpoint):
    grant = _client_credentials(endpoint)
    request = endpoint.token_requests[-1]
    expected = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
    assert request.headers["authorization"] == f"Basic {expected}"
    assert "client_secret" not in request.form()
    assert request.form()["grant_type"] == "client_credentials"
    assert request.form()["scope"] == "models.read"
    assert endpoint.is_valid_access_token(grant.access_token)
    assert grant.refresh_token == ""


def test_it_authenticates_with_client_secret_post(endpoint):
    grant = _client_credentials(endpoint, client_auth="client_secret_post")
    request = endpoint.token_requests[-1]
    assert "authorization" not in request.headers
    assert request.form()["client_id"] == CLIENT_ID and request.form()["client_secret"] == CLIENT_SECRET
    assert endpoint.is_valid_access_token(grant.access_token)


def test_it_reads_the_lifetime_from_expires_in(endpoint):
    endpoint.expires_in = 120
    grant = _client_credentials(endpoint)
    remaining = (grant.expires_at - timezone.now()).total_seconds()
    assert 110 < remaining <= 120


def test_it_calls_a_wrong_secret_a_permanent_refusal(endpoint):
    with pytest.raises(oauth.TokenRejected) as caught:
        _client_credentials(endpoint, client_secret="wrong")
    assert caught.value.code == "invalid_client"
    assert "client ID and secret" in str(caught.value)


def test_it_calls_invalid_grant_a_permanent_refusal(endpoint):
    with pytest.raises(oauth.TokenRejected) as caught:
        oauth.refresh(
            token_url=endpoint.token_url,
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            refresh_token="rt_never_issued",
            scope="",
            client_auth="client_secret_basic",
        )
    assert caught.value.code == "invalid_grant"
    assert "rt_never_issued" not in str(caught.value)


@pytest.mark.parametrize("status", [500, 503, 429])
def test_it_calls_server_errors_temporary(endpoint, status):
    endpoint.fail_next(status)
    with pytest.raises(oauth.TokenUnavailable):
        _client_credentials(endpoint)


def test_it_calls_a_hanging_endpoint_temporary(endpoint, settings):
    settings.CHECK_TIMEOUT = 0.3
    endpoint.hang_next()
    with pytest.raises(oauth.TokenUnavailable, match="did not answer in time"):
        _client_credentials(endpoint)


@pytest.mark.parametrize("part", ["headers", "body"])
def test_it_ends_a_trickled_grant_at_the_overall_deadline(endpoint, settings, part):
    # Each byte comes well within the per-read timeout, for ever: only the overall deadline can end the call.
    settings.UPSTREAM_CONNECT_TIMEOUT, settings.CHECK_TIMEOUT = 1.0, 2.0
    endpoint.trickle_next(part)
    pool = ThreadPoolExecutor(1)
    future = pool.submit(_client_credentials, endpoint)
    try:
        with pytest.raises(oauth.TokenUnavailable) as caught:
            future.result(timeout=60)  # a guard against hanging the suite, not a measurement
    finally:
        pool.shutdown(wait=False)
    assert caught.value.code == "timeout"


def test_it_keeps_the_connection_to_a_token_endpoint_alive(endpoint):
    for _ in range(3):
        _client_credentials(endpoint)
    assert len(endpoint.token_requests) == 3
    assert endpoint.connections_accepted == 1


def test_it_ends_a_trickled_grant_on_a_kept_alive_connection_at_the_deadline(endpoint, settings):
    settings.UPSTREAM_CONNECT_TIMEOUT, settings.CHECK_TIMEOUT = 1.0, 2.0
    _client_credentials(endpoint)  # leaves its connection in the pool
    endpoint.trickle_next("body")
    pool = ThreadPoolExecutor(1)
    future = pool.submit(_client_credentials, endpoint)
    try:
        with pytest.raises(oauth.TokenUnavailable) as caught:
            future.result(timeout=60)  # a guard against hanging the suite, not a measurement
    finally:
        pool.shutdown(wait=False)
    assert caught.value.code == "timeout"
    assert endpoint.connections_accepted == 1  # the trickle came on the kept-alive connection
    assert endpoint.is_valid_access_token(_client_credentials(endpoint).access_token)  # and the pool recovers


def test_it_refuses_a_huge_token_answer(endpoint):
    endpoint.huge_next()
    with pytest.raises(oauth.TokenRejected) as caught:
        _client_credentials(endpoint)
    assert caught.value.code == "too_large"


def test_it_returns_the_rotated_refresh_token(endpoint):
    first = endpoint.issue_refresh_token(CLIENT_ID)
    grant = oauth.refresh(
        token_url=endpoint.token_url,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        refresh_token=first,
        scope="",
        client_auth="client_secret_post",
    )
    assert grant.refresh_token and grant.refresh_token != first
    assert endpoint.token_requests[-1].form()["refresh_token"] == first


def test_it_keeps_the_refresh_token_when_the_provider_does_not_rotate(local_upstreams):
    from tests.fakes.oauth import FakeTokenServer

    with FakeTokenServer(rotate_refresh_tokens=False) as endpoint:
        endpoint.add_client("public-app", None)
        token = endpoint.issue_refresh_token("public-app")
        grant = oauth.refresh(
            token_url=endpoint.token_url,
            client_id="public-app",
            client_secret="",
            refresh_token=token,
            scope="",
            client_auth="client_secret_basic",
        )
        assert grant.refresh_token == token
        assert endpoint.token_requests[-1].form()["client_id"] == "public-app"  # a public client sends no secret


def test_it_never_logs_a_token_or_secret_even_at_debug(endpoint, caplog):
    caplog.set_level(logging.DEBUG)
    for name in ("authlib", "urllib3", "requests", "tokens"):
        caplog.set_level(logging.DEBUG, logger=name)
    refresh_token = endpoint.issue_refresh_token(CLIENT_ID)
    grant = oauth.refresh(
        token_url=endpoint.token_url,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        refresh_token=refresh_token,
        scope="",
        client_auth="client_secret_post",
    )
    cc_grant = _client_credentials(endpoint)
    endpoint.fail_next(401, "invalid_client")
    with pytest.raises(oauth.TokenRejected):
        _client_credentials(endpoint)
    logged = caplog.text + repr(grant) + repr(cc_grant)
    assert caplog.records  # urllib3 did log at DEBUG: the check below is not vacuous
    for secret in (CLIENT_SECRET, refresh_token, grant.refresh_token, grant.access_token, cc_grant.access_token):
        assert secret not in logged
