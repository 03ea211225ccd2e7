"""panda alerts list|show|create|update|delete and panda alerts channels list|create|test: what each
command sends, what it prints, --json, usage errors (exit 2, and no request) and API errors.

The API is faked with httpx.MockTransport: allowed here because these tests check the CLI's own
request and response handling; end-to-end tests against the real server are separate.
"""

import json

import httpx
import pytest
from conftest import api_error, page, reply

from panda_cli import units
from panda_cli.errors import UsageProblem

RULES = "/api/v1/teams/acme/alert-rules/"
HIGH_ERRORS = RULES + "high-errors/"
CHANNELS = "/api/v1/teams/acme/notification-channels/"


def rule_json(name="high-errors", **overrides):
    data = {
        "name": name,
        "project": "shop",
        "scope": "app",
        "app": "web",
        "cron_job": None,
        "database": None,
        "metric": "error_rate",
        "event_kind": "",
        "operator": "gt",
        "threshold": 5.0,
        "window_seconds": 300,
        "for_seconds": 60,
        "severity": "critical",
        "channels": ["ops-hook"],
        "enabled": True,
        "state": "firing",
        "state_since": "2025-01-31T12:00:00Z",
        "last_value": 7.456,
        "last_evaluated_at": "2025-01-31T12:05:00Z",
        "created_at": "2025-01-01T12:00:00Z",
    }
    data.update(overrides)
    return data


def event_rule_json(**overrides):
    return rule_json(
        "backup-failed",
        **{
            "scope": "cron_job",
            "app": None,
            "cron_job": "nightly",
            "metric": "event",
            "event_kind": "cron.run_failed",
            "threshold": 0.0,
            "window_seconds": 600,
            "for_seconds": 0,
            "severity": "warning",
            "state": "ok",
            "state_since": None,
            "last_value": None,
            "last_evaluated_at": None,
            **overrides,
        },
    )


def channel_json(name="ops-hook", **overrides):
    data = {
        "name": name,
        "kind": "webhook",
        "target": "https://hooks.example.com/panda",
        "enabled": True,
        "signed": True,
        "created_at": "2025-01-01T12:00:00Z",
    }
    data.update(overrides)
    return data


@pytest.fixture(autouse=True)
def _ci(ci_env):
    pass


# -- durations ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("300", 300), ("30s", 30), ("5m", 300), ("1h", 3600), ("1h30m", 5400), ("7d", 604800), (" 2M ", 120)],
)
def test_durations_people_write(text, seconds):
    assert units.parse_duration(text, option="--window") == seconds


@pytest.mark.parametrize("text", ["", "5x", "m5", "1.5h", "-5m", "5m1h", "5 m", "5mm"])
def test_what_is_not_a_duration(text):
    with pytest.raises(UsageProblem, match=r"--window: .* is not a duration"):
        units.parse_duration(text, option="--window")


@pytest.mark.parametrize(("seconds", "text"), [(45, "45s"), (300, "5m"), (5400, "1h30m"), (86400, "1d"), (0, "0s")])
def test_durations_shown_back(seconds, text):
    assert units.short_duration(seconds) == text


# -- list, show --------------------------------------------------------------------------------


def test_list_shows_every_page_with_state_and_condition(run, api):
    api.on("GET", RULES, page([rule_json()], next_url=RULES + "?cursor=2"), page([event_rule_json()]))

    result = run("alerts", "list")

    assert result.exit_code == 0, result.stderr
    header, first, second = result.stdout.splitlines()
    assert header.split() == ["NAME", "STATE", "SEVERITY", "ENABLED", "WATCHES", "CHANNELS", "CONDITION"]
    assert first.split()[:7] == ["high-errors", "firing", "critical", "yes", "app", "web", "ops-hook"]
    assert first.endswith("error_rate > 5 over 5m for 1m")
    assert second.split()[:4] == ["backup-failed", "ok", "warning", "yes"]
    assert "cron job nightly" in second
    assert second.endswith("cron.run_failed events > 0 over 10m")
    assert api.requests[1].url.params["cursor"] == "2"


