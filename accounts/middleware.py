from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.utils.deprecation import MiddlewareMixin

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
