"""Alert rule services: what a valid rule is (with every wrong field named at once), that every
change is audited, and that a changed condition, disabling or deleting starts the rule again from
ok without leaving an incident waiting for a firing that will never resolve."""

import threading
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection, transaction
from django.utils import timezone

from apps.alerts.evaluation import evaluate_rules
from apps.alerts.models import AlertRule, Incident, IncidentAlert
from apps.alerts.rules import EVENT_KINDS, rule_delete, rule_update
from apps.alerts.services import channel_create
from apps.audit.models import AuditEvent
from apps.core.errors import ValidationFailed
from apps.cron.models import CronJob
from apps.deployments.models import App
from apps.teams.models import Project
from tests.alerts.conftest import AlertWorld, ctx_of
from tests.conftest import TeamWorld


def refused(aw: AlertWorld, **fields: Any) -> dict[str, list[str]]:
    """The field errors of creating rule "bad" with `fields` on top of a valid app rule."""
    before = AlertRule.objects.count()
    with pytest.raises(ValidationFailed) as caught:
        aw.rule("bad", **fields)
    assert AlertRule.objects.count() == before
    return caught.value.fields


def test_an_app_rule_takes_its_apps_project_and_starts_ok(aw: AlertWorld):
    rule = aw.rule(channels=[aw.ops, aw.mail, aw.ops])
    assert (rule.project, rule.state, rule.enabled) == (aw.world.project, "ok", True)
    assert rule.state_since is not None and rule.last_value is None
    assert sorted(rule.channels.values_list("name", flat=True)) == ["mail", "ops"]
    audit = AuditEvent.objects.get(action="alert_rule.create")
    assert (audit.target_label, audit.data["metric"], audit.data["channels"]) == (
        "errors",
        "error_rate",
        ["ops", "mail"],
    )


def test_cron_job_and_project_rules(aw: AlertWorld):
    job_rule = aw.rule(
        "nightly-fails", scope="cron_job", app=None, cron_job=aw.job, metric="event", event_kind="cron.run_failed"
    )
    assert job_rule.project == aw.world.project
    project_rule = aw.rule(
        "deploys", scope="project", app=None, project=aw.world.project, metric="event", event_kind="deployment.failed"
    )
    assert (project_rule.app, project_rule.cron_job) == (None, None)
    app_events = aw.rule("crashes", metric="event", event_kind="container.crashed")
    assert app_events.event_kind == "container.crashed"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"app": None}, "app"),
        ({"scope": "cron_job"}, "cron_job"),  # and the app is not for this scope
        ({"scope": "cron_job", "app": None, "cron_job": "@job"}, "metric"),  # metrics are per app
        ({"scope": "project", "app": None}, "project"),
        ({"scope": "project", "app": None, "project": "@project"}, "metric"),
        ({"scope": "project", "project": "@project", "metric": "event", "event_kind": "deployment.failed"}, "app"),
        ({"scope": "galaxy"}, "scope"),
        ({"metric": "happiness"}, "metric"),
        ({"metric": "event"}, "event_kind"),
        ({"metric": "event", "event_kind": "alert.firing"}, "event_kind"),  # not a kind rules can count
        ({"metric": "event", "event_kind": "cron.run_failed"}, "event_kind"),  # about cron jobs, not apps
        ({"event_kind": "container.crashed"}, "event_kind"),  # only for metric event
        ({"operator": "ne"}, "operator"),
        ({"threshold": float("nan")}, "threshold"),
        ({"threshold": float("inf")}, "threshold"),
        ({"threshold": "5"}, "threshold"),
        ({"window_seconds": 9}, "window_seconds"),
        ({"window_seconds": 86401}, "window_seconds"),
        ({"window_seconds": 20}, "window_seconds"),  # a metric reads at least 3 whole 10-second buckets
        ({"window_seconds": 45}, "window_seconds"),  # not whole buckets
        ({"window_seconds": 6 * 3600 + 10}, "window_seconds"),  # longer than raw metrics are kept
        ({"metric": "up", "window_seconds": 15}, "window_seconds"),
        ({"metric": "event", "event_kind": "container.crashed", "window_seconds": 9}, "window_seconds"),
        ({"metric": "event", "event_kind": "container.crashed", "window_seconds": 86401}, "window_seconds"),
        ({"for_seconds": -1}, "for_seconds"),
        ({"for_seconds": 86401}, "for_seconds"),
        ({"severity": "meh"}, "severity"),
        ({"project": "@elsewhere"}, "project"),  # the app is in "web"
    ],
)
def test_invalid_rules_are_refused_with_the_field_named(aw: AlertWorld, fields: dict[str, Any], field: str):
    elsewhere = Project.objects.create(team=aw.team, slug="data", name="Data")
    objects = {"@job": aw.job, "@project": aw.world.project, "@elsewhere": elsewhere}
    fields = {key: objects.get(value, value) if isinstance(value, str) else value for key, value in fields.items()}
    errors = refused(aw, **fields)
    assert field in errors, errors
    assert all(isinstance(m, str) and m for m in errors[field])


