from __future__ import annotations

from django.contrib import admin

from chat.models import Conversation, PriceOverride, TeamLimits, UsageRecord
from tokens.admin import ReadOnlyAdmin


@admin.register(UsageRecord)
class UsageRecordAdmin(ReadOnlyAdmin):
    list_display = (
        "created_at",
        "user",
        "model",
        "status_code",
        "outcome",
        "error_type",
        "prompt_tokens",
        "completion_tokens",
        "total_tokens",
        "is_estimated",
        "cost_usd",
        "latency_ms",
        "request_id",
    )
    list_filter = ("model", "outcome", "error_type", "is_estimated")
    search_fields = ("user__username", "model", "request_id", "response_id")
    date_hierarchy = "created_at"
    exclude = ("conversation",)


@admin.register(Conversation)
class ConversationAdmin(ReadOnlyAdmin):
    # Titles only: staff see who chats and when, not what was said.
    list_display = ("id", "user", "model", "created_at", "updated_at")
    fields = ("user", "model", "credential", "created_at", "updated_at")
    readonly_fields = fields


@admin.register(PriceOverride)
class PriceOverrideAdmin(admin.ModelAdmin):
    """Staff prices and context windows per model from a date on; usage rows keep the cost they were written with."""

    list_display = (
        "model",
        "effective_from",
        "input_usd_per_million",
        "output_usd_per_million",
        "cached_input_usd_per_million",
        "context_window",
        "note",
    )
    list_filter = ("model",)
    search_fields = ("model", "note")
    date_hierarchy = "effective_from"


@admin.register(TeamLimits)
class TeamLimitsAdmin(admin.ModelAdmin):
    list_display = ("__str__", "monthly_budget_usd", "monthly_token_budget", "chat_rate_limit")
