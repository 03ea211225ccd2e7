"""Dump and load one tenant database, per engine: the driver under backups and restores.

Each engine has a pair `<engine>_dump(admin_url, spec, path)` / `<engine>_load(admin_url, spec,
path)`, touching only the tenant's database (`spec.db_name`). `admin_url` says where this worker
reaches the server (host, port, TLS options). A load first refuses a file it cannot fully trust, so
that a damaged backup changes nothing.

A load connects as the tenant's own user (`spec.username` / `spec.password`), never as the
server's administrator: a backup's content is the tenant's, and loading runs code the tenant
wrote (PostgreSQL functions behind CHECK constraints, defaults and triggers; MariaDB DEFINER
clauses, routines and any statement in the file). Run by an administrator's session that code
could take the administrator's rights (`RESET ROLE` undoes pg_restore's `--role`); run by the
tenant's session it has the tenant's rights and nothing more, whatever the file says.

- PostgreSQL: `pg_dump --format=custom`; the load is one `pg_restore --single-transaction
  --exit-on-error --no-owner` logged in as the tenant: it applies everything or nothing, and the
  restored objects belong to the tenant. `--clean` drops what the dump holds before recreating it;
  objects created after the backup that the dump does not know stay.
- MySQL / MariaDB: `mariadb-dump --single-transaction` (a consistent InnoDB snapshot) piped back
  into the `mariadb` client, logged in as the tenant (a `DEFINER=` naming anyone else, a `GRANT`,
  a `SET GLOBAL` or a `USE` of another database is refused by the server). Loading SQL is not
  transactional (DDL commits), so the file is validated first: the dump's header line and its
  final "-- Dump completed" line (a truncated or foreign file is refused before anything runs).
- Redis: the tenant's keys only (prefix `<db_name>:`), not the server's RDB snapshot: the server
  is shared between tenants, so its RDB holds everybody's keys, and loading one would replace every
  tenant's data. Each key is saved as `DUMP` + `PTTL` in a small length-prefixed format (magic,
  version, records, a final record count). A load validates the whole file, stages every value
  under a temporary name inside the tenant's prefix (RESTORE checks each payload's checksum), and
  only then swaps in one WATCH/MULTI/EXEC transaction: the tenant's current keys go, the staged
  ones are renamed into place. (A Redis transaction does not roll back a command that fails while
  EXEC runs, e.g. a RESTORE of a bad payload; staging first leaves nothing in EXEC that can fail.)
  The key set is not one point-in-time snapshot: each key is read consistently, one at a time.
  This is the one load run by the administrator: the tenant's ACL user may not RESTORE (a
  dangerous command), and nothing in the file runs: every key is the tenant's prefix followed by
  bytes from the file, and each value is a serialised data structure Redis checks.
- MongoDB: `mongodump --archive --gzip` / `mongorestore --drop --nsInclude '<db>.*'`, the restore
  authenticated as the tenant's user (readWrite on its own database, `authSource=<db>`). The
  credentials go in a config file (mode 0600), never on the command line (where `ps` shows
  them). A load checks first that the file is a complete gzip stream holding a mongodump archive.

Client tools run as subprocesses with explicit argument lists (no shell), a clean environment, a
timeout; passwords travel in the environment or a private file, never in arguments. A failure is a
`BackupError` that ends with the tool's stderr (passwords scrubbed).
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import secrets
import shutil
import struct
import subprocess  # nosec B404
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import IO
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

import redis
from django.conf import settings

from apps.databases.provisioners.base import DatabaseSpec

STDERR_TAIL_CHARS = 1500
DEFAULT_TIMEOUT = 600.0


class BackupError(Exception):
    """A dump or load failed; the message says why, in words an operator can act on (no passwords)."""


# --- running the client tools ------------------------------------------------------------------------
def _timeout(timeout: float | None) -> float:
    if timeout is not None:
        return timeout
    return float(getattr(settings, "PANDASTACK_BACKUP_TOOL_TIMEOUT", DEFAULT_TIMEOUT))


def _clean_env(**extra: str) -> dict[str, str]:
    """The tools' environment: nothing of the worker's (no PGHOST, PGSERVICE, MYSQL_HOST… that would
    redirect them), only what they need."""
    return {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/"),
        "LC_ALL": "C.UTF-8",
        "TZ": "UTC",
        **extra,
    }


def _scrub(text: str, hidden: tuple[str, ...]) -> str:
    for value in hidden:
        if value:
            text = text.replace(value, "***")
    return text


def _tail(text: str) -> str:
    text = text.strip()
    return text if len(text) <= STDERR_TAIL_CHARS else "…" + text[-STDERR_TAIL_CHARS:]


def run_tool(
    args: list[str],
    *,
    what: str,
    env: dict[str, str],
    hidden: tuple[str, ...] = (),
    stdin: IO[bytes] | None = None,
    timeout: float | None = None,
) -> None:
    """Run a client tool; any failure becomes a BackupError with the end of its stderr."""
    limit = _timeout(timeout)
    try:
        result = subprocess.run(  # noqa: S603  # nosec B603
            args,
            env=env,
            stdin=stdin if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=limit,
            check=False,
        )
    except FileNotFoundError:
        raise BackupError(f"{what}: {Path(args[0]).name} is not installed on this worker") from None
    except subprocess.TimeoutExpired:
        raise BackupError(f"{what} did not finish within {limit:.0f} seconds and was stopped") from None
    if result.returncode != 0:
        stderr = _scrub(result.stderr.decode("utf-8", "replace"), hidden)
        raise BackupError(f"{what} failed (exit {result.returncode}): {_tail(stderr) or 'no error output'}")


def _first_available(*names: str) -> str:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    return names[0]  # run_tool says it is not installed


def tenant_url(admin_url: str, spec: DatabaseSpec) -> str:
    """The server's URL as this worker reaches it (`admin_url`: scheme, host, port, path, TLS
    options) with the tenant's own user and password in place of the administrator's."""
    parts = urlsplit(admin_url)
    host = parts.netloc.rsplit("@", 1)[-1]
    credentials = f"{quote(spec.username, safe='')}:{quote(spec.password, safe='')}"
    return urlunsplit((parts.scheme, f"{credentials}@{host}", parts.path, parts.query, ""))


# --- PostgreSQL ------------------------------------------------------------------------------------
def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in name.split(".") if part.isdigit())


def pg_tool(name: str) -> str:
    """The newest installed client of that name: Debian keeps each major version's binaries in
    /usr/lib/postgresql/<version>/bin, and pg_dump must be at least as new as the server."""
    candidates = [path for path in Path("/usr/lib/postgresql").glob(f"*/bin/{name}") if path.is_file()]
    if candidates:
        return str(max(candidates, key=lambda path: _version_key(path.parent.parent.name)))
    return _first_available(name)


def pg_connection(admin_url: str, db_name: str) -> tuple[str, str]:
    """A libpq URL for `db_name` as the URL's user, without the password (it goes in PGPASSWORD),
    and the password. Query options (sslmode…) are kept."""
    parts = urlsplit(admin_url)
    host = parts.netloc.rsplit("@", 1)[-1]
    user = quote(unquote(parts.username or "postgres"), safe="")
    url = urlunsplit(("postgresql", f"{user}@{host}", f"/{db_name}", parts.query, ""))
    return url, unquote(parts.password or "")


def postgres_dump(admin_url: str, spec: DatabaseSpec, path: Path, *, timeout: float | None = None) -> None:
    url, password = pg_connection(admin_url, spec.db_name)
    run_tool(
        [pg_tool("pg_dump"), "--format=custom", "--no-password", f"--file={path}", f"--dbname={url}"],
        what="pg_dump",
        env=_clean_env(PGPASSWORD=password, PGCONNECT_TIMEOUT="10"),
        hidden=(password,),
        timeout=timeout,
    )


def postgres_validate(path: Path) -> None:
    """A custom-format archive whose table of contents pg_restore can read."""
    with path.open("rb") as handle:
        if handle.read(5) != b"PGDMP":
            raise BackupError("this file is not a pg_dump custom-format archive")
    run_tool([pg_tool("pg_restore"), "--list", str(path)], what="reading the archive", env=_clean_env())


def postgres_load(admin_url: str, spec: DatabaseSpec, path: Path, *, timeout: float | None = None) -> None:
    postgres_validate(path)
    # Logged in as the tenant: `--role` on an administrator's session would not do, as a function
    # the archive runs (a CHECK constraint's, a default's) can RESET ROLE back to the administrator.
    url, password = pg_connection(tenant_url(admin_url, spec), spec.db_name)
    run_tool(
        [
            pg_tool("pg_restore"),
            "--clean",
            "--if-exists",
            "--no-owner",  # whatever owners the archive names, the objects are the tenant's
            "--single-transaction",
            "--exit-on-error",
            "--no-password",
            f"--dbname={url}",
            str(path),
        ],
        what="pg_restore",
        env=_clean_env(PGPASSWORD=password, PGCONNECT_TIMEOUT="10"),
        hidden=(password,),
        timeout=timeout,
    )


# --- MySQL / MariaDB -------------------------------------------------------------------------------
MYSQL_HEADERS = (b"-- MariaDB dump ", b"-- MySQL dump ")
MYSQL_SANDBOX_LINE = b"/*M!999999\\- enable the sandbox mode */"
MYSQL_FOOTER = b"-- Dump completed"


def mysql_connection(admin_url: str) -> tuple[list[str], str]:
    """Connection arguments as the URL's user (--no-defaults first: no option file of the worker
    applies) and the password (it goes in MYSQL_PWD)."""
    parts = urlsplit(admin_url)
    args = [
        "--no-defaults",
        "--protocol=TCP",
        f"--host={parts.hostname or '127.0.0.1'}",
        f"--port={parts.port or 3306}",
        f"--user={unquote(parts.username or 'root')}",
    ]
    return args, unquote(parts.password or "")


def mysql_dump(admin_url: str, spec: DatabaseSpec, path: Path, *, timeout: float | None = None) -> None:
    connection, password = mysql_connection(admin_url)
    run_tool(
        [
            _first_available("mariadb-dump", "mysqldump"),
            *connection,
            "--single-transaction",
            "--routines",
            "--triggers",
            "--events",
            "--hex-blob",
            "--no-tablespaces",
            "--default-character-set=utf8mb4",
            f"--result-file={path}",
            spec.db_name,  # one database, no CREATE DATABASE / USE: it loads into any name
        ],
        what="mariadb-dump",
        env=_clean_env(MYSQL_PWD=password),
        hidden=(password,),
        timeout=timeout,
    )


def mysql_validate(path: Path) -> None:
    """The dump's header (after MariaDB's optional sandbox line) and its last line, "-- Dump
    completed…", which the tool writes only when it finished."""
    with path.open("rb") as handle:
        head = [handle.readline().rstrip() for _ in range(2)]
        if head and head[0] == MYSQL_SANDBOX_LINE:
            head = head[1:]
        if not head or not head[0].startswith(MYSQL_HEADERS):
            raise BackupError("this file is not a mysqldump / mariadb-dump file (its header is missing)")
        size = handle.seek(0, io.SEEK_END)
        handle.seek(max(0, size - 4096))
        lines = [line.strip() for line in handle.read().splitlines() if line.strip()]
    if not lines or not lines[-1].startswith(MYSQL_FOOTER):
        raise BackupError("the dump is incomplete: its final '-- Dump completed' line is missing (truncated file?)")


