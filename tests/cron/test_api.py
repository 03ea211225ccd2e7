"""The cron jobs API: create, list, detail, update, delete, run, suspend, resume, runs and their
logs, the platform events list; validation with the one error shape and nothing written; the
plan's quota; who may do what (roles and token scopes)."""

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.cron.models import CronJob, CronRun, RunStatus, Trigger
from apps.cron.schedule import next_run
from apps.deployments.models import App
from apps.events.models import PlatformEvent
from apps.events.services import event_emit
from apps.teams.models import Project
from tests.conftest import assert_error
from tests.cron.conftest import make_job

JOBS = "/api/v1/teams/alpha/cron-jobs/"
FIXED = datetime(2030, 1, 7, 12, 0, tzinfo=UTC)
BODY = {"name": "nightly", "project": "web", "image": "busybox:1.36", "command": ["sh", "-c", "echo hi"]}


def body(**changes):
    data = {**BODY, "schedule": "30 2 * * *", **changes}
    return {key: value for key, value in data.items() if value is not None}


def written():
    """What a refused write must leave untouched."""
    return (
        sorted(CronJob.objects.values_list("name", "schedule", "timezone", "command", "suspended", "next_run_at")),
        CronRun.objects.count(),
        AuditEvent.objects.count(),
    )


def make_run(job, **fields):
    return CronRun.objects.create(team=job.team, job=job, trigger=Trigger.MANUAL, **fields)


# --- create, list, detail ---------------------------------------------------------------------------
def test_create_returns_the_job_with_its_defaults_and_next_run(team_a, client_for):
    owner = client_for(team_a, "owner")
    before = timezone.now()

    response = owner.post(JOBS, body(timezone="Europe/Berlin"), format="json")

    assert response.status_code == 201, response.json()
    data = response.json()
    assert {k: v for k, v in data.items() if k not in ("next_run_at", "created_at")} == {
        "name": "nightly",
        "project": "web",
        "app": None,
        "image": "busybox:1.36",
        "command": ["sh", "-c", "echo hi"],
        "schedule": "30 2 * * *",
        "timezone": "Europe/Berlin",
        "concurrency_policy": "forbid",
        "timeout_seconds": 600,
        "retries": 0,
        "retry_backoff_seconds": 30,
        "starting_deadline_seconds": 60,
        "memory_mb": 256,
        "cpus": 0.5,
        "suspended": False,
        "last_run": None,
    }
    job = CronJob.objects.get(name="nightly")
    assert job.next_run_at == next_run("30 2 * * *", "Europe/Berlin", before)
    assert datetime.fromisoformat(data["next_run_at"]) == job.next_run_at
    [audit] = AuditEvent.objects.filter(action="cron.create")
    assert (audit.target_id, audit.data) == (str(job.pk), {"schedule": "30 2 * * *"})


def test_the_timezone_defaults_to_utc_and_is_shown(team_a, client_for):
    response = client_for(team_a).post(JOBS, body(schedule="@daily"), format="json")
    assert response.status_code == 201, response.json()
    assert response.json()["timezone"] == "UTC"
    next_at = datetime.fromisoformat(response.json()["next_run_at"])
    assert (next_at.hour, next_at.minute, next_at.utcoffset()) == (0, 0, timedelta(0))


def test_an_app_job_is_created_with_the_app_and_no_image(team_a, client_for):
    App.objects.create(team=team_a.team, project=team_a.project, name="api")
    response = client_for(team_a, "developer").post(
        JOBS, body(image=None, app="api", command=["python", "manage.py", "clearsessions"]), format="json"
    )
    assert response.status_code == 201, response.json()
    assert (response.json()["app"], response.json()["image"]) == ("api", "")


