from __future__ import annotations

from django import forms

from tokens.models import Kind


class ApiKeyForm(forms.Form):
    kind = forms.ChoiceField(
        choices=[(Kind.API_KEY.value, Kind.API_KEY.label)], initial=Kind.API_KEY, widget=forms.HiddenInput
    )
    name = forms.CharField(max_length=80, required=False, initial="OpenAI")
    api_key = forms.CharField(
        label="API key",
        strip=True,
        widget=forms.PasswordInput(attrs={"autocomplete": "off", "placeholder": "sk-…", "spellcheck": "false"}),
    )
    base_url = forms.URLField(
        label="Base URL",
        required=False,
        assume_scheme="https",
        help_text="Leave empty for the site's default provider. Any OpenAI-compatible https:// API works.",
        widget=forms.URLInput(attrs={"placeholder": "https://api.openai.com/v1"}),
    )


class ReplaceKeyForm(forms.Form):
    api_key = forms.CharField(
        label="New API key",
        strip=True,
        widget=forms.PasswordInput(attrs={"autocomplete": "off", "placeholder": "sk-…", "spellcheck": "false"}),
    )
