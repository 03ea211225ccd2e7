"""Managed databases: create, delete, rotate credentials, attach to apps, reveal connection info,
and register the servers of the shared placement. Slow work (talking to database servers and the
Docker Engine) runs in Celery tasks (apps.databases.tasks); the API answers 202 with the database
to poll."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from django.db import transaction
from django.db.models import Count
from django.utils import timezone

from apps.audit.services import audit_record
from apps.core.access import TeamContext
from apps.core.actors import Actor
from apps.core.broker import enqueue
from apps.core.capabilities import Capability
from apps.core.errors import Conflict, PermissionDenied, ValidationFailed, require_confirmation
from apps.databases.models import (
    DEFAULT_ENV_NAME,
    Database,
    DatabaseAttachment,
    DatabaseEngine,
    DatabaseServer,
    DatabaseStatus,
    Placement,
)
from apps.databases.provisioners import DatabaseSpec, Provisioner, ProvisionerError, provisioner_for
from apps.deployments.models import App
from apps.secrets import crypto
from apps.secrets.services import platform_secret_set, validate_name
from apps.teams.models import Project
from apps.teams.quotas import Limit, quota_check

DEFAULT_PORTS = {"postgres": 5432, "mysql": 3306, "redis": 6379, "mongodb": 27017}
ADMIN_SCHEMES = {
    "postgres": ("postgres", "postgresql"),
    "mysql": ("mysql", "mariadb"),
    "redis": ("redis", "rediss"),
    "mongodb": ("mongodb", "mongodb+srv"),
}
# Deleted databases stay as rows (status `deleted`, then `deleting` while purged) until the purge
# removes them: until then their data sits on the server and their name can come back with undelete,
# so they count for quotas, server load and names.


def new_password() -> str:
    return secrets.token_urlsafe(24)  # 192 bits; URL-safe, so it needs no quoting in connection URLs


# --- reading ----------------------------------------------------------------------------------------
def spec_for(database: Database) -> DatabaseSpec:
    plan = database.team.plan
    return DatabaseSpec(
        db_name=database.db_name,
        username=database.username,
        password=crypto.decrypt(database.password_encrypted),
        host=database.host,
        port=database.port or DEFAULT_PORTS[database.engine],
        connection_limit=plan.max_database_connections,
    )


def admin_url_of(database: Database) -> str:
    """The administrator URL of the server the database lives on (a shared server, or its own
    dedicated container), decrypted."""
    if database.placement == Placement.DEDICATED:
        from apps.databases import dedicated

        return dedicated.admin_url(database)
    if database.server is None:
        raise ProvisionerError(f"database {database.name} has no server")
    return crypto.decrypt(database.server.admin_url_encrypted)


def work_lock_key(database_id: int) -> str:
    """The lease lock (apps.core.leases) a worker holds while it provisions or restores the database:
    one of those at a time per database."""
    return f"pandastack:lock:database:{database_id}"


def provisioner_of(database: Database) -> Provisioner:
    return provisioner_for(database.engine, admin_url_of(database))


def connection_url(database: Database) -> str:
    """The URL apps receive (contains the password: never log it)."""
    return provisioner_of(database).url(spec_for(database))


# --- servers (operators) ----------------------------------------------------------------------------
def _parse_admin_url(engine: str, admin_url: str) -> tuple[str, int]:
    if engine not in DatabaseEngine.values:
        raise ValidationFailed("Unknown engine.", fields={"engine": [f"One of: {', '.join(DatabaseEngine.values)}."]})
    try:
        parts = urlsplit(admin_url)
        port = parts.port or DEFAULT_PORTS[engine]
    except ValueError:
        parts, port = None, 0
    if parts is None or parts.scheme not in ADMIN_SCHEMES[engine] or not parts.hostname:
        schemes = " or ".join(f"{s}://" for s in ADMIN_SCHEMES[engine])
        raise ValidationFailed(
            "Invalid admin URL.", fields={"admin_url": [f"A {schemes} URL with the administrator's credentials."]}
        )
    return parts.hostname, port


def _check_server(engine: str, admin_url: str) -> str:
    """Connect as the administrator (the server's version); a Redis must also be able to hold
    tenants side by side (provisioners.redis.shared_redis_problems)."""
    problems: list[str] = []
    try:
        version = provisioner_for(engine, admin_url).server_version()
        if engine == "redis":
            from apps.databases.provisioners.redis import shared_redis_problems

            problems = shared_redis_problems(admin_url)
    except ProvisionerError as exc:
        raise ValidationFailed(str(exc), fields={"admin_url": [str(exc)]}) from None
    if problems:
        raise ValidationFailed(
            "This Redis cannot be shared between tenants: " + "; ".join(problems) + ".",
            fields={"admin_url": problems},
            code="unsafe_shared_server",
        )
    return version


@transaction.atomic
def server_register(
    *, engine: str, admin_url: str, name: str | None = None, host_for_apps: str = "", port_for_apps: int | None = None
) -> DatabaseServer:
    """Register a server for the shared placement, after connecting to it as its administrator."""
    host, port = _parse_admin_url(engine, admin_url)
    name = name or f"{engine}-{host.replace('.', '-').replace(':', '-')}-{port}"[:50].lower()
    if DatabaseServer.objects.filter(name=name).exists():
        raise ValidationFailed("A server with this name is registered.", fields={"name": ["Already taken."]})
    version = _check_server(engine, admin_url)
    server = DatabaseServer(
        name=name,
        engine=engine,
        admin_url_encrypted=crypto.encrypt(admin_url),
        host_for_apps=host_for_apps,
        port_for_apps=port_for_apps,
        version=version[:50],
    )
    server.full_clean()
    server.save()
    audit_record(actor=Actor.system("registerserver"), action="database_server.register", target=server,
                 data={"engine": engine, "name": name})  # fmt: skip
    return server


@transaction.atomic
def server_update_admin_url(*, server: DatabaseServer, admin_url: str) -> DatabaseServer:
    _parse_admin_url(server.engine, admin_url)
    server.version = _check_server(server.engine, admin_url)[:50]
    server.admin_url_encrypted = crypto.encrypt(admin_url)
    server.save(update_fields=["admin_url_encrypted", "version", "updated_at"])
    audit_record(actor=Actor.system("admin"), action="database_server.update", target=server)
    return server


def _pick_server(engine: str) -> DatabaseServer:
    server = (
        DatabaseServer.objects.filter(engine=engine, enabled=True)
        .annotate(load=Count("databases"))  # deleted ones too: their data is there until purged
        .order_by("load", "id")
        .first()
    )
    if server is None:
        raise Conflict(
            f"No {engine} server is registered for shared databases; an operator registers one in the admin or "
            "with `python manage.py registerserver`.",
            code="no_database_server",
        )
    return server


# --- databases --------------------------------------------------------------------------------------
@transaction.atomic
def database_create(
    *, ctx: TeamContext, project: Project, name: str, engine: str, placement: str = Placement.SHARED, version: str = ""
) -> Database:
    """Record the database (status provisioning) and queue its provisioning."""
    from apps.databases.tasks import database_provision
    from apps.teams.models import Team

    team = Team.objects.select_for_update().select_related("plan").get(pk=ctx.team.pk)  # serialises quota checks
    # A deleted database still counts until it is purged: its data still takes room on the server
    # (and a dedicated one its container), so delete-and-create cannot go past the plan.
    quota_check(team=team, limit=Limit.DATABASES, current=Database.objects.filter(team=team).count())
    if Database.objects.filter(team=team, name=name).exists():
        taken = "Already taken."
        if Database.objects.filter(team=team, name=name, status=DatabaseStatus.DELETED).exists():
            taken = "A deleted database of this name can still be undeleted; the name is free once it is purged."
        raise ValidationFailed("A database with this name exists in this team.", fields={"name": [taken]})
    if engine not in DatabaseEngine.values:
        raise ValidationFailed("Unknown engine.", fields={"engine": [f"One of: {', '.join(DatabaseEngine.values)}."]})
    server = None
    if placement == Placement.DEDICATED:
        if not team.plan.allow_dedicated_databases:
            raise PermissionDenied(
                f"The {team.plan.name} plan has shared databases only; dedicated ones need another plan.",
                code="plan_limit",
            )
    else:
        server = _pick_server(engine)
        if version and server.version and not server.version.startswith(version):
            raise ValidationFailed(
                "No shared server of this version.",
                fields={"version": [f"Shared {engine} databases run version {server.version}."]},
            )
    database = Database.objects.create(
        team=team, project=project, name=name, engine=engine, placement=placement, server=server,
        version=(server.version if server else version), password_encrypted=crypto.encrypt(new_password()),
        db_name="pending", username="pending",
    )  # fmt: skip
    # Generated names (never the user's input alone): unique by id, safe as identifiers and key prefixes.
    base = f"ps{database.pk}_{name.replace('-', '_')}"[:63]
    database.db_name = database.username = base
    if server is not None:
        host, port = _parse_admin_url(engine, crypto.decrypt(server.admin_url_encrypted))
        database.host = server.host_for_apps or host
        database.port = server.port_for_apps or port
    database.save(update_fields=["db_name", "username", "host", "port"])
    audit_record(actor=ctx.actor, action="database.create", target=database, team=team,
                 data={"engine": engine, "placement": placement, "project": project.slug})  # fmt: skip
    enqueue(database_provision, database.pk)
    return database


def _require_status(database: Database, *allowed: str, doing: str) -> None:
    if database.status not in allowed:
        raise Conflict(
            f"Database {database.name} is {database.status}; it can be {doing} when {' or '.join(allowed)}.",
            code="database_busy",
        )


@transaction.atomic
def database_delete(*, ctx: TeamContext, database: Database, confirm: str) -> Database:
    """Delete, recoverably: the database leaves every list, its apps lose the variable (from their
    next deploy on; attachments are removed, not restored by undelete), a worker makes its
    credentials refused and ends its sessions, and the data and backups are kept until the plan's
    grace period (`database_delete_grace_hours`) ends; then the purge drops it for good. A plan
    with no grace period purges at once."""
    from apps.databases.tasks import database_deprovision, database_lock

    ctx.require(Capability.MANAGE_DATABASES, database)
    require_confirmation(confirm, expected=database.name, what="the database's name")
    database = Database.objects.select_for_update().select_related("team__plan").get(pk=database.pk)
    _require_status(database, DatabaseStatus.AVAILABLE, DatabaseStatus.FAILED, doing="deleted")
    detached = []
    for attachment in database.attachments.select_related("app__team"):
        platform_secret_set(actor=ctx.actor, app=attachment.app, name=attachment.env_name, value=None,
                            reason=f"database {database.name} deleted")  # fmt: skip
        detached.append({"app": attachment.app.name, "env_name": attachment.env_name})
    database.attachments.all().delete()
    now = timezone.now()
    grace = timedelta(hours=database.team.plan.database_delete_grace_hours)
    database.status = DatabaseStatus.DELETED if grace else DatabaseStatus.DELETING
    database.deleted_at, database.purge_after = now, now + grace
    database.save(update_fields=["status", "deleted_at", "purge_after", "updated_at"])
    audit_record(actor=ctx.actor, action="database.delete", target=database, team=ctx.team,
                 data={"purge_after": database.purge_after.isoformat(), "detached": detached})  # fmt: skip
    if grace:
        enqueue(database_lock, database.pk)
    else:
        enqueue(database_deprovision, database.pk)
    return database


@transaction.atomic
def database_undelete(*, ctx: TeamContext, database: Database) -> Database:
    """Bring back a deleted database before its purge: the same name, data, backups and
    credentials (a worker makes the server accept the stored password again: status
    `provisioning`, then `available`). Apps are not re-attached: attach them again."""
    from apps.databases.tasks import database_provision

    ctx.require(Capability.MANAGE_DATABASES, database)
    database = Database.objects.select_for_update().get(pk=database.pk)
    if database.status not in (DatabaseStatus.DELETED, DatabaseStatus.DELETING):
        raise Conflict(f"Database {database.name} is {database.status}, not deleted.", code="database_not_deleted")
    if database.status == DatabaseStatus.DELETING or (
        database.purge_after is not None and database.purge_after <= timezone.now()
    ):
        raise Conflict(
            f"Database {database.name}'s grace period is over; it is being purged for good.",
            code="grace_period_over",
        )
    if Database.objects.filter(team=database.team, name=database.name).exclude(pk=database.pk).exists():
        raise Conflict(f"Another database is named {database.name} now.", code="name_taken")
    database.status, database.status_reason = DatabaseStatus.PROVISIONING, ""
    database.deleted_at = database.purge_after = None
    database.save(update_fields=["status", "status_reason", "deleted_at", "purge_after", "updated_at"])
    audit_record(actor=ctx.actor, action="database.undelete", target=database, team=ctx.team)
    enqueue(database_provision, database.pk)
    return database


def databases_due_for_purge(now: datetime | None = None) -> list[int]:
    """Deleted databases whose grace period has ended, marked `deleting` (so undelete refuses them
    from now on); their ids, for the purge. Also returns those a purge left half-done."""
    now = now or timezone.now()
    with transaction.atomic():
        due = Database.objects.select_for_update(skip_locked=True).filter(
            status=DatabaseStatus.DELETED, purge_after__lte=now
        )
        ids = list(due.values_list("pk", flat=True))
        Database.objects.filter(pk__in=ids).update(status=DatabaseStatus.DELETING, updated_at=now)
    return sorted({*ids, *Database.objects.filter(status=DatabaseStatus.DELETING).values_list("pk", flat=True)})


def database_purge(*, database_id: int) -> bool:
    """Drop a `deleting` database for good: the server's database and user (or the dedicated
    container and its volume), every backup file in the backup storage and its row, then the
    database's own row (the audit log keeps its name). Idempotent: safe to run again after a
    failure. Returns whether it purged."""
    from apps.databases.backups import backups_delete_all

    database = Database.objects.select_related("team__plan", "server").filter(pk=database_id).first()
    if database is None or database.status != DatabaseStatus.DELETING:
        return False
    if database.placement == Placement.DEDICATED:
        from apps.databases import dedicated

        dedicated.remove_container(database)  # the container and its volume: all of its data
    else:
        provisioner_of(database).drop(spec_for(database))
    with transaction.atomic():
        database = Database.objects.select_for_update().filter(pk=database_id, status=DatabaseStatus.DELETING).first()
        if database is None:
            return False
        files = backups_delete_all(database=database)
        audit_record(actor=Actor.system("purge"), action="database.purge", target=database, team=database.team,
                     data={"backup_files_deleted": files})  # fmt: skip
        database.delete()
    return True


@transaction.atomic
def database_rotate(*, ctx: TeamContext, database: Database) -> Database:
    """Queue a credential rotation: a new password, the old one refused from then on, attached
    apps' variables updated (their next deploy gets the new URL)."""
    from apps.databases.tasks import database_rotate_credentials

    database = Database.objects.select_for_update().get(pk=database.pk)
    _require_status(database, DatabaseStatus.AVAILABLE, doing="rotated")
    audit_record(actor=ctx.actor, action="database.rotate", target=database, team=ctx.team)
    enqueue(database_rotate_credentials, database.pk, ctx.actor.label)
    return database


