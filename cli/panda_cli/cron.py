"""`panda cron`: cron jobs that run an app's image (or their own image) with a command on a schedule,
and their runs: list, create, run now (and wait), history, logs, suspend, resume, delete.

Exit codes as everywhere (see `panda_cli.errors`); `cron run --wait` exits 3 when the run ends other
than succeeded or the wait times out, so a CI step can run a job and fail with it.
"""

import shlex
from enum import StrEnum
from itertools import islice
from typing import Annotated, Any

import typer

from panda_cli import client, output
from panda_cli.client import Backoff, team_path
from panda_cli.errors import ApiError, ApiUnreachable, CliError, RunNotSucceeded, UsageProblem
from panda_cli.session import JsonOption, Session, TeamOption, reports_errors

cron_app = typer.Typer(
    help="Cron jobs: an app's image (or any image) running a command on a schedule, with run history and logs.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)

SUCCEEDED = "succeeded"
# The API's statuses of a run that has not ended. Every other status is an end: one this CLI does not
# know yet is reported as it is, rather than waited on until --timeout.
ACTIVE = frozenset({"pending", "running"})
ENDS = {
    "failed": "failed",
    "timed_out": "timed out",
    "missed": "was missed",
    "skipped": "was skipped",
    "cancelled": "was cancelled",
}


class Concurrency(StrEnum):
    FORBID = "forbid"
    ALLOW = "allow"
    REPLACE = "replace"


JobNameArgument = Annotated[str, typer.Argument(metavar="NAME", help="The cron job's name.", show_default=False)]


def _job_path(session: Session, name: str, *parts: str | int) -> str:
    return team_path(session.team, "cron-jobs", name, *parts)


# -- how jobs and runs read --------------------------------------------------------------------


def duration(seconds: Any) -> str | None:
    """A run's duration for people: `4.2s`, `3m 07s`, `1h 02m`; None when unknown."""
    if not isinstance(seconds, int | float) or isinstance(seconds, bool):
        return None
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = round(seconds)
    if whole < 3600:
        return f"{whole // 60}m {whole % 60:02d}s"
    return f"{whole // 3600}h {whole % 3600 // 60:02d}m"


def _seconds(value: Any) -> str | None:
    return f"{value}s" if value is not None else None


def _last_run(job: dict[str, Any]) -> str | None:
    last = job.get("last_run")
    if not isinstance(last, dict):
        return None
    return f"#{last.get('id')} {last.get('status')} ({output.local_time(last.get('started_at'))})"


def _job_details(job: dict[str, Any]) -> None:
    command = job.get("command")
    memory = job.get("memory_mb")
    retries = job.get("retries")
    backoff = job.get("retry_backoff_seconds")
    output.fields(
        [
            ("Name", job.get("name")),
            ("Project", job.get("project")),
            ("Runs", f"app {job['app']} (its live image)" if job.get("app") else job.get("image")),
            ("Command", shlex.join(command) if isinstance(command, list) else command),
            ("Schedule", job.get("schedule")),
            ("Timezone", job.get("timezone")),
            ("Concurrency", job.get("concurrency_policy")),
            ("Timeout", _seconds(job.get("timeout_seconds"))),
            ("Retries", f"{retries} ({backoff}s apart)" if retries and backoff is not None else retries),
            ("Starting deadline", _seconds(job.get("starting_deadline_seconds"))),
            ("Memory", f"{memory} MB" if memory is not None else None),
            ("CPUs", job.get("cpus")),
            ("Suspended", job.get("suspended")),
            ("Next run", output.local_time(job.get("next_run_at"))),
            ("Last run", _last_run(job)),
            ("Created", output.local_time(job.get("created_at"))),
        ]
    )


def _run_summary(run: dict[str, Any]) -> str:
    """`failed (exit code 1) after 4.2s: reason`, the end of a sentence about a run."""
    status = str(run.get("status"))
    text = ENDS.get(status, status)
    if run.get("exit_code") is not None:
        text += f" (exit code {run['exit_code']})"
    took = duration(run.get("duration_seconds"))
    if took:
        text += f" after {took}"
    if run.get("reason"):
        text += f": {run['reason']}"
    return text


# -- commands ----------------------------------------------------------------------------------


@cron_app.command("list")
@reports_errors
def cron_list(team: TeamOption = None, json_: JsonOption = False) -> None:
    """List the team's cron jobs. With --json, prints all of them (every page) as a JSON array."""
    session = Session(team=team)
    jobs = list(session.client.paginate(team_path(session.team, "cron-jobs")))
    output.listing(
        jobs,
        [
            ("name", lambda job: job.get("name")),
            ("schedule", lambda job: job.get("schedule")),
            ("timezone", lambda job: job.get("timezone")),
            ("suspended", lambda job: job.get("suspended")),
            ("next run", lambda job: output.local_time(job.get("next_run_at"))),
            ("last status", lambda job: (job.get("last_run") or {}).get("status")),
        ],
        json_=json_,
        empty=(
            f"No cron jobs in team {session.team} yet. Create one with "
            '`panda cron create NAME --project P --app A --schedule "0 3 * * *" -- COMMAND`.'
        ),
    )


@cron_app.command("create")
@reports_errors
def cron_create(
    name: Annotated[
        str, typer.Argument(metavar="NAME", help="Job name: unique in the team, DNS-safe.", show_default=False)
    ],
    project: Annotated[str, typer.Option("--project", "-p", help="Project the job belongs to.", show_default=False)],
    schedule: Annotated[
        str,
        typer.Option(
            "--schedule",
            "-s",
            help='Five cron fields ("*/5 * * * *") or a shortcut such as @hourly or @daily.',
            show_default=False,
        ),
    ],
    args: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="-- COMMAND",
            help="The command to run, after `--`: `-- pg_dump --file /backup/db.sql`.",
            show_default=False,
        ),
    ] = None,
    app: Annotated[
        str | None,
        typer.Option("--app", "-a", help="Run this app's live image, with its environment.", show_default=False),
    ] = None,
    image: Annotated[
        str | None, typer.Option("--image", "-i", help="Run this image instead of an app's.", show_default=False)
    ] = None,
    timezone: Annotated[
        str | None,
        typer.Option("--timezone", help="IANA timezone the schedule is read in, e.g. Europe/Berlin. Default: UTC."),
    ] = None,
    concurrency: Annotated[
        Concurrency | None,
        typer.Option(
            "--concurrency",
            case_sensitive=False,
            help="When a run is due while one is running: forbid (skip it), allow, or replace. Default: forbid.",
            show_default=False,
        ),
    ] = None,
    timeout: Annotated[
        int | None,
        typer.Option("--timeout", min=1, metavar="SECONDS", help="Kill a run after this long. Default: 600."),
    ] = None,
    retries: Annotated[
        int | None, typer.Option("--retries", min=0, help="Retry a failed run this many times. Default: 0.")
    ] = None,
    retry_backoff: Annotated[
        int | None,
        typer.Option("--retry-backoff", min=0, metavar="SECONDS", help="Wait between retries. Default: 30."),
    ] = None,
    starting_deadline: Annotated[
        int | None,
        typer.Option(
            "--starting-deadline",
            min=1,
            metavar="SECONDS",
            help="A run not started this long after its time is recorded as missed. Default: 60.",
        ),
    ] = None,
    memory_mb: Annotated[
        int | None,
        typer.Option(
            "--memory-mb",
            min=1,
            help="Memory limit of a run's container, MB (at most the plan's per-container limit). Default: 256.",
        ),
    ] = None,
    cpus: Annotated[
        float | None,
        typer.Option(
            "--cpus",
            min=0.05,
            help="CPUs of a run's container, e.g. 0.25 (at most the plan's per-container limit). Default: 0.5.",
        ),
    ] = None,
    command_string: Annotated[
        str | None,
        typer.Option(
            "--command",
            help='Instead of `-- COMMAND`: the command as one string, split like a shell would: "pg_dump -f x".',
            show_default=False,
        ),
    ] = None,
    team: TeamOption = None,
    json_: JsonOption = False,
) -> None:
    """Create a cron job that runs a command on a schedule, in an app's live image (`--app`) or in
    any image (`--image`): give exactly one.

    The command comes after `--`, so its own options are not taken for panda's:
    `panda cron create backup --project shop --app web --schedule "0 3 * * *" -- ./backup.sh --full`.
    Options left out take the server's defaults.
    """
    # Checked before anything talks to the API, so a usage error never costs a request.
    if bool(app) == bool(image):
        raise UsageProblem(
            "give --app or --image (exactly one)",
            hint="--app A runs the app's live image with its environment; --image I runs that image",
        )
    command = _command(args or [], command_string)
    body: dict[str, Any] = {"name": name, "project": project, "command": command, "schedule": schedule}
    body.update({"app": app} if app else {"image": image})
    optional = {
        "timezone": timezone,
        "concurrency_policy": concurrency.value if concurrency else None,
        "timeout_seconds": timeout,
        "retries": retries,
        "retry_backoff_seconds": retry_backoff,
        "starting_deadline_seconds": starting_deadline,
        "memory_mb": memory_mb,
        "cpus": cpus,
    }
    body.update({key: value for key, value in optional.items() if value is not None})
    session = Session(team=team)
    created = session.client.post(team_path(session.team, "cron-jobs"), body)
    if json_:
        output.print_json(created)
        return
    output.success(f"Created cron job {created.get('name')} in team {session.team}.")
    _job_details(created)


