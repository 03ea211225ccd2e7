"""The alert rules and incidents API: the JSON shapes, references by name, who may read and who may
change, bad input (the standard error shape, nothing written), and the incident actions and
timeline."""

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.alerts.evaluation import evaluate_rules
from apps.alerts.models import AlertRule, Incident
from apps.audit.models import AuditEvent
from apps.deployments.models import App
from apps.events.models import PlatformEvent
from apps.teams.models import Project
from tests.alerts.conftest import AlertWorld
from tests.conftest import assert_error

RULES = "/api/v1/teams/alpha/alert-rules/"
INCIDENTS = "/api/v1/teams/alpha/incidents/"
ERRORS_RULE = {
    "name": "errors",
    "scope": "app",
    "app": "api",
    "metric": "error_rate",
    "operator": "gt",
    "threshold": 5,
    "window_seconds": 120,
    "for_seconds": 30,
    "severity": "critical",
    "channels": ["ops", "mail"],
}


DROP = object()  # a key left out of a body


def fire(aw: AlertWorld) -> Incident:
    """The rule "errors" (error rate > 5 on "api") fires: incident #1."""
    aw.rule()
    now = timezone.now()
    aw.traffic(now - timedelta(seconds=30), errors=50)
    evaluate_rules(now=now)
    return Incident.objects.get()


# --- rules --------------------------------------------------------------------------------------------
def test_create_get_list_update_and_delete_a_rule(aw: AlertWorld, client_for):
    client = client_for(aw.world, "developer")
    response = client.post(RULES, ERRORS_RULE, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body == {
        **ERRORS_RULE,
        "threshold": 5.0,
        "project": "web",
        "cron_job": None,
        "database": None,
        "event_kind": "",
        "enabled": True,
        "state": "ok",
        "state_since": body["state_since"],
        "last_value": None,
        "last_evaluated_at": None,
        "created_at": body["created_at"],
    }
    assert client.get(f"{RULES}errors/").json() == body
    assert [r["name"] for r in client.get(RULES).json()["results"]] == ["errors"]

    response = client.patch(f"{RULES}errors/", {"threshold": 10, "channels": ["ops"], "enabled": False}, format="json")
    assert response.status_code == 200, response.json()
    assert (response.json()["threshold"], response.json()["channels"], response.json()["enabled"]) == (
        10.0,
        ["ops"],
        False,
    )

    assert_error(client.delete(f"{RULES}errors/", {"confirm": "ERRORS"}, format="json"), 400, "invalid")
    assert client.delete(f"{RULES}errors/", {"confirm": "errors"}, format="json").status_code == 204
    assert_error(client.get(f"{RULES}errors/"), 404, "not_found")
    assert list(
        AuditEvent.objects.filter(action__startswith="alert_rule.").order_by("id").values_list("action", flat=True)
    ) == [
        "alert_rule.create",
        "alert_rule.update",
        "alert_rule.delete",
    ]


def test_cron_job_and_project_rules_by_name(aw: AlertWorld, client_for):
    client = client_for(aw.world, "owner")
    body = {
        "scope": "cron_job",
        "cron_job": "nightly",
        "metric": "event",
        "event_kind": "cron.run_failed",
        "threshold": 0,
    }
    created = client.post(RULES, {"name": "nightly-fails", **body}, format="json").json()
    assert (created["cron_job"], created["app"], created["project"], created["operator"]) == (
        "nightly",
        None,
        "web",
        "gt",
    )
    body = {"scope": "project", "project": "web", "metric": "event", "event_kind": "deployment.failed", "threshold": 0}
    created = client.post(RULES, {"name": "deploys", **body}, format="json").json()
    assert (created["project"], created["app"], created["cron_job"]) == ("web", None, None)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"app": "nope"}, "app"),
        ({"channels": ["ops", "nope"]}, "channels"),
        ({"app": DROP}, "app"),
        ({"scope": "cron_job"}, "app"),  # an app is for scope app only
        ({"scope": "cron_job", "app": DROP, "cron_job": "nope"}, "cron_job"),
        ({"scope": "cron_job", "app": DROP, "cron_job": "nightly"}, "metric"),
        (
            {"scope": "project", "app": DROP, "project": "nope", "metric": "event", "event_kind": "cron.run_failed"},
            "project",
        ),
        ({"scope": "project", "app": DROP, "project": "web"}, "metric"),
        ({"app": None}, "app"),
        ({"app": 7}, "app"),
        ({"scope": "galaxy"}, "scope"),
        ({"severity": "loud"}, "severity"),
        ({"operator": "=="}, "operator"),
        ({"enabled": "maybe"}, "enabled"),
        ({"channels": "ops"}, "channels"),
        ({"metric": "event"}, "event_kind"),
        ({"metric": "event", "event_kind": "cron.exploded"}, "event_kind"),
        ({"threshold": "5"}, "threshold"),
        ({"threshold": True}, "threshold"),
        ({"threshold": None}, "threshold"),
        ({"window_seconds": 5}, "window_seconds"),
        ({"window_seconds": 125}, "window_seconds"),  # a metric window is whole 10-second buckets
        ({"window_seconds": 86400}, "window_seconds"),  # longer than raw metrics are kept
        ({"for_seconds": 90000}, "for_seconds"),
        ({"name": "errors"}, "name"),  # taken
        ({"name": "Bad Name"}, "name"),
    ],
)
def test_bad_rules_are_400_with_the_field_named_and_nothing_written(aw: AlertWorld, client_for, body, field):
    aw.rule("errors", metric="requests", threshold=1)  # so "errors" is taken
    client = client_for(aw.world, "owner")
    before = (AlertRule.objects.count(), AuditEvent.objects.count())
    payload = {k: v for k, v in {**ERRORS_RULE, "name": "new-rule", **body}.items() if v is not DROP}
    error = assert_error(client.post(RULES, payload, format="json"), 400, "invalid")
    assert field in error["fields"], error
    assert (AlertRule.objects.count(), AuditEvent.objects.count()) == before


