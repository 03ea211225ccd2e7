"""The managed-databases API: create (202, provisioning), list with filters, detail, delete with its
confirmation, reveal (audited, the only way to credentials), rotate, attachments, backups (capture,
list, detail, restore, download with its checksum); tenancy (another team's database is 404); who may
do what (roles, token scopes, a grant on the project); bad input refused with nothing written.

The servers of the shared placement are the machine's real PostgreSQL and Redis, registered through
the service (which connects to them). No provisioning, backup or restore runs: the services enqueue
their tasks on commit, and a test's transaction never commits; where a test needs a database the
worker would have made available, it sets the status as the worker would."""

import hashlib
import os
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.core.files.base import ContentFile
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.core.access import resolve_team
from apps.core.actors import Actor
from apps.databases import services
from apps.databases.backups import backup_storage
from apps.databases.models import (
    Backup,
    BackupStatus,
    Database,
    DatabaseAttachment,
    DatabaseServer,
    DatabaseStatus,
)
from apps.deployments.models import App
from apps.secrets import crypto
from apps.secrets.models import Variable
from apps.teams.services import grant_create
from tests.conftest import TeamWorld, assert_error, make_token, token_client

PG_ADMIN_URL = os.environ.get("PANDASTACK_TEST_PG_URL", "postgres://postgres@127.0.0.1:5432/postgres")
DATABASES = "/api/v1/teams/alpha/databases/"
BODY = {"name": "reports", "project": "web", "engine": "postgres"}
DATABASE_KEYS = {
    "name", "project", "engine", "version", "placement", "status", "status_reason", "host", "port", "database",
    "username", "size_bytes", "connections", "usage_at", "attachments", "created_at", "credentials_rotated_at",
    "deleted_at", "purge_after",
}  # fmt: skip
BACKUP_KEYS = {
    "number", "trigger", "reason", "status", "size_bytes", "sha256", "error", "started_at", "finished_at",
    "restored_at", "created_at",
}  # fmt: skip
DUMP = b"-- PostgreSQL database dump\n" + bytes(range(256)) * 64


@pytest.fixture(autouse=True)
def _backup_storage(settings: Any, tmp_path: Any) -> None:
    settings.STORAGES = {
        **settings.STORAGES,
        "backups": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(tmp_path)}},
    }


@pytest.fixture
def shared_servers(db: Any, shared_redis: Any) -> dict[str, DatabaseServer]:
    return {
        "postgres": services.server_register(engine="postgres", admin_url=PG_ADMIN_URL, name="pg-api"),
        "redis": services.server_register(engine="redis", admin_url=shared_redis.admin_url, name="redis-api"),
    }


@pytest.fixture
def alpha(team_a: TeamWorld, shared_servers: dict[str, DatabaseServer]) -> TeamWorld:
    """team_a on a plan with room for five databases, and an app "api" in project "web"."""
    type(team_a.team.plan).objects.filter(pk=team_a.team.plan_id).update(max_databases=5)
    App.objects.create(team=team_a.team, project=team_a.project, name="api")
    return team_a


def owner_ctx(world: TeamWorld) -> Any:
    return resolve_team(Actor(user=world.user("owner"), via="test"), world.team.slug)


def make_database(world: TeamWorld, name: str = "main", engine: str = "postgres", **status: Any) -> Database:
    """A database made through the service, then (unless told otherwise) available, as the
    provisioning worker would leave it."""
    database = services.database_create(ctx=owner_ctx(world), project=world.project, name=name, engine=engine)
    Database.objects.filter(pk=database.pk).update(**{"status": DatabaseStatus.AVAILABLE, **status})
    database.refresh_from_db()
    return database


def stored_backup(database: Database, number: int, content: bytes = DUMP, **fields: Any) -> Backup:
    """A succeeded backup with its file in the backup storage, as the worker leaves one."""
    name = backup_storage().save(f"{database.team.slug}/{database.name}/{number}-test.dump", ContentFile(content))
    now = timezone.now()
    return Backup.objects.create(
        team=database.team, database=database, number=number, status=BackupStatus.SUCCEEDED, file_name=name,
        size_bytes=len(content), sha256=hashlib.sha256(content).hexdigest(), started_at=now, finished_at=now,
        **fields,
    )  # fmt: skip


