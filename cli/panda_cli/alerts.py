"""`panda alerts`: alert rules on an app's metrics or on platform events, and the notification
channels they notify (`panda alerts channels`).

A rule watches what its option names: `--app` (the app's metrics, or its events), `--cron-job` (the
job's events), `--database` (the database's events, e.g. database.backup_failed) or `--project` alone
(events of everything in the project). It measures a metric
(`--metric error_rate`) or counts platform events of a kind (`--event cron.run_failed`) over
`--window`, and fires once the condition has held for `--for`. Firing notifies its channels and opens
(or joins) an incident; see `panda incidents`.
"""

from enum import StrEnum
from typing import Annotated, Any

import typer

from panda_cli import output, units
from panda_cli.client import team_path
from panda_cli.errors import UsageProblem
from panda_cli.session import JsonOption, Session, TeamOption, reports_errors

alerts_app = typer.Typer(
    help="Alert rules: conditions on an app's metrics or on platform events that notify channels and open "
    "incidents.\n\nA rule watches `--app`, `--cron-job`, `--database` or `--project`; it measures `--metric` or counts "
    "`--event`s over `--window` and fires once the condition has held for `--for`.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)
channels_app = typer.Typer(
    help="Notification channels: where alerts go (e-mail, a signed webhook, or a Slack webhook).",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)
alerts_app.add_typer(channels_app, name="channels")


class Metric(StrEnum):
    EVENT = "event"
    REQUESTS = "requests"
    RESPONSES_4XX = "responses_4xx"
    RESPONSES_5XX = "responses_5xx"
    ERROR_RATE = "error_rate"
    LATENCY_P50 = "latency_p50_ms"
    LATENCY_P95 = "latency_p95_ms"
    LATENCY_P99 = "latency_p99_ms"
    CPU = "cpu_percent"
    MEMORY = "memory_mb"
    RESTARTS = "restarts"
    UPTIME = "uptime_percent"
    UP = "up"


class Operator(StrEnum):
    GT = "gt"
    GTE = "gte"
    LT = "lt"
    LTE = "lte"


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class ChannelKind(StrEnum):
    EMAIL = "email"
    WEBHOOK = "webhook"
    SLACK = "slack"


SYMBOLS = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
SCOPE_LABELS = {"app": "app", "cron_job": "cron job", "database": "database", "project": "project"}

RuleNameArgument = Annotated[str, typer.Argument(metavar="NAME", help="The rule's name.", show_default=False)]
AppTarget = Annotated[
    str | None,
    typer.Option("--app", "-a", help="Watch this app: its metrics, or its events with --event.", show_default=False),
]
CronJobTarget = Annotated[
    str | None, typer.Option("--cron-job", help="Watch this cron job's events (with --event).", show_default=False)
]
DatabaseTarget = Annotated[
    str | None,
    typer.Option(
        "--database",
        help="Watch this database's events (with --event, e.g. database.backup_failed).",
        show_default=False,
    ),
]
ProjectTarget = Annotated[
    str | None,
    typer.Option(
        "--project",
        "-p",
        help="The rule's project. Alone (without --app, --cron-job or --database): watch events of everything in it.",
        show_default=False,
    ),
]
MetricOption = Annotated[
    Metric | None,
    typer.Option(
        "--metric",
        "-m",
        case_sensitive=False,
        metavar="METRIC",
        help="An app's metric to measure over the window: requests, responses_4xx, responses_5xx, error_rate (%), "
        "latency_p50_ms, latency_p95_ms, latency_p99_ms, cpu_percent, memory_mb, restarts, uptime_percent (%), "
        "or up (1 up, 0 down).",
        show_default=False,
    ),
]
EventOption = Annotated[
    str | None,
    typer.Option(
        "--event",
        "-e",
        metavar="KIND",
        help="Count platform events of this kind instead, e.g. cron.run_failed (the metric is then `event`).",
        show_default=False,
    ),
]
OperatorOption = Annotated[
    Operator | None,
    typer.Option(
        "--op", "-o", case_sensitive=False, help="Compare with the threshold: gt, gte, lt or lte.", show_default=False
    ),
]
ThresholdOption = Annotated[
    float | None, typer.Option("--threshold", "-t", help="The value to compare with.", show_default=False)
]
WindowOption = Annotated[
    str | None,
    typer.Option(
        "--window",
        "-w",
        metavar="DURATION",
        help="Measure over this much time: 30s, 5m, 1h. A metric's window is a multiple of 10s, from 30s to the "
        "server's raw metrics retention (6h by default). Default (server): 5m.",
        show_default=False,
    ),
]
ForOption = Annotated[
    str | None,
    typer.Option(
        "--for",
        metavar="DURATION",
        help="Fire only once the condition has held this long: 0s, 1m, 10m. Default (server): 0s.",
        show_default=False,
    ),
]
SeverityOption = Annotated[
    Severity | None,
    typer.Option(
        "--severity",
        "-s",
        case_sensitive=False,
        help="info, warning or critical. Default (server): warning.",
        show_default=False,
    ),
]
ChannelOption = Annotated[
    list[str] | None,
    typer.Option(
        "--channel",
        "-c",
        metavar="CHANNEL",
        help="Notify this channel when the rule fires and resolves; repeat it, or separate names with commas.",
        show_default=False,
    ),
]
EnabledOption = Annotated[
    bool | None,
    typer.Option(
        "--enabled/--disabled", help="Whether the rule is evaluated. Default (server): enabled.", show_default=False
    ),
]


def _rule_path(session: Session, name: str | None = None) -> str:
    return team_path(session.team, "alert-rules", *([name] if name is not None else []))


def _channel_path(session: Session, name: str | None = None, *parts: str) -> str:
    return team_path(session.team, "notification-channels", *([name] if name is not None else []), *parts)


# -- how rules read ----------------------------------------------------------------------------


def watches(rule: dict[str, Any]) -> str | None:
    """What the rule watches: `app web`, `cron job nightly`, `database main`, `project shop`."""
    scope = rule.get("scope")
    if not scope:
        return None
    target = rule.get(scope) if scope in SCOPE_LABELS else None
    return f"{SCOPE_LABELS.get(scope, scope)} {output.text(target)}"


def condition(rule: dict[str, Any]) -> str:
    """The rule's condition as a sentence: `error_rate > 5 over 5m for 1m`,
    `cron.run_failed events > 0 over 10m`."""
    metric = rule.get("metric")
    measured = f"{rule.get('event_kind')} events" if metric == Metric.EVENT else str(metric)
    operator = rule.get("operator")
    text = f"{measured} {SYMBOLS.get(operator, operator)} {output.text(units.number(rule.get('threshold')))}"
    window = units.short_duration(rule.get("window_seconds"))
    if window:
        text += f" over {window}"
    if rule.get("for_seconds"):
        text += f" for {units.short_duration(rule['for_seconds'])}"
    return text


def _state(rule: dict[str, Any]) -> str | None:
    state = rule.get("state")
    since = rule.get("state_since")
    return f"{state} since {output.local_time(since)}" if state and since else state


def _last_value(rule: dict[str, Any]) -> str | None:
    evaluated = rule.get("last_evaluated_at")
    if not evaluated:
        return None  # never evaluated yet
    value = units.number(rule.get("last_value"))
    return f"{value if value is not None else 'no data'} at {output.local_time(evaluated, seconds=True)}"


def _names(values: Any) -> str | None:
    return ", ".join(str(value) for value in values) if isinstance(values, list) else values


def _rule_details(rule: dict[str, Any]) -> None:
    output.fields(
        [
            ("Name", rule.get("name")),
            ("Project", rule.get("project")),
            ("Watches", watches(rule)),
            ("Condition", condition(rule)),
            ("Severity", rule.get("severity")),
            ("Channels", _names(rule.get("channels"))),
            ("Enabled", rule.get("enabled")),
            ("State", _state(rule)),
            ("Last value", _last_value(rule)),
            ("Created", output.local_time(rule.get("created_at"))),
        ]
    )


# -- what a command line asks for --------------------------------------------------------------


def _target(*, app: str | None, cron_job: str | None, database: str | None, project: str | None) -> dict[str, Any]:
    """The rule's scope and what it names: --app, --cron-job or --database (with --project, which the
    server checks against it), or --project alone. {} when none is given."""
    given = {"app": app, "cron_job": cron_job, "database": database}
    named = [scope for scope, name in given.items() if name]
    if len(named) > 1:
        options = " and ".join(f"--{scope.replace('_', '-')}" for scope in named)
        raise UsageProblem(
            f"give only one of --app, --cron-job and --database (got {options})", hint="a rule watches one thing"
        )
    body: dict[str, Any] = {}
    if named:
        body = {"scope": named[0], named[0]: given[named[0]]}
    elif project:
        body = {"scope": "project"}
    if project:
        body["project"] = project
    return body


def _measure(*, metric: Metric | None, event: str | None) -> dict[str, Any]:
    """The rule's metric (and event kind) from --metric or --event; {} when neither is given."""
    if event is not None:
        if metric not in (None, Metric.EVENT):
            raise UsageProblem(f"--event counts platform events; it cannot go with --metric {metric}")
        if not event.strip():
            raise UsageProblem("--event needs an event kind, e.g. cron.run_failed")
        return {"metric": Metric.EVENT.value, "event_kind": event.strip()}
    if metric is Metric.EVENT:
        raise UsageProblem("--metric event needs the kind of event to count", hint="e.g. --event cron.run_failed")
    return {"metric": metric.value} if metric else {}


def _channels(values: list[str] | None) -> list[str] | None:
    """`--channel a --channel b,c` as ["a", "b", "c"]; None when not given."""
    if values is None:
        return None
    names = [part.strip() for value in values for part in value.split(",") if part.strip()]
    if not names:
        raise UsageProblem("--channel needs a channel name", hint="see `panda alerts channels list`")
    return list(dict.fromkeys(names))


def _settings(
    *,
    op: Operator | None,
    threshold: float | None,
    window: str | None,
    for_: str | None,
    severity: Severity | None,
    channels: list[str] | None,
    enabled: bool | None,
) -> dict[str, Any]:
    """The given settings a rule's body shares between create and update, durations in seconds."""
    given: dict[str, Any] = {
        "operator": op.value if op else None,
        "threshold": threshold,
        "window_seconds": units.parse_duration(window, option="--window", allow_zero=False) if window else None,
        "for_seconds": units.parse_duration(for_, option="--for") if for_ is not None else None,
        "severity": severity.value if severity else None,
        "channels": _channels(channels),
        "enabled": enabled,
    }
    return {key: value for key, value in given.items() if value is not None}


# -- panda alerts ------------------------------------------------------------------------------


@alerts_app.command("list")
@reports_errors
def alerts_list(team: TeamOption = None, json_: JsonOption = False) -> None:
    """List the team's alert rules with their state. With --json, all of them (every page) as a JSON array."""
    session = Session(team=team)
    rules = list(session.client.paginate(_rule_path(session)))
    output.listing(
        rules,
        [
            ("name", lambda rule: rule.get("name")),
            ("state", lambda rule: rule.get("state")),
            ("severity", lambda rule: rule.get("severity")),
            ("enabled", lambda rule: rule.get("enabled")),
            ("watches", watches),
            ("channels", lambda rule: _names(rule.get("channels"))),
            ("condition", condition),
        ],
        json_=json_,
        empty=(
            f"No alert rules in team {session.team} yet. Create one with `panda alerts create NAME --app A "
            "--metric error_rate --op gt --threshold 5`."
        ),
    )


@alerts_app.command("show")
@reports_errors
def alerts_show(name: RuleNameArgument, team: TeamOption = None, json_: JsonOption = False) -> None:
    """Show an alert rule: what it watches, its condition, channels, state and last value."""
    session = Session(team=team)
    rule = session.client.get(_rule_path(session, name))
    if json_:
        output.print_json(rule)
    else:
        _rule_details(rule)


@alerts_app.command("create")
@reports_errors
def alerts_create(
    name: Annotated[
        str, typer.Argument(metavar="NAME", help="Rule name: unique in the team, DNS-safe.", show_default=False)
    ],
    app: AppTarget = None,
    cron_job: CronJobTarget = None,
    database: DatabaseTarget = None,
    project: ProjectTarget = None,
    metric: MetricOption = None,
    event: EventOption = None,
    op: OperatorOption = None,
    threshold: ThresholdOption = None,
    window: WindowOption = None,
    for_: ForOption = None,
    severity: SeverityOption = None,
    channel: ChannelOption = None,
    enabled: EnabledOption = None,
    team: TeamOption = None,
    json_: JsonOption = False,
) -> None:
    """Create an alert rule.

    On a metric: `panda alerts create high-errors --app web --metric error_rate --op gt --threshold 5
    --window 5m --for 1m --severity critical --channel ops-hook` (--op and --threshold are required).

    On events: `panda alerts create backup-failed --cron-job nightly --event cron.run_failed --channel
    ops-hook` fires on any such event; give --op and --threshold to fire on more than one. A database's:
    `panda alerts create backups --database main --event database.backup_failed --channel ops-hook`.
    Options left out take the server's defaults.
    """
    # Checked before anything talks to the API, so a usage error never costs a request.
    target = _target(app=app, cron_job=cron_job, database=database, project=project)
    if not target:
        raise UsageProblem(
            "say what the rule watches: --app, --cron-job, --database or --project",
            hint="--app A watches an app's metrics or events; --cron-job J a job's events; --database D a "
            "database's events; --project P its events",
        )
    measure = _measure(metric=metric, event=event)
    if not measure:
        raise UsageProblem(
            "say what the rule measures: --metric METRIC, or --event KIND to count events",
            hint="e.g. --metric error_rate --op gt --threshold 5, or --event cron.run_failed",
        )
    if measure["metric"] == Metric.EVENT and op is None and threshold is None:
        op, threshold = Operator.GT, 0.0  # an event rule fires on any event unless told otherwise
    missing = [option for option, value in (("--op", op), ("--threshold", threshold)) if value is None]
    if missing:
        raise UsageProblem(
            f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} required",
            hint="e.g. --op gt --threshold 5 fires above 5; --op lt --threshold 99 below 99",
        )
    body: dict[str, Any] = {"name": name, **target, **measure}
    body.update(
        _settings(
            op=op,
            threshold=threshold,
            window=window,
            for_=for_,
            severity=severity,
            channels=channel,
            enabled=enabled,
        )
    )
    session = Session(team=team)
    created = session.client.post(_rule_path(session), body)
    if json_:
        output.print_json(created)
        return
    output.success(f"Created alert rule {created.get('name')} in team {session.team}.")
    _rule_details(created)


