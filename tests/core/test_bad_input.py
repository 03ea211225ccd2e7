"""Every write endpoint refuses bad input with the one error shape, names the bad field, and writes
nothing at all; no body, however odd, makes it answer 500.

Calls are made by the owner with a signed-in session, so permissions never decide the outcome
(POST /teams/ needs a person: tokens cannot create teams). Creating an app or a deployment
enqueues Celery tasks on commit; these tests run inside a transaction that never commits, so no
task is ever sent (and a refused write must not have enqueued one anyway)."""

import json
from typing import Any

import pytest
from django.apps import apps

from apps.alerts.models import Incident
from apps.alerts.rules import rule_create
from apps.alerts.services import channel_create
from apps.core.access import resolve_team
from apps.core.actors import Actor
from apps.cron.models import CronJob
from apps.databases import services as database_services
from apps.databases.models import BackupStatus
from apps.deployments import services as deployment_services
from apps.deployments.models import App, Deployment, DeploymentStatus
from apps.registries.services import registry_credential_create
from apps.secrets.models import Level
from apps.secrets.services import Scope, variables_set, variables_unset
from apps.teams.services import group_create, service_account_create
from tests.conftest import TeamWorld, assert_error, session_client
from tests.core.routes import (
    BACKUP,
    CHANNEL,
    CHANNEL_TARGET,
    CRON_IMAGE,
    CRON_JOB,
    DATABASE,
    INCIDENT,
    RULE,
    api_routes,
    available_database,
    stored_backup,
)

SNAPSHOT_APPS = {
    *("teams", "tokens", "audit", "accounts", "guardian", "auth", "deployments", "secrets", "cron", "events"),
    *("alerts", "databases"),
}


def row_snapshot() -> dict[str, list[str]]:
    """Every row (every column) of every model, through tables included, of the apps an API write
    could touch: a refused write must neither add, remove nor change a row."""
    return {
        model._meta.label: sorted(map(repr, model._default_manager.values_list()))
        for model in apps.get_models(include_auto_created=True)
        if model._meta.app_label in SNAPSHOT_APPS
    }


def release(deployment: Deployment, status: DeploymentStatus) -> None:
    """Settle a queued deployment as a worker would have (no worker runs here)."""
    deployment.status = status
    deployment.save(update_fields=["status"])


def cron_job(world: TeamWorld, name: str, **fields: Any) -> CronJob:
    """A cron job of project "web" (one row, no service: cheap enough for every test here)."""
    return CronJob.objects.create(
        team=world.team,
        project=world.project,
        name=name,
        **{"image": CRON_IMAGE, "command": ["true"], "schedule": "@daily", **fields},
    )


@pytest.fixture
def world(team_a: TeamWorld, team_b: TeamWorld) -> dict[str, Any]:
    """team_a with a group "ops", a service account "ci", an app "api" whose deployment #1 is live
    and #2 failed (nothing earlier to roll back to), a cron job "alpha-cron" with an image of its
    own, a webhook notification channel "alpha-hook", an alert rule "alpha-errors" on the app, an
    open incident #1, and an available PostgreSQL database "alpha-db" (the plan allows five) attached
    to "api" with a succeeded backup #1 and a failed #2; ids used by paths and payloads."""
    ctx = resolve_team(Actor(user=team_a.user("owner"), via="test"), "alpha")
    group_create(ctx=ctx, slug="ops", name="Ops", members=[])
    service_account_create(ctx=ctx, slug="ci", role="developer")
    app = deployment_services.app_create(ctx=ctx, project=team_a.project, name="api")
    live = deployment_services.deployment_create(ctx=ctx, app=app, image="registry.local/api:1")
    release(live, DeploymentStatus.LIVE)
    app.live_deployment = live
    app.save(update_fields=["live_deployment"])
    release(
        deployment_services.deployment_create(ctx=ctx, app=app, image="registry.local/api:2"), DeploymentStatus.FAILED
    )
    cron_job(team_a, CRON_JOB)
    channel, _ = channel_create(ctx=ctx, name=CHANNEL, kind="webhook", target=CHANNEL_TARGET)
    registry_credential_create(ctx=ctx, registry=REGISTRY, username="ci", password="registry-password")
    rule_create(ctx=ctx, name=RULE, scope="app", app=app, metric="error_rate", threshold=5, channels=[channel])
    Incident.objects.create(team=team_a.team, project=team_a.project, number=INCIDENT, title="Errors on api")
    # Room for more databases than the one below, so a refusal is about the input, not the quota.
    type(team_a.team.plan).objects.filter(pk=team_a.team.plan_id).update(max_databases=5)
    database = available_database(ctx, team_a.project, DATABASE)
    database_services.database_attach(ctx=ctx, database=database, app=app)
    stored_backup(database, BACKUP)
    failed = stored_backup(database, BACKUP + 1)
    type(failed).objects.filter(pk=failed.pk).update(status=BackupStatus.FAILED, error="pg_dump: refused")
    return {
        "viewer": team_a.user("viewer").pk,
        "owner": team_a.user("owner").pk,
        "sa_user": team_a.team.memberships.get(user__is_service_account=True).user_id,
        "stranger": team_b.user("owner").pk,
        "client": session_client(team_a.user("owner")),
    }


@pytest.fixture
def variables(world: dict[str, Any], team_a: TeamWorld) -> None:
    """At every level (team, project "web", app "api") a plain PLAIN_VAR, a secret SECRET_VAR and an
    unset GONE_VAR; at the team level only, TEAM_ONLY_VAR. (A fixture of its own: only the variables
    tests pay for it.)"""
    ctx = resolve_team(Actor(user=team_a.user("owner"), via="test"), "alpha")
    app = App.objects.get(team=team_a.team, name="api")
    for scope in (Scope(Level.TEAM), Scope(Level.PROJECT, project=team_a.project), Scope(Level.APP, app=app)):
        variables_set(ctx=ctx, scope=scope, values={"PLAIN_VAR": "plain", "GONE_VAR": "gone"}, restart=False)
        variables_set(ctx=ctx, scope=scope, values={"SECRET_VAR": "hidden"}, secret=True, restart=False)
        variables_unset(ctx=ctx, scope=scope, names=["GONE_VAR"], restart=False)
    variables_set(ctx=ctx, scope=Scope(Level.TEAM), values={"TEAM_ONLY_VAR": "team"}, restart=False)


