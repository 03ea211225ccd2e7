"""Alert rules: what a rule watches (an app's metrics, or the platform events of an app, a cron job,
a database or a whole project), its condition, and where it says so. Written here, validated and
audited; apps.alerts.evaluation evaluates them."""

import math
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.alerts.incidents import firings_close
from apps.alerts.models import (
    AlertRule,
    AlertSeverity,
    AlertState,
    NotificationChannel,
    Operator,
    RuleMetric,
    RuleScope,
)
from apps.audit.services import audit_record
from apps.core.access import TeamContext
from apps.core.errors import ValidationFailed, require_confirmation
from apps.cron.models import CronJob
from apps.databases.models import Database, DatabaseStatus
from apps.deployments.models import App
from apps.monitoring.models import Resolution
from apps.teams.models import Project

# The platform events a rule of metric "event" can count, and what each is about: the scope whose
# resource is the event's subject. A rule of scope "project" counts a kind for every resource of
# its project; a rule of scope "app", "cron_job" or "database" only the kinds about that resource.
EVENT_KINDS: dict[str, tuple[str, str]] = {
    "deployment.failed": (RuleScope.APP, "a deployment failed (nothing new went live)"),
    "deployment.succeeded": (RuleScope.APP, "a deployment went live"),
    "container.crashed": (RuleScope.APP, "a container exited or disappeared and was replaced"),
    "health.down": (RuleScope.APP, "the app's health checks started failing"),
    "health.up": (RuleScope.APP, "the app's health checks passed again"),
    "cron.run_failed": (RuleScope.CRON_JOB, "a run exited with a non-zero code"),
    "cron.run_timed_out": (RuleScope.CRON_JOB, "a run was stopped at its timeout"),
    "cron.run_missed": (RuleScope.CRON_JOB, "a run did not start within its starting deadline"),
    "cron.run_skipped": (RuleScope.CRON_JOB, "a run was skipped: the previous one was still running"),
    "cron.job_suspended": (RuleScope.CRON_JOB, "the job was suspended: its schedule cannot be evaluated"),
    "database.unavailable": (RuleScope.DATABASE, "a database could not be provisioned or reached"),
    "database.backup_failed": (RuleScope.DATABASE, "a database backup failed"),
    "database.restore_failed": (RuleScope.DATABASE, "a database restore failed (the data was left as it was)"),
    "database.size_exceeded": (RuleScope.DATABASE, "a database grew past its plan's size"),
}
WINDOW_SECONDS = (10, 86400)
# A metric rule reads whole raw (10-second) buckets, so its window is a multiple of 10 seconds, at
# least 3 buckets, and no longer than those buckets are kept (settings.PANDASTACK_METRICS_RETENTION).
METRIC_WINDOW_MIN_SECONDS = 30
FOR_SECONDS = (0, 86400)
# Scopes whose rules can only count platform events (metrics are per app).
EVENT_ONLY_SCOPES = (RuleScope.CRON_JOB, RuleScope.DATABASE, RuleScope.PROJECT)
# Changing one of these makes it another condition: the rule starts again from ok.
CONDITION_FIELDS = ("metric", "event_kind", "operator", "threshold", "window_seconds", "for_seconds")
UPDATABLE_FIELDS = (*CONDITION_FIELDS, "severity", "channels", "enabled")


def _known_kinds() -> str:
    return ", ".join(EVENT_KINDS)