def test_list_and_detail_show_the_last_run(team_a, client_for):
    first = make_job(team_a, "first")
    make_job(team_a, "second")
    make_run(first, status=RunStatus.FAILED)
    latest = make_run(first, status=RunStatus.RUNNING, started_at=FIXED)
    viewer = client_for(team_a, "viewer")

    listed = viewer.get(JOBS)
    detail = viewer.get(f"{JOBS}first/")

    assert listed.status_code == 200
    rows = {row["name"]: row for row in listed.json()["results"]}
    assert list(rows) == ["first", "second"]
    assert rows["first"]["last_run"] == {"id": latest.pk, "status": "running", "started_at": "2030-01-07T12:00:00Z"}
    assert rows["second"]["last_run"] is None
    assert detail.status_code == 200
    assert detail.json() == rows["first"]
    assert_error(viewer.get(f"{JOBS}missing/"), 404, "not_found")


def test_another_teams_jobs_are_invisible(team_a, team_b, client_for):
    make_job(team_b, "bravo-job")
    owner = client_for(team_a)
    assert owner.get(JOBS).json()["results"] == []
    assert_error(owner.get(f"{JOBS}bravo-job/"), 404, "not_found")


# --- update, suspend, resume, delete ---------------------------------------------------------------------
def test_update_changes_fields_and_recomputes_next_run_only_for_schedule_changes(team_a, client_for):
    job = make_job(team_a, "nightly", schedule="30 2 * * *", next_run_at=FIXED)
    developer = client_for(team_a, "developer")

    plain = developer.patch(f"{JOBS}nightly/", {"retries": 3, "concurrency_policy": "replace"}, format="json")
    assert plain.status_code == 200, plain.json()
    assert (plain.json()["retries"], plain.json()["concurrency_policy"]) == (3, "replace")
    job.refresh_from_db()
    assert job.next_run_at == FIXED  # nothing about the schedule changed

    before = timezone.now()
    rescheduled = developer.patch(f"{JOBS}nightly/", {"timezone": "America/New_York"}, format="json")
    assert rescheduled.status_code == 200, rescheduled.json()
    job.refresh_from_db()
    assert job.next_run_at == next_run("30 2 * * *", "America/New_York", before)
    assert [a.data for a in AuditEvent.objects.filter(action="cron.update").order_by("id")] == [
        {"retries": 3, "concurrency_policy": "replace"},
        {"timezone": "America/New_York"},
    ]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"schedule": "61 * * * *"}, "schedule"),
        ({"schedule": "0 0 31 2 *"}, "schedule"),
        ({"timezone": "Mars/Phobos"}, "timezone"),
        ({"command": []}, "command"),
        ({"timeout_seconds": 0}, "timeout_seconds"),
        ({"concurrency_policy": "sometimes"}, "concurrency_policy"),
    ],
)
def test_an_invalid_update_changes_nothing(team_a, client_for, change, field):
    make_job(team_a, "nightly", next_run_at=FIXED)
    owner = client_for(team_a)
    before = written()
    error = assert_error(owner.patch(f"{JOBS}nightly/", change, format="json"), 400, "invalid")
    assert field in error["fields"], error
    assert written() == before


def test_suspend_and_resume_through_the_api(team_a, client_for):
    job = make_job(team_a, "nightly", schedule="0 * * * *", next_run_at=FIXED - timedelta(days=3))
    developer = client_for(team_a, "developer")

    suspended = developer.post(f"{JOBS}nightly/suspend/")
    assert suspended.status_code == 200, suspended.json()
    assert suspended.json()["suspended"] is True

    before = timezone.now()
    resumed = developer.post(f"{JOBS}nightly/resume/")
    assert resumed.status_code == 200, resumed.json()
    assert resumed.json()["suspended"] is False
    job.refresh_from_db()
    assert job.next_run_at == next_run("0 * * * *", "UTC", before)
    assert datetime.fromisoformat(resumed.json()["next_run_at"]) == job.next_run_at
    actions = AuditEvent.objects.filter(action__startswith="cron.").order_by("id").values_list("action", flat=True)
    assert list(actions) == ["cron.suspend", "cron.resume"]


