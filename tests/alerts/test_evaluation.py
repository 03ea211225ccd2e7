"""Evaluating rules with a controlled clock against metrics written as the collectors write them and
platform events emitted as the scheduler and the orchestrator emit them: the state machine (with
and without for_seconds), exactly one notification per firing and per resolution (two evaluators
racing included), event rules, and incidents opened, joined and resolved by themselves."""

import threading
from datetime import datetime, timedelta
from types import SimpleNamespace

import pytest
from django.db import connection
from django.utils import timezone

from apps.alerts import evaluation
from apps.alerts.evaluation import evaluate_rules
from apps.alerts.models import AlertRule, Delivery, Incident, IncidentAlert
from apps.alerts.tasks import delivery_attempt
from apps.cron.models import CronJob
from apps.deployments.models import App
from apps.events.models import PlatformEvent, Severity
from apps.events.services import event_emit
from apps.monitoring.models import AppHealth
from apps.monitoring.selectors import bucket_start
from apps.teams.models import Project
from tests.alerts.conftest import AlertWorld


def state(rule: AlertRule) -> str:
    rule.refresh_from_db()
    return rule.state


def deliveries(trigger: str) -> list[Delivery]:
    return list(Delivery.objects.filter(trigger=trigger).select_related("channel").order_by("id"))


def kinds() -> list[str]:
    return list(PlatformEvent.objects.order_by("id").values_list("kind", flat=True))


# --- the state machine ------------------------------------------------------------------------------
def test_an_error_spike_fires_once_notifies_once_and_resolves_once(aw: AlertWorld):
    rule = aw.rule(channels=[aw.ops, aw.mail], severity="critical")
    now = timezone.now()
    aw.traffic(now - timedelta(seconds=30), requests=100, errors=12)

    assert evaluate_rules(now=now)["fired"] == 1
    rule.refresh_from_db()
    assert (rule.state, rule.last_value, rule.last_evaluated_at, rule.state_since) == ("firing", 12.0, now, now)
    sent = deliveries("alert")
    assert sorted(d.channel.name for d in sent) == ["mail", "ops"]
    payload = sent[0].payload
    assert (payload["rule"], payload["state"], payload["value"], payload["threshold"]) == ("errors", "firing", 12.0, 5)
    assert (payload["app"], payload["project"], payload["severity"], payload["incident"]) == (
        "api",
        "web",
        "critical",
        1,
    )
    assert "firing" in sent[0].subject and "errors" in sent[0].subject
    firing = PlatformEvent.objects.get(kind="alert.firing")
    assert (firing.subject_type, firing.subject_id, firing.project_id) == (
        "deployments.app",
        str(aw.app.pk),
        aw.world.project.pk,
    )
    assert firing.severity == Severity.ERROR  # critical
    assert firing.data["value"] == 12.0 and firing.data["incident"] == 1

    # Still bad, evaluated again (and again): nothing new is sent.
    for seconds in (2, 4):
        assert evaluate_rules(now=now + timedelta(seconds=seconds))["fired"] == 0
    assert len(deliveries("alert")) == 2 and state(rule) == "firing"

    # The bad minute leaves the window: resolved, once.
    after = now + timedelta(seconds=rule.window_seconds)
    aw.traffic(after - timedelta(seconds=15), requests=100, errors=0)
    assert evaluate_rules(now=after)["resolved"] == 1
    assert evaluate_rules(now=after + timedelta(seconds=2))["resolved"] == 0
    rule.refresh_from_db()
    assert (rule.state, rule.last_value) == ("resolved", 0.0)
    resolved = deliveries("resolved")
    assert sorted(d.channel.name for d in resolved) == ["mail", "ops"]
    assert resolved[0].payload["state"] == "resolved" and resolved[0].payload["value"] == 0.0
    assert len(deliveries("alert")) == 2
    assert kinds() == ["alert.firing", "incident.opened", "alert.resolved", "incident.resolved"]


