"""panda cron list|create|info|run|runs|logs|suspend|resume|delete: what each command sends, what it
prints, usage errors (exit 2, and no request), --json, and the exit codes of `run --wait`.

The API is faked with httpx.MockTransport: allowed here because these tests check the CLI's own
request and response handling; end-to-end tests against the real server are separate. A fake clock
makes waiting instant.
"""

import json

import httpx
import pytest
from conftest import api_error, page, reply

JOBS = "/api/v1/teams/acme/cron-jobs/"
BACKUP = JOBS + "backup/"
RUNS = BACKUP + "runs/"
R12 = RUNS + "12/"


def job_json(name="backup", **overrides):
    data = {
        "name": name,
        "project": "shop",
        "app": "web",
        "image": "",
        "command": ["./backup.sh", "--full"],
        "schedule": "0 3 * * *",
        "timezone": "Europe/Berlin",
        "concurrency_policy": "forbid",
        "timeout_seconds": 600,
        "retries": 2,
        "retry_backoff_seconds": 30,
        "starting_deadline_seconds": 60,
        "memory_mb": 256,
        "cpus": 0.5,
        "suspended": False,
        "next_run_at": "2025-02-01T02:00:00Z",
        "last_run": {"id": 11, "status": "succeeded", "started_at": "2025-01-31T02:00:01Z"},
        "created_at": "2025-01-01T12:00:00Z",
    }
    data.update(overrides)
    return data


def run_json(status="pending", **overrides):
    data = {
        "id": 12,
        "trigger": "manual",
        "scheduled_for": None,
        "attempt": 1,
        "status": status,
        "exit_code": None,
        "reason": "",
        "started_at": None,
        "finished_at": None,
        "duration_seconds": None,
    }
    data.update(overrides)
    return data


def ended(status, exit_code=None, **overrides):
    times = {"started_at": "2025-01-31T12:00:00Z", "finished_at": "2025-01-31T12:00:04Z", "duration_seconds": 4.2}
    return run_json(status, exit_code=exit_code, **{**times, **overrides})


@pytest.fixture(autouse=True)
def _ci(ci_env):
    pass


# -- list --------------------------------------------------------------------------------------


def test_list_shows_every_page_as_a_table(run, api):
    api.on(
        "GET",
        JOBS,
        page([job_json()], next_url="http://panda.test/api/v1/teams/acme/cron-jobs/?cursor=2"),
        page([job_json("report", app=None, image="busybox", suspended=True, next_run_at=None, last_run=None)]),
    )

    result = run("cron", "list")

    assert result.exit_code == 0, result.stderr
    header, backup, report = result.stdout.splitlines()
    assert header.split() == ["NAME", "SCHEDULE", "TIMEZONE", "SUSPENDED", "NEXT", "RUN", "LAST", "STATUS"]
    assert backup.startswith("backup  0 3 * * *  Europe/Berlin  no ")
    assert backup.endswith("succeeded")
    assert report.split()[-4:] == ["Europe/Berlin", "yes", "-", "-"]
    assert api.requests[1].url.params["cursor"] == "2"


def test_list_json_is_one_array_of_all_pages(run, api):
    api.on("GET", JOBS, page([job_json()], next_url=JOBS + "?cursor=2"), page([job_json("report")]))
    result = run("cron", "list", "--json")
    assert result.exit_code == 0
    assert [job["name"] for job in json.loads(result.stdout)] == ["backup", "report"]


def test_list_empty_says_how_to_create_one(run, api):
    api.on("GET", JOBS, page([]))
    result = run("cron", "list")
    assert result.exit_code == 0
    assert result.stdout == ""
    assert "No cron jobs in team acme yet" in result.stderr


# -- create ------------------------------------------------------------------------------------


