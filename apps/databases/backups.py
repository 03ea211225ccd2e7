"""Backups and restores of managed databases.

Requests (`backup_capture`, `backup_restore`, `backup_open`) check access, record desired state
(a pending Backup; the database `backing_up` or `restoring`), write the audit row and enqueue a
task (apps.databases.backup_tasks) once the transaction commits. The workers' side
(`backup_execute`, `restore_execute`) dumps with apps.databases.dumps into Django's storage under
the alias "backups" (settings.STORAGES; a folder by default), with each file's size and SHA-256,
and restores only a file whose size and checksum still match. Both are idempotent: a task run again
after its worker died redoes the unfinished work and leaves finished work alone.
`scheduled_backups` (Celery beat, every 5 minutes) takes the plans' scheduled backups and gives up
on work whose worker disappeared.

A restore has a way back. Before anything is loaded the worker takes a safety backup (an ordinary
Backup row, trigger `safety`, with its reason, listed with the others): if it fails, nothing is
loaded. Then the load is all or nothing for every engine:
- PostgreSQL: one `pg_restore --single-transaction --exit-on-error` (dumps.py): a failure rolls
  everything back inside the server.
- MySQL / MariaDB: DDL commits implicitly, so the server cannot roll a load back. The restore
  empties the tenant's database (dropped and created again under the same name: its grants stay)
  and loads the backup, so the result is exactly the backup; when the load fails part way, the
  worker empties it again and loads the safety backup, which puts back exactly what was there
  (the data apps wrote after the safety backup began is replaced, as any restore replaces it).
- Redis: staged beside the live keys, swapped in one WATCHed MULTI/EXEC (dumps.py).
- MongoDB: `mongorestore --drop` is not atomic; as for MariaDB, a failed load puts the safety
  backup back (`--drop` replaces every collection the archive holds). Not run here: no server.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any

from django.conf import settings
from django.core.files import File
from django.core.files.storage import Storage, storages
from django.db import connection, transaction
from django.db.models import OuterRef, Q, Subquery
from django.utils import timezone

from apps.audit.services import audit_record
from apps.core import shutdown
from apps.core.access import TeamContext
from apps.core.actors import Actor
from apps.core.broker import enqueue
from apps.core.capabilities import Capability
from apps.core.errors import Conflict, NotFound, require_confirmation
from apps.core.leases import lease, stale_before
from apps.databases.dumps import FORMATS, BackupError, DumpFormat, format_for, sha256_of
from apps.databases.models import Backup, BackupStatus, BackupTrigger, Database, DatabaseStatus
from apps.databases.provisioners import ProvisionerError
from apps.databases.services import admin_url_of, spec_for, work_lock_key
from apps.events.models import Severity
from apps.events.services import event_emit
from apps.secrets.crypto import DecryptionFailed

log = logging.getLogger(__name__)

STORAGE_ALIAS = "backups"
UNFINISHED = (BackupStatus.PENDING, BackupStatus.RUNNING)
CHUNK = 1 << 20
# Errors whose message is written for people (and holds no password); anything else is logged and
# recorded by its type only.
EXPLAINED = (BackupError, ProvisionerError, DecryptionFailed)


def backup_storage() -> Storage:
    return storages[STORAGE_ALIAS]


# --- requests ----------------------------------------------------------------------------------------
def _locked(database: Database) -> Database:
    return Database.objects.select_for_update().select_related("team__plan").get(pk=database.pk)


def _require_available(database: Database, doing: str) -> None:
    if database.status != DatabaseStatus.AVAILABLE:
        raise Conflict(
            f"Database {database.name} is {database.status}; it can be {doing} only when available.",
            code="database_not_available",
            status=database.status,
        )


def _require_in_team(ctx: TeamContext, obj: Database | Backup) -> None:
    if obj.team_id != ctx.team.pk:
        raise NotFound()


def _next_number(database: Database) -> int:
    last = Backup.objects.filter(database=database).order_by("-number").values_list("number", flat=True).first()
    return (last or 0) + 1


def _backup_create(*, database: Database, trigger: str, actor: Actor) -> Backup:
    """Inside a transaction: lock the database, check it is available, record the pending backup,
    mark the database backing_up, audit, and enqueue the dump when the transaction commits."""
    from apps.databases.backup_tasks import backup_run

    database = _locked(database)
    _require_available(database, "backed up")
    backup = Backup.objects.create(
        team=database.team,
        database=database,
        number=_next_number(database),
        trigger=trigger,
        status=BackupStatus.PENDING,
        created_by_label=actor.label[:200],
    )
    Database.objects.filter(pk=database.pk).update(status=DatabaseStatus.BACKING_UP, updated_at=timezone.now())
    audit_record(actor=actor, action="database.backup", target=database, team=database.team,
                 data={"backup": backup.number, "trigger": trigger})  # fmt: skip
    enqueue(backup_run, backup.pk)
    return backup


@transaction.atomic
def backup_capture(*, ctx: TeamContext, database: Database, trigger: str = BackupTrigger.MANUAL) -> Backup:
    """Queue a backup of an available database: answers at once with the pending Backup (number
    1, 2, 3… per database) and the database `backing_up` until the worker finishes."""
    _require_in_team(ctx, database)
    ctx.require(Capability.MANAGE_DATABASES, database)
    return _backup_create(database=database, trigger=trigger, actor=ctx.actor)


@transaction.atomic
def backup_restore(*, ctx: TeamContext, database: Database, backup: Backup, confirm: str) -> Backup:
    """Queue the restore of `database` from one of its succeeded backups; the caller repeats the
    database's name (its current data is replaced). A pending safety backup of the current data is
    recorded at once (listed with the others); the worker takes it, then checks the file's size and
    checksum before loading anything; the database is `restoring` until it is done. Restoring the
    safety backup brings back the data from before."""
    from apps.databases.backup_tasks import restore_run

    _require_in_team(ctx, database)
    if backup.database_id != database.pk:
        raise NotFound()
    ctx.require(Capability.MANAGE_DATABASES, database)
    require_confirmation(confirm, expected=database.name, what="the database's name")
    database = _locked(database)
    backup = Backup.objects.get(pk=backup.pk)
    _require_available(database, "restored")
    if backup.status != BackupStatus.SUCCEEDED:
        raise Conflict(
            f"Backup #{backup.number} is {backup.status}; only a succeeded backup can be restored.",
            code="backup_not_succeeded",
        )
    Database.objects.filter(pk=database.pk).update(
        status=DatabaseStatus.RESTORING, status_reason="", updated_at=timezone.now()
    )
    safety = _safety_create(database, backup, ctx.actor.label)
    audit_record(actor=ctx.actor, action="database.restore", target=database, team=ctx.team,
                 data={"backup": backup.number, "safety_backup": safety.number})  # fmt: skip
    enqueue(restore_run, backup.pk, safety.pk)
    return backup


def _safety_create(database: Database, restoring: Backup, label: str) -> Backup:
    return Backup.objects.create(
        team=database.team,
        database=database,
        number=_next_number(database),
        trigger=BackupTrigger.SAFETY,
        status=BackupStatus.PENDING,
        reason=f"Taken automatically before restoring backup #{restoring.number}.",
        created_by_label=label[:200],
    )


def backup_open(*, ctx: TeamContext, backup: Backup) -> tuple[IO[bytes], str]:
    """A succeeded backup's file, opened for reading (the caller closes it), and the file name to
    offer for download; audited. `backup.size_bytes` and `backup.sha256` let the client check it."""
    _require_in_team(ctx, backup)
    ctx.require(Capability.MANAGE_DATABASES, backup)
    if backup.status != BackupStatus.SUCCEEDED or not backup.file_name:
        raise Conflict(f"Backup #{backup.number} is {backup.status}; it has no file.", code="backup_not_succeeded")
    try:
        handle = backup_storage().open(backup.file_name, "rb")
    except FileNotFoundError:
        raise Conflict(
            f"The file of backup #{backup.number} is missing from the backup storage.", code="backup_file_missing"
        ) from None
    database = backup.database
    with transaction.atomic():
        audit_record(actor=ctx.actor, action="database.backup_download", target=database, team=ctx.team,
                     data={"backup": backup.number})  # fmt: skip
    return handle, f"{ctx.team.slug}-{database.name}-{Path(backup.file_name).name}"


# --- the schedule ------------------------------------------------------------------------------------
def scheduled_backups(now: datetime | None = None) -> int:
    """Back up every available database whose plan schedules backups and whose last scheduled
    backup (of any outcome: a failing database is not retried every few minutes) is at least the
    plan's interval old. Returns how many were queued. Safe to run twice at once (two beats): each
    database is asked again under its row lock. (Work whose worker disappeared is given up on by the
    takeover sweep: `give_up_stale`.)"""
    now = now or timezone.now()
    actor = Actor.system("backup-scheduler")
    return sum(_backup_if_due(database.pk, now=now, actor=actor) for database in due_for_backup(now))


def due_for_backup(now: datetime, *, pk: int | None = None) -> list[Database]:
    """The available databases (or the one `pk`) whose scheduled backup is due as of `now`."""
    last = (
        Backup.objects.filter(database=OuterRef("pk"), trigger=BackupTrigger.SCHEDULED)
        .order_by("-created_at")
        .values("created_at")[:1]
    )
    due = (
        Database.objects.filter(status=DatabaseStatus.AVAILABLE, team__plan__backup_interval_hours__gt=0)
        .annotate(last_scheduled=Subquery(last))
        .select_related("team__plan")
        .order_by("id")
    )
    if pk is not None:
        due = due.filter(pk=pk)
    return [
        database
        for database in due
        if database.last_scheduled is None
        or database.last_scheduled <= now - timedelta(hours=database.team.plan.backup_interval_hours)
    ]


def _backup_if_due(database_id: int, *, now: datetime, actor: Actor) -> bool:
    """Queue the database's scheduled backup if it is still due once its row is locked: another pass
    that read the same list (a second beat) may have backed it up meanwhile — and finished, so the
    database is available again."""
    with transaction.atomic():
        database = Database.objects.select_for_update().filter(pk=database_id).first()
        if database is None or not due_for_backup(now, pk=database_id):
            return False
        try:
            _backup_create(database=database, trigger=BackupTrigger.SCHEDULED, actor=actor)
        except Conflict:
            return False  # it became busy since the query
    return True


def give_up_stale(now: datetime | None = None) -> int:
    """Finish, with the reason, work whose worker is gone; how many (backups and restores):
    - a running backup or restore whose heartbeat stopped (apps.core.leases): its worker died while it
      ran (a graceful stop hands it back instead). It is not retried: a worker that dies during a dump
      may have died of it (memory), and a retry loop would kill the next one too. A backup's partial
      file is deleted, so it is never counted as good;
    - a backup or restore still queued long after any worker would have started it
      (PANDASTACK_BACKUP_STALE_SECONDS): its task message was lost.
    Runs in the takeover sweep (apps.core.tasks), every few seconds."""
    now = now or timezone.now()
    silent = stale_before(now)
    lost = now - timedelta(seconds=settings.PANDASTACK_BACKUP_STALE_SECONDS)
    seconds = f"{settings.PANDASTACK_WORKER_STALE_SECONDS:.0f}s"
    count = 0
    died = Backup.objects.filter(status=BackupStatus.RUNNING, updated_at__lt=silent)
    for backup in died.select_related("database__team"):
        reason = (
            f"the backup never finished: its worker stopped while taking it (no heartbeat for {seconds}); "
            "its partial file was deleted"
        )
        count += _backup_failed(backup, reason, not_refreshed_since=silent)
    queued = Backup.objects.filter(status=BackupStatus.PENDING, created_at__lt=lost)
    for backup in queued.select_related("database__team"):
        count += _backup_failed(backup, "the backup never started: its task was lost", not_refreshed_since=lost)
    for database in Database.objects.filter(status=DatabaseStatus.RESTORING, updated_at__lt=silent):
        safety = Backup.objects.filter(database=database, trigger=BackupTrigger.SAFETY).order_by("-number").first()
        started = safety is None or safety.status != BackupStatus.PENDING  # its task took the safety backup
        if not started and database.updated_at >= lost:
            continue  # queued, not lost yet
        if started:
            reason = f"the restore never finished: its worker stopped while restoring (no heartbeat for {seconds})"
        else:
            reason = "the restore never started: its task was lost"
        fmt = FORMATS.get(database.engine)
        if started and safety is not None and safety.status == BackupStatus.SUCCEEDED and fmt and not fmt.atomic_load:
            # A load cut off part way is not undone here (no worker to run it): say where the data is.
            reason += f"; the data may be partly restored: safety backup #{safety.number} holds it from before"
        count += _restore_failed(database, None, reason, not_refreshed_since=silent)
    return count


# --- the worker's side -------------------------------------------------------------------------------
def _reason(exc: Exception) -> str:
    if isinstance(exc, EXPLAINED):
        return str(exc)
    log.exception("backup or restore failed unexpectedly")
    return f"an unexpected error ({type(exc).__name__}); the worker's log has the details"


def _file_name(database: Database, backup: Backup, fmt: DumpFormat, now: datetime) -> str:
    return f"{database.team.slug}/{database.name}/{backup.number}-{now:%Y%m%dT%H%M%SZ}.{fmt.extension}"


class _HashingFile(File):
    """The dump as Django storages read it: the SHA-256 and size of what went through `chunks()`."""

    def __init__(self, handle: IO[bytes], name: str) -> None:
        super().__init__(handle, name)
        self.digest = hashlib.sha256()
        self.copied = 0

    def chunks(self, chunk_size: int | None = None) -> Iterator[bytes]:
        for chunk in super().chunks(chunk_size):
            self.digest.update(chunk)
            self.copied += len(chunk)
            yield chunk


def _store(storage: Storage, name: str, path: Path) -> tuple[str, int, str]:
    """Copy the dump into storage; its stored name, size and SHA-256."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        content = _HashingFile(handle, name)
        stored = storage.save(name, content)
    # One pass when the backend streamed chunks() once (the file system does); another otherwise.
    sha256 = content.digest.hexdigest() if content.copied == size else sha256_of(path)
    if storage.size(stored) != size:
        raise BackupError(f"the backup storage kept {storage.size(stored)} bytes of {size}")
    return stored, size, sha256


