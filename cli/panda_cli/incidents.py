"""`panda incidents`: what firing alerts opened. List them, show one with its alerts and timeline (the
project's platform events around it), acknowledge and resolve it, and write its post-mortem."""

import sys
from enum import StrEnum
from itertools import islice
from pathlib import Path
from typing import Annotated, Any

import typer

from panda_cli import output, units
from panda_cli.client import team_path
from panda_cli.errors import UsageProblem
from panda_cli.session import JsonOption, Session, TeamOption, reports_errors

incidents_app = typer.Typer(
    help="Incidents opened by firing alerts: list, show (with alerts and timeline), acknowledge, resolve, "
    "and write the post-mortem.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)


class Status(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


NumberArgument = Annotated[
    int, typer.Argument(metavar="NUMBER", min=1, help="The incident's number, e.g. 12.", show_default=False)
]


def _incident_path(session: Session, number: int | None = None, *parts: str) -> str:
    return team_path(session.team, "incidents", *([number] if number is not None else []), *parts)


def _when_by(at: Any, by: Any) -> str | None:
    """`2025-01-31 14:05 by alice`; None when it has not happened."""
    if not at:
        return None
    return output.local_time(at) + (f" by {by}" if by else "")


def _incident_details(incident: dict[str, Any]) -> None:
    output.fields(
        [
            ("Incident", f"#{incident.get('number')} {incident.get('title') or ''}".rstrip()),
            ("Project", incident.get("project")),
            ("Severity", incident.get("severity")),
            ("Status", incident.get("status")),
            ("Opened", output.local_time(incident.get("created_at"))),
            ("Acknowledged", _when_by(incident.get("acknowledged_at"), incident.get("acknowledged_by"))),
            ("Resolved", _when_by(incident.get("resolved_at"), incident.get("resolved_by"))),
        ]
    )


def _heading(title: str) -> None:
    output.line("")
    output.line(f"{title}:")


# -- commands ----------------------------------------------------------------------------------


@incidents_app.command("list")
@reports_errors
def incidents_list(
    status: Annotated[
        Status | None,
        typer.Option("--status", case_sensitive=False, help="Only incidents that are open, acknowledged or resolved."),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="How many incidents to show, newest first.")] = 20,
    team: TeamOption = None,
    json_: JsonOption = False,
) -> None:
    """List the team's incidents, newest first (the last 20 unless -n). With --json, a JSON array."""
    session = Session(team=team)
    params = {"status": status.value} if status else None
    # islice stops asking for pages once it has enough.
    incidents = list(islice(session.client.paginate(_incident_path(session), params=params), limit))
    if json_:
        output.print_json(incidents)
        return
    if not incidents:
        output.info(f"No {status.value + ' ' if status else ''}incidents in team {session.team}.")
        return
    output.table(
        incidents,
        [
            ("number", lambda incident: incident.get("number")),
            ("status", lambda incident: incident.get("status")),
            ("severity", lambda incident: incident.get("severity")),
            ("project", lambda incident: incident.get("project")),
            ("opened", lambda incident: output.local_time(incident.get("created_at"))),
            ("resolved", lambda incident: output.local_time(incident.get("resolved_at"))),
            ("title", lambda incident: incident.get("title")),
        ],
    )


@incidents_app.command("show")
@reports_errors
def incidents_show(number: NumberArgument, team: TeamOption = None, json_: JsonOption = False) -> None:
    """Show an incident: its status, the alerts that fired, its timeline (the project's platform events
    around it: alerts, deployments, crashes, health changes) and its post-mortem.

    With --json, prints the incident's JSON with its timeline under `timeline`.
    """
    session = Session(team=team)
    incident = session.client.get(_incident_path(session, number))
    timeline = list(session.client.paginate(_incident_path(session, number, "timeline")))
    if json_:
        output.print_json({**incident, "timeline": timeline})
        return
    _incident_details(incident)
    alerts = incident.get("alerts") or []
    if alerts:
        _heading("Alerts")
        output.table(
            alerts,
            [
                ("rule", lambda alert: alert.get("rule")),
                ("value", lambda alert: units.number(alert.get("value"))),
                ("fired", lambda alert: output.local_time(alert.get("fired_at"), seconds=True)),
                ("resolved", lambda alert: output.local_time(alert.get("resolved_at"), seconds=True)),
            ],
        )
    _heading("Timeline")
    if timeline:
        output.table(
            timeline,
            [
                ("time", lambda event: output.local_time(event.get("created_at"), seconds=True)),
                ("severity", lambda event: event.get("severity")),
                ("kind", lambda event: event.get("kind")),
                ("subject", lambda event: event.get("subject_label")),
                ("message", lambda event: event.get("message")),
            ],
        )
    else:
        output.line("(no events)")
    _heading("Post-mortem")
    postmortem = incident.get("postmortem") or ""
    if postmortem.strip():
        output.line(postmortem.rstrip("\n"))
    else:
        output.line(f"(none yet: `panda incidents postmortem {number} --file postmortem.md`)")


def _acted(session: Session, number: int, action: str, *, done: str, json_: bool) -> None:
    incident = session.client.post(_incident_path(session, number, action), {})
    if json_:
        output.print_json(incident)
    title = incident.get("title") if isinstance(incident, dict) else None
    output.success(f"{done} incident #{number}" + (f": {title}." if title else "."))


@incidents_app.command("ack")
@reports_errors
def incidents_ack(number: NumberArgument, team: TeamOption = None, json_: JsonOption = False) -> None:
    """Acknowledge an incident: someone is on it. It stays open until resolved."""
    _acted(Session(team=team), number, "acknowledge", done="Acknowledged", json_=json_)


@incidents_app.command("resolve")
@reports_errors
def incidents_resolve(number: NumberArgument, team: TeamOption = None, json_: JsonOption = False) -> None:
    """Resolve an incident. New alerts in its project then open a new incident."""
    _acted(Session(team=team), number, "resolve", done="Resolved", json_=json_)


@incidents_app.command("postmortem")
@reports_errors
def incidents_postmortem(
    number: NumberArgument,
    file: Annotated[
        str | None,
        typer.Option(
            "--file",
            "-f",
            metavar="FILE",
            help="Read the post-mortem (Markdown) from FILE; `-` is stdin.",
            show_default=False,
        ),
    ] = None,
    text: Annotated[
        str | None, typer.Option("--text", help="The post-mortem as an argument (Markdown).", show_default=False)
    ] = None,
    team: TeamOption = None,
    json_: JsonOption = False,
) -> None:
    """Write an incident's post-mortem (Markdown), replacing the one it has: from --file or --text.

    `--text ""` removes it.
    """
    if (file is None) == (text is None):
        raise UsageProblem(
            "give --file or --text (exactly one)", hint="--file postmortem.md reads a file, --file - reads stdin"
        )
    postmortem = _read_text(file) if file is not None else text
    session = Session(team=team)
    incident = session.client.patch(_incident_path(session, number), {"postmortem": postmortem})
    if json_:
        output.print_json(incident)
    if postmortem and postmortem.strip():
        output.success(f"Saved the post-mortem of incident #{number}.")
    else:
        output.success(f"Removed the post-mortem of incident #{number}.")


def _read_text(path: str) -> str:
    """The text of the file at `path` (`-` is stdin). Raises UsageProblem when it cannot be read."""
    if path == "-":
        return sys.stdin.read()
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageProblem(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise UsageProblem(f"{path} is not UTF-8 text") from None