def test_create_takes_the_command_after_double_dash_verbatim(run, api):
    api.on("POST", JOBS, reply(201, job_json()))

    result = run(
        "cron", "create", "backup", "--project", "shop", "--app", "web", "--schedule", "*/5 * * * *",
        "--", "pg_dump", "--help", "-f", "/tmp/x y.sql",
    )  # fmt: skip

    assert result.exit_code == 0, result.stderr
    (request,) = api.requests
    # Only what was given: the server fills in its defaults.
    assert api.body(request) == {
        "name": "backup",
        "project": "shop",
        "app": "web",
        "schedule": "*/5 * * * *",
        "command": ["pg_dump", "--help", "-f", "/tmp/x y.sql"],
    }
    assert "Created cron job backup in team acme." in result.stderr
    assert "Schedule:" in result.stdout
    assert "app web (its live image)" in result.stdout
    assert "./backup.sh --full" in result.stdout


def test_create_with_every_option_and_a_command_string(run, api):
    api.on("POST", JOBS, reply(201, job_json(app=None, image="busybox:1")))

    result = run(
        "cron", "create", "backup", "-p", "shop", "--image", "busybox:1", "-s", "@daily",
        "--timezone", "Europe/Berlin", "--concurrency", "REPLACE", "--timeout", "120", "--retries", "3",
        "--retry-backoff", "10", "--starting-deadline", "30", "--memory-mb", "64", "--cpus", "0.25",
        "--command", "sh -c 'echo hi; exit 0'",
    )  # fmt: skip

    assert result.exit_code == 0, result.stderr
    assert api.body(api.requests[0]) == {
        "name": "backup",
        "project": "shop",
        "image": "busybox:1",
        "schedule": "@daily",
        "command": ["sh", "-c", "echo hi; exit 0"],
        "timezone": "Europe/Berlin",
        "concurrency_policy": "replace",
        "timeout_seconds": 120,
        "retries": 3,
        "retry_backoff_seconds": 10,
        "starting_deadline_seconds": 30,
        "memory_mb": 64,
        "cpus": 0.25,
    }
    assert "busybox:1" in result.stdout


def test_create_json_prints_the_created_job(run, api):
    api.on("POST", JOBS, reply(201, job_json()))
    result = run("cron", "create", "backup", "-p", "shop", "-a", "web", "-s", "@hourly", "--json", "--", "true")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == job_json()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--app", "web", "--image", "busybox", "--", "true"], "exactly one"),
        (["--", "true"], "exactly one"),
        (["--app", "web"], "a command is required"),
        (["--app", "web", "--command", ""], "a command is required"),
        (["--app", "web", "--command", "echo 'oops"], "cannot be split"),
        (["--app", "web", "--command", "true", "--", "false"], "not both"),
        (["--app", "web", "--concurrency", "sometimes", "--", "true"], "sometimes"),
        (["--app", "web", "--retries", "-1", "--", "true"], "--retries"),
    ],
)
def test_create_usage_errors_exit_2_without_a_request(run, api, args, message):
    result = run("cron", "create", "backup", "--project", "shop", "--schedule", "@daily", *args)
    assert result.exit_code == 2
    assert message in result.stderr
    assert api.requests == []


@pytest.mark.parametrize("missing", ["--project", "--schedule"])
def test_create_needs_project_and_schedule(run, api, missing):
    given = {"--project": "shop", "--schedule": "@daily"}
    del given[missing]
    args = [item for pair in given.items() for item in pair]
    result = run("cron", "create", "backup", "--app", "web", *args, "--", "true")
    assert result.exit_code == 2
    assert missing in result.stderr
    assert api.requests == []


def test_create_reports_the_servers_schedule_error(run, api):
    api.on(
        "POST",
        JOBS,
        api_error(400, "invalid", "Invalid input.", fields={"schedule": ["Not a cron expression: '61 * * * *'."]}),
    )
    result = run("cron", "create", "backup", "-p", "shop", "-a", "web", "-s", "61 * * * *", "--", "true")
    assert result.exit_code == 1
    assert "schedule: Not a cron expression" in result.stderr
    assert result.stdout == ""


# -- info, suspend, resume ---------------------------------------------------------------------


