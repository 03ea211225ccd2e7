"""Masking of secret values in the logs the platform captures, stores and serves.

The platform knows every secret it injects into a container, so — as CI systems do — it replaces
each of them with `MASK` in every log it hands out or keeps: deployment failure tails, runtime
logs, cron run logs. This is a guard against accidents (an app that prints its configuration at
start-up), not against a tenant's own code, which can always encode a value before printing it.

What is masked: the value of every *secret* version of a variable the app can see (old versions
too: a running container may still hold one), each line of a multi-line value (logs are read line
by line), and the password inside a URL value (a database URL's password printed on its own).
Plain (non-secret) variables are not masked: anyone who may view the app can read them anyway,
and masking `production` or `info` would garble every log.

Short values (under `MIN_MASKED_LENGTH` characters) are not masked. Replacing every `1`, `true`
or `443` in a log would make it unreadable, and the pattern of masks would itself reveal the
value (the one word that is always starred); a secret that short is guessable anyway. The
API refuses nothing because of it: the README says so."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from urllib.parse import unquote, urlsplit

MASK = "***"
MIN_MASKED_LENGTH = 6


def _forms(value: str) -> Iterator[str]:
    """The ways `value` can appear in a line of log output."""
    yield value
    if "\n" in value or "\r" in value:
        for line in value.splitlines():
            yield line.strip()
    if "://" in value:
        try:
            password = urlsplit(value).password
        except ValueError:
            password = None
        if password:
            yield password
            yield unquote(password)


class SecretMasker:
    """Replaces known secret values in text with `MASK`, longest first (so a value that contains
    another is masked whole)."""

    def __init__(self, values: Iterable[str]) -> None:
        forms = {form for value in values if value for form in _forms(value) if len(form) >= MIN_MASKED_LENGTH}
        ordered = sorted(forms, key=lambda form: (-len(form), form))
        self._pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    def __bool__(self) -> bool:
        return self._pattern is not None

    def mask(self, text: str) -> str:
        if self._pattern is None or not text:
            return text
        return self._pattern.sub(MASK, text)

    def mask_lines(self, lines: Iterable[str]) -> Iterator[str]:
        for line in lines:
            yield self.mask(line)


NO_SECRETS = SecretMasker(())
