"""Bulk factories for list-endpoint tests: `grow(world, start, count)` adds `count` rows to what a
list endpoint of team `world` shows, fast (bulk_create, no services), numbered from `start`."""

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.utils import timezone

from apps.accounts.models import User
from apps.alerts.models import (
    AlertRule,
    ChannelKind,
    Delivery,
    DeliveryStatus,
    Incident,
    IncidentAlert,
    IncidentStatus,
    NotificationChannel,
)
from apps.audit.models import AuditEvent
from apps.cron.models import CronJob, CronRun, RunStatus, Trigger
from apps.databases.models import Backup, BackupStatus, BackupTrigger, Database, DatabaseAttachment, DatabaseStatus
from apps.deployments.models import App, Container, Deployment, DeploymentEvent, DeploymentStatus
from apps.events.models import PlatformEvent, Severity
from apps.registries.models import RegistryCredential
from apps.secrets import crypto
from apps.secrets.models import Level, Variable, VariableVersion
from apps.teams.models import (
    Membership,
    Project,
    ServiceAccount,
    Team,
    TeamGroup,
)
from apps.teams.services import default_plan, grant_models
from apps.tokens.models import ApiToken, hash_token
from tests.conftest import TeamWorld
from tests.core.routes import CHANNEL, CHANNEL_TARGET, CRON_IMAGE, CRON_JOB, DATABASE, INCIDENT, VARIABLE


def users(world: TeamWorld, start: int, count: int, tag: str, **fields: Any) -> list[User]:
    return User.objects.bulk_create(
        User(username=f"{tag}{i}@{world.team.slug}.bulk", email=f"{tag}{i}@{world.team.slug}.bulk", **fields)
        for i in range(start, start + count)
    )


def members(world: TeamWorld, start: int, count: int) -> None:
    Membership.objects.bulk_create(
        Membership(team=world.team, user=user, role="viewer") for user in users(world, start, count, "m")
    )


def teams(world: TeamWorld, start: int, count: int) -> None:
    created = Team.objects.bulk_create(
        Team(slug=f"bulk-{i}", name=f"Bulk {i}", plan=default_plan()) for i in range(start, start + count)
    )
    Membership.objects.bulk_create(Membership(team=t, user=world.user("owner"), role="admin") for t in created)


def projects(world: TeamWorld, start: int, count: int) -> list[Project]:
    return Project.objects.bulk_create(
        Project(team=world.team, slug=f"p{i}", name=f"P{i}") for i in range(start, start + count)
    )


def team_groups(world: TeamWorld, start: int, count: int) -> list[TeamGroup]:
    auth_groups = Group.objects.bulk_create(
        Group(name=f"team-{world.team.pk}-g{i}") for i in range(start, start + count)
    )
    created = TeamGroup.objects.bulk_create(
        TeamGroup(team=world.team, slug=f"g{i}", name=f"G{i}", group=g)
        for i, g in zip(range(start, start + count), auth_groups, strict=True)
    )
    people = [world.user("developer"), world.user("viewer")]
    User.groups.through.objects.bulk_create(
        User.groups.through(user=person, group=g) for g in auth_groups for person in people
    )
    return created


def service_accounts(world: TeamWorld, start: int, count: int) -> None:
    robots = users(world, start, count, "sa", is_service_account=True)
    ServiceAccount.objects.bulk_create(
        ServiceAccount(team=world.team, slug=f"sa{i}", user=robot)
        for i, robot in zip(range(start, start + count), robots, strict=True)
    )
    Membership.objects.bulk_create(Membership(team=world.team, user=robot, role="developer") for robot in robots)


def tokens(world: TeamWorld, start: int, count: int) -> None:
    created = ApiToken.objects.bulk_create(
        ApiToken(
            team=world.team,
            user=world.user("developer"),
            name=f"t{i}",
            prefix=f"pst_bulk{i:04d}",
            token_hash=hash_token(f"bulk-{world.team.slug}-{i}"),
            scopes=["read"],
            expires_at=timezone.now() + timedelta(days=1),
        )
        for i in range(start, start + count)
    )
    ApiToken.projects.through.objects.bulk_create(
        ApiToken.projects.through(apitoken=token, project=world.project) for token in created
    )


