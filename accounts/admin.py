from __future__ import annotations

from collections.abc import Callable

from allauth.mfa.admin import AuthenticatorAdmin
from allauth.mfa.models import Authenticator as MfaAuthenticator
from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from accounts.models import Authenticator, User

# Listed under the accounts app with translatable names (accounts.models.Authenticator), as allauth lists them.
admin.site.unregister(MfaAuthenticator)
admin.site.register(Authenticator, AuthenticatorAdmin)


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    fieldsets = (
        *(BaseUserAdmin.fieldsets or ()),
        (_("Limits"), {"fields": ("approval", "monthly_budget_usd", "monthly_token_budget", "chat_rate_limit")}),
    )
    list_filter = (*BaseUserAdmin.list_filter, "approval")

    def get_list_display(self, request: HttpRequest) -> tuple[str | Callable[[User], str | bool], ...]:
        return (*super().get_list_display(request), "approval", "is_active")
