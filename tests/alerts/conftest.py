"""Fixtures for the alert rule and incident tests: a team context for services, an app, a cron job
and a managed database written straight to the database, channels made through the service, and metrics written the
way the collectors write them (apps.monitoring.services.record)."""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone

from apps.alerts.models import AlertRule, NotificationChannel
from apps.alerts.rules import rule_create
from apps.alerts.services import channel_create
from apps.core.access import TeamContext, resolve_team
from apps.core.actors import Actor
from apps.cron.models import CronJob
from apps.databases.models import Database, DatabaseStatus
from apps.deployments.models import App
from apps.monitoring.services import record
from tests.conftest import TeamWorld


def ctx_of(world: TeamWorld, role: str = "owner") -> TeamContext:
    return resolve_team(Actor.system("test", user=world.user(role)), world.team.slug)


@dataclass
class AlertWorld:
    """team_a with an app "api", a cron job "nightly" and an available database "main" in project
    "web", a webhook channel "ops" and an e-mail channel "mail" (both enabled)."""

    world: TeamWorld
    ctx: TeamContext
    app: App
    job: CronJob
    database: Database
    ops: NotificationChannel
    mail: NotificationChannel

    @property
    def team(self) -> Any:
        return self.world.team

    def rule(self, name: str = "errors", **fields: Any) -> AlertRule:
        """An app rule on error_rate > 5 over 5 minutes, firing at once, to "ops" (override any field)."""
        defaults: dict[str, Any] = {
            "scope": "app",
            "app": self.app,
            "metric": "error_rate",
            "operator": "gt",
            "threshold": 5,
            "channels": [self.ops],
        }
        return rule_create(ctx=self.ctx, name=name, **(defaults | fields))

    def traffic(
        self, at: datetime, *, requests: int = 100, errors: int = 0, app: App | None = None, **more: Any
    ) -> None:
        """`requests` requests answered at `at`, `errors` of them with a 5xx, all within 50 ms (unless
        `more` says otherwise: it holds further fields of apps.monitoring.services.record)."""
        app = app or self.app
        values = {"requests": requests, "responses_5xx": errors, "latency_le_50ms": requests} | more
        record(app_id=app.pk, team_id=app.team_id, at=at, **values)


@pytest.fixture
def aw(team_a: TeamWorld) -> AlertWorld:
    ctx = ctx_of(team_a)
    app = App.objects.create(team=team_a.team, project=team_a.project, name="api")
    job = CronJob.objects.create(
        team=team_a.team, project=team_a.project, name="nightly", image="busybox", command=["true"], schedule="@daily"
    )
    database = make_database(team_a, "main")
    ops, _ = channel_create(ctx=ctx, name="ops", kind="webhook", target="http://127.0.0.1:9/hook")
    mail, _ = channel_create(ctx=ctx, name="mail", kind="email", target="oncall@example.com")
    return AlertWorld(world=team_a, ctx=ctx, app=app, job=job, database=database, ops=ops, mail=mail)


def make_database(world: TeamWorld, name: str, **fields: Any) -> Database:
    """A managed database row in `world`'s project, as provisioning leaves it (no server behind it:
    alert rules only read its row and its events)."""
    values: dict[str, Any] = {
        "team": world.team,
        "project": world.project,
        "name": name,
        "engine": "postgres",
        "status": DatabaseStatus.AVAILABLE,
        "db_name": name.replace("-", "_"),
        "username": name.replace("-", "_"),
        "password_encrypted": "not-used",
    }
    return Database.objects.create(**(values | fields))


def later(seconds: float, since: datetime | None = None) -> datetime:
    return (since or timezone.now()) + timedelta(seconds=seconds)
