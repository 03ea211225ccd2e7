"""panda db list|create|info|url|attach|detach|rotate|delete and panda db backups
list|capture|restore|download: what each command sends, what it prints (data on stdout, messages on
stderr), --json, usage errors (exit 2 and no request), API errors (exit 1 with the message), waiting
with progress and its exit codes, and the download's checksum check.

The API is faked with httpx.MockTransport: allowed here because these tests check the CLI's own
request and response handling; end-to-end tests against the real server are separate. A fake clock
makes waiting instant.
"""

import hashlib
import json

import httpx
import pytest
from conftest import api_error, page, reply

DATABASES = "/api/v1/teams/acme/databases/"
MAIN = DATABASES + "main/"
BACKUPS = MAIN + "backups/"
B3 = BACKUPS + "3/"
URL = "postgres://ps7_main:s3cret-Pw@10.0.0.5:5432/ps7_main"


def db_json(name="main", **overrides):
    data = {
        "name": name,
        "project": "shop",
        "engine": "postgres",
        "version": "16.4",
        "placement": "shared",
        "status": "available",
        "status_reason": "",
        "host": "10.0.0.5",
        "port": 5432,
        "database": "ps7_main",
        "username": "ps7_main",
        "size_bytes": 8_400_000,
        "connections": 3,
        "usage_at": "2025-01-31T12:00:00Z",
        "attachments": [{"app": "web", "env_name": "DATABASE_URL"}, {"app": "worker", "env_name": "DB"}],
        "created_at": "2025-01-01T12:00:00Z",
        "credentials_rotated_at": None,
        "deleted_at": None,
        "purge_after": None,
    }
    data.update(overrides)
    return data


def backup_json(number=3, status="succeeded", **overrides):
    data = {
        "number": number,
        "trigger": "manual",
        "reason": "",
        "status": status,
        "size_bytes": 1_500_000 if status == "succeeded" else None,
        "sha256": "ab" * 32 if status == "succeeded" else "",
        "error": "",
        "started_at": "2025-01-31T12:00:00Z",
        "finished_at": "2025-01-31T12:00:04Z" if status == "succeeded" else None,
        "restored_at": None,
        "created_at": "2025-01-31T12:00:00Z",
    }
    data.update(overrides)
    return data


@pytest.fixture(autouse=True)
def _ci(ci_env):
    pass


# -- list, info --------------------------------------------------------------------------------


def test_list_shows_every_page_as_a_table(run, api):
    api.on(
        "GET",
        DATABASES,
        page([db_json()], next_url="http://panda.test/api/v1/teams/acme/databases/?cursor=2"),
        page([db_json("cache", engine="redis", status="provisioning", size_bytes=None, attachments=[])]),
    )

    result = run("db", "list")

    assert result.exit_code == 0, result.stderr
    header, main, cache = result.stdout.splitlines()
    assert header.split() == ["NAME", "PROJECT", "ENGINE", "PLACEMENT", "STATUS", "SIZE", "APPS"]
    assert main.split() == ["main", "shop", "postgres", "shared", "available", "8.4", "MB", "web,worker"]
    assert cache.split() == ["cache", "shop", "redis", "shared", "provisioning", "-", "-"]
    assert api.requests[1].url.params["cursor"] == "2"


def test_list_json_is_one_array_of_all_pages(run, api):
    api.on("GET", DATABASES, page([db_json()], next_url=DATABASES + "?cursor=2"), page([db_json("cache")]))
    result = run("db", "list", "--json")
    assert result.exit_code == 0
    assert [d["name"] for d in json.loads(result.stdout)] == ["main", "cache"]


def test_list_empty_says_how_to_create_one(run, api):
    api.on("GET", DATABASES, page([]))
    result = run("db", "list")
    assert (result.exit_code, result.stdout) == (0, "")
    assert "panda db create NAME --project P --engine postgres" in result.stderr


