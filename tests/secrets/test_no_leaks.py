"""Values never appear in logs: with every logger at DEBUG (SQL included) and stdout/stderr
captured, setting, listing, revealing (allowed and refused), error responses and redeploys leave no
trace of a value anywhere in the output."""

import logging
from collections.abc import Iterator

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.conftest import assert_error
from tests.secrets.conftest import LEVEL_URLS

SENTINELS = {
    "team_plain": "leak-team-plain-4f8e21",
    "team_secret": "leak-team-secret-9c0b7d",
    "project_secret": "leak-project-secret-2a6c55",
    "app_secret": "leak-app-secret-e1d3f0",
    "app_plain": "leak-app-plain-77b9aa",
    "rejected_secret": "leak-rejected-secret-5e5e5e",
    "conflict_plain": "leak-conflict-plain-0d0d0d",
    "too_long": "leak-too-long-" + "z" * (32 * 1024),
}
CONTROL = "control-line-that-must-be-captured-31337"


@pytest.fixture
def everything_logged(caplog, monkeypatch) -> Iterator[CaptureQueriesContext]:
    """Every logger at DEBUG and propagating to the capture, and the SQL logged too."""
    caplog.set_level(logging.DEBUG)
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger):
            caplog.set_level(logging.DEBUG, logger=name)
            monkeypatch.setattr(logger, "propagate", True)
    # Forces the debug cursor: django.db.backends logs every statement with its parameters.
    with CaptureQueriesContext(connection) as queries:
        yield queries


def test_no_value_reaches_any_log_stdout_stderr_or_sql(team_a, client_for, app, everything_logged, caplog, capsys):
    owner = client_for(team_a, "owner")
    developer = client_for(team_a, "developer")
    s = SENTINELS

    def ok(response):
        assert response.status_code == 200, response.json()
        return response

    # set (the app is live: the team- and app-level changes queue redeploys)
    ok(owner.post(LEVEL_URLS["team"], {"variables": {"TEAM_PLAIN": s["team_plain"]}}, format="json"))
    ok(owner.post(LEVEL_URLS["team"], {"variables": {"TEAM_SECRET": s["team_secret"]}, "secret": True}, format="json"))
    ok(
        developer.post(
            LEVEL_URLS["project"],
            {"variables": {"PROJECT_SECRET": s["project_secret"]}, "secret": True, "restart": False},
            format="json",
        )
    )
    body = {"variables": {"APP_SECRET": s["app_secret"], "APP_PLAIN": s["app_plain"]}, "secret": True}
    ok(owner.post(LEVEL_URLS["app"], body, format="json"))
    # list, merged view, history
    for url in (*LEVEL_URLS.values(), f"{LEVEL_URLS['app']}?effective=1", f"{LEVEL_URLS['app']}APP_SECRET/versions/"):
        ok(client_for(team_a, "viewer").get(url))
    # reveal: refused, then allowed (the value goes to the caller, and nowhere else)
    assert_error(developer.post(f"{LEVEL_URLS['team']}TEAM_SECRET/reveal/"), 403, "permission_denied")
    assert ok(owner.post(f"{LEVEL_URLS['app']}APP_SECRET/reveal/")).json()["value"] == s["app_secret"]
    # error responses: an invalid name next to a valid secret, a secret made plain, a value too long
    errors = [
        owner.post(
            LEVEL_URLS["team"],
            {"variables": {"GOOD_NAME": s["rejected_secret"], "BAD-NAME": s["rejected_secret"]}, "secret": True},
            format="json",
        ),
        owner.post(LEVEL_URLS["team"], {"variables": {"TEAM_SECRET": s["conflict_plain"]}}, format="json"),
        owner.post(LEVEL_URLS["team"], {"variables": {"LONG": s["too_long"]}, "secret": True}, format="json"),
        owner.post(f"{LEVEL_URLS['team']}unset/", {"names": ["NOT_THERE"]}, format="json"),
    ]
    assert [e.status_code for e in errors] == [400, 409, 400, 400]
    for response in errors:
        assert_error(response, response.status_code)
        assert not [name for name, value in s.items() if value in response.content.decode()]
    # unset (queues a redeploy again)
    ok(owner.post(f"{LEVEL_URLS['app']}unset/", {"names": ["APP_PLAIN"]}, format="json"))

    logging.getLogger("apps.secrets").debug("%s", CONTROL)  # proves DEBUG lines of our code are captured
    out, err = capsys.readouterr()
    records = caplog.records
    logged = "\n".join(
        [caplog.text, out, err]
        + [f"{r.getMessage()} {r.args!r} {r.__dict__!r}" for r in records]
        + [q["sql"] for q in everything_logged.captured_queries]
    )
    assert CONTROL in logged
    assert any(r.name == "django.db.backends" for r in records), "SQL statements were not captured"
    assert any(r.name == "django.request" for r in records), "the 4xx responses were not logged"
    assert len(everything_logged.captured_queries) > 50
    leaked = [name for name, value in s.items() if value in logged or value[:20] in logged]
    assert leaked == []
