# shellcheck shell=bash
# Shared helpers for scripts/run and scripts/test. Source it; do not execute it.
#
# Everything here is idempotent: each function checks first and only acts on what is missing,
# so the scripts are as fast as possible on a machine that is already set up.

# The repository root (the folder that holds manage.py).
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV_DIR="${REPO_ROOT}/.venv"
VENV_PY="${VENV_DIR}/bin/python"
LOG_PREFIX="${LOG_PREFIX:-pandastack}"

export DEBIAN_FRONTEND=noninteractive
export PIP_DISABLE_PIP_VERSION_CHECK=1
export PYTHONDONTWRITEBYTECODE=1

# --- Output -------------------------------------------------------------------------------------

log() { printf '[%s] %s\n' "$LOG_PREFIX" "$*" >&2; }
warn() { printf '[%s] WARNING: %s\n' "$LOG_PREFIX" "$*" >&2; }
die() {
    printf '[%s] ERROR: %s\n' "$LOG_PREFIX" "$*" >&2
    exit 1
}

# Run a command with its output captured; show the output only when it fails.
#   quietly <description> <command...>
quietly() {
    local what="$1" out rc=0
    shift
    out="$(mktemp)"
    "$@" >"$out" 2>&1 </dev/null || rc=$?
    if [[ $rc -ne 0 ]]; then
        printf '[%s] ERROR: %s failed (exit %d). Its output:\n' "$LOG_PREFIX" "$what" "$rc" >&2
        tail -n 60 "$out" >&2
        rm -f "$out"
        return "$rc"
    fi
    rm -f "$out"
}

# --- Privileges ---------------------------------------------------------------------------------

is_root() { [[ "$(id -u)" -eq 0 ]]; }

can_sudo() { command -v sudo >/dev/null 2>&1 && sudo -n true >/dev/null 2>&1; }

# Run a command as root: directly when we are root, else through password-less sudo.
as_root() {
    if is_root; then
        "$@"
    elif can_sudo; then
        sudo -n "$@"
    else
        die "'$*' needs root (run as root or give this user password-less sudo)."
    fi
}

# Run a command as the local `postgres` OS user (peer authentication on the Unix socket). Without
# a local postgres user (a server in a container, say) fall back to TCP as the `postgres` role.
as_postgres() {
    if id postgres >/dev/null 2>&1; then
        if is_root; then
            (cd / && runuser -u postgres -- "$@")
        elif [[ "$(id -un)" == postgres ]]; then
            (cd / && "$@")
        elif can_sudo; then
            (cd / && sudo -n -u postgres -- "$@")
        else
            die "'$*' must run as the postgres user: run as root or give this user password-less sudo."
        fi
    else
        PGHOST="${PGHOST:-127.0.0.1}" PGPORT="${PGPORT:-5432}" PGUSER="${PGUSER:-postgres}" "$@"
    fi
}

# --- Debian packages ----------------------------------------------------------------------------

_APT_UPDATED=0

pkg_installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

