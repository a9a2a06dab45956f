from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.contrib import messages
from django.forms import Form
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_POST

from accounts.models import AuthenticatedHttpRequest
from tokens import services
from tokens.forms import CredentialEditForm, CredentialForm, ExpiryForm, ReplaceKeyForm
from tokens.models import Credential, CredentialEvent, Status

SECRET_FIELDS = ("api_key", "client_secret", "refresh_token")


def _get_credential(request: AuthenticatedHttpRequest, pk: str) -> Credential:
    credential = Credential.objects.filter(pk=pk, user=request.user).first()
    if credential is None:
        raise Http404(_("No such credential."))
    return credential


def _render_list(request: AuthenticatedHttpRequest, form: CredentialForm, status: int = 200) -> HttpResponse:
    ctx = {
        "credentials": request.user.credentials.all(),
        "form": form,
        "needs_key": request.GET.get("next") == "chat",
    }
    return render(request, "tokens/credential_list.html", ctx, status=status)


@sensitive_post_parameters(*SECRET_FIELDS)
def credential_list(request: AuthenticatedHttpRequest) -> HttpResponse:
    if request.method != "POST":
        return _render_list(request, CredentialForm())

    form = CredentialForm(request.POST)
    if form.is_valid():
        try:
            credential = services.credential_create(user=request.user, **form.credential_fields())
        except services.CredentialError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, str(exc))
        else:
            if credential.status == Status.ACTIVE:
                messages.success(
                    request,
                    _("Saved “%(name)s” (%(hint)s). The provider accepted it.")
                    % {"name": credential.name, "hint": credential.hint},
                )
            else:
                messages.warning(
                    request,
                    _("Saved “%(name)s” (%(hint)s). %(detail)s")
                    % {"name": credential.name, "hint": credential.hint, "detail": credential.status_detail},
                )
            if credential.status == Status.ACTIVE and request.GET.get("next") == "chat":
                return redirect("chat:index")  # sent here by a chat without a key: back to it, the draft kept there
            return redirect("tokens:credential-list")
    return _render_list(request, form, status=400)


def _render_detail(
    request: AuthenticatedHttpRequest, credential: Credential, status: int = 200, **bound: Form
) -> HttpResponse:
    ctx = {
        "credential": credential,
        "events": CredentialEvent.objects.filter(credential_id=credential.pk)[:100],
        "replace_form": bound.get("replace_form") or ReplaceKeyForm(),
        "expiry_form": bound.get("expiry_form") or ExpiryForm(initial={"expiry": "never"}),
        "edit_form": bound.get("edit_form") or CredentialEditForm(credential=credential),
    }
    return render(request, "tokens/credential_detail.html", ctx, status=status)


@sensitive_post_parameters(*SECRET_FIELDS)
def credential_detail(request: AuthenticatedHttpRequest, pk: str) -> HttpResponse:
    """Show a credential; a POST edits it in place (every kind), checked before anything is stored."""
    credential = _get_credential(request, pk)
    if request.method != "POST":
        return _render_detail(request, credential)

    def edit(credential: Credential, **fields: Any) -> str:
        updated = services.credential_update(credential=credential, actor=request.user.username, **fields)
        return _("Saved “%(name)s”. %(detail)s") % {"name": updated.name, "detail": updated.status_detail}

    form = CredentialEditForm(request.POST, credential=credential)
    if form.is_valid():
        try:
            success = edit(credential, **form.credential_fields())
        except services.CredentialError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, str(exc))
        else:
            messages.success(request, success)
            return redirect("tokens:credential-detail", pk=credential.pk)
    return _render_detail(request, credential, status=400, edit_form=form)


def _change(request: AuthenticatedHttpRequest, pk: str, form: Form, change: Callable, form_name: str) -> HttpResponse:
    """Apply one change to the user's credential; on refusal, show the page again with the form's error."""
    credential = _get_credential(request, pk)
    if form.is_valid():
        try:
            success = change(credential, **form.cleaned_data)
        except services.CredentialError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, success)
            return redirect("tokens:credential-detail", pk=credential.pk)
    credential.refresh_from_db()
    return _render_detail(request, credential, status=400, **{form_name: form})


@require_POST
@sensitive_post_parameters(*SECRET_FIELDS)
def credential_replace(request: AuthenticatedHttpRequest, pk: str) -> HttpResponse:
    def replace(credential: Credential, api_key: str) -> str:
        services.credential_replace_key(credential=credential, api_key=api_key, actor=request.user.username)
        return _("Key replaced; now showing %(hint)s.") % {"hint": credential.hint}

    return _change(request, pk, ReplaceKeyForm(request.POST), replace, "replace_form")


@require_POST
def credential_expiry(request: AuthenticatedHttpRequest, pk: str) -> HttpResponse:
    def set_expiry(credential: Credential, expires_at: datetime | None, **_ignored: object) -> str:
        services.credential_set_expiry(credential=credential, expires_at=expires_at, actor=request.user.username)
        return _("Expiry of “%(name)s” updated.") % {"name": credential.name}

    return _change(request, pk, ExpiryForm(request.POST), set_expiry, "expiry_form")


@require_POST
def credential_check(request: AuthenticatedHttpRequest, pk: str) -> HttpResponse:
    credential = _get_credential(request, pk)
    services.credential_check(credential=credential, actor=request.user.username)
    messages.info(
        request,
        _("Checked “%(name)s”: %(status)s.")
        % {"name": credential.name, "status": credential.get_status_display().lower()},
    )
    return redirect("tokens:credential-detail", pk=credential.pk)


@require_POST
def credential_default(request: AuthenticatedHttpRequest, pk: str) -> HttpResponse:
    credential = _get_credential(request, pk)
    services.credential_make_default(credential=credential)
    messages.success(request, _("“%(name)s” is now your default.") % {"name": credential.name})
    return redirect("tokens:credential-list")


@require_POST
def credential_delete(request: AuthenticatedHttpRequest, pk: str) -> HttpResponse:
    credential = _get_credential(request, pk)
    services.credential_delete(credential=credential, actor=request.user.username)
    messages.success(
        request, _("Deleted “%(name)s”. Its secret is gone from our database.") % {"name": credential.name}
    )
    return redirect("tokens:credential-list")
