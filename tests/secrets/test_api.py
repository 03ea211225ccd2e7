"""The variables API at the team, project and app level: set, list (secrets never show a value),
reveal (allowed and refused, always audited), unset, version history, the precedence of levels,
name validation, the secret-to-plain conflict, and the redeploy that a change triggers."""

import json

import pytest

from apps.audit.models import AuditEvent
from apps.deployments.models import Deployment, DeploymentStatus
from apps.secrets.models import Variable, VariableVersion
from apps.secrets.selectors import environment_from_versions, variables_for_app
from apps.teams.models import Project
from tests.conftest import assert_error
from tests.secrets.conftest import BASE, LEVEL_URLS, make_app

PLAIN = "plain-sentinel-5d1f0c"
SECRET = "secret-sentinel-a97e42"
ALL_BUT_SECRETS = ["read", "deploy", "logs", "infra", "admin"]


def put(client, level, variables, **body):
    return client.post(LEVEL_URLS[level], {"variables": variables, **body}, format="json")


def listed(client, url):
    response = client.get(url)
    assert response.status_code == 200, response.json()
    return {row["name"]: row for row in response.json()["results"]}


def state():
    """Everything a refused or failed write must leave untouched."""
    return (
        sorted(VariableVersion.objects.values_list("variable__name", "number", "deleted")),
        AuditEvent.objects.count(),
        Deployment.objects.count(),
    )


# --- set and list --------------------------------------------------------------------------------
@pytest.mark.parametrize("level", ["team", "project", "app"])
def test_set_then_list_shows_plain_values_and_never_secret_values(team_a, client_for, app, level):
    owner = client_for(team_a, "owner")
    plain = put(owner, level, {"MODE": PLAIN}, restart=False)
    assert plain.status_code == 200, plain.json()
    assert [(r["name"], r["level"], r["secret"], r["value"]) for r in plain.json()["results"]] == [
        ("MODE", level, False, PLAIN)
    ]
    secret = put(owner, level, {"API_TOKEN": SECRET}, secret=True, restart=False)
    assert secret.status_code == 200, secret.json()
    assert SECRET not in secret.content.decode()
    assert secret.json()["results"][0]["value"] is None

    rows = listed(client_for(team_a, "viewer"), LEVEL_URLS[level])  # plain values: anyone who can view
    assert set(rows) == {"MODE", "API_TOKEN"}
    assert rows["MODE"]["value"] == PLAIN and rows["MODE"]["secret"] is False
    assert rows["API_TOKEN"]["value"] is None and rows["API_TOKEN"]["secret"] is True
    for row in rows.values():
        assert row["level"] == level and row["version"] == 1
        assert row["updated_by"] == team_a.user("owner").email and row["updated_at"]
    assert SECRET not in owner.get(LEVEL_URLS[level]).content.decode()


def test_setting_again_makes_a_new_version_and_plain_may_become_secret(team_a, client_for):
    owner = client_for(team_a, "owner")
    put(owner, "team", {"MODE": "one"})
    put(client_for(team_a, "developer"), "team", {"MODE": SECRET}, secret=True)
    row = listed(owner, LEVEL_URLS["team"])["MODE"]
    assert (row["version"], row["secret"], row["value"]) == (2, True, None)
    assert row["updated_by"] == team_a.user("developer").email
    assert Variable.objects.count() == 1


@pytest.mark.parametrize(
    ("role", "scopes"), [("viewer", None), ("developer", ["read", "deploy"]), ("owner", ALL_BUT_SECRETS)]
)
def test_set_and_unset_are_refused_without_the_manage_secrets_capability(team_a, client_for, role, scopes):
    put(client_for(team_a, "owner"), "team", {"MODE": "one"})
    client = client_for(team_a, role, scopes=scopes)
    before = state()
    assert_error(put(client, "team", {"MODE": "two"}), 403, "permission_denied")
    unset = client.post(f"{LEVEL_URLS['team']}unset/", {"names": ["MODE"]}, format="json")
    assert_error(unset, 403, "permission_denied")
    assert state() == before