def _claim(backup_id: int) -> tuple[Backup, str] | None:
    """Mark an unfinished backup running; it and a killed run's partial file, or None when it is
    finished (or gone), or running under another worker whose heartbeat is fresh (a redelivered
    message must not dump it a second time alongside)."""
    with transaction.atomic():
        backup = Backup.objects.select_for_update().filter(pk=backup_id).first()
        if backup is None or backup.status not in UNFINISHED:
            return None
        if backup.status == BackupStatus.RUNNING and backup.updated_at >= stale_before():
            return None
        leftover = backup.file_name  # a killed run's partial file
        backup.status, backup.started_at, backup.error, backup.file_name = (
            BackupStatus.RUNNING, timezone.now(), "", ""
        )  # fmt: skip
        backup.save(update_fields=["status", "started_at", "error", "file_name", "updated_at"])
    return backup, leftover


def _heartbeat(*, backups: tuple[int, ...] = (), restoring: int | None = None) -> Callable[[], bool]:
    """The lease's touch for a backup (and a restore's database): refreshes the running backups and
    the restoring database; False once none of them is still this worker's (given up on meanwhile)."""

    def touch() -> bool:
        now = timezone.now()
        touched = Backup.objects.filter(pk__in=backups, status=BackupStatus.RUNNING).update(updated_at=now)
        if restoring is not None:
            touched += Database.objects.filter(pk=restoring, status=DatabaseStatus.RESTORING).update(updated_at=now)
        return touched > 0

    return touch


