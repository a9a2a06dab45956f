from __future__ import annotations

import re
from datetime import datetime, time, timedelta

from django import forms
from django.conf import settings
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from tokens.api_keys import clean_model_list
from tokens.models import ClientAuth, Kind
from tokens.pasted import secret_problem

AZURE_TOKEN_URL = "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token"
AZURE_SCOPE = "https://cognitiveservices.azure.com/.default"
TENANT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,253}$")

OAUTH = (Kind.CLIENT_CREDENTIALS, Kind.REFRESH_TOKEN)
# Which kinds each field belongs to; keys.js shows only the current kind's fields.
KIND_FIELDS = {
    "api_key": (Kind.API_KEY, Kind.AZURE_OPENAI),
    "api_version": (Kind.AZURE_OPENAI, Kind.CLIENT_CREDENTIALS),
    "preset": (Kind.CLIENT_CREDENTIALS,),
    "tenant_id": (Kind.CLIENT_CREDENTIALS,),
    "token_url": OAUTH,
    "client_id": OAUTH,
    "client_secret": OAUTH,
    "client_auth": OAUTH,
    "scope": OAUTH,
    "refresh_token": (Kind.REFRESH_TOKEN,),
}
EXPIRY_CHOICES = [
    ("never", _("Never")),
    ("1", _("In 1 day")),
    ("7", _("In 7 days")),
    ("30", _("In 30 days")),
    ("date", _("On a date…")),
]


def _secret_input(placeholder: str = "") -> forms.PasswordInput:
    # render_value stays False: a secret is never sent back to the browser, not even on a form error.
    return forms.PasswordInput(attrs={"autocomplete": "off", "placeholder": placeholder, "spellcheck": "false"})


class ExpiryForm(forms.Form):
    expiry = forms.ChoiceField(label=_("Expires"), choices=EXPIRY_CHOICES, required=False, initial="never")
    expires_on = forms.DateField(
        label=_("Expiry date"),
        required=False,
        widget=forms.DateInput(attrs={"type": "date", "data-expiry-date": ""}),
    )

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        zone = timezone.get_current_timezone_name()
        self.fields["expires_on"].help_text = _("At 00:00 on this day (%(zone)s) its secrets are deleted.") % {
            "zone": zone
        }

    def clean(self) -> dict:
        super().clean()
        data = self.cleaned_data
        choice, day = data.get("expiry") or "never", data.get("expires_on")
        now = timezone.now()
        if choice == "date":
            if day is None:
                self.add_error("expires_on", _("Pick the day it should expire."))
            elif day <= timezone.localdate(now):
                self.add_error("expires_on", _("Pick a day after today."))
            else:
                data["expires_at"] = datetime.combine(day, time.min, tzinfo=timezone.get_current_timezone())
        elif choice.isdigit():
            data["expires_at"] = now + timedelta(days=int(choice))
        data.setdefault("expires_at", None)
        return data


