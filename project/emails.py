"""Sending our e-mails: each is three templates, emails/<name>-subject.txt, -body.txt and -body.html."""

from __future__ import annotations

from django.conf import settings
from django.core.mail import send_mail
from django.template.loader import render_to_string


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
