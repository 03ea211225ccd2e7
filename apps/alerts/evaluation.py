"""Evaluating alert rules (the monitor calls `evaluate_rules` every PANDASTACK_ALERT_EVALUATION_INTERVAL
seconds, from as many processes as run).

A rule's value is its app's metric over the last `window` seconds of whole 10-second buckets plus
the bucket being written (apps.monitoring.selectors; see `metric_window`), the app's current health
(`up`), or the number of platform events of its kind about its app, cron job, database or project
created in [now - window, now). No data (None) never holds. The states:

    ok / resolved --holds--> pending --held for for_seconds--> firing --stops holding--> resolved
    pending --stops holding--> ok          (for_seconds 0: ok/resolved --holds--> firing at once)

A rule whose database was deleted (databases are soft-deleted: status "deleted") is not evaluated
any more: the next round closes a firing it had (no "resolved" notification: nothing recovered, the
database went away), moves it to ok, and from then on leaves it alone. The rule itself stays, as it
was, for its owners to read or delete (a new database of the same name is another database).

Each rule is evaluated in a short transaction of its own, claimed with
SELECT ... FOR UPDATE SKIP LOCKED, so two evaluators never work on the same rule at once; every
transition is also a compare-and-set on the old state, so a firing notifies exactly once, and so
does its resolution. (One transaction per rule rather than per batch: a firing takes its team's
incident lock, and an evaluator holding the locks of several teams at once could deadlock with
another doing the same in another order.) The time a rule is evaluated at is read once the rule is
locked, and a rule already evaluated as of a later time is left alone: an evaluator slow to reach a
rule cannot act on a stale clock after another one moved the rule on (fire it again just after it
resolved, say)."""

import logging
import operator
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from apps.alerts.incidents import event_severity, firings_close, incident_for_firing
from apps.alerts.models import AlertRule, AlertState, Incident, IncidentAlert, Operator, RuleMetric, RuleScope
from apps.alerts.services import notify
from apps.databases.models import DatabaseStatus
from apps.events.models import PlatformEvent, Severity
from apps.events.services import event_emit
from apps.monitoring.models import Resolution
from apps.monitoring.selectors import Totals, bucket_start, health_up, window_totals

log = logging.getLogger(__name__)

COMPARE: dict[str, Callable[[float, float], bool]] = {
    Operator.GT: operator.gt,
    Operator.GTE: operator.ge,
    Operator.LT: operator.lt,
    Operator.LTE: operator.le,
}
# Metrics read from an app's window totals; None where the window has no data for it.
WINDOW_METRICS: dict[str, Callable[[Totals], float | None]] = {
    RuleMetric.REQUESTS: lambda t: float(t.sums.get("requests", 0)),
    RuleMetric.RESPONSES_4XX: lambda t: float(t.sums.get("responses_4xx", 0)),
    RuleMetric.RESPONSES_5XX: lambda t: float(t.sums.get("responses_5xx", 0)),
    RuleMetric.ERROR_RATE: lambda t: t.error_rate,
    RuleMetric.LATENCY_P50: lambda t: t.latency(0.5),
    RuleMetric.LATENCY_P95: lambda t: t.latency(0.95),
    RuleMetric.LATENCY_P99: lambda t: t.latency(0.99),
    RuleMetric.CPU: lambda t: t.cpu_percent,
    RuleMetric.MEMORY: lambda t: t.memory_mb,
    RuleMetric.RESTARTS: lambda t: float(t.sums.get("restarts", 0)),
    RuleMetric.UPTIME: lambda t: t.uptime_percent,
}
# The subject type of the events a rule of each scope counts (a project rule counts by project).
SUBJECT_TYPES = {
    RuleScope.APP: "deployments.app",
    RuleScope.CRON_JOB: "cron.cronjob",
    RuleScope.DATABASE: "databases.database",
}
OUTCOMES = ("evaluated", "pending", "fired", "resolved", "skipped", "errors")


