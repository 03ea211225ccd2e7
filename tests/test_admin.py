"""The operators' admin site: every screen opens, token hashes, variable values and webhook signing
secrets never show, the suspend and revoke actions go through the services (and the audit log), the
app actions are offered, the alert rule and incident actions go through the services, database
servers are registered and re-keyed through the services without their admin URL ever showing, and
the audit log, deployments, cron runs, platform events, notification deliveries, alert rules,
incidents, databases and backups cannot be edited or added by hand."""

from datetime import timedelta
from typing import Any

import pytest
from django.contrib import admin
from django.db import models
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from apps.accounts.models import User
from apps.alerts import services as alert_services
from apps.alerts.evaluation import evaluate_rules
from apps.alerts.models import AlertRule, Delivery, Incident, NotificationChannel
from apps.alerts.rules import rule_create
from apps.audit.models import AuditEvent
from apps.core.access import resolve_team
from apps.core.actors import Actor
from apps.core.models import PendingTask
from apps.cron import services as cron_services
from apps.cron.models import CronRun, RunStatus, Trigger
from apps.databases import services as database_services
from apps.databases.models import Backup, BackupStatus, Database, DatabaseServer
from apps.deployments import services as deployment_services
from apps.deployments.models import App, Container, Deployment, DeploymentStatus
from apps.events.models import PlatformEvent, Severity
from apps.events.services import event_emit
from apps.monitoring.services import record
from apps.secrets import crypto
from apps.secrets.models import Level, Variable
from apps.secrets.services import Scope, variables_set
from apps.teams.services import grant_create, group_create, service_account_create
from apps.tokens.models import ApiToken
from tests.conftest import TeamWorld, assert_error, make_token, token_client
from tests.core.routes import GUARD_SERVER_URL, available_database


@pytest.fixture
def operator(db: Any) -> User:
    return User.objects.create_superuser(username="root", email="root@example.com", password="pw-not-used-1")


@pytest.fixture
def admin_client(operator: User) -> Client:
    client = Client()
    client.force_login(operator)
    return client


# The value of every variable `everything` sets: no admin page may show it.
SENTINEL = "sentinel-Adm1n-value"


@pytest.fixture
def everything(team_a: TeamWorld) -> TeamWorld:
    """team_a with at least one row of every model the admin shows."""
    ctx = resolve_team(Actor(user=team_a.user("owner"), via="test"), "alpha")
    group_create(ctx=ctx, slug="ops", name="Ops", members=[team_a.user("viewer").pk])
    service_account_create(ctx=ctx, slug="ci", role="developer")
    grant_create(ctx=ctx, obj=team_a.project, capability="deploy", user_id=team_a.user("viewer").pk, group_slug=None)
    grant_create(ctx=ctx, obj=team_a.project, capability="view_logs", user_id=None, group_slug="ops")
    make_token(team_a.team, team_a.user("developer"), projects=["web"])
    # An app with a live deployment (its "Queued by" event too) and a container. The services
    # enqueue Celery tasks on commit, and this test's transaction never commits: no task runs.
    app = deployment_services.app_create(ctx=ctx, project=team_a.project, name="api")
    grant_create(ctx=ctx, obj=app, capability="deploy", user_id=team_a.user("viewer").pk, group_slug=None)
    deployment = deployment_services.deployment_create(ctx=ctx, app=app, image="registry.local/api:1")
    Deployment.objects.filter(pk=deployment.pk).update(status=DeploymentStatus.LIVE)
    App.objects.filter(pk=app.pk).update(live_deployment=deployment)
    Container.objects.create(team=team_a.team, app=app, deployment=deployment, replica=1, name="ps-alpha-api-1-1")
    # A plain variable and a secret (the plain one's value is readable over the API, never here).
    for scope, secret in ((Scope(Level.TEAM), False), (Scope(Level.APP, app=app), True)):
        variables_set(ctx=ctx, scope=scope, values={"ADMIN_VAR": SENTINEL}, secret=secret, restart=False)
    # A cron job with a failed run (made as the scheduler would) and the event the failure raised.
    job = cron_services.cron_job_create(
        ctx=ctx, project=team_a.project, name="nightly", image="busybox", command=["true"], schedule="@daily"
    )
    run = CronRun.objects.create(
        team=team_a.team, job=job, trigger=Trigger.MANUAL, status=RunStatus.FAILED, exit_code=1, log_tail="boom"
    )
    event_emit(
        team=team_a.team,
        kind="cron.run_failed",
        subject=job,
        message="nightly: run failed",
        severity=Severity.ERROR,
        data={"run": run.pk},
    )
    # A webhook channel (its signing secret stored encrypted) and a queued test delivery.
    channel, raw_secret = alert_services.channel_create(
        ctx=ctx, name="ops-hook", kind="webhook", target="http://127.0.0.1:9/hook"
    )
    assert raw_secret is not None
    alert_services.channel_test(ctx=ctx, channel=channel)
    # An alert rule on the app's error rate, fired by a bad minute: incident #1 with its alert.
    rule_create(ctx=ctx, name="errors", scope="app", app=app, metric="error_rate", threshold=5, channels=[channel])
    now = timezone.now()
    record(app_id=app.pk, team_id=app.team_id, at=now - timedelta(seconds=30), requests=10, responses_5xx=5)
    evaluate_rules(now=now)
    assert Incident.objects.filter(team=team_a.team).exists()
    # A database on a shared server (recorded without connecting), attached to the app, backed up once.
    database = available_database(ctx, team_a.project, "main")
    database_services.database_attach(ctx=ctx, database=database, app=app)
    Backup.objects.create(team=team_a.team, database=database, number=1, status=BackupStatus.FAILED, error="refused")
    # A task kept while the broker was unreachable, as apps.core.broker keeps one.
    PendingTask.objects.create(task="deployments.converge_app", args=[app.pk], task_id="0" * 36, last_error="down")
    return team_a