def test_list_json_is_one_array_of_all_pages(run, api):
    api.on("GET", RULES, page([rule_json()], next_url=RULES + "?cursor=2"), page([event_rule_json()]))
    result = run("alerts", "list", "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == [rule_json(), event_rule_json()]


def test_list_empty_says_how_to_create_one(run, api):
    api.on("GET", RULES, page([]))
    result = run("alerts", "list")
    assert result.exit_code == 0
    assert result.stdout == ""
    assert "No alert rules in team acme yet" in result.stderr


def test_show(run, api):
    api.on("GET", HIGH_ERRORS, reply(200, rule_json()))
    result = run("alerts", "show", "high-errors")
    assert result.exit_code == 0, result.stderr
    assert "Watches:    app web" in result.stdout
    assert "Condition:  error_rate > 5 over 5m for 1m" in result.stdout
    assert "State:      firing since 2025-" in result.stdout
    assert "Last value: 7.46 at 2025-" in result.stdout


def database_rule_json(**overrides):
    database = {"scope": "database", "cron_job": None, "database": "main", "event_kind": "database.backup_failed"}
    return {**event_rule_json(**database, **overrides), "name": "backups"}


def test_list_and_show_a_database_rule(run, api):
    api.on("GET", RULES, page([database_rule_json()]))
    api.on("GET", RULES + "backups/", reply(200, database_rule_json()))

    listed = run("alerts", "list")
    shown = run("alerts", "show", "backups")

    assert listed.exit_code == 0, listed.stderr
    row = listed.stdout.splitlines()[1]
    assert "database main" in row and row.endswith("database.backup_failed events > 0 over 10m")
    assert shown.exit_code == 0, shown.stderr
    assert "Watches:    database main" in shown.stdout
    assert "Condition:  database.backup_failed events > 0 over 10m" in shown.stdout


def test_show_a_rule_never_evaluated(run, api):
    api.on("GET", RULES + "backup-failed/", reply(200, event_rule_json(channels=[])))
    result = run("alerts", "show", "backup-failed")
    assert result.exit_code == 0, result.stderr
    assert "Last value: -" in result.stdout
    assert "Channels:   -" in result.stdout


def test_show_json(run, api):
    api.on("GET", HIGH_ERRORS, reply(200, rule_json()))
    assert json.loads(run("alerts", "show", "high-errors", "--json").stdout) == rule_json()


def test_show_an_unknown_rule_is_an_api_error(run, api):
    api.on("GET", RULES + "ghost/", api_error(404, "not_found", "Not found."))
    result = run("alerts", "show", "ghost")
    assert result.exit_code == 1
    assert "error: Not found. (not_found)" in result.stderr
    assert result.stdout == ""


# -- create ------------------------------------------------------------------------------------


def test_create_a_metric_rule_with_readable_options(run, api):
    api.on("POST", RULES, reply(201, rule_json()))

    result = run(
        "alerts", "create", "high-errors", "--app", "web", "--metric", "error_rate", "--op", "gt",
        "--threshold", "5", "--window", "5m", "--for", "1m", "--severity", "critical", "--channel", "ops-hook",
    )  # fmt: skip

    assert result.exit_code == 0, result.stderr
    assert api.body(api.requests[0]) == {
        "name": "high-errors",
        "scope": "app",
        "app": "web",
        "metric": "error_rate",
        "operator": "gt",
        "threshold": 5.0,
        "window_seconds": 300,
        "for_seconds": 60,
        "severity": "critical",
        "channels": ["ops-hook"],
    }
    assert "Created alert rule high-errors in team acme." in result.stderr
    assert "Condition:  error_rate > 5 over 5m for 1m" in result.stdout


def test_create_an_event_rule_fires_on_any_event_by_default(run, api):
    api.on("POST", RULES, reply(201, event_rule_json()))

    result = run(
        "alerts", "create", "backup-failed", "--cron-job", "nightly", "--project", "shop",
        "--event", "cron.run_failed", "--channel", "ops-hook,pager", "-c", "ops-hook", "--disabled",
    )  # fmt: skip

    assert result.exit_code == 0, result.stderr
    assert api.body(api.requests[0]) == {
        "name": "backup-failed",
        "scope": "cron_job",
        "cron_job": "nightly",
        "project": "shop",
        "metric": "event",
        "event_kind": "cron.run_failed",
        "operator": "gt",
        "threshold": 0.0,
        "channels": ["ops-hook", "pager"],
        "enabled": False,
    }


def test_create_a_project_rule(run, api):
    api.on("POST", RULES, reply(201, event_rule_json(scope="project", cron_job=None)))
    result = run("alerts", "create", "deploys", "-p", "shop", "-e", "deploy.failed", "--op", "gte", "-t", "3")
    assert result.exit_code == 0, result.stderr
    body = api.body(api.requests[0])
    assert (body["scope"], body["project"], body["operator"], body["threshold"]) == ("project", "shop", "gte", 3.0)
    assert "app" not in body
    assert "cron_job" not in body


def test_create_a_database_rule(run, api):
    api.on("POST", RULES, reply(201, database_rule_json()))

    result = run("alerts", "create", "backups", "--database", "main", "--event", "database.backup_failed", "-c", "ops")

    assert result.exit_code == 0, result.stderr
    assert api.body(api.requests[0]) == {
        "name": "backups",
        "scope": "database",
        "database": "main",
        "metric": "event",
        "event_kind": "database.backup_failed",
        "operator": "gt",
        "threshold": 0.0,
        "channels": ["ops"],
    }
    assert "Watches:    database main" in result.stdout


def test_create_json_prints_the_created_rule(run, api):
    api.on("POST", RULES, reply(201, rule_json()))
    result = run("alerts", "create", "high-errors", "-a", "web", "-m", "error_rate", "-o", "gt", "-t", "5", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == rule_json()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--window", "5x"], "--window: '5x' is not a duration"),
        (["--window", "0"], "--window must be longer than 0 seconds"),
        (["--for", "one minute"], "--for: 'one minute' is not a duration"),
        (["--for", "1.5m"], "--for: '1.5m' is not a duration"),
    ],
)
def test_create_bad_durations_exit_2_without_a_request(run, api, args, message):
    result = run("alerts", "create", "high-errors", "-a", "web", "-m", "error_rate", "-o", "gt", "-t", "5", *args)
    assert result.exit_code == 2
    assert f"error: {message}" in result.stderr
    assert "30s, 5m" in result.stderr  # the hint says what a duration looks like
    assert api.requests == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-m", "error_rate", "-o", "gt", "-t", "5"], "say what the rule watches"),
        (["-a", "web", "--cron-job", "nightly", "-e", "x"], "only one of --app, --cron-job and --database"),
        (["--cron-job", "nightly", "--database", "main", "-e", "x"], "(got --cron-job and --database)"),
        (["-a", "web", "-o", "gt", "-t", "5"], "say what the rule measures"),
        (["-a", "web", "-m", "event"], "--metric event needs the kind of event"),
        (["-a", "web", "-m", "cpu_percent", "-e", "cron.run_failed"], "cannot go with --metric cpu_percent"),
        (["-a", "web", "-e", " "], "--event needs an event kind"),
        (["-a", "web", "-m", "error_rate", "-t", "5"], "--op is required"),
        (["-a", "web", "-m", "error_rate"], "--op and --threshold are required"),
        (["-a", "web", "-e", "cron.run_failed", "-o", "gte"], "--threshold is required"),
        (["-a", "web", "-m", "errors", "-o", "gt", "-t", "5"], "'errors' is not one of"),
        (["-a", "web", "-m", "error_rate", "-o", ">", "-t", "5"], "'>' is not one of"),
        (["-a", "web", "-m", "error_rate", "-o", "gt", "-t", "five"], "--threshold"),
        (["-a", "web", "-m", "error_rate", "-o", "gt", "-t", "5", "-c", ","], "--channel needs a channel name"),
    ],
)
def test_create_usage_errors_exit_2_without_a_request(run, api, args, message):
    result = run("alerts", "create", "high-errors", *args)
    assert result.exit_code == 2
    assert message in result.stderr
    assert api.requests == []


