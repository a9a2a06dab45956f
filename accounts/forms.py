from __future__ import annotations

from allauth.account import forms as allauth_forms
from django.utils.translation import gettext_lazy as _

from accounts import usernames


class LoginForm(allauth_forms.LoginForm):
    """allauth's log-in form, whose `login` field is posted and rendered as `username` (the stable field name).

    A client posting allauth's own name, `login`, is understood as well.
    """

    def __init__(self, *args, **kwargs) -> None:
        data = kwargs.get("data")
        if data is not None and "username" not in data and "login" in data:
            data = data.copy()
            data["username"] = data["login"]
            kwargs["data"] = data
        super().__init__(*args, **kwargs)
        self.fields["login"].label = _("User name or email")
        self.fields["login"].widget.attrs.update(autocomplete="username", placeholder="")
        self.fields["password"].widget.attrs["placeholder"] = ""
        self.fields["password"].help_text = ""

    def clean_login(self) -> str:
        return usernames.normalize(super().clean_login())

    def add_prefix(self, field_name: str) -> str:
        return "username" if field_name == "login" else super().add_prefix(field_name)


class SignupForm(allauth_forms.SignupForm):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["email"].help_text = _("For password resets and notices; never shown to others.")
        for field in self.fields.values():
            field.widget.attrs.pop("placeholder", None)