def _command(args: list[str], command_string: str | None) -> list[str]:
    """The job's command as a list, from the arguments after `--` or from --command (one of them).
    Raises UsageProblem when both, neither, or an empty command is given."""
    if args and command_string is not None:
        raise UsageProblem("give the command after `--` or with --command, not both")
    if command_string is not None:
        try:
            command = shlex.split(command_string)
        except ValueError as exc:
            raise UsageProblem(f"--command cannot be split: {exc}") from None
    else:
        command = args
    if not command:
        raise UsageProblem(
            "a command is required",
            hint='put it after `--`: `panda cron create NAME ... -- COMMAND ARGS`, or use --command "COMMAND ARGS"',
        )
    return command


@cron_app.command("info")
@reports_errors
def cron_info(name: JobNameArgument, team: TeamOption = None, json_: JsonOption = False) -> None:
    """Show a cron job: what it runs, when, its policies, next run and last run."""
    session = Session(team=team)
    job = session.client.get(_job_path(session, name))
    if json_:
        output.print_json(job)
    else:
        _job_details(job)


@cron_app.command("run")
@reports_errors
def cron_run(
    name: JobNameArgument,
    wait: Annotated[
        bool, typer.Option("--wait", "-w", help="Wait until the run ends, print its log, exit 3 unless it succeeded.")
    ] = False,
    timeout: Annotated[
        int,
        typer.Option(
            "--timeout",
            min=1,
            metavar="SECONDS",
            help="With --wait: how long to wait for the run to end before exit 3.",
        ),
    ] = 3600,
    team: TeamOption = None,
    json_: JsonOption = False,
) -> None:
    """Start a run now, whatever the schedule, and print its id to stdout.

    With --wait, follows the run until it ends, prints its log to stdout, and exits 0 when it
    succeeded, 3 when it failed, timed out, was skipped or cancelled, or when --timeout passed first
    (the run goes on on the server). With --json, prints the run's JSON instead (with --wait: the
    final run, with its `log`). Retries of a failed run are runs of their own and are not waited for.
    """
    session = Session(team=team)
    started = session.client.post(_job_path(session, name, "run"), {})
    number = started.get("id")
    output.info(f"Started run #{number} of {name}.")
    if not json_:
        output.line(str(number))
    if not wait:
        if json_:
            output.print_json(started)
        return
    try:
        final = _wait_until_ended(session, name, started, timeout)
    except KeyboardInterrupt:
        output.info(f"Stopped waiting; run #{number} goes on on the server.")
        raise
    except RunNotSucceeded:
        if json_:
            output.print_json(_last_known(session, name, started))
        raise
    log = _fetch_log(session, name, number)
    if json_:
        output.print_json({**final, "log": log})
    elif log:
        output.line(log.rstrip("\n"))
    if final.get("status") != SUCCEEDED:
        raise RunNotSucceeded(f"run #{number} of {name} {_run_summary(final)}")
    output.success(f"Run #{number} of {name} {_run_summary(final)}.")