def test_a_metric_window_longer_than_raw_metrics_are_kept_is_a_400_saying_so(aw: AlertWorld, client_for):
    client = client_for(aw.world, "owner")
    error = assert_error(client.post(RULES, {**ERRORS_RULE, "window_seconds": 7 * 3600}, format="json"), 400)
    assert error["fields"]["window_seconds"] == [
        "At most 21600 seconds for a metric rule: its 10-second buckets are kept that long (event rules may count "
        "up to 86400 seconds)."
    ]
    body = {**ERRORS_RULE, "name": "deploys", "metric": "event", "event_kind": "deployment.failed"}
    response = client.post(RULES, {**body, "window_seconds": 86400}, format="json")
    assert response.status_code == 201, response.json()
    error = assert_error(
        client.patch(f"{RULES}deploys/", {"metric": "error_rate", "event_kind": ""}, format="json"), 400
    )
    assert "window_seconds" in error["fields"]
    response = client.patch(
        f"{RULES}deploys/", {"metric": "error_rate", "event_kind": "", "window_seconds": 600}, format="json"
    )
    assert response.status_code == 200, response.json()


def test_what_a_rule_watches_cannot_be_patched(aw: AlertWorld, client_for):
    aw.rule()
    client = client_for(aw.world, "owner")
    error = assert_error(client.patch(f"{RULES}errors/", {"app": "api", "threshold": 9}, format="json"), 400)
    assert "app" in error["fields"]
    assert AlertRule.objects.get().threshold == 5


def test_another_teams_channels_and_apps_are_unknown_names(aw: AlertWorld, team_b, client_for):
    App.objects.create(team=team_b.team, project=team_b.project, name="their-app")
    error = assert_error(
        client_for(aw.world, "owner").post(RULES, {**ERRORS_RULE, "app": "their-app"}, format="json"), 400
    )
    assert "app" in error["fields"]
    assert_error(client_for(team_b, "owner").get(f"{RULES}errors/"), 404)  # the URL names alpha


def test_viewers_read_rules_developers_change_them(aw: AlertWorld, client_for):
    aw.rule()
    viewer = client_for(aw.world, "viewer")
    assert viewer.get(RULES).status_code == 200
    assert viewer.get(f"{RULES}errors/").json()["state"] == "ok"
    assert_error(viewer.post(RULES, {**ERRORS_RULE, "name": "mine"}, format="json"), 403, "permission_denied")
    assert_error(viewer.patch(f"{RULES}errors/", {"threshold": 1}, format="json"), 403, "permission_denied")
    assert_error(viewer.delete(f"{RULES}errors/", {"confirm": "errors"}, format="json"), 403, "permission_denied")
    read_only_token = client_for(aw.world, "owner", scopes=["read"])
    assert_error(read_only_token.patch(f"{RULES}errors/", {"threshold": 1}, format="json"), 403)
    developer = client_for(aw.world, "developer")
    assert developer.patch(f"{RULES}errors/", {"threshold": 1}, format="json").status_code == 200


def test_a_project_limited_token_sees_only_its_projects_rules(aw: AlertWorld, client_for):
    data = Project.objects.create(team=aw.team, slug="data", name="Data")
    App.objects.create(team=aw.team, project=data, name="etl")
    aw.rule()
    aw.rule("etl-errors", app=App.objects.get(name="etl"))
    client = client_for(aw.world, "owner", projects=["data"])
    assert [r["name"] for r in client.get(RULES).json()["results"]] == ["etl-errors"]
    assert_error(client.get(f"{RULES}errors/"), 404)