def test_metric_windows_are_whole_raw_buckets_within_their_retention_event_windows_any_length(aw: AlertWorld, settings):
    assert aw.rule("shortest", window_seconds=30).window_seconds == 30
    assert aw.rule("longest", window_seconds=6 * 3600).window_seconds == 6 * 3600
    message = refused(aw, window_seconds=25)["window_seconds"][0]
    assert "multiple of 10 seconds, at least 30" in message
    settings.PANDASTACK_METRICS_RETENTION = {**settings.PANDASTACK_METRICS_RETENTION, 10: 3600}
    message = refused(aw, window_seconds=3610)["window_seconds"][0]
    assert message.startswith("At most 3600 seconds for a metric rule")
    events = {"metric": "event", "event_kind": "container.crashed"}
    assert aw.rule("events-short", **events, window_seconds=15).window_seconds == 15
    assert aw.rule("events-long", **events, window_seconds=86400).window_seconds == 86400
    # Turning an event rule into a metric one checks its window again.
    rule = AlertRule.objects.get(name="events-short")
    with pytest.raises(ValidationFailed) as caught:
        rule_update(ctx=aw.ctx, rule=rule, metric="requests", event_kind="")
    assert set(caught.value.fields) == {"window_seconds"}
    with pytest.raises(ValidationFailed) as caught:
        rule_update(ctx=aw.ctx, rule=aw.rule("metric"), window_seconds=35)
    assert set(caught.value.fields) == {"window_seconds"}


def test_every_wrong_field_is_named_at_once(aw: AlertWorld):
    errors = refused(aw, app=None, operator="x", window_seconds=5, severity="loud")
    assert {"app", "operator", "window_seconds", "severity"} <= set(errors)


def test_a_taken_name_and_a_bad_name_are_refused(aw: AlertWorld):
    aw.rule("errors")
    with pytest.raises(ValidationFailed) as caught:
        aw.rule("errors")
    assert "name" in caught.value.fields
    with pytest.raises(ValidationFailed) as caught:
        aw.rule("Not A Slug")
    assert "name" in caught.value.fields


def test_a_name_taken_by_a_concurrent_create_is_refused_like_any_taken_name(transactional_db, aw: AlertWorld):
    """Two creates of one name at once both pass the existence check; the second insert then hits the
    unique constraint, which must be the same 'already taken' as the check (not a server error)."""
    inserted, release = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def first() -> None:
        try:
            with transaction.atomic():
                aw.rule("errors")
                inserted.set()
                release.wait(timeout=10)
        except BaseException as exc:  # reported by the test thread
            errors.append(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=first)
    thread.start()
    assert inserted.wait(timeout=10)
    # The first create has inserted the row and not committed: this one's check does not see it, and
    # its insert waits for the first transaction, which commits a little later.
    threading.Timer(0.5, release.set).start()
    with pytest.raises(ValidationFailed) as caught:
        aw.rule("errors")
    thread.join(timeout=10)
    assert not errors, errors
    assert caught.value.fields == {"name": ["Already taken."]}
    assert AlertRule.objects.filter(name="errors").count() == 1


def test_another_teams_resources_and_channels_are_refused(aw: AlertWorld, team_b: TeamWorld):
    theirs = ctx_of(team_b)
    their_app = App.objects.create(team=team_b.team, project=team_b.project, name="their-app")
    their_job = CronJob.objects.create(
        team=team_b.team, project=team_b.project, name="their-job", image="busybox", command=["true"], schedule="@daily"
    )
    their_channel, _ = channel_create(ctx=theirs, name="theirs", kind="email", target="x@example.com")
    assert "app" in refused(aw, app=their_app)
    assert "cron_job" in refused(
        aw, scope="cron_job", app=None, cron_job=their_job, metric="event", event_kind="cron.run_failed"
    )
    assert "project" in refused(
        aw, scope="project", app=None, project=team_b.project, metric="event", event_kind="cron.run_failed"
    )
    assert "channels" in refused(aw, channels=[aw.ops, their_channel])


