"""An evaluation round costs the same queries for 3 rules and for 30 — metric, health, cron job and
project event rules on as many apps — as long as no rule changes state (the usual round); a rule that
does change goes through its own locked transaction (tests/alerts/test_evaluation.py)."""

from datetime import timedelta
from typing import Any

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.alerts.evaluation import evaluate_rules
from apps.alerts.models import AlertRule
from apps.deployments.models import App
from apps.monitoring.models import AppHealth
from apps.monitoring.services import record
from tests.conftest import TeamWorld
from tests.core.bulk import alert_rules, apps


def watched_apps(world: TeamWorld, start: int, count: int) -> None:
    """`count` apps with traffic and a health record, each with an error-rate rule and an `up` rule
    (neither holds), and `count` rules of every scope from tests/core/bulk.py."""
    apps(world, start, count)
    made = App.objects.filter(team=world.team, name__in=[f"a{i}" for i in range(start, start + count)])
    for app in made:
        record(app_id=app.pk, team_id=app.team_id, at=timezone.now() - timedelta(seconds=30), requests=10)
        AppHealth.objects.create(app=app, status="up")
    AlertRule.objects.bulk_create(
        AlertRule(team=world.team, project=world.project, name=f"{metric}-{app.name}", scope="app", app=app,
                  metric=metric, operator=operator, threshold=threshold)
        for app in made
        for metric, operator, threshold in (("error_rate", "gt", 5), ("up", "lt", 1))
    )  # fmt: skip
    alert_rules(world, start, count)


def test_a_round_costs_the_same_queries_for_3_apps_and_30(team_a: TeamWorld, django_assert_num_queries: Any) -> None:
    watched_apps(team_a, 0, 3)
    now = timezone.now()
    with CaptureQueriesContext(connection) as few:
        summary = evaluate_rules(now=now)
    assert summary["evaluated"] == AlertRule.objects.count() == 3 * 3

    watched_apps(team_a, 3, 27)
    with django_assert_num_queries(len(few.captured_queries)):
        summary = evaluate_rules(now=now + timedelta(seconds=2))
    assert summary["evaluated"] == AlertRule.objects.count() == 30 * 3
    assert not AlertRule.objects.exclude(state="ok").exists()
    assert not AlertRule.objects.exclude(last_evaluated_at=now + timedelta(seconds=2)).exists()
    values = set(AlertRule.objects.filter(app__name__regex=r"^a\d+$").values_list("metric", "last_value"))
    assert values == {("error_rate", 0.0), ("up", 1.0)}  # each rule's own value, recorded together
    print(f"\nevaluation round: {len(few.captured_queries)} queries for 9 rules and for 90")
