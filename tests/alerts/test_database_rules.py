"""Alert rules scoped to a managed database: what a valid one is, that it counts the events about
its database only (emitted the way apps.databases emits them), that a database's deletion (soft:
status "deleted", or the row going) stops its rules and closes their firings, and the API by name."""

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from apps.alerts.evaluation import evaluate_rules
from apps.alerts.models import AlertRule, Incident
from apps.alerts.rules import rule_update
from apps.core.errors import ValidationFailed
from apps.databases.models import Database, DatabaseStatus
from apps.events.models import PlatformEvent, Severity
from apps.events.services import event_emit
from tests.alerts.conftest import AlertWorld, make_database
from tests.conftest import TeamWorld, assert_error

RULES = "/api/v1/teams/alpha/alert-rules/"
BACKUPS_RULE = {
    "name": "backups",
    "scope": "database",
    "database": "main",
    "metric": "event",
    "event_kind": "database.backup_failed",
    "threshold": 0,
    "window_seconds": 600,
    "channels": ["ops"],
}


def database_rule(aw: AlertWorld, name: str = "backups", **fields: Any) -> AlertRule:
    """A rule firing on any database.backup_failed of "main" in the last 10 minutes (override any field)."""
    defaults: dict[str, Any] = {
        "scope": "database",
        "app": None,
        "database": aw.database,
        "metric": "event",
        "event_kind": "database.backup_failed",
        "threshold": 0,
        "window_seconds": 600,
    }
    return aw.rule(name, **(defaults | fields))


def backup_failed(database: Database) -> PlatformEvent:
    """The event apps.databases.backups emits when a backup fails."""
    return event_emit(
        team=database.team,
        kind="database.backup_failed",
        subject=database,
        severity=Severity.ERROR,
        message=f"{database.name}: backup #1 failed: disk full",
        data={"backup": 1, "trigger": "manual"},
    )


def evaluate() -> dict[str, int]:
    return evaluate_rules(now=timezone.now() + timedelta(seconds=1))


# --- rules --------------------------------------------------------------------------------------------
def test_a_database_rule_takes_its_databases_project_and_watches_it(aw: AlertWorld):
    rule = database_rule(aw)
    assert (rule.scope, rule.project, rule.target, rule.app, rule.cron_job) == (
        "database",
        aw.world.project,
        aw.database,
        None,
        None,
    )
    assert rule.condition_text() == "database.backup_failed events of main in 600s > 0"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"database": None}, "database"),
        ({"scope": "app", "app": "@app"}, "database"),  # a database is for scope database only
        ({"scope": "project", "project": "@project"}, "database"),
        ({"metric": "error_rate", "event_kind": "", "window_seconds": 300}, "metric"),  # metrics are per app
        ({"event_kind": "cron.run_failed"}, "event_kind"),  # about cron jobs
        ({"event_kind": "container.crashed"}, "event_kind"),  # about apps
        ({"project": "@elsewhere"}, "project"),  # the database is in "web"
    ],
)
def test_invalid_database_rules_are_refused_with_the_field_named(aw: AlertWorld, fields: dict[str, Any], field: str):
    from apps.teams.models import Project

    elsewhere = Project.objects.create(team=aw.team, slug="data", name="Data")
    objects = {"@app": aw.app, "@project": aw.world.project, "@elsewhere": elsewhere}
    fields = {key: objects.get(value, value) if isinstance(value, str) else value for key, value in fields.items()}
    with pytest.raises(ValidationFailed) as caught:
        database_rule(aw, "bad", **fields)
    assert field in caught.value.fields, caught.value.fields
    assert not AlertRule.objects.exists()