# --- reveal --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("role", "via", "scopes"),
    [
        ("owner", "token", None),
        ("admin", "token", None),
        ("owner", "session", None),
        ("admin", "session", None),
        ("owner", "token", ["secrets"]),
    ],
)
def test_reveal_is_allowed_to_owners_and_admins_with_the_secrets_scope(team_a, client_for, app, role, via, scopes):
    put(client_for(team_a, "owner"), "app", {"API_TOKEN": SECRET}, secret=True, restart=False)
    client = client_for(team_a, role, via=via, scopes=scopes)
    response = client.post(f"{LEVEL_URLS['app']}API_TOKEN/reveal/")
    assert response.status_code == 200, response.json()
    assert response.json() == {"name": "API_TOKEN", "value": SECRET, "version": 1}


@pytest.mark.parametrize(
    ("role", "via", "scopes"),
    [
        ("developer", "token", None),
        ("developer", "session", None),
        ("viewer", "token", None),
        ("viewer", "session", None),
        ("owner", "token", ALL_BUT_SECRETS),
    ],
)
def test_reveal_is_refused_without_the_reveal_capability_or_the_secrets_scope(
    team_a, client_for, app, role, via, scopes
):
    put(client_for(team_a, "owner"), "project", {"API_TOKEN": SECRET}, secret=True)
    client = client_for(team_a, role, via=via, scopes=scopes)
    before = state()
    response = client.post(f"{LEVEL_URLS['project']}API_TOKEN/reveal/")
    error = assert_error(response, 403, "permission_denied")
    assert SECRET not in response.content.decode()
    assert error["capability"] == "reveal_secrets"
    assert state() == before  # no audit event for a refused reveal


def test_every_reveal_writes_an_audit_event_without_the_value(team_a, client_for):
    owner = client_for(team_a, "owner")
    put(owner, "team", {"API_TOKEN": SECRET}, secret=True)
    put(owner, "team", {"MODE": PLAIN})
    for name in ("API_TOKEN", "API_TOKEN", "MODE"):
        assert owner.post(f"{LEVEL_URLS['team']}{name}/reveal/").status_code == 200
    events = list(AuditEvent.objects.filter(action="secrets.reveal").order_by("id"))
    assert [e.data for e in events] == [
        {"name": "API_TOKEN", "level": "team", "version": 1},
        {"name": "API_TOKEN", "level": "team", "version": 1},
        {"name": "MODE", "level": "team", "version": 1},
    ]
    assert {(e.actor_id, e.target_type, e.team_id) for e in events} == {
        (team_a.user("owner").pk, "secrets.variable", team_a.team.pk)
    }
    assert all(e.token_prefix for e in events)  # which token revealed it
    dumped = json.dumps(list(AuditEvent.objects.values()), default=str)
    assert SECRET not in dumped and PLAIN not in dumped


def test_set_and_unset_audit_names_only(team_a, client_for, app):
    owner = client_for(team_a, "owner")
    put(owner, "app", {"API_TOKEN": SECRET, "DB_PASSWORD": SECRET + "2"}, secret=True)
    put(owner, "project", {"MODE": PLAIN})
    owner.post(f"{LEVEL_URLS['app']}unset/", {"names": ["DB_PASSWORD"]}, format="json")
    events = {
        e.action: e for e in AuditEvent.objects.filter(action__in=["secrets.set", "variables.set", "variables.unset"])
    }
    assert events["secrets.set"].data == {"names": ["API_TOKEN", "DB_PASSWORD"], "level": "app"}
    assert events["variables.set"].data == {"names": ["MODE"], "level": "project"}
    assert events["variables.unset"].data == {"names": ["DB_PASSWORD"], "level": "app"}
    assert (events["secrets.set"].target_type, events["secrets.set"].target_id) == ("deployments.app", str(app.pk))
    dumped = json.dumps(list(AuditEvent.objects.values()), default=str)
    assert SECRET not in dumped and PLAIN not in dumped