def admin_url(model: type[models.Model], view: str, *args: Any) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


REGISTERED = [pytest.param(model, id=model._meta.label) for model in admin.site._registry]


@pytest.mark.parametrize("model", REGISTERED)
def test_changelist_and_change_page_of_every_registered_model_open(
    admin_client: Client, everything: TeamWorld, model: type[models.Model]
) -> None:
    obj = model._default_manager.first()
    assert obj is not None, f"the `everything` fixture makes no {model._meta.label}"
    assert admin_client.get(admin_url(model, "changelist")).status_code == 200
    assert admin_client.get(admin_url(model, "change", obj.pk)).status_code == 200


def test_token_admin_never_shows_the_token_hash(admin_client: Client, everything: TeamWorld) -> None:
    token = ApiToken.objects.get(team=everything.team)
    for url in (admin_url(ApiToken, "changelist"), admin_url(ApiToken, "change", token.pk)):
        response = admin_client.get(url)
        assert response.status_code == 200
        assert token.prefix in response.content.decode()
        assert token.token_hash not in response.content.decode()


@pytest.mark.parametrize(
    "model",
    [
        *(ApiToken, Deployment, Container, Variable, CronRun, PlatformEvent, Delivery, AlertRule, Incident),
        Database,
        Backup,
        PendingTask,
    ],
    ids=lambda m: m._meta.label,
)
def test_rows_made_by_services_cannot_be_added_in_the_admin(
    admin_client: Client, db: Any, model: type[models.Model]
) -> None:
    assert admin_client.get(admin_url(model, "add")).status_code == 403


@pytest.mark.parametrize("secret", [False, True], ids=["plain", "secret"])
def test_variable_admin_pages_never_show_a_value(admin_client: Client, everything: TeamWorld, secret: bool) -> None:
    variable = Variable.objects.select_related("current").get(name="ADMIN_VAR", secret=secret)
    for url in (admin_url(Variable, "changelist"), admin_url(Variable, "change", variable.pk)):
        response = admin_client.get(url)
        assert response.status_code == 200, url
        html = response.content.decode()
        assert "ADMIN_VAR" in html
        assert SENTINEL not in html
        assert variable.current.value_encrypted not in html  # not even encrypted
    # Deleting in the admin would skip the versions and the audit log: unset goes through the API.
    assert admin_client.get(admin_url(Variable, "delete", variable.pk)).status_code == 403
    assert Variable.objects.filter(pk=variable.pk).exists()


def test_channel_admin_never_shows_the_signing_secret(admin_client: Client, everything: TeamWorld) -> None:
    channel = NotificationChannel.objects.get(name="ops-hook")
    raw = crypto.decrypt(channel.signing_secret_encrypted)
    for url in (admin_url(NotificationChannel, "changelist"), admin_url(NotificationChannel, "change", channel.pk)):
        response = admin_client.get(url)
        assert response.status_code == 200, url
        html = response.content.decode()
        assert "ops-hook" in html
        assert channel.signing_secret_encrypted not in html
        assert raw not in html
        assert "signing_secret" not in html  # not even an empty field


