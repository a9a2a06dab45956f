from __future__ import annotations

from datetime import datetime

from django import template
from django.utils import timezone

register = template.Library()


@register.filter
def age_group(moment: datetime) -> str:
    """Sidebar heading for a conversation last active at moment: Today, Yesterday, Previous 7 days, ..."""
    days = (timezone.localdate() - timezone.localtime(moment).date()).days
    if days <= 0:
        return "Today"
    if days == 1:
        return "Yesterday"
    if days < 7:
        return "Previous 7 days"
    if days < 30:
        return "Previous 30 days"
    return "Older"