def written() -> tuple:
    """What a refused write must leave untouched."""
    return (
        sorted(Database.objects.values_list("name", "status", "password_encrypted", "updated_at")),
        sorted(DatabaseAttachment.objects.values_list("database__name", "app__name", "env_name")),
        sorted(Backup.objects.values_list("database__name", "number", "status", "restored_at")),
        sorted(Variable.objects.values_list("name", "current_id")),
        AuditEvent.objects.count(),
    )


def password_of(database: Database) -> str:
    return crypto.decrypt(Database.objects.get(pk=database.pk).password_encrypted)


# --- create, list, detail ---------------------------------------------------------------------------
def test_create_answers_202_with_the_database_provisioning_and_never_its_credentials(alpha, client_for):
    response = client_for(alpha, "admin").post(DATABASES, BODY, format="json")

    assert response.status_code == 202, response.json()
    data = response.json()
    assert set(data) == DATABASE_KEYS
    database = Database.objects.get(team=alpha.team, name="reports")
    assert {k: data[k] for k in ("name", "project", "engine", "placement", "status", "attachments")} == {
        "name": "reports",
        "project": "web",
        "engine": "postgres",
        "placement": "shared",
        "status": "provisioning",
        "attachments": [],
    }
    assert (data["host"], data["port"]) == ("127.0.0.1", 5432)  # the shared server's, as apps reach it
    assert data["database"] == data["username"] == database.db_name
    assert data["version"] == database.server.version
    assert password_of(database) not in response.content.decode()
    event = AuditEvent.objects.get(action="database.create")
    assert (event.actor_id, event.team_id) == (alpha.user("admin").pk, alpha.team.pk)


def test_list_shows_attachments_filters_by_engine_and_status_and_hides_deleted(alpha, client_for):
    main = make_database(alpha, "main")
    make_database(alpha, "cache", engine="redis", status=DatabaseStatus.FAILED, status_reason="refused")
    make_database(alpha, "gone", status=DatabaseStatus.DELETED)
    services.database_attach(ctx=owner_ctx(alpha), database=main, app=App.objects.get(name="api"))
    client = client_for(alpha, "viewer")

    rows = client.get(DATABASES).json()["results"]
    assert [r["name"] for r in rows] == ["main", "cache"]
    assert rows[0]["attachments"] == [{"app": "api", "env_name": "DATABASE_URL"}]
    assert rows[1]["status_reason"] == "refused"
    assert [r["name"] for r in client.get(DATABASES + "?engine=redis").json()["results"]] == ["cache"]
    assert [r["name"] for r in client.get(DATABASES + "?status=available").json()["results"]] == ["main"]
    assert client.get(DATABASES + "?engine=mysql").json()["results"] == []


@pytest.mark.parametrize("query", ["engine=oracle", "status=deleted", "status=AVAILABLE"])
def test_an_unknown_filter_value_is_400_naming_it(alpha, client_for, query):
    error = assert_error(client_for(alpha).get(f"{DATABASES}?{query}"), 400, "invalid")
    assert query.split("=")[0] in error["fields"]


def test_detail_by_name_and_a_deleted_or_missing_database_is_404(alpha, client_for):
    make_database(alpha, "main", size_bytes=4096, connections=2)
    make_database(alpha, "gone", status=DatabaseStatus.DELETED)
    client = client_for(alpha, "viewer")

    data = client.get(DATABASES + "main/").json()
    assert (data["name"], data["size_bytes"], data["connections"]) == ("main", 4096, 2)
    assert_error(client.get(DATABASES + "gone/"), 404, "not_found")
    assert_error(client.get(DATABASES + "nope/"), 404, "not_found")
    assert_error(client.get(DATABASES + "gone/backups/"), 404, "not_found")


