"""How durations and measured values are read from the command line and shown: `5m` rather than
300 seconds, `2.5` rather than 2.4999999 milliseconds."""

import re
from typing import Any

from panda_cli.errors import UsageProblem

UNITS = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))
# Largest unit first, each at most once: `1h30m`, `90s`, `7d`; or plain seconds: `300`.
DURATION = re.compile(r"(?:(?P<d>\d+)d)?(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m)?(?:(?P<s>\d+)s)?")
DURATION_HINT = "give seconds, or numbers with s, m, h or d: 30s, 5m, 1h30m, 7d"


def parse_duration(text: str, *, option: str, allow_zero: bool = True) -> int:
    """The seconds `text` stands for: `90`, `30s`, `5m`, `1h30m`, `7d`. Raises UsageProblem naming
    `option` when it is not a duration (or is zero and `allow_zero` is false)."""
    cleaned = text.strip().lower()
    if cleaned.isdigit():
        seconds = int(cleaned)
    else:
        match = DURATION.fullmatch(cleaned)
        if not cleaned or match is None:
            raise UsageProblem(f"{option}: {text!r} is not a duration", hint=DURATION_HINT)
        seconds = sum(int(match[unit] or 0) * size for unit, size in UNITS)
    if seconds == 0 and not allow_zero:
        raise UsageProblem(f"{option} must be longer than 0 seconds", hint=DURATION_HINT)
    return seconds


def short_duration(seconds: Any) -> str | None:
    """Seconds as people write them: 300 is `5m`, 5400 `1h30m`, 45 `45s`; None when not a number."""
    if not _is_number(seconds):
        return None
    remaining = round(seconds)
    if remaining <= 0:
        return f"{remaining}s"
    parts = []
    for unit, size in UNITS:
        count, remaining = divmod(remaining, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def number(value: Any, unit: str = "") -> str | None:
    """A measured value for people: whole numbers without decimals, others with at most two
    (small ones with two significant digits), then `unit`; None when there is no value."""
    if not _is_number(value):
        return None
    if float(value).is_integer():
        text = str(int(value))
    else:
        text = f"{value:.2f}".rstrip("0").rstrip(".")
        if text in ("0", "-0"):  # 0.004 is not nothing
            text = f"{value:.2g}"
    return text + unit


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
