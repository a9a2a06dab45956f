"""The /settings/api-keys/ page: create, list and revoke personal API keys (staff see and revoke everyone's)."""

from __future__ import annotations

from allauth.core.exceptions import ReauthenticationRequired
from django.contrib import messages
from django.db.models import QuerySet
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from accounts import services as accounts
from accounts.models import AuthenticatedHttpRequest
from tokens import api_keys
from tokens.forms import ApiKeyForm
from tokens.models import ApiKey


def _others_keys(request: AuthenticatedHttpRequest) -> QuerySet[ApiKey]:
    """Other people's keys staff may see and revoke: a superuser's only a superuser (see chat.people)."""
    keys = ApiKey.objects.exclude(user=request.user)
    return keys if request.user.is_superuser else keys.exclude(user__is_superuser=True)


def _render_list(
    request: AuthenticatedHttpRequest, form: ApiKeyForm, *, new_key: str = "", status: int = 200
) -> HttpResponse:
    ctx = {
        "form": form,
        "api_keys": request.user.api_keys.select_related("credential"),
        "new_key": new_key,
        "has_credentials": request.user.credentials.exists(),
    }
    if request.user.is_staff:
        ctx["others_keys"] = _others_keys(request).select_related("user", "credential")[:500]
    return render(request, "tokens/api_key_list.html", ctx, status=status)


@never_cache
def api_key_list(request: AuthenticatedHttpRequest) -> HttpResponse:
    if request.method != "POST":
        return _render_list(request, ApiKeyForm(user=request.user, initial={"expiry": "never"}))
    if not accounts.signed_in_recently(request):
        raise ReauthenticationRequired  # allauth asks for the password, then carries out this request
    form = ApiKeyForm(request.POST, user=request.user)
    if form.is_valid():
        data = form.cleaned_data
        try:
            _row, key = api_keys.api_key_create(
                user=request.user,
                name=data["name"],
                expires_at=data["expires_at"],
                allowed_models=data["allowed_models"],
                credential=data["credential"],
            )
        except api_keys.ApiKeyError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, exc.message)
        else:
            # Shown in this response only: it is never stored, so it cannot be shown again.
            return _render_list(request, ApiKeyForm(user=request.user, initial={"expiry": "never"}), new_key=key)
    return _render_list(request, form, status=400)


@require_POST
def api_key_revoke(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    api_key = request.user.api_keys.filter(pk=pk).first()
    if api_key is None and request.user.is_staff:
        api_key = _others_keys(request).filter(pk=pk).first()
    if api_key is None:
        raise Http404(_("No such API key."))
    api_keys.api_key_revoke(api_key=api_key, actor=request.user.username)
    done = _("Revoked “%(name)s”. It and its access tokens no longer work.") % {"name": api_key.name}
    messages.success(request, done)
    return redirect("api_keys:api-key-list")