LONG_NAME = "n" * 101
LONG_SLUG = "s" * 41
BAD_SLUGS = ["Bad Slug", "-x", "x-"]

# Every write endpoint that takes a body: (method, URL name, URL parameters). "@name" values stand
# for ids from the `world` fixture.
A = {"team": "alpha"}
REGISTRY = "registry.example.com:5000"  # the registry credential the `world` fixture gives team_a
# The variables API is the same at each level: the URL names' prefix and the parent's parameters.
VARIABLE_LEVELS = {"team": A, "project": {**A, "project": "web"}, "app": {**A, "app": "api"}}
ENDPOINTS = {
    "team-create": ("post", "team-list", {}),
    "team-update": ("patch", "team-detail", A),
    "team-delete": ("delete", "team-detail", A),
    "team-transfer": ("post", "team-transfer", A),
    "member-add": ("post", "member-list", A),
    "member-update": ("patch", "member-detail", {**A, "user": "@viewer"}),
    "project-create": ("post", "project-list", A),
    "project-update": ("patch", "project-detail", {**A, "project": "web"}),
    "project-delete": ("delete", "project-detail", {**A, "project": "web"}),
    "grant-create": ("post", "grant-list", {**A, "project": "web"}),
    "group-create": ("post", "group-list", A),
    "group-update": ("patch", "group-detail", {**A, "group": "ops"}),
    "service-account-create": ("post", "service-account-list", A),
    "service-account-update": ("patch", "service-account-detail", {**A, "service_account": "ci"}),
    "token-create": ("post", "token-list", A),
    "app-create": ("post", "app-list", A),
    "app-update": ("patch", "app-detail", {**A, "app": "api"}),
    "app-delete": ("delete", "app-detail", {**A, "app": "api"}),
    "app-scale": ("post", "app-scale", {**A, "app": "api"}),
    "app-rollback": ("post", "app-rollback", {**A, "app": "api"}),
    "deployment-create": ("post", "deployment-list", {**A, "app": "api"}),
    "app-grant-create": ("post", "app-grant-list", {**A, "app": "api"}),
    "cron-job-create": ("post", "cron-job-list", A),
    "cron-job-update": ("patch", "cron-job-detail", {**A, "cron_job": CRON_JOB}),
    "cron-job-delete": ("delete", "cron-job-detail", {**A, "cron_job": CRON_JOB}),
    "registry-credential-create": ("post", "registry-credential-list", A),
    "registry-credential-update": ("patch", "registry-credential-detail", {**A, "registry": REGISTRY}),
    "channel-create": ("post", "channel-list", A),
    "channel-update": ("patch", "channel-detail", {**A, "channel": CHANNEL}),
    "channel-delete": ("delete", "channel-detail", {**A, "channel": CHANNEL}),
    "channel-verify": ("post", "channel-verify", {**A, "channel": CHANNEL}),
    "alert-rule-create": ("post", "alert-rule-list", A),
    "alert-rule-update": ("patch", "alert-rule-detail", {**A, "rule": RULE}),
    "alert-rule-delete": ("delete", "alert-rule-detail", {**A, "rule": RULE}),
    "incident-update": ("patch", "incident-detail", {**A, "incident": INCIDENT}),
    "database-create": ("post", "database-list", A),
    "database-delete": ("delete", "database-detail", {**A, "database": DATABASE}),
    "database-attach": ("post", "database-attachment-list", {**A, "database": DATABASE}),
    "backup-restore": ("post", "backup-restore", {**A, "database": DATABASE, "backup": BACKUP}),
    **{f"{level}-variable-set": ("post", f"{level}-variable-list", p) for level, p in VARIABLE_LEVELS.items()},
    **{f"{level}-variable-unset": ("post", f"{level}-variable-unset", p) for level, p in VARIABLE_LEVELS.items()},
}
# Writes that take no body: the URL says everything (leaving the team; DELETE of a member, grant,
# group, service account, token or app grant; revoking a token; restarting, stopping or starting
# an app; cancelling a deployment; revealing a variable's value; running, suspending or resuming a cron job; testing a
# notification channel or re-sending its verification code; acknowledging or resolving an incident;
# revealing a database's credentials, rotating them, detaching it from an app, capturing a backup).
BODYLESS = {
    ("post", "team-leave"),
    ("delete", "member-detail"),
    ("delete", "grant-detail"),
    ("delete", "group-detail"),
    ("delete", "service-account-detail"),
    ("delete", "token-detail"),
    ("post", "token-revoke"),
    ("delete", "app-grant-detail"),
    ("post", "app-restart"),
    ("post", "app-stop"),
    ("post", "app-start"),
    ("post", "deployment-cancel"),
    *(("post", f"{level}-variable-reveal") for level in VARIABLE_LEVELS),
    ("post", "cron-job-run"),
    ("post", "cron-job-suspend"),
    ("post", "cron-job-resume"),
    ("delete", "registry-credential-detail"),
    ("post", "channel-test"),
    ("post", "channel-resend-verification"),
    ("post", "incident-acknowledge"),
    ("post", "incident-resolve"),
    ("post", "database-reveal"),
    ("post", "database-rotate"),
    ("post", "database-undelete"),
    ("delete", "database-attachment-detail"),
    ("post", "backup-list"),
}
ROUTES = {route.name: route for route in api_routes()}


def test_every_write_route_is_listed_here() -> None:
    writes = {(m, r.name) for r in ROUTES.values() for m in r.methods if m in ("post", "put", "patch", "delete")}
    assert writes - BODYLESS == {(method, name) for method, name, _ in ENDPOINTS.values()}


def case(
    endpoint: str, body: Any, field: str | None, *, status: int = 400, code: str = "invalid", label: str = ""
) -> Any:
    """One bad payload; "@name" strings in `body` stand for ids from the `world` fixture. `label`
    names the case instead of the body (for bodies too long to read)."""
    return pytest.param(endpoint, body, status, code, field, id=f"{endpoint}:{label or json.dumps(body)}")