def _validate(rule: AlertRule, channels: Iterable[NotificationChannel]) -> None:
    """Every problem of `rule` at once, as field errors; then the model's own checks."""
    errors: dict[str, list[str]] = {}
    scope, metric = rule.scope, rule.metric
    app, cron_job, database = rule.app, rule.cron_job, rule.database
    if scope not in RuleScope.values:
        errors["scope"] = [f"One of: {', '.join(RuleScope.values)}."]
    if metric not in RuleMetric.values:
        errors["metric"] = [f"One of: {', '.join(RuleMetric.values)}."]
    if scope == RuleScope.APP and app is None:
        errors["app"] = ["Required for scope app."]
    if scope != RuleScope.APP and app is not None:
        errors["app"] = ["Only for scope app."]
    if scope == RuleScope.CRON_JOB and cron_job is None:
        errors["cron_job"] = ["Required for scope cron_job."]
    if scope != RuleScope.CRON_JOB and cron_job is not None:
        errors["cron_job"] = ["Only for scope cron_job."]
    if scope == RuleScope.DATABASE and database is None:
        errors["database"] = ["Required for scope database."]
    if scope != RuleScope.DATABASE and database is not None:
        errors["database"] = ["Only for scope database."]
    if scope == RuleScope.PROJECT and rule.project_id is None:
        errors["project"] = ["Required for scope project."]
    if scope in EVENT_ONLY_SCOPES and metric in RuleMetric.values and metric != RuleMetric.EVENT:
        errors["metric"] = [f"A {scope} rule counts platform events: use metric event (metrics are per app)."]
    project = rule.project if rule.project_id is not None else None
    for field, obj in (("app", app), ("cron_job", cron_job), ("database", database), ("project", project)):
        if obj is not None and obj.team_id != rule.team_id:
            errors[field] = ["Not in this team."]
    # A deleted database's rules stay (to be read, disabled or deleted), but no new rule watches one.
    if rule.pk is None and database is not None and database.status == DatabaseStatus.DELETED:
        errors["database"] = ["This database is deleted."]
    owner = app or cron_job or database
    if owner is not None and rule.project_id is not None and owner.project_id != rule.project_id:
        errors["project"] = [f"The {str(scope).replace('_', ' ')} belongs to another project."]

    kind = rule.event_kind
    if metric == RuleMetric.EVENT:
        if not kind:
            errors["event_kind"] = [f"Required for metric event; one of: {_known_kinds()}."]
        elif kind not in EVENT_KINDS:
            errors["event_kind"] = [f"Unknown kind; one of: {_known_kinds()}."]
        elif scope in (RuleScope.APP, RuleScope.CRON_JOB, RuleScope.DATABASE) and EVENT_KINDS[kind][0] != scope:
            about = EVENT_KINDS[kind][0]
            use = "project" if about == RuleScope.PROJECT else f"{about} or project"
            errors["event_kind"] = [f"{kind} events are counted by a rule of scope {use}."]
    elif kind:
        errors["event_kind"] = ["Only for metric event."]

    if rule.operator not in Operator.values:
        errors["operator"] = [f"One of: {', '.join(Operator.values)}."]
    threshold = rule.threshold
    if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not math.isfinite(threshold):
        errors["threshold"] = ["A finite number."]
    for field, (low, high) in (("window_seconds", WINDOW_SECONDS), ("for_seconds", FOR_SECONDS)):
        value = getattr(rule, field)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            errors[field] = [f"Between {low} and {high} seconds."]
    reads_metrics = metric in RuleMetric.values and metric != RuleMetric.EVENT
    if reads_metrics and "window_seconds" not in errors and (problem := _metric_window_problem(rule.window_seconds)):
        errors["window_seconds"] = [problem]
    if rule.severity not in AlertSeverity.values:
        errors["severity"] = [f"One of: {', '.join(AlertSeverity.values)}."]
    if any(channel.team_id != rule.team_id for channel in channels):
        errors["channels"] = ["Every channel must belong to this team."]
    if errors:
        raise ValidationFailed("Invalid alert rule.", fields=errors)
    try:
        rule.full_clean(validate_constraints=False)  # the name (a slug); uniqueness is checked by the caller
    except DjangoValidationError as exc:
        raise ValidationFailed("Invalid alert rule.", fields=exc.message_dict) from None


def _metric_window_problem(window: int) -> str | None:
    """Why `window` cannot be a metric rule's window (None when it can)."""
    if window < METRIC_WINDOW_MIN_SECONDS or window % Resolution.RAW:
        return (
            f"A metric rule reads {int(Resolution.RAW)}-second buckets: a multiple of {int(Resolution.RAW)} "
            f"seconds, at least {METRIC_WINDOW_MIN_SECONDS}."
        )
    kept = settings.PANDASTACK_METRICS_RETENTION[Resolution.RAW]
    if window > kept:
        return (
            f"At most {kept} seconds for a metric rule: its {int(Resolution.RAW)}-second buckets are kept that long "
            f"(event rules may count up to {WINDOW_SECONDS[1]} seconds)."
        )
    return None


def _channel_names(channels: Iterable[NotificationChannel]) -> list[str]:
    return [channel.name for channel in channels]


def _name_taken() -> ValidationFailed:
    return ValidationFailed("An alert rule with this name already exists.", fields={"name": ["Already taken."]})