def test_a_disabled_channel_is_not_notified(aw: AlertWorld):
    aw.mail.enabled = False
    aw.mail.save()
    aw.rule(channels=[aw.ops, aw.mail])
    now = timezone.now()
    aw.traffic(now - timedelta(seconds=30), errors=50)
    evaluate_rules(now=now)
    assert [d.channel.name for d in deliveries("alert")] == ["ops"]


def test_for_seconds_holds_the_rule_pending_until_the_condition_has_held_that_long(aw: AlertWorld):
    rule = aw.rule(for_seconds=60)
    now = timezone.now()
    aw.traffic(now - timedelta(seconds=30), errors=20)

    assert evaluate_rules(now=now)["pending"] == 1
    rule.refresh_from_db()
    assert (rule.state, rule.pending_since) == ("pending", now)
    aw.traffic(now + timedelta(seconds=20), errors=20)  # still failing
    evaluate_rules(now=now + timedelta(seconds=59))
    assert state(rule) == "pending" and not Delivery.objects.exists()

    assert evaluate_rules(now=now + timedelta(seconds=60))["fired"] == 1
    assert state(rule) == "firing"
    assert len(deliveries("alert")) == 1
    assert Incident.objects.get().alerts.get().fired_at == now + timedelta(seconds=60)


def test_a_pending_rule_whose_condition_stops_goes_back_to_ok_without_a_word(aw: AlertWorld):
    rule = aw.rule(for_seconds=120)
    now = timezone.now()
    aw.traffic(now - timedelta(seconds=30), errors=20)
    evaluate_rules(now=now)
    assert state(rule) == "pending"

    aw.traffic(now + timedelta(seconds=295), errors=0)
    evaluate_rules(now=now + timedelta(seconds=310))  # the bad bucket left the window
    rule.refresh_from_db()
    assert (rule.state, rule.pending_since) == ("ok", None)
    assert not Delivery.objects.exists() and not Incident.objects.exists()
    assert not PlatformEvent.objects.exists()

    # Bad again: the wait starts over.
    aw.traffic(now + timedelta(seconds=395), errors=20)
    evaluate_rules(now=now + timedelta(seconds=410))
    rule.refresh_from_db()
    assert (rule.state, rule.pending_since) == ("pending", now + timedelta(seconds=410))


def test_a_resolved_rule_can_fire_again_and_notifies_again(aw: AlertWorld):
    rule = aw.rule(window_seconds=60)
    now = timezone.now()
    aw.traffic(now - timedelta(seconds=15), errors=20)
    evaluate_rules(now=now)
    evaluate_rules(now=now + timedelta(seconds=120))
    assert state(rule) == "resolved"
    aw.traffic(now + timedelta(seconds=225), errors=20)
    assert evaluate_rules(now=now + timedelta(seconds=240))["fired"] == 1
    assert len(deliveries("alert")) == 2 and len(deliveries("resolved")) == 1
    # The first incident resolved itself: the second firing opens #2.
    assert list(Incident.objects.order_by("number").values_list("number", "status")) == [
        (1, "resolved"),
        (2, "open"),
    ]


def test_no_data_never_holds(aw: AlertWorld):
    low_traffic = aw.rule("low-traffic", metric="error_rate", operator="lt", threshold=1)
    down = aw.rule("down", metric="up", operator="lt", threshold=1)
    slow = aw.rule("slow", metric="latency_p95_ms", operator="gte", threshold=0)
    counted = aw.rule("quiet", metric="requests", operator="lt", threshold=1)
    summary = evaluate_rules(now=timezone.now())
    assert (summary["evaluated"], summary["fired"]) == (3, 1)
    for rule in (low_traffic, down, slow):
        rule.refresh_from_db()
        assert (rule.state, rule.last_value) == ("ok", None), rule.name
    # A count is a reading even without traffic: no requests at all is 0 requests.
    assert state(counted) == "firing"