def test_a_deleted_databases_name_is_reserved_until_it_is_purged(alpha, client_for):
    deleted = make_database(alpha, "reports", status=DatabaseStatus.DELETED)
    client = client_for(alpha, "owner")
    error = assert_error(client.post(DATABASES, BODY, format="json"), 400)
    assert "undeleted" in error["fields"]["name"][0]
    deleted.delete()  # what the purge does in the end
    assert client.post(DATABASES, BODY, format="json").status_code == 202


def test_a_deleted_database_counts_against_the_quota_until_purged(alpha, client_for):
    type(alpha.team.plan).objects.filter(pk=alpha.team.plan_id).update(max_databases=1)
    make_database(alpha, "old", status=DatabaseStatus.DELETED)
    assert_error(client_for(alpha).post(DATABASES, BODY, format="json"), 403, "quota_exceeded")


def test_an_unknown_project_is_400_and_writes_nothing(alpha, client_for):
    client = client_for(alpha)  # (making its token is audited)
    before = written()
    error = assert_error(client.post(DATABASES, {**BODY, "project": "nope"}, format="json"), 400)
    assert error["fields"] == {"project": ["No such project."]}
    assert written() == before


# --- tenancy ----------------------------------------------------------------------------------------
def test_another_teams_database_is_404_everywhere_and_nothing_changes(alpha, team_b, client_for):
    database = make_database(alpha, "main")
    backup = stored_backup(database, 1)
    services.database_attach(ctx=owner_ctx(alpha), database=database, app=App.objects.get(name="api"))
    stranger = client_for(team_b, "owner")
    before = written()
    for prefix in ("/api/v1/teams/alpha/databases/main/", "/api/v1/teams/bravo/databases/main/"):
        for method, path, body in [
            ("get", "", None),
            ("delete", "", {"confirm": "main"}),
            ("post", "reveal/", None),
            ("post", "rotate/", None),
            ("get", "attachments/", None),
            ("post", "attachments/", {"app": "api"}),
            ("delete", "attachments/api/", None),
            ("get", "backups/", None),
            ("post", "backups/", None),
            ("get", f"backups/{backup.number}/", None),
            ("post", f"backups/{backup.number}/restore/", {"confirm": "main"}),
            ("get", f"backups/{backup.number}/download/", None),
        ]:
            response = getattr(stranger, method)(prefix + path, body, format="json")
            assert_error(response, 404, "not_found")
    assert [d["name"] for d in stranger.get("/api/v1/teams/bravo/databases/").json()["results"]] == []
    assert written() == before


# --- who may do what --------------------------------------------------------------------------------
@pytest.mark.parametrize("role", ["viewer", "developer"])
def test_viewers_and_developers_read_but_cannot_create_reveal_or_change(alpha, client_for, role):
    database = make_database(alpha, "main")
    stored_backup(database, 1)
    client = client_for(alpha, role)
    assert client.get(DATABASES).status_code == 200
    assert client.get(DATABASES + "main/").status_code == 200
    assert client.get(DATABASES + "main/attachments/").status_code == 200
    assert client.get(DATABASES + "main/backups/").status_code == 200
    assert client.get(DATABASES + "main/backups/1/").status_code == 200
    before = written()
    for method, path, body in [
        ("post", "", BODY),
        ("delete", "main/", {"confirm": "main"}),
        ("post", "main/reveal/", None),
        ("post", "main/rotate/", None),
        ("post", "main/attachments/", {"app": "api"}),
        ("post", "main/backups/", None),
        ("post", "main/backups/1/restore/", {"confirm": "main"}),
        ("get", "main/backups/1/download/", None),
    ]:
        assert_error(getattr(client, method)(DATABASES + path, body, format="json"), 403, "permission_denied")
    assert written() == before