def slug_cases(endpoint: str, valid: dict[str, Any], duplicate: str, key: str = "slug") -> list[Any]:
    """Missing, mistyped, too long, malformed and already taken slugs (in field `key`) for a create
    endpoint."""
    without = {k: v for k, v in valid.items() if k != key}
    return [
        case(endpoint, without, key),
        case(endpoint, {**valid, key: 123}, key),
        case(endpoint, {**valid, key: ["web"]}, key),
        case(endpoint, {**valid, key: None}, key),
        case(endpoint, {**valid, key: ""}, key),
        case(endpoint, {**valid, key: LONG_SLUG}, key),
        *(case(endpoint, {**valid, key: bad}, key) for bad in BAD_SLUGS),
        case(endpoint, {**valid, key: duplicate}, key),
    ]


def grant_cases(endpoint: str) -> list[Any]:
    """Bad object grants, the same for every object that has grants (a project, an app)."""
    return [
        case(endpoint, {"group": "ops"}, "capability"),
        case(endpoint, {"capability": "fly", "group": "ops"}, "capability"),
        case(endpoint, {"capability": "manage_members", "group": "ops"}, "capability"),
        case(endpoint, {"capability": ["deploy"], "group": "ops"}, "capability"),
        case(endpoint, {"capability": "deploy"}, "non_field_errors"),
        case(endpoint, {"capability": "deploy", "group": "ops", "user": "@viewer"}, "non_field_errors"),
        case(endpoint, {"capability": "deploy", "group": "nope"}, "group"),
        case(endpoint, {"capability": "deploy", "user": "abc"}, "user"),
        case(endpoint, {"capability": "deploy", "user": "@stranger"}, "user"),
    ]


def app_setting_cases(endpoint: str, valid: dict[str, Any]) -> list[Any]:
    """Out-of-range, mistyped and over-long app settings, the same on create and update."""
    bad = {
        "port": [0, 70000, "x", None],
        "replicas": [-1, 51, "x"],
        "memory_mb": [1, "lots", 70000],
        "cpus": [0, "a", 17, "NaN"],
        "command": ["", [], [1], "str", [""], {"a": "b"}, ["c" * 1001], ["c"] * 101, ["a\x00b"]],
        "health_check_path": ["nope", "/a b", "/" + "p" * 200, 5],
    }
    return [case(endpoint, {**valid, field: value}, field) for field, values in bad.items() for value in values]


# Every value a bad variables payload submits contains SENTINEL: no error may repeat it. (These
# cases are run by a test of their own, which sets up variables to conflict with.)
SENTINEL = "sentinel-Vq7x-value"


def variable_set_cases(endpoint: str) -> list[Any]:
    """Bad bulk sets: a missing, empty or mistyped `variables`, values that are not strings, bad and
    reserved names (the field is the name), too long values or a NUL, and mistyped flags. One
    serializer and one service check them at every level, so the team level stands for all."""
    good = {"GOOD_VAR": SENTINEL}
    return [
        case(endpoint, {"secret": True}, "variables"),
        case(endpoint, {"variables": {}}, "variables"),
        *(
            case(endpoint, {"variables": bad}, "variables")
            for bad in (None, SENTINEL, [SENTINEL], [["GOOD_VAR", SENTINEL]])
        ),
        *(
            case(endpoint, {"variables": {"GOOD_VAR": bad}}, "variables")
            for bad in (None, True, [SENTINEL], {"nested": SENTINEL})
        ),
        *(
            case(endpoint, {"variables": {name: SENTINEL}}, name, label=f"name {name[:12]!r} ({len(name)} chars)")
            for name in ("A-B", "", "A B", "A\n", "É", "A" * 129, "PORT", "PANDASTACK_X", "pandastack_x")
        ),
        case(endpoint, {"variables": {**good, "1A": SENTINEL}}, "1A"),  # one bad name refuses the whole call
        case(
            endpoint,
            {"variables": {"GOOD_VAR": SENTINEL + "x" * (32 * 1024)}},
            "variables",
            label="value over 32 KiB",
        ),
        case(endpoint, {"variables": {"GOOD_VAR": f"{SENTINEL}\x00tail"}}, "variables"),
        *(case(endpoint, {"variables": good, "secret": bad}, "secret") for bad in ("maybe", None, [True], SENTINEL)),
        *(case(endpoint, {"variables": good, "restart": bad}, "restart") for bad in ("later", None, {"x": 1})),
    ]


def variable_set_level_cases(endpoint: str) -> list[Any]:
    """Bad bulk sets checked at every level: the route validates at all, and a plain value over
    that level's secret is a 409 (even after a good variable in the same call)."""
    return [
        case(endpoint, {}, "variables"),
        case(endpoint, {"variables": {"GOOD_VAR": 123}}, "variables"),
        case(endpoint, {"variables": {"1A": SENTINEL}}, "1A"),
        case(endpoint, {"variables": {"SECRET_VAR": SENTINEL}}, "SECRET_VAR", status=409, code="conflict"),
        case(
            endpoint,
            {"variables": {"AAA_VAR": SENTINEL, "SECRET_VAR": SENTINEL}, "secret": False},
            "SECRET_VAR",
            status=409,
            code="conflict",
        ),
    ]


def variable_unset_cases(endpoint: str) -> list[Any]:
    """Bad unsets of every shape (missing, empty or mistyped `names`, a mistyped flag), checked at
    the team level, as for sets."""
    return [
        case(endpoint, {"restart": False}, "names"),
        *(case(endpoint, {"names": bad}, "names") for bad in ([], "PLAIN_VAR", {"PLAIN_VAR": True}, None, [None])),
        case(endpoint, {"names": ["n" * 129]}, "names"),
        case(endpoint, {"names": ["PLAIN_VAR"], "restart": "later"}, "restart"),
    ]


def variable_unset_level_cases(endpoint: str) -> list[Any]:
    """Unsets of names not set at this level (never set, already unset, or set at the team level
    only), checked at every level; with a known name too, nothing is unset."""
    cases = [
        case(endpoint, {}, "names"),
        *(case(endpoint, {"names": [name]}, "names") for name in ("NO_SUCH_VAR", "GONE_VAR", "plain_var")),
        case(endpoint, {"names": ["PLAIN_VAR", "NO_SUCH_VAR"]}, "names"),
    ]
    if not endpoint.startswith("team-"):
        cases.append(case(endpoint, {"names": ["TEAM_ONLY_VAR"]}, "names"))
    return cases