@cache
def _client_has_sandbox(client: str) -> bool:
    try:
        shown = subprocess.run(  # noqa: S603  # nosec B603
            [client, "--no-defaults", "--help"], capture_output=True, timeout=10, check=False, env=_clean_env()
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return b"--sandbox" in shown.stdout


def mysql_load(admin_url: str, spec: DatabaseSpec, path: Path, *, timeout: float | None = None) -> None:
    mysql_validate(path)
    # Logged in as the tenant: the server itself then refuses whatever the file asks beyond the
    # tenant's rights (DEFINER=<administrator>, GRANT, SET GLOBAL, other databases).
    connection, password = mysql_connection(tenant_url(admin_url, spec))
    client = _first_available("mariadb", "mysql")
    # --sandbox: the client refuses its own commands that reach the file system (\! shell, source…).
    sandbox = ["--sandbox"] if _client_has_sandbox(client) else []
    with path.open("rb") as dump:
        run_tool(
            [
                client,
                *connection,
                "--connect-timeout=10",
                *sandbox,
                "--batch",
                "--default-character-set=utf8mb4",
                f"--database={spec.db_name}",
            ],
            what="loading the dump",
            env=_clean_env(MYSQL_PWD=password),
            hidden=(password,),
            stdin=dump,
            timeout=timeout,
        )


# --- Redis -----------------------------------------------------------------------------------------
# File: MAGIC, version (u16); per key b"R", key length (u32), the key without the tenant prefix,
# PTTL in ms (i64, -1: no expiry), value length (u32), the DUMP payload; then b"E" and the number
# of records (u64), and nothing after. Big-endian.
REDIS_MAGIC = b"PANDASTACK-REDIS-KEYS\n"
REDIS_VERSION = 1
REDIS_BATCH = 500
_U16, _U32, _I64, _U64 = struct.Struct(">H"), struct.Struct(">I"), struct.Struct(">q"), struct.Struct(">Q")


@dataclass(frozen=True)
class RedisRecord:
    key: bytes  # without the tenant's prefix
    pttl: int  # -1: no expiry
    payload: bytes  # DUMP's serialisation


def _redis_client(admin_url: str, timeout: float | None) -> redis.Redis:
    return redis.Redis.from_url(admin_url, socket_connect_timeout=10, socket_timeout=_timeout(timeout))


def _tenant_prefix(spec: DatabaseSpec) -> bytes:
    return f"{spec.db_name}:".encode()


def _glob_escape(raw: bytes) -> bytes:
    return b"".join(b"\\" + bytes([c]) if c in b"*?[]\\" else bytes([c]) for c in raw)


def _tenant_keys(client: redis.Redis, prefix: bytes) -> Iterator[bytes]:
    yield from client.scan_iter(match=_glob_escape(prefix) + b"*", count=1000)


def _batches(items: Iterator[bytes], size: int) -> Iterator[list[bytes]]:
    batch: list[bytes] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def redis_dump(admin_url: str, spec: DatabaseSpec, path: Path, *, timeout: float | None = None) -> None:
    prefix = _tenant_prefix(spec)
    client = _redis_client(admin_url, timeout)
    count = 0
    try:
        with path.open("wb") as out:
            out.write(REDIS_MAGIC + _U16.pack(REDIS_VERSION))
            for keys in _batches(_tenant_keys(client, prefix), REDIS_BATCH):
                pipe = client.pipeline(transaction=True)  # each key's DUMP and PTTL agree
                for key in keys:
                    pipe.dump(key)
                    pipe.pttl(key)
                answers = pipe.execute()
                for key, payload, pttl in zip(keys, answers[0::2], answers[1::2], strict=True):
                    if payload is None or pttl in (-2, 0):  # expired or deleted since the scan
                        continue
                    name = key[len(prefix) :]
                    out.write(b"R" + _U32.pack(len(name)) + name + _I64.pack(max(pttl, -1)))
                    out.write(_U32.pack(len(payload)) + payload)
                    count += 1
            out.write(b"E" + _U64.pack(count))
    except redis.RedisError as exc:
        raise BackupError(f"reading the keys from Redis failed: {exc}") from None
    finally:
        client.close()


def redis_read(path: Path) -> list[RedisRecord]:
    """Every record of a Redis key file, after checking all of it: magic, version, each length
    against what is left, the final count, nothing after it."""
    data = path.read_bytes()
    view = memoryview(data)
    if not data.startswith(REDIS_MAGIC):
        raise BackupError("this file is not a PandaStack Redis backup (wrong magic header)")
    pos = len(REDIS_MAGIC)

    def take(n: int) -> bytes:
        nonlocal pos
        if n > len(data) - pos:
            raise BackupError(f"the Redis backup is truncated or damaged (a length at byte {pos} runs past the end)")
        chunk = bytes(view[pos : pos + n])
        pos += n
        return chunk

    (version,) = _U16.unpack(take(2))
    if version != REDIS_VERSION:
        raise BackupError(f"the Redis backup has format version {version}; this PandaStack reads {REDIS_VERSION}")
    records: list[RedisRecord] = []
    while True:
        tag = take(1)
        if tag == b"E":
            (count,) = _U64.unpack(take(8))
            break
        if tag != b"R":
            raise BackupError(f"the Redis backup is damaged (unexpected byte at {pos - 1})")
        (key_length,) = _U32.unpack(take(4))
        key = take(key_length)
        (pttl,) = _I64.unpack(take(8))
        (payload_length,) = _U32.unpack(take(4))
        records.append(RedisRecord(key=key, pttl=pttl, payload=take(payload_length)))
    if count != len(records):
        raise BackupError(f"the Redis backup is damaged: it announces {count} keys but holds {len(records)}")
    if pos != len(data):
        raise BackupError("the Redis backup is damaged: there are bytes after its end")
    return records


def redis_load(admin_url: str, spec: DatabaseSpec, path: Path, *, timeout: float | None = None) -> None:
    records = redis_read(path)
    prefix = _tenant_prefix(spec)
    staging = prefix + f"__pandastack_restore_{secrets.token_hex(8)}__:".encode()
    client = _redis_client(admin_url, timeout)
    staged: list[bytes] = []
    try:
        # 1. Stage: RESTORE checks each payload (RDB version, checksum); a bad one stops here.
        for start in range(0, len(records), REDIS_BATCH):
            pipe = client.pipeline(transaction=False)
            for record in records[start : start + REDIS_BATCH]:
                staged.append(staging + record.key)
                pipe.restore(staging + record.key, 0, record.payload, replace=True)
            pipe.execute()
        # 2. Swap in one transaction; WATCH makes EXEC apply nothing if any of these keys changed
        # meanwhile (then it is tried again with a fresh list).
        for _attempt in range(5):
            current = [key for key in _tenant_keys(client, prefix) if not key.startswith(staging)]
            with client.pipeline(transaction=True) as pipe:
                try:
                    for keys in _batches(iter([*current, *staged]), 1000):
                        pipe.watch(*keys)
                    present = sum(pipe.exists(*keys) for keys in _batches(iter(staged), 1000))
                    if present != len(staged):
                        raise BackupError("staged keys disappeared during the restore; nothing was changed")
                    pipe.multi()
                    for keys in _batches(iter(current), 1000):
                        pipe.unlink(*keys)
                    for record, temporary in zip(records, staged, strict=True):
                        pipe.rename(temporary, prefix + record.key)
                        if record.pttl > 0:
                            pipe.pexpire(prefix + record.key, record.pttl)
                    pipe.execute()
                except redis.WatchError:
                    continue
            staged = []
            return
        raise BackupError("the tenant's keys kept changing during the restore; nothing was changed, try again")
    except redis.ResponseError as exc:
        raise BackupError(f"Redis refused the backup's data, nothing was changed: {exc}") from None
    except redis.RedisError as exc:
        raise BackupError(f"restoring into Redis failed: {exc}") from None
    finally:
        # Best effort: staging keys left behind sit in the tenant's own prefix and hold no live data.
        with contextlib.suppress(redis.RedisError):
            for keys in _batches(iter(staged), 1000):
                client.unlink(*keys)
        client.close()


# --- MongoDB ---------------------------------------------------------------------------------------
# No MongoDB server or tools can be installed on the development machine: these build the command
# lines (tested) and run them where the tools exist.
MONGO_ARCHIVE_MAGIC = struct.pack("<I", 0x8199E26D)


def mongo_uri(admin_url: str) -> str:
    """The admin URI without a database path (the database is given with --db / --nsInclude); the
    path's database becomes the authSource, as the driver would have used it."""
    parts = urlsplit(admin_url)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    path_db = parts.path.strip("/")
    if path_db and "authSource" not in query:
        query["authSource"] = path_db
    return urlunsplit((parts.scheme, parts.netloc, "/", urlencode(query), ""))


def mongo_tenant_uri(admin_url: str, spec: DatabaseSpec) -> str:
    """The server as the admin URI reaches it (hosts, TLS and replica-set options), authenticated
    as the tenant's user, which is defined in the tenant's own database."""
    parts = urlsplit(tenant_url(admin_url, spec))
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k.lower() != "authsource"]
    query.append(("authSource", spec.db_name))
    return urlunsplit((parts.scheme, parts.netloc, "/", urlencode(query), ""))