def _handed_back(exc: BaseException) -> bool:
    """Whether a failure is the worker's stop: WorkerStopping itself, or a tool killed by the same
    SIGTERM (sent to the worker's whole process group)."""
    return isinstance(exc, shutdown.WorkerStopping) or shutdown.stop_requested()


def _hand_back(backup: Backup) -> None:
    """The worker is stopping: the backup goes back to pending (its partial file deleted) for the
    next worker, which gets the queued message again."""
    connection.close()  # an interruption may have cut the worker's own connection mid-query
    name = Backup.objects.filter(pk=backup.pk).values_list("file_name", flat=True).first()
    if name:
        backup_storage().delete(name)
    Backup.objects.filter(pk=backup.pk, status=BackupStatus.RUNNING).update(
        status=BackupStatus.PENDING, file_name="", updated_at=timezone.now()
    )


def _dump_into(backup: Backup, leftover: str) -> bool:
    """Dump the backup's database into storage and record the outcome on the (claimed) backup;
    whether it succeeded. The database's status is the caller's."""
    database = Database.objects.select_related("team__plan", "server").get(pk=backup.database_id)
    storage = backup_storage()
    if leftover:
        storage.delete(leftover)
    now = backup.started_at or timezone.now()
    try:
        fmt = format_for(database.engine)
        with tempfile.TemporaryDirectory(prefix="pandastack-backup-") as tmp:
            path = Path(tmp) / f"dump.{fmt.extension}"
            with shutdown.interruptible():  # a stop cuts the dump: it is taken again from the start
                fmt.dump(admin_url_of(database), spec_for(database), path)
            name = _file_name(database, backup, fmt, now)
            # Recorded before writing: a run killed while writing leaves a file the next run (or the
            # takeover sweep, which fails the backup) finds and deletes.
            Backup.objects.filter(pk=backup.pk).update(file_name=name)
            with shutdown.interruptible():
                stored, size, sha256 = _store(storage, name, path)
    except Exception as exc:
        if _handed_back(exc):
            _hand_back(backup)
            raise shutdown.WorkerStopping() from exc
        _backup_failed(backup, _reason(exc))
        return False
    done = Backup.objects.filter(pk=backup.pk, status=BackupStatus.RUNNING).update(
        status=BackupStatus.SUCCEEDED, file_name=stored, size_bytes=size, sha256=sha256,
        finished_at=timezone.now(), updated_at=timezone.now(),
    )  # fmt: skip
    if not done:  # given up on meanwhile (give_up_stale): the file belongs to no backup
        storage.delete(stored)
        return False
    return True


