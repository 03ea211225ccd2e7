"""Encryption of variable values: Fernet through MultiFernet. Keys come from the environment
(PANDASTACK_SECRET_KEYS, comma-separated); the first key encrypts, every key decrypts, so keys can
be rotated without downtime (see the rotate_secret_keys command).

Every column that holds a token of `encrypt` is declared as an `EncryptedTextField`: that class is
the single registry of encrypted values, which `rotate_secret_keys` walks (`encrypted_fields()`),
so a new encrypted column cannot be left out of a rotation (tests/secrets/test_encrypted_fields.py
fails on any column holding a Fernet token that is not one)."""

from functools import cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.apps import apps
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.db import models
from django.dispatch import receiver


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


@receiver(setting_changed)
def _keys_changed(*, setting: str, **_: object) -> None:
    # override_settings and pytest-django's `settings` send this on change and on restore: a key
    # cached in between must not outlive the override.
    if setting == "PANDASTACK_SECRET_KEYS":
        reset_keys()


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


class EncryptedTextField(models.TextField):
    """A column holding a token of `encrypt` (never plain text). Values are encrypted and decrypted
    explicitly by the code that needs them (so a value is decrypted only where it is used); this
    class marks the column for key rotation.

    It deconstructs as a plain TextField: switching a column to it changes nothing in the database
    and needs no migration (migrations keep saying models.TextField)."""

    def deconstruct(self) -> tuple[str, str, list, dict]:
        name, _path, args, kwargs = super().deconstruct()
        return name, "django.db.models.TextField", args, kwargs


def encrypted_fields() -> list[tuple[type[models.Model], str]]:
    """Every (model, field name) declared as an EncryptedTextField, in a stable order."""
    found = [
        (model, field.name)
        for model in apps.get_models()
        for field in model._meta.concrete_fields
        if isinstance(field, EncryptedTextField)
    ]
    return sorted(found, key=lambda pair: (pair[0]._meta.label, pair[1]))