@pytest.mark.parametrize(
    ("metric", "operator", "threshold", "fires"),
    [
        ("requests", "gte", 150, True),
        ("responses_5xx", "gt", 30, True),
        ("responses_5xx", "gt", 40, False),
        ("error_rate", "gte", 20, True),
        ("latency_p50_ms", "gt", 100, False),
        ("latency_p99_ms", "gt", 500, True),  # the slow tenth
        ("cpu_percent", "gt", 80, True),
        ("memory_mb", "gte", 512, True),
        ("memory_mb", "gt", 512, False),
        ("restarts", "gte", 2, True),
        ("uptime_percent", "lt", 99, True),
    ],
)
def test_metrics_are_read_from_the_apps_window(aw: AlertWorld, metric, operator, threshold, fires):
    now = timezone.now()
    at = now - timedelta(seconds=20)
    aw.traffic(at, requests=135, errors=35)
    aw.traffic(at, requests=15, latency_le_1000ms=15, latency_le_50ms=0)  # 10% take up to a second
    aw.traffic(
        at,
        requests=0,
        cpu_percent_sum=180.0,
        cpu_samples=2,
        resource_samples=2,
        memory_bytes_max=512 * 2**20,
        restarts=2,
        health_checks=10,
        health_failures=2,
    )
    aw.traffic(now - timedelta(seconds=400), requests=1000, errors=1000)  # outside the 5-minute window
    rule = aw.rule(metric=metric, operator=operator, threshold=threshold)
    evaluate_rules(now=now)
    assert state(rule) == ("firing" if fires else "ok"), rule.last_value


def test_the_up_metric_reads_the_apps_health(aw: AlertWorld):
    rule = aw.rule("down", metric="up", operator="lt", threshold=1)
    health = AppHealth.objects.create(app=aw.app, status="up")
    now = timezone.now()
    evaluate_rules(now=now)
    assert (state(rule), rule.last_value) == ("ok", 1.0)
    health.status = "down"
    health.save()
    evaluate_rules(now=now + timedelta(seconds=2))
    assert (state(rule), rule.last_value) == ("firing", 0.0)
    health.status = "up"
    health.save()
    evaluate_rules(now=now + timedelta(seconds=4))
    assert state(rule) == "resolved"


def test_disabled_rules_are_not_evaluated(aw: AlertWorld):
    rule = aw.rule(enabled=False)
    now = timezone.now()
    aw.traffic(now - timedelta(seconds=30), errors=50)
    assert evaluate_rules(now=now) == dict.fromkeys(evaluation.OUTCOMES, 0)
    rule.refresh_from_db()
    assert (rule.state, rule.last_evaluated_at) == ("ok", None)


def test_one_broken_rule_does_not_stop_the_others(aw: AlertWorld, monkeypatch, caplog):
    broken = aw.rule("broken")
    fine = aw.rule("fine", metric="requests", operator="gte", threshold=1)
    aw.traffic(timezone.now() - timedelta(seconds=30))
    real = evaluation.rule_value

    def flaky(rule, now, totals=None):
        if rule.pk == broken.pk:
            raise RuntimeError("boom")
        return real(rule, now, totals)

    monkeypatch.setattr(evaluation, "rule_value", flaky)
    summary = evaluate_rules()
    assert (summary["errors"], summary["fired"]) == (1, 1)
    assert state(fine) == "firing" and state(broken) == "ok"
    assert "evaluating alert rule" in caplog.text