def backup_execute(backup_id: int) -> None:
    """Dump the database into storage and record the outcome; the database is available again
    either way. A pending backup, or a running one whose worker died, is (re)done from the start; a
    finished one is left. Its heartbeat shows the takeover sweep it is alive; a worker asked to stop
    hands it back (WorkerStopping: pending again, its message queued again)."""
    claimed = _claim(backup_id)
    if claimed is None:
        return
    backup, leftover = claimed
    with lease(None, holder=f"backup:{backup.pk}", touch=_heartbeat(backups=(backup.pk,))):
        succeeded = _dump_into(backup, leftover)
    Database.objects.filter(pk=backup.database_id, status=DatabaseStatus.BACKING_UP).update(
        status=DatabaseStatus.AVAILABLE, updated_at=timezone.now()
    )
    if succeeded:
        prune(Database.objects.select_related("team__plan").get(pk=backup.database_id))


def _printable(reason: str) -> str:
    """A reason fit to store and show: a server's error may quote the file's bytes (Redis quotes the
    refused command with its payload), and PostgreSQL text cannot hold NUL."""
    return "".join(c if c.isprintable() or c == "\n" else "?" for c in reason)


def _backup_failed(backup: Backup, reason: str, *, not_refreshed_since: datetime | None = None) -> bool:
    """Fail an unfinished backup (with `not_refreshed_since`: only if not refreshed since, so a backup another
    worker took up again meanwhile is left to it); whether it did. Its file goes either way."""
    reason = _printable(reason)
    database = backup.database
    with transaction.atomic():
        unfinished = Backup.objects.filter(pk=backup.pk, status__in=UNFINISHED)
        if not_refreshed_since is not None:
            unfinished = unfinished.filter(updated_at__lt=not_refreshed_since)
        changed = unfinished.update(
            status=BackupStatus.FAILED, error=reason[:2000], finished_at=timezone.now(), updated_at=timezone.now()
        )
        if not changed and not_refreshed_since is not None:
            return False
        Database.objects.filter(pk=database.pk, status=DatabaseStatus.BACKING_UP).update(
            status=DatabaseStatus.AVAILABLE, updated_at=timezone.now()
        )
        if changed:
            event_emit(team=database.team, kind="database.backup_failed", subject=database, severity=Severity.ERROR,
                       message=f"{database.name}: backup #{backup.number} failed: {reason[:300]}",
                       data={"backup": backup.number, "trigger": backup.trigger})  # fmt: skip
    if backup.file_name:
        backup_storage().delete(backup.file_name)
    Backup.objects.filter(pk=backup.pk).update(file_name="")
    return bool(changed)


