"""`panda metrics`: an app's requests, errors, latency, CPU, memory, restarts and uptime over a recent
range: a summary, then a sparkline per series (or, with --table, one row per step)."""

import math
import re
from collections.abc import Sequence
from typing import Annotated, Any

import typer

from panda_cli import output, units
from panda_cli.session import JsonOption, Session, TeamOption, reports_errors

SIMPLE_DURATION = re.compile(r"\d+[smhd]?")
SPARKS = "▁▂▃▄▅▆▇█"
NO_DATA = "·"
MAX_MARKS = 60  # wider lines wrap on a small terminal; longer series are folded, a mark per several steps
# The series drawn as sparklines: (label, series, unit of the peak).
SPARKLINES = (("requests", "requests", ""), ("5xx", "responses_5xx", ""), ("p95", "latency_p95_ms", " ms"))


def sparkline(values: Sequence[Any], width: int = MAX_MARKS) -> tuple[str, int]:
    """`values` as a line of bar characters from zero (▁) to the largest value (█), `·` where there is
    no value; and how many values each mark stands for (more than one when there are more than `width`
    values: a mark then shows the largest of its values, so a spike is never averaged away)."""
    per_mark = max(1, math.ceil(len(values) / width))
    marks: list[float | None] = []
    for start in range(0, len(values), per_mark):
        known = [value for value in values[start : start + per_mark] if units.number(value) is not None]
        marks.append(max(known) if known else None)
    top = max((mark for mark in marks if mark is not None), default=None)
    line = ""
    for mark in marks:
        if mark is None:
            line += NO_DATA
        elif not top or top <= 0:
            line += SPARKS[0]
        else:
            line += SPARKS[min(len(SPARKS) - 1, max(0, round(mark / top * (len(SPARKS) - 1))))]
    return line, per_mark


def period(start: Any, end: Any) -> str:
    """`2025-01-31 12:00 → 13:00` (the date once when both are on the same day), in local time."""
    first, last = output.local_time(start), output.local_time(end)
    if first[:10] == last[:10] and len(last) > 11:
        last = last[11:]
    return f"{first} → {last}"


def _measured(value: Any, unit: str = "") -> str:
    return units.number(value, unit) or "-"


def _summary(data: dict[str, Any]) -> None:
    summary = data.get("summary") or {}
    latency = ", ".join(
        f"{label} {_measured(summary.get(key), ' ms')}"
        for label, key in (
            ("p50", "latency_p50_ms"),
            ("p95", "latency_p95_ms"),
            ("p99", "latency_p99_ms"),
            ("avg", "latency_avg_ms"),
        )
    )
    checks = units.number(summary.get("health_checks"))
    uptime = _measured(summary.get("uptime_percent"), "%")
    step = units.short_duration(data.get("step"))
    resolution = units.short_duration(data.get("resolution"))  # seconds per stored bucket
    output.fields(
        [
            ("App", data.get("app")),
            ("Period", period(data.get("start"), data.get("end"))),
            ("Step", f"{step} (from {resolution} buckets)" if step and resolution else step),
            ("Health", data.get("health")),
            (
                "Requests",
                f"{_measured(summary.get('requests'))} "
                f"({_measured(summary.get('responses_4xx'))} 4xx, {_measured(summary.get('responses_5xx'))} 5xx)",
            ),
            ("Error rate", _measured(summary.get("error_rate"), "%")),
            ("Latency", latency),
            ("CPU", _measured(summary.get("cpu_percent"), "%")),
            ("Memory", _measured(summary.get("memory_mb"), " MB")),
            ("Restarts", _measured(summary.get("restarts"))),
            ("Uptime", f"{uptime} ({checks} health checks)" if checks is not None else uptime),
        ]
    )


def _sparklines(data: dict[str, Any], timestamps: list[Any]) -> None:
    series = data.get("series") or {}
    width = max(len(label) for label, _, _ in SPARKLINES)
    per_mark = 1
    for label, key, unit in SPARKLINES:
        values = series.get(key) or []
        line, per_mark = sparkline(values)
        known = [value for value in values if units.number(value) is not None]
        peak = f"max {units.number(max(known), unit)}" if known else "no data"
        output.line(f"{label:<{width}}  {line}  {peak}")
    every = units.short_duration(data["step"] * per_mark) if units.number(data.get("step")) else None
    legend = period(timestamps[0], timestamps[-1])
    output.line(f"{'':<{width}}  {legend}" + (f", a mark per {every}" if every else ""))


def _table(data: dict[str, Any], timestamps: list[Any]) -> None:
    series = data.get("series") or {}
    fine = isinstance(data.get("step"), int | float) and data["step"] < 60

    def at(key: str, unit: str = "") -> Any:
        values = series.get(key) or []
        return lambda row: units.number(values[row["i"]], unit) if row["i"] < len(values) else None

    output.table(
        [{"i": index, "at": stamp} for index, stamp in enumerate(timestamps)],
        [
            ("time", lambda row: output.local_time(row["at"], seconds=fine)),
            ("requests", at("requests")),
            ("4xx", at("responses_4xx")),
            ("5xx", at("responses_5xx")),
            ("errors", at("error_rate", "%")),
            ("p50 ms", at("latency_p50_ms")),
            ("p95 ms", at("latency_p95_ms")),
            ("p99 ms", at("latency_p99_ms")),
            ("cpu", at("cpu_percent", "%")),
            ("memory mb", at("memory_mb")),
            ("restarts", at("restarts")),
        ],
    )


@reports_errors
def metrics(
    app_name: Annotated[str, typer.Option("--app", "-a", help="The app's name.", show_default=False)],
    range_: Annotated[
        str,
        typer.Option("--range", "-r", metavar="DURATION", help="How far back to look: 15m, 1h, 6h, 1d or 7d."),
    ] = "1h",
    step: Annotated[
        str | None,
        typer.Option(
            "--step",
            metavar="DURATION",
            help="One data point per this long (a multiple of 10 seconds): 30s, 5m, 1h. Default: about 60-360 points.",
            show_default=False,
        ),
    ] = None,
    table: Annotated[
        bool, typer.Option("--table", help="Print one row per step with every series, instead of sparklines.")
    ] = False,
    team: TeamOption = None,
    json_: JsonOption = False,
) -> None:
    """Show an app's metrics over a recent range: requests, 4xx and 5xx, error rate, latency
    percentiles, CPU, memory, restarts, uptime and health.

    Prints a summary and sparklines of requests, 5xx and p95 latency (`·` marks a step without data);
    --table prints every step instead. With --json, prints the API's JSON (every series, every step).
    """
    # Checked before anything talks to the API, so a usage error never costs a request.
    range_seconds = units.parse_duration(range_, option="--range", allow_zero=False)
    range_text = range_.strip().lower()
    # The API reads one number with one unit (`90m`, `6h`) or seconds; `1h30m` goes as seconds.
    params: dict[str, Any] = {"range": range_text if SIMPLE_DURATION.fullmatch(range_text) else str(range_seconds)}
    if step is not None:
        params["step"] = units.parse_duration(step, option="--step", allow_zero=False)
    session = Session(team=team)
    data = session.client.get(session.app_path(app_name, "metrics"), params=params)
    if json_:
        output.print_json(data)
        return
    _summary(data)
    timestamps = data.get("timestamps") or []
    if not timestamps:
        output.info(f"No data points for {app_name} in this period.")
        return
    output.line("")
    if table:
        _table(data, timestamps)
    else:
        _sparklines(data, timestamps)