def _require_change_config(ctx: TeamContext, app: App) -> None:
    """Attaching and detaching write the app's variables: the same check for both."""
    if not ctx.can(Capability.CHANGE_CONFIG, app):
        raise PermissionDenied(f"You may not change the configuration of app {app.name}.")


@transaction.atomic
def database_attach(
    *, ctx: TeamContext, database: Database, app: App, env_name: str | None = None
) -> DatabaseAttachment:
    _require_change_config(ctx, app)
    _require_status(database, DatabaseStatus.AVAILABLE, doing="attached")
    env_name = env_name or DEFAULT_ENV_NAME[database.engine]
    if problem := validate_name(env_name):
        raise ValidationFailed("Invalid variable name.", fields={"env_name": [problem]})
    if DatabaseAttachment.objects.filter(database=database, app=app).exists():
        raise Conflict(f"{database.name} is already attached to {app.name}.", code="already_attached")
    if DatabaseAttachment.objects.filter(app=app, env_name=env_name).exists():
        raise ValidationFailed(
            "Another database uses this variable in this app.", fields={"env_name": [f"{env_name} is taken."]}
        )
    from apps.secrets.selectors import live_variables

    if live_variables().filter(level="app", app=app, name=env_name).exists():
        raise ValidationFailed(
            f"App {app.name} already has a variable {env_name}.",
            fields={"env_name": [f"{env_name} is set on {app.name}: unset it, or attach under another name."]},
        )
    attachment = DatabaseAttachment.objects.create(team=ctx.team, database=database, app=app, env_name=env_name)
    platform_secret_set(actor=ctx.actor, app=app, name=env_name, value=connection_url(database),
                        reason=f"database {database.name} attached")  # fmt: skip
    audit_record(actor=ctx.actor, action="database.attach", target=database, team=ctx.team,
                 data={"app": app.name, "env_name": env_name})  # fmt: skip
    return attachment


