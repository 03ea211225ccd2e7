"""Issue 11, item 10: images cannot cross teams. A team's registry login pulls its private images, and a
copy of a private image that one team's pull left in the Docker Engine is never handed to another team.

The attack is real: a distribution registry (Debian's ``docker-registry``) with htpasswd authentication
runs on loopback, holding a private image the host's Docker has no login for. Team alpha, with its
credential, deploys it through the API and a real Celery worker; team bravo then deploys the very same
reference (the engine now has it cached) without a credential, or with a wrong one.

Seen failing before the fix: with the engine's old rule (pull only when the image is absent) bravo's
deployments went live on alpha's cached copy — ``…without_credentials…`` and ``…wrong_credentials…``
failed with ('live', ''); the cron scheduler, which called ``engine.run`` on the cached copy, ran
bravo's job (``test_a_cron_run_…`` failed with ('succeeded', '')). The credential API did not exist
(``test_the_password_never_leaves_the_platform`` and ``test_another_teams_credential_is_a_404`` found
no route). Now every use of an image on a registry some team logs in to asks the registry again, with
the deploying team's own login or none.

The registry is on 127.0.0.1, which the platform refuses by default: these tests run with
PANDASTACK_IMAGE_ALLOW_PRIVATE_REGISTRIES on (fixture ``registry_worker``), as an operator with an
internal registry would.
"""

from typing import Any

import pytest

from apps.audit.models import AuditEvent
from apps.cron.models import RunStatus
from apps.cron.services import cron_job_run_now
from apps.deployments import orchestrator
from apps.deployments.models import Deployment, DeploymentEvent
from apps.registries.models import RegistryCredential
from apps.registries.selectors import image_pull_for
from apps.registries.services import registry_credential_create
from apps.runtime.engine import DockerEngine, ImagePull, RegistryAuth
from apps.secrets import crypto
from tests.conftest import TeamWorld, assert_error, make_team, make_token, token_client
from tests.cron.conftest import cron_world, ctx_of, finished  # noqa: F401
from tests.support.platform_fixtures import wait_deployment

BODY_APP = {"name": "web", "project": "web", "port": 8080, "health_check_path": "/healthz"}


def client_of(world: TeamWorld) -> Any:
    _, raw = make_token(world.team, world.user("owner"))
    return token_client(raw)


def login(client: Any, team: str, registry: str, username: str, password: str) -> dict:
    body = {"registry": registry, "username": username, "password": password}
    response = client.post(f"/api/v1/teams/{team}/registry-credentials/", body, format="json")
    assert response.status_code == 201, response.json()
    return response.json()


def deploy(client: Any, team: str, image: str, worker: Any) -> Deployment:
    response = client.post(f"/api/v1/teams/{team}/apps/", BODY_APP, format="json")
    assert response.status_code in (201, 400), response.json()  # 400: the app exists already
    response = client.post(f"/api/v1/teams/{team}/apps/web/deployments/", {"image": image}, format="json")
    assert response.status_code == 202, response.json()
    deployment = Deployment.objects.get(app__team__slug=team, app__name="web", number=response.json()["id"])
    return wait_deployment(deployment.pk, worker=worker, timeout=90)


@pytest.fixture
def alpha(platform) -> TeamWorld:
    return make_team("alpha")


@pytest.fixture
def bravo(platform) -> TeamWorld:
    return make_team("bravo")


@pytest.fixture
def alpha_live(alpha, private_registry, registry_worker, docker_engine) -> Deployment:
    """alpha logged in to the registry and deployed its private image: live, and now cached locally."""
    client = client_of(alpha)
    login(client, "alpha", private_registry.host, private_registry.username, private_registry.password)
    deployment = deploy(client, "alpha", private_registry.image, registry_worker)
    assert deployment.status == "live", (deployment.status, deployment.reason)
    assert docker_engine.image_digest(private_registry.image) is not None  # the copy bravo must not get
    return deployment


def test_a_team_deploys_its_private_image_with_its_own_credential(alpha_live, private_registry, platform):
    messages = [e.message for e in alpha_live.events.all()]
    assert any("with the team's registry login" in m for m in messages), messages
    assert platform.get("web.alpha.localhost").text.startswith("private ")