def _wait_until_ended(session: Session, name: str, run: dict[str, Any], timeout: int) -> dict[str, Any]:
    """Poll the run, saying on stderr when its status changes, until it is no longer pending or
    running; return its last state. Raises RunNotSucceeded when `timeout` seconds pass first. Brief
    API outages (no answer, 5xx, 429) are waited out: the run goes on on the server either way."""
    number = run["id"]
    path = _job_path(session, name, "runs", number)
    deadline = client.clock.monotonic() + timeout
    backoff = Backoff()
    current = run
    seen_status = None
    outage_reported = False
    while True:
        try:
            current = session.client.get(path)
            outage_reported = False
        except (ApiUnreachable, ApiError) as exc:
            if isinstance(exc, ApiError) and not exc.transient:
                raise
            if not outage_reported:
                output.warning(f"{exc.message}; still waiting.")
                outage_reported = True
        status = current.get("status")
        if status not in ACTIVE:
            return current
        if status != seen_status:
            output.info(f"  run #{number} is {status}")
            seen_status = status
            backoff.reset()
        remaining = deadline - client.clock.monotonic()
        if remaining <= 0:
            raise RunNotSucceeded(
                f"timed out after {timeout}s waiting for run #{number} of {name} to end (last status: {status})",
                hint=f"it goes on on the server; see `panda cron logs {name} {number}`",
            )
        client.clock.sleep(min(backoff.next(), remaining))


def _last_known(session: Session, name: str, run: dict[str, Any]) -> dict[str, Any]:
    try:
        return session.client.get(_job_path(session, name, "runs", run["id"]))
    except CliError:
        return run


