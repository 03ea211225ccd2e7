"""Database lifecycle tasks. Each is idempotent: a worker killed half-way has its message
redelivered (acks late, reject on worker lost) and the provisioner converges from wherever it
stopped — a role without its database, a database without its grants."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator

from celery import shared_task
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from apps.core import shutdown
from apps.core.actors import Actor
from apps.core.broker import enqueue
from apps.core.bulk import bulk_set
from apps.core.leases import lease, long_ago, stale_before
from apps.databases import services
from apps.databases.models import Database, DatabaseEngine, DatabaseStatus, Placement
from apps.databases.provisioners import ProvisionerError, Usage
from apps.events.models import Severity
from apps.events.services import event_emit
from apps.secrets import crypto
from apps.secrets.services import platform_secret_set

log = logging.getLogger(__name__)


def _load(database_id: int) -> Database | None:
    return Database.objects.select_related("team__plan", "server", "project").filter(pk=database_id).first()


def _fail(database: Database, reason: str) -> None:
    Database.objects.filter(pk=database.pk).update(
        status=DatabaseStatus.FAILED, status_reason=reason[:2000], updated_at=timezone.now()
    )
    event_emit(team=database.team, kind="database.unavailable", subject=database, severity=Severity.ERROR,
               message=f"{database.name}: {reason[:300]}", data={"engine": database.engine})  # fmt: skip


@shared_task(name="databases.provision")
def database_provision(database_id: int) -> None:
    """Make the database exist (a dedicated container first when it has one), then mark it available.

    Under the database's lease: one worker at a time, its heartbeat on the row while it works (a
    worker that dies is noticed by the takeover sweep, which queues this again). A worker asked to
    stop hands it back (WorkerStopping): every step is safe to cut and to run again."""
    database = _load(database_id)
    if database is None or database.status not in (DatabaseStatus.PROVISIONING, DatabaseStatus.FAILED):
        return

    def touch() -> None:
        Database.objects.filter(pk=database_id, status=DatabaseStatus.PROVISIONING).update(updated_at=timezone.now())

    stopped: Exception | None = None
    with lease(services.work_lock_key(database_id), holder=f"provision:{database_id}", touch=touch) as held:
        if held is None:
            return  # another worker is provisioning it right now
        try:
            with shutdown.interruptible():
                if database.placement == Placement.DEDICATED:
                    from apps.databases import dedicated

                    server = dedicated.ensure_container(database)
                    Database.objects.filter(pk=database.pk).update(host=server.host, port=server.port)
                    database.host, database.port = server.host, server.port
                provisioner = services.provisioner_of(database)
                provisioner.ensure(services.spec_for(database))
                usage = provisioner.usage(services.spec_for(database))
        except Exception as exc:  # any failure (server, engine) is recorded with its reason
            if isinstance(exc, shutdown.WorkerStopping) or shutdown.stop_requested():
                stopped = exc  # handed back below, once the heartbeat has stopped
            else:
                log.warning("provisioning database %s failed: %s", database_id, exc)
                _fail(database, f"Provisioning failed: {exc}")
                return
    if stopped is not None:
        _hand_back(database_id)
        raise shutdown.WorkerStopping() from stopped
    Database.objects.filter(pk=database.pk, status__in=(DatabaseStatus.PROVISIONING, DatabaseStatus.FAILED)).update(
        status=DatabaseStatus.AVAILABLE, status_reason="", size_bytes=usage.size_bytes,
        connections=usage.connections, usage_at=timezone.now(), updated_at=timezone.now(),
    )  # fmt: skip


def _hand_back(database_id: int) -> None:
    """Interrupted by the worker's stop (a statement cut mid-way, a container half started): still
    provisioning, and stale at once so that the sweep takes it over if the queued message were lost."""
    connection.close()  # the interruption may have cut the worker's own connection mid-query too
    Database.objects.filter(pk=database_id, status=DatabaseStatus.PROVISIONING).update(updated_at=long_ago())


def take_over_stale_provisioning() -> int:
    """Queue again every database still provisioning whose heartbeat stopped (its worker died, or its
    message waits behind others: provisioning is idempotent and leased, so a second run is harmless).
    Claimed with a compare-and-set on the heartbeat, so concurrent sweeps queue it once. How many."""
    cutoff = stale_before()
    resumed = 0
    for database_id in Database.objects.filter(status=DatabaseStatus.PROVISIONING, updated_at__lt=cutoff).values_list(
        "pk", flat=True
    ):
        claimed = Database.objects.filter(
            pk=database_id, status=DatabaseStatus.PROVISIONING, updated_at__lt=cutoff
        ).update(updated_at=timezone.now())
        if claimed:
            log.warning("taking over the provisioning of database %s (no heartbeat)", database_id)
            enqueue(database_provision, database_id, defer=True)
            resumed += 1
    return resumed


LOCK_FAILED = "Refusing the credentials failed (retried by the purge task): "


@shared_task(name="databases.lock")
def database_lock(database_id: int) -> None:
    """A deleted database's credentials stop working: the user gets a random password nobody
    keeps (the stored one comes back with undelete) and its sessions end. Done under the row's
    lock, so an undelete cannot interleave: it waits, then its provisioning restores the password."""
    with transaction.atomic():
        database = (
            Database.objects.select_for_update(of=("self",))
            .select_related("team__plan", "server")
            .filter(pk=database_id, status=DatabaseStatus.DELETED)
            .first()
        )
        if database is None:
            return
        real = services.spec_for(database)
        locked = dataclasses.replace(real, password=services.new_password())
        try:
            services.provisioner_of(database).set_password(locked)
        except Exception as exc:  # the server is down: retried by the periodic purge task
            log.warning("locking deleted database %s failed: %s", database_id, exc)
            database.status_reason = f"{LOCK_FAILED}{exc}"[:2000]
            database.save(update_fields=["status_reason", "updated_at"])
            return
        if database.status_reason:
            database.status_reason = ""
            database.save(update_fields=["status_reason", "updated_at"])


@shared_task(name="databases.deprovision")
def database_deprovision(database_id: int) -> bool:
    """Purge a `deleting` database (apps.databases.services.database_purge); whether it did."""
    try:
        return services.database_purge(database_id=database_id)
    except Exception as exc:  # recorded, then raised: the task fails and the periodic purge runs it again
        log.warning("purging database %s failed: %s", database_id, exc)
        Database.objects.filter(pk=database_id).update(status_reason=f"Purging failed (will retry): {exc}"[:2000])
        raise


@shared_task(name="databases.purge_deleted")
def purge_deleted_databases() -> int:
    """Beat: purge every deleted database whose grace period has ended (and finish purges that
    failed), and retry refusing the credentials of deleted databases where that failed.
    Returns how many were purged."""
    for database_id in Database.objects.filter(
        status=DatabaseStatus.DELETED, status_reason__startswith=LOCK_FAILED
    ).values_list("pk", flat=True):
        database_lock(database_id)
    purged = 0
    for database_id in services.databases_due_for_purge():
        try:
            purged += database_deprovision(database_id)
        except Exception:  # logged and recorded by the task; the next round tries again
            log.info("purge of database %s left for the next round", database_id)
    return purged


@shared_task(name="databases.rotate")
def database_rotate_credentials(database_id: int, actor_label: str = "") -> None:
    """A new password on the server first (from then on the old one is refused), then stored, then
    given to every attached app (their next deploy connects with it)."""
    database = _load(database_id)
    if database is None or database.status != DatabaseStatus.AVAILABLE:
        return
    password = services.new_password()
    with transaction.atomic():
        locked = Database.objects.select_for_update().get(pk=database.pk)
        provisioner = services.provisioner_of(locked)
        # Stored before it is applied, in the same transaction: if the server refuses, nothing changes.
        locked.password_encrypted = crypto.encrypt(password)
        locked.credentials_rotated_at = timezone.now()
        locked.save(update_fields=["password_encrypted", "credentials_rotated_at", "updated_at"])
        new_spec = services.spec_for(locked)
        provisioner.set_password(new_spec)
        # `via` is a short column (20): who asked goes in the reason.
        actor = Actor.system("rotation")
        reason = f"database {locked.name} rotated" + (f" by {actor_label}" if actor_label else "")
        for attachment in locked.attachments.select_related("app__team"):
            platform_secret_set(actor=actor, app=attachment.app, name=attachment.env_name,
                                value=provisioner.url(new_spec), reason=reason)  # fmt: skip


@shared_task(name="databases.refresh_usage")
def refresh_usage() -> int:
    """Measure size and connections of every available database (beat, every few minutes); a
    database growing past its plan's size is an event (`database.size_exceeded`, once per crossing).
    The tenants of one shared Redis server are measured together, in one pass over its keys, and
    the figures are written together (a crossing, rare, on its own)."""
    databases = Database.objects.filter(status=DatabaseStatus.AVAILABLE).select_related("team__plan", "server")
    now = timezone.now()
    measured: dict[int, dict[str, int]] = {}
    count = 0
    for database, usage in _usages(list(databases)):
        if isinstance(usage, ProvisionerError):
            log.warning("usage of database %s: %s", database.pk, usage)
            continue
        count += 1
        limit = database.team.plan.max_database_size_mb * 2**20
        figures = {"size_bytes": usage.size_bytes, "connections": usage.connections}
        # The crossing is the update that moves the stored size over the limit: two passes at once (two
        # beats) both measure it over, and only one of them finds it still under.
        under = Q(size_bytes=None) | Q(size_bytes__lte=limit)
        crossed = usage.size_bytes > limit and Database.objects.filter(under, pk=database.pk).update(
            **figures, usage_at=now
        )
        if crossed:
            event_emit(team=database.team, kind="database.size_exceeded", subject=database, severity=Severity.WARNING,
                       message=f"{database.name} holds {usage.size_bytes // 2**20} MiB; the plan allows "
                               f"{database.team.plan.max_database_size_mb} MiB",
                       data={"size_bytes": usage.size_bytes, "limit_bytes": limit})  # fmt: skip
        else:
            measured[database.pk] = figures
    bulk_set(Database, measured, ["size_bytes", "connections"], usage_at=now)
    return count


def _usages(databases: list[Database]) -> Iterator[tuple[Database, Usage | ProvisionerError]]:
    """Each database with its usage (or why it could not be measured)."""
    from apps.databases.provisioners.redis import RedisProvisioner

    by_server: dict[int, list[Database]] = {}
    for database in databases:
        if database.engine == DatabaseEngine.REDIS and database.placement == Placement.SHARED and database.server_id:
            by_server.setdefault(database.server_id, []).append(database)
            continue
        try:
            yield database, services.provisioner_of(database).usage(services.spec_for(database))
        except ProvisionerError as exc:
            yield database, exc
    for tenants in by_server.values():
        try:
            provisioner = RedisProvisioner(services.admin_url_of(tenants[0]))
            usages: dict[str, Usage] | ProvisionerError = provisioner.usage_of([services.spec_for(d) for d in tenants])
        except ProvisionerError as exc:
            usages = exc
        for database in tenants:
            yield database, usages if isinstance(usages, ProvisionerError) else usages[database.db_name]