def test_info_shows_attachments_and_usage_and_never_a_password(run, api):
    api.on("GET", MAIN, reply(200, db_json(credentials_rotated_at="2025-01-20T08:00:00Z")))
    result = run("db", "info", "main")
    assert result.exit_code == 0, result.stderr
    lines = dict(line.split(":", 1) for line in result.stdout.splitlines())
    assert lines["Engine"].strip() == "postgres 16.4"
    assert lines["Host"].strip() == "10.0.0.5:5432"
    assert lines["Size"].strip() == "8.4 MB"
    assert lines["Connections"].strip() == "3"
    assert lines["Attached to"].strip() == "web as DATABASE_URL, worker as DB"
    assert lines["Credentials rotated"].strip().startswith("2025-01-")
    assert "s3cret" not in result.stdout


def test_info_shows_why_it_failed(run, api):
    api.on("GET", MAIN, reply(200, db_json(status="failed", status_reason="server unreachable", attachments=[])))
    result = run("db", "info", "main")
    assert "failed: server unreachable" in result.stdout
    assert "Attached to:         -" in result.stdout


def test_info_json(run, api):
    api.on("GET", MAIN, reply(200, db_json()))
    assert json.loads(run("db", "info", "main", "--json").stdout) == db_json()


def test_an_unknown_database_is_an_api_error_with_exit_1(run, api):
    api.on("GET", DATABASES + "ghost/", api_error(404, "not_found", "Not found."))
    result = run("db", "info", "ghost")
    assert result.exit_code == 1
    assert "Not found. (not_found)" in result.stderr
    assert "request id: req-1" in result.stderr
    assert result.stdout == ""


# -- create ------------------------------------------------------------------------------------


def test_create_sends_only_what_was_given_and_does_not_wait(run, api, clock):
    api.on("POST", DATABASES, reply(202, db_json(status="provisioning", size_bytes=None, attachments=[])))

    result = run("db", "create", "main", "--project", "shop", "--engine", "postgres")

    assert result.exit_code == 0, result.stderr
    (request,) = api.requests
    assert api.body(request) == {"name": "main", "project": "shop", "engine": "postgres", "placement": "shared"}
    assert "Creating postgres database main in team acme (shared)." in result.stderr
    assert "provisioning" in result.stdout
    assert clock.sleeps == []


def test_create_with_every_option_and_json(run, api):
    created = db_json(placement="dedicated", version="15", status="provisioning")
    api.on("POST", DATABASES, reply(202, created))
    result = run(
        "db", "create", "main", "-p", "shop", "-e", "POSTGRES", "--placement", "dedicated", "--version", "15", "--json"
    )
    assert result.exit_code == 0, result.stderr
    assert api.body(api.requests[0]) == {
        "name": "main",
        "project": "shop",
        "engine": "postgres",
        "placement": "dedicated",
        "version": "15",
    }
    assert json.loads(result.stdout) == created


def test_create_wait_prints_progress_until_available(run, api, clock):
    api.on("POST", DATABASES, reply(202, db_json(status="provisioning")))
    api.on("GET", MAIN, reply(200, db_json(status="provisioning")), reply(200, db_json(status="available")))

    result = run("db", "create", "main", "-p", "shop", "-e", "postgres", "--wait")

    assert result.exit_code == 0, result.stderr
    assert "database main is provisioning" in result.stderr
    assert "Database main is available." in result.stderr
    assert len(api.sent("GET", MAIN)) == 2
    assert len(clock.sleeps) == 2


def test_create_wait_waits_out_a_brief_outage(run, api, clock):
    api.on("POST", DATABASES, reply(202, db_json(status="provisioning")))
    api.on(
        "GET",
        MAIN,
        api_error(503, "unavailable", "Down for a moment."),
        api_error(503, "unavailable", "Down for a moment."),
        reply(200, db_json(status="available")),
    )
    result = run("db", "create", "main", "-p", "shop", "-e", "postgres", "--wait", "--json")
    assert result.exit_code == 0, result.stderr
    assert result.stderr.count("Down for a moment.; still waiting.") == 1
    assert json.loads(result.stdout)["status"] == "available"