def test_an_app_rule_cannot_count_database_events_a_project_rule_can(aw: AlertWorld):
    with pytest.raises(ValidationFailed) as caught:
        aw.rule("bad", metric="event", event_kind="database.backup_failed")
    assert caught.value.fields["event_kind"] == [
        "database.backup_failed events are counted by a rule of scope database or project."
    ]
    rule = aw.rule(
        "all-backups", scope="project", app=None, project=aw.world.project, metric="event",
        event_kind="database.backup_failed",
    )  # fmt: skip
    assert rule.database is None


def test_another_teams_database_and_a_deleted_database_are_refused(aw: AlertWorld, team_b: TeamWorld):
    theirs = make_database(team_b, "theirs")
    gone = make_database(aw.world, "gone", status=DatabaseStatus.DELETED)
    for database, message in ((theirs, "Not in this team."), (gone, "This database is deleted.")):
        with pytest.raises(ValidationFailed) as caught:
            database_rule(aw, "bad", database=database)
        assert message in caught.value.fields["database"]
    assert not AlertRule.objects.exists()


# --- evaluation ---------------------------------------------------------------------------------------
def test_a_database_rule_fires_on_its_databases_backup_failure_only(aw: AlertWorld):
    other = make_database(aw.world, "other")
    mine = database_rule(aw)
    theirs = database_rule(aw, "other-backups", database=other)
    restores = database_rule(aw, "restores", event_kind="database.restore_failed")

    evaluate()
    assert {r.name: r.state for r in AlertRule.objects.all()} == {
        "backups": "ok",
        "other-backups": "ok",
        "restores": "ok",
    }

    backup_failed(aw.database)
    summary = evaluate()

    assert summary["fired"] == 1
    for rule in (mine, theirs, restores):
        rule.refresh_from_db()
    assert (mine.state, mine.last_value) == ("firing", 1.0)
    assert (theirs.state, theirs.last_value) == ("ok", 0.0)
    assert (restores.state, restores.last_value) == ("ok", 0.0)
    incident = Incident.objects.get()
    assert [a.rule_name for a in incident.alerts.all()] == ["backups"]
    firing = PlatformEvent.objects.get(kind="alert.firing")
    assert (firing.subject_type, firing.subject_id) == ("databases.database", str(aw.database.pk))
    assert firing.data["database"] == "main" and firing.data["scope"] == "database"
    delivery = aw.ops.deliveries.get(trigger="alert")
    assert delivery.payload["database"] == "main"


def test_a_deleted_databases_rules_stop_and_their_firing_is_closed(aw: AlertWorld):
    rule = database_rule(aw)
    backup_failed(aw.database)
    evaluate()
    incident = Incident.objects.get()
    assert incident.status == "open"

    # What apps.databases.tasks.database_deprovision does at the end.
    Database.objects.filter(pk=aw.database.pk).update(status=DatabaseStatus.DELETED, deleted_at=timezone.now())
    assert evaluate()["skipped"] == 1

    rule.refresh_from_db()
    incident.refresh_from_db()
    assert (rule.state, rule.last_value, rule.enabled) == ("ok", None, True)
    assert (incident.status, incident.resolved_by) == ("resolved", "auto")
    assert incident.alerts.get().resolved_at is not None
    assert not PlatformEvent.objects.filter(kind="alert.resolved").exists()  # nothing recovered
    evaluated_at = rule.last_evaluated_at

    # From then on it is left alone, whatever its old events say.
    backup_failed(aw.database)
    assert evaluate() == dict.fromkeys(("evaluated", "pending", "fired", "resolved", "skipped", "errors"), 0)
    rule.refresh_from_db()
    assert (rule.state, rule.last_evaluated_at) == ("ok", evaluated_at)

    # Its owners may still switch it off.
    assert rule_update(ctx=aw.ctx, rule=rule, enabled=False).enabled is False


def test_a_new_database_of_a_deleted_ones_name_is_not_watched_by_the_old_rule(aw: AlertWorld):
    rule = database_rule(aw)
    Database.objects.filter(pk=aw.database.pk).update(status=DatabaseStatus.DELETED)
    reborn = make_database(aw.world, "main")
    backup_failed(reborn)
    evaluate()
    rule.refresh_from_db()
    assert rule.state == "ok"
    assert database_rule(aw, "new-backups", database=reborn).database == reborn