def mongo_config(admin_url: str, directory: Path, *, uri: str | None = None) -> Path:
    """A private YAML file with the URI (and so the password) for the tools' --config option:
    `uri` if given, else the admin URL's (see mongo_uri)."""
    path = directory / f"mongo-{secrets.token_hex(4)}.yaml"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(f"uri: {json.dumps(uri or mongo_uri(admin_url))}\n")  # a JSON string is a YAML string
    return path


def mongodump_command(spec: DatabaseSpec, archive: Path, config: Path) -> list[str]:
    return ["mongodump", f"--config={config}", f"--db={spec.db_name}", f"--archive={archive}", "--gzip"]


def mongorestore_command(spec: DatabaseSpec, archive: Path, config: Path) -> list[str]:
    return [
        "mongorestore",
        f"--config={config}",
        f"--nsInclude={spec.db_name}.*",
        "--drop",
        f"--archive={archive}",
        "--gzip",
    ]


def mongo_validate(path: Path) -> None:
    """A complete gzip stream (its CRC and length trailer check out) that opens with a mongodump
    archive's magic number."""
    try:
        with gzip.open(path, "rb") as stream:
            if stream.read(4) != MONGO_ARCHIVE_MAGIC:
                raise BackupError("this file is not a mongodump archive")
            while stream.read(1 << 20):
                pass
    except (OSError, EOFError, zlib.error) as exc:
        raise BackupError(f"the MongoDB archive is truncated or damaged: {exc}") from None


