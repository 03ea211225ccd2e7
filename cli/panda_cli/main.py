"""The `panda` command: log in, inspect apps, deploy images and watch them go live, roll back,
scale and read logs, all through the PandaStack REST API. Variables and secrets (`panda env`,
`panda secrets`) live in `panda_cli.env`, cron jobs (`panda cron`) in `panda_cli.cron`, monitoring in
`panda_cli.metrics` (`panda metrics`), `panda_cli.alerts` (`panda alerts`), `panda_cli.incidents`
(`panda incidents`) and `panda_cli.db` (`panda db`); what every command shares, in `panda_cli.session`.

Exit codes: 0 success, 1 API error or API unreachable, 2 usage, 3 deploy (or awaited cron run or
database operation) failed or timed out, 4 not authenticated. Messages go to stderr, data to stdout;
`--json` prints the API's JSON.
"""

import contextlib
import json
import os
import shlex
import sys
from typing import Annotated, Any

import typer

from panda_cli import __version__, alerts, client, config, cron, db, env, incidents, metrics, output, registries
from panda_cli.client import Backoff, Client, team_path
from panda_cli.errors import ApiError, ApiUnreachable, CliError, DeployNotLive, UsageProblem
from panda_cli.session import JsonOption, Session, TeamOption, reports_errors, slug

