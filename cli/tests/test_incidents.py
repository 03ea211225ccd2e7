"""panda incidents list|show|ack|resolve|postmortem: what each command sends, what it prints, --json,
usage errors (exit 2, and no request) and API errors.

The API is faked with httpx.MockTransport: allowed here because these tests check the CLI's own
request and response handling; end-to-end tests against the real server are separate.
"""

import json

import pytest
from conftest import api_error, page, reply

INCIDENTS = "/api/v1/teams/acme/incidents/"
I3 = INCIDENTS + "3/"


def incident_json(number=3, **overrides):
    data = {
        "number": number,
        "title": "web: error_rate above 5",
        "project": "shop",
        "severity": "critical",
        "status": "open",
        "created_at": "2025-01-31T12:00:00Z",
        "acknowledged_at": None,
        "acknowledged_by": "",
        "resolved_at": None,
        "resolved_by": "",
        "postmortem": "",
        "alerts": [
            {"rule": "high-errors", "value": 7.456, "fired_at": "2025-01-31T12:00:00Z", "resolved_at": None},
        ],
    }
    data.update(overrides)
    return data


def event_json(event_id, kind, message, **overrides):
    data = {
        "id": event_id,
        "kind": kind,
        "severity": "error",
        "subject_type": "app",
        "subject_id": 7,
        "subject_label": "web",
        "message": message,
        "data": {},
        "created_at": "2025-01-31T11:58:00Z",
    }
    data.update(overrides)
    return data


TIMELINE = [
    event_json(40, "deployment.live", "Deployment #12 is live", severity="info"),
    event_json(41, "alert.fired", "high-errors fired: error_rate 7.46 > 5"),
]


@pytest.fixture(autouse=True)
def _ci(ci_env):
    pass


# -- list --------------------------------------------------------------------------------------


def test_list_shows_incidents_newest_first(run, api):
    resolved = incident_json(2, status="resolved", resolved_at="2025-01-30T10:00:00Z", resolved_by="auto")
    api.on("GET", INCIDENTS, page([incident_json()], next_url=INCIDENTS + "?cursor=2"), page([resolved]))

    result = run("incidents", "list")

    assert result.exit_code == 0, result.stderr
    header, first, second = result.stdout.splitlines()
    assert header.split() == ["NUMBER", "STATUS", "SEVERITY", "PROJECT", "OPENED", "RESOLVED", "TITLE"]
    assert first.split()[:4] == ["3", "open", "critical", "shop"]
    assert first.endswith("web: error_rate above 5")
    assert second.split()[:2] == ["2", "resolved"]
    assert "status" not in api.requests[0].url.params


def test_list_by_status_json(run, api):
    api.on("GET", INCIDENTS, page([incident_json()]))
    result = run("incidents", "list", "--status", "open", "--json")
    assert result.exit_code == 0, result.stderr
    assert api.requests[0].url.params["status"] == "open"
    assert json.loads(result.stdout) == [incident_json()]


def test_list_stops_asking_for_pages_once_it_has_n(run, api):
    api.on(
        "GET",
        INCIDENTS,
        page([incident_json(9), incident_json(8)], next_url=INCIDENTS + "?cursor=2"),
        page([incident_json(7), incident_json(6)], next_url=INCIDENTS + "?cursor=3"),
    )
    result = run("incidents", "list", "-n", "3", "--json")
    assert [incident["number"] for incident in json.loads(result.stdout)] == [9, 8, 7]
    assert len(api.requests) == 2


def test_list_empty(run, api):
    api.on("GET", INCIDENTS, page([]))
    result = run("incidents", "list", "--status", "acknowledged")
    assert result.exit_code == 0
    assert result.stdout == ""
    assert "No acknowledged incidents in team acme." in result.stderr


def test_list_rejects_an_unknown_status_without_a_request(run, api):
    result = run("incidents", "list", "--status", "closed")
    assert result.exit_code == 2
    assert api.requests == []


# -- show --------------------------------------------------------------------------------------


def test_show_prints_the_incident_its_alerts_timeline_and_postmortem(run, api):
    acknowledged = incident_json(
        status="acknowledged",
        acknowledged_at="2025-01-31T12:03:00Z",
        acknowledged_by="alice",
        postmortem="# What happened\n\nA bad deploy.\n",
    )
    api.on("GET", I3, reply(200, acknowledged))
    api.on("GET", I3 + "timeline/", page(TIMELINE[:1], next_url=I3 + "timeline/?cursor=2"), page(TIMELINE[1:]))

    result = run("incidents", "show", "3")

    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert "Incident:     #3 web: error_rate above 5" in out
    assert "Status:       acknowledged" in out
    assert "Acknowledged: 2025-" in out
    assert "by alice" in out
    assert "Resolved:     -" in out
    lines = out.splitlines()
    alerts = lines.index("Alerts:")
    assert lines[alerts + 1].split() == ["RULE", "VALUE", "FIRED", "RESOLVED"]
    assert lines[alerts + 2].split()[:2] == ["high-errors", "7.46"]
    timeline = lines.index("Timeline:")
    assert lines[timeline + 1].split() == ["TIME", "SEVERITY", "KIND", "SUBJECT", "MESSAGE"]
    assert "deployment.live" in lines[timeline + 2]
    assert lines[timeline + 3].endswith("high-errors fired: error_rate 7.46 > 5")
    assert lines[lines.index("Post-mortem:") + 1 :] == ["# What happened", "", "A bad deploy."]