def audit_events(world: TeamWorld, start: int, count: int) -> None:
    AuditEvent.objects.bulk_create(
        AuditEvent(
            team=world.team,
            team_slug=world.team.slug,
            actor=world.user("owner"),
            actor_label="owner",
            action="project.update",
            target_type="teams.project",
            target_id=str(world.project.pk),
            target_label=str(i),
        )
        for i in range(start, start + count)
    )


def _grants_on(world: TeamWorld, obj: Any, start: int, count: int) -> None:
    """`count` user grants and `count` group grants of "deploy" on `obj` (a project or an app)."""
    deploy = Permission.objects.get(content_type=ContentType.objects.get_for_model(type(obj)), codename="deploy")
    user_grant, group_grant = grant_models(type(obj))
    user_grant.objects.bulk_create(
        user_grant(content_object=obj, user=u, permission=deploy) for u in users(world, start, count, "g")
    )
    group_grant.objects.bulk_create(
        group_grant(content_object=obj, group=g.group, permission=deploy) for g in team_groups(world, start, count)
    )


def grants(world: TeamWorld, start: int, count: int) -> None:
    """`count` user grants and `count` group grants on the project "web"."""
    _grants_on(world, world.project, start, count)


def the_app(world: TeamWorld) -> App:
    """The app "api" of project "web" (made on first use), which the nested list endpoints name."""
    app, _ = App.objects.get_or_create(team=world.team, name=APP, defaults={"project": world.project})
    return app


def _deployments_of(app: App, start: int, count: int) -> list[Deployment]:
    """Deployments numbered start+1 … start+count, superseded, each after #1 a rollback to #1 (so
    the list's rollback_of column is filled), with one event each."""
    created = Deployment.objects.bulk_create(
        Deployment(
            team=app.team,
            app=app,
            number=i + 1,
            image=f"registry.local/api:{i + 1}",
            status=DeploymentStatus.SUPERSEDED,
            config={"port": 8080},
            created_by_label="owner",
        )
        for i in range(start, start + count)
    )
    first = Deployment.objects.get(app=app, number=1)
    Deployment.objects.filter(app=app, number__gt=1, rollback_of=None).update(rollback_of=first)
    DeploymentEvent.objects.bulk_create(DeploymentEvent(deployment=d, message=f"Queued #{d.number}") for d in created)
    return created


def apps(world: TeamWorld, start: int, count: int) -> None:
    """`count` apps, each with a live deployment #1 (the list shows it and the latest status)."""
    created = App.objects.bulk_create(
        App(team=world.team, project=world.project, name=f"a{i}") for i in range(start, start + count)
    )
    live = Deployment.objects.bulk_create(
        Deployment(team=world.team, app=app, number=1, image="registry.local/a:1", status=DeploymentStatus.LIVE)
        for app in created
    )
    for app, deployment in zip(created, live, strict=True):
        app.live_deployment = deployment
    App.objects.bulk_update(created, ["live_deployment"])


def running_apps(world: TeamWorld, start: int, count: int) -> list[App]:
    """`count` apps as `apps` makes them, each with its live deployment's container running and in
    the router: what the reconciler finds converged. Returns the apps."""
    apps(world, start, count)
    made = list(App.objects.filter(team=world.team, name__in=[f"a{i}" for i in range(start, start + count)]))
    Deployment.objects.filter(app__in=made, number=1).update(config={"port": 8080})
    Container.objects.bulk_create(
        Container(
            team=world.team,
            app=app,
            deployment_id=app.live_deployment_id,
            replica=1,
            name=f"ps-{world.team.slug}-{app.name}-{app.pk}-1-r1",
            ip=f"10.9.{app.pk // 250 % 250}.{app.pk % 250 + 1}",
            in_router=True,
        )
        for app in made
    )
    return made


def deployments(world: TeamWorld, start: int, count: int) -> None:
    _deployments_of(the_app(world), start, count)


def deployment_events(world: TeamWorld, start: int, count: int) -> None:
    """`count` events of deployment #1 of the app "api" (made with one event on first use)."""
    app = the_app(world)
    deployment = Deployment.objects.filter(app=app, number=1).first() or _deployments_of(app, 0, 1)[0]
    DeploymentEvent.objects.bulk_create(
        DeploymentEvent(deployment=deployment, level="info", message=f"Step {i}") for i in range(start, start + count)
    )


def app_grants(world: TeamWorld, start: int, count: int) -> None:
    """`count` user grants and `count` group grants on the app "api"."""
    _grants_on(world, the_app(world), start, count)


