"""The MongoDB provisioner WITHOUT a MongoDB server: none can be installed on this machine (Debian
ships no MongoDB and no registry is reachable for the official image).

What is tested: the exact command documents the provisioner sends, to which database, in which order,
and what it does with the replies and errors — against a stand-in client that records the commands
(injected through ``client_factory``) — plus the URLs it builds, and the real pymongo client failing
to reach a port where nothing listens.

What could NOT be tested here: that a real server accepts these commands and replies in the shapes
assumed (dbStats, currentOp, usersInfo); authentication (SCRAM) with the issued credentials and the
refusal of a wrong or rotated password; real isolation (that readWrite on its own database keeps a
tenant away from every other database and user); that killAllSessionsByPattern ends the user's
sessions; and the dedicated placement with the official ``mongo`` image.
"""

import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import bson
import pymongo
import pymongo.errors
import pytest

from apps.databases.provisioners import DatabaseSpec, ProvisionerError, Usage, provisioner_for
from apps.databases.provisioners.mongodb import MongoProvisioner

ADMIN_URL = "mongodb://root:s3cr%40t@10.1.2.3:27017/?authSource=admin"
SPEC = DatabaseSpec(db_name="alpha_shop", username="alpha_shop", password="p@ss/w:rd", host="10.1.2.3", port=27017)
READ_WRITE = [{"role": "readWrite", "db": "alpha_shop"}]

SERVER_COMMANDS = {"buildInfo", "usersInfo", "createUser", "updateUser", "dropUser", "dropDatabase", "dbStats",
                   "currentOp", "killAllSessionsByPattern"}  # fmt: skip

Reply = dict[str, Any] | Exception | Callable[[], dict[str, Any]]


@dataclass
class RecordingClient:
    """Stands in for pymongo.MongoClient: records ``(database, command document)`` for every
    ``client[database].command(document)`` and answers from ``replies`` (by command name: a reply
    document, an exception to raise, or a list of those for successive calls)."""

    replies: dict[str, Reply | list[Reply]] = field(default_factory=dict)
    commands: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    created_with: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    closed: int = 0

    def factory(self, url: str, **options: Any) -> "RecordingClient":
        self.created_with.append((url, options))
        return self

    def __getitem__(self, name: str) -> "RecordingDatabase":
        return RecordingDatabase(self, name)

    def close(self) -> None:
        self.closed += 1

    def answer(self, database: str, document: dict[str, Any]) -> dict[str, Any]:
        # The server takes the first key of the document as the command's name: it must be one.
        name = next(iter(document))
        assert name in SERVER_COMMANDS, f"{name!r} first in {document}"
        bson.encode(document)  # every document must be encodable as sent
        self.commands.append((database, document))
        reply = self.replies.get(name, {"ok": 1.0})
        if isinstance(reply, list):
            reply = reply.pop(0)
        if isinstance(reply, Exception):
            raise reply
        return reply() if callable(reply) else reply


@dataclass
class RecordingDatabase:
    client: RecordingClient
    name: str

    def command(self, document: dict[str, Any]) -> dict[str, Any]:
        return self.client.answer(self.name, dict(document))


def refusal(message: str, code: int) -> pymongo.errors.OperationFailure:
    return pymongo.errors.OperationFailure(message, code, {"ok": 0.0, "errmsg": message, "code": code})


def provisioner(client: RecordingClient) -> MongoProvisioner:
    return MongoProvisioner(ADMIN_URL, connect_timeout=2, client_factory=client.factory)


def test_without_a_server_provisioner_for_gives_the_mongo_provisioner_with_pymongo():
    found = provisioner_for("mongodb", ADMIN_URL)
    assert isinstance(found, MongoProvisioner)
    assert found.engine == "mongodb"
    assert found.client_factory is pymongo.MongoClient


def test_without_a_server_server_version_sends_build_info_to_admin_and_closes_the_client():
    client = RecordingClient(replies={"buildInfo": {"version": "8.0.4", "ok": 1.0}})

    assert provisioner(client).server_version() == "8.0.4"

    assert client.commands == [("admin", {"buildInfo": 1})]
    assert client.closed == 1
    ((url, options),) = client.created_with
    assert url == ADMIN_URL
    assert options["serverSelectionTimeoutMS"] == 2000 and options["connectTimeoutMS"] == 2000


def test_without_a_server_ensure_creates_the_user_in_its_own_database_with_read_write_only():
    client = RecordingClient(replies={"usersInfo": {"users": [], "ok": 1.0}})

    provisioner(client).ensure(SPEC)

    assert client.commands == [
        ("alpha_shop", {"usersInfo": {"user": "alpha_shop", "db": "alpha_shop"}}),
        ("alpha_shop", {"createUser": "alpha_shop", "pwd": "p@ss/w:rd", "roles": READ_WRITE}),
    ]
    assert client.closed == 1


def test_without_a_server_ensure_converges_an_existing_user_password_and_roles():
    existing = {"users": [{"user": "alpha_shop", "db": "alpha_shop", "roles": [{"role": "dbOwner"}]}], "ok": 1.0}
    client = RecordingClient(replies={"usersInfo": existing})

    provisioner(client).ensure(SPEC)
    provisioner(client).ensure(SPEC)  # idempotent: the same commands again

    update = ("alpha_shop", {"updateUser": "alpha_shop", "pwd": "p@ss/w:rd", "roles": READ_WRITE})
    lookup = ("alpha_shop", {"usersInfo": {"user": "alpha_shop", "db": "alpha_shop"}})
    assert client.commands == [lookup, update, lookup, update]