def test_show_without_timeline_or_postmortem(run, api):
    api.on("GET", I3, reply(200, incident_json(alerts=[])))
    api.on("GET", I3 + "timeline/", page([]))
    result = run("incidents", "show", "3")
    assert result.exit_code == 0, result.stderr
    assert "Alerts:" not in result.stdout
    assert "(no events)" in result.stdout
    assert "panda incidents postmortem 3 --file" in result.stdout


def test_show_json_includes_the_timeline(run, api):
    api.on("GET", I3, reply(200, incident_json()))
    api.on("GET", I3 + "timeline/", page(TIMELINE))
    result = run("incidents", "show", "3", "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == {**incident_json(), "timeline": TIMELINE}


def test_show_an_unknown_incident(run, api):
    api.on("GET", INCIDENTS + "99/", api_error(404, "not_found", "Not found."))
    result = run("incidents", "show", "99")
    assert result.exit_code == 1
    assert "Not found. (not_found)" in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("number", ["0", "three", "-1"])
def test_show_needs_a_positive_number(run, api, number):
    assert run("incidents", "show", number).exit_code == 2
    assert api.requests == []


# -- ack, resolve ------------------------------------------------------------------------------


def test_ack(run, api):
    api.on("POST", I3 + "acknowledge/", reply(200, incident_json(status="acknowledged")))
    result = run("incidents", "ack", "3")
    assert result.exit_code == 0, result.stderr
    assert api.body(api.requests[0]) == {}
    assert "Acknowledged incident #3: web: error_rate above 5." in result.stderr
    assert result.stdout == ""


def test_resolve_json(run, api):
    api.on("POST", I3 + "resolve/", reply(200, incident_json(status="resolved")))
    result = run("incidents", "resolve", "3", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["status"] == "resolved"
    assert "Resolved incident #3" in result.stderr


def test_resolve_an_already_resolved_incident_is_an_api_error(run, api):
    api.on("POST", I3 + "resolve/", api_error(409, "conflict", "Incident #3 is already resolved."))
    result = run("incidents", "resolve", "3")
    assert result.exit_code == 1
    assert "error: Incident #3 is already resolved. (conflict)" in result.stderr


# -- postmortem --------------------------------------------------------------------------------


def test_postmortem_from_a_file(run, api, tmp_path):
    text = "# Incident 3\n\nRoot cause: a bad deploy — rolled back.\n"
    path = tmp_path / "pm.md"
    path.write_text(text, encoding="utf-8")
    api.on("PATCH", I3, reply(200, incident_json(postmortem=text)))

    result = run("incidents", "postmortem", "3", "--file", str(path))

    assert result.exit_code == 0, result.stderr
    assert api.body(api.requests[0]) == {"postmortem": text}
    assert "Saved the post-mortem of incident #3." in result.stderr


def test_postmortem_from_stdin_and_from_text(run, api):
    api.on("PATCH", I3, reply(200, incident_json(postmortem="x")))
    assert run("incidents", "postmortem", "3", "--file", "-", input="from stdin\n").exit_code == 0
    assert api.body(api.requests[0]) == {"postmortem": "from stdin\n"}
    result = run("incidents", "postmortem", "3", "--text", "", "--json")
    assert result.exit_code == 0
    assert api.body(api.requests[1]) == {"postmortem": ""}
    assert "Removed the post-mortem of incident #3." in result.stderr
    assert json.loads(result.stdout)["number"] == 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "give --file or --text (exactly one)"),
        (["--file", "a.md", "--text", "x"], "give --file or --text (exactly one)"),
        (["--file", "/nonexistent/pm.md"], "cannot read /nonexistent/pm.md"),
    ],
)
def test_postmortem_usage_errors_exit_2_without_a_request(run, api, args, message):
    result = run("incidents", "postmortem", "3", *args)
    assert result.exit_code == 2
    assert message in result.stderr
    assert api.requests == []


def test_postmortem_of_a_file_that_is_not_text(run, api, tmp_path):
    path = tmp_path / "pm.bin"
    path.write_bytes(b"\xff\xfe\x00bad")
    result = run("incidents", "postmortem", "3", "--file", str(path))
    assert result.exit_code == 2
    assert "is not UTF-8 text" in result.stderr
    assert api.requests == []


def test_postmortem_refused_by_the_api(run, api):
    api.on("PATCH", I3, api_error(403, "permission_denied", "You may not edit incidents."))
    result = run("incidents", "postmortem", "3", "--text", "x")
    assert result.exit_code == 1
    assert "You may not edit incidents. (permission_denied)" in result.stderr