VARIABLE_PAYLOADS = [
    *variable_set_cases("team-variable-set"),
    *(param for level in VARIABLE_LEVELS for param in variable_set_level_cases(f"{level}-variable-set")),
    *variable_unset_cases("team-variable-unset"),
    *(param for level in VARIABLE_LEVELS for param in variable_unset_level_cases(f"{level}-variable-unset")),
]


CRON_JOB_BODY = {"name": "nightly", "project": "web", "image": "busybox", "command": ["true"], "schedule": "@daily"}
# Settings the serializer or the service refuses: all tried on create, a few on update (which
# shares both checks).
BAD_CRON_SETTINGS = {
    "command": [[], [""], "true", [1]],
    "schedule": ["61 * * * *", "0 0 * * * *", "@reboot", 123],
    "timezone": ["Mars/Base", "localtime"],
    "concurrency_policy": ["sometimes"],
    "timeout_seconds": [0, 86401],
    "retries": [11],
    "memory_mb": [1],
}


def cron_cases() -> list[Any]:
    """Bad cron jobs: names (taken included), projects and apps that do not exist, an app and an
    image or neither, bad images; the full table of bad settings on create, a few on update (one
    serializer and one validation serve both); deletes without the right confirmation."""
    valid = CRON_JOB_BODY
    image_job = {k: v for k, v in valid.items() if k != "image"}
    return [
        case("cron-job-create", {k: v for k, v in valid.items() if k != "name"}, "name"),
        *(case("cron-job-create", {**valid, "name": bad}, "name") for bad in (123, "Bad Slug", LONG_SLUG, CRON_JOB)),
        case("cron-job-create", {**valid, "project": "nope"}, "project"),
        case("cron-job-create", {**image_job, "app": "nope"}, "app"),
        case("cron-job-create", {**valid, "app": "api"}, "image"),
        case("cron-job-create", image_job, "image"),
        *(case("cron-job-create", {**valid, "image": bad}, "image") for bad in ("bad image", "-busybox")),
        *(case("cron-job-create", {k: v for k, v in valid.items() if k != m}, m) for m in ("command", "schedule")),
        *(
            case("cron-job-create", {**valid, field: value}, field)
            for field, values in BAD_CRON_SETTINGS.items()
            for value in values
        ),
        *(
            case("cron-job-update", {field: value}, field)
            for field, value in (
                ("command", []),
                ("schedule", "61 * * * *"),
                ("timezone", "Mars/Base"),
                ("retries", 11),
            )
        ),
        case("cron-job-delete", {}, "confirm"),
        case("cron-job-delete", {"confirm": "nightly"}, "confirm"),
        case("cron-job-delete", {"confirm": [CRON_JOB]}, "confirm"),
    ]


CHANNEL_BODY = {"name": "beta-hook", "kind": "webhook", "target": "http://127.0.0.1:9/beta"}
# Targets no webhook takes: empty, not http(s), not a URL, too long, unparsable.
# (A bad port, whitespace or a control character would only fail in the worker, when sending.)
BAD_URL_TARGETS = [
    *("", "   ", "ftp://x", "not a url", "http://", "http://[::1", "h" * 2001, 123, None, ["http://a/"]),
    *("http://127.0.0.1:abc/", "http://127.0.0.1:99999/", "http://exa\nmple/", "http://a b/", "http://127.0.0.1/a b"),
]


REGISTRY_BODY = {"registry": "ghcr.io", "username": "ci", "password": "not-echoed-pw"}


def registry_credential_cases() -> list[Any]:
    """Bad registry credentials: hosts no image reference can name (or one the team already has),
    missing or mistyped usernames and passwords; bad updates."""
    valid = REGISTRY_BODY
    bad_hosts = (
        "", " ", "ghcr.io/org", "https://ghcr.io", "bad host", "myregistry", "ghcr.io:99999", "ghcr.io:0",
        "-x.io", "h" * 256, 123, None, ["ghcr.io"], REGISTRY,
    )  # fmt: skip
    return [
        *(
            case("registry-credential-create", {**valid, "registry": bad}, "registry", label=f"registry {bad!r:.20}")
            for bad in bad_hosts
        ),
        case("registry-credential-create", {k: v for k, v in valid.items() if k != "registry"}, "registry"),
        *(case("registry-credential-create", {**valid, "username": bad}, "username") for bad in ("", None, 1, ["a"])),
        case("registry-credential-create", {k: v for k, v in valid.items() if k != "username"}, "username"),
        case("registry-credential-create", {**valid, "username": "u" * 256}, "username", label="username 256 chars"),
        *(case("registry-credential-create", {**valid, "password": bad}, "password") for bad in ("", None, 1, ["a"])),
        case("registry-credential-create", {k: v for k, v in valid.items() if k != "password"}, "password"),
        *(case("registry-credential-update", {"password": bad}, "password") for bad in ("", None, 1, ["a"])),
        *(case("registry-credential-update", {"username": bad}, "username") for bad in ("", None, 1)),
    ]