def test_an_admin_creates_reveals_rotates_and_backs_up(alpha, client_for):
    make_database(alpha, "main")
    client = client_for(alpha, "admin")
    assert client.post(DATABASES, BODY, format="json").status_code == 202
    assert client.post(DATABASES + "main/reveal/").status_code == 200
    assert client.post(DATABASES + "main/rotate/").status_code == 202
    assert client.post(DATABASES + "main/backups/").status_code == 202


def test_a_token_without_the_infra_scope_cannot_create_or_back_up(alpha, client_for):
    make_database(alpha, "main")
    client = client_for(alpha, "owner", scopes=["read", "deploy", "logs", "secrets", "admin"])
    before = written()
    error = assert_error(client.post(DATABASES, BODY, format="json"), 403, "permission_denied")
    assert "'infra'" in error["message"]
    assert_error(client.post(DATABASES + "main/backups/"), 403, "permission_denied")
    assert_error(client.delete(DATABASES + "main/", {"confirm": "main"}, format="json"), 403, "permission_denied")
    assert written() == before


@pytest.mark.parametrize(
    ("scopes", "allowed"),
    [(["read", "secrets"], True), (["read", "infra"], True), (["read", "deploy", "logs"], False)],
    ids=["secrets scope", "infra scope", "neither"],
)
def test_reveal_takes_the_secrets_or_the_infra_scope(alpha, client_for, scopes, allowed):
    make_database(alpha, "main")
    response = client_for(alpha, "owner", scopes=scopes).post(DATABASES + "main/reveal/")
    if allowed:
        assert response.status_code == 200, response.json()
    else:
        error = assert_error(response, 403, "permission_denied")
        assert "'secrets'" in error["message"]
        assert "manage_databases" in error["message"]
        assert not AuditEvent.objects.filter(action="database.reveal").exists()


def test_a_grant_on_the_project_lets_a_developer_manage_its_databases_but_not_create_one(alpha, client_for):
    make_database(alpha, "main")
    grant_create(
        ctx=owner_ctx(alpha),
        obj=alpha.project,
        capability="manage_databases",
        user_id=alpha.user("developer").pk,
        group_slug=None,
    )
    client = client_for(alpha, "developer")
    assert client.post(DATABASES + "main/reveal/").status_code == 200
    assert client.post(DATABASES + "main/backups/").status_code == 202
    # Creating is a team-level change: a grant on one project does not reach it.
    assert_error(client.post(DATABASES, BODY, format="json"), 403, "permission_denied")


# --- reveal -----------------------------------------------------------------------------------------
def test_reveal_is_the_only_way_to_the_credentials_and_is_audited(alpha, client_for):
    database = make_database(alpha, "main")
    services.database_attach(ctx=owner_ctx(alpha), database=database, app=App.objects.get(name="api"))
    client = client_for(alpha, "admin")
    password = password_of(database)

    for path in ("", "main/", "main/attachments/"):
        body = client.get(DATABASES + path).content.decode()
        assert password not in body
        assert "postgres://" not in body
        assert '"password"' not in body
    response = client.post(DATABASES + "main/reveal/")

    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    assert response.json() == {
        "url": f"postgres://{database.username}:{password}@127.0.0.1:5432/{database.db_name}",
        "host": "127.0.0.1",
        "port": 5432,
        "database": database.db_name,
        "username": database.username,
        "password": password,
    }
    event = AuditEvent.objects.get(action="database.reveal")
    assert (event.actor_id, event.team_id, event.target_label) == (alpha.user("admin").pk, alpha.team.pk, "main")
    assert password not in str(event.data)


def test_revealing_a_database_still_provisioning_is_409_and_not_audited(alpha, client_for):
    make_database(alpha, "main", status=DatabaseStatus.PROVISIONING)
    assert_error(client_for(alpha).post(DATABASES + "main/reveal/"), 409, "database_busy")
    assert not AuditEvent.objects.filter(action="database.reveal").exists()