# --- incidents ----------------------------------------------------------------------------------------
def test_incident_json_list_filter_and_detail(aw: AlertWorld, client_for):
    incident = fire(aw)
    client = client_for(aw.world, "viewer")
    listed = client.get(INCIDENTS).json()["results"]
    assert [i["number"] for i in listed] == [1]
    detail = client.get(f"{INCIDENTS}1/").json()
    assert detail == listed[0]
    assert detail == {
        "number": 1,
        "title": incident.title,
        "project": "web",
        "severity": "warning",
        "status": "open",
        "created_at": detail["created_at"],
        "acknowledged_at": None,
        "acknowledged_by": "",
        "resolved_at": None,
        "resolved_by": "",
        "postmortem": "",
        "alerts": [{"rule": "errors", "value": 50.0, "fired_at": detail["alerts"][0]["fired_at"], "resolved_at": None}],
    }
    assert client.get(f"{INCIDENTS}?status=open").json()["results"][0]["number"] == 1
    assert client.get(f"{INCIDENTS}?status=resolved").json()["results"] == []
    assert "status" in assert_error(client.get(f"{INCIDENTS}?status=closed"), 400, "invalid")["fields"]
    for missing in ("2", "abc", "1.0", "-1", "9" * 30):
        assert_error(client.get(f"{INCIDENTS}{missing}/"), 404, "not_found")


def test_acknowledge_resolve_and_write_up_over_the_api(aw: AlertWorld, client_for):
    fire(aw)
    viewer = client_for(aw.world, "viewer")
    for action in ("acknowledge/", "resolve/"):
        assert_error(viewer.post(f"{INCIDENTS}1/{action}"), 403, "permission_denied")
    assert_error(viewer.patch(f"{INCIDENTS}1/", {"title": "x"}, format="json"), 403, "permission_denied")

    developer = client_for(aw.world, "developer")
    acked = developer.post(f"{INCIDENTS}1/acknowledge/").json()
    assert (acked["status"], acked["acknowledged_by"]) == ("acknowledged", aw.world.user("developer").email)
    resolved = developer.post(f"{INCIDENTS}1/resolve/").json()
    assert (resolved["status"], resolved["resolved_by"]) == ("resolved", aw.world.user("developer").email)
    assert_error(developer.post(f"{INCIDENTS}1/acknowledge/"), 409, "incident_resolved")
    assert_error(developer.post(f"{INCIDENTS}1/resolve/"), 409, "incident_resolved")
    response = developer.patch(f"{INCIDENTS}1/", {"title": "Errors on api", "postmortem": "## Cause\n"}, format="json")
    assert response.status_code == 200
    assert (response.json()["title"], response.json()["postmortem"]) == ("Errors on api", "## Cause\n")
    for bad, field in (({"title": ""}, "title"), ({"title": 5}, "title"), ({"postmortem": ["x"]}, "postmortem")):
        assert field in assert_error(developer.patch(f"{INCIDENTS}1/", bad, format="json"), 400, "invalid")["fields"]


def test_the_timeline_over_the_api_is_a_page_of_events_oldest_first(aw: AlertWorld, client_for):
    fire(aw)
    client = client_for(aw.world, "viewer")
    kinds = [e["kind"] for e in client.get(f"{INCIDENTS}1/timeline/").json()["results"]]
    assert kinds == ["alert.firing", "incident.opened"]
    client_for(aw.world, "developer").post(f"{INCIDENTS}1/acknowledge/")
    page = client.get(f"{INCIDENTS}1/timeline/?limit=2").json()
    assert [e["kind"] for e in page["results"]] == ["alert.firing", "incident.opened"]
    rest = client.get(page["next"]).json()
    assert [e["kind"] for e in rest["results"]] == ["incident.acknowledged"]
    event = rest["results"][0]
    assert set(event) == {
        "id",
        "kind",
        "severity",
        "subject_type",
        "subject_id",
        "subject_label",
        "message",
        "data",
        "created_at",
    }
    assert PlatformEvent.objects.count() == 3


def test_another_teams_incidents_are_404(aw: AlertWorld, team_b, client_for):
    fire(aw)
    theirs = client_for(team_b, "owner")
    assert theirs.get("/api/v1/teams/bravo/incidents/").json()["results"] == []
    assert_error(theirs.get("/api/v1/teams/bravo/incidents/1/"), 404, "not_found")
    assert_error(theirs.post("/api/v1/teams/alpha/incidents/1/resolve/"), 404, "not_found")
    assert Incident.objects.get().status == "open"