# --- the window a metric rule reads -----------------------------------------------------------------
def test_a_metric_rule_reads_a_full_window_and_the_bucket_being_written(aw: AlertWorld):
    """window / 10 whole buckets before the current one, plus the current one so far: fresh data
    counts at once, and the count never covers less than the window."""
    rule = aw.rule("traffic", metric="requests", operator="gte", threshold=0, window_seconds=30)
    boundary = bucket_start(timezone.now(), 10)
    for seconds_before, requests in ((40, 1000), (30, 1), (20, 2), (10, 4)):
        aw.traffic(boundary - timedelta(seconds=seconds_before) + timedelta(seconds=1), requests=requests)
    aw.traffic(boundary + timedelta(seconds=1), requests=100)  # the bucket being written

    for offset in (0, 3, 9.9):
        evaluate_rules(now=boundary + timedelta(seconds=offset))
        rule.refresh_from_db()
        assert rule.last_value == 1 + 2 + 4 + 100, offset
    evaluate_rules(now=boundary + timedelta(seconds=10))  # a new bucket begins: the oldest goes out
    rule.refresh_from_db()
    assert rule.last_value == 2 + 4 + 100


def test_a_low_traffic_rule_does_not_flap_on_the_bucket_being_written(aw: AlertWorld):
    """Steady traffic of 10 requests per 10 seconds never looks like fewer than 30 over 30 s, wherever
    in the current bucket the evaluation falls."""
    rule = aw.rule("quiet", metric="requests", operator="lt", threshold=30, window_seconds=30)
    boundary = bucket_start(timezone.now(), 10)
    for seconds in range(-60, 0, 10):
        aw.traffic(boundary + timedelta(seconds=seconds + 2), requests=10)
    aw.traffic(boundary + timedelta(seconds=2), requests=3)  # the bucket being written: 3 so far
    for offset in (0, 2.5, 5, 7.5, 9.9):
        summary = evaluate_rules(now=boundary + timedelta(seconds=offset))
        assert summary["evaluated"] == 1 and summary["pending"] + summary["fired"] == 0, offset
        rule.refresh_from_db()
        assert (rule.state, rule.last_value) == ("ok", 33.0), offset


# --- when an evaluation happens ---------------------------------------------------------------------
def test_an_evaluation_older_than_the_rules_last_one_is_skipped(aw: AlertWorld):
    """A slow evaluator still working with an older clock leaves alone a rule another one evaluated
    more recently: here it would fire again a rule that has just resolved."""
    rule = aw.rule(window_seconds=60)
    now = timezone.now()
    aw.traffic(now - timedelta(seconds=30), errors=50)
    assert evaluate_rules(now=now)["fired"] == 1
    assert evaluate_rules(now=now + timedelta(seconds=120))["resolved"] == 1  # the errors left the window

    stale = evaluate_rules(now=now + timedelta(seconds=1))  # the errors are in this one's window
    assert (stale["skipped"], stale["fired"]) == (1, 0)
    rule.refresh_from_db()
    assert (rule.state, rule.last_evaluated_at) == ("resolved", now + timedelta(seconds=120))
    assert len(deliveries("alert")) == 1 and len(deliveries("resolved")) == 1
    assert Incident.objects.get().status == "resolved"
    # The same time again is not older: evaluated (and nothing changes).
    assert evaluate_rules(now=now + timedelta(seconds=120))["evaluated"] == 1


def test_each_rule_is_evaluated_at_the_time_it_is_locked(aw: AlertWorld, monkeypatch):
    """Without an explicit time, the clock is read once the rules are locked, not once for the whole
    round (a round can take a while): for a batch once the batch is locked (here: the first tick, the
    values that decide both rules fire), then for each rule that changes state once it alone is."""
    first = aw.rule("first", metric="requests", operator="gte", threshold=0)
    second = aw.rule("second", metric="requests", operator="gte", threshold=0)
    start = timezone.now()
    ticks = iter(start + timedelta(seconds=n) for n in range(100))
    locked: list[int] = []
    real_select_for_update = AlertRule.objects.select_for_update

    def clock() -> datetime:
        assert locked, "the clock was read before the rule was locked"
        return next(ticks)

    def select_for_update(*args, **kwargs):
        locked.append(1)
        return real_select_for_update(*args, **kwargs)

    monkeypatch.setattr(evaluation, "timezone", SimpleNamespace(now=clock))
    monkeypatch.setattr(AlertRule.objects, "select_for_update", select_for_update)
    assert evaluate_rules()["fired"] == 2
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.last_evaluated_at, second.last_evaluated_at) == (
        start + timedelta(seconds=1),
        start + timedelta(seconds=2),
    )


