"""Cron expressions: five fields or an @shortcut, evaluated in the job's timezone (daylight saving
time included: a 02:30 run on the night the clocks skip 02:00-03:00 runs once at 03:00; an hourly
job on the night they fall back runs at each real hour, while a fixed-time job (no wildcard in its
minute and hour fields, as in cron) runs once, at the first of the repeated times)."""

from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from croniter import CroniterBadCronError, CroniterBadDateError, croniter

SHORTCUTS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")


def schedule_error(expression: str) -> str | None:
    """Why `expression` is not a schedule we run, or None."""
    expression = expression.strip()
    if expression.startswith("@"):
        return None if expression in SHORTCUTS else f"Unknown shortcut; use one of {', '.join(SHORTCUTS)}."
    if len(expression.split()) != 5:
        return "Use five fields (minute hour day-of-month month day-of-week) or a shortcut like @hourly."
    if not croniter.is_valid(expression):
        return "Not a valid cron expression."
    try:
        next_run(expression, "UTC", datetime.now(UTC))
    except ValueError:
        # e.g. "0 0 31 2 *": valid fields, but no date ever matches.
        return "This schedule never fires (no date matches it)."
    return None


def timezone_error(name: str) -> str | None:
    """Why `name` is not an IANA timezone we evaluate schedules in, or None."""
    # Debian's zoneinfo lists "localtime", a link to the host's /etc/localtime: not a zone but
    # whatever the scheduler's host is set to (and missing where tzdata lacks it).
    if name == "localtime" or name not in available_timezones():
        return "Unknown timezone; use an IANA name such as UTC or Europe/Berlin."
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return "Unknown timezone; use an IANA name such as UTC or Europe/Berlin."
    return None


def _fixed_time(expression: str) -> bool:
    """Whether the job runs at fixed times of day (no wildcard in its minute and hour fields)."""
    if expression.startswith("@"):
        return expression != "@hourly"
    minute, hour = expression.split()[:2]
    return "*" not in minute and "*" not in hour


def _repeated_wall_time(moment: datetime, tz: ZoneInfo) -> bool:
    """Whether `moment` is the second occurrence of a local time the clocks fell back over."""
    local = moment.astimezone(tz)
    return bool(local.fold) and local.replace(fold=0).astimezone(UTC) != moment


def next_run(expression: str, tz_name: str, after: datetime) -> datetime:
    """The first time strictly after `after` at which the schedule fires, in UTC. Raises ValueError
    when the expression cannot be evaluated or never fires."""
    tz = ZoneInfo(tz_name)
    expression = expression.strip()
    try:
        times = croniter(expression, after.astimezone(tz))
        upcoming = times.get_next(datetime).astimezone(UTC)
        # A fixed-time job already ran at the first of a repeated local time (fall back).
        while _fixed_time(expression) and _repeated_wall_time(upcoming, tz):
            upcoming = times.get_next(datetime).astimezone(UTC)
    except (CroniterBadCronError, CroniterBadDateError) as exc:
        raise ValueError(f"cannot evaluate schedule {expression!r}") from exc
    return upcoming