class CredentialForm(ExpiryForm):
    kind = forms.ChoiceField(label=_("Kind"), choices=Kind.choices, initial=Kind.API_KEY)
    name = forms.CharField(label=_("Name"), max_length=80, required=False, initial="OpenAI")
    api_key = forms.CharField(label=_("API key"), required=False, strip=True, widget=_secret_input("sk-…"))
    preset = forms.ChoiceField(
        label=_("Preset"),
        required=False,
        choices=[("", _("None: I will enter the token URL")), ("azure", _("Azure OpenAI (Entra ID)"))],
        help_text=_("Azure fills in the token URL and scope from your tenant ID."),
    )
    tenant_id = forms.CharField(
        label=_("Directory (tenant) ID"),
        required=False,
        max_length=254,
        widget=forms.TextInput(attrs={"placeholder": "00000000-0000-0000-0000-000000000000", "spellcheck": "false"}),
    )
    token_url = forms.URLField(
        label=_("Token URL"),
        required=False,
        assume_scheme="https",
        widget=forms.URLInput(attrs={"placeholder": "https://login.example.com/oauth2/token"}),
    )
    client_id = forms.CharField(label=_("Client ID"), required=False, max_length=200)
    client_secret = forms.CharField(label=_("Client secret"), required=False, strip=True, widget=_secret_input())
    client_auth = forms.ChoiceField(
        label=_("Client authentication"), choices=ClientAuth.choices, initial=ClientAuth.BASIC, required=False
    )
    scope = forms.CharField(label=_("Scope"), required=False, max_length=300)
    refresh_token = forms.CharField(label=_("Refresh token"), required=False, strip=True, widget=_secret_input())
    base_url = forms.CharField(
        label=_("Base URL"),
        required=False,
        max_length=500,
        help_text=_(
            "Leave empty for the site's default provider. Paste what your provider's documentation shows: "
            "https://api.deepseek.com, http://localhost:11434 (Ollama), https://openrouter.ai/api/v1, or your "
            "Azure OpenAI endpoint (a full deployment URL with ?api-version= works too)."
        ),
        widget=forms.URLInput(attrs={"spellcheck": "false"}),
    )
    api_version = forms.CharField(
        label=_("Azure api-version"),
        required=False,
        max_length=40,
        help_text=_("Only for classic Azure deployments, e.g. 2024-10-21. Empty: the v1 API."),
    )
    default_model = forms.CharField(
        label=_("Default model"),
        required=False,
        max_length=200,
        help_text=_("The model (for Azure: the deployment name) new chats start with. Empty: the site's default."),
    )
    context_window = forms.IntegerField(
        label=_("Context window (tokens)"),
        required=False,
        min_value=1024,
        max_value=10_000_000,
        help_text=_("Only if your models take more or less than we know; empty lets us and the provider decide."),
    )

    field_order = ["kind", "name", "api_key", "preset", "tenant_id", "token_url", "client_id", "client_secret"]
    field_order += ["client_auth", "scope", "refresh_token", "base_url", "api_version", "default_model"]
    field_order += ["context_window", "expiry", "expires_on"]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["kind"].widget.attrs["data-kind-select"] = ""
        self.fields["preset"].widget.attrs["data-preset"] = ""
        self.fields["tenant_id"].widget.attrs["data-tenant"] = ""
        # Empty means the site's default provider: show that one, not OpenAI's address, when the operator set another.
        self.fields["base_url"].widget.attrs["placeholder"] = settings.OPENAI_BASE_URL
        for name, kinds in KIND_FIELDS.items():
            self.fields[name].widget.attrs["data-kinds"] = " ".join(kinds)

    def clean_api_key(self) -> str:
        return _clean_secret(self.cleaned_data.get("api_key") or "")

    def clean_client_secret(self) -> str:
        return _clean_secret(self.cleaned_data.get("client_secret") or "")

    def clean_refresh_token(self) -> str:
        return _clean_secret(self.cleaned_data.get("refresh_token") or "")

    def clean(self) -> dict:
        data = super().clean()
        if data.get("kind") == Kind.CLIENT_CREDENTIALS and data.get("preset") == "azure":
            tenant = (data.get("tenant_id") or "").strip()
            if not TENANT_RE.match(tenant):
                self.add_error("tenant_id", _("Enter your Microsoft Entra tenant ID (a GUID or a domain)."))
            else:
                data["token_url"] = data.get("token_url") or AZURE_TOKEN_URL.format(tenant=tenant)
                data["scope"] = data.get("scope") or AZURE_SCOPE
        return data

    def credential_fields(self) -> dict:
        """The cleaned values, named as credential_create takes them."""
        names = ["kind", "name", "api_key", "base_url", "token_url", "client_id", "client_secret", "scope"]
        fields = {name: self.cleaned_data.get(name) or "" for name in [*names, "refresh_token", "api_version"]}
        fields["default_model"] = (self.cleaned_data.get("default_model") or "").strip()
        fields["context_window"] = self.cleaned_data.get("context_window")
        fields["client_auth"] = self.cleaned_data.get("client_auth") or ClientAuth.BASIC
        fields["expires_at"] = self.cleaned_data.get("expires_at")
        return fields


def _clean_secret(value: str) -> str:
    problem = secret_problem(value)
    if problem:
        raise forms.ValidationError(problem)
    return value


class ReplaceKeyForm(forms.Form):
    api_key = forms.CharField(label=_("New API key"), strip=True, widget=_secret_input("sk-…"))

    def clean_api_key(self) -> str:
        return _clean_secret(self.cleaned_data.get("api_key") or "")


class CredentialEditForm(CredentialForm):
    """Change a saved credential in place: every field of its kind; an empty secret keeps the stored one."""

    def __init__(self, *args, credential, **kwargs) -> None:
        initial = {
            "kind": credential.kind,
            "name": credential.name,
            "base_url": credential.base_url,
            "api_version": credential.api_version,
            "default_model": credential.default_model,
            "context_window": credential.context_window,
            "token_url": credential.token_url,
            "client_id": credential.client_id,
            "client_auth": credential.client_auth,
            "scope": credential.scope,
        }
        super().__init__(*args, initial=initial, **kwargs)
        for name in ("expiry", "expires_on", "preset", "tenant_id"):
            del self.fields[name]
        self.fields["kind"].disabled = True
        self.fields["kind"].required = False
        for name in ("api_key", "client_secret", "refresh_token"):
            self.fields[name].help_text = _("Leave empty to keep the stored one.")

    def clean(self) -> dict:
        forms.Form.clean(self)
        data = self.cleaned_data
        data["kind"] = self.initial["kind"]
        return data


class ApiKeyForm(ExpiryForm):
    """A new personal API key: name, expiry, optional model allowlist and credential."""

    name = forms.CharField(label=_("Name"), max_length=80, help_text=_("Where you will use it, e.g. “laptop script”."))
    allowed_models = forms.CharField(
        label=_("Allowed models"),
        required=False,
        max_length=2000,
        help_text=_("Model ids separated by commas or spaces. Empty allows every model."),
        widget=forms.TextInput(attrs={"placeholder": "gpt-4o-mini, gpt-4.1", "spellcheck": "false"}),
    )
    credential: forms.ModelChoiceField = forms.ModelChoiceField(
        label=_("Credential"),
        queryset=None,
        required=False,
        empty_label=_("My default credential"),
        help_text=_("Calls made with this key are paid for with this credential."),
    )

    field_order = ["name", "expiry", "expires_on", "allowed_models", "credential"]

    def __init__(self, *args, user, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        credential = self.fields["credential"]
        assert isinstance(credential, forms.ModelChoiceField)
        credential.queryset = user.credentials.all()
        self.fields["expiry"].label = _("Expires")
        self.fields["expires_on"].help_text = _("The key stops working at 00:00 on this day.")

    def clean_allowed_models(self) -> list[str]:
        return clean_model_list(self.cleaned_data.get("allowed_models") or "")