def test_deleting_a_database_row_deletes_its_rules_and_closes_their_firing(aw: AlertWorld):
    aw.rule("errors")
    database_rule(aw)
    aw.traffic(timezone.now() - timedelta(seconds=30), errors=50)
    backup_failed(aw.database)
    evaluate()
    incident = Incident.objects.get()
    assert incident.alerts.filter(resolved_at__isnull=True).count() == 2

    aw.database.delete()

    assert list(AlertRule.objects.values_list("name", flat=True)) == ["errors"]
    closed = incident.alerts.get(rule_name="backups")
    assert (closed.rule, closed.resolved_at is not None) == (None, True)
    incident.refresh_from_db()
    assert incident.status == "open"  # "errors" still fires in it


# --- API ----------------------------------------------------------------------------------------------
def test_create_and_show_a_database_rule_by_name(aw: AlertWorld, client_for):
    make_database(aw.world, "main-old", status=DatabaseStatus.DELETED)
    client = client_for(aw.world, "developer")
    response = client.post(RULES, BACKUPS_RULE, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["scope"], body["database"], body["project"], body["app"], body["cron_job"]) == (
        "database",
        "main",
        "web",
        None,
        None,
    )
    assert client.get(f"{RULES}backups/").json() == body
    assert AlertRule.objects.get().database == aw.database
    listed = client.get(RULES).json()["results"]
    assert [(r["name"], r["database"]) for r in listed] == [("backups", "main")]


def test_the_living_database_of_a_name_is_the_one_a_rule_watches(aw: AlertWorld, client_for):
    Database.objects.filter(pk=aw.database.pk).update(status=DatabaseStatus.DELETED)
    reborn = make_database(aw.world, "main")
    response = client_for(aw.world, "owner").post(RULES, BACKUPS_RULE, format="json")
    assert response.status_code == 201, response.json()
    assert AlertRule.objects.get().database == reborn


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"database": "nope"}, "database"),
        ({"database": "gone"}, "database"),  # deleted: no such database any more
        ({"database": "theirs"}, "database"),  # another team's
        ({"database": None}, "database"),
        ({"database": 7}, "database"),
        ({"scope": "app", "app": "api"}, "database"),
        ({"metric": "requests", "event_kind": ""}, "metric"),
        ({"event_kind": "cron.run_failed"}, "event_kind"),
    ],
)
def test_bad_database_rules_are_400_with_the_field_named(
    aw: AlertWorld, team_b: TeamWorld, client_for, body: dict[str, Any], field: str
):
    make_database(aw.world, "gone", status=DatabaseStatus.DELETED)
    make_database(team_b, "theirs")
    error = assert_error(
        client_for(aw.world, "owner").post(RULES, {**BACKUPS_RULE, **body}, format="json"), 400, "invalid"
    )
    assert field in error["fields"], error
    assert not AlertRule.objects.exists()


def test_a_database_rule_cannot_be_moved_to_another_database(aw: AlertWorld, client_for):
    make_database(aw.world, "other")
    database_rule(aw)
    client = client_for(aw.world, "owner")
    error = assert_error(client.patch(f"{RULES}backups/", {"database": "other", "threshold": 3}, format="json"), 400)
    assert "database" in error["fields"]
    assert (AlertRule.objects.get().database, AlertRule.objects.get().threshold) == (aw.database, 0)


def test_another_teams_database_rule_is_404(aw: AlertWorld, team_b: TeamWorld, client_for):
    database_rule(aw)
    assert_error(client_for(team_b, "owner").get("/api/v1/teams/beta/alert-rules/backups/"), 404, "not_found")
    assert_error(client_for(team_b, "owner").get(f"{RULES}backups/"), 404)