# --- delete, rotate ---------------------------------------------------------------------------------
@pytest.mark.parametrize("body", [{}, {"confirm": "MAIN"}, {"confirm": "reports"}, {"confirm": ["main"]}, None])
def test_delete_needs_the_name_as_confirmation(alpha, client_for, body):
    make_database(alpha, "main")
    client = client_for(alpha)
    before = written()
    error = assert_error(client.delete(DATABASES + "main/", body, format="json"), 400, "invalid")
    assert "confirm" in error["fields"]
    assert written() == before


def test_delete_answers_202_deleted_detaches_and_lists_it_apart_until_the_purge(alpha, client_for):
    database = make_database(alpha, "main")
    services.database_attach(ctx=owner_ctx(alpha), database=database, app=App.objects.get(name="api"))
    client = client_for(alpha)

    response = client.delete(DATABASES + "main/", {"confirm": "main"}, format="json")

    assert response.status_code == 202, response.json()
    data = response.json()
    assert (data["status"], data["attachments"]) == ("deleted", [])
    grace = alpha.team.plan.database_delete_grace_hours * 3600
    assert grace > 0
    purge_after = datetime.fromisoformat(data["purge_after"])
    assert abs((purge_after - timezone.now()).total_seconds() - grace) < 60
    assert data["deleted_at"] is not None
    audit = AuditEvent.objects.get(action="database.delete")
    assert audit.data["detached"] == [{"app": "api", "env_name": "DATABASE_URL"}]
    # Gone from the ordinary list and detail, its backups and actions; listed with ?deleted=1.
    assert_error(client.get(DATABASES + "main/"), 404, "not_found")
    assert_error(client.get(DATABASES + "main/backups/"), 404, "not_found")
    assert client.get(DATABASES).json()["results"] == []
    deleted = client.get(DATABASES + "?deleted=1").json()["results"]
    assert [(d["name"], d["status"]) for d in deleted] == [("main", "deleted")]
    assert client.get(DATABASES + "?deleted=0").json()["results"] == []
    assert_error(client.get(DATABASES + "?deleted=maybe"), 400)


def test_undelete_answers_202_provisioning_and_is_audited(alpha, client_for, django_capture_on_commit_callbacks):
    database = make_database(alpha, "main")
    client = client_for(alpha)
    client.delete(DATABASES + "main/", {"confirm": "main"}, format="json")

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.post(DATABASES + "main/undelete/", format="json")

    assert response.status_code == 202, response.json()
    assert (response.json()["status"], response.json()["purge_after"]) == ("provisioning", None)
    assert len(callbacks) == 1  # the provisioning task: it makes the server take the password again
    assert AuditEvent.objects.filter(action="database.undelete", target_id=str(database.pk)).count() == 1
    assert client.get(DATABASES + "main/").json()["status"] == "provisioning"
    assert client.get(DATABASES + "?deleted=1").json()["results"] == []
    # Not deleted (any more): there is no deleted database of that name to bring back.
    assert_error(client.post(DATABASES + "main/undelete/", format="json"), 404, "not_found")


def test_another_teams_deleted_database_cannot_be_undeleted_or_listed(alpha, team_b, client_for):
    make_database(alpha, "main", status=DatabaseStatus.DELETED)
    stranger = client_for(team_b, "owner")
    before = written()
    for team in ("alpha", "bravo"):
        assert_error(stranger.post(f"/api/v1/teams/{team}/databases/main/undelete/", format="json"), 404)
    assert stranger.get("/api/v1/teams/bravo/databases/?deleted=1").json()["results"] == []
    assert written() == before


def test_undelete_after_the_grace_period_or_during_the_purge_is_409(alpha, client_for):
    database = make_database(alpha, "main", status=DatabaseStatus.DELETED)
    Database.objects.filter(pk=database.pk).update(purge_after=timezone.now() - timedelta(seconds=1))
    client = client_for(alpha)
    before = written()
    assert_error(client.post(DATABASES + "main/undelete/", format="json"), 409, "grace_period_over")
    assert written() == before
    Database.objects.filter(pk=database.pk).update(status=DatabaseStatus.DELETING, purge_after=None)
    before = written()
    assert_error(client.post(DATABASES + "main/undelete/", format="json"), 409, "grace_period_over")
    assert written() == before