# Install the named Debian packages that are not installed yet (apt-get update runs at most once).
ensure_apt_packages() {
    local missing=() pkg
    for pkg in "$@"; do
        pkg_installed "$pkg" || missing+=("$pkg")
    done
    [[ ${#missing[@]} -eq 0 ]] && return 0
    command -v apt-get >/dev/null 2>&1 ||
        die "missing packages (${missing[*]}) and no apt-get here: install them by hand."
    if ! is_root && ! can_sudo; then
        die "missing packages (${missing[*]}): run as root or with password-less sudo to install them."
    fi
    if [[ $_APT_UPDATED -eq 0 ]]; then
        log "apt-get update"
        quietly "apt-get update" as_root apt-get update -q
        _APT_UPDATED=1
    fi
    log "apt-get install ${missing[*]}"
    quietly "apt-get install ${missing[*]}" \
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
}

# --- Python -------------------------------------------------------------------------------------

# True when the given interpreter really runs and is Python >= 3.12. (A pyenv shim for a version
# that is not selected exists on PATH but fails when run, so every candidate is actually run.)
python_ok() {
    "$1" -c 'import sys; assert sys.version_info >= (3, 12)' >/dev/null 2>&1 </dev/null
}

_find_python_once() {
    local cand
    for cand in ${PANDASTACK_PYTHON:+"$PANDASTACK_PYTHON"} python3.13 python3.12 python3; do
        if command -v "$cand" >/dev/null 2>&1 && python_ok "$cand"; then
            command -v "$cand"
            return 0
        fi
    done
    # pyenv installs that are not the selected version (lowest 3.12+ first: the project targets 3.12).
    local roots=("${PYENV_ROOT:-${HOME:-/root}/.pyenv}" /root/.pyenv)
    local root
    for root in "${roots[@]}"; do
        [[ -d "$root/versions" ]] || continue
        while IFS= read -r cand; do
            if [[ -x "$cand" ]] && python_ok "$cand"; then
                printf '%s\n' "$cand"
                return 0
            fi
        done < <(compgen -G "$root/versions/3.1[2-9]*/bin/python3" | sort -V)
    done
    return 1
}

# Print the path of a Python >= 3.12, installing Debian's python3 when nothing suitable exists.
find_python() {
    local py
    if py="$(_find_python_once)"; then
        printf '%s\n' "$py"
        return 0
    fi
    if command -v apt-get >/dev/null 2>&1 && { is_root || can_sudo; }; then
        log "no Python >= 3.12 found; trying apt-get install python3 python3-venv"
        ensure_apt_packages python3 python3-venv
        if py="$(_find_python_once)"; then
            printf '%s\n' "$py"
            return 0
        fi
    fi
    die "Python 3.12 or newer is needed (Django 6). Install it (Debian 13 / Ubuntu 24.04: apt-get install" \
        "python3 python3-venv; elsewhere pyenv install 3.12) or point PANDASTACK_PYTHON at one."
}

_pyproject_hash() { cat "${REPO_ROOT}/pyproject.toml" "${REPO_ROOT}/cli/pyproject.toml" | sha256sum | cut -d' ' -f1; }

# Create .venv (with a Python >= 3.12) when missing, and pip install -e '.[dev]' -e cli (the panda
# CLI, tested against the platform) into it whenever pyproject.toml or cli/pyproject.toml changed
# since the last install (their hash is kept in .venv/.pyproject.sha256).
ensure_venv() {
    local stamp="${VENV_DIR}/.pyproject.sha256" want have="" py
    if [[ -x "$VENV_PY" ]] && ! python_ok "$VENV_PY"; then
        die "${VENV_DIR} exists but its Python is missing or older than 3.12: remove it and run again."
    fi
    if [[ ! -x "$VENV_PY" ]]; then
        py="$(find_python)"
        log "creating ${VENV_DIR} with $("$py" -V 2>&1) ($py)"
        if ! "$py" -m venv "$VENV_DIR" >/dev/null 2>&1; then
            # Debian splits venv/ensurepip out of python3; install it and try once more.
            rm -rf "$VENV_DIR"
            local minor
            minor="$("$py" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
            if command -v apt-get >/dev/null 2>&1 && { is_root || can_sudo; }; then
                ensure_apt_packages python3-venv "python${minor}-venv"
            fi
            quietly "python -m venv" "$py" -m venv "$VENV_DIR" || die "could not create ${VENV_DIR}."
        fi
    fi
    want="$(_pyproject_hash)"
    [[ -f "$stamp" ]] && have="$(cat "$stamp")"
    if [[ "$want" != "$have" ]] || ! "$VENV_PY" -c 'import django, pytest, panda_cli' >/dev/null 2>&1; then
        log "installing dependencies into .venv (pip install -e '.[dev]' -e cli)"
        quietly "pip install --upgrade pip" "$VENV_PY" -m pip install -q --upgrade pip
        (cd "$REPO_ROOT" && quietly "pip install -e '.[dev]' -e cli" "$VENV_PY" -m pip install -q -e '.[dev]' -e cli) ||
            die "installing the project's dependencies failed (see above)."
        printf '%s\n' "$want" >"$stamp"
    fi
    export PATH="${VENV_DIR}/bin:${PATH}"
    export VIRTUAL_ENV="$VENV_DIR"
}

# --- Services -----------------------------------------------------------------------------------

# Wait up to $2 seconds (default 30) for the command (a function name) in $1 to succeed.
wait_for() {
    local check="$1" timeout="${2:-30}" i
    for ((i = 0; i < timeout * 2; i++)); do
        "$check" && return 0
        sleep 0.5
    done
    return 1
}

postgres_ready() { pg_isready -q -h 127.0.0.1 -p 5432 >/dev/null 2>&1; }
redis_ready() { [[ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" == PONG ]]; }

# Debian packages needed for PostgreSQL and Redis on 127.0.0.1: the clients always (pg_isready,
# psql, redis-cli), the servers only when nothing answers on the port and none is installed.
service_packages_needed() {
    local need=()
    if ! command -v psql >/dev/null 2>&1 || ! command -v pg_isready >/dev/null 2>&1; then
        need+=(postgresql-client)
    fi
    command -v redis-cli >/dev/null 2>&1 || need+=(redis-tools)
    if ! port_open 5432 && ! compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null; then
        need+=(postgresql)
    fi
    if ! port_open 6379 && ! command -v redis-server >/dev/null 2>&1; then
        need+=(redis-server)
    fi
    # Managed-database backups run the engines' client tools (pg_dump/pg_restore, mariadb-dump).
    command -v pg_dump >/dev/null 2>&1 || need+=(postgresql-client)
    command -v mariadb-dump >/dev/null 2>&1 || need+=(mariadb-client)
    if ! port_open 3306 && ! command -v mariadbd >/dev/null 2>&1; then
        need+=(mariadb-server)
    fi
    printf '%s\n' "${need[@]}"
}

# True when something accepts TCP connections on 127.0.0.1:<port> (no client tools needed).
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") >/dev/null 2>&1; }

# PostgreSQL on 127.0.0.1:5432: reuse a running server, else start the newest local cluster.
ensure_postgres() {
    if postgres_ready; then
        log "PostgreSQL is running on 127.0.0.1:5432"
        return 0
    fi
    local ver
    ver="$(find /etc/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null | sort -V | tail -n 1)"
    if [[ -z "$ver" ]]; then
        ver="$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null | sort -V | tail -n 1)"
        [[ -n "$ver" ]] || die "PostgreSQL is not installed (apt-get install postgresql)."
        log "creating PostgreSQL ${ver} cluster 'main'"
        quietly "pg_createcluster ${ver} main" as_root pg_createcluster "$ver" main
    fi
    log "starting PostgreSQL ${ver}/main"
    quietly "pg_ctlcluster ${ver} main start" as_root pg_ctlcluster --skip-systemctl-redirect "$ver" main start ||
        true # "already running" exits non-zero; readiness below is what counts
    if ! wait_for postgres_ready 30; then
        pg_lsclusters >&2 || true
        die "PostgreSQL did not accept connections on 127.0.0.1:5432 within 30s" \
            "(see /var/log/postgresql/postgresql-${ver}-main.log)."
    fi
}

# Redis on 127.0.0.1:6379: reuse a running server, else start one with an append-only file: it is the
# Celery broker, and a broker that forgets its queues when it restarts loses the tasks in them.
ensure_redis() {
    if redis_ready; then
        log "Redis is running on 127.0.0.1:6379"
        return 0
    fi
    local dir=/var/lib/redis logdir=/var/log/redis
    if ! is_root; then
        dir="${REPO_ROOT}/var/redis"
        logdir="${REPO_ROOT}/var/log"
    fi
    mkdir -p "$dir" "$logdir"
    log "starting redis-server on 127.0.0.1:6379"
    quietly "redis-server" redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 \
        --save "" --appendonly yes --dir "$dir" --logfile "$logdir/ci.log"
    wait_for redis_ready 30 || die "Redis did not answer on 127.0.0.1:6379 within 30s (see $logdir/ci.log)."
}

mariadb_listening() { port_open 3306; }
mariadb_ready() { mariadb --no-defaults --protocol=TCP -h 127.0.0.1 -P 3306 -u root -e 'SELECT 1' >/dev/null 2>&1; }

# MariaDB on 127.0.0.1:3306 for the managed-database tests, which connect as root without a password
# over TCP (a throwaway local server): reuse a running one, else start it; on a fresh install, let
# root in from 127.0.0.1 (Debian's root logs in through the Unix socket only).
ensure_mariadb() {
    if ! port_open 3306; then
        is_root || die "MariaDB is not running and starting it needs root."
        [[ -d /var/lib/mysql/mysql ]] ||
            quietly "mariadb-install-db" mariadb-install-db --user=mysql --datadir=/var/lib/mysql --skip-test-db
        mkdir -p /run/mysqld /var/log/mysql
        chown mysql:mysql /run/mysqld /var/log/mysql
        log "starting MariaDB on 127.0.0.1:3306"
        nohup mariadbd-safe --user=mysql --bind-address=127.0.0.1 --port=3306 --skip-name-resolve \
            >/var/log/mysql/ci-start.log 2>&1 &
        wait_for mariadb_listening 60 || die "MariaDB did not listen on 127.0.0.1:3306 within 60s (see /var/log/mysql/)."
    else
        log "MariaDB is running on 127.0.0.1:3306"
    fi
    mariadb_ready && return 0
    if is_root && mariadb --no-defaults -u root -e 'SELECT 1' >/dev/null 2>&1; then
        log "letting root into MariaDB from 127.0.0.1 without a password (tests only)"
        mariadb --no-defaults -u root -e "CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY '';
            GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;"
    fi
    mariadb_ready || die "MariaDB on 127.0.0.1:3306 refuses root without a password; the database tests need" \
        "an administrator: set PANDASTACK_TEST_MYSQL_URL=mysql://USER:PASSWORD@HOST:PORT/"
}

# The `pandastack` role (password `pandastack`, LOGIN CREATEDB) and its database, idempotently.
ensure_pg_role() {
    log "ensuring PostgreSQL role and database 'pandastack'"
    as_postgres psql -q -X -v ON_ERROR_STOP=1 -d postgres >/dev/null <<'SQL'
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'pandastack') THEN
        CREATE ROLE pandastack LOGIN CREATEDB PASSWORD 'pandastack';
    ELSE
        ALTER ROLE pandastack LOGIN CREATEDB PASSWORD 'pandastack';
    END IF;
END
$$;
SELECT 'CREATE DATABASE pandastack OWNER pandastack'
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'pandastack')\gexec
SQL
    # pytest runs with --reuse-db: a test database left behind by another role cannot be reused.
    local owner
    owner="$(as_postgres psql -X -At -d postgres -c \
        "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'test_pandastack'")"
    if [[ -n "$owner" && "$owner" != pandastack ]]; then
        warn "database test_pandastack belongs to '${owner}', not 'pandastack': pytest --reuse-db will" \
            "fail with 'permission denied'. Drop it: runuser -u postgres -- dropdb test_pandastack"
    fi
}

# --- The runtime: Docker Engine and HAProxy --------------------------------------------------------

docker_ready() { docker info >/dev/null 2>&1; }

# Debian packages for the data plane: the Docker Engine, HAProxy (the platform runs its own), the
# static busybox the tests build their tiny images from, and the distribution registry the private-
# registry tests run on loopback (tests/support/registry_fixtures.py).
runtime_packages_needed() {
    local need=()
    command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
    command -v haproxy >/dev/null 2>&1 || need+=(haproxy)
    pkg_installed busybox-static || need+=(busybox-static)
    [[ -x /usr/bin/docker-registry ]] || need+=(docker-registry)
    printf '%s\n' "${need[@]}"
}

# The Docker Engine: reuse a running one, else start dockerd in the background (no systemd here).
# Either way with live-restore on (below).
ensure_docker() {
    if docker_ready; then
        log "Docker Engine is running"
        ensure_docker_live_restore
        return 0
    fi
    is_root || die "the Docker Engine is not running and starting dockerd needs root (sudo dockerd &)."
    write_docker_live_restore_config
    local logdir=/var/log
    log "starting dockerd with live-restore (log: ${logdir}/dockerd.log)"
    nohup dockerd >"${logdir}/dockerd.log" 2>&1 &
    wait_for docker_ready 60 || die "dockerd did not come up within 60s (see ${logdir}/dockerd.log)."
}

# live-restore: containers keep running while dockerd itself stops and starts (an upgrade, a crash, a
# restart), so the apps keep serving through the router meanwhile; without it every container stops
# with the engine and the reconciler has to start them all again. Production engines should set it
# too (docs/outages.md).
DOCKER_DAEMON_JSON="${DOCKER_DAEMON_JSON:-/etc/docker/daemon.json}"

docker_live_restore_enabled() { [[ "$(docker info --format '{{.LiveRestoreEnabled}}' 2>/dev/null)" == true ]]; }

# Put "live-restore": true into daemon.json, keeping whatever else it says.
write_docker_live_restore_config() {
    local py
    py="$(command -v python3)" || die "python3 is needed to edit ${DOCKER_DAEMON_JSON}."
    as_root "$py" - "$DOCKER_DAEMON_JSON" <<'PY'
import json
import os
import sys

path = sys.argv[1]
try:
    with open(path) as fh:
        config = json.loads(fh.read() or "{}")
except FileNotFoundError:
    config = {}
if config.get("live-restore") is not True:
    config["live-restore"] = True
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp", "w") as fh:
        json.dump(config, fh, indent=2)
        fh.write("\n")
    os.replace(path + ".tmp", path)
PY
}

# A running engine without live-restore gets it by a configuration reload (SIGHUP: live-restore is one of
# the options dockerd reloads), which stops no container. Without root, or when the reload is refused,
# only a warning: the engine works, it just stops its containers when it restarts.
ensure_docker_live_restore() {
    docker_live_restore_enabled && return 0
    local pid
    pid="$(cat /var/run/docker.pid 2>/dev/null || true)"
    if ! { is_root || can_sudo; } || [[ -z "$pid" ]]; then
        warn "the Docker Engine runs without live-restore: its containers (the apps) stop whenever dockerd" \
            "restarts. Set \"live-restore\": true in ${DOCKER_DAEMON_JSON} and reload it (kill -HUP dockerd)."
        return 0
    fi
    log "turning on live-restore in ${DOCKER_DAEMON_JSON} and reloading dockerd (no container stops)"
    write_docker_live_restore_config
    as_root kill -HUP "$pid"
    wait_for docker_live_restore_enabled 10 ||
        warn "dockerd did not take live-restore from ${DOCKER_DAEMON_JSON} (see /var/log/dockerd.log)."
}