def prune(database: Database) -> int:
    """Keep the plan's number of succeeded backups per database (at least the newest one) and as
    many failed ones; delete the older ones and their files. Safety backups are counted apart, so
    the restores' automatic backups never push out the ones people and the schedule took.
    Returns how many went."""
    kept = max(1, database.team.plan.backups_kept)
    storage = backup_storage()
    gone = 0
    safety = Q(trigger=BackupTrigger.SAFETY)
    for status in (BackupStatus.SUCCEEDED, BackupStatus.FAILED):
        of_status = Backup.objects.filter(database=database, status=status).order_by("-number")
        for old in (of_status.filter(safety)[kept:], of_status.exclude(safety)[kept:]):
            for backup in list(old):
                if backup.file_name:
                    storage.delete(backup.file_name)
                backup.delete()
                gone += 1
    return gone


def backups_delete_all(*, database: Database) -> int:
    """Delete every backup of a database and its file (for when the database itself goes)."""
    storage = backup_storage()
    count = 0
    for backup in Backup.objects.filter(database=database):
        if backup.file_name:
            storage.delete(backup.file_name)
        backup.delete()
        count += 1
    return count


def _fetch_verified(storage: Storage, backup: Backup, path: Path) -> None:
    """Copy the stored file to `path`, checking its size and SHA-256 against the backup's."""
    digest, size = hashlib.sha256(), 0
    try:
        source = storage.open(backup.file_name, "rb")
    except FileNotFoundError:
        raise BackupError(f"the file of backup #{backup.number} is missing from the backup storage") from None
    with source, path.open("wb") as out:
        while chunk := source.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
            out.write(chunk)
    if size != backup.size_bytes:
        raise BackupError(
            f"the file of backup #{backup.number} is damaged: it has {size} bytes, {backup.size_bytes} were stored"
        )
    if digest.hexdigest() != backup.sha256:
        raise BackupError(f"the file of backup #{backup.number} is damaged: its SHA-256 checksum does not match")