@pytest.mark.parametrize(("role", "scopes"), [("developer", None), ("viewer", None), ("owner", ["read", "deploy"])])
def test_undelete_needs_manage_databases(alpha, client_for, role, scopes):
    make_database(alpha, "main", status=DatabaseStatus.DELETED)
    Database.objects.filter(name="main").update(purge_after=timezone.now() + timedelta(hours=1))
    client = client_for(alpha, role, scopes=scopes) if scopes else client_for(alpha, role)
    before = written()
    assert_error(client.post(DATABASES + "main/undelete/", format="json"), 403)
    assert written() == before


def test_a_plan_without_grace_period_purges_at_once(alpha, client_for, django_capture_on_commit_callbacks):
    type(alpha.team.plan).objects.filter(pk=alpha.team.plan_id).update(database_delete_grace_hours=0)
    make_database(alpha, "main")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client_for(alpha).delete(DATABASES + "main/", {"confirm": "main"}, format="json")
    assert response.status_code == 202
    assert response.json()["status"] == "deleting"
    assert len(callbacks) == 1


def test_deleting_a_database_still_provisioning_is_409(alpha, client_for):
    make_database(alpha, "main", status=DatabaseStatus.PROVISIONING)
    client = client_for(alpha)
    before = written()
    assert_error(client.delete(DATABASES + "main/", {"confirm": "main"}, format="json"), 409)
    assert written() == before


def test_rotate_answers_202_with_the_database_and_is_audited(alpha, client_for):
    database = make_database(alpha, "main")
    password = password_of(database)
    response = client_for(alpha).post(DATABASES + "main/rotate/")
    assert response.status_code == 202
    assert response.json()["name"] == "main"
    assert AuditEvent.objects.filter(action="database.rotate").count() == 1
    assert password_of(database) == password  # the worker applies the new one


# --- attachments ------------------------------------------------------------------------------------
def test_attach_list_and_detach(alpha, client_for):
    database = make_database(alpha, "main")
    client = client_for(alpha)

    response = client.post(DATABASES + "main/attachments/", {"app": "api", "env_name": "REPORTS_URL"}, format="json")

    assert response.status_code == 201, response.json()
    assert set(response.json()) == {"app", "env_name", "created_at"}
    assert (response.json()["app"], response.json()["env_name"]) == ("api", "REPORTS_URL")
    variable = Variable.objects.get(app__name="api", name="REPORTS_URL")
    assert variable.secret is True
    assert crypto.decrypt(variable.current.value_encrypted).startswith(f"postgres://{database.username}:")
    assert [a["app"] for a in client.get(DATABASES + "main/attachments/").json()["results"]] == ["api"]
    assert client.get(DATABASES + "main/").json()["attachments"] == [{"app": "api", "env_name": "REPORTS_URL"}]

    assert client.delete(DATABASES + "main/attachments/api/").status_code == 204
    assert client.get(DATABASES + "main/attachments/").json()["results"] == []
    assert Variable.objects.get(pk=variable.pk).current.deleted is True
    assert_error(client.delete(DATABASES + "main/attachments/api/"), 404, "not_found")


def test_attaching_an_unknown_app_is_400_and_writes_nothing(alpha, client_for):
    make_database(alpha, "main")
    client = client_for(alpha)
    before = written()
    error = assert_error(client.post(DATABASES + "main/attachments/", {"app": "nope"}, format="json"), 400)
    assert error["fields"] == {"app": ["No such app."]}
    assert written() == before


# --- backups ----------------------------------------------------------------------------------------
def test_capture_answers_202_with_a_pending_backup_and_the_database_is_backing_up(alpha, client_for):
    make_database(alpha, "main")
    client = client_for(alpha)

    response = client.post(DATABASES + "main/backups/")

    assert response.status_code == 202
    assert set(response.json()) == BACKUP_KEYS
    assert (response.json()["number"], response.json()["status"]) == (1, "pending")
    assert client.get(DATABASES + "main/").json()["status"] == "backing_up"
    assert_error(client.post(DATABASES + "main/backups/"), 409)  # one at a time


