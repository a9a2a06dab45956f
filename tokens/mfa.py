"""Two-factor secrets (allauth.mfa's TOTP keys and recovery-code seeds) sealed with the keyring, like every secret.

allauth stores them as it gets them from encrypt(); it passes no user, so the associated data names the purpose only.
"""

from __future__ import annotations

from allauth.mfa.adapter import DefaultMFAAdapter
from allauth.mfa.models import Authenticator
from allauth.mfa.totp.forms import ActivateTOTPForm as AllauthActivateTOTPForm
from django.utils.translation import gettext_lazy as _

from tokens import keyring

AAD = "allauth.mfa"


class MFAAdapter(DefaultMFAAdapter):
    # allauth's own words say only what is wrong; a new account meets this first, so say what to do.
    error_messages = {
        **DefaultMFAAdapter.error_messages,
        "unverified_email": _(
            "Confirm your email address before turning on two-factor authentication: follow the link in the email "
            "we sent you, or send it again from Email addresses on your profile page."
        ),
        "incorrect_code": _(
            "That code is not right. Enter the six-digit code your app shows now; if it keeps failing, check that "
            "your phone sets its clock automatically."
        ),
    }

    def encrypt(self, text: str) -> str:
        return keyring.seal(text, aad=AAD)

    def decrypt(self, encrypted_text: str) -> str:
        return keyring.open_sealed(encrypted_text, aad=AAD)


class ActivateTOTPForm(AllauthActivateTOTPForm):
    """allauth's set-up form with our label ("Authenticator code" read 认证器代码) and a digit keyboard on phones."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        code = self.fields["code"]
        code.label = _("Six-digit code")
        code.widget.attrs.update(placeholder="123456", inputmode="numeric")


# The sealed member of each kind of authenticator's data.
SEALED_MEMBER = {Authenticator.Type.TOTP: "secret", Authenticator.Type.RECOVERY_CODES: "seed"}


def authenticators_reseal() -> tuple[int, int]:
    """Re-seal two-factor secrets under the first key of ENCRYPTION_KEYS; return (re-sealed, unopenable)."""
    key_id = keyring.current_key_id()
    resealed = broken = 0
    for authenticator in Authenticator.objects.filter(type__in=list(SEALED_MEMBER)).order_by("pk").iterator():
        member = SEALED_MEMBER[authenticator.type]
        sealed = authenticator.data.get(member, "")
        if not sealed or keyring.key_id_of(sealed) == key_id:
            continue
        try:
            plain = keyring.open_sealed(sealed, aad=AAD)
        except keyring.SealError:
            broken += 1
            continue
        authenticator.data = {**authenticator.data, member: keyring.seal(plain, aad=AAD)}
        authenticator.save(update_fields=["data"])
        resealed += 1
    return resealed, broken