def test_channel_admin_only_switches_a_channel_off_and_keeps_its_secret(
    admin_client: Client, everything: TeamWorld
) -> None:
    channel = NotificationChannel.objects.get(name="ops-hook")
    change = admin_url(NotificationChannel, "change", channel.pk)
    form = {"team": channel.team_id, "name": "ops-hook", "kind": "webhook", "target": "http://127.0.0.1:9/new"}
    assert admin_client.post(change, form).status_code == 302  # "enabled" left unticked
    saved = NotificationChannel.objects.get(pk=channel.pk)
    assert saved.enabled is False
    assert saved.target == channel.target  # targets are validated by the API only: read-only here
    assert saved.signing_secret_encrypted == channel.signing_secret_encrypted


def test_deployment_change_page_shows_its_events_read_only(admin_client: Client, everything: TeamWorld) -> None:
    deployment = Deployment.objects.get(app__name="api")
    before = Deployment.objects.values().get(pk=deployment.pk)
    change = admin_url(Deployment, "change", deployment.pk)
    assert "Queued by" in admin_client.get(change).content.decode()
    admin_client.post(change, {"image": "evil:latest", "status": "failed"})
    assert Deployment.objects.values().get(pk=deployment.pk) == before


def test_app_admin_offers_redeploy_stop_and_start(admin_client: Client, everything: TeamWorld) -> None:
    html = admin_client.get(admin_url(App, "changelist")).content.decode()
    for action in ("redeploy", "stop", "start"):
        assert f'<option value="{action}">' in html


@pytest.mark.parametrize(("action", "running"), [("stop", False), ("start", True)])
def test_app_stop_and_start_actions_go_through_the_services_and_are_audited(
    admin_client: Client, operator: User, everything: TeamWorld, action: str, running: bool
) -> None:
    app = App.objects.get(name="api")
    App.objects.filter(pk=app.pk).update(desired_running=not running)
    response = admin_client.post(admin_url(App, "changelist"), {"action": action, "_selected_action": [app.pk]})
    assert response.status_code == 302

    app.refresh_from_db()
    assert app.desired_running is running
    event = AuditEvent.objects.get(action=f"app.{action}")
    assert (event.team_id, event.actor_id, event.via) == (everything.team.pk, operator.pk, "admin")


def test_app_redeploy_action_queues_a_release_of_the_live_image(
    admin_client: Client, operator: User, everything: TeamWorld
) -> None:
    app = App.objects.get(name="api")
    response = admin_client.post(admin_url(App, "changelist"), {"action": "redeploy", "_selected_action": [app.pk]})
    assert response.status_code == 302

    queued = Deployment.objects.filter(app=app).order_by("-number").first()
    assert (queued.number, queued.image, queued.status) == (2, "registry.local/api:1", DeploymentStatus.PENDING)
    event = AuditEvent.objects.get(action="app.restart")
    assert (event.actor_id, event.via) == (operator.pk, "admin")


def test_suspend_action_blocks_the_teams_api_and_is_audited(
    admin_client: Client, operator: User, team_a: TeamWorld, team_b: TeamWorld, client_for: Any
) -> None:
    api = client_for(team_a, "viewer")
    response = admin_client.post(
        admin_url(type(team_a.team), "changelist"), {"action": "suspend", "_selected_action": [team_a.team.pk]}
    )
    assert response.status_code == 302

    team_a.team.refresh_from_db()
    team_b.team.refresh_from_db()
    assert team_a.team.suspended_at is not None
    assert team_b.team.suspended_at is None
    assert_error(api.get("/api/v1/teams/alpha/"), 403, "team_suspended")
    event = AuditEvent.objects.get(action="team.suspend")
    assert (event.team_id, event.actor_id, event.via) == (team_a.team.pk, operator.pk, "admin")


def test_resume_action_restores_the_teams_api(admin_client: Client, team_a: TeamWorld, client_for: Any) -> None:
    api = client_for(team_a, "viewer")
    changelist = admin_url(type(team_a.team), "changelist")
    admin_client.post(changelist, {"action": "suspend", "_selected_action": [team_a.team.pk]})
    admin_client.post(changelist, {"action": "resume", "_selected_action": [team_a.team.pk]})

    team_a.team.refresh_from_db()
    assert team_a.team.suspended_at is None
    assert api.get("/api/v1/teams/alpha/").status_code == 200
    assert AuditEvent.objects.filter(action="team.resume", via="admin").count() == 1


