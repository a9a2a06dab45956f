"""How django-allauth fits this site: the sign-up policy, links built from SITE_URL, the client address."""

from __future__ import annotations

from types import SimpleNamespace
from urllib.parse import urlsplit

from allauth.account.adapter import DefaultAccountAdapter
from allauth.core.exceptions import ImmediateHttpResponse
from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest
from django.shortcuts import render
from django.urls import reverse
from django.utils.translation import gettext as _

from accounts import ratelimit, services, usernames
from accounts.models import User

QUIET_MESSAGES = {"account/messages/logged_in.txt", "account/messages/logged_out.txt"}


class AccountAdapter(DefaultAccountAdapter):
    def is_open_for_signup(self, request: HttpRequest) -> bool:
        """SIGNUP_MODE=closed shuts sign-up, by password and by single sign-on alike (403, the closed page);
        approval lets people in to wait (services.account_signed_up)."""
        if services.signup_mode() == "closed":
            raise ImmediateHttpResponse(render(request, "account/signup_closed.html", status=403))
        return True

    def get_signup_redirect_url(self, request: HttpRequest) -> str:
        if getattr(request.user, "is_pending", False):
            return reverse("accounts:pending")
        messages.success(request, _("Welcome! Add your API key to start chatting."))
        return super().get_signup_redirect_url(request)

    def add_message(self, request: HttpRequest, level: int, message_template: str | None = None, *args, **kwargs):
        # Logging in or out needs no "you are signed in as ..." banner: the header already says who is signed in.
        if message_template in QUIET_MESSAGES:
            return None
        return super().add_message(request, level, message_template, *args, **kwargs)

    def clean_username(self, username: str, shallow: bool = False) -> str:
        """NFKC form; refuse reserved names and look-alikes of a taken one (accounts/usernames.py)."""
        username = usernames.normalize(username)
        if usernames.is_reserved(username):
            raise ValidationError(_("This user name is reserved. Choose another."))
        if not shallow and User.objects.filter(username_key=usernames.username_key(username)).exists():
            raise ValidationError(_("This user name is taken, or too close to one that is."))
        return super().clean_username(username, shallow=shallow)

    def get_client_ip(self, request: HttpRequest) -> str:
        """The peer uvicorn reports: X-Forwarded-For counts only from FORWARDED_ALLOW_IPS (see project/run.py)."""
        return ratelimit.client_ip(request)

    # Links in emails come from SITE_URL, never from the request's Host header.
    def get_reset_password_from_key_url(self, key: str) -> str:
        path = reverse("account_reset_password_from_key", kwargs={"uidb36": "UID", "key": "KEY"})
        return settings.SITE_URL + path.replace("UID-KEY", key)

    def get_email_confirmation_url(self, request: HttpRequest, emailconfirmation) -> str:
        return settings.SITE_URL + reverse("account_confirm_email", args=[emailconfirmation.key])

    def send_password_reset_mail(self, user, email: str, context: dict) -> None:
        """No reset link for an account without a password (single sign-on): it would give the account a password,
        and allauth lets such an account's session add an email address unasked (it has no password to re-enter), so a
        stolen session could add its own address and take the account over. Django's own reset form has this rule."""
        if user.has_usable_password():
            super().send_password_reset_mail(user, email, context)

    def send_account_already_exists_mail(self, email: str) -> None:
        ctx = {
            "signup_url": settings.SITE_URL + reverse("account_signup"),
            "password_reset_url": settings.SITE_URL + reverse("account_reset_password"),
        }
        self.send_mail("account/email/account_already_exists", email, ctx)

    def send_mail(self, template_prefix: str, email: str, context: dict) -> None:
        """allauth's mails, naming the product and SITE_URL where allauth would name the request's host.

        Links allauth builds from the request (the unknown-account mail's `signup_url`, and any it adds later) are
        moved onto SITE_URL: the Host header, port included, is the sender's to choose.
        """
        site = SimpleNamespace(name="BYOK Chat", domain=settings.SITE_URL)
        links = {name: _on_site(value) for name, value in context.items() if name.endswith("_url")}
        super().send_mail(template_prefix, email, {**context, **links, "current_site": site})

    def _get_login_attempts_cache_key(self, request: HttpRequest, **credentials) -> str:
        """Count failed log-ins per account, whichever name or address was typed for it (allauth keys by the text)."""
        login = credentials.get("username") or credentials.get("email") or ""
        user = User.objects.filter_by_login(login).first()
        return f"user:{user.pk}" if user else f"login:{login.lower()}"


def _on_site(link: object) -> object:
    """An absolute link (allauth's mails link only to this site) moved onto SITE_URL; other values as they are."""
    if not isinstance(link, str) or not link.startswith(("http://", "https://")):
        return link
    parts = urlsplit(link)
    return settings.SITE_URL.rstrip("/") + parts.path + (f"?{parts.query}" if parts.query else "")