def test_info_shows_the_job(run, api):
    api.on("GET", BACKUP, reply(200, job_json()))
    result = run("cron", "info", "backup")
    assert result.exit_code == 0
    assert "Europe/Berlin" in result.stdout
    assert "2 (30s apart)" in result.stdout
    assert "#11 succeeded" in result.stdout


def test_info_json(run, api):
    api.on("GET", BACKUP, reply(200, job_json()))
    assert json.loads(run("cron", "info", "backup", "--json").stdout) == job_json()


def test_suspend(run, api):
    api.on("POST", BACKUP + "suspend/", reply(200, job_json(suspended=True, next_run_at=None)))
    result = run("cron", "suspend", "backup")
    assert result.exit_code == 0, result.stderr
    assert api.body(api.requests[0]) == {}
    assert "Suspended cron job backup" in result.stderr
    assert result.stdout == ""


def test_resume_says_when_it_runs_next(run, api):
    api.on("POST", BACKUP + "resume/", reply(200, job_json()))
    result = run("cron", "resume", "backup")
    assert result.exit_code == 0, result.stderr
    assert "Resumed cron job backup; next run at 2025-" in result.stderr


def test_suspend_json(run, api):
    api.on("POST", BACKUP + "suspend/", reply(200, job_json(suspended=True)))
    result = run("cron", "suspend", "backup", "--json")
    assert json.loads(result.stdout)["suspended"] is True


def test_an_unknown_job_is_an_api_error(run, api):
    api.on("POST", JOBS + "ghost/resume/", api_error(404, "not_found", "Not found."))
    result = run("cron", "resume", "ghost")
    assert result.exit_code == 1
    assert "Not found. (not_found)" in result.stderr


# -- delete ------------------------------------------------------------------------------------


def test_delete_without_yes_refuses_without_a_request_or_a_prompt(run, api):
    result = run("cron", "delete", "backup", input="y\n")
    assert result.exit_code == 2
    assert "refusing to delete cron job backup without --yes" in result.stderr
    assert api.requests == []


def test_delete_with_yes_confirms_the_name(run, api):
    api.on("DELETE", BACKUP, httpx.Response(204))
    result = run("cron", "delete", "backup", "--yes")
    assert result.exit_code == 0, result.stderr
    assert api.body(api.requests[0]) == {"confirm": "backup"}
    assert "Deleted cron job backup." in result.stderr


# -- run ---------------------------------------------------------------------------------------


def test_run_prints_the_run_id_and_does_not_wait(run, api):
    api.on("POST", BACKUP + "run/", reply(202, run_json()))
    result = run("cron", "run", "backup")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "12\n"
    assert [(r.method, r.url.path) for r in api.requests] == [("POST", BACKUP + "run/")]


def test_run_refused_by_the_rate_limit_says_so_and_is_not_retried(run, api):
    message = "Too many manual runs: at most 3 runs of backup per minute; try again in 42s."
    api.on("POST", BACKUP + "run/", api_error(429, "throttled", message, retry_after=42))
    result = run("cron", "run", "backup")
    assert result.exit_code == 1
    assert f"{message} (throttled)" in result.stderr
    assert len(api.requests) == 1  # a refused run is not queued by retrying it


def test_run_json_prints_the_run(run, api):
    api.on("POST", BACKUP + "run/", reply(202, run_json()))
    result = run("cron", "run", "backup", "--json")
    assert json.loads(result.stdout) == run_json()


def wire_run(api, *statuses, log="line one\nline two\n"):
    """A run that is created pending, then answers each status poll with the next of `statuses`."""
    api.on("POST", BACKUP + "run/", reply(202, run_json()))
    api.on("GET", R12, *[reply(200, status) for status in statuses])
    last = statuses[-1]
    api.on("GET", R12 + "logs/", reply(200, {"id": 12, "status": last["status"], "log": log}))


def test_run_wait_prints_the_log_and_exits_0_when_it_succeeded(run, api, clock):
    wire_run(api, run_json("pending"), run_json("running"), run_json("running"), ended("succeeded", 0))

    result = run("cron", "run", "backup", "--wait")

    assert result.exit_code == 0, result.stderr
    assert result.stdout == "12\nline one\nline two\n"
    assert "run #12 is running" in result.stderr
    assert "Run #12 of backup succeeded (exit code 0) after 4.2s." in result.stderr
    assert len(api.sent("GET", R12)) == 4
    assert clock.sleeps and max(clock.sleeps) <= 2.0


