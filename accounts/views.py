from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from accounts.models import User


def pending(request: HttpRequest) -> HttpResponse:
    """The waiting page of an account that staff have not approved yet."""
    assert isinstance(request.user, User)  # LoginRequiredMiddleware let only a signed-in person through
    if not request.user.is_pending:
        return redirect(settings.LOGIN_REDIRECT_URL)
    return render(request, "accounts/pending.html")
