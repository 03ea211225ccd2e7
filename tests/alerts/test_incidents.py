"""Incident services: acknowledging, resolving and writing them up (each audited and in the timeline),
and the timeline itself: the project's events from the lookback before the incident opened until it
resolved, plus the incident's own events, oldest first."""

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.alerts.evaluation import evaluate_rules
from apps.alerts.incidents import incident_acknowledge, incident_resolve, incident_timeline, incident_update
from apps.alerts.models import AlertRule, Incident
from apps.audit.models import AuditEvent
from apps.core.errors import Conflict, ValidationFailed
from apps.deployments.models import App
from apps.events.models import PlatformEvent, Severity
from apps.events.services import event_emit
from apps.teams.models import Project
from tests.alerts.conftest import AlertWorld, ctx_of


@pytest.fixture
def incident(aw: AlertWorld) -> Incident:
    """Incident #1, opened by the rule "errors" on the app "api" firing."""
    aw.rule()
    now = timezone.now()
    aw.traffic(now - timedelta(seconds=30), errors=50)
    evaluate_rules(now=now)
    return Incident.objects.get()


def emit(subject, kind: str, message: str = "something happened") -> PlatformEvent:
    return event_emit(team=subject.team, kind=kind, subject=subject, message=message, severity=Severity.INFO)


def test_acknowledge_then_resolve_by_hand(aw: AlertWorld, incident: Incident):
    developer = aw.world.user("developer")
    ctx = ctx_of(aw.world, "developer")
    incident = incident_acknowledge(ctx=ctx, incident=incident)
    assert (incident.status, incident.acknowledged_by) == ("acknowledged", developer.email)
    acknowledged_at = incident.acknowledged_at
    assert incident_acknowledge(ctx=ctx, incident=incident).acknowledged_at == acknowledged_at  # again: nothing
    assert AuditEvent.objects.filter(action="incident.acknowledge").count() == 1

    incident = incident_resolve(ctx=ctx, incident=incident)
    assert (incident.status, incident.resolved_by) == ("resolved", developer.email)
    assert incident.resolved_at is not None
    assert AuditEvent.objects.filter(action="incident.resolve", target_id=str(incident.pk)).count() == 1
    ours = PlatformEvent.objects.filter(subject_type="alerts.incident").order_by("id")
    assert list(ours.values_list("kind", flat=True)) == [
        "incident.opened",
        "incident.acknowledged",
        "incident.resolved",
    ]

    with pytest.raises(Conflict):
        incident_acknowledge(ctx=ctx, incident=incident)
    with pytest.raises(Conflict):
        incident_resolve(ctx=ctx, incident=incident)
    assert AuditEvent.objects.filter(action__startswith="incident.").count() == 2


def test_a_firing_rule_in_an_incident_resolved_by_hand_resolves_quietly_later(aw: AlertWorld, incident: Incident):
    incident_resolve(ctx=aw.ctx, incident=incident)
    evaluate_rules(now=timezone.now() + timedelta(seconds=1000))
    incident.refresh_from_db()
    assert incident.resolved_by == aw.world.user("owner").email  # not "auto"
    assert incident.alerts.get().resolved_at is not None
    assert PlatformEvent.objects.filter(kind="incident.resolved").count() == 1


def test_update_title_and_postmortem(aw: AlertWorld, incident: Incident):
    incident = incident_update(ctx=aw.ctx, incident=incident, title="  API errors after deploy #7 ")
    incident = incident_update(ctx=aw.ctx, incident=incident, postmortem="## What happened\n\nA bad release.")
    incident.refresh_from_db()
    assert (incident.title, incident.postmortem) == ("API errors after deploy #7", "## What happened\n\nA bad release.")
    assert [a.data for a in AuditEvent.objects.filter(action="incident.update").order_by("id")] == [
        {"fields": ["title"]},
        {"fields": ["postmortem"]},
    ]
    assert PlatformEvent.objects.filter(kind="incident.updated").count() == 2
    # The same values again change nothing and write nothing.
    incident_update(ctx=aw.ctx, incident=incident, title="API errors after deploy #7", postmortem=incident.postmortem)
    assert AuditEvent.objects.filter(action="incident.update").count() == 2
    for bad in ("", "   ", "t" * 201):
        with pytest.raises(ValidationFailed) as caught:
            incident_update(ctx=aw.ctx, incident=incident, title=bad)
        assert "title" in caught.value.fields