def test_create_wait_exits_3_with_the_reason_when_it_failed(run, api, clock):
    api.on("POST", DATABASES, reply(202, db_json(status="provisioning")))
    api.on("GET", MAIN, reply(200, db_json(status="failed", status_reason="Provisioning failed: no route to host")))
    result = run("db", "create", "main", "-p", "shop", "-e", "postgres", "--wait")
    assert result.exit_code == 3
    assert "database main is failed: Provisioning failed: no route to host" in result.stderr


def test_create_wait_times_out_with_exit_3(run, api, clock):
    api.on("POST", DATABASES, reply(202, db_json(status="provisioning")))
    api.on("GET", MAIN, reply(200, db_json(status="provisioning")))
    result = run("db", "create", "main", "-p", "shop", "-e", "postgres", "--wait", "--timeout", "30")
    assert result.exit_code == 3
    assert "timed out after 30s waiting for database main (last status: provisioning)" in result.stderr
    assert sum(clock.sleeps) == pytest.approx(30)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--engine", "oracle"], "oracle"),
        (["--engine", "postgres", "--placement", "cloud"], "cloud"),
        ([], "--engine"),
    ],
)
def test_create_usage_errors_exit_2_without_a_request(run, api, args, message):
    result = run("db", "create", "main", "--project", "shop", *args)
    assert result.exit_code == 2
    assert message in result.stderr
    assert api.requests == []


def test_create_reports_the_servers_field_errors(run, api):
    api.on("POST", DATABASES, api_error(400, "invalid", "Invalid input.", fields={"project": ["No such project."]}))
    result = run("db", "create", "main", "-p", "nope", "-e", "postgres", "--wait")
    assert result.exit_code == 1
    assert "project: No such project." in result.stderr
    assert result.stdout == ""


def test_create_reports_a_quota_with_its_limit(run, api):
    api.on(
        "POST",
        DATABASES,
        api_error(403, "quota_exceeded", "The free plan allows max_databases = 1.", limit="max_databases", maximum=1),
    )
    result = run("db", "create", "second", "-p", "shop", "-e", "redis")
    assert result.exit_code == 1
    assert "(quota_exceeded)" in result.stderr
    assert "limit: max_databases" in result.stderr


# -- url ---------------------------------------------------------------------------------------


def test_url_prints_the_url_only_for_command_substitution(run, api):
    credentials = {"url": URL, "host": "10.0.0.5", "port": 5432, "database": "ps7_main", "username": "ps7_main",
                   "password": "s3cret-Pw"}  # fmt: skip
    api.on("POST", MAIN + "reveal/", reply(200, credentials))
    result = run("db", "url", "main")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == URL  # not a terminal: exactly the value, no newline
    assert result.stderr == ""
    assert api.sent("POST", MAIN + "reveal/")


def test_url_json_prints_the_parts(run, api):
    credentials = {"url": URL, "host": "10.0.0.5", "port": 5432, "database": "d", "username": "u", "password": "p"}
    api.on("POST", MAIN + "reveal/", reply(200, credentials))
    assert json.loads(run("db", "url", "main", "--json").stdout) == credentials


def test_url_refused_is_exit_1_and_nothing_on_stdout(run, api):
    api.on(
        "POST",
        MAIN + "reveal/",
        api_error(403, "permission_denied", "This token lacks the 'secrets' scope needed for 'reveal_secrets'."),
    )
    result = run("db", "url", "main")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert "lacks the 'secrets' scope" in result.stderr


# -- attach, detach ----------------------------------------------------------------------------


def test_attach_with_the_default_variable(run, api):
    api.on("POST", MAIN + "attachments/", reply(201, {"app": "web", "env_name": "DATABASE_URL", "created_at": "x"}))
    result = run("db", "attach", "main", "--app", "web")
    assert result.exit_code == 0, result.stderr
    assert api.body(api.requests[0]) == {"app": "web"}
    assert "Attached main to app web as DATABASE_URL; the app receives it at its next deploy." in result.stderr


