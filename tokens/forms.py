from __future__ import annotations

import re
from datetime import datetime, time, timedelta

from django import forms
from django.utils import timezone

from tokens.models import ClientAuth, Kind

AZURE_TOKEN_URL = "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token"
AZURE_SCOPE = "https://cognitiveservices.azure.com/.default"
TENANT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,253}$")

OAUTH = (Kind.CLIENT_CREDENTIALS, Kind.REFRESH_TOKEN)
# Which kinds each field belongs to; keys.js shows only the current kind's fields.
KIND_FIELDS = {
    "api_key": (Kind.API_KEY,),
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
    ("never", "Never"),
    ("1", "In 1 day"),
    ("7", "In 7 days"),
    ("30", "In 30 days"),
    ("date", "On a date…"),
]


def _secret_input(placeholder: str = "") -> forms.PasswordInput:
    # render_value stays False: a secret is never sent back to the browser, not even on a form error.
    return forms.PasswordInput(attrs={"autocomplete": "off", "placeholder": placeholder, "spellcheck": "false"})


class ExpiryForm(forms.Form):
    expiry = forms.ChoiceField(label="Expires", choices=EXPIRY_CHOICES, required=False, initial="never")
    expires_on = forms.DateField(
        label="Expiry date",
        required=False,
        help_text="At 00:00 UTC on this day its secrets are deleted.",
        widget=forms.DateInput(attrs={"type": "date", "data-expiry-date": ""}),
    )

    def clean(self) -> dict:
        data = super().clean()
        choice, day = data.get("expiry") or "never", data.get("expires_on")
        now = timezone.now()
        if choice == "date":
            if day is None:
                self.add_error("expires_on", "Pick the day it should expire.")
            elif day <= now.date():
                self.add_error("expires_on", "Pick a day after today.")
            else:
                data["expires_at"] = datetime.combine(day, time.min, tzinfo=timezone.get_current_timezone())
        elif choice.isdigit():
            data["expires_at"] = now + timedelta(days=int(choice))
        data.setdefault("expires_at", None)
        return data


class CredentialForm(ExpiryForm):
    kind = forms.ChoiceField(label="Kind", choices=Kind.choices, initial=Kind.API_KEY)
    name = forms.CharField(max_length=80, required=False, initial="OpenAI")
    api_key = forms.CharField(label="API key", required=False, strip=True, widget=_secret_input("sk-…"))
    preset = forms.ChoiceField(
        label="Preset",
        required=False,
        choices=[("", "None: I will enter the token URL"), ("azure", "Azure OpenAI (Entra ID)")],
        help_text="Azure fills in the token URL and scope from your tenant ID.",
    )
    tenant_id = forms.CharField(
        label="Directory (tenant) ID",
        required=False,
        max_length=254,
        widget=forms.TextInput(attrs={"placeholder": "00000000-0000-0000-0000-000000000000", "spellcheck": "false"}),
    )
    token_url = forms.URLField(
        label="Token URL",
        required=False,
        assume_scheme="https",
        widget=forms.URLInput(attrs={"placeholder": "https://login.example.com/oauth2/token"}),
    )
    client_id = forms.CharField(label="Client ID", required=False, max_length=200)
    client_secret = forms.CharField(label="Client secret", required=False, strip=True, widget=_secret_input())
    client_auth = forms.ChoiceField(
        label="Client authentication", choices=ClientAuth.choices, initial=ClientAuth.BASIC, required=False
    )
    scope = forms.CharField(label="Scope", required=False, max_length=300)
    refresh_token = forms.CharField(label="Refresh token", required=False, strip=True, widget=_secret_input())
    base_url = forms.URLField(
        label="Base URL",
        required=False,
        assume_scheme="https",
        help_text="Leave empty for the site's default provider. Any OpenAI-compatible https:// API works.",
        widget=forms.URLInput(attrs={"placeholder": "https://api.openai.com/v1"}),
    )

    field_order = ["kind", "name", "api_key", "preset", "tenant_id", "token_url", "client_id", "client_secret"]
    field_order += ["client_auth", "scope", "refresh_token", "base_url", "expiry", "expires_on"]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["kind"].widget.attrs["data-kind-select"] = ""
        self.fields["preset"].widget.attrs["data-preset"] = ""
        self.fields["tenant_id"].widget.attrs["data-tenant"] = ""
        for name, kinds in KIND_FIELDS.items():
            self.fields[name].widget.attrs["data-kinds"] = " ".join(kinds)

    def clean(self) -> dict:
        data = super().clean()
        if data.get("kind") == Kind.CLIENT_CREDENTIALS and data.get("preset") == "azure":
            tenant = (data.get("tenant_id") or "").strip()
            if not TENANT_RE.match(tenant):
                self.add_error("tenant_id", "Enter your Microsoft Entra tenant ID (a GUID or a domain).")
            else:
                data["token_url"] = data.get("token_url") or AZURE_TOKEN_URL.format(tenant=tenant)
                data["scope"] = data.get("scope") or AZURE_SCOPE
        return data

    def credential_fields(self) -> dict:
        """The cleaned values, named as credential_create takes them."""
        names = ["kind", "name", "api_key", "base_url", "token_url", "client_id", "client_secret", "scope"]
        fields = {name: self.cleaned_data.get(name) or "" for name in [*names, "refresh_token"]}
        fields["client_auth"] = self.cleaned_data.get("client_auth") or ClientAuth.BASIC
        fields["expires_at"] = self.cleaned_data.get("expires_at")
        return fields


class ReplaceKeyForm(forms.Form):
    api_key = forms.CharField(label="New API key", strip=True, widget=_secret_input("sk-…"))