@transaction.atomic
def database_detach(*, ctx: TeamContext, database: Database, app: App) -> None:
    """Remove the app's variable holding the database URL (from its next deploy on). Like attach,
    this changes the app's configuration: the caller needs change_config on the app as well as
    manage_databases on the database (which the API checks), so a database-only grant cannot
    break another team member's app."""
    _require_change_config(ctx, app)
    attachment = DatabaseAttachment.objects.filter(database=database, app=app).first()
    if attachment is None:
        raise ValidationFailed("Not attached.", fields={"app": [f"{database.name} is not attached to {app.name}."]})
    platform_secret_set(actor=ctx.actor, app=app, name=attachment.env_name, value=None,
                        reason=f"database {database.name} detached")  # fmt: skip
    attachment.delete()
    audit_record(actor=ctx.actor, action="database.detach", target=database, team=ctx.team,
                 data={"app": app.name, "env_name": attachment.env_name})  # fmt: skip


@transaction.atomic
def database_reveal(*, ctx: TeamContext, database: Database) -> dict[str, Any]:
    """Connection information with the password, for those who may manage databases or reveal
    secrets; audited (names only)."""
    if not (ctx.can(Capability.MANAGE_DATABASES, database) or ctx.can(Capability.REVEAL_SECRETS, database)):
        try:
            ctx.require(Capability.REVEAL_SECRETS, database)
        except PermissionDenied as exc:  # the standard explanation, naming the alternative too
            raise PermissionDenied(f"{exc.message} ('manage_databases' would do as well.)", **exc.extra) from None
    _require_status(database, DatabaseStatus.AVAILABLE, DatabaseStatus.BACKING_UP, doing="revealed")
    spec = spec_for(database)
    audit_record(actor=ctx.actor, action="database.reveal", target=database, team=ctx.team)
    return {
        "url": provisioner_of(database).url(spec),
        "host": spec.host,
        "port": spec.port,
        "database": spec.db_name,
        "username": spec.username,
        "password": spec.password,
    }