def test_revoke_action_revokes_the_token_and_is_audited(
    admin_client: Client, operator: User, team_a: TeamWorld
) -> None:
    token, raw = make_token(team_a.team, team_a.user("developer"))
    kept, kept_raw = make_token(team_a.team, team_a.user("developer"))
    response = admin_client.post(
        admin_url(ApiToken, "changelist"), {"action": "revoke", "_selected_action": [token.pk]}
    )
    assert response.status_code == 302

    token.refresh_from_db()
    kept.refresh_from_db()
    assert token.revoked_at is not None
    assert kept.revoked_at is None
    assert_error(token_client(raw).get("/api/v1/teams/alpha/"), 401, "not_authenticated")
    assert token_client(kept_raw).get("/api/v1/teams/alpha/").status_code == 200
    event = AuditEvent.objects.get(action="token.revoke")
    assert (event.target_id, event.actor_id, event.via) == (str(token.pk), operator.pk, "admin")


def test_audit_event_admin_is_read_only(admin_client: Client, team_a: TeamWorld) -> None:
    event = AuditEvent.objects.get(action="team.create", team=team_a.team)
    before = AuditEvent.objects.values().get(pk=event.pk)
    count = AuditEvent.objects.count()

    assert admin_client.get(admin_url(AuditEvent, "add")).status_code == 403
    assert admin_client.post(admin_url(AuditEvent, "add"), {"action": "forged"}).status_code == 403
    change = admin_url(AuditEvent, "change", event.pk)
    assert admin_client.get(change).status_code == 200  # viewable
    tampered = {"action": "nothing.happened", "actor_label": "nobody", "via": "admin", "data": "{}"}
    assert admin_client.post(change, tampered).status_code == 403
    assert admin_client.get(admin_url(AuditEvent, "delete", event.pk)).status_code == 403
    assert admin_client.post(admin_url(AuditEvent, "delete", event.pk), {"post": "yes"}).status_code == 403
    admin_client.post(
        admin_url(AuditEvent, "changelist"), {"action": "delete_selected", "_selected_action": [event.pk]}
    )

    assert AuditEvent.objects.values().get(pk=event.pk) == before
    assert AuditEvent.objects.count() == count


def test_platform_event_admin_cannot_change_an_event(admin_client: Client, everything: TeamWorld) -> None:
    event = PlatformEvent.objects.get(team=everything.team, kind="cron.run_failed")
    before = PlatformEvent.objects.values().get(pk=event.pk)
    change = admin_url(PlatformEvent, "change", event.pk)
    assert admin_client.get(change).status_code == 200  # viewable
    forged = {"kind": "cron.run_succeeded", "severity": "info", "message": "all good", "data": "{}"}
    assert admin_client.post(change, forged).status_code == 403
    assert PlatformEvent.objects.values().get(pk=event.pk) == before


def test_alert_rule_admin_only_disables_through_the_service(
    admin_client: Client, operator: User, everything: TeamWorld
) -> None:
    rule = AlertRule.objects.get(name="errors")
    assert rule.state == "firing"
    change = admin_url(AlertRule, "change", rule.pk)
    admin_client.post(change, {"threshold": "99", "enabled": "", "state": "ok"})
    rule.refresh_from_db()
    assert (rule.threshold, rule.enabled, rule.state) == (5, True, "firing")  # nothing changes by hand

    response = admin_client.post(
        admin_url(AlertRule, "changelist"), {"action": "disable", "_selected_action": [rule.pk]}
    )
    assert response.status_code == 302
    rule.refresh_from_db()
    assert (rule.enabled, rule.state) == (False, "ok")
    assert Incident.objects.get(team=everything.team).status == "resolved"  # its only firing closed
    event = AuditEvent.objects.get(action="alert_rule.update")
    assert (event.actor_id, event.via, event.data) == (operator.pk, "admin", {"enabled": False})


def test_incident_admin_shows_its_alerts_and_resolves_through_the_service(
    admin_client: Client, operator: User, everything: TeamWorld
) -> None:
    incident = Incident.objects.get(team=everything.team)
    html = admin_client.get(admin_url(Incident, "change", incident.pk)).content.decode()
    assert "errors" in html  # the alert inline
    admin_client.post(admin_url(Incident, "change", incident.pk), {"title": "forged", "status": "resolved"})
    incident.refresh_from_db()
    assert (incident.title, incident.status) != ("forged", "resolved")

    response = admin_client.post(
        admin_url(Incident, "changelist"), {"action": "resolve", "_selected_action": [incident.pk]}
    )
    assert response.status_code == 302
    incident.refresh_from_db()
    assert (incident.status, incident.resolved_by) == ("resolved", operator.get_username())
    event = AuditEvent.objects.get(action="incident.resolve")
    assert (event.actor_id, event.via) == (operator.pk, "admin")