# --- event rules ------------------------------------------------------------------------------------
def fail_run(job: CronJob, kind: str = "cron.run_failed") -> PlatformEvent:
    """What the scheduler emits when a run of `job` fails."""
    return event_emit(
        team=job.team, kind=kind, subject=job, message=f"{job.name}: run failed", severity=Severity.ERROR,
        data={"run": 1, "exit_code": 1},
    )  # fmt: skip


def crash(app: App) -> PlatformEvent:
    """What the reconciler emits when a container of `app` crashed."""
    return event_emit(
        team=app.team, kind="container.crashed", subject=app, message=f"{app.name}: container r1 exited",
        severity=Severity.ERROR, data={"replica": 1, "exit_code": 137},
    )  # fmt: skip


def test_a_failed_cron_run_fires_the_jobs_rule_and_no_other_jobs(aw: AlertWorld):
    other = CronJob.objects.create(
        team=aw.team, project=aw.world.project, name="hourly", image="busybox", command=["true"], schedule="@hourly"
    )
    rule = aw.rule(
        "nightly-fails", scope="cron_job", app=None, cron_job=aw.job, metric="event", event_kind="cron.run_failed",
        operator="gte", threshold=1, window_seconds=600,
    )  # fmt: skip
    fail_run(other)
    fail_run(aw.job, "cron.run_timed_out")  # another kind
    evaluate_rules(now=timezone.now() + timedelta(seconds=1))
    assert (state(rule), rule.last_value) == ("ok", 0.0)

    fail_run(aw.job)
    evaluate_rules(now=timezone.now() + timedelta(seconds=1))
    assert (state(rule), rule.last_value) == ("firing", 1.0)
    (delivery,) = deliveries("alert")
    assert delivery.payload["cron_job"] == "nightly" and delivery.payload["event_kind"] == "cron.run_failed"
    firing = PlatformEvent.objects.get(kind="alert.firing")
    assert (firing.subject_type, firing.subject_id) == ("cron.cronjob", str(aw.job.pk))
    assert firing.severity == Severity.WARNING

    # The failure leaves the 10-minute window: resolved.
    evaluate_rules(now=timezone.now() + timedelta(seconds=601))
    assert state(rule) == "resolved"
    assert len(deliveries("resolved")) == 1


def test_a_crashed_container_fires_the_apps_rule(aw: AlertWorld):
    other = App.objects.create(team=aw.team, project=aw.world.project, name="worker")
    rule = aw.rule(
        "crashes", metric="event", event_kind="container.crashed", operator="gte", threshold=2, window_seconds=300
    )
    crash(aw.app)
    crash(other)
    evaluate_rules(now=timezone.now() + timedelta(seconds=1))
    assert (state(rule), rule.last_value) == ("ok", 1.0)
    crash(aw.app)
    evaluate_rules(now=timezone.now() + timedelta(seconds=1))
    assert (state(rule), rule.last_value) == ("firing", 2.0)


def test_a_project_rule_counts_the_kind_for_everything_in_its_project(aw: AlertWorld):
    elsewhere = Project.objects.create(team=aw.team, slug="data", name="Data")
    outside = CronJob.objects.create(
        team=aw.team, project=elsewhere, name="etl", image="busybox", command=["true"], schedule="@hourly"
    )
    rule = aw.rule(
        "web-cron", scope="project", app=None, project=aw.world.project, metric="event", event_kind="cron.run_failed",
        operator="gte", threshold=2,
    )  # fmt: skip
    hourly = CronJob.objects.create(
        team=aw.team, project=aw.world.project, name="hourly", image="busybox", command=["true"], schedule="@hourly"
    )
    fail_run(aw.job)
    fail_run(outside)
    evaluate_rules(now=timezone.now() + timedelta(seconds=1))
    assert (state(rule), rule.last_value) == ("ok", 1.0)
    fail_run(hourly)
    evaluate_rules(now=timezone.now() + timedelta(seconds=1))
    assert state(rule) == "firing"
    firing = PlatformEvent.objects.get(kind="alert.firing")
    # A project's own events belong to its timeline.
    assert (firing.subject_type, firing.project_id) == ("teams.project", aw.world.project.pk)