@alerts_app.command("update")
@reports_errors
def alerts_update(
    name: RuleNameArgument,
    metric: MetricOption = None,
    event: EventOption = None,
    op: OperatorOption = None,
    threshold: ThresholdOption = None,
    window: WindowOption = None,
    for_: ForOption = None,
    severity: SeverityOption = None,
    channel: Annotated[
        list[str] | None,
        typer.Option(
            "--channel",
            "-c",
            metavar="CHANNEL",
            help="The channels to notify, replacing the rule's; repeat it, or separate names with commas.",
            show_default=False,
        ),
    ] = None,
    no_channels: Annotated[
        bool, typer.Option("--no-channels", help="Notify no channel (firing still opens an incident).")
    ] = False,
    enabled: Annotated[
        bool | None,
        typer.Option("--enabled/--disabled", help="Evaluate the rule, or stop evaluating it.", show_default=False),
    ] = None,
    team: TeamOption = None,
    json_: JsonOption = False,
) -> None:
    """Change an alert rule: only the options given change.

    `panda alerts update high-errors --threshold 10 --for 5m`; `panda alerts update high-errors --disabled`.
    What a rule watches stays: to watch another app, cron job, database or project, create another rule.
    """
    if channel is not None and no_channels:
        raise UsageProblem("give --channel or --no-channels, not both")
    measure = _measure(metric=metric, event=event)
    if measure and measure["metric"] != Metric.EVENT:
        measure["event_kind"] = ""  # an event rule turned into a metric one counts no kind any more
    changes = {
        **measure,
        **_settings(
            op=op,
            threshold=threshold,
            window=window,
            for_=for_,
            severity=severity,
            channels=channel,
            enabled=enabled,
        ),
    }
    if no_channels:
        changes["channels"] = []
    if not changes:
        raise UsageProblem(
            f"nothing to change in alert rule {name}", hint="give the options to change, e.g. --threshold 10"
        )
    session = Session(team=team)
    rule = session.client.patch(_rule_path(session, name), changes)
    if json_:
        output.print_json(rule)
        return
    output.success(f"Updated alert rule {name}.")
    _rule_details(rule)