def test_delete_needs_the_name_as_confirmation(team_a, client_for):
    job = make_job(team_a, "nightly")
    make_run(job, status=RunStatus.SUCCEEDED)
    owner = client_for(team_a)
    before = written()

    error = assert_error(owner.delete(f"{JOBS}nightly/", {"confirm": "nope"}, format="json"), 400, "invalid")
    assert error["fields"] == {"confirm": ["Must be 'nightly'."]}
    assert written() == before

    assert owner.delete(f"{JOBS}nightly/", {"confirm": "nightly"}, format="json").status_code == 204
    assert not CronJob.objects.exists() and not CronRun.objects.exists()
    assert AuditEvent.objects.filter(action="cron.delete", target_id=str(job.pk)).count() == 1
    assert_error(owner.get(f"{JOBS}nightly/"), 404, "not_found")


# --- runs and logs -------------------------------------------------------------------------------------
def test_runs_are_listed_newest_first_in_cursor_pages(team_a, client_for):
    job = make_job(team_a, "nightly")
    other = make_job(team_a, "other")
    runs = [make_run(job, status=RunStatus.SUCCEEDED) for _ in range(5)]
    make_run(other, status=RunStatus.SUCCEEDED)
    viewer = client_for(team_a, "viewer")

    seen, url, pages = [], f"{JOBS}nightly/runs/?limit=2", 0
    while url:
        response = viewer.get(url)
        assert response.status_code == 200, response.json()
        assert len(response.json()["results"]) <= 2
        seen += [row["id"] for row in response.json()["results"]]
        url, pages = response.json()["next"], pages + 1

    assert seen == [run.pk for run in reversed(runs)]
    assert pages == 3


def test_run_detail_shows_status_exit_code_and_timing(team_a, client_for):
    job = make_job(team_a, "nightly")
    run = make_run(
        job,
        status=RunStatus.FAILED,
        exit_code=3,
        reason="exited with code 3",
        scheduled_for=FIXED,
        started_at=FIXED + timedelta(seconds=1),
        finished_at=FIXED + timedelta(seconds=4, milliseconds=500),
    )
    response = client_for(team_a, "viewer").get(f"{JOBS}nightly/runs/{run.pk}/")
    assert response.status_code == 200
    assert response.json() == {
        "id": run.pk,
        "trigger": "manual",
        "scheduled_for": "2030-01-07T12:00:00Z",
        "attempt": 1,
        "status": "failed",
        "exit_code": 3,
        "reason": "exited with code 3",
        "started_at": "2030-01-07T12:00:01Z",
        "finished_at": "2030-01-07T12:00:04.500000Z",
        "duration_seconds": 3.5,
    }


@pytest.mark.parametrize("run_ref", ["other-job", "abc", "999999"])
def test_a_run_is_only_found_under_its_own_job(team_a, client_for, run_ref):
    make_job(team_a, "nightly")
    other_run = make_run(make_job(team_a, "other"), status=RunStatus.SUCCEEDED)
    ref = str(other_run.pk) if run_ref == "other-job" else run_ref
    viewer = client_for(team_a, "viewer")
    assert_error(viewer.get(f"{JOBS}nightly/runs/{ref}/"), 404, "not_found")
    assert_error(client_for(team_a).get(f"{JOBS}nightly/runs/{ref}/logs/"), 404, "not_found")


@pytest.mark.parametrize(
    ("role", "scopes", "status"),
    [
        ("developer", None, 200),
        ("owner", ["read", "logs"], 200),
        ("viewer", None, 403),
        ("owner", ["read", "deploy"], 403),  # logs need the logs scope
    ],
)
def test_run_logs_need_view_logs(team_a, client_for, role, scopes, status):
    run = make_run(make_job(team_a, "nightly"), status=RunStatus.SUCCEEDED, log_tail="line one\nline two")
    client = client_for(team_a, role, **({"scopes": scopes} if scopes else {}))
    response = client.get(f"{JOBS}nightly/runs/{run.pk}/logs/")
    if status == 200:
        assert response.status_code == 200
        assert response.json() == {"id": run.pk, "status": "succeeded", "log": "line one\nline two"}
    else:
        assert_error(response, 403, "permission_denied")
        assert "line one" not in response.content.decode()


