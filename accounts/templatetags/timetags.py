"""Times as the reader sees them: `{{ moment|timetag }}` renders `<time datetime="ISO">local text</time>`.

The text is in the active time zone (the reader's, set by accounts.middleware) and formatted
for the active language by Django's locale formats; `datetime` carries the exact instant.
"""

from __future__ import annotations

from datetime import datetime

from django import template
from django.contrib.humanize.templatetags.humanize import naturaltime
from django.utils import timezone
from django.utils.dateformat import format as date_format
from django.utils.formats import get_format
from django.utils.html import format_html

register = template.Library()

# style -> Django format name (localised per language) or a fixed pattern.
STYLES = {
    "datetime": "DATETIME_FORMAT",
    "date": "DATE_FORMAT",
    "short": "SHORT_DATETIME_FORMAT",
    "log": "Y-m-d H:i:s",  # tables and logs: sortable, the same in every language
    "minute": "Y-m-d H:i",
}


def local_text(moment: datetime, style: str = "datetime") -> str:
    """moment (aware) as text in the current zone and language; style is a STYLES key or "relative"."""
    local = timezone.localtime(moment)
    if style == "relative":
        return str(naturaltime(moment))
    pattern = STYLES.get(style, STYLES["datetime"])
    if pattern.endswith("_FORMAT"):
        pattern = get_format(pattern)
    return date_format(local, pattern)


def zoned_text(moment: datetime) -> str:
    """moment for stored text (event details, emails): "2026-12-02 00:00 (Asia/Shanghai)" in the current zone."""
    return f"{local_text(moment, 'minute')} ({timezone.get_current_timezone_name()})"


@register.filter(is_safe=True)
def timetag(moment: datetime | None, style: str = "datetime") -> str:
    """`<time datetime="2026-11-30T20:05:00+08:00" title="...">local text</time>`; empty for None.

    style: "datetime" (default), "date", "short", "log" (Y-m-d H:i:s), "minute" (Y-m-d H:i) or "relative"
    ("3 minutes ago").
    The title names the zone, so a reader can tell which clock the text follows.
    """
    if not moment:
        return ""
    local = timezone.localtime(moment)
    full = f"{date_format(local, get_format('DATETIME_FORMAT'))} ({timezone.get_current_timezone_name()})"
    return format_html(
        '<time datetime="{}" title="{}">{}</time>', local.isoformat(timespec="seconds"), full, local_text(moment, style)
    )


@register.filter
def timetext(moment: datetime | None, style: str = "datetime") -> str:
    """Plain text for where no HTML goes (text emails): the local time followed by the zone's name."""
    return f"{local_text(moment, style)} ({timezone.get_current_timezone_name()})" if moment else ""
