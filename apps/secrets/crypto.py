"""Encryption of variable values: Fernet through MultiFernet. Keys come from the environment
(PANDASTACK_SECRET_KEYS, comma-separated); the first key encrypts, every key decrypts, so keys can
be rotated without downtime (see the rotate_secret_keys command)."""

from functools import cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


class DecryptionFailed(Exception):
    """A value that none of the configured keys can decrypt (a key was removed too early)."""


@cache
def _keys() -> tuple[Fernet, ...]:
    raw = [k.strip() for k in settings.PANDASTACK_SECRET_KEYS if k.strip()]
    if not raw:
        raise ImproperlyConfigured("PANDASTACK_SECRET_KEYS is empty: set at least one Fernet key.")
    try:
        return tuple(Fernet(k) for k in raw)
    except (ValueError, TypeError) as exc:
        # Never echo the keys themselves.
        raise ImproperlyConfigured(
            "PANDASTACK_SECRET_KEYS holds a value that is not a Fernet key (32 url-safe base64 bytes)."
        ) from exc


def reset_keys() -> None:
    """Forget the cached keys (after settings change, e.g. in tests or a rotation)."""
    _keys.cache_clear()


def encrypt(value: str) -> str:
    return MultiFernet(list(_keys())).encrypt(value.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return MultiFernet(list(_keys())).decrypt(token.encode()).decode()
    except InvalidToken:
        raise DecryptionFailed("a stored value cannot be decrypted with the configured keys") from None


def is_current(token: str) -> bool:
    """Whether `token` is already encrypted with the first (current) key."""
    try:
        _keys()[0].decrypt(token.encode())
    except InvalidToken:
        return False
    return True


def rotate(token: str) -> str:
    """Re-encrypt under the first key (MultiFernet.rotate keeps the original timestamp)."""
    try:
        return MultiFernet(list(_keys())).rotate(token.encode()).decode()
    except InvalidToken:
        raise DecryptionFailed("a stored value cannot be decrypted with the configured keys") from None


def generate_key() -> str:
    return Fernet.generate_key().decode()
