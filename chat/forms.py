from __future__ import annotations

from django import forms

from chat.models import Conversation


class RenameForm(forms.ModelForm):
    class Meta:
        model = Conversation
        fields = ("title",)

    def clean_title(self) -> str:
        title = self.cleaned_data["title"].strip()
        if not title:
            raise forms.ValidationError("Give the conversation a title.")
        return title


class SystemPromptForm(forms.ModelForm):
    class Meta:
        model = Conversation
        fields = ("system_prompt",)
        widgets = {
            "system_prompt": forms.Textarea(
                attrs={"rows": 3, "placeholder": "e.g. Answer briefly, in British English."}
            )
        }


class UsageFilterForm(forms.Form):
    STATUS_CHOICES = [("", "Any outcome"), ("ok", "Succeeded"), ("error", "Failed"), ("stopped", "Stopped")]

    user = forms.CharField(required=False, max_length=150)
    model = forms.CharField(required=False, max_length=100)
    status = forms.ChoiceField(required=False, choices=STATUS_CHOICES)
    since = forms.DateField(required=False, label="From", widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(required=False, label="To", widget=forms.DateInput(attrs={"type": "date"}))

    def clean(self) -> dict:
        data = super().clean()
        if data.get("since") and data.get("until") and data["since"] > data["until"]:
            raise forms.ValidationError("The “From” date is after the “To” date.")
        return data
