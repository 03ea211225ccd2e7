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

Rules are claimed with SELECT ... FOR UPDATE SKIP LOCKED, so two evaluators never work on the same
rule at once: a batch of rules at a time (their values read together, a few queries whatever their
number) to record the value of each rule whose state stays — nearly all, in most rounds — in one
statement; then each rule whose state changes in a short transaction of its own, where it is read
again. (One transaction per changing rule rather than per batch: a firing takes its team's
incident lock, and an evaluator holding the locks of several teams at once could deadlock with
another doing the same in another order; SKIP LOCKED never waits, so the batches cannot.) Every
transition is also a compare-and-set on the old state, so a firing notifies exactly once, and so
does its resolution. The time a rule is evaluated at is read once it (or its batch) is locked, and
a rule already evaluated as of a later time is left alone: an evaluator slow to reach a rule
cannot act on a stale clock after another one moved the rule on (fire it again just after it
resolved, say)."""

import logging
import operator
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone

from apps.alerts.incidents import event_severity, firings_close, incident_for_firing
from apps.alerts.models import AlertRule, AlertState, Incident, IncidentAlert, Operator, RuleMetric, RuleScope
from apps.alerts.services import notify
from apps.core.bulk import bulk_set
from apps.databases.models import DatabaseStatus
from apps.events.models import PlatformEvent, Severity
from apps.events.services import event_emit
from apps.monitoring.models import Resolution
from apps.monitoring.selectors import Totals, bucket_start, health_of, window_totals_of

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
    """Evaluate every enabled rule once, each as of the time read once it is locked (or as of `now`
    for every rule, when given). Returns counts: rules evaluated, moved to pending, fired, resolved,
    skipped (another evaluator held them, had already evaluated them as of a later time, or their
    database was deleted) and failed (logged; the others are evaluated all the same).

    Most rounds change no rule's state. So rules are claimed and read a batch at a time (a few
    grouped queries for all their values), those that keep their state are recorded in one
    statement, and only those that move on go one by one through a transaction of their own."""
    summary = dict.fromkeys(OUTCOMES, 0)
    # Rules of a deleted database are left out once they are back to ok (see _retire).
    retired = Q(database__status=DatabaseStatus.DELETED, state=AlertState.OK)
    rule_ids = list(AlertRule.objects.filter(enabled=True).exclude(retired).order_by("id").values_list("id", flat=True))
    moving: list[int] = []
    for first in range(0, len(rule_ids), BATCH):
        batch = rule_ids[first : first + BATCH]
        try:
            moving += _evaluate_batch(batch, now, summary)
        except Exception:  # a database error in one batch must not stop the others
            log.exception("evaluating alert rules %s to %s failed", batch[0], batch[-1])
            summary["errors"] += len(batch)
    for rule_id in moving:
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
                    outcome = _evaluate(rule, at)
        except Exception:  # one broken rule must not stop the others
            log.exception("evaluating alert rule %s failed", rule_id)
            outcome = "errors"
        summary[outcome] += 1
    return summary


BATCH = 500  # rules claimed, read and recorded together (the record is a CASE of this many branches)


def _evaluate_batch(rule_ids: list[int], now: datetime | None, summary: dict[str, int]) -> list[int]:
    """Claim the rules (FOR UPDATE SKIP LOCKED: those another evaluator holds are skipped), read
    the clock, read every value at once, and record the value and time of each rule whose state
    stays, in one statement. Returns the rules whose state changes, for the one-by-one path."""
    moving = []
    with transaction.atomic():
        rules = list(
            AlertRule.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("database")  # what deciding needs; a rule changing state is read again
            .filter(pk__in=rule_ids, enabled=True)
            .order_by("id")
        )
        summary["skipped"] += len(rule_ids) - len(rules)
        at = now or timezone.now()  # read after the lock, as for one rule
        try:
            reads: RoundReads | None = RoundReads(at, rule_values(rules, at))
        except Exception:  # then each rule reads its own value, and fails on its own
            log.exception("reading the values of alert rules %s to %s failed", rule_ids[0], rule_ids[-1])
            reads = None
        staying: dict[int, float | None] = {}
        for rule in rules:
            if rule.last_evaluated_at is not None and rule.last_evaluated_at > at:
                summary["skipped"] += 1
                continue
            if rule.database is not None and rule.database.status == DatabaseStatus.DELETED:
                moving.append(rule.pk)
                continue
            try:
                value = rule_value(rule, at, reads)
                step = _step(rule, value, at)
            except Exception:  # one broken rule must not stop the others
                log.exception("evaluating alert rule %s failed", rule.pk)
                summary["errors"] += 1
                continue
            if step == RECORD:
                staying[rule.pk] = value
            else:
                moving.append(rule.pk)
        bulk_set(AlertRule, {pk: {"last_value": value} for pk, value in staying.items()}, ["last_value"],
                 last_evaluated_at=at)  # fmt: skip
        summary["evaluated"] += len(staying)
    return moving


def metric_window(now: datetime, window_seconds: int) -> tuple[datetime, datetime | None]:
    """The [since, until) a metric rule reads as of `now`: the `window_seconds` of whole raw
    buckets before the bucket being written, plus that bucket so far (until None: up to now).

    Counts therefore never cover less than a full window — `requests < N` does not flap as the
    bucket being written fills — and a spike is seen as soon as the monitor flushes it (about a
    second), not once its bucket has ended: the window is between `window_seconds` and 10 s longer."""
    return bucket_start(now, Resolution.RAW) - timedelta(seconds=window_seconds), None


@dataclass(frozen=True)
class RoundReads:
    """The values of a round's rules, read together as of `at`."""

    at: datetime
    values: dict[int, float | None]