def test_reveal_of_an_unset_or_unknown_variable_is_404(team_a, client_for):
    owner = client_for(team_a, "owner")
    put(owner, "team", {"API_TOKEN": SECRET}, secret=True)
    owner.post(f"{LEVEL_URLS['team']}unset/", {"names": ["API_TOKEN"]}, format="json")
    for name in ("API_TOKEN", "NEVER_SET"):
        assert_error(owner.post(f"{LEVEL_URLS['team']}{name}/reveal/"), 404, "not_found")
    # A variable of another level is not reachable through this one.
    put(owner, "project", {"ONLY_PROJECT": SECRET}, secret=True)
    assert_error(owner.post(f"{LEVEL_URLS['team']}ONLY_PROJECT/reveal/"), 404, "not_found")


# --- unset ---------------------------------------------------------------------------------------
def test_unset_removes_the_variable_and_records_a_deleted_version(team_a, client_for):
    owner = client_for(team_a, "owner")
    put(owner, "team", {"API_TOKEN": SECRET, "MODE": PLAIN}, secret=True)
    response = owner.post(f"{LEVEL_URLS['team']}unset/", {"names": ["API_TOKEN"]}, format="json")
    assert response.status_code == 200, response.json()
    assert response.json() == {"unset": ["API_TOKEN"], "restarted": [], "skipped": []}
    assert set(listed(owner, LEVEL_URLS["team"])) == {"MODE"}
    latest = VariableVersion.objects.get(variable__name="API_TOKEN", number=2)
    assert latest.deleted and latest.value_encrypted == ""


@pytest.mark.parametrize("names", [["NEVER_SET"], ["MODE", "NEVER_SET"], ["GONE"]])
def test_unset_of_an_unknown_name_is_400_and_writes_nothing(team_a, client_for, names):
    owner = client_for(team_a, "owner")
    put(owner, "team", {"MODE": PLAIN, "GONE": "x"})
    owner.post(f"{LEVEL_URLS['team']}unset/", {"names": ["GONE"]}, format="json")
    before = state()
    error = assert_error(owner.post(f"{LEVEL_URLS['team']}unset/", {"names": names}, format="json"), 400, "invalid")
    assert list(error["fields"]) == ["names"]
    assert names[-1] in error["fields"]["names"][0]
    assert state() == before
    assert set(listed(owner, LEVEL_URLS["team"])) == {"MODE"}


def test_unset_of_a_name_set_at_another_level_is_400(team_a, client_for, app):
    owner = client_for(team_a, "owner")
    put(owner, "project", {"MODE": PLAIN}, restart=False)
    error = assert_error(owner.post(f"{LEVEL_URLS['app']}unset/", {"names": ["MODE"]}, format="json"), 400)
    assert "MODE" in error["fields"]["names"][0]


def test_unset_with_no_names_is_400(team_a, client_for):
    error = assert_error(client_for(team_a).post(f"{LEVEL_URLS['team']}unset/", {"names": []}, format="json"), 400)
    assert list(error["fields"]) == ["names"]


