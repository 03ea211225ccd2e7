"""Incidents: opened by a firing alert rule (later firings in the same project join the open one),
acknowledged and resolved by people or resolved by themselves once every alert in them resolved,
with a timeline of the project's platform events around them and a post-mortem."""

from datetime import datetime, timedelta

from django.conf import settings
from django.db import models, transaction
from django.db.models import Max, Q
from django.utils import timezone

from apps.alerts.models import AlertRule, AlertSeverity, Incident, IncidentAlert, IncidentStatus
from apps.audit.services import audit_record
from apps.core.access import TeamContext
from apps.core.errors import Conflict, ValidationFailed
from apps.events.models import PlatformEvent, Severity
from apps.events.services import event_emit
from apps.teams.models import Team

SEVERITY_RANK = {AlertSeverity.INFO: 0, AlertSeverity.WARNING: 1, AlertSeverity.CRITICAL: 2}
TITLE_MAX_LENGTH = Incident._meta.get_field("title").max_length


def event_severity(severity: str) -> str:
    """The platform event severity of an alert or incident of `severity`."""
    return Severity.ERROR if severity == AlertSeverity.CRITICAL else Severity.WARNING


# --- reads ------------------------------------------------------------------------------------------
def incident_timeline(incident: Incident) -> models.QuerySet[PlatformEvent]:
    """The project's platform events from PANDASTACK_INCIDENT_LOOKBACK_SECONDS before the incident
    opened until it resolved (or now), and every event about the incident itself (a post-mortem
    written later too), oldest first."""
    since = incident.created_at - timedelta(seconds=settings.PANDASTACK_INCIDENT_LOOKBACK_SECONDS)
    around = Q(project_id=incident.project_id, created_at__gte=since)
    if incident.resolved_at is not None:
        around &= Q(created_at__lte=incident.resolved_at)
    own = Q(subject_type=Incident._meta.label_lower, subject_id=str(incident.pk))
    return PlatformEvent.objects.filter(team_id=incident.team_id).filter(around | own).order_by("id")


# --- the evaluator's side ---------------------------------------------------------------------------
def incident_for_firing(*, rule: AlertRule, value: float | None, now: datetime) -> tuple[Incident, bool]:
    """Record a firing of `rule` in its project's newest incident that is not resolved, or in a new
    one (numbered next in the team, titled after the rule). Returns (incident, whether it opened).
    Call inside the transaction that moved the rule to firing."""
    # One opener at a time per team: the next one sees this incident (joins it) and the next number.
    # FOR NO KEY UPDATE leaves rows that merely reference the team free to be written meanwhile.
    Team.objects.select_for_update(no_key=True).filter(pk=rule.team_id).first()
    incident = (
        Incident.objects.select_for_update()
        .filter(project_id=rule.project_id)
        .exclude(status=IncidentStatus.RESOLVED)
        .order_by("-id")
        .first()
    )
    opened = incident is None
    if incident is None:
        number = (Incident.objects.filter(team_id=rule.team_id).aggregate(n=Max("number"))["n"] or 0) + 1
        incident = Incident.objects.create(
            team_id=rule.team_id,
            project_id=rule.project_id,
            number=number,
            title=f"{rule.name}: {rule.condition_text()}"[:TITLE_MAX_LENGTH],
            severity=rule.severity,
        )
    elif SEVERITY_RANK[rule.severity] > SEVERITY_RANK[incident.severity]:
        incident.severity = rule.severity  # a critical alert joining makes the incident critical
        incident.save(update_fields=["severity", "updated_at"])
    IncidentAlert.objects.create(incident=incident, rule=rule, rule_name=rule.name, value=value, fired_at=now)
    return incident, opened