def test_create_reports_the_servers_field_errors(run, api):
    api.on(
        "POST",
        RULES,
        api_error(400, "invalid", "Invalid input.", fields={"channels": ["Unknown channel: pager."]}),
    )
    result = run("alerts", "create", "high-errors", "-a", "web", "-m", "up", "-o", "lt", "-t", "1", "-c", "pager")
    assert result.exit_code == 1
    assert "error: Invalid input. (invalid)" in result.stderr
    assert "channels: Unknown channel: pager." in result.stderr
    assert result.stdout == ""


# -- update ------------------------------------------------------------------------------------


def test_update_sends_only_what_changes(run, api):
    api.on("PATCH", HIGH_ERRORS, reply(200, rule_json(threshold=10.0, for_seconds=300)))

    result = run("alerts", "update", "high-errors", "--threshold", "10", "--for", "5m")

    assert result.exit_code == 0, result.stderr
    assert api.body(api.requests[0]) == {"threshold": 10.0, "for_seconds": 300}
    assert "Updated alert rule high-errors." in result.stderr
    assert "error_rate > 10 over 5m for 5m" in result.stdout


def test_update_disable_and_clear_channels(run, api):
    api.on("PATCH", HIGH_ERRORS, reply(200, rule_json(enabled=False, channels=[])))
    result = run("alerts", "update", "high-errors", "--disabled", "--no-channels", "--json")
    assert result.exit_code == 0, result.stderr
    assert api.body(api.requests[0]) == {"enabled": False, "channels": []}
    assert json.loads(result.stdout)["enabled"] is False