def test_attach_as_another_variable_with_json(run, api):
    answer = {"app": "web", "env_name": "REPORTS_DB", "created_at": "2025-01-31T12:00:00Z"}
    api.on("POST", MAIN + "attachments/", reply(201, answer))
    result = run("db", "attach", "main", "-a", "web", "--as", "REPORTS_DB", "--json")
    assert result.exit_code == 0, result.stderr
    assert api.body(api.requests[0]) == {"app": "web", "env_name": "REPORTS_DB"}
    assert json.loads(result.stdout) == answer


def test_attach_conflict_is_exit_1(run, api):
    api.on("POST", MAIN + "attachments/", api_error(409, "already_attached", "main is already attached to web."))
    result = run("db", "attach", "main", "-a", "web")
    assert result.exit_code == 1
    assert "main is already attached to web. (already_attached)" in result.stderr


def test_detach(run, api):
    api.on("DELETE", MAIN + "attachments/web/", httpx.Response(204))
    result = run("db", "detach", "main", "--app", "web")
    assert result.exit_code == 0, result.stderr
    assert "Detached main from app web" in result.stderr


def test_names_are_percent_encoded_in_paths(run, api):
    api.on("DELETE", MAIN + "attachments/../x/", httpx.Response(204))  # the fake matches the decoded path
    result = run("db", "detach", "main", "--app", "../x")
    assert result.exit_code == 0, result.stderr
    assert api.requests[0].url.raw_path == b"/api/v1/teams/acme/databases/main/attachments/..%2Fx/"


# -- rotate ------------------------------------------------------------------------------------


def test_rotate_without_waiting(run, api, clock):
    api.on("POST", MAIN + "rotate/", reply(202, db_json()))
    result = run("db", "rotate", "main")
    assert result.exit_code == 0, result.stderr
    assert "Rotating the credentials of main." in result.stderr
    assert api.sent("GET", MAIN) == []