def evaluate_rules(*, now: datetime | None = None) -> dict[str, int]:
    """Evaluate every enabled rule once, each as of the time it is locked (or as of `now` for every
    rule, when given). Returns counts: rules evaluated, moved to pending, fired, resolved, skipped
    (another evaluator held them, had already evaluated them as of a later time, or their database
    was deleted) and failed (logged; the others are evaluated all the same)."""
    summary = dict.fromkeys(OUTCOMES, 0)
    totals: dict[tuple[int, datetime, datetime], Totals] = {}  # shared by this round's rules
    # Rules of a deleted database are left out once they are back to ok (see _retire).
    retired = Q(database__status=DatabaseStatus.DELETED, state=AlertState.OK)
    rule_ids = list(AlertRule.objects.filter(enabled=True).exclude(retired).order_by("id").values_list("id", flat=True))
    for rule_id in rule_ids:
        try:
            with transaction.atomic():
                rule = (
                    AlertRule.objects.select_for_update(skip_locked=True, of=("self",))
                    .select_related("team", "project", "app", "cron_job", "database")
                    .filter(pk=rule_id, enabled=True)
                    .first()
                )
                at = now or timezone.now()  # read after the lock: no older than the last evaluation
                if rule is None or (rule.last_evaluated_at is not None and rule.last_evaluated_at > at):
                    outcome = "skipped"
                else:
                    outcome = _evaluate(rule, at, totals)
        except Exception:  # one broken rule must not stop the others
            log.exception("evaluating alert rule %s failed", rule_id)
            outcome = "errors"
        summary[outcome] += 1
    return summary


def metric_window(now: datetime, window_seconds: int) -> tuple[datetime, datetime | None]:
    """The [since, until) a metric rule reads as of `now`: the `window_seconds` of whole raw
    buckets before the bucket being written, plus that bucket so far (until None: up to now).

    Counts therefore never cover less than a full window — `requests < N` does not flap as the
    bucket being written fills — and a spike is seen as soon as the monitor flushes it (about a
    second), not once its bucket has ended: the window is between `window_seconds` and 10 s longer."""
    return bucket_start(now, Resolution.RAW) - timedelta(seconds=window_seconds), None


def rule_value(
    rule: AlertRule, now: datetime, totals: dict[tuple[int, datetime, datetime], Totals] | None = None
) -> float | None:
    """The rule's value as of `now`: None when there is no data."""
    if rule.metric == RuleMetric.EVENT:
        return float(_event_count(rule, now))
    if rule.metric == RuleMetric.UP:
        return health_up(rule.app_id)
    totals = {} if totals is None else totals
    since, until = metric_window(now, rule.window_seconds)
    key = (rule.app_id, since, until)
    if key not in totals:
        totals[key] = window_totals(rule.app_id, since=since, until=until)
    return WINDOW_METRICS[rule.metric](totals[key])


def _event_count(rule: AlertRule, now: datetime) -> int:
    events = PlatformEvent.objects.filter(
        team_id=rule.team_id,
        kind=rule.event_kind,
        created_at__gte=now - timedelta(seconds=rule.window_seconds),
        created_at__lt=now,
    )
    if rule.scope == RuleScope.PROJECT:
        return events.filter(project_id=rule.project_id).count()
    subject_id = {
        RuleScope.APP: rule.app_id,
        RuleScope.CRON_JOB: rule.cron_job_id,
        RuleScope.DATABASE: rule.database_id,
    }[rule.scope]
    return events.filter(subject_type=SUBJECT_TYPES[rule.scope], subject_id=str(subject_id)).count()


def _evaluate(rule: AlertRule, now: datetime, totals: dict[tuple[int, datetime, datetime], Totals]) -> str:
    if rule.database is not None and rule.database.status == DatabaseStatus.DELETED:
        return _retire(rule, now)
    value = rule_value(rule, now, totals)
    holds = value is not None and COMPARE[rule.operator](value, rule.threshold)
    state = rule.state
    if holds and state in (AlertState.OK, AlertState.RESOLVED):
        if rule.for_seconds == 0:
            return _fire(rule, state, value, now)
        return "pending" if _move(rule, state, AlertState.PENDING, value, now, pending_since=now) else "skipped"
    if holds and state == AlertState.PENDING:
        since = rule.pending_since or now
        if now - since >= timedelta(seconds=rule.for_seconds):
            return _fire(rule, state, value, now)
    elif not holds and state == AlertState.PENDING:
        _move(rule, state, AlertState.OK, value, now, pending_since=None)
        return "evaluated"
    elif not holds and state == AlertState.FIRING:
        return _resolve(rule, value, now)
    AlertRule.objects.filter(pk=rule.pk).update(last_value=value, last_evaluated_at=now)
    return "evaluated"


