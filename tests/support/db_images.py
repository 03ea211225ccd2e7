"""Database server images for tests that run dedicated databases on the real Docker Engine, built
locally (no registry is reachable) from the binaries Debian installed on this machine.

``build_redis_image()`` makes an image ``FROM scratch`` holding Debian's ``redis-server`` and
``redis-cli``, every shared library ``ldd`` lists for them (and the dynamic loader), and the static
busybox for ``/bin/sh`` and ``grep`` — what the health check of a dedicated Redis runs, as it does in
the official ``redis`` image. It is a stand-in for ``redis:<version>`` taking the same command line.

Like ``tests.support.images``, it builds only when the tag is missing or was built from different
contents (a content hash is kept in an image label), so a session pays for a build at most once.
"""

from __future__ import annotations

import functools
import hashlib
import io
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

import docker.errors

from tests.support.images import CONTENT_LABEL, ImageBuildError, _add, _client, busybox_path

REDIS_TAG = "pandastack-test/redis:debian"
REDIS_BINARIES = ("redis-server", "redis-cli")

DOCKERFILE = """\
FROM scratch
COPY rootfs/ /
RUN ["/bin/busybox", "--install", "-s", "/bin"]
WORKDIR /data
CMD ["redis-server"]
LABEL {label}="{content}"
"""

# "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)" and the loader "/lib64/ld-linux-x86-64.so.2 (0x…)";
# "linux-vdso.so.1 (0x…)" is the kernel's and has no file.
_LDD_LINE = re.compile(r"^\s*(?:\S+\s+=>\s+)?(/\S+)\s+\(0x[0-9a-f]+\)\s*$")


def binary_path(name: str) -> Path:
    found = shutil.which(name)
    if found is None:
        raise ImageBuildError(f"{name} not found on this machine: apt-get install redis-server redis-tools")
    return Path(found)


def shared_libraries(binary: Path) -> list[Path]:
    """The files the dynamic loader maps for ``binary``, as ``ldd`` names them (the loader included)."""
    try:
        output = subprocess.run(["ldd", str(binary)], check=True, capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        raise ImageBuildError(f"ldd {binary} failed: {exc}") from exc
    libraries = []
    for line in output.splitlines():
        if "not found" in line:
            raise ImageBuildError(f"{binary} needs a library this machine lacks: {line.strip()}")
        if match := _LDD_LINE.match(line):
            libraries.append(Path(match.group(1)))
    if not libraries:
        raise ImageBuildError(f"ldd found no libraries for {binary}: is it statically linked? ({output.strip()})")
    return libraries


def build_redis_image(tag: str = REDIS_TAG) -> str:
    """Debian's Redis in a scratch image (with busybox's sh and grep); returns ``tag``."""
    files: dict[str, Path] = {"bin/busybox": busybox_path()}
    for name in REDIS_BINARIES:
        binary = binary_path(name)
        # Debian's redis-server is a symlink to redis-check-rdb, which picks its role from argv[0]:
        # the real file goes in under the name it is run by.
        files[f"usr/bin/{name}"] = binary.resolve()
        for library in shared_libraries(binary):
            files[str(library).lstrip("/")] = library.resolve()
    return _build(tag, tuple(sorted(files.items())))


@functools.cache
def _build(tag: str, files: tuple[tuple[str, Path], ...]) -> str:
    digest = hashlib.sha256(DOCKERFILE.encode())
    for arcname, source in files:
        digest.update(arcname.encode() + b"\0" + source.read_bytes())
    content = digest.hexdigest()[:16]
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
        for arcname, source in files:
            # Regular files under the paths ldd printed (the loader finds them there; no symlinks to follow).
            tar.add(source, arcname=f"rootfs/{arcname}")
    context.seek(0)
    try:
        client.images.build(fileobj=context, custom_context=True, tag=tag, rm=True, forcerm=True, pull=False)
    except docker.errors.BuildError as exc:
        log = "".join(str(chunk.get("stream", chunk.get("error", ""))) for chunk in exc.build_log)
        raise ImageBuildError(f"building {tag} failed: {exc}\n{log}") from exc
    return tag