def test_rotate_wait_until_the_rotation_time_changes(run, api, clock):
    api.on("POST", MAIN + "rotate/", reply(202, db_json(credentials_rotated_at="2025-01-01T00:00:00Z")))
    api.on(
        "GET",
        MAIN,
        reply(200, db_json(credentials_rotated_at="2025-01-01T00:00:00Z")),
        reply(200, db_json(credentials_rotated_at="2025-02-01T00:00:00Z")),
    )
    result = run("db", "rotate", "main", "--wait", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["credentials_rotated_at"] == "2025-02-01T00:00:00Z"
    assert "database main is available" in result.stderr
    assert "Rotated the credentials of main" in result.stderr


def test_rotate_wait_times_out_with_exit_3(run, api, clock):
    api.on("POST", MAIN + "rotate/", reply(202, db_json()))
    api.on("GET", MAIN, reply(200, db_json()))
    result = run("db", "rotate", "main", "--wait", "--timeout", "5")
    assert result.exit_code == 3
    assert "timed out after 5s" in result.stderr


def test_rotate_of_a_busy_database_is_exit_1(run, api):
    api.on("POST", MAIN + "rotate/", api_error(409, "database_busy", "Database main is provisioning."))
    result = run("db", "rotate", "main", "--wait")
    assert result.exit_code == 1
    assert "(database_busy)" in result.stderr


# -- delete ------------------------------------------------------------------------------------


def test_delete_refuses_without_yes_and_sends_nothing(run, api):
    result = run("db", "delete", "main")
    assert result.exit_code == 2
    assert "refusing to delete database main without --yes" in result.stderr
    assert api.requests == []


def test_delete_sends_the_name_as_confirmation_and_says_how_to_undelete(run, api):
    api.on(
        "DELETE",
        MAIN,
        reply(202, db_json(status="deleted", attachments=[], deleted_at="2025-02-01T00:00:00Z",
                           purge_after="2025-02-04T00:00:00Z")),
    )  # fmt: skip
    result = run("db", "delete", "main", "--yes", "--json")
    assert result.exit_code == 0, result.stderr
    assert api.body(api.requests[0]) == {"confirm": "main"}
    assert json.loads(result.stdout)["status"] == "deleted"
    assert "Deleted database main. `panda db undelete main` brings it back until" in result.stderr


def test_delete_on_a_plan_without_grace_period_says_it_goes_for_good(run, api):
    api.on("DELETE", MAIN, reply(202, db_json(status="deleting", attachments=[], purge_after="2025-02-01T00:00:00Z")))
    result = run("db", "delete", "main", "--yes")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    assert "Deleting database main for good" in result.stderr


def test_list_deleted_asks_for_the_deleted_ones_and_shows_until_when(run, api):
    api.on(
        "GET",
        DATABASES,
        page([db_json(status="deleted", deleted_at="2025-02-01T00:00:00Z", purge_after="2025-02-04T00:00:00Z")]),
    )
    result = run("db", "list", "--deleted")
    assert result.exit_code == 0, result.stderr
    assert api.requests[0].url.params["deleted"] == "1"
    header, main = result.stdout.splitlines()
    assert header.split() == ["NAME", "PROJECT", "ENGINE", "STATUS", "DELETED", "PURGED", "AFTER"]
    assert main.split()[:4] == ["main", "shop", "postgres", "deleted"]
    assert "2025" in main


def test_list_deleted_empty_and_json(run, api):
    api.on("GET", DATABASES, page([]), page([]))
    result = run("db", "list", "--deleted")
    assert (result.exit_code, result.stdout) == (0, "")
    assert "No deleted databases in team acme" in result.stderr
    assert json.loads(run("db", "list", "--deleted", "--json").stdout) == []


def test_undelete_posts_and_does_not_wait(run, api):
    api.on("POST", MAIN + "undelete/", reply(202, db_json(status="provisioning", attachments=[])))
    result = run("db", "undelete", "main", "--json")
    assert result.exit_code == 0, result.stderr
    assert api.body(api.requests[0]) == {}
    assert json.loads(result.stdout)["status"] == "provisioning"
    assert "Undeleting database main" in result.stderr


def test_undelete_wait_until_available(run, api, clock):
    api.on("POST", MAIN + "undelete/", reply(202, db_json(status="provisioning", attachments=[])))
    api.on("GET", MAIN, reply(200, db_json(status="provisioning")), reply(200, db_json(status="available")))
    result = run("db", "undelete", "main", "--wait")
    assert result.exit_code == 0, result.stderr
    assert "database main is provisioning" in result.stderr
    assert "Database main is back" in result.stderr


def test_undelete_wait_exits_3_when_it_failed(run, api, clock):
    api.on("POST", MAIN + "undelete/", reply(202, db_json(status="provisioning")))
    api.on("GET", MAIN, reply(200, db_json(status="failed", status_reason="server unreachable")))
    result = run("db", "undelete", "main", "--wait")
    assert result.exit_code == 3
    assert "database main is failed: server unreachable" in result.stderr


def test_undelete_after_the_grace_period_is_exit_1_with_the_reason(run, api):
    api.on("POST", MAIN + "undelete/", api_error(409, "grace_period_over", "Database main's grace period is over."))
    result = run("db", "undelete", "main")
    assert result.exit_code == 1
    assert "grace period is over" in result.stderr


# -- backups -----------------------------------------------------------------------------------


def test_backups_list(run, api):
    api.on(
        "GET",
        BACKUPS,
        page([backup_json(4, "failed", error="pg_dump: connection refused"), backup_json(3)]),
    )
    result = run("db", "backups", "list", "main")
    assert result.exit_code == 0, result.stderr
    header, failed, good = result.stdout.splitlines()
    assert header.split() == ["NUMBER", "TRIGGER", "STATUS", "SIZE", "CREATED", "FINISHED", "RESTORED", "ERROR"]
    assert failed.startswith("4 ") and failed.endswith("pg_dump: connection refused")
    assert good.split()[:5] == ["3", "manual", "succeeded", "1.5", "MB"]


def test_backups_list_json_and_empty(run, api):
    api.on("GET", BACKUPS, page([]))
    assert json.loads(run("db", "backups", "list", "main", "--json").stdout) == []
    result = run("db", "backups", "list", "main")
    assert "main has no backups yet" in result.stderr


def test_capture_prints_the_number(run, api, clock):
    api.on("POST", BACKUPS, reply(202, backup_json(5, "pending")))
    result = run("db", "backups", "capture", "main")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "5\n"
    assert api.body(api.requests[0]) == {}


def test_capture_wait_follows_the_backup(run, api, clock):
    api.on("POST", BACKUPS, reply(202, backup_json(5, "pending")))
    api.on(
        "GET",
        BACKUPS + "5/",
        reply(200, backup_json(5, "running")),
        reply(200, backup_json(5, "running")),
        reply(200, backup_json(5)),
    )
    result = run("db", "backups", "capture", "main", "--wait")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "5\n"
    assert "backup #5 is pending" in result.stderr
    assert "backup #5 is running" in result.stderr
    assert "Captured backup #5 succeeded (1.5 MB) of main." in result.stderr


def test_capture_wait_exits_3_when_the_backup_failed(run, api, clock):
    api.on("POST", BACKUPS, reply(202, backup_json(5, "pending")))
    api.on("GET", BACKUPS + "5/", reply(200, backup_json(5, "failed", error="disk full")))
    result = run("db", "backups", "capture", "main", "--wait", "--json")
    assert result.exit_code == 3
    assert json.loads(result.stdout)["error"] == "disk full"
    assert "backup #5 failed: disk full (database main)" in result.stderr


def test_restore_refuses_without_yes_and_sends_nothing(run, api):
    result = run("db", "backups", "restore", "main", "3")
    assert result.exit_code == 2
    assert "without --yes" in result.stderr
    assert api.requests == []


def test_restore_confirms_with_the_database_name(run, api, clock):
    api.on("POST", B3 + "restore/", reply(202, backup_json()))
    result = run("db", "backups", "restore", "main", "3", "--yes", "--json")
    assert result.exit_code == 0, result.stderr
    assert api.body(api.requests[0]) == {"confirm": "main"}
    assert json.loads(result.stdout)["number"] == 3


def test_restore_wait_until_the_database_is_available_again(run, api, clock):
    api.on("POST", B3 + "restore/", reply(202, backup_json()))
    api.on("GET", MAIN, reply(200, db_json(status="restoring")), reply(200, db_json(status="available")))
    api.on("GET", B3, reply(200, backup_json(restored_at="2025-02-01T00:00:00Z")))
    result = run("db", "backups", "restore", "main", "3", "--yes", "--wait")
    assert result.exit_code == 0, result.stderr
    assert "database main is restoring" in result.stderr
    assert "Restored backup #3 into main." in result.stderr


def test_restore_wait_exits_3_when_it_failed(run, api, clock):
    api.on("POST", B3 + "restore/", reply(202, backup_json()))
    # The server leaves the database available again, with the reason, and the backup not restored.
    reason = "Restore from backup #3 failed: the file is damaged. Nothing was changed."
    api.on("GET", MAIN, reply(200, db_json(status="restoring")), reply(200, db_json(status_reason=reason)))
    api.on("GET", B3, reply(200, backup_json()))
    result = run("db", "backups", "restore", "main", "3", "--yes", "--wait")
    assert result.exit_code == 3
    assert f"restoring backup #3 into main failed: {reason}" in result.stderr


def test_restore_a_number_that_is_not_one_is_a_usage_error(run, api):
    result = run("db", "backups", "restore", "main", "three", "--yes")
    assert result.exit_code == 2
    assert api.requests == []


# -- download ----------------------------------------------------------------------------------

CONTENT = b"-- PostgreSQL database dump\n" + bytes(range(256)) * 1000


def file_reply(content=CONTENT, checksum=None, disposition='attachment; filename="main-3.sql.gz"'):
    headers = {
        "Content-Type": "application/octet-stream",
        "Content-Length": str(len(content)),
        "X-Checksum-SHA256": checksum or hashlib.sha256(content).hexdigest(),
    }
    if disposition:
        headers["Content-Disposition"] = disposition
    return httpx.Response(200, content=content, headers=headers)


def test_download_writes_the_file_the_server_names_and_checks_it(run, api, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    api.on("GET", B3 + "download/", file_reply())
    result = run("db", "backups", "download", "main", "3")
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "main-3.sql.gz").read_bytes() == CONTENT
    assert "SHA-256 verified" in result.stderr
    assert "application/octet-stream" in api.requests[0].headers["Accept"]
    assert [p.name for p in tmp_path.iterdir()] == ["main-3.sql.gz"]  # no partial file left


def test_download_to_a_chosen_file_with_json(run, api, tmp_path):
    target = tmp_path / "copy.dump"
    api.on("GET", B3 + "download/", file_reply())
    result = run("db", "backups", "download", "main", "3", "-o", str(target), "--json")
    assert result.exit_code == 0, result.stderr
    assert target.read_bytes() == CONTENT
    assert json.loads(result.stdout) == {
        "file": str(target),
        "size_bytes": len(CONTENT),
        "sha256": hashlib.sha256(CONTENT).hexdigest(),
    }


def test_download_to_stdout(run, api):
    api.on("GET", B3 + "download/", file_reply(content=b"small dump\n"))
    result = run("db", "backups", "download", "main", "3", "-o", "-")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "small dump\n"


def test_download_keeps_a_server_path_out_of_the_file_name(run, api, tmp_path, monkeypatch):
    (tmp_path / "here").mkdir()
    monkeypatch.chdir(tmp_path / "here")
    api.on("GET", B3 + "download/", file_reply(disposition='attachment; filename="../../etc/evil"'))
    result = run("db", "backups", "download", "main", "3")
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "here" / "evil").read_bytes() == CONTENT
    assert not (tmp_path / "evil").exists()