@pytest.mark.parametrize(
    ("final", "said"),
    [
        (ended("failed", 2, reason="exited with 2"), "failed (exit code 2) after 4.2s: exited with 2"),
        (ended("timed_out", 137, reason="killed after 600s"), "timed out (exit code 137)"),
        (run_json("skipped", reason="a run is already running (forbid)"), "was skipped: a run is already running"),
        (run_json("cancelled", reason="replaced by run 13"), "was cancelled: replaced by run 13"),
    ],
)
def test_run_wait_exits_3_when_the_run_did_not_succeed(run, api, clock, final, said):
    wire_run(api, run_json("running"), final, log="Traceback: boom\n")

    result = run("cron", "run", "backup", "--wait")

    assert result.exit_code == 3
    assert f"error: run #12 of backup {said}" in result.stderr
    assert result.stdout == "12\nTraceback: boom\n"  # the log of a failure is what one needs most


def test_run_wait_json_prints_the_final_run_with_its_log(run, api, clock):
    wire_run(api, run_json("running"), ended("failed", 1))
    result = run("cron", "run", "backup", "--wait", "--json")
    assert result.exit_code == 3
    assert json.loads(result.stdout) == {**ended("failed", 1), "log": "line one\nline two\n"}


def test_run_wait_gives_up_at_its_timeout_with_exit_3(run, api, clock):
    wire_run(api, run_json("running"))

    result = run("cron", "run", "backup", "--wait", "--timeout", "30")

    assert result.exit_code == 3
    assert "timed out after 30s waiting for run #12 of backup to end (last status: running)" in result.stderr
    assert "panda cron logs backup 12" in result.stderr
    assert sum(clock.sleeps) == pytest.approx(30)
    assert api.sent("GET", R12 + "logs/") == []


def test_run_wait_json_at_timeout_prints_the_last_known_run(run, api, clock):
    wire_run(api, run_json("running"))
    result = run("cron", "run", "backup", "--wait", "--timeout", "5", "--json")
    assert result.exit_code == 3
    assert json.loads(result.stdout)["status"] == "running"


def test_run_wait_waits_out_a_brief_api_outage(run, api, clock):
    wire_run(api, ended("succeeded", 0))
    api.on(
        "GET",
        R12,
        reply(200, run_json("running")),
        api_error(503, "unavailable", "Try again."),
        api_error(503, "unavailable", "Try again."),
        reply(200, ended("succeeded", 0)),
    )

    result = run("cron", "run", "backup", "--wait")

    assert result.exit_code == 0, result.stderr
    assert result.stderr.count("Try again.; still waiting.") == 1


def test_run_wait_stops_on_a_lasting_api_error(run, api, clock):
    api.on("POST", BACKUP + "run/", reply(202, run_json()))
    api.on("GET", R12, api_error(403, "permission_denied", "You may not see this run."))
    result = run("cron", "run", "backup", "--wait")
    assert result.exit_code == 1
    assert "You may not see this run." in result.stderr


def test_run_wait_without_log_access_still_exits_by_the_runs_outcome(run, api, clock):
    api.on("POST", BACKUP + "run/", reply(202, run_json()))
    api.on("GET", R12, reply(200, ended("succeeded", 0)))
    api.on("GET", R12 + "logs/", api_error(403, "permission_denied", "Your token lacks the logs scope."))
    result = run("cron", "run", "backup", "--wait")
    assert result.exit_code == 0
    assert "cannot show the log of run #12: Your token lacks the logs scope." in result.stderr
    assert result.stdout == "12\n"


def test_run_of_a_suspended_or_unknown_job_reports_the_api_error(run, api):
    api.on("POST", BACKUP + "run/", api_error(409, "conflict", "A run is already running."))
    result = run("cron", "run", "backup", "--wait")
    assert result.exit_code == 1
    assert "A run is already running. (conflict)" in result.stderr
    assert result.stdout == ""


