"""A URLconf whose one view fails while it holds a credential's plaintext, as a bug in real code would."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.urls import include, path

from tokens.services import credential_bearer, credential_for_user


def fail_holding_a_key(request: HttpRequest) -> HttpResponse:
    credential = credential_for_user(user=request.user)
    bearer = credential_bearer(credential=credential)
    token = bearer.token
    headers = {"Authorization": f"Bearer {token}"}
    raise RuntimeError(f"upstream refused a request with {len(headers)} headers")


def fail_quoting_a_key(request: HttpRequest) -> HttpResponse:
    """A library's exception that quotes what it was given, as h11 quotes an illegal header value."""
    bearer = credential_bearer(credential=credential_for_user(user=request.user))
    try:
        raise ValueError(f"Illegal header value b'Bearer {bearer.token}\\n'")
    except ValueError as exc:
        raise RuntimeError(f"upstream call failed: {exc}") from exc


urlpatterns = [
    path("fail/", fail_holding_a_key),
    path("fail-quoting/", fail_quoting_a_key),
    path("", include("project.urls")),
]
