"""`manage.py registerserver`: registers a shared server through the service (which connects to it),
prints its name and version; refusals are one clear line and a non-zero exit, never with the
admin URL's password."""

import os
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from apps.databases.models import DatabaseServer
from apps.secrets import crypto

PG_ADMIN_URL = os.environ.get("PANDASTACK_TEST_PG_URL", "postgres://postgres@127.0.0.1:5432/postgres")


def register(*args: str) -> str:
    out = StringIO()
    call_command("registerserver", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def test_registers_a_postgres_server_and_prints_its_name_and_version(db):
    printed = register("postgres", PG_ADMIN_URL, "--name", "pg-main")

    server = DatabaseServer.objects.get()
    assert (server.name, server.engine, server.enabled) == ("pg-main", "postgres", True)
    assert server.version
    assert printed.strip() == f"Registered postgres server 'pg-main' (version {server.version})."
    assert crypto.decrypt(server.admin_url_encrypted) == PG_ADMIN_URL


def test_where_apps_connect_can_differ_from_the_admin_url(db, shared_redis):
    register("redis", shared_redis.admin_url, "--host-for-apps", "redis.internal", "--port-for-apps", "6380")
    server = DatabaseServer.objects.get()
    assert server.name == f"redis-127-0-0-1-{shared_redis.port}"  # made from engine, host and port
    assert (server.host_for_apps, server.port_for_apps) == ("redis.internal", 6380)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["postgres", "postgres://postgres:pw-Secr3t@127.0.0.1:1/postgres"], "cannot connect to PostgreSQL"),
        (["postgres", "mysql://root:pw-Secr3t@127.0.0.1:3306/"], "admin_url: A postgres:// or postgresql:// URL"),
        (["postgres", "not a url pw-Secr3t"], "Invalid admin URL."),
        (["postgres", PG_ADMIN_URL, "--name", "Bad Name"], "name"),
        (["postgres", PG_ADMIN_URL, "--port-for-apps", "70000"], "--port-for-apps"),
    ],
    ids=["unreachable", "wrong scheme", "not a URL", "bad name", "bad port"],
)
def test_a_refusal_is_a_clear_command_error_without_the_password(db, args, message):
    with pytest.raises(CommandError) as refused:
        register(*args)
    assert message in str(refused.value)
    assert "pw-Secr3t" not in str(refused.value)
    assert not DatabaseServer.objects.exists()


def test_a_name_already_registered_is_refused(db, shared_redis):
    register("postgres", PG_ADMIN_URL, "--name", "pg-main")
    with pytest.raises(CommandError, match="name: Already taken"):
        register("redis", shared_redis.admin_url, "--name", "pg-main")
    assert DatabaseServer.objects.count() == 1


def test_an_unknown_engine_is_a_usage_error(db):
    with pytest.raises(CommandError, match="invalid choice"):
        register("oracle", "oracle://x")


def test_the_platforms_own_redis_is_refused_in_one_line(db, settings):
    """The machine's Redis is the platform's broker and cache here (REDIS_URL): never a tenants' server."""
    settings.REDIS_URL = settings.CELERY_BROKER_URL = "redis://127.0.0.1:6379/2"
    with pytest.raises(CommandError, match="platform's own Redis"):
        register("redis", "redis://localhost:6379/0")
    assert not DatabaseServer.objects.exists()