# --- managed databases ---------------------------------------------------------------------------------
# The machine's PostgreSQL trusts local connections: a password in the URL is not checked, but it is
# stored (encrypted) like any other, so the pages below can be searched for it.
LOCAL_PG_PASSWORD = "sentinel-Adm1n-pw"
LOCAL_PG_URL = f"postgres://postgres:{LOCAL_PG_PASSWORD}@127.0.0.1:5432/postgres"


def test_server_admin_never_shows_the_admin_url(admin_client: Client, everything: TeamWorld) -> None:
    server = DatabaseServer.objects.get()
    for url in (admin_url(DatabaseServer, "changelist"), admin_url(DatabaseServer, "change", server.pk)):
        html = admin_client.get(url).content.decode()
        assert server.name in html
        assert server.admin_url_encrypted not in html
        assert GUARD_SERVER_URL not in html
        assert "127.0.0.1:5432" not in html


def test_registering_a_server_in_the_admin_connects_and_stores_the_url_encrypted(admin_client: Client, db: Any) -> None:
    form = {"engine": "postgres", "admin_url": LOCAL_PG_URL, "name": "", "host_for_apps": "db.internal"}
    response = admin_client.post(admin_url(DatabaseServer, "add"), form, follow=True)

    assert response.status_code == 200
    server = DatabaseServer.objects.get()
    assert server.name == "postgres-127-0-0-1-5432"
    assert server.version  # reported by the server it connected to
    assert (server.host_for_apps, server.enabled) == ("db.internal", True)
    assert crypto.decrypt(server.admin_url_encrypted) == LOCAL_PG_URL
    html = admin_client.get(admin_url(DatabaseServer, "change", server.pk)).content.decode()
    assert LOCAL_PG_PASSWORD not in html
    assert server.admin_url_encrypted not in html
    assert AuditEvent.objects.filter(action="database_server.register").count() == 1


@pytest.mark.parametrize(
    ("admin_url_value", "message"),
    [
        ("postgres://postgres@127.0.0.1:1/postgres", "cannot connect"),
        ("mysql://root@127.0.0.1:3306/", "postgres://"),
        ("", "This field is required"),
    ],
    ids=["unreachable", "wrong scheme", "missing"],
)
def test_a_server_the_admin_cannot_register_is_a_form_error_and_nothing_is_saved(
    admin_client: Client, db: Any, admin_url_value: str, message: str
) -> None:
    form = {"engine": "postgres", "admin_url": admin_url_value, "name": "pg-main"}
    response = admin_client.post(admin_url(DatabaseServer, "add"), form)

    assert response.status_code == 200  # the form again, with the error
    html = response.content.decode()
    assert message in html
    if admin_url_value:
        assert admin_url_value not in html  # never echoed back
    assert not DatabaseServer.objects.exists()


def test_the_server_change_form_keeps_the_url_unless_a_new_one_is_given(
    admin_client: Client, everything: TeamWorld
) -> None:
    server = DatabaseServer.objects.get()
    change = admin_url(DatabaseServer, "change", server.pk)
    kept = server.admin_url_encrypted

    form = {"host_for_apps": "pg.internal", "port_for_apps": "6432", "admin_url": ""}  # "enabled" unticked
    assert admin_client.post(change, form).status_code == 302
    server.refresh_from_db()
    assert (server.host_for_apps, server.port_for_apps, server.enabled) == ("pg.internal", 6432, False)
    assert server.admin_url_encrypted == kept

    refused = {**form, "admin_url": "postgres://postgres@127.0.0.1:1/postgres"}
    assert admin_client.post(change, refused).status_code == 200
    server.refresh_from_db()
    assert server.admin_url_encrypted == kept

    assert admin_client.post(change, {**form, "enabled": "on", "admin_url": LOCAL_PG_URL}).status_code == 302
    server.refresh_from_db()
    assert crypto.decrypt(server.admin_url_encrypted) == LOCAL_PG_URL
    assert server.enabled is True
    assert AuditEvent.objects.filter(action="database_server.update").count() == 1


def test_database_admin_is_read_only_and_never_shows_the_password(admin_client: Client, everything: TeamWorld) -> None:
    database = Database.objects.get(name="main")
    password = crypto.decrypt(database.password_encrypted)
    change = admin_url(Database, "change", database.pk)
    html = admin_client.get(change).content.decode()
    assert "Available" in html
    assert "DATABASE_URL" in html  # the attachment inline
    assert password not in html
    assert database.password_encrypted not in html
    before = Database.objects.values().get(pk=database.pk)
    assert admin_client.post(change, {"name": "renamed", "status": "failed"}).status_code == 403
    assert admin_client.get(admin_url(Database, "delete", database.pk)).status_code == 403
    assert Database.objects.values().get(pk=database.pk) == before
