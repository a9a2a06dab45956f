from __future__ import annotations

from allauth.mfa.models import Authenticator
from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.utils.deprecation import MiddlewareMixin
from django.utils.translation import gettext as _

# What an account waiting for approval may still reach.
OPEN_TO_PENDING = {"accounts:pending", "account_logout", "set_language", "healthz", "javascript-catalog"}


class ApprovalMiddleware(MiddlewareMixin):
    """An account waiting for approval (SIGNUP_MODE=approval) sees the waiting page and nothing else.

    Runs after AuthenticationMiddleware and LoginRequiredMiddleware, so the user is already loaded.
    """

    def process_view(self, request: HttpRequest, view, args, kwargs) -> HttpResponse | None:
        user = request.user
        if not user.is_authenticated or not user.is_pending:
            return None
        match = request.resolver_match
        if match is None or match.view_name in OPEN_TO_PENDING or request.path_info.startswith("/static/"):
            return None
        return redirect("accounts:pending")


# URL namespaces of the staff pages that MFA_REQUIRED_FOR_STAFF guards (the usage dashboard and the admin).
STAFF_NAMESPACES = {"usage", "admin"}


class StaffTwoFactorMiddleware(MiddlewareMixin):
    """With MFA_REQUIRED_FOR_STAFF, staff without an authenticator app are sent to set one up first."""

    def process_view(self, request: HttpRequest, view, args, kwargs) -> HttpResponse | None:
        if not settings.MFA_REQUIRED_FOR_STAFF:
            return None
        match = request.resolver_match
        user = request.user
        if match is None or not STAFF_NAMESPACES.intersection(match.namespaces) or not user.is_authenticated:
            return None
        if not user.is_staff or Authenticator.objects.filter(user=user, type=Authenticator.Type.TOTP).exists():
            return None
        messages.warning(request, _("Staff pages need two-factor authentication. Set up an authenticator app first."))
        return redirect("mfa_activate_totp")
