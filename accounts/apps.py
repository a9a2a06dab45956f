from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = _("Accounts")

    def ready(self) -> None:
        from allauth.account.signals import user_signed_up
        from allauth.mfa import signals as mfa

        from accounts import services

        # Every new account, by password or single sign-on, goes through the sign-up policy (SIGNUP_MODE).
        user_signed_up.connect(
            lambda request, user, **kwargs: services.account_signed_up(user=user),
            weak=False,
            dispatch_uid="accounts.signup_policy",
        )
        # Two-factor added, removed or its recovery codes renewed: every other session ends, as for a new password.
        for signal in (mfa.authenticator_added, mfa.authenticator_removed, mfa.authenticator_reset):
            signal.connect(
                lambda request, user, **kwargs: services.sessions_end_others(request=request, user=user),
                weak=False,
                dispatch_uid="accounts.sessions_end_others",
            )
