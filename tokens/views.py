from __future__ import annotations

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_POST

from tokens import services
from tokens.forms import ApiKeyForm, ReplaceKeyForm
from tokens.models import Credential, CredentialEvent

SECRET_FIELDS = ("api_key", "client_secret", "refresh_token")


def _get_credential(request: HttpRequest, pk: str) -> Credential:
    credential = Credential.objects.filter(pk=pk, user=request.user).first()
    if credential is None:
        raise Http404("No such credential.")
    return credential


def _render_list(request: HttpRequest, form: ApiKeyForm, status: int = 200) -> HttpResponse:
    ctx = {
        "credentials": request.user.credentials.all(),
        "form": form,
        "needs_key": request.GET.get("next") == "chat",
    }
    return render(request, "tokens/credential_list.html", ctx, status=status)


@sensitive_post_parameters(*SECRET_FIELDS)
def credential_list(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        return _render_list(request, ApiKeyForm())

    form = ApiKeyForm(request.POST)
    if form.is_valid():
        try:
            credential = services.credential_create(
                user=request.user,
                name=form.cleaned_data["name"],
                api_key=form.cleaned_data["api_key"],
                base_url=form.cleaned_data["base_url"],
            )
        except services.CredentialError as exc:
            form.add_error(None, str(exc))
        else:
            if credential.status == "active":
                messages.success(request, f"Saved “{credential.name}” ({credential.hint}). The provider accepted it.")
            else:
                messages.warning(request, f"Saved “{credential.name}” ({credential.hint}). {credential.status_detail}")
            return redirect("tokens:credential-list")
    return _render_list(request, form, status=400)


def credential_detail(request: HttpRequest, pk: str) -> HttpResponse:
    credential = _get_credential(request, pk)
    ctx = {
        "credential": credential,
        "events": CredentialEvent.objects.filter(credential_id=credential.pk)[:100],
        "replace_form": ReplaceKeyForm(),
    }
    return render(request, "tokens/credential_detail.html", ctx)


@require_POST
@sensitive_post_parameters(*SECRET_FIELDS)
def credential_replace(request: HttpRequest, pk: str) -> HttpResponse:
    credential = _get_credential(request, pk)
    form = ReplaceKeyForm(request.POST)
    if form.is_valid():
        try:
            services.credential_replace_key(
                credential=credential, api_key=form.cleaned_data["api_key"], actor=request.user.username
            )
        except services.CredentialError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"Key replaced; now showing {credential.hint}.")
            return redirect("tokens:credential-detail", pk=credential.pk)
    credential.refresh_from_db()
    ctx = {
        "credential": credential,
        "events": CredentialEvent.objects.filter(credential_id=credential.pk)[:100],
        "replace_form": form,
    }
    return render(request, "tokens/credential_detail.html", ctx, status=400)


@require_POST
def credential_check(request: HttpRequest, pk: str) -> HttpResponse:
    credential = _get_credential(request, pk)
    services.credential_check(credential=credential, actor=request.user.username)
    messages.info(request, f"Checked “{credential.name}”: {credential.get_status_display().lower()}.")
    return redirect("tokens:credential-detail", pk=credential.pk)


@require_POST
def credential_default(request: HttpRequest, pk: str) -> HttpResponse:
    credential = _get_credential(request, pk)
    services.credential_make_default(credential=credential)
    messages.success(request, f"“{credential.name}” is now your default.")
    return redirect("tokens:credential-list")


@require_POST
def credential_delete(request: HttpRequest, pk: str) -> HttpResponse:
    credential = _get_credential(request, pk)
    services.credential_delete(credential=credential, actor=request.user.username)
    messages.success(request, f"Deleted “{credential.name}”. Its secret is gone from our database.")
    return redirect("tokens:credential-list")
