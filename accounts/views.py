from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_not_required
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.decorators import method_decorator
from django.utils.translation import gettext as _
from django.views.decorators.debug import sensitive_post_parameters

from accounts import services
from accounts.forms import SignupForm
from accounts.ratelimit import limit_posts


@login_not_required
@sensitive_post_parameters("password1", "password2")
@limit_posts("SIGNUP_RATE_LIMIT", "signup")
def signup(request: HttpRequest) -> HttpResponse:
    if services.signup_mode() == "closed":
        return render(request, "accounts/signup_closed.html", status=403)
    if request.user.is_authenticated:
        return redirect(settings.LOGIN_REDIRECT_URL)

    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        with transaction.atomic():
            user = services.account_signed_up(user=form.save())
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        if user.is_pending:
            return redirect("accounts:pending")
        messages.success(request, _("Welcome! Add your API key to start chatting."))
        return redirect("tokens:credential-list")
    return render(request, "accounts/signup.html", {"form": form}, status=400 if form.errors else 200)


@method_decorator(limit_posts("LOGIN_RATE_LIMIT", "login"), name="dispatch")
class LoginView(auth_views.LoginView):
    template_name = "accounts/login.html"
    redirect_authenticated_user = True


class LogoutView(auth_views.LogoutView):
    pass


def pending(request: HttpRequest) -> HttpResponse:
    """The waiting page of an account that staff have not approved yet."""
    if not request.user.is_pending:
        return redirect(settings.LOGIN_REDIRECT_URL)
    return render(request, "accounts/pending.html")
