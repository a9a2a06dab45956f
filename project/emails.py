"""Sending our e-mails: each is three templates, emails/<name>-subject.txt, -body.txt and -body.html."""

from __future__ import annotations

import zoneinfo
from collections.abc import Iterable

from django.conf import settings
from django.core.mail import send_mail
from django.template.loader import render_to_string
from django.utils import timezone, translation


def email_send(name: str, ctx: dict, recipients: list[str]) -> int:
    """Render and send e-mail `name` to each recipient separately (no one sees the others); returns how many went."""
    ctx = {"site_url": settings.SITE_URL, **ctx}
    subject = " ".join(render_to_string(f"emails/{name}-subject.txt", ctx).split())
    text = render_to_string(f"emails/{name}-body.txt", ctx)
    html = render_to_string(f"emails/{name}-body.html", ctx)
    sent = 0
    for recipient in recipients:
        sent += send_mail(subject, text, None, [recipient], html_message=html)
    return sent


def _zone(name: str) -> zoneinfo.ZoneInfo | None:
    try:
        return zoneinfo.ZoneInfo(name) if name else None
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return None


def email_send_each(name: str, ctx: dict, users: Iterable) -> int:
    """Send e-mail `name` to each user with an address, rendered in their own language and time zone.

    The language is the user's `language` (else settings.LANGUAGE_CODE, never the language of
    whoever triggered the e-mail), the zone their `timezone` (else settings.TIME_ZONE).
    Returns how many went.
    """
    sent = 0
    for user in users:
        if not user.email:
            continue
        language = getattr(user, "language", "") or settings.LANGUAGE_CODE
        zone = _zone(getattr(user, "timezone", "")) or timezone.get_default_timezone()
        with translation.override(language), timezone.override(zone):
            sent += email_send(name, {**ctx, "recipient": user}, [user.email])
    return sent