def test_the_alerts_own_events_never_feed_an_event_count(aw: AlertWorld):
    # A rule can only count the documented kinds; alert.* and incident.* are not among them, so a
    # firing can never make another rule fire in a loop.
    from apps.alerts.rules import EVENT_KINDS

    assert not [k for k in EVENT_KINDS if k.startswith(("alert.", "incident."))]


def test_event_counts_have_an_index_of_their_own(db):
    """An event rule counts a team's events of one kind in a time window: (team, kind, created_at)."""
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, PlatformEvent._meta.db_table)
    assert any(c["index"] and c["columns"] == ["team_id", "kind", "created_at"] for c in constraints.values())


# --- incidents --------------------------------------------------------------------------------------
def test_alerts_of_one_project_join_its_open_incident_which_resolves_when_all_have(aw: AlertWorld):
    errors = aw.rule("errors", severity="warning")
    slow = aw.rule("slow", metric="latency_p50_ms", threshold=100, severity="critical")
    now = timezone.now()
    aw.traffic(now - timedelta(seconds=30), errors=10)
    evaluate_rules(now=now)
    incident = Incident.objects.get()
    assert (incident.number, incident.status, incident.severity) == (1, "open", "warning")
    assert incident.title.startswith("errors: error_rate of api")

    aw.traffic(now, requests=500, errors=100, latency_le_50ms=0, latency_le_500ms=500)  # slow, still failing
    evaluate_rules(now=now + timedelta(seconds=20))
    assert state(slow) == "firing"
    incident.refresh_from_db()
    assert Incident.objects.count() == 1
    assert incident.severity == "critical"  # a critical alert joined
    assert list(incident.alerts.values_list("rule_name", "resolved_at")) == [("errors", None), ("slow", None)]
    assert kinds().count("incident.opened") == 1

    # The errors rule resolves (plenty of good requests), the latency one still fires.
    aw.traffic(now + timedelta(seconds=20), requests=10000, latency_le_50ms=0, latency_le_500ms=10000)
    evaluate_rules(now=now + timedelta(seconds=40))
    assert (state(errors), state(slow)) == ("resolved", "firing")
    incident.refresh_from_db()
    assert incident.status == "open"

    evaluate_rules(now=now + timedelta(seconds=1000))  # everything left the window
    incident.refresh_from_db()
    assert (incident.status, incident.resolved_by) == ("resolved", "auto")
    assert incident.resolved_at is not None
    assert all(alert.resolved_at is not None for alert in incident.alerts.all())
    assert kinds()[-1] == "incident.resolved"


def test_an_acknowledged_incident_is_joined_a_resolved_one_is_not(aw: AlertWorld):
    from apps.alerts.incidents import incident_acknowledge, incident_resolve

    aw.rule("a")
    b = aw.rule("b", metric="requests", threshold=1000)
    c = aw.rule("c", metric="requests", threshold=2000)
    now = timezone.now()
    aw.traffic(now - timedelta(seconds=30), errors=10)
    evaluate_rules(now=now)
    first = Incident.objects.get()
    incident_acknowledge(ctx=aw.ctx, incident=first)
    aw.traffic(now - timedelta(seconds=30), requests=1500, errors=150)  # "a" keeps failing
    evaluate_rules(now=now + timedelta(seconds=1))
    assert state(b) == "firing"
    assert first.alerts.count() == 2 and Incident.objects.count() == 1

    incident_resolve(ctx=aw.ctx, incident=first)
    aw.traffic(now - timedelta(seconds=30), requests=1000, errors=100)
    evaluate_rules(now=now + timedelta(seconds=2))
    assert state(c) == "firing"
    second = Incident.objects.exclude(pk=first.pk).get()
    assert (second.number, list(second.alerts.values_list("rule_name", flat=True))) == (2, ["c"])