def channel_cases() -> list[Any]:
    """Bad notification channels: names (taken included), kinds, webhook and Slack URLs, e-mail
    address lists (one bad address refuses the list); bad updates; deletes without the right
    confirmation."""
    valid = CHANNEL_BODY
    email = {**valid, "kind": "email"}
    # Addresses whose list fits in 2000 characters but not once normalised to ", " separators.
    crowded = ",".join(["a@b.co"] * 285)
    return [
        *slug_cases("channel-create", valid, duplicate=CHANNEL, key="name"),
        *(case("channel-create", {**valid, "kind": bad}, "kind") for bad in ("sms", "", None, ["email"])),
        case("channel-create", {k: v for k, v in valid.items() if k != "kind"}, "kind"),
        case("channel-create", {k: v for k, v in valid.items() if k != "target"}, "target"),
        *(
            case("channel-create", {**valid, "kind": kind, "target": bad}, "target", label=f"{kind} {bad!r:.20}")
            for kind in ("webhook", "slack")
            for bad in BAD_URL_TARGETS
        ),
        *(
            case("channel-create", {**email, "target": bad}, "target", label=f"email {bad!r:.20}")
            for bad in ("", " , ", "a@b, nope", "ops@example.com, nope", "http://127.0.0.1:9/", "e" * 2001)
        ),
        case("channel-create", {**email, "target": crowded}, "target", label="email list too long once normalised"),
        case("channel-update", {"target": "ftp://x"}, "target"),
        case("channel-update", {"target": "not a url"}, "target"),
        case("channel-update", {"target": ""}, "target"),
        case("channel-update", {"target": "h" * 2001}, "target", label="target 2001 chars"),
        *(case("channel-update", {"enabled": bad}, "enabled") for bad in ("maybe", None, [True])),
        case("channel-update", {"target": "http://127.0.0.1:9/new", "enabled": "maybe"}, "enabled"),
        case("channel-delete", {}, "confirm"),
        case("channel-delete", {"confirm": "alpha"}, "confirm"),
        case("channel-delete", {"confirm": "ALPHA-HOOK"}, "confirm"),
        case("channel-delete", {"confirm": [CHANNEL]}, "confirm"),
        *(case("channel-verify", body, "token") for body in ({}, {"token": ""}, {"token": ["x"]}, {"token": None})),
        case("channel-verify", {"token": "forged"}, "token", label="forged code"),
        case("channel-verify", {"token": "t" * 1001}, "token", label="token 1001 chars"),
    ]


DATABASE_BODY = {"name": "reports", "project": "web", "engine": "postgres"}


def database_cases() -> list[Any]:
    """Bad databases: names (taken included), projects that do not exist, engines and placements
    that are not, versions of the wrong type or that no shared server runs, an engine without a
    shared server (409), a dedicated one on a plan without them (403); deletes and restores
    without the right confirmation; attachments to apps that do not exist, under bad or reserved
    variable names, or twice (409)."""
    valid = DATABASE_BODY
    return [
        *slug_cases("database-create", valid, duplicate=DATABASE, key="name"),
        case("database-create", {k: v for k, v in valid.items() if k != "project"}, "project"),
        *(case("database-create", {**valid, "project": bad}, "project") for bad in ("nope", 7, None, LONG_SLUG)),
        case("database-create", {k: v for k, v in valid.items() if k != "engine"}, "engine"),
        *(case("database-create", {**valid, "engine": bad}, "engine") for bad in ("oracle", "", None, ["postgres"])),
        *(case("database-create", {**valid, "placement": bad}, "placement") for bad in ("cloud", 1, None)),
        *(case("database-create", {**valid, "version": bad}, "version") for bad in (16, ["16"], "9" * 51)),
        case("database-create", {**valid, "version": "9.6"}, "version"),  # the shared server runs 16.0
        case("database-create", {**valid, "engine": "redis"}, None, status=409, code="no_database_server"),
        case("database-create", {**valid, "placement": "dedicated"}, None, status=403, code="plan_limit"),
        case("database-delete", {}, "confirm"),
        *(case("database-delete", {"confirm": bad}, "confirm") for bad in ("reports", "ALPHA-DB", 5, [DATABASE])),
        case("database-attach", {}, "app"),
        case("database-attach", {"env_name": "REPORTS_URL"}, "app"),
        *(case("database-attach", {"app": bad}, "app") for bad in ("nope", 5, None, LONG_SLUG)),
        *(
            case("database-attach", {"app": "api", "env_name": bad}, "env_name")
            for bad in ("1BAD", "A-B", "A\n", "", "PORT", "PANDASTACK_DB", "A" * 129, 5, None)
        ),
        case("database-attach", {"app": "api"}, None, status=409, code="already_attached"),
        case("backup-restore", {}, "confirm"),
        *(case("backup-restore", {"confirm": bad}, "confirm") for bad in ("reports", "alpha", 5, [DATABASE])),
    ]


RULE_BODY = {"name": "slow", "scope": "app", "app": "api", "metric": "latency_p95_ms", "threshold": 500}
# Condition values the serializer or the service refuses: all tried on create, a few on update
# (which shares both checks).
BAD_RULE_SETTINGS = {
    "metric": ["happiness", "", None, ["error_rate"]],
    "operator": ["ne", "==", 1],
    "threshold": ["5", True, None, [5], "NaN"],
    "window_seconds": [9, 86401, "x", None],
    "for_seconds": [-1, 86401, "x"],
    "severity": ["loud", ""],
    "enabled": ["maybe", None],
    "channels": ["alpha-hook", [1], ["nope"], [CHANNEL, "nope"], ["c"] * 21],
    "event_kind": ["cron.exploded", 5],
}