@alerts_app.command("delete")
@reports_errors
def alerts_delete(
    name: RuleNameArgument,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Really delete the rule.")] = False,
    team: TeamOption = None,
) -> None:
    """Delete an alert rule. Needs --yes: panda never prompts (CI has no stdin). Its past incidents stay."""
    if not yes:
        raise UsageProblem(
            f"refusing to delete alert rule {name} without --yes",
            hint=f"`panda alerts delete {name} --yes` deletes it; `panda alerts update {name} --disabled` only "
            "stops it",
        )
    session = Session(team=team)
    # The API asks for the name again, so a request built for another rule cannot delete this one.
    session.client.delete(_rule_path(session, name), {"confirm": name})
    output.success(f"Deleted alert rule {name}.")


# -- panda alerts channels ---------------------------------------------------------------------


def _channel_details(channel: dict[str, Any]) -> None:
    output.fields(
        [
            ("Name", channel.get("name")),
            ("Kind", channel.get("kind")),
            ("Target", channel.get("target")),
            ("Enabled", channel.get("enabled")),
            ("Signed", channel.get("signed")),
            ("Verified", channel.get("verified")),
            ("Created", output.local_time(channel.get("created_at"))),
        ]
    )


@channels_app.command("list")
@reports_errors
def channels_list(team: TeamOption = None, json_: JsonOption = False) -> None:
    """List the team's notification channels. With --json, all of them (every page) as a JSON array."""
    session = Session(team=team)
    channels = list(session.client.paginate(_channel_path(session)))
    output.listing(
        channels,
        [
            ("name", lambda channel: channel.get("name")),
            ("kind", lambda channel: channel.get("kind")),
            ("enabled", lambda channel: channel.get("enabled")),
            ("signed", lambda channel: channel.get("signed")),
            ("target", lambda channel: channel.get("target")),
        ],
        json_=json_,
        empty=(
            f"No notification channels in team {session.team} yet. Create one with "
            "`panda alerts channels create NAME --kind webhook --target URL`."
        ),
    )


