from __future__ import annotations

from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"

    def ready(self) -> None:
        from allauth.account.signals import user_signed_up

        from accounts import services

        # Every new account, by password or single sign-on, goes through the sign-up policy (SIGNUP_MODE).
        user_signed_up.connect(
            lambda request, user, **kwargs: services.account_signed_up(user=user),
            weak=False,
            dispatch_uid="accounts.signup_policy",
        )
