"""Cron expressions: what is accepted, what is refused (with a message that says why), and when
the next run falls, in UTC, across daylight saving changes in Europe and the US."""

import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from apps.cron.schedule import SHORTCUTS, next_run, schedule_error, timezone_error

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def runs(expression: str, tz: str, start: datetime, count: int) -> list[datetime]:
    """The next `count` run times after `start`, each one from the previous (as the scheduler walks)."""
    times = []
    for _ in range(count):
        start = next_run(expression, tz, start)
        times.append(start)
    return times


@pytest.mark.parametrize(
    "expression",
    [
        "* * * * *",
        "*/15 9-17 * * 1-5",
        "0 0 1 1 *",
        "5,35 */2 * * *",
        "0 0 * * MON",
        "0 12 * JAN,JUL *",
        "0 0 29 2 *",
        "  30 2 * * *  ",
        *SHORTCUTS,
        " @daily ",
    ],
)
def test_valid_expressions_and_shortcuts_are_accepted(expression):
    assert schedule_error(expression) is None
    after = datetime(2026, 1, 1, tzinfo=UTC)
    assert next_run(expression, "UTC", after) > after


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("* * * * * *", "Use five fields"),
        ("0 0 1 1 * 2027", "Use five fields"),
        ("* * * *", "Use five fields"),
        ("", "Use five fields"),
        ("garbage", "Use five fields"),
        ("@reboot", "Unknown shortcut; use one of @yearly"),
        ("@every 5m", "Unknown shortcut"),
        ("61 * * * *", "Not a valid cron expression."),
        ("* 24 * * *", "Not a valid cron expression."),
        ("0 0 32 * *", "Not a valid cron expression."),
        ("0 0 * * 8", "Not a valid cron expression."),
        ("a b c d e", "Not a valid cron expression."),
        ("0 0 31 2 *", "never"),
        ("0 0 30 2 *", "never"),
    ],
)
def test_invalid_expressions_are_refused_with_a_clear_message(expression, message):
    problem = schedule_error(expression)
    assert problem is not None
    assert message in problem


@pytest.mark.parametrize("name", ["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata"])
def test_iana_timezones_are_accepted(name):
    assert timezone_error(name) is None


@pytest.mark.parametrize("name", ["Mars/Phobos", "europe/berlin", "", "CEST+2", "../../etc/passwd"])
def test_unknown_timezones_are_refused(name):
    assert timezone_error(name) == "Unknown timezone; use an IANA name such as UTC or Europe/Berlin."


def test_next_run_is_strictly_after_and_in_utc():
    at_slot = datetime(2026, 6, 1, 10, 0, tzinfo=UTC)
    upcoming = next_run("0 * * * *", "UTC", at_slot)
    assert upcoming == datetime(2026, 6, 1, 11, 0, tzinfo=UTC)
    assert upcoming.utcoffset() == timedelta(0)


def test_next_run_follows_the_jobs_timezone():
    # 09:00 in Berlin is 07:00 UTC in summer and 08:00 UTC in winter.
    assert next_run("0 9 * * *", "Europe/Berlin", datetime(2026, 7, 1, tzinfo=UTC)) == datetime(
        2026, 7, 1, 7, 0, tzinfo=UTC
    )
    assert next_run("0 9 * * *", "Europe/Berlin", datetime(2026, 1, 5, tzinfo=UTC)) == datetime(
        2026, 1, 5, 8, 0, tzinfo=UTC
    )
    # Kolkata is +05:30 all year.
    assert next_run("0 9 * * *", "Asia/Kolkata", datetime(2026, 1, 5, tzinfo=UTC)) == datetime(
        2026, 1, 5, 3, 30, tzinfo=UTC
    )


def test_spring_forward_in_berlin_runs_a_skipped_time_once_at_three():
    # 2026-03-29: the clocks jump from 02:00 to 03:00; 02:30 does not exist that night.
    times = runs("30 2 * * *", "Europe/Berlin", datetime(2026, 3, 27, 12, tzinfo=UTC), 4)
    local = [t.astimezone(BERLIN) for t in times]
    assert [t.isoformat() for t in local] == [
        "2026-03-28T02:30:00+01:00",
        "2026-03-29T03:00:00+02:00",
        "2026-03-30T02:30:00+02:00",
        "2026-03-31T02:30:00+02:00",
    ]
    assert len({t.date() for t in local}) == 4  # once a day, the DST night included


def test_spring_forward_in_berlin_hourly_skips_the_missing_hour():
    times = runs("0 * * * *", "Europe/Berlin", datetime(2026, 3, 28, 23, 30, tzinfo=UTC), 3)
    assert [t.astimezone(BERLIN).isoformat() for t in times] == [
        "2026-03-29T01:00:00+01:00",
        "2026-03-29T03:00:00+02:00",
        "2026-03-29T04:00:00+02:00",
    ]
    assert [b - a for a, b in itertools.pairwise(times)] == [timedelta(hours=1)] * 2