@channels_app.command("create")
@reports_errors
def channels_create(
    name: Annotated[
        str, typer.Argument(metavar="NAME", help="Channel name: unique in the team, DNS-safe.", show_default=False)
    ],
    kind: Annotated[
        ChannelKind,
        typer.Option("--kind", "-k", case_sensitive=False, help="email, webhook or slack.", show_default=False),
    ],
    target: Annotated[
        str,
        typer.Option(
            "--target",
            help="One e-mail address (it gets a code to confirm with `panda alerts channels verify`), "
            "or the webhook's http(s) URL.",
            show_default=False,
        ),
    ],
    team: TeamOption = None,
    json_: JsonOption = False,
) -> None:
    """Create a notification channel. A webhook's signing secret is printed once, now: store it.
    An e-mail address receives a verification code first; nothing else is sent to it until the code
    is entered with `panda alerts channels verify NAME CODE`.

    Webhook deliveries carry `X-PandaStack-Signature: sha256=HMAC-SHA256(secret, "<X-PandaStack-Timestamp>.<body>")`.
    """
    session = Session(team=team)
    created = session.client.post(_channel_path(session), {"name": name, "kind": kind.value, "target": target})
    if json_:
        output.print_json(created)
    else:
        output.success(f"Created notification channel {created.get('name')} in team {session.team}.")
        _channel_details(created)
    secret = created.get("signing_secret")
    if secret:
        if not json_:
            output.line(f"Signing secret: {secret}")
        output.warning("the signing secret is shown only this once: store it where the receiver can check it.")