def rule_cases() -> list[Any]:
    """Bad alert rules: names (taken included); scopes and the app, cron job or project each needs
    (unknown ones too); metrics a scope cannot have; event kinds missing, unknown, about another
    kind of resource or given for a metric; the table of bad condition values on create, a few on
    update, which cannot change what a rule watches either; deletes without the right confirmation."""
    valid = RULE_BODY
    no_app = {k: v for k, v in valid.items() if k != "app"}
    job_rule = {**no_app, "scope": "cron_job", "cron_job": CRON_JOB, "metric": "event", "event_kind": "cron.run_failed"}
    project_rule = {**no_app, "scope": "project", "project": "web", "metric": "event", "event_kind": "health.down"}
    return [
        *slug_cases("alert-rule-create", valid, duplicate=RULE, key="name"),
        *(case("alert-rule-create", {**valid, "scope": bad}, "scope") for bad in ("galaxy", "", None, ["app"])),
        case("alert-rule-create", {k: v for k, v in valid.items() if k != "scope"}, "scope"),
        case("alert-rule-create", {k: v for k, v in valid.items() if k != "metric"}, "metric"),
        case("alert-rule-create", {k: v for k, v in valid.items() if k != "threshold"}, "threshold"),
        case("alert-rule-create", no_app, "app"),
        *(case("alert-rule-create", {**valid, "app": bad}, "app") for bad in ("nope", 7, None, LONG_SLUG)),
        case("alert-rule-create", {**valid, "project": "nope"}, "project"),
        case("alert-rule-create", {**valid, "cron_job": CRON_JOB}, "cron_job"),
        case("alert-rule-create", {**job_rule, "cron_job": "nope"}, "cron_job"),
        case("alert-rule-create", {k: v for k, v in job_rule.items() if k != "cron_job"}, "cron_job"),
        case("alert-rule-create", {**job_rule, "metric": "error_rate", "event_kind": ""}, "metric"),
        case("alert-rule-create", {**job_rule, "event_kind": "container.crashed"}, "event_kind"),
        case("alert-rule-create", {**job_rule, "app": "api"}, "app"),
        case("alert-rule-create", {k: v for k, v in project_rule.items() if k != "project"}, "project"),
        case("alert-rule-create", {**project_rule, "metric": "cpu_percent", "event_kind": ""}, "metric"),
        case("alert-rule-create", {**valid, "metric": "event"}, "event_kind"),
        case("alert-rule-create", {**valid, "metric": "event", "event_kind": "cron.run_failed"}, "event_kind"),
        case("alert-rule-create", {**valid, "event_kind": "health.down"}, "event_kind"),
        *(
            case("alert-rule-create", {**valid, field: value}, field)
            for field, values in BAD_RULE_SETTINGS.items()
            for value in values
        ),
        *(
            case("alert-rule-update", {field: value}, field)
            for field, value in (
                ("threshold", "5"),
                ("window_seconds", 5),
                ("metric", "happiness"),
                ("event_kind", "deployment.failed"),  # not with a metric
                ("channels", ["nope"]),
                ("enabled", "maybe"),
            )
        ),
        case("alert-rule-update", {"metric": "event"}, "event_kind"),
        *(
            case("alert-rule-update", {field: value, "threshold": 1}, field)
            for field, value in (("name", "renamed"), ("scope", "project"), ("app", "api"), ("project", "web"))
        ),
        case("alert-rule-delete", {}, "confirm"),
        case("alert-rule-delete", {"confirm": "alpha"}, "confirm"),
        case("alert-rule-delete", {"confirm": [RULE]}, "confirm"),
    ]


def incident_cases() -> list[Any]:
    """Bad incident updates: titles empty, too long or not strings; post-mortems not strings or too
    long."""
    return [
        *(case("incident-update", {"title": bad}, "title") for bad in ("", "   ", "t" * 201, 5, None, ["x"])),
        *(case("incident-update", {"postmortem": bad}, "postmortem") for bad in (None, 5, {"a": "b"})),
        case("incident-update", {"postmortem": "p" * 100_001}, "postmortem", label="postmortem over 100,000 chars"),
        case("incident-update", {"title": "Fine", "postmortem": ["x"]}, "postmortem"),
    ]


def resolve(body: Any, ids: dict[str, Any]) -> Any:
    """Replace "@name" placeholders with the world's ids (user ids are known only at run time);
    other strings starting with "@" (cron shortcuts such as "@daily") stay as they are."""
    if isinstance(body, str) and body.startswith("@") and body[1:] in ids:
        return ids[body[1:]]
    if isinstance(body, list):
        return [resolve(item, ids) for item in body]
    if isinstance(body, dict):
        return {key: resolve(value, ids) for key, value in body.items()}
    return body