def _level_fields(world: TeamWorld, level: Level) -> dict[str, Any]:
    """The columns placing a variable at `level` (an app-level row carries its app's project too)."""
    if level == Level.APP:
        app = the_app(world)
        return {"level": level, "app": app, "project": app.project}
    if level == Level.PROJECT:
        return {"level": level, "project": world.project}
    return {"level": level}


def _add_versions(variables: list[Variable], numbers: range, owner: User) -> None:
    """Versions `numbers` of each variable, with real encrypted values (a plain variable's value is
    decrypted for the list), the last becoming the current one."""
    versions = VariableVersion.objects.bulk_create(
        VariableVersion(
            variable=variable,
            number=number,
            secret=variable.secret,
            value_encrypted=crypto.encrypt(f"value {variable.name} {number}"),
            created_by=owner,
            created_by_label=owner.email,
        )
        for variable in variables
        for number in numbers
    )
    for variable, current in zip(variables, versions[len(numbers) - 1 :: len(numbers)], strict=True):
        variable.current = current
    Variable.objects.bulk_update(variables, ["current"])


def variables_at(level: Level) -> Callable[[TeamWorld, int, int], None]:
    """grow(world, start, count): `count` variables at `level`, every other one a secret (the list
    shows a plain variable's value, never a secret's)."""

    def grow(world: TeamWorld, start: int, count: int) -> None:
        created = Variable.objects.bulk_create(
            Variable(team=world.team, name=f"VAR_{i}", secret=i % 2 == 1, **_level_fields(world, level))
            for i in range(start, start + count)
        )
        _add_versions(created, range(1, 2), world.user("owner"))

    grow.__name__ = f"{level}_variables"
    return grow


def variable_versions_at(level: Level) -> Callable[[TeamWorld, int, int], None]:
    """grow(world, start, count): `count` more versions of the variable VARIABLE at `level` (made
    on first use), the newest being its current value."""

    def grow(world: TeamWorld, start: int, count: int) -> None:
        variable, _ = Variable.objects.get_or_create(team=world.team, name=VARIABLE, **_level_fields(world, level))
        last = variable.current.number if variable.current else 0
        _add_versions([variable], range(last + 1, last + count + 1), world.user("owner"))

    grow.__name__ = f"{level}_variable_versions"
    return grow


def _finished_runs(jobs: list[CronJob], numbers: range) -> None:
    """Finished runs `numbers` of each job (the slots of earlier minutes), alternately succeeded and
    failed."""
    now = timezone.now()
    CronRun.objects.bulk_create(
        CronRun(
            team=job.team,
            job=job,
            trigger=Trigger.SCHEDULE,
            scheduled_for=now - timedelta(minutes=n),
            status=RunStatus.FAILED if n % 2 else RunStatus.SUCCEEDED,
            exit_code=n % 2,
            started_at=now,
            finished_at=now,
        )
        for job in jobs
        for n in numbers
    )


def cron_jobs(world: TeamWorld, start: int, count: int) -> None:
    """`count` cron jobs, every other one running the app "api" (the others an image of their own),
    each with a finished run (the list shows the last run)."""
    app = the_app(world)
    created = CronJob.objects.bulk_create(
        CronJob(
            team=world.team,
            project=world.project,
            name=f"c{i}",
            app=app if i % 2 else None,
            image="" if i % 2 else CRON_IMAGE,
            command=["true"],
            schedule="@hourly",
        )
        for i in range(start, start + count)
    )
    _finished_runs(created, range(1))


def cron_runs(world: TeamWorld, start: int, count: int) -> None:
    """`count` finished runs of the cron job CRON_JOB (made on first use)."""
    job, _ = CronJob.objects.get_or_create(
        team=world.team,
        name=CRON_JOB,
        defaults={"project": world.project, "image": CRON_IMAGE, "command": ["true"], "schedule": "@daily"},
    )
    _finished_runs([job], range(start, start + count))


def platform_events(world: TeamWorld, start: int, count: int) -> None:
    PlatformEvent.objects.bulk_create(
        PlatformEvent(
            team=world.team,
            kind="cron.run_failed",
            severity=Severity.ERROR,
            subject_type="cron.cronjob",
            subject_id=str(i),
            subject_label=f"c{i}",
            message=f"c{i}: run failed",
            data={"run": i, "exit_code": 1},
        )
        for i in range(start, start + count)
    )