def mongodb_dump(admin_url: str, spec: DatabaseSpec, path: Path, *, timeout: float | None = None) -> None:
    config = mongo_config(admin_url, path.parent)
    try:
        run_tool(
            mongodump_command(spec, path, config),
            what="mongodump",
            env=_clean_env(),
            hidden=(unquote(urlsplit(admin_url).password or ""),),
            timeout=timeout,
        )
    finally:
        config.unlink(missing_ok=True)


def mongodb_load(admin_url: str, spec: DatabaseSpec, path: Path, *, timeout: float | None = None) -> None:
    mongo_validate(path)
    # As the tenant's user (readWrite on its database only): the archive cannot restore users,
    # roles or other databases' collections whatever it holds.
    config = mongo_config(admin_url, path.parent, uri=mongo_tenant_uri(admin_url, spec))
    try:
        run_tool(
            mongorestore_command(spec, path, config),
            what="mongorestore",
            env=_clean_env(),
            hidden=(spec.password, unquote(urlsplit(admin_url).password or "")),
            timeout=timeout,
        )
    finally:
        config.unlink(missing_ok=True)


# --- the table ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DumpFormat:
    engine: str
    extension: str
    dump: Callable[..., None]
    load: Callable[..., None]
    # Refuses (BackupError) a file the load would not accept, before anything changes.
    validate: Callable[[Path], object]
    # Whether a load that fails half-way leaves the data as it was (else: validated first, then
    # applied step by step).
    atomic_load: bool


FORMATS: dict[str, DumpFormat] = {
    "postgres": DumpFormat("postgres", "pgdump", postgres_dump, postgres_load, postgres_validate, atomic_load=True),
    "mysql": DumpFormat("mysql", "sql", mysql_dump, mysql_load, mysql_validate, atomic_load=False),
    "redis": DumpFormat("redis", "rediskeys", redis_dump, redis_load, redis_read, atomic_load=True),
    "mongodb": DumpFormat("mongodb", "archive.gz", mongodb_dump, mongodb_load, mongo_validate, atomic_load=False),
}


def format_for(engine: str) -> DumpFormat:
    try:
        return FORMATS[engine]
    except KeyError:
        raise BackupError(f"backups of {engine!r} databases are not supported") from None


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
