from __future__ import annotations

from datetime import date
from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _

from accounts.models import User
from chat.models import Conversation, TeamLimits


class RenameForm(forms.ModelForm):
    class Meta:
        model = Conversation
        fields = ("title",)

    def clean_title(self) -> str:
        title = self.cleaned_data["title"].strip()
        if not title:
            raise forms.ValidationError(_("Give the conversation a title."))
        return title


class SystemPromptForm(forms.ModelForm):
    class Meta:
        model = Conversation
        fields = ("system_prompt",)
        widgets = {
            "system_prompt": forms.Textarea(
                attrs={"rows": 3, "placeholder": _("e.g. Answer briefly, in British English.")}
            )
        }


FIRST_DAY, LAST_DAY = date(2000, 1, 1), date(2199, 12, 31)


class UsageFilterForm(forms.Form):
    STATUS_CHOICES = [("", _("Any outcome")), ("ok", _("Succeeded")), ("error", _("Failed")), ("stopped", _("Stopped"))]

    user = forms.CharField(required=False, max_length=150, label=_("User"))
    model = forms.CharField(required=False, max_length=100, label=_("Model"))
    status = forms.ChoiceField(required=False, choices=STATUS_CHOICES, label=_("Outcome"))
    since = forms.DateField(required=False, label=_("From"), widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(required=False, label=_("To"), widget=forms.DateInput(attrs={"type": "date"}))

    def _clean_day(self, name: str) -> date | None:
        day = self.cleaned_data.get(name)
        if day and not FIRST_DAY <= day <= LAST_DAY:
            raise forms.ValidationError(
                _("Choose a date between %(first)s and %(last)s.") % {"first": FIRST_DAY, "last": LAST_DAY}
            )
        return day

    def clean_since(self) -> date | None:
        return self._clean_day("since")

    def clean_until(self) -> date | None:
        return self._clean_day("until")

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        if data.get("since") and data.get("until") and data["since"] > data["until"]:
            raise forms.ValidationError(_("The “From” date is after the “To” date."))
        return data


class UserLimitsForm(forms.ModelForm):
    """A person's own limits on /usage/users/<id>/; empty fields use the team defaults."""

    class Meta:
        model = User
        fields = ("monthly_budget_usd", "monthly_token_budget", "chat_rate_limit")
        labels = {
            "monthly_budget_usd": _("Monthly budget (USD)"),
            "monthly_token_budget": _("Monthly token budget"),
            "chat_rate_limit": _("Chat requests per minute"),
        }
        help_texts = {
            "monthly_budget_usd": _("Estimated cost at list price; empty uses the team default."),
            "monthly_token_budget": _("Input + output tokens; empty uses the team default."),
            "chat_rate_limit": _("Empty uses the team default."),
        }


class TeamLimitsForm(forms.ModelForm):
    """The team's default limits on /usage/users/."""

    class Meta:
        model = TeamLimits
        fields = ("monthly_budget_usd", "monthly_token_budget", "chat_rate_limit")
        labels = UserLimitsForm.Meta.labels
        help_texts = {
            "monthly_budget_usd": _("Empty: no cost budget."),
            "monthly_token_budget": _("Empty: no token budget."),
        }