def test_a_download_that_does_not_match_its_checksum_is_removed_and_exit_1(run, api, tmp_path):
    target = tmp_path / "main.dump"
    target.write_bytes(b"the good copy from last week")
    api.on("GET", B3 + "download/", file_reply(checksum="00" * 32))
    result = run("db", "backups", "download", "main", "3", "-o", str(target))
    assert result.exit_code == 1
    assert "did not arrive intact" in result.stderr
    assert target.read_bytes() == b"the good copy from last week"  # not replaced
    assert [p.name for p in tmp_path.iterdir()] == ["main.dump"]


def test_a_download_without_a_checksum_is_refused(run, api, tmp_path):
    response = httpx.Response(200, content=CONTENT, headers={"Content-Type": "application/octet-stream"})
    api.on("GET", B3 + "download/", response)
    result = run("db", "backups", "download", "main", "3", "-o", str(tmp_path / "x"))
    assert result.exit_code == 1
    assert "X-Checksum-SHA256" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_download_refused_by_the_api_is_exit_1_and_writes_nothing(run, api, tmp_path):
    api.on("GET", B3 + "download/", api_error(409, "conflict", "Backup #3 failed; there is nothing to download."))
    result = run("db", "backups", "download", "main", "3", "-o", str(tmp_path / "x"))
    assert result.exit_code == 1
    assert "nothing to download. (conflict)" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_download_json_to_stdout_is_a_usage_error(run, api):
    result = run("db", "backups", "download", "main", "3", "-o", "-", "--json")
    assert result.exit_code == 2
    assert api.requests == []


def test_not_logged_in_is_exit_4(run, api, monkeypatch):
    monkeypatch.delenv("PANDA_TOKEN")
    result = run("db", "list")
    assert result.exit_code == 4
    assert api.requests == []