def channels(world: TeamWorld, start: int, count: int) -> None:
    """`count` notification channels, one kind after another (a webhook with an encrypted signing
    secret, which the list shows only as `signed`)."""
    kinds = [ChannelKind.WEBHOOK, ChannelKind.EMAIL, ChannelKind.SLACK]
    targets = {ChannelKind.EMAIL: f"ops@{world.team.slug}.example.com"}
    NotificationChannel.objects.bulk_create(
        NotificationChannel(
            team=world.team,
            name=f"ch{i}",
            kind=kinds[i % 3],
            target=targets.get(kinds[i % 3], f"http://127.0.0.1:9/ch{i}"),
            signing_secret_encrypted=crypto.encrypt(f"whsec_{i}") if kinds[i % 3] == ChannelKind.WEBHOOK else "",
        )
        for i in range(start, start + count)
    )


def registry_credentials(world: TeamWorld, start: int, count: int) -> None:
    """`count` registry logins, one host each (the list never shows their encrypted passwords)."""
    RegistryCredential.objects.bulk_create(
        RegistryCredential(
            team=world.team, registry=f"r{i}.example.com", username=f"u{i}", password_encrypted=crypto.encrypt(f"p{i}")
        )
        for i in range(start, start + count)
    )


def deliveries(world: TeamWorld, start: int, count: int) -> None:
    """`count` deliveries through the channel CHANNEL (made on first use), alternately delivered and
    failed."""
    channel, _ = NotificationChannel.objects.get_or_create(
        team=world.team, name=CHANNEL, defaults={"kind": ChannelKind.WEBHOOK, "target": CHANNEL_TARGET}
    )
    now = timezone.now()
    Delivery.objects.bulk_create(
        Delivery(
            team=world.team,
            channel=channel,
            subject=f"Notification {i}",
            payload={"n": i},
            status=DeliveryStatus.FAILED if i % 2 else DeliveryStatus.DELIVERED,
            attempts=1,
            response_status=500 if i % 2 else 204,
            last_error="the receiver answered 500" if i % 2 else "",
            delivered_at=None if i % 2 else now,
        )
        for i in range(start, start + count)
    )


def alert_rules(world: TeamWorld, start: int, count: int) -> None:
    """`count` alert rules, one scope after another (an error-rate rule on the app "api", a failure
    rule on the cron job CRON_JOB, a deployment-failure rule on the project "web"), each sending to
    two channels (the list shows the app, cron job, project and channel names)."""
    app = the_app(world)
    job, _ = CronJob.objects.get_or_create(
        team=world.team,
        name=CRON_JOB,
        defaults={"project": world.project, "image": CRON_IMAGE, "command": ["true"], "schedule": "@daily"},
    )
    targets = [
        {"scope": "app", "app": app, "metric": "error_rate"},
        {"scope": "cron_job", "cron_job": job, "metric": "event", "event_kind": "cron.run_failed"},
        {"scope": "project", "metric": "event", "event_kind": "deployment.failed"},
    ]
    created = AlertRule.objects.bulk_create(
        AlertRule(team=world.team, project=world.project, name=f"r{i}", threshold=i, **targets[i % 3])
        for i in range(start, start + count)
    )
    pair = NotificationChannel.objects.bulk_create(
        NotificationChannel(team=world.team, name=f"rules-{start}-{n}", kind=ChannelKind.SLACK, target=CHANNEL_TARGET)
        for n in range(2)
    )
    AlertRule.channels.through.objects.bulk_create(
        AlertRule.channels.through(alertrule=rule, notificationchannel=channel) for rule in created for channel in pair
    )


def incidents(world: TeamWorld, start: int, count: int) -> None:
    """Incidents numbered start+1 … start+count, every other one resolved, each with two alerts (the
    list shows them)."""
    now = timezone.now()
    created = Incident.objects.bulk_create(
        Incident(
            team=world.team,
            project=world.project,
            number=i + 1,
            title=f"Incident {i + 1}",
            status=IncidentStatus.RESOLVED if i % 2 else IncidentStatus.OPEN,
            resolved_at=now if i % 2 else None,
            resolved_by="auto" if i % 2 else "",
        )
        for i in range(start, start + count)
    )
    IncidentAlert.objects.bulk_create(
        IncidentAlert(incident=incident, rule_name=name, value=1.0, fired_at=now)
        for incident in created
        for name in ("errors", "latency")
    )


