from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _

from chat.models import Conversation


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


class UsageFilterForm(forms.Form):
    STATUS_CHOICES = [("", _("Any outcome")), ("ok", _("Succeeded")), ("error", _("Failed")), ("stopped", _("Stopped"))]

    user = forms.CharField(label=_("User"), required=False, max_length=150)
    model = forms.CharField(label=_("Model"), required=False, max_length=100)
    status = forms.ChoiceField(label=_("Outcome"), required=False, choices=STATUS_CHOICES)
    since = forms.DateField(required=False, label=_("From"), widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(required=False, label=_("To"), widget=forms.DateInput(attrs={"type": "date"}))

    def clean(self) -> dict:
        data = super().clean()
        if data.get("since") and data.get("until") and data["since"] > data["until"]:
            raise forms.ValidationError(_("The “From” date is after the “To” date."))
        return data
