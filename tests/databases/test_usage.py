"""Database usage at scale, against the tests' shared Redis: the tenants of one server are measured
in one pass over its keys (round trips bounded by the server's keys, not by its tenants or theirs),
each apart from the others, and every figure is written in the same few queries however many
databases there are."""

import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from apps.databases.models import Database, DatabaseServer, DatabaseStatus
from apps.databases.provisioners.redis import SCAN_COUNT, RedisProvisioner
from apps.databases.services import spec_for
from apps.databases.tasks import refresh_usage
from apps.secrets import crypto
from tests.conftest import TeamWorld


@pytest.fixture
def server(db: Any, shared_redis: Any) -> Iterator[DatabaseServer]:
    made = DatabaseServer.objects.create(
        name="redis-usage", engine="redis", admin_url_encrypted=crypto.encrypt(shared_redis.admin_url), version="7"
    )
    yield made
    client = redis.Redis.from_url(shared_redis.admin_url)
    for database in Database.objects.filter(server=made):  # the keys these tests wrote
        keys = list(client.scan_iter(match=f"{database.db_name}:*", count=1000))
        if keys:
            client.unlink(*keys)
    client.close()


def tenants(world: TeamWorld, server: DatabaseServer, start: int, count: int) -> list[Database]:
    prefix = f"ps_usage_{uuid.uuid4().hex[:8]}"
    return Database.objects.bulk_create(
        Database(team=world.team, project=world.project, name=f"cache{i}", engine="redis", server=server,
                 status=DatabaseStatus.AVAILABLE, db_name=f"{prefix}_{i}", username=f"{prefix}_{i}",
                 password_encrypted=crypto.encrypt("pw"), host="127.0.0.1", port=6379)
        for i in range(start, start + count)
    )  # fmt: skip


def fill(client: redis.Redis, database: Database, keys: int) -> None:
    pipe = client.pipeline(transaction=False)
    for k in range(keys):
        pipe.set(f"{database.db_name}:k{k}", "x" * 100)
    pipe.execute()


def calls(client: redis.Redis) -> Counter[str]:
    return Counter({name.removeprefix("cmdstat_"): row["calls"] for name, row in client.info("commandstats").items()})


def test_tenants_are_measured_apart_in_one_pass_over_the_servers_keys(
    team_a: TeamWorld, server: DatabaseServer, shared_redis: Any
) -> None:
    small, large, empty = tenants(team_a, server, 0, 3)
    client = redis.Redis.from_url(shared_redis.admin_url)
    fill(client, small, 5)
    fill(client, large, SCAN_COUNT + 500)  # more than a SCAN page
    provisioner = RedisProvisioner(shared_redis.admin_url)
    specs = [spec_for(d) for d in (small, large, empty)]
    pages = client.dbsize() // SCAN_COUNT + 1

    before = calls(client)
    usages = provisioner.usage_of(specs)
    spent = calls(client) - before

    expected = sum(int(client.memory_usage(f"{small.db_name}:k{k}")) for k in range(5))
    assert usages[small.db_name].size_bytes == expected  # every key measured under the sample limit
    assert usages[large.db_name].size_bytes > usages[small.db_name].size_bytes * 100
    assert usages[empty.db_name].size_bytes == 0
    assert provisioner.usage(specs[0]) == usages[small.db_name]  # one tenant alone: the same figures
    # One pass for all three: a SCAN round trip per page of the server's keys (give or take one, as
    # SCAN pages are approximate), each page's sizes asked in one pipeline.
    assert spent["scan"] <= pages + 2 and spent["memory|usage"] == 5 + SCAN_COUNT + 500
    assert spent["client|list"] == 1
    client.close()


def test_refreshing_usage_costs_the_same_queries_for_3_databases_and_30(
    team_a: TeamWorld, server: DatabaseServer, shared_redis: Any, django_assert_num_queries: Any
) -> None:
    client = redis.Redis.from_url(shared_redis.admin_url)
    few = tenants(team_a, server, 0, 3)
    for database in few:
        fill(client, database, 3)
    with django_assert_num_queries(2) as first:  # the databases (with plans, servers); the figures written
        assert refresh_usage() == 3
    many = few + tenants(team_a, server, 3, 27)
    for database in many[3:]:
        fill(client, database, 3)
    with django_assert_num_queries(len(first)):
        assert refresh_usage() == 30
    sizes = dict(Database.objects.filter(server=server).values_list("db_name", "size_bytes"))
    assert len(sizes) == 30 and all(size > 0 for size in sizes.values())
    client.close()