app = typer.Typer(
    name="panda",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="markdown",  # docstring paragraphs are rewrapped, `code` reads as code
    # Rich tracebacks with locals could print the token; a bug should show a plain traceback.
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
apps_app = typer.Typer(help="List, create and inspect apps.", no_args_is_help=True, rich_markup_mode="markdown")
app.add_typer(apps_app, name="apps")
app.add_typer(env.env_app, name="env")
app.add_typer(env.secrets_app, name="secrets")
app.add_typer(cron.cron_app, name="cron")
app.add_typer(db.db_app, name="db")
app.add_typer(alerts.alerts_app, name="alerts")
app.add_typer(incidents.incidents_app, name="incidents")
app.add_typer(registries.registries_app, name="registries")

LIVE = "live"
NOT_LIVE_ENDS = {
    "failed": "failed",
    "superseded": "was superseded by a newer deployment before it went live",
    "rolled_back": "was rolled back",
    "cancelled": "was cancelled before it went live",
}
IN_PROGRESS = ("pending", "pulling", "starting", "health_checking")

AppOption = Annotated[str, typer.Option("--app", "-a", help="The app's name.", show_default=False)]
DetachOption = Annotated[
    bool, typer.Option("--detach", "-d", help="Return as soon as the API accepts the deployment; do not wait.")
]
TimeoutOption = Annotated[
    int,
    typer.Option(
        "--timeout",
        min=1,
        metavar="SECONDS",
        help="How long to wait for the deployment to go live before exit 3. Stopping the wait does not stop the "
        "deployment: it stays in progress on the server (see --cancel-on-timeout).",
    ),
]
CancelOnTimeoutOption = Annotated[
    bool,
    typer.Option(
        "--cancel-on-timeout",
        help="When --timeout passes, cancel the deployment (whatever was live keeps serving) instead of leaving it "
        "in progress on the server.",
    ),
]


class WaitTimedOut(DeployNotLive):
    """--timeout passed while the deployment was still in progress on the server."""

    def __init__(self, message: str, *, hint: str, last: dict[str, Any]) -> None:
        super().__init__(message, hint=hint)
        self.last = last


# -- top level ---------------------------------------------------------------------------------


def _print_version(value: bool) -> None:
    if value:
        output.line(f"panda {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """Deploy and run apps on PandaStack from your terminal or CI.

    Credentials come from `panda login`, or with no login from PANDA_TOKEN, PANDA_API_URL and
    PANDA_TEAM (the environment wins over the saved login).

    Exit codes: 0 ok, 1 API error, 2 usage, 3 deploy, awaited cron run or database operation failed or
    timed out, 4 not authenticated.
    """


@app.command()
@reports_errors
def login(
    token: Annotated[str, typer.Option("--token", help="API token; `-` reads it from stdin.", show_default=False)],
    api_url: Annotated[
        str | None,
        typer.Option(
            "--api-url",
            help=f"PandaStack URL. Default: PANDA_API_URL, then the saved one, then {config.DEFAULT_API_URL}.",
            show_default=False,
        ),
    ] = None,
    team: Annotated[
        str | None, typer.Option("--team", help="Team to use by default. Default: the token's team.")
    ] = None,
) -> None:
    """Check a token against the API and save it (with the API URL and team) for later commands.

    The login is saved to $XDG_CONFIG_HOME/panda/config.json (else ~/.config/panda/config.json),
    readable by you only.
    """
    if token == "-":  # noqa: S105 - "-" asks to read the token from stdin
        token = sys.stdin.readline()
    token = token.strip()
    if not token:
        raise UsageProblem("the token is empty")
    try:
        saved = config.load()
    except CliError:
        saved = {}  # a broken file is about to be replaced
    if api_url:
        url = config.normalize_api_url(api_url, source="--api-url")
    elif os.environ.get("PANDA_API_URL"):
        url = config.normalize_api_url(os.environ["PANDA_API_URL"], source="PANDA_API_URL")
    else:
        url = config.normalize_api_url(saved.get("api_url", config.DEFAULT_API_URL), source="the config file")
    with Client(url, token) as api:
        me = api.get("/api/v1/me/")
    token_team = slug((me.get("token") or {}).get("team"))
    chosen_team = team or token_team
    path = config.save({"api_url": url, "token": token, "team": chosen_team or ""})
    where = f" (team {chosen_team})" if chosen_team else ""
    output.success(f"Logged in to {url} as {me.get('username')}{where}.")
    output.info(f"Saved to {path}.")
    if os.environ.get("PANDA_TOKEN"):
        output.warning("PANDA_TOKEN is set in this environment and takes precedence over the saved token.")


@app.command()
@reports_errors
def logout() -> None:
    """Forget the saved token (the API URL stays saved). The token itself stays valid: revoke it in
    the portal or API if it leaked."""
    if config.forget_credentials():
        output.info(f"Logged out: removed the token from {config.config_path()}.")
    else:
        output.info("Not logged in; nothing to remove.")
    if os.environ.get("PANDA_TOKEN"):
        output.warning("PANDA_TOKEN is still set in this environment, so commands still authenticate.")


@app.command()
@reports_errors
def whoami(json_: JsonOption = False) -> None:
    """Show who the token belongs to, its team and scopes, and which API it talks to."""
    session = Session()
    me = session.me()
    if json_:
        output.print_json(me)
        return
    token = me.get("token") or {}
    scopes = token.get("scopes")
    output.fields(
        [
            ("User", me.get("username")),
            ("Email", me.get("email")),
            ("Service account", bool(me.get("is_service_account"))),
            ("Team", session.settings.team or slug(token.get("team"))),
            ("Token", f"{token.get('name')} ({token.get('prefix')}…)" if token else None),
            ("Scopes", ", ".join(scopes) if isinstance(scopes, list) else scopes),
            ("Expires", output.local_time(token.get("expires_at")) if token.get("expires_at") else "never"),
            ("Token from", session.settings.token_source),
            ("API", session.settings.api_url),
        ]
    )


# -- apps --------------------------------------------------------------------------------------


def _release(app_data: dict[str, Any]) -> str | None:
    current = app_data.get("current_deployment")
    if not current:
        return None
    return f"#{current.get('id')} {current.get('status')} {current.get('image')}"


def _app_details(app_data: dict[str, Any]) -> None:
    command = app_data.get("command")
    memory = app_data.get("memory_mb")
    output.fields(
        [
            ("Name", app_data.get("name")),
            ("Project", app_data.get("project")),
            ("Status", app_data.get("status")),
            ("URL", app_data.get("url")),
            ("Release", _release(app_data)),
            ("Port", app_data.get("port")),
            ("Health check", app_data.get("health_check_path")),
            ("Replicas", app_data.get("replicas")),
            ("Memory", f"{memory} MB" if memory is not None else None),
            ("CPUs", app_data.get("cpus")),
            ("Command", shlex.join(command) if command else "(the image's default)"),
            ("Created", output.local_time(app_data.get("created_at"))),
        ]
    )


@apps_app.command("list")
@reports_errors
def apps_list(team: TeamOption = None, json_: JsonOption = False) -> None:
    """List the team's apps. With --json, prints the list of all apps (every page) as a JSON array."""
    session = Session(team=team)
    apps = list(session.client.paginate(team_path(session.team, "apps")))
    output.listing(
        apps,
        [
            ("name", lambda a: a.get("name")),
            ("project", lambda a: a.get("project")),
            ("status", lambda a: a.get("status")),
            ("replicas", lambda a: a.get("replicas")),
            ("image", lambda a: (a.get("current_deployment") or {}).get("image")),
            ("url", lambda a: a.get("url")),
        ],
        json_=json_,
        empty=f"No apps in team {session.team} yet. Create one with `panda apps create NAME --project P`.",
    )


@apps_app.command("create")
@reports_errors
def apps_create(
    name: Annotated[str, typer.Argument(help="App name: unique in the team, DNS-safe.", show_default=False)],
    project: Annotated[str, typer.Option("--project", "-p", help="Project the app belongs to.", show_default=False)],
    port: Annotated[
        int | None, typer.Option(min=1, max=65535, help="Port the container listens on (also given as PORT).")
    ] = None,
    health_check_path: Annotated[
        str | None, typer.Option("--health-check-path", help="HTTP path that answers 2xx/3xx when healthy.")
    ] = None,
    replicas: Annotated[int | None, typer.Option(min=0, help="Number of containers.")] = None,
    memory_mb: Annotated[int | None, typer.Option("--memory-mb", min=1, help="Memory limit per container, MB.")] = None,
    cpus: Annotated[float | None, typer.Option(min=0.01, help="CPU limit per container, e.g. 0.5.")] = None,
    command: Annotated[
        str | None,
        typer.Option(help='Command overriding the image\'s, split like a shell would: "gunicorn app:app".'),
    ] = None,
    team: TeamOption = None,
    json_: JsonOption = False,
) -> None:
    """Create an app. Options left out take the server's defaults."""
    body: dict[str, Any] = {"name": name, "project": project}
    optional = {
        "port": port,
        "health_check_path": health_check_path,
        "replicas": replicas,
        "memory_mb": memory_mb,
        "cpus": cpus,
    }
    body.update({key: value for key, value in optional.items() if value is not None})
    if command is not None:
        try:
            body["command"] = shlex.split(command)
        except ValueError as exc:
            raise UsageProblem(f"--command cannot be split: {exc}") from None
    session = Session(team=team)
    created = session.client.post(team_path(session.team, "apps"), body)
    if json_:
        output.print_json(created)
        return
    output.success(f"Created app {created.get('name')} in team {session.team}.")
    _app_details(created)


@apps_app.command("info")
@reports_errors
def apps_info(
    name: Annotated[str, typer.Argument(help="The app's name.", show_default=False)],
    team: TeamOption = None,
    json_: JsonOption = False,
) -> None:
    """Show an app: status, URL, current release and configuration."""
    session = Session(team=team)
    app_data = session.client.get(session.app_path(name))
    if json_:
        output.print_json(app_data)
    else:
        _app_details(app_data)


# -- deployments -------------------------------------------------------------------------------


def _print_event(event: dict[str, Any]) -> None:
    output.event(output.clock_time(event.get("at")), str(event.get("level") or "info"), str(event.get("message", "")))


def _wait_until_done(session: Session, app_name: str, deployment: dict[str, Any], timeout: int) -> dict[str, Any]:
    """Poll the deployment and print each new event to stderr until it is live or has ended
    otherwise; return its last state. Raises DeployNotLive when it did not go live, or when
    `timeout` seconds passed. Brief API outages (no answer, 5xx, 429) are waited out, not fatal:
    the deployment carries on on the server either way."""
    number = deployment["id"]
    path = session.app_path(app_name, "deployments", number)
    deadline = client.clock.monotonic() + timeout
    backoff = Backoff()
    after: Any = None
    current = deployment
    outage_reported = False
    while True:
        progressed = False
        try:
            current = session.client.get(path)
            # Status first, then events: once the status is final, every event before it is visible.
            params = {"after": after} if after is not None else None
            for event in session.client.paginate(path + "events/", params=params):
                _print_event(event)
                after = event.get("id", after)
                progressed = True
            outage_reported = False
        except (ApiUnreachable, ApiError) as exc:
            if isinstance(exc, ApiError) and not exc.transient:
                raise
            if not outage_reported:
                output.warning(f"{exc.message}; still waiting.")
                outage_reported = True
        status = current.get("status")
        if status == LIVE or status in NOT_LIVE_ENDS:
            return current
        remaining = deadline - client.clock.monotonic()
        if remaining <= 0:
            raise WaitTimedOut(
                f"timed out after {timeout}s waiting for deployment #{number} of {app_name} "
                f"to go live (last status: {status}); it is still in progress on the server and may still go live",
                hint=f"cancel it with `panda deploy --cancel --app {app_name}` (or pass --cancel-on-timeout); "
                f"follow it with `panda releases --app {app_name}`",
                last=current,
            )
        if progressed:
            backoff.reset()
        client.clock.sleep(min(backoff.next(), remaining))


def _finish(
    session: Session,
    app_name: str,
    deployment: dict[str, Any],
    *,
    detach: bool,
    timeout: int,
    json_: bool,
    cancel_on_timeout: bool = False,
) -> None:
    """Shared ending of `deploy` and `rollback`: print the deployment (its id, or its JSON with
    --json) to stdout, and unless detached wait for it, exiting 3 when it does not go live. When
    the wait times out the deployment stays in progress on the server (said plainly), unless
    `cancel_on_timeout` cancels it."""
    number = deployment["id"]
    if detach:
        output.info(f"Not waiting (--detach). Follow it with `panda releases --app {app_name}`.")
        _print_deployment(deployment, json_=json_)
        return
    try:
        final = _wait_until_done(session, app_name, deployment, timeout)
    except KeyboardInterrupt:
        output.info(
            f"Stopped waiting; deployment #{number} is still in progress on the server "
            f"(cancel it with `panda deploy --cancel --app {app_name}`)."
        )
        raise
    except WaitTimedOut as exc:
        if not cancel_on_timeout:
            _print_deployment(_last_known(session, app_name, deployment) if json_ else deployment, json_=json_)
            raise
        final = _cancel_or_final(session, app_name, number)
        if final.get("status") == "cancelled":
            _print_deployment(final if json_ else deployment, json_=json_)
            raise DeployNotLive(
                f"timed out after {timeout}s; cancelled deployment #{number} of {app_name} "
                f"(it was {exc.last.get('status')}); whatever was live keeps serving"
            ) from None
    except DeployNotLive:
        _print_deployment(_last_known(session, app_name, deployment) if json_ else deployment, json_=json_)
        raise
    _print_deployment(final, json_=json_)
    status = final.get("status")
    if status != LIVE:
        reason = final.get("reason")
        raise DeployNotLive(
            f"deployment #{number} of {app_name} {NOT_LIVE_ENDS.get(status, status)}"
            + (f": {reason}" if reason else "")
        )
    url = None
    with contextlib.suppress(CliError):  # the deploy succeeded; the URL is a courtesy
        url = session.client.get(session.app_path(app_name)).get("url")
    output.success(f"Deployment #{number} of {app_name} is live" + (f" at {url}." if url else "."))


def _cancel_or_final(session: Session, app_name: str, number: int) -> dict[str, Any]:
    """Cancel deployment `number`; when it finished meanwhile (409), its final state instead."""
    try:
        return session.client.post(session.app_path(app_name, "deployments", number, "cancel"), {})
    except ApiError as exc:
        if exc.status != 409:
            raise
        return session.client.get(session.app_path(app_name, "deployments", number))


def _last_known(session: Session, app_name: str, deployment: dict[str, Any]) -> dict[str, Any]:
    try:
        return session.client.get(session.app_path(app_name, "deployments", deployment["id"]))
    except CliError:
        return deployment


def _print_deployment(deployment: dict[str, Any], *, json_: bool) -> None:
    if json_:
        output.print_json(deployment)
    else:
        output.line(str(deployment.get("id")))


@app.command()
@reports_errors
def deploy(
    app_name: AppOption,
    image: Annotated[
        str | None,
        typer.Option("--image", "-i", help="Image reference, e.g. ghcr.io/org/api:1a2b3c.", show_default=False),
    ] = None,
    cancel: Annotated[
        bool,
        typer.Option(
            "--cancel", help="Instead of deploying, cancel the app's deployment in progress (no --image then)."
        ),
    ] = False,
    detach: DetachOption = False,
    timeout: TimeoutOption = 600,
    cancel_on_timeout: CancelOnTimeoutOption = False,
    team: TeamOption = None,
    json_: JsonOption = False,
) -> None:
    """Deploy an image to an app and wait until it is live, printing progress to stderr.

    A deployment still in progress (yours or anyone's) is superseded by this one: the newest
    deploy wins, and the older one's containers are removed without ever getting traffic.

    Prints the deployment's id to stdout (its JSON with --json). Exits 0 when live, 3 when the
    deployment failed, was superseded or cancelled, or --timeout passed first (the deployment is
    then still in progress on the server, unless --cancel-on-timeout cancelled it).

    With --cancel, cancels the deployment in progress instead (whatever was live keeps serving) and
    prints its id (its JSON with --json).
    """
    if cancel == (image is not None):
        raise UsageProblem("give either --image IMAGE (to deploy) or --cancel (to cancel the deployment in progress)")
    session = Session(team=team)
    if cancel:
        _cancel_in_progress(session, app_name, json_=json_)
        return
    deployment = session.client.post(session.app_path(app_name, "deployments"), {"image": image})
    output.info(f"Deploying {image} to {app_name} (deployment #{deployment['id']}).")
    _finish(
        session,
        app_name,
        deployment,
        detach=detach,
        timeout=timeout,
        json_=json_,
        cancel_on_timeout=cancel_on_timeout,
    )


def _cancel_in_progress(session: Session, app_name: str, *, json_: bool) -> None:
    """Cancel every deployment of the app still in progress (normally one: a newer one supersedes
    the older ones)."""
    in_progress = [
        d for d in session.client.paginate(session.app_path(app_name, "deployments")) if d.get("status") in IN_PROGRESS
    ]
    if not in_progress:
        raise CliError(
            f"no deployment of {app_name} is in progress; nothing to cancel",
            hint=f"see `panda releases --app {app_name}`",
        )
    cancelled = [_cancel_one(session, app_name, d["id"]) for d in in_progress]
    if json_:
        output.print_json(cancelled[0] if len(cancelled) == 1 else cancelled)
        return
    for deployment in cancelled:
        output.line(str(deployment.get("id")))


def _cancel_one(session: Session, app_name: str, number: int) -> dict[str, Any]:
    deployment = session.client.post(session.app_path(app_name, "deployments", number, "cancel"), {})
    output.success(
        f"Cancelled deployment #{number} of {app_name}; its new containers are removed, whatever was live keeps "
        "serving."
    )
    return deployment


@app.command()
@reports_errors
def rollback(
    app_name: AppOption,
    to: Annotated[
        int | None,
        typer.Option("--to", min=1, help="Deployment id to go back to. Default: the previous live release."),
    ] = None,
    detach: DetachOption = False,
    timeout: TimeoutOption = 600,
    cancel_on_timeout: CancelOnTimeoutOption = False,
    team: TeamOption = None,
    json_: JsonOption = False,
) -> None:
    """Roll an app back to an earlier release (same image and configuration) and wait until live.

    While a deployment is in progress, the default is the live release: the one in progress is
    superseded at once (never routed) and what serves stays. Prints the new deployment's id to
    stdout (its JSON with --json). Exits like `deploy`.
    """
    session = Session(team=team)
    deployment = session.client.post(session.app_path(app_name, "rollback"), {"to": to})
    target = deployment.get("rollback_of") or to
    output.info(
        f"Rolling {app_name} back"
        + (f" to deployment #{target}" if target else "")
        + f" (deployment #{deployment['id']}, {deployment.get('image')})."
    )
    _finish(
        session,
        app_name,
        deployment,
        detach=detach,
        timeout=timeout,
        json_=json_,
        cancel_on_timeout=cancel_on_timeout,
    )


releases_app = typer.Typer(
    help="List an app's deployments, or cancel one in progress.",
    invoke_without_command=True,
    rich_markup_mode="markdown",
)
app.add_typer(releases_app, name="releases")


@releases_app.callback()
@reports_errors
def releases(
    ctx: typer.Context,
    app_name: Annotated[str | None, typer.Option("--app", "-a", help="The app's name.", show_default=False)] = None,
    team: TeamOption = None,
    json_: JsonOption = False,
) -> None:
    """List an app's deployments, newest first (`panda releases --app APP`). With --json, prints all
    of them as a JSON array. `panda releases cancel --app APP ID` cancels one still in progress."""
    if ctx.invoked_subcommand is not None:
        return
    if not app_name:
        raise UsageProblem("missing option --app", hint="panda releases --app APP")
    session = Session(team=team)
    deployments = list(session.client.paginate(session.app_path(app_name, "deployments")))
    if json_:
        output.print_json(deployments)
        return
    if not deployments:
        output.info(f"{app_name} has no deployments yet. Deploy with `panda deploy --app {app_name} --image IMAGE`.")
        return

    def note(deployment: dict[str, Any]) -> str | None:
        notes = []
        if deployment.get("rollback_of"):
            notes.append(f"rollback of #{deployment['rollback_of']}")
        if deployment.get("reason"):
            notes.append(deployment["reason"])  # a stop before going live says by what and whom
        elif deployment.get("superseded_by"):
            notes.append(f"superseded by #{deployment['superseded_by']}")
        return ": ".join(notes) or None

    output.table(
        deployments,
        [
            ("id", lambda d: d.get("id")),
            ("status", lambda d: d.get("status")),
            ("image", lambda d: d.get("image")),
            ("created", lambda d: output.local_time(d.get("created_at"))),
            ("by", lambda d: d.get("created_by")),
            ("note", note),
        ],
    )


@releases_app.command("cancel")
@reports_errors
def releases_cancel(
    app_name: AppOption,
    number: Annotated[int, typer.Argument(min=1, metavar="ID", help="The deployment's id.", show_default=False)],
    team: TeamOption = None,
    json_: JsonOption = False,
) -> None:
    """Cancel a deployment still in progress: its new containers are removed without ever getting
    traffic, and whatever was live keeps serving. Exits 1 if it already finished."""
    session = Session(team=team)
    deployment = _cancel_one(session, app_name, number)
    _print_deployment(deployment, json_=json_)


# -- runtime -----------------------------------------------------------------------------------


@app.command()
@reports_errors
def logs(
    app_name: AppOption,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep streaming new lines until interrupted.")] = False,
    tail: Annotated[int, typer.Option("--tail", "-n", min=0, help="How many recent lines to start with.")] = 100,
    team: TeamOption = None,
    json_: JsonOption = False,
) -> None:
    """Print the recent log lines of all of an app's containers, each with its replica.

    With --json, prints the API's NDJSON: one JSON object per line.
    """
    session = Session(team=team)
    params: dict[str, Any] = {"tail": tail}
    if follow:
        params["follow"] = 1
    for raw in session.client.stream_lines(session.app_path(app_name, "logs"), params=params, follow=follow):
        if json_:
            output.line(raw)
            continue
        try:
            entry = json.loads(raw)
        except ValueError:
            output.line(raw)  # not ours to judge; show it as it came
            continue
        if not isinstance(entry, dict):
            output.line(raw)
            continue
        # The server's own lines: why a follow ended, lines dropped for a slow reader, an engine error.
        said = next((entry[key] for key in ("end", "notice", "error") if isinstance(entry.get(key), dict)), None)
        if said is not None and "line" not in entry:
            output.warning(str(said.get("message") or said))
            continue
        output.line(f"{output.replica_label(str(entry.get('replica') or '-'))} {entry.get('line', '')}")


@app.command()
@reports_errors
def scale(
    app_name: AppOption,
    replicas: Annotated[int, typer.Argument(min=0, help="Number of containers to run.", show_default=False)],
    team: TeamOption = None,
    json_: JsonOption = False,
) -> None:
    """Set how many containers an app runs. Returns once the API accepts; the change rolls out in the
    background (see `panda apps info`)."""
    session = Session(team=team)
    app_data = session.client.post(session.app_path(app_name, "scale"), {"replicas": replicas})
    if json_:
        output.print_json(app_data)
        return
    output.success(
        f"Scaling {app_name} to {replicas} replica{'s' if replicas != 1 else ''} ({app_data.get('status')})."
    )


# -- monitoring --------------------------------------------------------------------------------

# Defined in panda_cli.metrics; registered here, last, so that it lists after `scale` in --help.
app.command("metrics")(metrics.metrics)