# --- version history -----------------------------------------------------------------------------
def test_each_change_is_a_new_version_and_unset_is_recorded_as_deleted(team_a, client_for):
    owner = client_for(team_a, "owner")
    developer = client_for(team_a, "developer")
    put(owner, "team", {"API_TOKEN": SECRET + "-1"}, secret=True)
    put(developer, "team", {"API_TOKEN": SECRET + "-2"}, secret=True)
    developer.post(f"{LEVEL_URLS['team']}unset/", {"names": ["API_TOKEN"]}, format="json")
    put(owner, "team", {"API_TOKEN": PLAIN})
    response = client_for(team_a, "viewer").get(f"{LEVEL_URLS['team']}API_TOKEN/versions/")
    assert response.status_code == 200, response.json()
    rows = response.json()["results"]
    owner_email, developer_email = team_a.user("owner").email, team_a.user("developer").email
    assert [(r["version"], r["secret"], r["deleted"], r["created_by"]) for r in rows] == [
        (4, False, False, owner_email),
        (3, True, True, developer_email),
        (2, True, False, developer_email),
        (1, True, False, owner_email),
    ]
    assert all(set(r) == {"version", "secret", "deleted", "created_by", "created_at"} for r in rows)
    assert SECRET not in response.content.decode() and PLAIN not in response.content.decode()
    # The value history stays encrypted, each version under its own token.
    stored = list(VariableVersion.objects.order_by("number").values_list("value_encrypted", flat=True))
    assert len(set(stored)) == 4 and stored[2] == ""


def test_the_history_of_an_unset_variable_stays_readable(team_a, client_for):
    owner = client_for(team_a, "owner")
    put(owner, "team", {"API_TOKEN": SECRET}, secret=True)
    owner.post(f"{LEVEL_URLS['team']}unset/", {"names": ["API_TOKEN"]}, format="json")
    response = owner.get(f"{LEVEL_URLS['team']}API_TOKEN/versions/")
    assert response.status_code == 200, response.json()
    assert [(r["version"], r["deleted"]) for r in response.json()["results"]] == [(2, True), (1, False)]


# --- precedence ----------------------------------------------------------------------------------
def test_the_narrower_level_wins(team_a, client_for, app):
    owner = client_for(team_a, "owner")
    other_project = Project.objects.create(team=team_a.team, slug="other", name="Other")
    make_app(team_a, "sibling", live=False)
    put(owner, "team", {"SHARED": "from-team", "ONLY_TEAM": "t", "TEAM_AND_PROJECT": "t"})
    put(owner, "project", {"SHARED": "from-project", "TEAM_AND_PROJECT": "p", "ONLY_PROJECT": "p"})
    put(owner, "app", {"SHARED": SECRET, "ONLY_APP": "a"}, secret=True)
    owner.post(f"{BASE}/projects/other/variables/", {"variables": {"OTHER_PROJECT": "x"}}, format="json")
    owner.post(f"{BASE}/apps/sibling/variables/", {"variables": {"SIBLING": "x"}}, format="json")
    expected_levels = {
        "ONLY_APP": "app",
        "ONLY_PROJECT": "project",
        "ONLY_TEAM": "team",
        "SHARED": "app",
        "TEAM_AND_PROJECT": "project",
    }

    rows = listed(owner, f"{LEVEL_URLS['app']}?effective=1")
    assert {name: row["level"] for name, row in rows.items()} == expected_levels
    assert rows["SHARED"]["value"] is None and rows["TEAM_AND_PROJECT"]["value"] == "p"
    assert [v.name for v in variables_for_app(app)] == sorted(expected_levels)
    assert {v.name: v.level for v in variables_for_app(app)} == expected_levels
    env = environment_from_versions({v.name: v.current_id for v in variables_for_app(app)})
    assert env == {"ONLY_APP": "a", "ONLY_PROJECT": "p", "ONLY_TEAM": "t", "SHARED": SECRET, "TEAM_AND_PROJECT": "p"}
    # Without ?effective, the app level lists only its own variables.
    assert set(listed(owner, LEVEL_URLS["app"])) == {"SHARED", "ONLY_APP"}
    assert other_project.variables.count() == 1

    # Unsetting the app's value uncovers the project's, then the team's.
    owner.post(f"{LEVEL_URLS['app']}unset/", {"names": ["SHARED"]}, format="json")
    assert listed(owner, f"{LEVEL_URLS['app']}?effective=true")["SHARED"]["value"] == "from-project"
    owner.post(f"{LEVEL_URLS['project']}unset/", {"names": ["SHARED"]}, format="json")
    assert listed(owner, f"{LEVEL_URLS['app']}?effective=1")["SHARED"]["value"] == "from-team"