def test_without_a_server_ensure_updates_when_another_worker_created_the_user_meanwhile():
    client = RecordingClient(
        replies={
            "usersInfo": {"users": [], "ok": 1.0},
            "createUser": refusal('User "alpha_shop@alpha_shop" already exists', 51003),
        }
    )

    provisioner(client).ensure(SPEC)

    assert [next(iter(document)) for _, document in client.commands] == ["usersInfo", "createUser", "updateUser"]
    assert client.commands[-1] == ("alpha_shop", {"updateUser": "alpha_shop", "pwd": "p@ss/w:rd", "roles": READ_WRITE})


def test_without_a_server_set_password_updates_it_and_kills_the_users_sessions():
    client = RecordingClient()

    provisioner(client).set_password(SPEC)

    assert client.commands == [
        ("alpha_shop", {"updateUser": "alpha_shop", "pwd": "p@ss/w:rd"}),
        ("admin", {"killAllSessionsByPattern": [{"users": [{"user": "alpha_shop", "db": "alpha_shop"}]}]}),
    ]


def test_without_a_server_drop_kills_sessions_drops_the_user_then_the_database():
    client = RecordingClient()

    provisioner(client).drop(SPEC)

    assert client.commands == [
        ("admin", {"killAllSessionsByPattern": [{"users": [{"user": "alpha_shop", "db": "alpha_shop"}]}]}),
        ("alpha_shop", {"dropUser": "alpha_shop"}),
        ("alpha_shop", {"dropDatabase": 1}),
    ]


def test_without_a_server_drop_of_what_is_already_gone_is_fine():
    client = RecordingClient(replies={"dropUser": refusal("User 'alpha_shop@alpha_shop' not found", 11)})

    provisioner(client).drop(SPEC)

    assert client.commands[-1] == ("alpha_shop", {"dropDatabase": 1})


def test_without_a_server_usage_reads_db_stats_and_counts_the_users_connections():
    ops = [
        {"connectionId": 7, "active": True},
        {"connectionId": 7, "active": False},  # two operations on one connection
        {"connectionId": 9, "active": False},  # an idle connection ("$all")
        {"desc": "a system thread without a connection"},
    ]
    client = RecordingClient(
        replies={
            "dbStats": {"db": "alpha_shop", "dataSize": 100, "storageSize": 4096, "indexSize": 8192, "ok": 1.0},
            "currentOp": {"inprog": ops, "ok": 1.0},
        }
    )

    assert provisioner(client).usage(SPEC) == Usage(size_bytes=4096 + 8192, connections=2)

    assert client.commands == [
        ("alpha_shop", {"dbStats": 1, "scale": 1}),
        (
            "admin",
            {
                "currentOp": 1,
                "$all": True,
                "effectiveUsers": {"$elemMatch": {"user": "alpha_shop", "db": "alpha_shop"}},
            },
        ),
    ]


@pytest.mark.parametrize(
    ("stats", "size"),
    [
        ({"totalSize": 5000, "storageSize": 1, "indexSize": 1}, 5000),  # servers that report the total
        ({"dataSize": 0}, 0),  # a database nothing was written to yet
    ],
)
def test_without_a_server_usage_size_from_what_the_server_reports(stats, size):
    client = RecordingClient(replies={"dbStats": {**stats, "ok": 1.0}, "currentOp": {"inprog": [], "ok": 1.0}})
    assert provisioner(client).usage(SPEC) == Usage(size_bytes=size, connections=0)


def test_without_a_server_the_url_authenticates_against_the_tenants_database():
    assert provisioner(RecordingClient()).url(SPEC) == (
        "mongodb://alpha_shop:p%40ss%2Fw%3Ard@10.1.2.3:27017/alpha_shop?authSource=alpha_shop"
    )
    ipv6 = DatabaseSpec(db_name="a_b", username="a_b", password="pw", host="fd00::5", port=27018)
    assert provisioner(RecordingClient()).url(ipv6) == "mongodb://a_b:pw@[fd00::5]:27018/a_b?authSource=a_b"
    # What pymongo itself makes of it (parsing only; nothing connects).
    parsed = pymongo.uri_parser.parse_uri(provisioner(RecordingClient()).url(SPEC))
    assert (parsed["username"], parsed["password"], parsed["database"]) == ("alpha_shop", "p@ss/w:rd", "alpha_shop")
    assert parsed["options"]["authSource"] == "alpha_shop"


def test_without_a_server_a_refusal_is_a_provisioner_error_without_the_password():
    client = RecordingClient(replies={"usersInfo": refusal("not authorized on alpha_shop to execute command", 13)})

    with pytest.raises(
        ProvisionerError, match=r"^MongoDB refused: not authorized on alpha_shop .* \(code 13\)$"
    ) as failed:
        provisioner(client).ensure(SPEC)

    assert "p@ss" not in str(failed.value) and "s3cr" not in str(failed.value)
    assert client.closed == 1


def test_without_a_server_the_real_client_fails_clearly_where_nothing_listens():
    """The one test with the real pymongo client: no server answers on a free local port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    real = MongoProvisioner(f"mongodb://root:hunter2@127.0.0.1:{port}/?authSource=admin", connect_timeout=0.5)

    with pytest.raises(
        ProvisionerError, match=rf"^cannot connect to MongoDB at 127.0.0.1:{port} as its administrator"
    ) as failed:
        real.server_version()

    assert "hunter2" not in str(failed.value)


def test_without_a_server_an_unusable_admin_url_is_a_provisioner_error():
    with pytest.raises(ProvisionerError, match=r"administrator URL of MongoDB at 10.1.2.3:x is not usable"):
        MongoProvisioner("mongodb://root:pw@10.1.2.3:x/").server_version()
