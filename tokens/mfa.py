"""Two-factor secrets (allauth.mfa's TOTP keys and recovery-code seeds) sealed with the keyring, like every secret.

allauth stores them as it gets them from encrypt(); it passes no user, so the associated data names the purpose only.
"""

from __future__ import annotations

from allauth.mfa.adapter import DefaultMFAAdapter

from tokens import keyring

AAD = "allauth.mfa"


class MFAAdapter(DefaultMFAAdapter):
    def encrypt(self, text: str) -> str:
        return keyring.seal(text, aad=AAD)

    def decrypt(self, encrypted_text: str) -> str:
        return keyring.open_sealed(encrypted_text, aad=AAD)