def test_the_effective_view_hides_secret_values(team_a, client_for, app):
    owner = client_for(team_a, "owner")
    put(owner, "team", {"API_TOKEN": SECRET}, secret=True)
    response = client_for(team_a, "viewer").get(f"{LEVEL_URLS['app']}?effective=1")
    assert response.json()["results"][0]["value"] is None
    assert SECRET not in response.content.decode()


# --- validation ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name", ["1ABC", "A-B", "A B", "A.B", "É", "", "X" * 129, "PORT", "PANDASTACK_APP", "pandastack_release"]
)
def test_bad_and_reserved_names_are_400_keyed_by_name(team_a, client_for, name):
    owner = client_for(team_a, "owner")
    before = state()
    error = assert_error(put(owner, "team", {"GOOD": SECRET, name: "v"}, secret=True), 400, "invalid")
    assert list(error["fields"]) == [name]
    assert SECRET not in json.dumps(error)
    assert state() == before  # the valid one next to it is not written either


@pytest.mark.parametrize("name", ["_X", "a1", "DATABASE_URL", "X" * 128, "PANDASTACK"])
def test_good_names_are_accepted(team_a, client_for, name):
    response = put(client_for(team_a, "owner"), "team", {name: "v"})
    assert response.status_code == 200, response.json()
    assert [r["name"] for r in response.json()["results"]] == [name]


@pytest.mark.parametrize(
    "body",
    [
        {"variables": {}},
        {"variables": {"A": 1}},
        {"variables": {"A": None}},
        {"variables": ["A"]},
        {"variables": {"A": "x" * (32 * 1024 + 1)}},
        {},
    ],
    ids=["empty", "number", "null", "list", "too-long", "missing"],
)
def test_malformed_bodies_are_400_on_variables(team_a, client_for, body):
    owner = client_for(team_a)
    before = state()
    error = assert_error(owner.post(LEVEL_URLS["team"], body, format="json"), 400, "invalid")
    assert "variables" in error["fields"]
    assert state() == before


def test_a_value_with_a_nul_byte_is_400(team_a, client_for):
    error = assert_error(put(client_for(team_a), "team", {"A": "x\x00y"}), 400, "invalid")
    assert error["fields"]


# --- secret -> plain ------------------------------------------------------------------------------
def test_a_secret_cannot_become_plain_without_unsetting_it_first(team_a, client_for):
    owner = client_for(team_a, "owner")
    put(owner, "team", {"API_TOKEN": SECRET}, secret=True)
    before = state()
    response = put(owner, "team", {"API_TOKEN": PLAIN, "OTHER": "x"})
    error = assert_error(response, 409, "conflict")
    assert list(error["fields"]) == ["API_TOKEN"]
    assert SECRET not in response.content.decode()
    assert state() == before
    assert not Variable.objects.filter(name="OTHER").exists()

    owner.post(f"{LEVEL_URLS['team']}unset/", {"names": ["API_TOKEN"]}, format="json")
    assert put(owner, "team", {"API_TOKEN": PLAIN}).status_code == 200
    row = listed(owner, LEVEL_URLS["team"])["API_TOKEN"]
    assert (row["secret"], row["value"], row["version"]) == (False, PLAIN, 3)


# --- restart -------------------------------------------------------------------------------------
def restarts(app):
    return list(Deployment.objects.filter(app=app, number__gt=1).order_by("number"))


def finish_deployments():
    """What the worker would do with the queued restarts (none runs here)."""
    Deployment.objects.filter(status=DeploymentStatus.PENDING).update(status=DeploymentStatus.LIVE)


