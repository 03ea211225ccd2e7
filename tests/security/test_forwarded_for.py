"""Headers at the edge. X-Forwarded-For through the real HAProxy router: an app must see the address the connection came
from, not whatever a client wrote into its own X-Forwarded-For (or Forwarded / X-Real-IP) header.
Before the fix HAProxy's `option forwardfor` appended the real address to the client's header, so an
app that read the first entry (most frameworks do) believed the client was 6.6.6.6.

And HSTS: apps are served over plain HTTP on subdomains of the apps domain, so production settings
must not send `includeSubDomains`/`preload` by default (a browser that saw them on the platform's
domain would refuse every app under it), while `check --deploy` stays clean."""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from apps.runtime.router import Backend, HAProxyRouter, Server
from tests.runtime.test_router import free_port, router  # noqa: F401  (the real-HAProxy fixture)

HOST = "web.alpha.localhost"


class RecordingApp:
    """A backend on the host that records the headers of every request it receives."""

    def __init__(self) -> None:
        self.requests: list[dict[str, list[str]]] = []
        app = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                headers: dict[str, list[str]] = {}
                for name, value in self.headers.items():
                    headers.setdefault(name.lower(), []).append(value)
                app.requests.append(headers)
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def app() -> Iterator[RecordingApp]:
    recording = RecordingApp()
    yield recording
    recording.close()


def test_app_sees_only_the_real_client_address(router: HAProxyRouter, app: RecordingApp) -> None:  # noqa: F811
    router.apply_config([Backend(name="app_1", hosts=(HOST,), servers=(Server("web1", "127.0.0.1", app.port),))])

    conn = http.client.HTTPConnection("127.0.0.1", router.http_port, timeout=5)
    try:
        conn.request(
            "GET",
            "/",
            headers={
                "Host": HOST,
                "X-Forwarded-For": "6.6.6.6",
                "X-Real-IP": "6.6.6.6",
                "Forwarded": "for=6.6.6.6",
            },
        )
        response = conn.getresponse()
        assert response.status == 200, response.read()
        response.read()
    finally:
        conn.close()

    assert len(app.requests) == 1
    seen = app.requests[0]
    # The connection came from 127.0.0.1: that, and only that, is the client's address.
    assert seen.get("x-forwarded-for") == ["127.0.0.1"], seen
    assert "x-real-ip" not in seen, seen
    assert "forwarded" not in seen, seen
    assert "6.6.6.6" not in repr(seen)


def _production(code: str, **env: str) -> subprocess.CompletedProcess:
    from django.conf import settings

    environment = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "pandastack.settings.production",
        "DJANGO_SECRET_KEY": "k" * 20 + "-Not-A-Real-Secret-For-The-Check-0123456789",
        "DJANGO_ALLOWED_HOSTS": "example.com",
        "PANDASTACK_SECRET_KEYS": "3cK39bdHjGef-eVP4uODNhRieCuiO-M5fSoq18SGUrU=",
        # The server's maintenance database: it always exists (nothing here writes to it).
        "DATABASE_URL": os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres").rsplit("/", 1)[0]
        + "/postgres",
        **env,
    }
    return subprocess.run(
        [sys.executable, "-c", code], cwd=settings.BASE_DIR, env=environment, capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip


HSTS_HEADER = """
import django
django.setup()
from django.test import Client
response = Client().get("/healthz", secure=True, HTTP_HOST="example.com")
print(response.status_code, response.headers.get("Strict-Transport-Security"))
"""
DEPLOY_CHECK = """
import sys
from django.core.management import execute_from_command_line
execute_from_command_line(["manage.py", "check", "--deploy", "--fail-level", "WARNING"])
"""


def test_hsts_leaves_subdomains_alone_by_default_and_check_deploy_passes() -> None:
    header = _production(HSTS_HEADER)
    assert header.returncode == 0, header.stderr
    assert header.stdout.split(None, 1) == ["200", "max-age=31536000\n"], header.stdout
    check = _production(DEPLOY_CHECK)
    assert check.returncode == 0, check.stdout + check.stderr
    # An operator whose every subdomain is on HTTPS can still turn both on.
    opted_in = _production(
        HSTS_HEADER, DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS="true", DJANGO_SECURE_HSTS_PRELOAD="true"
    )
    assert "includeSubDomains; preload" in opted_in.stdout, opted_in.stdout + opted_in.stderr