def test_a_team_without_credentials_cannot_use_another_teams_cached_private_image(
    alpha_live, bravo, private_registry, registry_worker, docker_engine
):
    # Failed before the fix: the engine found alpha's copy locally and bravo's deployment went live.
    deployment = deploy(client_of(bravo), "bravo", private_registry.image, registry_worker)
    assert deployment.status == "failed", (deployment.status, deployment.reason)
    assert "image not found" in deployment.reason and private_registry.image in deployment.reason
    assert any(word in deployment.reason.lower() for word in ("unauthorized", "no basic auth", "authentication"))
    assert not deployment.containers.exists()
    # alpha's copy is still there: it was refused, not missing.
    assert docker_engine.image_digest(private_registry.image) is not None


def test_a_team_with_wrong_credentials_cannot_use_another_teams_cached_private_image(
    alpha_live, bravo, private_registry, registry_worker
):
    client = client_of(bravo)
    wrong = "wrong-" + private_registry.password
    login(client, "bravo", private_registry.host, private_registry.username, wrong)
    deployment = deploy(client, "bravo", private_registry.image, registry_worker)
    assert deployment.status == "failed", (deployment.status, deployment.reason)
    assert "unauthorized" in deployment.reason.lower() or "authentication" in deployment.reason.lower()
    assert wrong not in deployment.reason
    assert not deployment.containers.exists()


def test_a_team_cannot_start_another_teams_cached_private_image_by_its_local_id(
    alpha_live, bravo, private_registry, registry_worker, docker_engine
):
    # Failed before the fix: an image id resolves to the cached copy and no registry is asked ('live').
    image_id = docker_engine.client.images.get(private_registry.image).id
    client = client_of(bravo)
    for reference in (image_id, image_id.removeprefix("sha256:")[:12]):
        deployment = deploy(client, "bravo", reference, registry_worker)
        assert deployment.status == "failed", (reference, deployment.status, deployment.reason)
        assert "local image id" in deployment.reason
        assert not deployment.containers.exists()


def test_the_password_never_leaves_the_platform(alpha, bravo, alpha_live, private_registry, registry_worker):
    # Failed before the fix: there was no credential API (the route was a 404).
    password = private_registry.password
    client = client_of(alpha)
    base = "/api/v1/teams/alpha/registry-credentials/"
    seen = [
        client.get(base),
        client.get(f"{base}{private_registry.host}/"),
        client.patch(f"{base}{private_registry.host}/", {"password": password}, format="json"),
        # A duplicate is refused without quoting the body.
        client.post(base, {"registry": private_registry.host, "username": "x", "password": password}, format="json"),
        client.get("/api/v1/teams/alpha/audit-events/"),
        client.get(f"/api/v1/teams/alpha/apps/web/deployments/{alpha_live.number}/events/"),
    ]
    assert [r.status_code for r in seen] == [200, 200, 200, 400, 200, 200]
    for response in seen:
        assert password not in response.content.decode()
    listed = seen[0].json()
    rows = listed["results"] if isinstance(listed, dict) else listed
    assert rows == [
        {"registry": private_registry.host, "username": private_registry.username, "created_at": rows[0]["created_at"],
         "updated_at": rows[0]["updated_at"]}
    ]  # fmt: skip
    # Stored only encrypted; the audit rows and deployment events name the host, never the password.
    stored = RegistryCredential.objects.get(team=alpha.team)
    assert password not in stored.password_encrypted and crypto.decrypt(stored.password_encrypted) == password
    assert password not in repr(stored) and password not in str(stored)
    audited = AuditEvent.objects.filter(action__startswith="registry_credential.").order_by("pk")
    actions = list(audited.values_list("action", "data"))
    assert [a for a, _ in actions] == ["registry_credential.create", "registry_credential.update"]
    assert password not in repr(actions)
    assert password not in repr(list(DeploymentEvent.objects.values_list("message", flat=True)))
    # The worker decrypted it to pull, and logged neither it nor the pull's auth.
    assert password not in registry_worker.log_path.read_text(errors="replace")
    assert password not in repr(image_pull_for(team=alpha.team, image=private_registry.image))
    assert password not in repr(RegistryAuth(username="u", password=password))


def test_another_teams_credential_is_a_404(alpha, bravo, private_registry, registry_worker):
    login(client_of(alpha), "alpha", private_registry.host, private_registry.username, private_registry.password)
    intruder = client_of(bravo)
    for team in ("alpha", "bravo"):
        url = f"/api/v1/teams/{team}/registry-credentials/{private_registry.host}/"
        assert_error(intruder.get(url), 404)
        assert_error(intruder.patch(url, {"password": "mine"}, format="json"), 404)
        assert_error(intruder.delete(url), 404)
    assert intruder.get("/api/v1/teams/bravo/registry-credentials/").json()["results"] == []
    assert_error(intruder.get("/api/v1/teams/alpha/registry-credentials/"), 404)
    assert crypto.decrypt(RegistryCredential.objects.get().password_encrypted) == private_registry.password


