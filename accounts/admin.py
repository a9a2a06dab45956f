from __future__ import annotations

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.utils.translation import gettext_lazy as _

from accounts.models import User


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    fieldsets = (
        *BaseUserAdmin.fieldsets,
        (_("Limits"), {"fields": ("approval", "monthly_budget_usd", "monthly_token_budget", "chat_rate_limit")}),
    )
    list_display = (*BaseUserAdmin.list_display, "approval", "is_active")
    list_filter = (*BaseUserAdmin.list_filter, "approval")
