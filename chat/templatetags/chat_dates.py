from __future__ import annotations

from datetime import datetime

from django import template
from django.utils import timezone
from django.utils.translation import gettext as _

register = template.Library()


@register.filter
def age_group(moment: datetime) -> str:
    """Sidebar heading for a conversation last active at moment: Today, Yesterday, Previous 7 days, ..."""
    days = (timezone.localdate() - timezone.localtime(moment).date()).days
    if days <= 0:
        return _("Today")
    if days == 1:
        return _("Yesterday")
    if days < 7:
        return _("Previous 7 days")
    if days < 30:
        return _("Previous 30 days")
    return _("Older")