def test_every_documented_kind_is_accepted_for_its_scope_and_for_a_project(aw: AlertWorld):
    targets = {
        "app": {"app": aw.app},
        "cron_job": {"app": None, "cron_job": aw.job},
        "database": {"app": None, "database": aw.database},
    }
    assert {scope for scope, _ in EVENT_KINDS.values()} == set(targets)
    for n, (kind, (scope, _)) in enumerate(EVENT_KINDS.items()):
        aw.rule(f"own-{n}", scope=scope, metric="event", event_kind=kind, **targets[scope])
        aw.rule(f"project-{n}", scope="project", app=None, project=aw.world.project, metric="event", event_kind=kind)
    assert AlertRule.objects.count() == 2 * len(EVENT_KINDS)


# --- updates ------------------------------------------------------------------------------------------
def firing_rule(aw: AlertWorld) -> tuple[AlertRule, Incident]:
    rule = aw.rule()
    now = timezone.now()
    aw.traffic(now - timedelta(seconds=30), errors=50)
    evaluate_rules(now=now)
    rule.refresh_from_db()
    assert rule.state == "firing"
    return rule, Incident.objects.get()


def test_changing_the_severity_or_channels_keeps_the_state(aw: AlertWorld):
    rule, _ = firing_rule(aw)
    rule = rule_update(ctx=aw.ctx, rule=rule, severity="critical", channels=[aw.mail])
    rule.refresh_from_db()
    assert (rule.state, rule.severity) == ("firing", "critical")
    assert list(rule.channels.values_list("name", flat=True)) == ["mail"]
    audit = AuditEvent.objects.get(action="alert_rule.update")
    assert audit.data == {"severity": "critical", "channels": ["mail"]}
    assert IncidentAlert.objects.get().resolved_at is None


@pytest.mark.parametrize("changes", [{"threshold": 80}, {"window_seconds": 60}, {"enabled": False}])
def test_a_changed_condition_or_disabling_starts_over_from_ok_and_closes_the_firing(
    aw: AlertWorld, changes: dict[str, Any]
):
    rule, incident = firing_rule(aw)
    rule_update(ctx=aw.ctx, rule=rule, **changes)
    rule.refresh_from_db()
    assert (rule.state, rule.pending_since, rule.last_value) == ("ok", None, None)
    assert IncidentAlert.objects.get().resolved_at is not None
    incident.refresh_from_db()
    assert (incident.status, incident.resolved_by) == ("resolved", "auto")  # nothing else fired in it


def test_update_refuses_bad_values_and_fields_it_does_not_change(aw: AlertWorld):
    rule = aw.rule()
    with pytest.raises(ValidationFailed) as caught:
        rule_update(ctx=aw.ctx, rule=rule, metric="event")  # no event kind
    assert "event_kind" in caught.value.fields
    with pytest.raises(ValidationFailed) as caught:
        rule_update(ctx=aw.ctx, rule=rule, scope="project", name="renamed")
    assert set(caught.value.fields) == {"scope", "name"}
    rule.refresh_from_db()
    assert (rule.metric, rule.name, rule.scope) == ("error_rate", "errors", "app")
    assert not AuditEvent.objects.filter(action="alert_rule.update").exists()


def test_an_update_without_changes_writes_nothing(aw: AlertWorld):
    rule = aw.rule()
    assert rule_update(ctx=aw.ctx, rule=rule) == rule
    assert not AuditEvent.objects.filter(action="alert_rule.update").exists()


# --- deletes ------------------------------------------------------------------------------------------
def test_delete_needs_the_rules_name_and_closes_its_firing(aw: AlertWorld):
    rule, incident = firing_rule(aw)
    with pytest.raises(ValidationFailed) as caught:
        rule_delete(ctx=aw.ctx, rule=rule, confirm="nope")
    assert "confirm" in caught.value.fields
    assert AlertRule.objects.filter(pk=rule.pk).exists()

    rule_delete(ctx=aw.ctx, rule=rule, confirm="errors")
    assert not AlertRule.objects.exists()
    alert = IncidentAlert.objects.get()
    assert (alert.rule, alert.rule_name) == (None, "errors") and alert.resolved_at is not None
    incident.refresh_from_db()
    assert incident.status == "resolved"
    assert AuditEvent.objects.filter(action="alert_rule.delete", target_label="errors").count() == 1