@transaction.atomic
def rule_create(
    *,
    ctx: TeamContext,
    name: str,
    scope: str,
    metric: str,
    threshold: float,
    app: App | None = None,
    cron_job: CronJob | None = None,
    database: Database | None = None,
    project: Project | None = None,
    event_kind: str = "",
    operator: str = Operator.GT,
    window_seconds: int = 300,
    for_seconds: int = 0,
    severity: str = AlertSeverity.WARNING,
    channels: Iterable[NotificationChannel] = (),
    enabled: bool = True,
) -> AlertRule:
    """Create a rule, in state ok. Its project is its app's, cron job's or database's (a `project`
    given too must be that one); a database must not be deleted. Raises ValidationFailed naming
    every field that is wrong."""
    channels = list(dict.fromkeys(channels))
    if AlertRule.objects.filter(team=ctx.team, name=name).exists():
        raise _name_taken()
    owner = app or cron_job or database
    rule = AlertRule(
        team=ctx.team,
        name=name,
        scope=scope,
        app=app,
        cron_job=cron_job,
        database=database,
        project=project if project is not None else (owner.project if owner is not None else None),
        metric=metric,
        event_kind=event_kind,
        operator=operator,
        threshold=threshold,
        window_seconds=window_seconds,
        for_seconds=for_seconds,
        severity=severity,
        enabled=enabled,
        state=AlertState.OK,
        state_since=timezone.now(),
    )
    _validate(rule, channels)
    try:
        with transaction.atomic():  # a savepoint: the transaction stays usable after a refused insert
            rule.save()
    except IntegrityError as exc:
        # Another request created the name between the check above and this insert.
        if "alert_rule_name_unique_in_team" not in str(exc):
            raise
        raise _name_taken() from None
    rule.channels.set(channels)
    audit_record(
        actor=ctx.actor,
        action="alert_rule.create",
        target=rule,
        team=ctx.team,
        data={
            "scope": scope,
            "metric": metric,
            "event_kind": event_kind,
            "operator": operator,
            "threshold": threshold,
            "channels": _channel_names(channels),
        },
    )
    return rule


@transaction.atomic
def rule_update(*, ctx: TeamContext, rule: AlertRule, **changes: Any) -> AlertRule:
    """Change a rule's condition (metric, event_kind, operator, threshold, window_seconds,
    for_seconds), severity, channels or enabled flag; what a rule watches (its scope and resource)
    stays. A changed condition, or disabling the rule, starts it again from ok: a firing it had is
    closed in its incident (without a "resolved" notification: nothing recovered, the rule changed)."""
    unknown = set(changes) - set(UPDATABLE_FIELDS)
    if unknown:
        raise ValidationFailed("These cannot be changed.", fields={f: ["Cannot be changed."] for f in sorted(unknown)})
    if not changes:
        return rule
    # Wait for an evaluator that holds the rule; then work on the row as it is now.
    rule = (
        AlertRule.objects.select_for_update(of=("self",))
        .select_related("app", "cron_job", "database", "project")
        .get(pk=rule.pk)
    )
    new_channels = changes.pop("channels", None)
    channels = list(dict.fromkeys(new_channels)) if new_channels is not None else list(rule.channels.all())
    for field, value in changes.items():
        setattr(rule, field, value)
    _validate(rule, channels)
    restart = any(field in changes for field in CONDITION_FIELDS) or changes.get("enabled") is False
    if restart and rule.state != AlertState.OK:
        now = timezone.now()
        firings_close(rule=rule, now=now)
        rule.state, rule.state_since, rule.pending_since = AlertState.OK, now, None
    if restart:
        rule.last_value = None
    rule.save()
    data: dict[str, Any] = dict(changes)
    if new_channels is not None:
        rule.channels.set(channels)
        data["channels"] = _channel_names(channels)
    audit_record(actor=ctx.actor, action="alert_rule.update", target=rule, team=ctx.team, data=data)
    return rule


@transaction.atomic
def rule_delete(*, ctx: TeamContext, rule: AlertRule, confirm: str) -> None:
    """Delete a rule (confirm with its name). A firing it had is closed in its incident, which
    resolves if nothing else in it still fires (apps.alerts.signals does so for every deletion of a
    rule); the incident keeps the rule's name."""
    require_confirmation(confirm, expected=rule.name, what="the alert rule's name")
    rule = AlertRule.objects.select_for_update(of=("self",)).get(pk=rule.pk)
    audit_record(actor=ctx.actor, action="alert_rule.delete", target=rule, team=ctx.team)
    rule.delete()
