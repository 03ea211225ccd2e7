"""`panda registries`: the team's logins to private container registries.

Deployments and cron runs of an image on a registry the team has a login for pull it with that login,
every time, so the registry decides whether the team may have it. The password (or access token) is
read from stdin only, like `docker login --password-stdin`, so it never lands in shell history or in a
process list; the API stores it encrypted and never shows it again.
"""

import sys
from typing import Annotated

import typer

from panda_cli import output
from panda_cli.client import team_path
from panda_cli.errors import ApiError, UsageProblem
from panda_cli.session import JsonOption, Session, TeamOption, reports_errors

registries_app = typer.Typer(
    help="Logins to private container registries: images on those hosts are pulled with the team's login.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)

HostArgument = Annotated[
    str,
    typer.Argument(
        metavar="HOST",
        help="The registry host as image references name it: ghcr.io, registry.example.com:5000 (docker.io for "
        "Docker Hub).",
        show_default=False,
    ),
]


def _path(session: Session, host: str | None = None) -> str:
    return team_path(session.team, "registry-credentials", *([host] if host is not None else []))


@registries_app.command("list")
@reports_errors
def registries_list(team: TeamOption = None, json_: JsonOption = False) -> None:
    """List the registries the team has a login for (hosts and usernames; passwords are never shown)."""
    session = Session(team=team)
    rows = list(session.client.paginate(_path(session)))
    output.listing(
        rows,
        [
            ("registry", lambda row: row.get("registry")),
            ("username", lambda row: row.get("username")),
            ("updated", lambda row: row.get("updated_at")),
        ],
        json_=json_,
        empty=(
            f"No registry logins in team {session.team} yet. Add one with "
            "`panda registries login HOST --username USER --password-stdin`."
        ),
    )


@registries_app.command("login")
@reports_errors
def registries_login(
    host: HostArgument,
    username: Annotated[
        str, typer.Option("--username", "-u", help="The registry username.", show_default=False)
    ],
    password_stdin: Annotated[
        bool,
        typer.Option(
            "--password-stdin", help="Read the password or access token from stdin (required: never an argument)."
        ),
    ] = False,
    team: TeamOption = None,
    json_: JsonOption = False,
) -> None:
    """Store (or replace) the team's login to a registry. The password is read from stdin:
    `echo "$TOKEN" | panda registries login ghcr.io -u ci --password-stdin`."""
    if not password_stdin:
        raise UsageProblem(
            "the password is read from stdin only",
            hint='echo "$TOKEN" | panda registries login HOST -u USER --password-stdin',
        )
    password = sys.stdin.read().rstrip("\r\n")
    if not password:
        raise UsageProblem("stdin gave an empty password")
    session = Session(team=team)
    body = {"username": username, "password": password}
    try:
        saved = session.client.patch(_path(session, host), body)
        verb = "Replaced"
    except ApiError as exc:
        if exc.status != 404:
            raise
        saved = session.client.post(_path(session), {"registry": host, **body})
        verb = "Stored"
    if json_:
        output.print_json(saved)
    else:
        output.success(
            f"{verb} team {session.team}'s login to {saved.get('registry')} as {saved.get('username')}: its images "
            "are pulled with it."
        )


@registries_app.command("logout")
@reports_errors
def registries_logout(host: HostArgument, team: TeamOption = None) -> None:
    """Forget the team's login to a registry. Its private images then fail to deploy for this team."""
    session = Session(team=team)
    session.client.delete(_path(session, host))
    output.success(f"Removed team {session.team}'s login to {host}.")
