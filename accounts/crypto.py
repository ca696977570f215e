"""Secrets at rest: Fernet tokens under keys from the environment (MultiFernet: the first
key encrypts, every key decrypts, so keys can be rotated)."""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


def _fernet() -> MultiFernet:
    try:
        return MultiFernet([Fernet(k.encode()) for k in settings.MIGRATOR_FERNET_KEYS])
    except ValueError as exc:
        raise ImproperlyConfigured(
            "MIGRATOR_FERNET_KEYS holds a key that is not a valid Fernet key "
            "(32 url-safe base64-encoded bytes)."
        ) from exc


def encrypt(plain: str) -> str:
    return _fernet().encrypt(plain.encode("utf-8")).decode("ascii") if plain else ""


def decrypt(token: str) -> str:
    if not token:
        return ""
    try:
        return _fernet().decrypt(token.encode("ascii")).decode("utf-8")
    except InvalidToken as exc:
        raise ImproperlyConfigured(
            "A stored secret cannot be decrypted with MIGRATOR_FERNET_KEYS (was a key removed?)."
        ) from exc


def rotate(token: str) -> str:
    """Re-encrypt under the first (newest) key."""
    return _fernet().rotate(token.encode("ascii")).decode("ascii") if token else ""