def test_update_to_an_event_rule(run, api):
    api.on("PATCH", HIGH_ERRORS, reply(200, rule_json(metric="event", event_kind="container.crashed")))
    result = run("alerts", "update", "high-errors", "--event", "container.crashed")
    assert result.exit_code == 0, result.stderr
    assert api.body(api.requests[0]) == {"metric": "event", "event_kind": "container.crashed"}


def test_update_an_event_rule_to_a_metric_clears_its_event_kind(run, api):
    api.on("PATCH", RULES + "crashes/", reply(200, rule_json("crashes", metric="restarts")))
    result = run("alerts", "update", "crashes", "--metric", "restarts", "--op", "gte", "-t", "2")
    assert result.exit_code == 0, result.stderr
    # The server refuses an event kind on a metric rule: the old one is cleared in the same change.
    assert api.body(api.requests[0]) == {"metric": "restarts", "event_kind": "", "operator": "gte", "threshold": 2.0}


@pytest.mark.parametrize("option", [["--app", "web"], ["-a", "web"], ["--cron-job", "nightly"], ["-p", "shop"]])
def test_update_cannot_change_what_a_rule_watches(run, api, option):
    result = run("alerts", "update", "high-errors", *option, "--threshold", "10")
    assert result.exit_code == 2
    assert "No such option" in result.stderr
    assert api.requests == []


def test_update_help_offers_no_other_target(run):
    result = run("alerts", "update", "--help")
    assert result.exit_code == 0
    assert "--cron-job" not in result.stdout and "--app" not in result.stdout and "--project" not in result.stdout
    assert "create another rule" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "nothing to change in alert rule high-errors"),
        (["--window", "five"], "--window: 'five' is not a duration"),
        (["-c", "a", "--no-channels"], "--channel or --no-channels, not both"),
    ],
)
def test_update_usage_errors_exit_2_without_a_request(run, api, args, message):
    result = run("alerts", "update", "high-errors", *args)
    assert result.exit_code == 2
    assert message in result.stderr
    assert api.requests == []


def test_update_of_an_unknown_rule_is_an_api_error(run, api):
    api.on("PATCH", RULES + "ghost/", api_error(404, "not_found", "Not found."))
    result = run("alerts", "update", "ghost", "--enabled")
    assert result.exit_code == 1
    assert "Not found. (not_found)" in result.stderr


# -- delete ------------------------------------------------------------------------------------


def test_delete_without_yes_refuses_without_a_request_or_a_prompt(run, api):
    result = run("alerts", "delete", "high-errors", input="y\n")
    assert result.exit_code == 2
    assert "refusing to delete alert rule high-errors without --yes" in result.stderr
    assert "--disabled" in result.stderr
    assert api.requests == []


def test_delete_with_yes_confirms_the_name(run, api):
    api.on("DELETE", HIGH_ERRORS, httpx.Response(204))
    result = run("alerts", "delete", "high-errors", "--yes")
    assert result.exit_code == 0, result.stderr
    assert api.body(api.requests[0]) == {"confirm": "high-errors"}
    assert "Deleted alert rule high-errors." in result.stderr


def test_delete_refused_by_the_api(run, api):
    api.on("DELETE", HIGH_ERRORS, api_error(403, "permission_denied", "You may not manage alerts."))
    result = run("alerts", "delete", "high-errors", "-y")
    assert result.exit_code == 1
    assert "You may not manage alerts. (permission_denied)" in result.stderr