# --- validation -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"schedule": "61 * * * *"}, "schedule"),
        ({"schedule": "* * * * * *"}, "schedule"),
        ({"schedule": "@reboot"}, "schedule"),
        ({"schedule": "garbage"}, "schedule"),
        ({"schedule": "0 0 31 2 *"}, "schedule"),
        ({"schedule": ""}, "schedule"),
        ({"timezone": "Mars/Phobos"}, "timezone"),
        ({"timezone": "europe/berlin"}, "timezone"),
        ({"app": "api"}, "image"),  # both an app and an image
        ({"image": None}, "image"),  # neither
        ({"command": []}, "command"),
        ({"command": "echo hi"}, "command"),
        ({"command": [""]}, "command"),
        ({"command": None}, "command"),
        ({"concurrency_policy": "sometimes"}, "concurrency_policy"),
        ({"timeout_seconds": 0}, "timeout_seconds"),
        ({"retries": 11}, "retries"),
        ({"starting_deadline_seconds": 0}, "starting_deadline_seconds"),
        ({"memory_mb": 8}, "memory_mb"),
        ({"name": "Not A Slug"}, "name"),
        ({"project": "nope"}, "project"),
        ({"image": "bad image!"}, "image"),
    ],
)
def test_invalid_jobs_are_refused_with_the_field_and_nothing_written(team_a, client_for, changes, field):
    App.objects.create(team=team_a.team, project=team_a.project, name="api")
    owner = client_for(team_a)
    before = written()

    error = assert_error(owner.post(JOBS, body(**changes), format="json"), 400, "invalid")

    assert field in error["fields"], error
    assert written() == before


def test_the_schedule_error_says_what_is_wrong(team_a, client_for):
    error = assert_error(client_for(team_a).post(JOBS, body(schedule="@reboot"), format="json"), 400, "invalid")
    assert error["fields"]["schedule"] == [
        "Unknown shortcut; use one of @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly."
    ]


@pytest.mark.parametrize("app_name", ["elsewhere", "missing"])
def test_the_app_must_exist_in_the_jobs_project(team_a, team_b, client_for, app_name):
    other = Project.objects.create(team=team_a.team, slug="other", name="Other")
    App.objects.create(team=team_a.team, project=other, name="elsewhere")
    App.objects.create(team=team_b.team, project=team_b.project, name="missing")  # another team's
    owner = client_for(team_a)
    before = written()

    response = owner.post(JOBS, body(image=None, app=app_name), format="json")

    error = assert_error(response, 400, "invalid")
    assert "app" in error["fields"], error
    assert written() == before


def test_a_name_is_unique_in_the_team(team_a, client_for):
    make_job(team_a, "nightly")
    owner = client_for(team_a)
    before = written()
    error = assert_error(owner.post(JOBS, body(), format="json"), 400, "invalid")
    assert error["fields"] == {"name": ["Already taken."]}
    assert written() == before


# --- quota and permissions ---------------------------------------------------------------------------------
def test_the_plans_max_cron_jobs_is_enforced(team_a, client_for):
    for name in ("one", "two", "three"):
        make_job(team_a, name)
    owner = client_for(team_a)
    before = written()

    error = assert_error(owner.post(JOBS, body(), format="json"), 403, "quota_exceeded")

    assert (error["limit"], error["maximum"], error["current"], error["requested"], error["plan"]) == (
        "max_cron_jobs",
        3,
        3,
        1,
        "free",
    )
    assert written() == before