def _safety_backup(database: Database, restoring: Backup, safety_id: int | None) -> Backup:
    """The safety backup of this restore: the one the request recorded, else (a task queued
    before safety backups existed) an unfinished one of the database, else a new one."""
    found = Backup.objects.filter(database=database, trigger=BackupTrigger.SAFETY)
    if safety_id is not None:
        safety = found.filter(pk=safety_id).first()
    else:
        safety = found.filter(status__in=UNFINISHED).order_by("-number").first()
    if safety is not None:
        return safety
    with transaction.atomic():
        _locked(database)  # numbers are given under the database's lock
        return _safety_create(database, restoring, "restore")


def _take_safety(safety: Backup) -> Backup:
    """The safety backup, taken now unless it already succeeded (a task run again after its worker
    died reuses it: the data may already be partly replaced)."""
    if safety.status != BackupStatus.SUCCEEDED and (claimed := _claim(safety.pk)) is not None:
        _dump_into(*claimed)
        safety.refresh_from_db()
    return safety


def _mysql_empty(admin_url: str, spec: Any) -> None:
    """Drop the tenant's MariaDB database and create it again, empty, under the same name (its
    grants stay: MariaDB keeps privileges of a dropped database). Executes nothing of the tenant's:
    dropping runs no trigger."""
    import pymysql

    from apps.databases.provisioners.mysql import MySQLProvisioner

    provisioner = MySQLProvisioner(admin_url)
    try:
        with provisioner._admin() as cursor:
            provisioner._kill_sessions(cursor, spec.username)
            cursor.execute(f"DROP DATABASE IF EXISTS `{spec.db_name}`", [])  # a checked name (DatabaseSpec)
            cursor.execute(f"CREATE DATABASE `{spec.db_name}` CHARACTER SET utf8mb4", [])
    except pymysql.MySQLError as exc:
        raise BackupError(f"emptying the database before loading failed: {exc}") from None


# Engines whose load cannot be rolled back by the server: emptied first, so a load gives exactly
# the backup's contents, and a failed one can be undone by loading the safety backup the same way.
EMPTY_BEFORE_LOAD: dict[str, Callable[[str, Any], None]] = {"mysql": _mysql_empty}


def _load(database: Database, fmt: DumpFormat, path: Path) -> None:
    admin_url, spec = admin_url_of(database), spec_for(database)
    if empty := EMPTY_BEFORE_LOAD.get(database.engine):
        empty(admin_url, spec)
    fmt.load(admin_url, spec, path)


def _fetch(backup: Backup, fmt: DumpFormat, directory: Path, stem: str) -> Path:
    path = directory / f"{stem}.{fmt.extension}"
    _fetch_verified(backup_storage(), backup, path)
    fmt.validate(path)
    return path


