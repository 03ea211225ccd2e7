"""`panda db`: managed databases (PostgreSQL, MySQL/MariaDB, Redis, MongoDB) — create (and wait until
available), list (`--deleted`: those `undelete` can still bring back), info, the connection URL
(`$(panda db url NAME)`), attach to and detach from apps, rotate credentials, delete and undelete,
and backups: list, capture, restore (after an automatic safety backup), download (checked against
its SHA-256).

Creating, rotating, capturing and restoring run on the server; `--wait` follows them, printing each
change of status to stderr, and exits 3 when one ends other than done or `--timeout` passes first
(it goes on on the server). Exit codes otherwise as everywhere (see `panda_cli.errors`).
"""

import hashlib
import os
import re
import sys
import tempfile
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import unquote

import typer

from panda_cli import client, output
from panda_cli.client import Backoff, team_path
from panda_cli.errors import ApiError, ApiUnreachable, CliError, OperationNotDone, UsageProblem
from panda_cli.session import JsonOption, Session, TeamOption, reports_errors

db_app = typer.Typer(
    help="Managed databases: create, inspect, attach to apps, rotate credentials, back up, restore, undelete.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)
backups_app = typer.Typer(
    help="A database's backups: list, capture, restore, download.", no_args_is_help=True, rich_markup_mode="markdown"
)
db_app.add_typer(backups_app, name="backups")

AVAILABLE = "available"
FAILED = "failed"
SUCCEEDED = "succeeded"
PROVISIONING = "provisioning"
RESTORING = "restoring"
BACKUP_ACTIVE = frozenset({"pending", "running"})


class Engine(StrEnum):
    POSTGRES = "postgres"
    MYSQL = "mysql"
    REDIS = "redis"
    MONGODB = "mongodb"


class PlacementChoice(StrEnum):
    SHARED = "shared"
    DEDICATED = "dedicated"


NameArgument = Annotated[str, typer.Argument(metavar="NAME", help="The database's name.", show_default=False)]
NumberArgument = Annotated[
    int, typer.Argument(metavar="NUMBER", min=1, help="The backup's number (see `panda db backups list`).")
]
WaitOption = Annotated[bool, typer.Option("--wait", "-w", help="Wait until it is done; exit 3 if it is not.")]
TimeoutOption = Annotated[
    int, typer.Option("--timeout", min=1, metavar="SECONDS", help="With --wait: how long to wait before exit 3.")
]


def _db_path(session: Session, name: str, *parts: str | int) -> str:
    return team_path(session.team, "databases", name, *parts)


# -- how databases and backups read ------------------------------------------------------------


def size(value: Any) -> str | None:
    """Bytes for people: `812 B`, `4.2 MB`, `1.5 GB`; None when unknown."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    amount = float(value)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if amount < 1000 or unit == "TB":
            return f"{int(amount)} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1000
    return None  # pragma: no cover - the loop always returns


def _attachments(database: dict[str, Any]) -> list[dict[str, Any]]:
    attached = database.get("attachments")
    return [a for a in attached if isinstance(a, dict)] if isinstance(attached, list) else []


def _status(database: dict[str, Any]) -> str:
    status = str(database.get("status"))
    reason = database.get("status_reason")
    return f"{status}: {reason}" if reason else status


def _database_details(database: dict[str, Any]) -> None:
    host, port = database.get("host"), database.get("port")
    engine = database.get("engine")
    version = database.get("version")
    attached = [f"{a.get('app')} as {a.get('env_name')}" for a in _attachments(database)]
    output.fields(
        [
            ("Name", database.get("name")),
            ("Project", database.get("project")),
            ("Engine", f"{engine} {version}" if version else engine),
            ("Placement", database.get("placement")),
            ("Status", _status(database)),
            ("Host", f"{host}:{port}" if host and port else host),
            ("Database", database.get("database")),
            ("Username", database.get("username")),
            ("Size", size(database.get("size_bytes"))),
            ("Connections", database.get("connections")),
            ("Usage measured", output.local_time(database.get("usage_at"))),
            ("Attached to", ", ".join(attached) if attached else None),
            ("Credentials rotated", output.local_time(database.get("credentials_rotated_at"))),
            ("Created", output.local_time(database.get("created_at"))),
        ]
    )


def _backup_line(backup: dict[str, Any]) -> str:
    text = f"backup #{backup.get('number')} {backup.get('status')}"
    if backup.get("size_bytes") is not None:
        text += f" ({size(backup.get('size_bytes'))})"
    if backup.get("error"):
        text += f": {backup['error']}"
    return text


# -- waiting -----------------------------------------------------------------------------------


def _wait(
    session: Session,
    path: str,
    first: dict[str, Any],
    *,
    what: str,
    done: Callable[[dict[str, Any]], bool],
    timeout: int,
    hint: str,
) -> dict[str, Any]:
    """Poll `path` (starting from `first`, the API's 202 answer) until `done` says so; say on stderr
    each time the status changes. Returns the last state. Raises OperationNotDone when `timeout`
    seconds pass first. Brief API outages (no answer, 5xx, 429) are waited out: the work goes on on
    the server either way."""
    deadline = client.clock.monotonic() + timeout
    backoff = Backoff()
    current = first
    seen = None
    outage_reported = False
    while True:
        if done(current):
            return current
        status = current.get("status")
        if status != seen:
            output.info(f"  {what} is {status}")
            seen = status
            backoff.reset()
        remaining = deadline - client.clock.monotonic()
        if remaining <= 0:
            raise OperationNotDone(f"timed out after {timeout}s waiting for {what} (last status: {status})", hint=hint)
        client.clock.sleep(min(backoff.next(), remaining))
        try:
            current = session.client.get(path)
            outage_reported = False
        except (ApiUnreachable, ApiError) as exc:
            if isinstance(exc, ApiError) and not exc.transient:
                raise
            if not outage_reported:
                output.warning(f"{exc.message}; still waiting.")
                outage_reported = True


def _stopped_waiting(what: str) -> None:
    output.info(f"Stopped waiting; {what} goes on on the server.")


# -- databases ---------------------------------------------------------------------------------


@db_app.command("list")
@reports_errors
def db_list(
    deleted: Annotated[
        bool,
        typer.Option(
            "--deleted",
            help="List deleted databases instead: `panda db undelete` brings one back until its purge time.",
        ),
    ] = False,
    team: TeamOption = None,
    json_: JsonOption = False,
) -> None:
    """List the team's databases. With --json, prints all of them (every page) as a JSON array."""
    session = Session(team=team)
    if deleted:
        _deleted_list(session, json_=json_)
        return
    databases = list(session.client.paginate(team_path(session.team, "databases")))
    output.listing(
        databases,
        [
            ("name", lambda d: d.get("name")),
            ("project", lambda d: d.get("project")),
            ("engine", lambda d: d.get("engine")),
            ("placement", lambda d: d.get("placement")),
            ("status", lambda d: d.get("status")),
            ("size", lambda d: size(d.get("size_bytes"))),
            ("apps", lambda d: ",".join(str(a.get("app")) for a in _attachments(d))),
        ],
        json_=json_,
        empty=(
            f"No databases in team {session.team} yet. "
            "Create one with `panda db create NAME --project P --engine postgres`."
        ),
    )


def _deleted_list(session: Session, *, json_: bool) -> None:
    databases = list(session.client.paginate(team_path(session.team, "databases"), params={"deleted": "1"}))
    output.listing(
        databases,
        [
            ("name", lambda d: d.get("name")),
            ("project", lambda d: d.get("project")),
            ("engine", lambda d: d.get("engine")),
            ("status", lambda d: d.get("status")),
            ("deleted", lambda d: output.local_time(d.get("deleted_at"))),
            ("purged after", lambda d: output.local_time(d.get("purge_after"))),
        ],
        json_=json_,
        empty=f"No deleted databases in team {session.team} to bring back.",
    )


@db_app.command("create")
@reports_errors
def db_create(
    name: Annotated[
        str, typer.Argument(metavar="NAME", help="Database name: unique in the team, DNS-safe.", show_default=False)
    ],
    project: Annotated[
        str, typer.Option("--project", "-p", help="Project the database belongs to.", show_default=False)
    ],
    engine: Annotated[Engine, typer.Option("--engine", "-e", case_sensitive=False, show_default=False)],
    placement: Annotated[
        PlacementChoice,
        typer.Option(
            "--placement",
            case_sensitive=False,
            help="shared: a database and user on a server the operators run; dedicated: a container of its own.",
        ),
    ] = PlacementChoice.SHARED,
    version: Annotated[
        str | None,
        typer.Option("--version", help="Engine version (the dedicated placement's image tag). Default: the server's."),
    ] = None,
    wait: WaitOption = False,
    timeout: TimeoutOption = 600,
    team: TeamOption = None,
    json_: JsonOption = False,
) -> None:
    """Create a database. It is provisioned on the server: with --wait, follows it until it is
    available (exit 0) or failed (exit 3, with the reason)."""
    body: dict[str, Any] = {"name": name, "project": project, "engine": engine.value, "placement": placement.value}
    if version:
        body["version"] = version
    session = Session(team=team)
    created = session.client.post(team_path(session.team, "databases"), body)
    placed = created.get("placement")
    output.info(f"Creating {created.get('engine')} database {name} in team {session.team} ({placed}).")
    if not wait:
        if json_:
            output.print_json(created)
        else:
            _database_details(created)
            output.info(f"It is being provisioned; `panda db info {name}` shows when it is available.")
        return
    try:
        final = _wait(
            session,
            _db_path(session, name),
            created,
            what=f"database {name}",
            done=lambda d: d.get("status") != PROVISIONING,
            timeout=timeout,
            hint=f"see `panda db info {name}`",
        )
    except KeyboardInterrupt:
        _stopped_waiting(f"provisioning {name}")
        raise
    if json_:
        output.print_json(final)
    else:
        _database_details(final)
    if final.get("status") != AVAILABLE:
        raise OperationNotDone(f"database {name} is {_status(final)}")
    output.success(f"Database {name} is available.")


@db_app.command("info")
@reports_errors
def db_info(name: NameArgument, team: TeamOption = None, json_: JsonOption = False) -> None:
    """Show a database: engine, placement, status, where it runs, usage and the apps it is attached to
    (never its password: see `panda db url`)."""
    session = Session(team=team)
    database = session.client.get(_db_path(session, name))
    if json_:
        output.print_json(database)
    else:
        _database_details(database)


@db_app.command("url")
@reports_errors
def db_url(name: NameArgument, team: TeamOption = None, json_: JsonOption = False) -> None:
    """Print the connection URL (password included) to stdout and nothing else:
    `psql "$(panda db url main)"`. Needs the reveal permission; every reveal is audited. With --json,
    prints the URL and its parts."""
    session = Session(team=team)
    answer = session.client.post(_db_path(session, name, "reveal"), {})
    if json_:
        output.print_json(answer)
        return
    url = answer.get("url") if isinstance(answer, dict) else None
    if not isinstance(url, str) or not url:
        raise ApiError("the API answered a reveal without a URL", status=200, code="bad_response")
    output.exact(url)


@db_app.command("attach")
@reports_errors
def db_attach(
    name: NameArgument,
    app: Annotated[str, typer.Option("--app", "-a", help="The app that receives the URL.", show_default=False)],
    env_name: Annotated[
        str | None,
        typer.Option(
            "--as",
            metavar="VARIABLE",
            help="The variable the app receives it in. Default: DATABASE_URL (REDIS_URL, MONGODB_URL).",
            show_default=False,
        ),
    ] = None,
    team: TeamOption = None,
    json_: JsonOption = False,
) -> None:
    """Give an app the database's URL as an environment variable (a secret the platform manages);
    the app receives it at its next deploy."""
    body: dict[str, Any] = {"app": app}
    if env_name:
        body["env_name"] = env_name
    session = Session(team=team)
    attachment = session.client.post(_db_path(session, name, "attachments"), body)
    if json_:
        output.print_json(attachment)
    output.success(
        f"Attached {name} to app {app} as {attachment.get('env_name')}; the app receives it at its next deploy."
    )


@db_app.command("detach")
@reports_errors
def db_detach(
    name: NameArgument,
    app: Annotated[str, typer.Option("--app", "-a", help="The app to take the URL from.", show_default=False)],
    team: TeamOption = None,
) -> None:
    """Take the database's URL away from an app (from its next deploy on)."""
    session = Session(team=team)
    session.client.delete(_db_path(session, name, "attachments", app))
    output.success(f"Detached {name} from app {app}; its next deploy no longer receives the URL.")


@db_app.command("rotate")
@reports_errors
def db_rotate(
    name: NameArgument,
    wait: WaitOption = False,
    timeout: TimeoutOption = 300,
    team: TeamOption = None,
    json_: JsonOption = False,
) -> None:
    """Give the database user a new password; the old one stops working once it is applied, and the
    attached apps get the new URL at their next deploy. With --wait, follows it until applied."""
    session = Session(team=team)
    accepted = session.client.post(_db_path(session, name, "rotate"), {})
    before = accepted.get("credentials_rotated_at")
    output.info(f"Rotating the credentials of {name}.")
    if not wait:
        if json_:
            output.print_json(accepted)
        return
    try:
        final = _wait(
            session,
            _db_path(session, name),
            accepted,
            what=f"database {name}",
            done=lambda d: d.get("credentials_rotated_at") != before or d.get("status") != AVAILABLE,
            timeout=timeout,
            hint=f"the rotation goes on on the server; see `panda db info {name}`",
        )
    except KeyboardInterrupt:
        _stopped_waiting(f"the rotation of {name}")
        raise
    if json_:
        output.print_json(final)
    if final.get("credentials_rotated_at") == before:
        raise OperationNotDone(f"the credentials of {name} were not rotated: the database is {_status(final)}")
    output.success(f"Rotated the credentials of {name} at {output.local_time(final.get('credentials_rotated_at'))}.")


@db_app.command("delete")
@reports_errors
def db_delete(
    name: NameArgument,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Really delete the database, its data and backups.")] = False,
    team: TeamOption = None,
    json_: JsonOption = False,
) -> None:
    """Delete a database and detach it from its apps; its credentials stop working at once. Its data
    and backups are kept for the plan's grace period (`panda db undelete NAME` brings it back, see
    `panda db list --deleted`), then purged for good. Needs --yes: panda never prompts (CI has no
    stdin)."""
    if not yes:
        raise UsageProblem(
            f"refusing to delete database {name} without --yes",
            hint=f"`panda db delete {name} --yes` deletes it, its data and its backups once the plan's grace "
            "period ends; its apps lose access at once",
        )
    session = Session(team=team)
    # The API asks for the name again, so a request built for another database cannot delete this one.
    database = session.client.delete(_db_path(session, name), {"confirm": name}) or {}
    if json_ and database:
        output.print_json(database)
    purge_after = database.get("purge_after")
    if database.get("status") == "deleted" and purge_after:
        output.success(
            f"Deleted database {name}. `panda db undelete {name}` brings it back until "
            f"{output.local_time(purge_after)}; then it and its backups are purged."
        )
    else:
        output.success(f"Deleting database {name} for good; it is gone once the server has dropped it.")


@db_app.command("undelete")
@reports_errors
def db_undelete(
    name: NameArgument,
    wait: WaitOption = False,
    timeout: TimeoutOption = 600,
    team: TeamOption = None,
    json_: JsonOption = False,
) -> None:
    """Bring back a deleted database before its purge time (see `panda db list --deleted`): the
    same data, backups and credentials. Apps are not attached again: `panda db attach`. With --wait,
    follows it until it is available (exit 3 if it is not)."""
    session = Session(team=team)
    database = session.client.post(_db_path(session, name, "undelete"), {})
    output.info(f"Undeleting database {name}.")
    if wait:
        try:
            database = _wait(
                session,
                _db_path(session, name),
                database,
                what=f"database {name}",
                done=lambda d: d.get("status") != PROVISIONING,
                timeout=timeout,
                hint=f"it goes on on the server; see `panda db info {name}`",
            )
        except KeyboardInterrupt:
            _stopped_waiting(f"the undelete of {name}")
            raise
    if json_:
        output.print_json(database)
    if wait and database.get("status") != AVAILABLE:
        raise OperationNotDone(f"database {name} is {_status(database)}")
    if wait:
        output.success(f"Database {name} is back; attach it to its apps again with `panda db attach`.")


# -- backups -----------------------------------------------------------------------------------


@backups_app.command("list")
@reports_errors
def backups_list(name: NameArgument, team: TeamOption = None, json_: JsonOption = False) -> None:
    """List a database's backups, newest first. With --json, a JSON array."""
    session = Session(team=team)
    backups = list(session.client.paginate(_db_path(session, name, "backups")))
    output.listing(
        backups,
        [
            ("number", lambda b: b.get("number")),
            ("trigger", lambda b: b.get("trigger")),
            ("status", lambda b: b.get("status")),
            ("size", lambda b: size(b.get("size_bytes"))),
            ("created", lambda b: output.local_time(b.get("created_at"))),
            ("finished", lambda b: output.local_time(b.get("finished_at"))),
            ("restored", lambda b: output.local_time(b.get("restored_at"))),
            ("error", lambda b: b.get("error")),
        ],
        json_=json_,
        empty=f"{name} has no backups yet. Take one with `panda db backups capture {name}`.",
    )


@backups_app.command("capture")
@reports_errors
def backups_capture(
    name: NameArgument,
    wait: WaitOption = False,
    timeout: TimeoutOption = 3600,
    team: TeamOption = None,
    json_: JsonOption = False,
) -> None:
    """Take a backup now and print its number to stdout. With --wait, follows it until it succeeded
    (exit 0) or failed (exit 3)."""
    session = Session(team=team)
    backup = session.client.post(_db_path(session, name, "backups"), {})
    number = backup.get("number")
    output.info(f"Capturing backup #{number} of {name}.")
    if not json_:
        output.line(str(number))
    if not wait:
        if json_:
            output.print_json(backup)
        return
    try:
        final = _wait(
            session,
            _db_path(session, name, "backups", number),
            backup,
            what=f"backup #{number}",
            done=lambda b: b.get("status") not in BACKUP_ACTIVE,
            timeout=timeout,
            hint=f"the backup goes on on the server; see `panda db backups list {name}`",
        )
    except KeyboardInterrupt:
        _stopped_waiting(f"backup #{number}")
        raise
    if json_:
        output.print_json(final)
    if final.get("status") != SUCCEEDED:
        raise OperationNotDone(f"{_backup_line(final)} (database {name})")
    output.success(f"Captured {_backup_line(final)} of {name}.")


@backups_app.command("restore")
@reports_errors
def backups_restore(
    name: NameArgument,
    number: NumberArgument,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Really replace the database's data with the backup's.")
    ] = False,
    wait: WaitOption = False,
    timeout: TimeoutOption = 3600,
    team: TeamOption = None,
    json_: JsonOption = False,
) -> None:
    """Replace the database's data with a backup's. A safety backup of the current data is taken
    first (trigger `safety` in `panda db backups list`; restoring it brings that data back), and a
    restore that fails leaves the data as it was. Needs --yes. With --wait, follows it until the
    database is available again."""
    if not yes:
        raise UsageProblem(
            f"refusing to restore backup #{number} over database {name} without --yes",
            hint="its current data is replaced (a safety backup of it is taken first)",
        )
    session = Session(team=team)
    backup = session.client.post(_db_path(session, name, "backups", number, "restore"), {"confirm": name})
    before = backup.get("restored_at")
    output.info(f"Restoring backup #{number} into {name}, after a safety backup of its current data.")
    if not wait:
        if json_:
            output.print_json(backup)
        return
    try:
        database = _wait(
            session,
            _db_path(session, name),
            {"status": RESTORING},
            what=f"database {name}",
            done=lambda d: d.get("status") != RESTORING,
            timeout=timeout,
            hint=f"the restore goes on on the server; see `panda db info {name}`",
        )
    except KeyboardInterrupt:
        _stopped_waiting(f"the restore of {name}")
        raise
    final = session.client.get(_db_path(session, name, "backups", number))
    if json_:
        output.print_json(final)
    if database.get("status") != AVAILABLE or final.get("restored_at") in (None, before):
        # A failed restore leaves the database available with the reason in its status_reason.
        problem = database.get("status_reason") or f"the database is {database.get('status')}"
        raise OperationNotDone(f"restoring backup #{number} into {name} failed: {problem}")
    output.success(f"Restored backup #{number} into {name}.")


def _file_name(disposition: str | None) -> str | None:
    """The file name a Content-Disposition header suggests, reduced to a bare name (never a path)."""
    if not disposition:
        return None
    match = re.search(r"filename\*\s*=\s*(?:UTF-8|utf-8)''([^;]+)", disposition) or re.search(
        r'filename\s*=\s*"([^"]*)"', disposition
    )
    if match is None:
        match = re.search(r"filename\s*=\s*([^;\s]+)", disposition)
    if match is None:
        return None
    candidate = Path(unquote(match.group(1)).replace("\\", "/")).name
    return candidate if candidate not in ("", ".", "..") else None


@backups_app.command("download")
@reports_errors
def backups_download(
    name: NameArgument,
    number: NumberArgument,
    output_file: Annotated[
        str | None,
        typer.Option(
            "--output",
            "-o",
            metavar="FILE",
            help="Where to write it (`-` for stdout). Default: the name the server gives, in this directory.",
            show_default=False,
        ),
    ] = None,
    team: TeamOption = None,
    json_: JsonOption = False,
) -> None:
    """Download a backup file and check it against the SHA-256 the server recorded; a file that does
    not match is removed and the command exits 1. With --json, prints the file, size and checksum."""
    session = Session(team=team)
    to_stdout = output_file == "-"
    if to_stdout and json_:
        raise UsageProblem("--json prints to stdout, so the file cannot go there too; give -o FILE")
    with session.client.download(_db_path(session, name, "backups", number, "download")) as download:
        expected = (download.headers.get("X-Checksum-SHA256") or "").lower()
        if not expected:
            raise ApiError(
                "the API sent the backup without its checksum (X-Checksum-SHA256)", status=200, code="bad_response"
            )
        digest = hashlib.sha256()
        written = 0
        if to_stdout:
            sink = sys.stdout.buffer
            for chunk in download.chunks():
                digest.update(chunk)
                written += len(chunk)
                sink.write(chunk)
            sink.flush()
            target = None
        else:
            target = Path(
                output_file or _file_name(download.headers.get("Content-Disposition")) or f"{name}-{number}.backup"
            )
            # Written next to the target and renamed only once the checksum matched: a broken
            # download never takes the place of a good file.
            handle, partial = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent or ".")
            try:
                with os.fdopen(handle, "wb") as file:
                    for chunk in download.chunks():
                        digest.update(chunk)
                        written += len(chunk)
                        file.write(chunk)
                if digest.hexdigest() != expected:
                    raise CliError(
                        f"backup #{number} of {name} did not arrive intact: its SHA-256 is {digest.hexdigest()}, "
                        f"the server recorded {expected}",
                        hint="nothing was kept; download it again",
                    )
                Path(partial).replace(target)
            finally:
                Path(partial).unlink(missing_ok=True)
    if to_stdout and digest.hexdigest() != expected:
        raise CliError(
            f"backup #{number} of {name} did not arrive intact: its SHA-256 is {digest.hexdigest()}, "
            f"the server recorded {expected}",
            hint="do not use what was written; download it again",
        )
    if json_:
        output.print_json({"file": str(target), "size_bytes": written, "sha256": expected})
        return
    where = "stdout" if target is None else str(target)
    output.success(f"Downloaded backup #{number} of {name} to {where} ({size(written)}, SHA-256 verified).")