def rule_value(rule: AlertRule, now: datetime, reads: RoundReads | None = None) -> float | None:
    """The rule's value as of `now`: None when there is no data. From the round's reads when they
    were made as of the same time."""
    if reads is not None and reads.at == now and rule.pk in reads.values:
        return reads.values[rule.pk]
    return rule_values([rule], now)[rule.pk]


def rule_values(rules: Sequence[AlertRule], now: datetime) -> dict[int, float | None]:
    """The values of `rules` as of `now` (rule id -> value, None: no data), in a few queries
    whatever their number: one per distinct window of the metric rules, one for the health of the
    `up` rules, one per event kind and window of the event rules."""
    windows: dict[tuple[datetime, datetime | None], set[int]] = {}
    for rule in rules:
        if rule.metric not in (RuleMetric.EVENT, RuleMetric.UP):
            windows.setdefault(metric_window(now, rule.window_seconds), set()).add(rule.app_id)
    totals = {
        (app_id, since, until): app_totals
        for (since, until), app_ids in windows.items()
        for app_id, app_totals in window_totals_of(app_ids, since=since, until=until).items()
    }
    up = [rule.app_id for rule in rules if rule.metric == RuleMetric.UP]
    health = health_of(up) if up else {}
    events = _event_counts([rule for rule in rules if rule.metric == RuleMetric.EVENT], now)
    values: dict[int, float | None] = {}
    for rule in rules:
        if rule.metric == RuleMetric.EVENT:
            values[rule.pk] = float(events[rule.pk])
        elif rule.metric == RuleMetric.UP:
            values[rule.pk] = health[rule.app_id]
        else:
            values[rule.pk] = WINDOW_METRICS[rule.metric](
                totals[(rule.app_id, *metric_window(now, rule.window_seconds))]
            )
    return values


def _event_counts(rules: Sequence[AlertRule], now: datetime) -> dict[int, int]:
    """Per rule, the platform events of its kind about its app, cron job, database or project created
    in [now - window, now): one grouped query per event kind and window."""
    groups: dict[tuple[str, int], list[AlertRule]] = {}
    for rule in rules:
        groups.setdefault((rule.event_kind, rule.window_seconds), []).append(rule)
    counts: dict[int, int] = {}
    for (kind, window), members in groups.items():
        found = (
            PlatformEvent.objects.filter(
                team_id__in={rule.team_id for rule in members},
                kind=kind,
                created_at__gte=now - timedelta(seconds=window),
                created_at__lt=now,
            )
            .values_list("team_id", "project_id", "subject_type", "subject_id")
            .annotate(n=Count("pk"))
            .order_by()
        )
        by_project: Counter[tuple[int, int | None]] = Counter()
        by_subject: Counter[tuple[int, str, str]] = Counter()
        for team_id, project_id, subject_type, subject_id, n in found:
            by_project[(team_id, project_id)] += n
            by_subject[(team_id, subject_type, subject_id)] += n
        for rule in members:
            if rule.scope == RuleScope.PROJECT:
                counts[rule.pk] = by_project[(rule.team_id, rule.project_id)]
            else:
                subject_id = {
                    RuleScope.APP: rule.app_id,
                    RuleScope.CRON_JOB: rule.cron_job_id,
                    RuleScope.DATABASE: rule.database_id,
                }[rule.scope]
                counts[rule.pk] = by_subject[(rule.team_id, SUBJECT_TYPES[rule.scope], str(subject_id))]
    return counts


# What a rule's value means for its state (_step).
FIRE, PEND, CLEAR, RESOLVE, RECORD = "fire", "pend", "clear", "resolve", "record"


def _step(rule: AlertRule, value: float | None, now: datetime) -> str:
    """What the value means for the rule: fire it, make it pending, clear a pending one back to ok,
    resolve a firing one — or RECORD, no change of state (only the value and the time are kept)."""
    holds = value is not None and COMPARE[rule.operator](value, rule.threshold)
    state = rule.state
    if holds and state in (AlertState.OK, AlertState.RESOLVED):
        return FIRE if rule.for_seconds == 0 else PEND
    if holds and state == AlertState.PENDING:
        since = rule.pending_since or now
        return FIRE if now - since >= timedelta(seconds=rule.for_seconds) else RECORD
    if not holds and state == AlertState.PENDING:
        return CLEAR
    if not holds and state == AlertState.FIRING:
        return RESOLVE
    return RECORD


def _evaluate(rule: AlertRule, now: datetime, reads: RoundReads | None = None) -> str:
    if rule.database is not None and rule.database.status == DatabaseStatus.DELETED:
        return _retire(rule, now)
    value = rule_value(rule, now, reads)
    step = _step(rule, value, now)
    if step == FIRE:
        return _fire(rule, rule.state, value, now)
    if step == PEND:
        return "pending" if _move(rule, rule.state, AlertState.PENDING, value, now, pending_since=now) else "skipped"
    if step == CLEAR:
        _move(rule, rule.state, AlertState.OK, value, now, pending_since=None)
        return "evaluated"
    if step == RESOLVE:
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
