"""What every command shares: its session (settings, API client, team), the wrapper that turns
CliErrors into a message and an exit code, and the options every command spells the same way.

It lives apart from `main` so that command groups in other modules (`env`) can use it and `main`
can still register them, without an import cycle.
"""

import functools
from collections.abc import Callable
from typing import Annotated, Any

import typer

from panda_cli import client, config, output
from panda_cli.client import Client
from panda_cli.errors import CliError, NotAuthenticated, UsageProblem

TeamOption = Annotated[
    str | None,
    typer.Option(
        "--team",
        help="Team slug. Default: PANDA_TEAM, then the team saved by `panda login`, then the token's team.",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the API's JSON to stdout instead of text.")]


def reports_errors(command: Callable[..., None]) -> Callable[..., None]:
    """Turn CliErrors into a message on stderr and their exit code, and Ctrl-C into exit 130."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        try:
            return command(*args, **kwargs)
        except CliError as exc:
            output.report(exc)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            output.info("Interrupted.")
            raise typer.Exit(130) from None

    return wrapper


class Session:
    """The settings and API client of one command. The team is resolved on first use: --team, then
    PANDA_TEAM, then the config file, then the team the token belongs to (one call to /me/)."""

    def __init__(self, *, team: str | None = None) -> None:
        self.settings = config.resolve()
        if not self.settings.token:
            raise NotAuthenticated("not logged in", hint=client.LOGIN_HINT)
        self.client = Client(self.settings.api_url, self.settings.token)
        self._team = team or self.settings.team
        self._me: dict[str, Any] | None = None

    def me(self) -> dict[str, Any]:
        if self._me is None:
            self._me = self.client.get("/api/v1/me/")
        return self._me

    @property
    def team(self) -> str:
        if not self._team:
            token = self.me().get("token") or {}
            self._team = slug(token.get("team"))
        if not self._team:
            raise UsageProblem(
                "no team given, and the token belongs to no single team",
                hint="pass --team TEAM, set PANDA_TEAM, or run `panda login --token TOKEN --team TEAM`",
            )
        return self._team

    def app_path(self, app_name: str, *parts: str | int) -> str:
        return client.team_path(self.team, "apps", app_name, *parts)


def slug(team: Any) -> str | None:
    """A team as the API may give it: a slug, or an object carrying one."""
    if isinstance(team, dict):
        team = team.get("slug") or team.get("name")
    return str(team) if team else None