def restore_execute(backup_id: int, safety_id: int | None = None) -> None:
    """Take the safety backup, then load a verified backup into its database; the database is
    available again either way (on failure with the reason in its status_reason, and a
    `database.restore_failed` event). A load that fails part way leaves the data as it was: rolled
    back by the server, or put back from the safety backup. Runs only while the database is
    `restoring`, so a second run after success does nothing; one worker at a time, with a heartbeat
    (a worker that dies is noticed by the takeover sweep). A worker asked to stop hands the restore
    back before the load, or after a load its stop cut short (WorkerStopping): the next run loads again
    from the start, the safety backup taken once."""
    backup = Backup.objects.select_related("database__team__plan", "database__server").filter(pk=backup_id).first()
    if backup is None or backup.database.status != DatabaseStatus.RESTORING:
        return
    database = backup.database
    safety = _safety_backup(database, backup, safety_id)
    touch = _heartbeat(backups=(safety.pk,), restoring=database.pk)
    with lease(work_lock_key(database.pk), holder=f"restore:{backup.pk}", touch=touch) as held:
        if held is None:
            return  # another worker is restoring it right now
        try:
            _restore(database, backup, safety)
        except shutdown.WorkerStopping:
            connection.close()  # an interruption may have cut the worker's own connection mid-query
            Database.objects.filter(pk=database.pk, status=DatabaseStatus.RESTORING).update(updated_at=timezone.now())
            raise


def _restore(database: Database, backup: Backup, safety: Backup) -> None:
    failed = f"Restore from backup #{backup.number} failed"
    safety = _take_safety(safety)
    if safety.status != BackupStatus.SUCCEEDED:
        why = f"the safety backup #{safety.number} of the current data failed ({safety.error or safety.status})"
        _restore_failed(database, backup, f"{failed}: {why}. Nothing was changed.")
        return
    with tempfile.TemporaryDirectory(prefix="pandastack-restore-") as tmp:
        try:
            fmt = format_for(database.engine)
            path = _fetch(backup, fmt, Path(tmp), "restore")
        except Exception as exc:
            _restore_failed(database, backup, f"{failed}: {_reason(exc)}. Nothing was changed.")
            return
        # The last check point: once loading, the load runs to its end (a stop waits for it) unless the
        # stop's own signal kills the loading tool, which hands the restore back as well.
        shutdown.check()
        try:
            _load(database, fmt, path)
        except Exception as exc:
            if _handed_back(exc):
                raise shutdown.WorkerStopping() from exc
            _restore_failed(database, backup, f"{failed}: {_reason(exc)}. {_undo(database, fmt, safety, Path(tmp))}")
            return
    with transaction.atomic():
        Backup.objects.filter(pk=backup.pk).update(restored_at=timezone.now(), updated_at=timezone.now())
        Database.objects.filter(pk=database.pk, status=DatabaseStatus.RESTORING).update(
            status=DatabaseStatus.AVAILABLE, status_reason="", updated_at=timezone.now()
        )
    prune(database)


def _undo(database: Database, fmt: DumpFormat, safety: Backup, directory: Path) -> str:
    """After a failed load: put the data from before back where the server could not roll it back;
    says what became of the data."""
    if fmt.atomic_load:
        return "Nothing was changed."
    try:
        _load(database, fmt, _fetch(safety, fmt, directory, "safety"))
    except Exception as exc:
        return (f"Putting the data from before back failed too ({_reason(exc)}): restore safety backup "
                f"#{safety.number}, which holds it.")  # fmt: skip
    return f"The data from before was put back from safety backup #{safety.number}; nothing was changed."


def _restore_failed(
    database: Database, backup: Backup | None, reason: str, *, not_refreshed_since: datetime | None = None
) -> bool:
    """The restore ended without loading the backup: the database is available with the reason
    (with `not_refreshed_since`: only if its heartbeat stopped before then); whether it was."""
    reason = _printable(reason)
    with transaction.atomic():
        restoring = Database.objects.filter(pk=database.pk, status=DatabaseStatus.RESTORING)
        if not_refreshed_since is not None:
            restoring = restoring.filter(updated_at__lt=not_refreshed_since)
        changed = restoring.update(
            status=DatabaseStatus.AVAILABLE, status_reason=reason[:2000], updated_at=timezone.now()
        )
        if changed:
            data: dict[str, Any] = {"backup": backup.number} if backup is not None else {}
            event_emit(team=database.team, kind="database.restore_failed", subject=database, severity=Severity.ERROR,
                       message=f"{database.name}: {reason[:300]}", data=data)  # fmt: skip
    return bool(changed)