def incident_timeline_events(world: TeamWorld, start: int, count: int) -> None:
    """`count` platform events of project "web" during incident INCIDENT (made on first use, open)."""
    Incident.objects.get_or_create(
        team=world.team, number=INCIDENT, defaults={"project": world.project, "title": "Errors on api"}
    )
    PlatformEvent.objects.bulk_create(
        PlatformEvent(
            team=world.team,
            project=world.project,
            kind="container.crashed",
            severity=Severity.ERROR,
            subject_type="deployments.app",
            subject_id=str(i),
            subject_label=f"a{i}",
            message=f"a{i}: container r1 exited",
            data={"replica": 1, "exit_code": 137},
        )
        for i in range(start, start + count)
    )


def _database_rows(world: TeamWorld, names: list[str], status: str = DatabaseStatus.AVAILABLE) -> list[Database]:
    """Databases named `names`, one engine after another (rows only: nothing is provisioned)."""
    engines = ["postgres", "mysql", "redis", "mongodb"]
    return Database.objects.bulk_create(
        Database(
            team=world.team,
            project=world.project,
            name=name,
            engine=engines[n % len(engines)],
            status=status,
            db_name=f"ps_{name.replace('-', '_')}",
            username=f"ps_{name.replace('-', '_')}",
            password_encrypted=crypto.encrypt("bulk-password"),
            host="127.0.0.1",
            port=5432,
            size_bytes=8192,
            connections=1,
            usage_at=timezone.now(),
        )
        for n, name in enumerate(names)
    )


def the_database(world: TeamWorld) -> Database:
    """The database DATABASE (made on first use), which the nested list endpoints name."""
    return Database.objects.filter(team=world.team, name=DATABASE).first() or _database_rows(world, [DATABASE])[0]


def databases(world: TeamWorld, start: int, count: int) -> None:
    """`count` databases, every other one attached to two apps (the list shows the attachments with
    the apps' names), and a deleted one each time (never listed)."""
    created = _database_rows(world, [f"d{i}" for i in range(start, start + count)])
    _database_rows(world, [f"gone{start}"], status=DatabaseStatus.DELETED)
    pair = App.objects.bulk_create(
        App(team=world.team, project=world.project, name=f"dbapp{start}-{n}") for n in range(2)
    )
    DatabaseAttachment.objects.bulk_create(
        DatabaseAttachment(team=world.team, database=database, app=app, env_name=f"DB_{database.pk}")
        for database in created[::2]
        for app in pair
    )


def database_attachments(world: TeamWorld, start: int, count: int) -> None:
    """`count` apps the database DATABASE is attached to (the list shows the apps' names)."""
    database = the_database(world)
    created = App.objects.bulk_create(
        App(team=world.team, project=world.project, name=f"att{i}") for i in range(start, start + count)
    )
    DatabaseAttachment.objects.bulk_create(
        DatabaseAttachment(team=world.team, database=database, app=app, env_name="DATABASE_URL") for app in created
    )


def database_backups(world: TeamWorld, start: int, count: int) -> None:
    """Backups numbered start+1 … start+count of the database DATABASE, alternately succeeded and
    failed, every third one scheduled."""
    database = the_database(world)
    now = timezone.now()
    Backup.objects.bulk_create(
        Backup(
            team=world.team,
            database=database,
            number=i + 1,
            trigger=BackupTrigger.SCHEDULED if i % 3 == 0 else BackupTrigger.MANUAL,
            status=BackupStatus.FAILED if i % 2 else BackupStatus.SUCCEEDED,
            file_name="" if i % 2 else f"{world.team.slug}/{DATABASE}/{i + 1}.dump",
            size_bytes=None if i % 2 else 1024 * (i + 1),
            sha256="" if i % 2 else f"{i:064x}",
            error="pg_dump: connection refused" if i % 2 else "",
            started_at=now,
            finished_at=now,
        )
        for i in range(start, start + count)
    )