def firings_close(*, rule: AlertRule, now: datetime) -> list[Incident]:
    """Mark the open firing of `rule` resolved at `now`; an incident left with nothing firing that is
    not resolved yet resolves itself (resolved_by "auto", an `incident.resolved` event). Returns the
    incidents it resolved."""
    incident_ids = list(
        IncidentAlert.objects.filter(rule=rule, resolved_at__isnull=True).values_list("incident_id", flat=True)
    )
    if not incident_ids:
        return []
    # Lock the incidents before looking at their other alerts: two evaluators closing the last two
    # firings of one incident at once would each see the other's still open and neither resolve it.
    incidents = list(
        Incident.objects.select_for_update().filter(pk__in=incident_ids).select_related("team").order_by("pk")
    )
    IncidentAlert.objects.filter(rule=rule, resolved_at__isnull=True).update(resolved_at=now)
    resolved = []
    for incident in incidents:
        if incident.status == IncidentStatus.RESOLVED:
            continue
        # A firing left open by a rule deleted before deletions closed them (apps.alerts.signals) can
        # never resolve: it does not hold the incident.
        if incident.alerts.filter(resolved_at__isnull=True, rule__isnull=False).exists():
            continue
        at = timezone.now()  # after the alert.resolved event: the timeline ends with both
        Incident.objects.filter(pk=incident.pk).update(
            status=IncidentStatus.RESOLVED, resolved_at=at, resolved_by="auto", updated_at=at
        )
        incident.status, incident.resolved_at, incident.resolved_by = IncidentStatus.RESOLVED, at, "auto"
        event_emit(
            team=incident.team,
            kind="incident.resolved",
            subject=incident,
            message=f"Incident #{incident.number} resolved: every alert in it resolved",
            data={"incident": incident.number, "by": "auto"},
        )
        resolved.append(incident)
    return resolved


# --- people's side ----------------------------------------------------------------------------------
@transaction.atomic
def incident_acknowledge(*, ctx: TeamContext, incident: Incident) -> Incident:
    """Say someone is on it. Acknowledging again changes nothing; a resolved incident is a Conflict."""
    now = timezone.now()
    changed = Incident.objects.filter(pk=incident.pk, status=IncidentStatus.OPEN).update(
        status=IncidentStatus.ACKNOWLEDGED, acknowledged_at=now, acknowledged_by=ctx.actor.label, updated_at=now
    )
    incident.refresh_from_db()
    if not changed:
        if incident.status == IncidentStatus.RESOLVED:
            raise Conflict(f"Incident #{incident.number} is already resolved.", code="incident_resolved")
        return incident
    audit_record(actor=ctx.actor, action="incident.acknowledge", target=incident, team=ctx.team)
    event_emit(
        team=ctx.team,
        kind="incident.acknowledged",
        subject=incident,
        message=f"Incident #{incident.number} acknowledged by {ctx.actor.label}",
        data={"incident": incident.number, "by": ctx.actor.label},
    )
    return incident


@transaction.atomic
def incident_resolve(*, ctx: TeamContext, incident: Incident) -> Incident:
    """Resolve by hand (alerts still firing stay firing; a new firing opens a new incident). An
    incident already resolved is a Conflict."""
    now = timezone.now()
    changed = (
        Incident.objects.filter(pk=incident.pk)
        .exclude(status=IncidentStatus.RESOLVED)
        .update(status=IncidentStatus.RESOLVED, resolved_at=now, resolved_by=ctx.actor.label, updated_at=now)
    )
    incident.refresh_from_db()
    if not changed:
        raise Conflict(f"Incident #{incident.number} is already resolved.", code="incident_resolved")
    audit_record(actor=ctx.actor, action="incident.resolve", target=incident, team=ctx.team)
    event_emit(
        team=ctx.team,
        kind="incident.resolved",
        subject=incident,
        message=f"Incident #{incident.number} resolved by {ctx.actor.label}",
        data={"incident": incident.number, "by": ctx.actor.label},
    )
    return incident


@transaction.atomic
def incident_update(
    *, ctx: TeamContext, incident: Incident, title: str | None = None, postmortem: str | None = None
) -> Incident:
    """Retitle an incident or write its post-mortem (at any time, resolved or not)."""
    changes: dict[str, str] = {}
    if title is not None:
        title = title.strip()
        if not title or len(title) > TITLE_MAX_LENGTH:
            raise ValidationFailed("Invalid title.", fields={"title": [f"1 to {TITLE_MAX_LENGTH} characters."]})
        if title != incident.title:
            changes["title"] = title
    if postmortem is not None and postmortem != incident.postmortem:
        changes["postmortem"] = postmortem
    if not changes:
        return incident
    for field, value in changes.items():
        setattr(incident, field, value)
    incident.save(update_fields=[*changes, "updated_at"])
    fields = list(changes)
    audit_record(actor=ctx.actor, action="incident.update", target=incident, team=ctx.team, data={"fields": fields})
    what = " and ".join({"title": "retitled", "postmortem": "post-mortem updated"}[f] for f in fields)
    event_emit(
        team=ctx.team,
        kind="incident.updated",
        subject=incident,
        message=f"Incident #{incident.number} {what} by {ctx.actor.label}",
        data={"incident": incident.number, "fields": fields, "by": ctx.actor.label},
    )
    return incident