BAD_PAYLOADS = [
    # --- teams --------------------------------------------------------------------------------
    *slug_cases("team-create", {"slug": "delta", "name": "Delta"}, duplicate="bravo"),
    case("team-create", {"slug": "delta", "name": LONG_NAME}, "name"),
    case("team-create", {"slug": "delta", "name": ["Delta"]}, "name"),
    case("team-update", {}, "name"),
    case("team-update", {"name": LONG_NAME}, "name"),
    case("team-update", {"name": ""}, "name"),
    case("team-update", {"name": {"en": "Alpha"}}, "name"),
    case("team-delete", {}, "confirm"),
    case("team-delete", {"confirm": "bravo"}, "confirm"),
    case("team-delete", {"confirm": ["alpha"]}, "confirm"),
    case("team-transfer", {}, "user"),
    case("team-transfer", {"user": "abc"}, "user"),
    case("team-transfer", {"user": [1]}, "user"),
    case("team-transfer", {"user": "@stranger"}, "user"),
    case("team-transfer", {"user": "@owner"}, "user"),
    case("team-transfer", {"user": "@sa_user"}, "user"),
    # --- members ------------------------------------------------------------------------------
    case("member-add", {"role": "viewer"}, "email"),
    case("member-add", {"email": "new@example.com"}, "role"),
    case("member-add", {"email": "not-an-email", "role": "viewer"}, "email"),
    case("member-add", {"email": ["new@example.com"], "role": "viewer"}, "email"),
    case("member-add", {"email": f"{'e' * 140}@example.com", "role": "viewer"}, "email"),
    case("member-add", {"email": "new@example.com", "role": "superuser"}, "role"),
    case("member-add", {"email": "new@example.com", "role": ["viewer"]}, "role"),
    case(
        "member-add",
        {"email": "viewer@alpha.example.com", "role": "viewer"},
        "email",
        status=409,
        code="conflict",
    ),
    case("member-update", {}, "role"),
    case("member-update", {"role": "god"}, "role"),
    case("member-update", {"role": 5}, "role"),
    # --- projects -----------------------------------------------------------------------------
    *slug_cases("project-create", {"slug": "api", "name": "API"}, duplicate="web"),
    case("project-create", {"slug": "api", "name": LONG_NAME}, "name"),
    case("project-create", {"slug": "api", "description": "d" * 501}, "description"),
    case("project-update", {"name": LONG_NAME}, "name"),
    case("project-update", {"name": ["Web"]}, "name"),
    case("project-update", {"name": ""}, "name"),
    case("project-update", {"description": "d" * 501}, "description"),
    case("project-delete", {}, "confirm"),
    case("project-delete", {"confirm": "api"}, "confirm"),
    # --- grants -------------------------------------------------------------------------------
    *grant_cases("grant-create"),
    # --- groups -------------------------------------------------------------------------------
    *slug_cases("group-create", {"slug": "data", "name": "Data"}, duplicate="ops"),
    case("group-create", {"slug": "data", "name": LONG_NAME}, "name"),
    case("group-create", {"slug": "data", "members": 5}, "members"),
    case("group-create", {"slug": "data", "members": "1,2"}, "members"),
    case("group-create", {"slug": "data", "members": ["x"]}, "members"),
    case("group-create", {"slug": "data", "members": ["@stranger"]}, "members"),
    case("group-update", {"name": LONG_NAME}, "name"),
    case("group-update", {"members": {"id": 1}}, "members"),
    case("group-update", {"members": ["@viewer", "@stranger"]}, "members"),
    # --- service accounts ---------------------------------------------------------------------
    *slug_cases("service-account-create", {"slug": "deployer", "role": "developer"}, duplicate="ci"),
    case("service-account-create", {"slug": "deployer"}, "role"),
    case("service-account-create", {"slug": "deployer", "role": "owner"}, "role"),
    case("service-account-create", {"slug": "deployer", "role": "root"}, "role"),
    case(
        "service-account-create",
        {"slug": "deployer", "role": "viewer", "description": 7 * [1]},
        "description",
    ),
    case(
        "service-account-create",
        {"slug": "deployer", "role": "viewer", "description": "d" * 501},
        "description",
    ),
    case("service-account-update", {"role": "owner"}, "role"),
    case("service-account-update", {"role": ["admin"]}, "role"),
    case("service-account-update", {"description": "d" * 501}, "description"),
    # --- tokens -------------------------------------------------------------------------------
    case("token-create", {"scopes": ["read"]}, "name"),
    case("token-create", {"name": LONG_NAME}, "name"),
    case("token-create", {"name": "ci", "scopes": "deploy"}, "scopes"),
    case("token-create", {"name": "ci", "scopes": ["fly"]}, "scopes"),
    case("token-create", {"name": "ci", "scopes": ["read"] * 7}, "scopes"),
    case("token-create", {"name": "ci", "projects": "web"}, "projects"),
    case("token-create", {"name": "ci", "projects": ["nope"]}, "projects"),
    case("token-create", {"name": "ci", "expires_in_days": 0}, "expires_in_days"),
    case("token-create", {"name": "ci", "expires_in_days": 100000}, "expires_in_days"),
    case("token-create", {"name": "ci", "expires_in_days": "soon"}, "expires_in_days"),
    case("token-create", {"name": "ci", "user": "abc"}, "user"),
    case("token-create", {"name": "ci", "user": "@stranger"}, "user"),
    # --- apps ---------------------------------------------------------------------------------
    *slug_cases("app-create", {"name": "worker", "project": "web"}, duplicate="api", key="name"),
    case("app-create", {"name": "worker"}, "project"),
    case("app-create", {"name": "worker", "project": "nope"}, "project"),
    case("app-create", {"name": "worker", "project": 7}, "project"),
    case("app-create", {"name": "worker", "project": LONG_SLUG}, "project"),
    *app_setting_cases("app-create", {"name": "worker", "project": "web"}),
    case("app-create", {"name": "worker", "project": "web", "replicas": 3}, None, status=403, code="quota_exceeded"),
    case("app-create", {"name": "worker", "project": "web", "memory_mb": 513}, None, status=403, code="quota_exceeded"),
    *app_setting_cases("app-update", {}),
    case("app-update", {"replicas": 3}, None, status=403, code="quota_exceeded"),
    case("app-delete", {}, "confirm"),
    case("app-delete", {"confirm": "web"}, "confirm"),
    case("app-delete", {"confirm": "API"}, "confirm"),
    case("app-delete", {"confirm": ["api"]}, "confirm"),
    case("app-scale", {}, "replicas"),
    *(case("app-scale", {"replicas": bad}, "replicas") for bad in (-1, 51, "x", None, [1])),
    case("app-scale", {"replicas": 3}, None, status=403, code="quota_exceeded"),
    *(case("app-rollback", {"to": bad}, "to") for bad in (0, -1, "x", [1])),
    case("app-rollback", {"to": 99}, "to"),  # no deployment #99
    case("app-rollback", {"to": 10**20}, "to"),  # not even a number the database can store
    case("app-rollback", {"to": 2}, "to"),  # #2 failed: it never ran
    case("app-rollback", {}, "to"),  # nothing earlier than the live #1
    case("app-rollback", {"to": None}, "to"),
    # --- deployments --------------------------------------------------------------------------
    case("deployment-create", {}, "image"),
    *(
        case("deployment-create", {"image": bad}, "image")
        for bad in ("", "bad image with spaces", "i" * 501, 123, None, ["busybox"], "-busybox", "a\x00b")
    ),
    # --- app grants ---------------------------------------------------------------------------
    *grant_cases("app-grant-create"),
    # --- cron jobs ----------------------------------------------------------------------------
    *cron_cases(),
    # --- registry credentials -----------------------------------------------------------------
    *registry_credential_cases(),
    # --- notification channels ----------------------------------------------------------------
    *channel_cases(),
    # --- alert rules and incidents ------------------------------------------------------------
    *rule_cases(),
    *incident_cases(),
    # --- databases ----------------------------------------------------------------------------
    *database_cases(),
]


def test_every_write_endpoint_has_bad_payload_cases() -> None:
    covered = {param.values[0] for param in [*BAD_PAYLOADS, *VARIABLE_PAYLOADS]}
    assert covered == set(ENDPOINTS)


def send(world: dict[str, Any], endpoint: str, body: Any, **kwargs: Any) -> Any:
    method, name, params = ENDPOINTS[endpoint]
    body = resolve(body, world)
    client = world["client"]
    url = ROUTES[name].url(**resolve(params, world))
    if "content_type" in kwargs:
        return getattr(client, method)(url, body, **kwargs)
    return getattr(client, method)(url, body, format="json")


def assert_refused(world: dict[str, Any], endpoint: str, body: Any, status: int, code: str, field: str | None) -> Any:
    """Send a bad payload: the one error shape with `status` and `code`, messages for `field`, and
    not a row added, removed or changed. Returns the response."""
    before = row_snapshot()
    response = send(world, endpoint, body)
    error = assert_error(response, status, code)
    if field is not None:
        assert field in error["fields"], error
        assert all(isinstance(m, str) and m for m in error["fields"][field]), error
    assert row_snapshot() == before
    return response