# The values of the URL parameters in the paths below.
APP = "api"
LIST_PARAMS = {
    "team": "alpha",
    "project": "web",
    "app": APP,
    "deployment": 1,
    "variable": VARIABLE,
    "cron_job": CRON_JOB,
    "channel": CHANNEL,
    "incident": INCIDENT,
    "database": DATABASE,
}
VARIABLE_PREFIXES = {
    Level.TEAM: "/api/v1/teams/alpha/",
    Level.PROJECT: "/api/v1/teams/alpha/projects/web/",
    Level.APP: f"/api/v1/teams/alpha/apps/{APP}/",
}

# list endpoint -> (path, grow(world, start, count), how the caller authenticates). A token sees
# only its own team, so the team list is measured for both kinds of caller.
LISTS: dict[str, tuple[str, Callable[[TeamWorld, int, int], Any], str]] = {
    "teams (token)": ("/api/v1/teams/", teams, "token"),
    "teams (session)": ("/api/v1/teams/", teams, "session"),
    "members": ("/api/v1/teams/alpha/members/", members, "token"),
    "projects": ("/api/v1/teams/alpha/projects/", projects, "token"),
    "groups with members": ("/api/v1/teams/alpha/groups/", team_groups, "token"),
    "service-accounts": ("/api/v1/teams/alpha/service-accounts/", service_accounts, "token"),
    "tokens with projects": ("/api/v1/teams/alpha/tokens/", tokens, "token"),
    "audit-events": ("/api/v1/teams/alpha/audit-events/", audit_events, "token"),
    "grants": ("/api/v1/teams/alpha/projects/web/grants/", grants, "token"),
    "apps with live and latest deployment": ("/api/v1/teams/alpha/apps/", apps, "token"),
    "deployments with rollback_of": ("/api/v1/teams/alpha/apps/api/deployments/", deployments, "token"),
    "deployment events": ("/api/v1/teams/alpha/apps/api/deployments/1/events/", deployment_events, "token"),
    "app grants": ("/api/v1/teams/alpha/apps/api/grants/", app_grants, "token"),
    "cron jobs with last run": ("/api/v1/teams/alpha/cron-jobs/", cron_jobs, "token"),
    "cron runs": (f"/api/v1/teams/alpha/cron-jobs/{CRON_JOB}/runs/", cron_runs, "token"),
    "platform events": ("/api/v1/teams/alpha/events/", platform_events, "token"),
    "notification channels": ("/api/v1/teams/alpha/notification-channels/", channels, "token"),
    "deliveries": (f"/api/v1/teams/alpha/notification-channels/{CHANNEL}/deliveries/", deliveries, "token"),
    "registry credentials": ("/api/v1/teams/alpha/registry-credentials/", registry_credentials, "token"),
    "alert rules with channels": ("/api/v1/teams/alpha/alert-rules/", alert_rules, "token"),
    "incidents with alerts": ("/api/v1/teams/alpha/incidents/", incidents, "token"),
    "incident timeline": (f"/api/v1/teams/alpha/incidents/{INCIDENT}/timeline/", incident_timeline_events, "token"),
    "databases with attachments": ("/api/v1/teams/alpha/databases/", databases, "token"),
    "database attachments": (f"/api/v1/teams/alpha/databases/{DATABASE}/attachments/", database_attachments, "token"),
    "database backups": (f"/api/v1/teams/alpha/databases/{DATABASE}/backups/", database_backups, "token"),
    **{
        f"{level.value} variables": (f"{prefix}variables/", variables_at(level), "token")
        for level, prefix in VARIABLE_PREFIXES.items()
    },
    **{
        f"{level.value} variable versions": (
            f"{prefix}variables/{VARIABLE}/versions/",
            variable_versions_at(level),
            "token",
        )
        for level, prefix in VARIABLE_PREFIXES.items()
    },
}

# detail endpoint -> (path, grow(world, start, count) adding `count` of the nested rows it shows or
# summarises): a detail page costs the same however many deployments, events, runs or attachments.
DETAILS: dict[str, tuple[str, Callable[[TeamWorld, int, int], Any]]] = {
    "app detail with its deployments": (f"/api/v1/teams/alpha/apps/{APP}/", deployments),
    "deployment detail with its events": (f"/api/v1/teams/alpha/apps/{APP}/deployments/1/", deployment_events),
    "cron job detail with its runs": (f"/api/v1/teams/alpha/cron-jobs/{CRON_JOB}/", cron_runs),
    "database detail with its attachments": (f"/api/v1/teams/alpha/databases/{DATABASE}/", database_attachments),
}
