"""Tiny container images for tests that run the real Docker Engine, built locally (no registry is
reachable) from Debian's static busybox on top of ``scratch``.

Each builder returns the tag and builds only when the tag is missing or was built from different
contents (a content hash is kept in an image label), so a test session pays for a build at most once
and a stale image from an older version of this file is never used.

The images:
- web: prints ``starting <version> on port $PORT``, serves ``/`` (``<version> <hostname>``, the
  hostname being the container id, so tests can tell replicas apart) and ``/healthz`` with
  ``httpd -f -v`` on ``$PORT`` (default 8080); httpd logs each request on stderr. It exits 0 at once
  on SIGTERM, printing ``stopping <version>``. CGI scripts for monitoring tests: ``/cgi-bin/fail``
  answers 500; ``/cgi-bin/health`` answers 200 ``ok``, or 503 after ``/cgi-bin/down`` until
  ``/cgi-bin/up`` (per container).
- broken: prints two lines on stderr and exits 1 — it never passes a health check.
- slow: like web, but listens only after ``$SLOW_START_SECONDS`` seconds (default 5).
"""

from __future__ import annotations

import functools
import hashlib
import io
import struct
import tarfile
from pathlib import Path

import docker
import docker.errors

BUSYBOX_CANDIDATES = (Path("/bin/busybox"), Path("/usr/bin/busybox"))
# Not an io.pandastack.* label: containers inherit their image's labels.
CONTENT_LABEL = "pandastack-test.content"

DOCKERFILE = """\
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
COPY start.sh /start.sh
CMD ["/bin/sh", "/start.sh"]
LABEL {label}="{content}"
"""

# httpd as PID 1 would ignore SIGTERM (the kernel gives PID 1 no default handlers) and every
# `docker stop` would wait for its timeout; the shell stays PID 1, runs children in the background
# and waits for them, so that a trapped signal interrupts the wait at once.
WEB_SCRIPT = """\
PORT="${{PORT:-8080}}"
pid=""
trap 'echo "stopping {version}"; [ -n "$pid" ] && kill -TERM $pid; exit 0' TERM INT
{delay}echo "starting {version} on port $PORT"
mkdir -p /www
echo "{version} $(hostname)" > /www/index.html
echo ok > /www/healthz
mkdir -p /www/cgi-bin /tmp
cat > /www/cgi-bin/fail <<'CGI'
#!/bin/sh
printf 'Status: 500 Internal Server Error\\r\\nContent-Type: text/plain\\r\\n\\r\\nboom\\n'
CGI
cat > /www/cgi-bin/health <<'CGI'
#!/bin/sh
if [ -e /tmp/down ]; then printf 'Status: 503 Unavailable\\r\\n\\r\\ndown\\n'; exit 0; fi
printf 'Content-Type: text/plain\\r\\n\\r\\nok\\n'
CGI
cat > /www/cgi-bin/down <<'CGI'
#!/bin/sh
touch /tmp/down
printf 'Content-Type: text/plain\\r\\n\\r\\ndown\\n'
CGI
cat > /www/cgi-bin/up <<'CGI'
#!/bin/sh
rm -f /tmp/down
printf 'Content-Type: text/plain\\r\\n\\r\\nup\\n'
CGI
chmod 755 /www/cgi-bin/*
httpd -f -v -p "$PORT" -h /www &
pid=$!
wait $pid
"""

SLOW_DELAY = """\
echo "slow start: waiting ${SLOW_START_SECONDS:-5}s before listening"
sleep "${SLOW_START_SECONDS:-5}" &
pid=$!
wait $pid
"""

BROKEN_SCRIPT = """\
echo "booting broken build" >&2
echo "fatal: missing DATABASE_URL" >&2
exit 1
"""


class ImageBuildError(RuntimeError):
    pass


def busybox_path() -> Path:
    """Debian's static busybox; a dynamically linked one cannot run in a ``FROM scratch`` image."""
    for candidate in BUSYBOX_CANDIDATES:
        if candidate.is_file():
            if not _is_static_elf(candidate):
                raise ImageBuildError(
                    f"{candidate} is dynamically linked and cannot run in a scratch image: "
                    "apt-get install busybox-static"
                )
            return candidate
    raise ImageBuildError("busybox not found in /bin or /usr/bin: apt-get install busybox-static")


def _is_static_elf(path: Path) -> bool:
    # A dynamically linked executable names its loader in a PT_INTERP program header.
    with path.open("rb") as f:
        header = f.read(64)
        if header[:4] != b"\x7fELF":
            return False
        is_64 = header[4] == 2
        endian = "<" if header[5] == 1 else ">"
        if is_64:
            phoff, phentsize, phnum = struct.unpack_from(endian + "32xQ14xHH", header)
        else:
            phoff, phentsize, phnum = struct.unpack_from(endian + "28xI10xHH", header)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    pt_interp = 3
    return all(struct.unpack_from(endian + "I", table, i * phentsize)[0] != pt_interp for i in range(phnum))


def build_web_image(tag: str = "pandastack-test/web:v1", *, version: str = "v1") -> str:
    """An HTTP server answering ``<version> <hostname>`` on ``/`` and ``ok`` on ``/healthz``."""
    return _build(tag, WEB_SCRIPT.format(delay="", version=version))


def build_slow_image(tag: str = "pandastack-test/slow:v1", *, version: str = "v1") -> str:
    """Like the web image, but it listens only after ``$SLOW_START_SECONDS`` (default 5)."""
    return _build(tag, WEB_SCRIPT.format(delay=SLOW_DELAY, version=version))


def build_broken_image(tag: str = "pandastack-test/broken:v1") -> str:
    """Exits 1 at once after printing ``booting broken build`` and ``fatal: missing DATABASE_URL``."""
    return _build(tag, BROKEN_SCRIPT)


@functools.cache
def _client() -> docker.DockerClient:
    return docker.from_env(timeout=120)


# Cached per process: a session asks the engine once per tag and contents.
@functools.cache
def _build(tag: str, script: str) -> str:
    busybox = busybox_path()
    content = hashlib.sha256(busybox.read_bytes() + script.encode()).hexdigest()[:16]
    client = _client()
    try:
        existing = client.images.get(tag)
    except docker.errors.ImageNotFound:
        existing = None
    if existing is not None and (existing.labels or {}).get(CONTENT_LABEL) == content:
        return tag

    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        _add(tar, "Dockerfile", DOCKERFILE.format(label=CONTENT_LABEL, content=content).encode())
        _add(tar, "start.sh", script.encode(), mode=0o755)
        tar.add(busybox.resolve(), arcname="busybox")
    context.seek(0)
    try:
        # The SDK's /build call uses the legacy builder, which is all a scratch image needs.
        client.images.build(fileobj=context, custom_context=True, tag=tag, rm=True, forcerm=True, pull=False)
    except docker.errors.BuildError as exc:
        log = "".join(str(chunk.get("stream", chunk.get("error", ""))) for chunk in exc.build_log)
        raise ImageBuildError(f"building {tag} failed: {exc}\n{log}") from exc
    return tag


def _add(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    tar.addfile(info, io.BytesIO(data))