@pytest.mark.parametrize(("endpoint", "body", "status", "code", "field"), BAD_PAYLOADS)
def test_bad_payload_is_refused_with_the_field_named_and_nothing_written(
    world: dict[str, Any], endpoint: str, body: Any, status: int, code: str, field: str | None
) -> None:
    assert_refused(world, endpoint, body, status, code, field)


@pytest.mark.parametrize(("endpoint", "body", "status", "code", "field"), VARIABLE_PAYLOADS)
def test_bad_variables_payload_is_refused_with_the_field_named_nothing_written_and_no_value_repeated(
    world: dict[str, Any], variables: None, endpoint: str, body: Any, status: int, code: str, field: str | None
) -> None:
    response = assert_refused(world, endpoint, body, status, code, field)
    assert SENTINEL not in response.content.decode()


@pytest.mark.parametrize(
    ("level", "name"),
    [
        *((level, name) for level in VARIABLE_LEVELS for name in ("NO_SUCH_VAR", "GONE_VAR", "plain_var")),
        ("project", "TEAM_ONLY_VAR"),
        ("app", "TEAM_ONLY_VAR"),
    ],
)
def test_revealing_a_variable_not_set_at_that_level_is_404_and_writes_nothing(
    world: dict[str, Any], variables: None, level: str, name: str
) -> None:
    before = row_snapshot()
    url = ROUTES[f"{level}-variable-reveal"].url(**VARIABLE_LEVELS[level], variable=name)
    assert_error(world["client"].post(url), 404, "not_found")
    assert row_snapshot() == before  # not even an audit event


def test_an_app_beyond_the_plans_app_count_is_403_quota_exceeded_and_writes_nothing(
    world: dict[str, Any], team_a: TeamWorld
) -> None:
    plan = team_a.team.plan
    ctx = resolve_team(Actor(user=team_a.user("owner"), via="test"), "alpha")
    for i in range(plan.max_apps - 1):  # "api" is the first
        deployment_services.app_create(ctx=ctx, project=team_a.project, name=f"app{i}")
    before = row_snapshot()
    error = assert_error(send(world, "app-create", {"name": "worker", "project": "web"}), 403, "quota_exceeded")
    assert (error["limit"], error["maximum"], error["current"], error["requested"], error["plan"]) == (
        "max_apps",
        plan.max_apps,
        plan.max_apps,
        1,
        plan.slug,
    )
    assert row_snapshot() == before


def test_a_cron_job_beyond_the_plans_cron_job_count_is_403_quota_exceeded_and_writes_nothing(
    world: dict[str, Any], team_a: TeamWorld
) -> None:
    plan = team_a.team.plan
    for i in range(plan.max_cron_jobs - 1):  # "alpha-cron" is the first
        cron_job(team_a, f"job{i}")
    before = row_snapshot()
    error = assert_error(send(world, "cron-job-create", CRON_JOB_BODY), 403, "quota_exceeded")
    assert (error["limit"], error["maximum"], error["current"], error["requested"], error["plan"]) == (
        "max_cron_jobs",
        plan.max_cron_jobs,
        plan.max_cron_jobs,
        1,
        plan.slug,
    )
    assert row_snapshot() == before


def test_running_a_cron_job_whose_app_has_no_live_release_is_409_and_writes_nothing(
    world: dict[str, Any], team_a: TeamWorld
) -> None:
    idle = App.objects.create(team=team_a.team, project=team_a.project, name="idle")
    cron_job(team_a, "idle-cron", app=idle, image="")
    before = row_snapshot()
    url = ROUTES["cron-job-run"].url(**A, cron_job="idle-cron")
    assert "idle" in assert_error(world["client"].post(url), 409, "no_live_release")["message"]
    assert row_snapshot() == before  # no run queued, not even an audit event


def test_a_database_beyond_the_plans_database_count_is_403_quota_exceeded_and_writes_nothing(
    world: dict[str, Any], team_a: TeamWorld
) -> None:
    plan = type(team_a.team.plan).objects.get(pk=team_a.team.plan_id)
    plan.max_databases = 1  # "alpha-db" is the one
    plan.save(update_fields=["max_databases"])
    before = row_snapshot()
    error = assert_error(send(world, "database-create", DATABASE_BODY), 403, "quota_exceeded")
    assert (error["limit"], error["maximum"], error["current"], error["requested"]) == ("max_databases", 1, 1, 1)
    assert row_snapshot() == before


def test_restoring_a_failed_backup_is_409_and_writes_nothing(world: dict[str, Any]) -> None:
    before = row_snapshot()
    url = ROUTES["backup-restore"].url(**A, database=DATABASE, backup=BACKUP + 1)
    error = assert_error(world["client"].post(url, {"confirm": DATABASE}, format="json"), 409, "backup_not_succeeded")
    assert "#2" in error["message"]
    assert row_snapshot() == before


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_malformed_json_is_a_parse_error_and_writes_nothing(world: dict[str, Any], endpoint: str) -> None:
    before = row_snapshot()
    response = send(world, endpoint, '{"slug": "x", ', content_type="application/json")
    assert_error(response, 400, "parse_error")
    assert row_snapshot() == before


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_non_json_content_type_is_415_and_writes_nothing(world: dict[str, Any], endpoint: str) -> None:
    before = row_snapshot()
    response = send(world, endpoint, "slug=x&name=y", content_type="application/x-www-form-urlencoded")
    assert_error(response, 415, "unsupported_media_type")
    assert row_snapshot() == before


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_empty_body_is_never_a_500(world: dict[str, Any], endpoint: str) -> None:
    # An empty body is {}: refused where a field is required, a no-op update where none is.
    response = send(world, endpoint, "", content_type="application/json")
    assert response.status_code < 500
    if response.status_code >= 400:
        assert_error(response, response.status_code, "invalid")


@pytest.mark.parametrize("body", ["[]", '[{"slug": "x", "name": "x"}]'], ids=["empty-array", "array"])
@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_array_body_is_refused_and_writes_nothing(world: dict[str, Any], endpoint: str, body: str) -> None:
    before = row_snapshot()
    error = assert_error(send(world, endpoint, body, content_type="application/json"), 400, "invalid")
    assert "non_field_errors" in error["fields"]
    assert row_snapshot() == before