def _retire(rule: AlertRule, now: datetime) -> str:
    """The rule's database was deleted: close a firing it had (its incident resolves if nothing else
    in it fires) and put it back to ok, where evaluate_rules leaves it alone."""
    firings_close(rule=rule, now=now)
    AlertRule.objects.filter(pk=rule.pk).exclude(state=AlertState.OK).update(
        state=AlertState.OK, state_since=now, pending_since=None, last_value=None, last_evaluated_at=now
    )
    return "skipped"


def _move(rule: AlertRule, old: str, new: str, value: float | None, now: datetime, **fields: Any) -> bool:
    """Compare-and-set the rule from state `old` to `new`: False when it was not in `old` any more
    (another evaluator moved it first; its side effects were that one's to do)."""
    moved = AlertRule.objects.filter(pk=rule.pk, state=old).update(
        state=new, state_since=now, last_value=value, last_evaluated_at=now, **fields
    )
    if moved:
        rule.state, rule.state_since, rule.last_value, rule.last_evaluated_at = new, now, value, now
        for field, field_value in fields.items():
            setattr(rule, field, field_value)
    return bool(moved)


def _fire(rule: AlertRule, old: str, value: float | None, now: datetime) -> str:
    if not _move(rule, old, AlertState.FIRING, value, now, pending_since=rule.pending_since or now):
        return "skipped"
    incident, opened = incident_for_firing(rule=rule, value=value, now=now)
    condition = rule.condition_text()
    event_emit(
        team=rule.team,
        kind="alert.firing",
        subject=rule.target,
        message=f"{rule.name} firing: {condition} (value {_number(value)})",
        severity=event_severity(rule.severity),
        data=_event_data(rule, value, incident),
    )
    if opened:
        event_emit(
            team=rule.team,
            kind="incident.opened",
            subject=incident,
            message=f"Incident #{incident.number} opened: {incident.title}",
            severity=event_severity(incident.severity),
            data={"incident": incident.number, "rule": rule.name},
        )
    _notify(rule, "alert", f"[{rule.severity.upper()}] {rule.name} firing: {condition}", value, incident, now)
    return "fired"


def _resolve(rule: AlertRule, value: float | None, now: datetime) -> str:
    if not _move(rule, AlertState.FIRING, AlertState.RESOLVED, value, now, pending_since=None):
        return "skipped"
    firing = IncidentAlert.objects.filter(rule=rule, resolved_at__isnull=True).select_related("incident").first()
    incident = firing.incident if firing else None
    event_emit(
        team=rule.team,
        kind="alert.resolved",
        subject=rule.target,
        message=f"{rule.name} resolved: no longer {rule.condition_text()} (value {_number(value)})",
        severity=Severity.INFO,
        data=_event_data(rule, value, incident),
    )
    _notify(rule, "resolved", f"[RESOLVED] {rule.name}: {rule.condition_text()}", value, incident, now)
    firings_close(rule=rule, now=now)
    return "resolved"


def _notify(
    rule: AlertRule, trigger: str, subject: str, value: float | None, incident: Incident | None, now: datetime
) -> None:
    payload = {
        **_event_data(rule, value, incident),
        "state": rule.state,
        "severity": rule.severity,
        "team": rule.team.slug,
        "project": rule.project.slug,
        "condition": rule.condition_text(),
        "at": now.isoformat(),
    }
    for channel in rule.channels.filter(enabled=True).select_related("team"):
        notify(channel=channel, trigger=trigger, subject=subject, payload=payload)


def _event_data(rule: AlertRule, value: float | None, incident: Incident | None) -> dict[str, Any]:
    return {
        "rule": rule.name,
        "scope": rule.scope,
        "app": rule.app.name if rule.app else None,
        "cron_job": rule.cron_job.name if rule.cron_job else None,
        "database": rule.database.name if rule.database else None,
        "metric": rule.metric,
        "event_kind": rule.event_kind,
        "operator": rule.operator,
        "threshold": rule.threshold,
        "window_seconds": rule.window_seconds,
        "value": value,
        "incident": incident.number if incident else None,
    }


def _number(value: float | None) -> str:
    return "no data" if value is None else f"{value:g}"