# -- channels ----------------------------------------------------------------------------------


def test_channels_list(run, api):
    api.on(
        "GET",
        CHANNELS,
        page([channel_json()], next_url=CHANNELS + "?cursor=2"),
        page([channel_json("oncall", kind="email", target="a@example.com,b@example.com", signed=False)]),
    )
    result = run("alerts", "channels", "list")
    assert result.exit_code == 0, result.stderr
    header, first, second = result.stdout.splitlines()
    assert header.split() == ["NAME", "KIND", "ENABLED", "SIGNED", "TARGET"]
    assert first.split() == ["ops-hook", "webhook", "yes", "yes", "https://hooks.example.com/panda"]
    assert second.split() == ["oncall", "email", "yes", "no", "a@example.com,b@example.com"]


def test_channels_list_prints_a_masked_target_as_the_api_gives_it(run, api):
    api.on(
        "GET", CHANNELS, page([channel_json("chat", kind="slack", target="https://hooks.slack.com/…", signed=False)])
    )
    result = run("alerts", "channels", "list")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines()[1].split() == ["chat", "slack", "yes", "no", "https://hooks.slack.com/…"]


def test_channels_list_json_and_empty(run, api):
    api.on("GET", CHANNELS, page([]))
    assert json.loads(run("alerts", "channels", "list", "--json").stdout) == []
    result = run("alerts", "channels", "list")
    assert result.stdout == ""
    assert "No notification channels in team acme yet" in result.stderr


def test_channels_create_prints_the_signing_secret_once(run, api):
    api.on("POST", CHANNELS, reply(201, {**channel_json(), "signing_secret": "whsec_123"}))

    result = run("alerts", "channels", "create", "ops-hook", "--kind", "webhook", "--target", "https://h.example/p")

    assert result.exit_code == 0, result.stderr
    assert api.body(api.requests[0]) == {"name": "ops-hook", "kind": "webhook", "target": "https://h.example/p"}
    assert "Signing secret: whsec_123" in result.stdout
    assert "shown only this once" in result.stderr


def test_channels_create_json(run, api):
    answer = {**channel_json(), "signing_secret": "whsec_123"}
    api.on("POST", CHANNELS, reply(201, answer))
    result = run(
        "alerts", "channels", "create", "ops-hook", "-k", "webhook", "--target", "https://h.example/p", "--json"
    )
    assert result.exit_code == 0
    assert json.loads(result.stdout) == answer


def test_channels_create_rejects_an_unknown_kind_without_a_request(run, api):
    result = run("alerts", "channels", "create", "ops", "--kind", "pager", "--target", "x")
    assert result.exit_code == 2
    assert api.requests == []


def test_channels_test(run, api):
    delivery = {"id": 5, "trigger": "test", "subject": "Test", "status": "pending", "attempts": 0}
    api.on("POST", CHANNELS + "ops-hook/test/", reply(202, delivery))
    result = run("alerts", "channels", "test", "ops-hook")
    assert result.exit_code == 0, result.stderr
    assert api.body(api.requests[0]) == {}
    assert "Queued a test notification through channel ops-hook (delivery #5, pending)." in result.stderr
    assert json.loads(run("alerts", "channels", "test", "ops-hook", "--json").stdout) == delivery


def test_alerts_need_a_token(run, api, monkeypatch):
    monkeypatch.delenv("PANDA_TOKEN")
    result = run("alerts", "list")
    assert result.exit_code == 4
    assert api.requests == []


def test_channels_verify_and_resend(run, api):
    verified = channel_json("oncall", kind="email", target="a@example.com", signed=False, verified=True)
    api.on("POST", CHANNELS + "oncall/verify/", reply(200, verified))
    result = run("alerts", "channels", "verify", "oncall", "CODE-1")
    assert result.exit_code == 0, result.stderr
    assert api.body(api.requests[0]) == {"token": "CODE-1"}
    assert "Verified notification channel oncall" in result.stderr
    assert json.loads(run("alerts", "channels", "verify", "oncall", "CODE-1", "--json").stdout) == verified
    api.on("POST", CHANNELS + "oncall/resend-verification/", reply(202, {**verified, "verified": False}))
    result = run("alerts", "channels", "resend-verification", "oncall")
    assert result.exit_code == 0, result.stderr
    assert "Sent a new verification code" in result.stderr