def test_a_viewer_sees_hosts_but_cannot_change_credentials(alpha, private_registry, registry_worker):
    login(client_of(alpha), "alpha", private_registry.host, private_registry.username, private_registry.password)
    _, raw = make_token(alpha.team, alpha.user("viewer"), scopes=["read"])
    viewer = token_client(raw)
    url = f"/api/v1/teams/alpha/registry-credentials/{private_registry.host}/"
    assert viewer.get(url).json()["username"] == private_registry.username
    assert_error(viewer.patch(url, {"password": "x"}, format="json"), 403)
    assert_error(viewer.delete(url), 403)
    body = {"registry": "ghcr.io", "username": "u", "password": "p"}
    assert_error(viewer.post("/api/v1/teams/alpha/registry-credentials/", body, format="json"), 403)


# --- cron runs (the scheduler, in this process) ------------------------------------------------------
@pytest.fixture
def private_engine(monkeypatch, settings) -> DockerEngine:
    """The scheduler's engine with private registries allowed (the test registry is on loopback)."""
    settings.PANDASTACK_IMAGE_ALLOW_PRIVATE_REGISTRIES = True
    engine = DockerEngine(allow_private_registries=True)
    monkeypatch.setattr(orchestrator, "engine", lambda: engine)
    return engine


def test_a_cron_run_uses_its_own_teams_login_never_another_teams_cached_copy(
    cron_world,  # noqa: F811
    private_registry,
    private_engine,
):
    registry = private_registry
    owner = make_team("alpha")
    registry_credential_create(
        ctx=ctx_of(owner), registry=registry.host, username=registry.username, password=registry.password
    )
    # alpha's pull leaves a copy in the engine.
    private_engine.ensure_image(
        registry.image, auth=RegistryAuth(username=registry.username, password=registry.password), always_pull=True
    )
    job = cron_world.job("steal", image=registry.image, command=["true"])
    ctx = ctx_of(cron_world.world)
    # Failed before the fix: the scheduler started the container from alpha's copy ("succeeded").
    run = finished(cron_job_run_now(ctx=ctx, job=job))
    assert run.status == RunStatus.FAILED, (run.status, run.reason)
    assert "no basic auth credentials" in run.reason or "unauthorized" in run.reason.lower()
    # With its own login, the team's run pulls and runs.
    registry_credential_create(ctx=ctx, registry=registry.host, username=registry.username, password=registry.password)
    run = finished(cron_job_run_now(ctx=ctx, job=job))
    assert run.status == RunStatus.SUCCEEDED, (run.status, run.reason)


# --- the policy, without the engine ----------------------------------------------------------------
def test_hosts_have_one_spelling_and_decide_how_each_team_pulls(db):
    alpha, bravo = make_team("alpha"), make_team("bravo")
    client = client_of(alpha)
    assert login(client, "alpha", "GHCR.IO", "ci", "pw-ghcr")["registry"] == "ghcr.io"
    assert login(client, "alpha", "index.docker.io", "hub", "pw-hub")["registry"] == "docker.io"
    assert client.get("/api/v1/teams/alpha/registry-credentials/GHCR.IO/").json()["registry"] == "ghcr.io"
    duplicate = {"registry": "ghcr.io", "username": "x", "password": "y"}
    assert_error(client.post("/api/v1/teams/alpha/registry-credentials/", duplicate, format="json"), 400)

    own = image_pull_for(team=alpha.team, image="ghcr.io/acme/app:1")
    assert own.always_pull and own.auth == RegistryAuth(username="ci", password="pw-ghcr")
    hub = image_pull_for(team=alpha.team, image="acme/app")  # Docker Hub, named without a host
    assert hub.always_pull and hub.auth == RegistryAuth(username="hub", password="pw-hub")
    # bravo has no login to a host alpha logs in to: it asks the registry anonymously, every time.
    other = image_pull_for(team=bravo.team, image="ghcr.io/acme/app:1")
    assert other.always_pull and other.auth == RegistryAuth.anonymous() and other.auth.config() == {}
    # A registry nobody logs in to: the local copy serves, as before.
    assert image_pull_for(team=bravo.team, image="quay.io/org/app:1") == ImagePull()