# -- runs --------------------------------------------------------------------------------------


def test_runs_lists_newest_first_as_a_table(run, api):
    api.on(
        "GET",
        RUNS,
        page(
            [
                ended("failed", 1, id=13, trigger="retry", attempt=2, reason="exited with 1"),
                ended("succeeded", 0, trigger="schedule", scheduled_for="2025-01-31T12:00:00Z", duration_seconds=187),
            ]
        ),
    )

    result = run("cron", "runs", "backup")

    assert result.exit_code == 0, result.stderr
    header, first, second = result.stdout.splitlines()
    assert header.split()[:5] == ["ID", "TRIGGER", "ATTEMPT", "STATUS", "EXIT"]
    assert first.split()[:5] == ["13", "retry", "2", "failed", "1"]
    assert first.split()[-4:] == ["4.2s", "exited", "with", "1"]
    assert second.split()[:5] == ["12", "schedule", "1", "succeeded", "0"]
    assert "3m 07s" in second


def test_runs_stops_asking_for_pages_once_it_has_n(run, api):
    api.on(
        "GET",
        RUNS,
        page([run_json(id=n) for n in (20, 19)], next_url=RUNS + "?cursor=2"),
        page([run_json(id=n) for n in (18, 17)], next_url=RUNS + "?cursor=3"),
        page([run_json(id=16)]),
    )

    result = run("cron", "runs", "backup", "-n", "3", "--json")

    assert result.exit_code == 0
    assert [r["id"] for r in json.loads(result.stdout)] == [20, 19, 18]
    assert len(api.requests) == 2


def test_runs_of_a_job_that_never_ran(run, api):
    api.on("GET", RUNS, page([]))
    result = run("cron", "runs", "backup")
    assert result.exit_code == 0
    assert "backup has not run yet" in result.stderr


def test_runs_n_must_be_positive(run, api):
    assert run("cron", "runs", "backup", "-n", "0").exit_code == 2
    assert api.requests == []


# -- logs --------------------------------------------------------------------------------------


def test_logs_default_to_the_latest_run(run, api):
    api.on("GET", RUNS, page([run_json("failed", id=13), run_json("succeeded")], next_url=RUNS + "?cursor=2"))
    api.on("GET", RUNS + "13/logs/", reply(200, {"id": 13, "status": "failed", "log": "boom\n"}))

    result = run("cron", "logs", "backup")

    assert result.exit_code == 0, result.stderr
    assert result.stdout == "boom\n"
    assert "Run #13 of backup: failed." in result.stderr
    assert len(api.sent("GET", RUNS)) == 1  # the first page has the newest run


def test_logs_of_a_given_run_json(run, api):
    answer = {"id": 12, "status": "succeeded", "log": "ok\n"}
    api.on("GET", R12 + "logs/", reply(200, answer))
    result = run("cron", "logs", "backup", "12", "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == answer
    assert [r.url.path for r in api.requests] == [R12 + "logs/"]


def test_logs_of_a_run_that_printed_nothing(run, api):
    api.on("GET", R12 + "logs/", reply(200, {"id": 12, "status": "succeeded", "log": ""}))
    result = run("cron", "logs", "backup", "12")
    assert result.exit_code == 0
    assert result.stdout == ""
    assert "(no output)" in result.stderr


def test_logs_of_a_job_that_never_ran_is_an_error(run, api):
    api.on("GET", RUNS, page([]))
    result = run("cron", "logs", "backup")
    assert result.exit_code == 1
    assert "backup has not run yet" in result.stderr


def test_logs_run_id_must_be_a_number(run, api):
    assert run("cron", "logs", "backup", "latest").exit_code == 2
    assert api.requests == []


def test_cron_needs_a_token(run, api, monkeypatch):
    monkeypatch.delenv("PANDA_TOKEN")
    result = run("cron", "list")
    assert result.exit_code == 4
    assert api.requests == []
