"""AES-256-GCM sealing under versioned master keys from ENCRYPTION_KEYS.

Each entry is "<id>:<urlsafe base64 of 32 bytes>". The first key seals, every key
opens, so a new key can be put first and old ciphertexts re-sealed at leisure.
A sealed value is "<id>$<base64(nonce || ciphertext+tag)>".
"""

from __future__ import annotations

import base64
import os
import secrets
from functools import lru_cache

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

NONCE_BYTES = 12


class SealError(Exception):
    """A ciphertext could not be opened: wrong key, tampered, or moved to another row."""


def generate_key(key_id: str | None = None) -> str:
    key_id = key_id or "k" + secrets.token_hex(3)
    return f"{key_id}:{base64.urlsafe_b64encode(os.urandom(32)).decode()}"


@lru_cache(maxsize=8)
def _parse(entries: tuple[str, ...]) -> tuple[str, dict[str, AESGCM]]:
    keys: dict[str, AESGCM] = {}
    for entry in entries:
        key_id, sep, encoded = entry.strip().partition(":")
        try:
            raw = base64.urlsafe_b64decode(encoded)
        except ValueError:
            raw = b""
        if not sep or not key_id.isalnum() or len(raw) != 32:
            raise ImproperlyConfigured(
                "ENCRYPTION_KEYS entries must look like 'k1:<urlsafe base64 of 32 random bytes>'."
            )
        keys[key_id] = AESGCM(raw)
    if not keys:
        raise ImproperlyConfigured("ENCRYPTION_KEYS is empty.")
    return next(iter(keys)), keys


def _keys() -> tuple[str, dict[str, AESGCM]]:
    return _parse(tuple(settings.ENCRYPTION_KEYS))


def current_key_id() -> str:
    return _keys()[0]


def seal(plaintext: str, *, aad: str) -> str:
    key_id, keys = _keys()
    nonce = os.urandom(NONCE_BYTES)
    ciphertext = keys[key_id].encrypt(nonce, plaintext.encode(), aad.encode())
    return f"{key_id}${base64.b64encode(nonce + ciphertext).decode()}"


def key_id_of(sealed: str) -> str:
    return sealed.partition("$")[0]


def open_sealed(sealed: str, *, aad: str) -> str:
    key_id, _, payload = sealed.partition("$")
    key = _keys()[1].get(key_id)
    if key is None:
        raise SealError(f"sealed under master key {key_id!r}, which ENCRYPTION_KEYS no longer holds")
    try:
        raw = base64.b64decode(payload, validate=True)
        return key.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], aad.encode()).decode()
    except (InvalidTag, ValueError) as exc:
        raise SealError("ciphertext failed authentication") from exc