@channels_app.command("test")
@reports_errors
def channels_test(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The channel's name.", show_default=False)],
    team: TeamOption = None,
    json_: JsonOption = False,
) -> None:
    """Send a test notification through a channel. Delivery happens in the background (retried when
    the receiver fails); with --json, prints the delivery the API queued."""
    session = Session(team=team)
    delivery = session.client.post(_channel_path(session, name, "test"), {})
    if json_:
        output.print_json(delivery)
    output.success(
        f"Queued a test notification through channel {name} (delivery #{delivery.get('id')}, {delivery.get('status')})."
    )


@channels_app.command("verify")
@reports_errors
def channels_verify(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The e-mail channel's name.", show_default=False)],
    code: Annotated[
        str, typer.Argument(metavar="CODE", help="The code e-mailed to the channel's address.", show_default=False)
    ],
    team: TeamOption = None,
    json_: JsonOption = False,
) -> None:
    """Confirm an e-mail channel's address with the code that was e-mailed to it. Until then the
    channel sends nothing, tests included."""
    session = Session(team=team)
    channel = session.client.post(_channel_path(session, name, "verify"), {"token": code})
    if json_:
        output.print_json(channel)
    else:
        output.success(f"Verified notification channel {name}: it now receives notifications.")


@channels_app.command("resend-verification")
@reports_errors
def channels_resend_verification(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The e-mail channel's name.", show_default=False)],
    team: TeamOption = None,
) -> None:
    """E-mail the verification code to an unverified e-mail channel again (once per 10 minutes)."""
    session = Session(team=team)
    session.client.post(_channel_path(session, name, "resend-verification"), {})
    output.success(f"Sent a new verification code to channel {name}'s address.")