def test_projects_have_incidents_of_their_own(aw: AlertWorld):
    elsewhere = Project.objects.create(team=aw.team, slug="data", name="Data")
    etl = App.objects.create(team=aw.team, project=elsewhere, name="etl")
    aw.rule("web-errors")
    aw.rule("etl-errors", app=etl)
    now = timezone.now()
    aw.traffic(now - timedelta(seconds=30), errors=10)
    aw.traffic(now - timedelta(seconds=30), errors=10, app=etl)
    evaluate_rules(now=now)
    assert sorted(Incident.objects.values_list("project__slug", "number")) == [("data", 2), ("web", 1)]


def test_the_open_firing_of_a_rule_is_one_row_in_the_database_too(aw: AlertWorld):
    rule = aw.rule()
    now = timezone.now()
    aw.traffic(now - timedelta(seconds=30), errors=10)
    evaluate_rules(now=now)
    from django.db import IntegrityError, transaction

    with pytest.raises(IntegrityError), transaction.atomic():
        IncidentAlert.objects.create(
            incident=Incident.objects.get(), rule=rule, rule_name=rule.name, value=1.0, fired_at=now
        )


# --- two evaluators ---------------------------------------------------------------------------------
def test_two_evaluators_racing_notify_exactly_once_per_firing_and_resolution(transactional_db, aw, monkeypatch):
    sent: list[int] = []  # what would go to the workers after each commit
    monkeypatch.setattr(delivery_attempt, "apply_async", lambda args, **options: sent.append(args[0]))
    apps = [aw.app, *(App.objects.create(team=aw.team, project=aw.world.project, name=f"app{i}") for i in range(3))]
    rules = [aw.rule(f"errors-{app.name}-{n}", app=app, window_seconds=60) for app in apps for n in range(3)]
    errors: list[BaseException] = []
    summaries: list[dict] = []

    def evaluator(barrier: threading.Barrier, now: datetime) -> None:
        try:
            barrier.wait(timeout=10)
            summaries.append(evaluate_rules(now=now))
        except BaseException as exc:  # reported by the test thread
            errors.append(exc)
        finally:
            connection.close()  # each thread had its own connection to the test database

    def race(now: datetime) -> None:
        barrier = threading.Barrier(2)
        threads = [threading.Thread(target=evaluator, args=(barrier, now)) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert not errors, errors

    rounds = 4
    base = timezone.now()
    for n in range(rounds):
        start = base + timedelta(seconds=1000 * n)
        for app in apps:
            aw.traffic(start - timedelta(seconds=15), errors=50, app=app)
        race(start)  # every rule fires
        race(start + timedelta(seconds=1))  # still firing: nothing new
        race(start + timedelta(seconds=100))  # the errors left the window: every rule resolves
        race(start + timedelta(seconds=101))

    total = len(rules) * rounds
    assert sum(s["fired"] for s in summaries) == total
    assert sum(s["resolved"] for s in summaries) == total
    assert Delivery.objects.filter(trigger="alert").count() == total
    assert Delivery.objects.filter(trigger="resolved").count() == total
    assert len(sent) == 2 * total == len(set(sent))
    assert PlatformEvent.objects.filter(kind="alert.firing").count() == total
    assert PlatformEvent.objects.filter(kind="alert.resolved").count() == total
    # One incident per round (every firing of the round joined it), each resolved by itself.
    assert list(Incident.objects.order_by("number").values_list("number", "status", "resolved_by")) == [
        (n + 1, "resolved", "auto") for n in range(rounds)
    ]
    assert IncidentAlert.objects.count() == total
    assert PlatformEvent.objects.filter(kind="incident.resolved").count() == rounds
