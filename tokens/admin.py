from __future__ import annotations

from django.contrib import admin

from tokens.models import ApiKey, Credential, CredentialEvent


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Credential)
class CredentialAdmin(ReadOnlyAdmin):
    list_display = ("name", "user", "kind", "status", "hint", "is_default", "last_checked_at", "created_at")
    list_filter = ("kind", "status")
    search_fields = ("name", "user__username")
    # Sealed fields are not editable, so they never appear here; only the mask does.
    fields = (
        "user",
        "name",
        "kind",
        "status",
        "status_detail",
        "hint",
        "base_url",
        "token_url",
        "client_id",
        "scope",
        "access_token_expires_at",
        "expires_at",
        "last_checked_at",
        "next_check_at",
        "last_refreshed_at",
        "failure_count",
        "created_at",
    )
    readonly_fields = fields

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(CredentialEvent)
class CredentialEventAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "user", "credential_name", "kind", "status", "actor", "detail")
    list_filter = ("kind", "status")
    search_fields = ("credential_name", "user__username", "actor")
    date_hierarchy = "created_at"


@admin.register(ApiKey)
class ApiKeyAdmin(ReadOnlyAdmin):
    # Metadata only: the hash is left out too, it is of no use to a person.
    list_display = ("name", "user", "prefix", "created_at", "last_used_at", "expires_at", "revoked_at")
    list_filter = ("revoked_at",)
    search_fields = ("name", "prefix", "user__username")
    fields = (
        *("user", "name", "prefix", "credential", "allowed_models"),
        *("created_at", "last_used_at", "expires_at", "revoked_at", "revoked_by"),
    )
    readonly_fields = fields
