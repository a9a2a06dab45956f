"""Who may use the product: the sign-up policy (SIGNUP_MODE), approval by staff, deactivation."""

from __future__ import annotations

import time

from allauth.account import app_settings as account_settings
from allauth.account.internal.flows.login import get_authentication_records  # the session's log-in records
from allauth.account.internal.flows.reauthentication import get_reauthentication_flows
from django.conf import settings
from django.contrib.auth import update_session_auth_hash
from django.db import transaction
from django.db.models import F
from django.http import HttpRequest
from django.urls import reverse

from accounts.models import Approval, User
from project.emails import email_send_each


def signup_mode() -> str:
    """open | approval | closed, from SIGNUP_MODE; SIGNUP_OPEN=false always means closed."""
    return settings.SIGNUP_MODE if settings.SIGNUP_OPEN else "closed"


def account_signed_up(*, user: User) -> User:
    """Apply the sign-up policy to a new account: in approval mode it waits, and staff hear about it."""
    if signup_mode() != "approval":
        return user
    user.approval = Approval.PENDING
    user.save(update_fields=["approval"])
    staff = list(User.objects.filter(is_staff=True, is_active=True).exclude(email=""))
    ctx = {"person": user, "users_url": settings.SITE_URL + reverse("usage:user-list")}
    transaction.on_commit(lambda: email_send_each("account_pending", ctx, staff))
    return user


def account_approve(*, user: User) -> bool:
    """Let a waiting account in and e-mail the person; False if it was not waiting (nothing changes)."""
    changed = User.objects.filter(pk=user.pk, approval=Approval.PENDING).update(
        approval=Approval.APPROVED, is_active=True
    )
    if changed and user.email:
        ctx = {"person": user, "login_url": settings.SITE_URL + reverse("account_login")}
        transaction.on_commit(lambda: email_send_each("account_approved", ctx, [user]))
    return bool(changed)


def account_reject(*, user: User) -> bool:
    """Turn a waiting account away: it is deactivated (so it cannot log in) and the person is told."""
    changed = User.objects.filter(pk=user.pk, approval=Approval.PENDING).update(
        approval=Approval.REJECTED, is_active=False
    )
    if changed and user.email:
        transaction.on_commit(lambda: email_send_each("account_rejected", {"person": user}, [user]))
    return bool(changed)


def account_set_active(*, user: User, active: bool) -> None:
    """Deactivate or reactivate an account.

    Deactivation takes effect on the person's very next request in every session: Django's
    ModelBackend.get_user refuses inactive users when it loads the session's user, so no session
    has to be found and deleted. Their API access tokens are refused the same way (see CONTRACTS).
    """
    user.is_active = active
    user.save(update_fields=["is_active"])


def sessions_end_others(*, request: HttpRequest, user: User) -> None:
    """End every session of user but this request's (which gets a new key), as a password change does.

    For a change to how the account signs in (two-factor added, removed or its recovery codes renewed): a session
    stolen before it must not outlive it (OWASP ASVS 3.3.3). Django checks the session's hash on each request.
    """
    User.objects.filter(pk=user.pk).update(session_epoch=F("session_epoch") + 1)
    user.refresh_from_db(fields=["session_epoch"])
    if request.user.is_authenticated and request.user.pk == user.pk:
        request.user.session_epoch = user.session_epoch
        update_session_auth_hash(request, user)


def signed_in_recently(request: HttpRequest) -> bool:
    """Whether this session's person proved who they are (log-in, or the password asked again) within the last
    ACCOUNT_REAUTHENTICATION_TIMEOUT seconds (allauth's, 300). True for an account with no way to be asked (single
    sign-on without a password), as allauth decides for its own pages.

    For actions that outlive the session (a personal API key): a stolen session cookie alone must not be enough.
    """
    if not get_reauthentication_flows(request.user):
        return True
    records = get_authentication_records(request, request.user)
    return any(time.time() - record.get("at", 0) < account_settings.REAUTHENTICATION_TIMEOUT for record in records)