@pytest.mark.parametrize(
    ("role", "scopes", "status"),
    [
        ("owner", None, 201),
        ("admin", None, 201),
        ("developer", None, 201),
        ("developer", ["read", "deploy"], 201),
        ("viewer", None, 403),
        ("owner", ["read"], 403),  # manage_cron needs the deploy scope
        ("owner", ["read", "logs", "secrets", "infra", "admin"], 403),
    ],
)
def test_who_may_create_a_job(team_a, client_for, role, scopes, status):
    client = client_for(team_a, role, **({"scopes": scopes} if scopes else {}))
    before = written()
    response = client.post(JOBS, body(), format="json")
    if status == 201:
        assert response.status_code == 201, response.json()
        assert CronJob.objects.filter(name="nightly").exists()
    else:
        assert_error(response, 403, "permission_denied")
        assert written() == before


@pytest.mark.parametrize(
    ("method", "path", "data"),
    [
        ("patch", "nightly/", {"retries": 1}),
        ("delete", "nightly/", {"confirm": "nightly"}),
        ("post", "nightly/run/", None),
        ("post", "nightly/suspend/", None),
        ("post", "nightly/resume/", None),
    ],
)
@pytest.mark.parametrize(("role", "scopes"), [("viewer", None), ("owner", ["read", "logs"])])
def test_viewers_and_tokens_without_deploy_cannot_change_jobs(team_a, client_for, method, path, data, role, scopes):
    make_job(team_a, "nightly", next_run_at=FIXED)
    client = client_for(team_a, role, **({"scopes": scopes} if scopes else {}))
    before = written()
    response = getattr(client, method)(f"{JOBS}{path}", data, format="json")
    assert_error(response, 403, "permission_denied")
    assert written() == before
    # ... while they can still read it.
    assert client.get(f"{JOBS}nightly/").status_code == 200
    assert client.get(f"{JOBS}nightly/runs/").status_code == 200


def test_a_developer_can_run_suspend_and_resume(team_a, client_for):
    make_job(team_a, "nightly", next_run_at=FIXED)
    developer = client_for(team_a, "developer", scopes=["read", "deploy"])
    assert developer.post(f"{JOBS}nightly/run/").status_code == 202
    assert developer.post(f"{JOBS}nightly/suspend/").status_code == 200
    assert developer.post(f"{JOBS}nightly/resume/").status_code == 200
    assert CronRun.objects.get().trigger == Trigger.MANUAL


# --- platform events --------------------------------------------------------------------------------------
def test_events_are_listed_per_team_newest_first_and_filtered_by_kind(team_a, team_b, client_for):
    job = make_job(team_a, "nightly")
    bravo_job = make_job(team_b, "bravo-job")
    failed = event_emit(team=team_a.team, kind="cron.run_failed", subject=job, message="m1", severity="error")
    missed = event_emit(team=team_a.team, kind="cron.run_missed", subject=job, message="m2", severity="warning")
    event_emit(team=team_b.team, kind="cron.run_failed", subject=bravo_job, message="bravo's", severity="error")
    viewer = client_for(team_a, "viewer")

    everything = viewer.get("/api/v1/teams/alpha/events/")
    only_failed = viewer.get("/api/v1/teams/alpha/events/", {"kind": "cron.run_failed"})

    assert everything.status_code == 200
    assert [row["id"] for row in everything.json()["results"]] == [missed.pk, failed.pk]
    assert [row["id"] for row in only_failed.json()["results"]] == [failed.pk]
    row = only_failed.json()["results"][0]
    assert {k: row[k] for k in ("kind", "severity", "subject_type", "subject_id", "subject_label", "message")} == {
        "kind": "cron.run_failed",
        "severity": "error",
        "subject_type": "cron.cronjob",
        "subject_id": str(job.pk),
        "subject_label": "nightly",
        "message": "m1",
    }
    assert PlatformEvent.objects.count() == 3