def test_backups_list_newest_first_and_detail_by_number(alpha, client_for):
    database = make_database(alpha, "main")
    for number in (1, 2, 3):
        stored_backup(database, number)
    client = client_for(alpha, "viewer")
    assert [b["number"] for b in client.get(DATABASES + "main/backups/").json()["results"]] == [3, 2, 1]
    detail = client.get(DATABASES + "main/backups/2/").json()
    assert (detail["number"], detail["size_bytes"]) == (2, len(DUMP))
    assert detail["sha256"] == hashlib.sha256(DUMP).hexdigest()
    for missing in ("4", "abc", "-1", "9" * 12):
        assert_error(client.get(f"{DATABASES}main/backups/{missing}/"), 404, "not_found")


@pytest.mark.parametrize("body", [{}, {"confirm": "other"}, {"confirm": 1}])
def test_restore_needs_the_database_name_as_confirmation(alpha, client_for, body):
    stored_backup(make_database(alpha, "main"), 1)
    client = client_for(alpha)
    before = written()
    url = DATABASES + "main/backups/1/restore/"
    assert "confirm" in assert_error(client.post(url, body, format="json"), 400)["fields"]
    assert written() == before


def test_restore_answers_202_and_the_database_is_restoring(alpha, client_for):
    stored_backup(make_database(alpha, "main"), 1)
    client = client_for(alpha)
    response = client.post(DATABASES + "main/backups/1/restore/", {"confirm": "main"}, format="json")
    assert response.status_code == 202
    assert response.json()["number"] == 1
    assert client.get(DATABASES + "main/").json()["status"] == "restoring"
    assert AuditEvent.objects.filter(action="database.restore").count() == 1


def test_download_streams_the_file_with_its_size_and_checksum_and_is_audited(alpha, client_for):
    backup = stored_backup(make_database(alpha, "main"), 1)
    response = client_for(alpha).get(DATABASES + "main/backups/1/download/")

    assert response.status_code == 200
    assert response.streaming
    content = b"".join(response.streaming_content)
    assert content == DUMP
    assert response["Content-Length"] == str(len(DUMP))
    assert response["X-Checksum-SHA256"] == hashlib.sha256(DUMP).hexdigest() == backup.sha256
    assert response["Content-Disposition"].startswith("attachment; filename=")
    assert "alpha-main-1-test" in response["Content-Disposition"]
    assert AuditEvent.objects.filter(action="database.backup_download").count() == 1


def test_download_answers_a_client_asking_for_the_file_by_its_media_type(alpha, client_for):
    stored_backup(make_database(alpha, "main"), 1)
    client = client_for(alpha)
    url = DATABASES + "main/backups/1/download/"
    accept = "application/octet-stream, application/json"
    response = client.get(url, HTTP_ACCEPT=accept)
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == DUMP
    # An error is still the one JSON shape.
    assert_error(client.get(DATABASES + "main/backups/2/download/", HTTP_ACCEPT=accept), 404, "not_found")


def test_downloading_a_failed_backup_is_409(alpha, client_for):
    database = make_database(alpha, "main")
    Backup.objects.create(team=alpha.team, database=database, number=1, status=BackupStatus.FAILED, error="refused")
    assert_error(client_for(alpha).get(DATABASES + "main/backups/1/download/"), 409, "backup_not_succeeded")


def test_token_limited_to_another_project_sees_no_databases_of_this_one(alpha, client_for):
    make_database(alpha, "main")
    from apps.teams.models import Project

    Project.objects.create(team=alpha.team, slug="other", name="Other")
    _, raw = make_token(alpha.team, alpha.user("owner"), projects=["other"])
    client = token_client(raw)
    assert client.get(DATABASES).json()["results"] == []
    assert_error(client.get(DATABASES + "main/"), 404, "not_found")