def _fetch_log(session: Session, name: str, number: Any) -> str:
    """The run's log, or "" with a warning when it cannot be had (a token without the logs scope):
    the run's outcome, not its log, decides how `run --wait` exits."""
    try:
        answer = session.client.get(_job_path(session, name, "runs", number, "logs"))
    except CliError as exc:
        output.warning(f"cannot show the log of run #{number}: {exc.message}")
        return ""
    log = answer.get("log") if isinstance(answer, dict) else None
    return log if isinstance(log, str) else ""


@cron_app.command("runs")
@reports_errors
def cron_runs(
    name: JobNameArgument,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="How many runs to show, newest first.")] = 20,
    team: TeamOption = None,
    json_: JsonOption = False,
) -> None:
    """List a cron job's runs, newest first (the last 20 unless -n). With --json, a JSON array."""
    session = Session(team=team)
    # islice stops asking for pages once it has enough: a long history costs one or two requests.
    runs = list(islice(session.client.paginate(_job_path(session, name, "runs")), limit))
    output.listing(
        runs,
        [
            ("id", lambda run: run.get("id")),
            ("trigger", lambda run: run.get("trigger")),
            ("attempt", lambda run: run.get("attempt")),
            ("status", lambda run: run.get("status")),
            ("exit", lambda run: run.get("exit_code")),
            ("scheduled for", lambda run: output.local_time(run.get("scheduled_for"))),
            ("started", lambda run: output.local_time(run.get("started_at"), seconds=True)),
            ("duration", lambda run: duration(run.get("duration_seconds"))),
            ("reason", lambda run: run.get("reason")),
        ],
        json_=json_,
        empty=f"{name} has not run yet. Start a run with `panda cron run {name}`.",
    )


@cron_app.command("logs")
@reports_errors
def cron_logs(
    name: JobNameArgument,
    run_id: Annotated[
        int | None,
        typer.Argument(metavar="[RUN_ID]", min=1, help="The run. Default: the latest run.", show_default=False),
    ] = None,
    team: TeamOption = None,
    json_: JsonOption = False,
) -> None:
    """Print the log of a run (the latest unless RUN_ID) to stdout; which run and how it ended, to stderr.

    The server keeps the tail of each run's output. With --json, prints the API's JSON.
    """
    session = Session(team=team)
    if run_id is None:
        latest = next(iter(session.client.paginate(_job_path(session, name, "runs"))), None)
        if latest is None:
            raise CliError(
                f"{name} has not run yet, so it has no logs", hint=f"start a run with `panda cron run {name}`"
            )
        run_id = latest["id"]
    answer = session.client.get(_job_path(session, name, "runs", run_id, "logs"))
    if json_:
        output.print_json(answer)
        return
    status = answer.get("status")
    output.info(f"Run #{run_id} of {name}: {ENDS.get(status, status)}.")
    log = answer.get("log") or ""
    if log:
        output.line(log.rstrip("\n"))
    else:
        output.info("(no output yet)" if status in ACTIVE else "(no output)")


@cron_app.command("suspend")
@reports_errors
def cron_suspend(name: JobNameArgument, team: TeamOption = None, json_: JsonOption = False) -> None:
    """Stop running a job on its schedule until `panda cron resume`."""
    session = Session(team=team)
    job = session.client.post(_job_path(session, name, "suspend"), {})
    if json_:
        output.print_json(job)
    output.success(f"Suspended cron job {name}; it will not run on its schedule until `panda cron resume {name}`.")


@cron_app.command("resume")
@reports_errors
def cron_resume(name: JobNameArgument, team: TeamOption = None, json_: JsonOption = False) -> None:
    """Run a suspended job on its schedule again."""
    session = Session(team=team)
    job = session.client.post(_job_path(session, name, "resume"), {})
    if json_:
        output.print_json(job)
    next_run = job.get("next_run_at") if isinstance(job, dict) else None
    output.success(f"Resumed cron job {name}" + (f"; next run at {output.local_time(next_run)}." if next_run else "."))


@cron_app.command("delete")
@reports_errors
def cron_delete(
    name: JobNameArgument,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Really delete the job and its run history.")] = False,
    team: TeamOption = None,
) -> None:
    """Delete a cron job and its run history. Needs --yes: panda never prompts (CI has no stdin)."""
    if not yes:
        raise UsageProblem(
            f"refusing to delete cron job {name} without --yes",
            hint=f"`panda cron delete {name} --yes` deletes it and its run history; "
            f"`panda cron suspend {name}` only stops it",
        )
    session = Session(team=team)
    # The API asks for the name again, so a request built for another job cannot delete this one.
    session.client.delete(_job_path(session, name), {"confirm": name})
    output.success(f"Deleted cron job {name}.")