def test_fall_back_in_berlin_hourly_runs_at_each_real_hour():
    # 2026-10-25: 03:00 CEST becomes 02:00 CET, so 02:00 local happens twice, an hour apart.
    times = runs("0 * * * *", "Europe/Berlin", datetime(2026, 10, 24, 22, 30, tzinfo=UTC), 5)
    assert [t.astimezone(BERLIN).isoformat() for t in times] == [
        "2026-10-25T01:00:00+02:00",
        "2026-10-25T02:00:00+02:00",
        "2026-10-25T02:00:00+01:00",
        "2026-10-25T03:00:00+01:00",
        "2026-10-25T04:00:00+01:00",
    ]
    assert times[1] == datetime(2026, 10, 25, 0, 0, tzinfo=UTC)
    assert times[2] == datetime(2026, 10, 25, 1, 0, tzinfo=UTC)
    assert len(set(times)) == 5
    assert [b - a for a, b in itertools.pairwise(times)] == [timedelta(hours=1)] * 4


def test_fall_back_in_berlin_a_daily_job_in_the_repeated_hour_runs_once():
    # 02:30 happens twice on 2026-10-25; a daily job must not run twice that day.
    times = runs("30 2 * * *", "Europe/Berlin", datetime(2026, 10, 24, 12, tzinfo=UTC), 3)
    assert [t.astimezone(BERLIN).isoformat() for t in times] == [
        "2026-10-25T02:30:00+02:00",
        "2026-10-26T02:30:00+01:00",
        "2026-10-27T02:30:00+01:00",
    ]
    twice_daily = runs("0,30 2 * * *", "Europe/Berlin", datetime(2026, 10, 24, 12, tzinfo=UTC), 3)
    assert [t.astimezone(BERLIN).isoformat() for t in twice_daily] == [
        "2026-10-25T02:00:00+02:00",
        "2026-10-25T02:30:00+02:00",
        "2026-10-26T02:00:00+01:00",
    ]


def test_fall_back_in_berlin_a_minute_wildcard_job_runs_through_both_hours():
    # Like cron: a job with a wildcard in its minute or hour field follows the clock through the
    # repeated hour (each real 30 minutes), where a fixed-time job runs once.
    times = runs("*/30 2 * * *", "Europe/Berlin", datetime(2026, 10, 24, 23, 50, tzinfo=UTC), 5)
    assert [t.astimezone(BERLIN).isoformat() for t in times] == [
        "2026-10-25T02:00:00+02:00",
        "2026-10-25T02:30:00+02:00",
        "2026-10-25T02:00:00+01:00",
        "2026-10-25T02:30:00+01:00",
        "2026-10-26T02:00:00+01:00",
    ]


def test_spring_forward_in_new_york():
    # 2026-03-08: 02:00 EST becomes 03:00 EDT.
    times = runs("30 2 * * *", "America/New_York", datetime(2026, 3, 7, 12, tzinfo=UTC), 3)
    assert [t.astimezone(NEW_YORK).isoformat() for t in times] == [
        "2026-03-08T03:00:00-04:00",
        "2026-03-09T02:30:00-04:00",
        "2026-03-10T02:30:00-04:00",
    ]
    assert times[0] == datetime(2026, 3, 8, 7, 0, tzinfo=UTC)


def test_fall_back_in_new_york():
    # 2026-11-01: 02:00 EDT becomes 01:00 EST; 01:00-02:00 local happens twice.
    hourly = runs("0 * * * *", "America/New_York", datetime(2026, 11, 1, 3, 30, tzinfo=UTC), 4)
    assert [t.astimezone(NEW_YORK).isoformat() for t in hourly] == [
        "2026-11-01T00:00:00-04:00",
        "2026-11-01T01:00:00-04:00",
        "2026-11-01T01:00:00-05:00",
        "2026-11-01T02:00:00-05:00",
    ]
    daily = runs("30 1 * * *", "America/New_York", datetime(2026, 10, 31, 12, tzinfo=UTC), 2)
    assert [t.astimezone(NEW_YORK).isoformat() for t in daily] == [
        "2026-11-01T01:30:00-04:00",
        "2026-11-02T01:30:00-05:00",
    ]


def test_next_run_refuses_an_expression_that_never_fires():
    with pytest.raises(ValueError, match="cannot evaluate schedule"):
        next_run("0 0 31 2 *", "UTC", datetime(2026, 1, 1, tzinfo=UTC))