def test_the_timeline_is_the_projects_events_around_the_incident_oldest_first(
    aw: AlertWorld, incident: Incident, settings
):
    settings.PANDASTACK_INCIDENT_LOOKBACK_SECONDS = 600
    elsewhere = Project.objects.create(team=aw.team, slug="data", name="Data")
    etl = App.objects.create(team=aw.team, project=elsewhere, name="etl")
    before = emit(aw.app, "deployment.succeeded", "api: deployment #7 is live")
    long_before = emit(aw.app, "deployment.succeeded", "api: deployment #6 is live")
    PlatformEvent.objects.filter(pk=before.pk).update(created_at=incident.created_at - timedelta(seconds=300))
    PlatformEvent.objects.filter(pk=long_before.pk).update(created_at=incident.created_at - timedelta(seconds=601))
    emit(etl, "container.crashed")  # another project
    crashed = emit(aw.app, "container.crashed")
    emit(aw.job, "cron.run_failed")  # same project: in the timeline

    # Still open: everything of the project until now.
    kinds = list(incident_timeline(incident).values_list("kind", "subject_label"))
    assert kinds == [
        ("alert.firing", "api"),
        ("incident.opened", str(incident)),
        ("deployment.succeeded", "api"),  # moved 5 minutes back in time, but newer by id
        ("container.crashed", "api"),
        ("cron.run_failed", "nightly"),
    ]
    assert incident_timeline(incident).first().kind == "alert.firing"
    assert crashed.pk in incident_timeline(incident).values_list("pk", flat=True)
    assert long_before.pk not in incident_timeline(incident).values_list("pk", flat=True)

    # Resolved: later events of the project are not in it, later events of the incident are.
    evaluate_rules(now=timezone.now() + timedelta(seconds=1000))
    incident.refresh_from_db()
    assert incident.status == "resolved"
    emit(aw.app, "deployment.failed")
    incident_update(ctx=aw.ctx, incident=incident, postmortem="Written the next day.")
    kinds = list(incident_timeline(incident).values_list("kind", flat=True))
    assert "deployment.failed" not in kinds
    assert kinds[-3:] == ["alert.resolved", "incident.resolved", "incident.updated"]


def test_the_timeline_is_the_teams_own(aw: AlertWorld, incident: Incident, team_b):
    App.objects.create(team=team_b.team, project=team_b.project, name="api")
    emit(team_b.project, "deployment.failed")
    assert all(e.team_id == aw.team.pk for e in incident_timeline(incident))


# --- rules deleted with what they watch -----------------------------------------------------------------
def test_deleting_an_app_closes_its_rules_firings_and_the_incident_resolves_by_itself(aw: AlertWorld):
    from apps.deployments.services import app_delete

    errors = aw.rule("errors")
    aw.rule("slow", metric="latency_p50_ms", threshold=10)  # both fire, in one incident
    now = timezone.now()
    aw.traffic(now - timedelta(seconds=30), errors=50, latency_le_50ms=0, latency_le_100ms=100)
    evaluate_rules(now=now)
    incident = Incident.objects.get()
    assert incident.alerts.filter(resolved_at__isnull=True).count() == 2

    app_delete(ctx=aw.ctx, app=aw.app, confirm="api")

    assert not AlertRule.objects.filter(app_id=errors.app_id).exists()
    incident.refresh_from_db()
    assert (incident.status, incident.resolved_by) == ("resolved", "auto")
    assert [(a.rule, a.resolved_at is not None) for a in incident.alerts.all()] == [(None, True), (None, True)]
    assert PlatformEvent.objects.filter(kind="incident.resolved").count() == 1

    # A later firing in the project opens an incident of its own instead of joining the dead one.
    other = App.objects.create(team=aw.team, project=aw.world.project, name="worker")
    aw.rule("worker-errors", app=other)
    aw.traffic(now + timedelta(seconds=20), errors=50, app=other)
    evaluate_rules(now=now + timedelta(seconds=40))
    assert list(Incident.objects.order_by("number").values_list("number", "status")) == [
        (1, "resolved"),
        (2, "open"),
    ]


def test_deleting_a_cron_job_closes_its_rules_firing_other_firings_keep_the_incident_open(aw: AlertWorld):
    from apps.cron.services import cron_job_delete

    aw.rule("errors")
    aw.rule(
        "nightly-fails", scope="cron_job", app=None, cron_job=aw.job, metric="event", event_kind="cron.run_failed",
        threshold=0, window_seconds=600,
    )  # fmt: skip
    now = timezone.now()
    aw.traffic(now - timedelta(seconds=30), errors=50)
    emit(aw.job, "cron.run_failed")
    evaluate_rules(now=timezone.now() + timedelta(seconds=1))
    incident = Incident.objects.get()
    assert incident.alerts.filter(resolved_at__isnull=True).count() == 2

    cron_job_delete(ctx=aw.ctx, job=aw.job, confirm="nightly")

    closed = incident.alerts.get(rule_name="nightly-fails")
    assert (closed.rule, closed.resolved_at is not None) == (None, True)
    incident.refresh_from_db()
    assert incident.status == "open"  # "errors" still fires in it


def test_deleting_a_project_takes_its_incidents_along_without_a_trace_left_behind(aw: AlertWorld):
    from django.db import connection

    aw.rule(
        "deploys", scope="project", app=None, project=aw.world.project, metric="event", event_kind="deployment.failed",
        threshold=0,
    )  # fmt: skip
    emit(aw.app, "deployment.failed")
    evaluate_rules(now=timezone.now() + timedelta(seconds=1))
    assert Incident.objects.get().alerts.filter(resolved_at__isnull=True).exists()
    aw.app.delete()  # a project with apps, cron jobs or databases cannot be deleted
    aw.job.delete()
    aw.database.delete()
    aw.world.project.delete()
    assert not Incident.objects.exists() and not AlertRule.objects.exists()
    # No event was written about the incident going with it (it would point at the deleted project).
    connection.check_constraints()
    assert not PlatformEvent.objects.filter(kind="incident.resolved").exists()