@pytest.mark.parametrize("level", ["team", "project", "app"])
def test_a_change_redeploys_the_live_apps_that_see_it(team_a, client_for, app, level):
    owner = client_for(team_a, "owner")
    response = put(owner, level, {"API_TOKEN": SECRET}, secret=True)
    assert response.status_code == 200, response.json()
    assert response.json()["restarted"] == ["api"] and response.json()["skipped"] == []
    [restart] = restarts(app)
    assert restart.status == DeploymentStatus.PENDING and restart.image == app.live_deployment.image
    current = Variable.objects.get(name="API_TOKEN").current_id
    assert restart.config["variables"] == {"API_TOKEN": current}
    assert AuditEvent.objects.filter(action="app.restart", target_id=str(restart.pk)).exists()
    assert SECRET not in json.dumps(restart.config)

    # Unset redeploys too, and the new release no longer carries the variable.
    finish_deployments()
    unset = owner.post(f"{LEVEL_URLS[level]}unset/", {"names": ["API_TOKEN"]}, format="json")
    assert unset.json()["restarted"] == ["api"]
    assert restarts(app)[-1].config["variables"] == {}


@pytest.mark.parametrize("level", ["team", "project", "app"])
def test_restart_false_changes_variables_without_a_redeploy(team_a, client_for, app, level):
    owner = client_for(team_a, "owner")
    response = put(owner, level, {"API_TOKEN": SECRET}, secret=True, restart=False)
    assert response.json()["restarted"] == [] and response.json()["skipped"] == []
    unset = owner.post(f"{LEVEL_URLS[level]}unset/", {"names": ["API_TOKEN"], "restart": False}, format="json")
    assert unset.json()["restarted"] == []
    assert restarts(app) == []


def test_only_live_running_apps_under_the_level_are_redeployed(team_a, client_for, app):
    other = Project.objects.create(team=team_a.team, slug="other", name="Other")
    make_app(team_a, "elsewhere", project=other)
    make_app(team_a, "never-deployed", live=False)
    stopped = make_app(team_a, "stopped")
    stopped.desired_running = False
    stopped.save(update_fields=["desired_running"])
    owner = client_for(team_a, "owner")
    assert put(owner, "app", {"A": "1"}).json()["restarted"] == ["api"]
    finish_deployments()
    assert put(owner, "project", {"A": "1"}).json()["restarted"] == ["api"]
    finish_deployments()
    assert put(owner, "team", {"A": "1"}).json()["restarted"] == ["api", "elsewhere"]
    assert not Deployment.objects.filter(app__name__in=["never-deployed", "stopped"], number__gt=1).exists()


def test_a_variable_change_supersedes_a_deployment_in_progress(team_a, client_for, app):
    """The newest intent wins (issue 12): an app whose release is still in progress is redeployed
    too; the restart supersedes the release in flight and carries its image on, with the new value."""
    busy = make_app(team_a, "busy")
    inflight = Deployment.objects.create(
        team=team_a.team, app=busy, number=2, image="x", status=DeploymentStatus.STARTING
    )
    response = put(client_for(team_a, "owner"), "project", {"A": "1"})
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["restarted"] == ["api", "busy"] and body["skipped"] == []
    inflight.refresh_from_db()
    restart = Deployment.objects.get(app=busy, number=3)
    assert inflight.status == DeploymentStatus.SUPERSEDED and inflight.superseded_by == restart
    assert restart.image == "x"
    assert Variable.objects.get(name="A").current.number == 1  # the change itself went through


def test_a_token_that_may_not_deploy_changes_variables_but_skips_the_redeploy(team_a, client_for, app):
    response = put(client_for(team_a, "owner", scopes=["secrets"]), "app", {"A": "1"})
    assert response.status_code == 200, response.json()
    assert response.json()["restarted"] == []
    assert response.json()["skipped"] == [{"app": "api", "reason": "You may not deploy this app."}]
    assert restarts(app) == []
