"""Attack: make the platform itself leak a secret. A tenant's container prints its secret
environment value, and the attacker (or a viewer, or anyone who later reads a log the platform
captured) reads it back through the platform's own side doors: the deployment's failure tail (its
reason and events), the runtime logs endpoint, and a cron run's log. The platform knows every
secret value it injects, so each of those places must carry the mask instead — and a viewer (no
view-logs capability) must see no log tail at all.

Real Docker Engine, real worker, real HAProxy (tests/support/platform_fixtures.py's `platform`)."""

import json
import threading

import pytest

from apps.cron.models import CronJob, CronRun, RunStatus
from apps.cron.services import cron_job_run_now
from apps.deployments.models import Deployment
from apps.secrets.masking import MASK
from tests.conftest import make_team, make_token, token_client
from tests.cron.conftest import ctx_of, finished, started
from tests.e2e.test_deploy import create_app, deploy, owner_client
from tests.support.platform_fixtures import wait_for

BASE = "/api/v1/teams/alpha"
SECRET = "sk-live-7f3a9c1e5b2d4680"
TAIL_HEADER = "Last log lines"


@pytest.fixture
def world(platform):
    return make_team("alpha")


def set_secret(client) -> None:
    body = {"variables": {"API_TOKEN": SECRET}, "secret": True, "restart": False}
    response = client.post(f"{BASE}/variables/", body, format="json")
    assert response.status_code == 200, response.json()


def viewer_client(world):
    _, raw = make_token(world.team, world.user("viewer"), scopes=["read"])
    return token_client(raw)


def test_a_failed_deploy_keeps_the_secret_out_of_its_tail_and_viewers_see_no_tail(platform, world, web_image):
    client = owner_client(world)
    set_secret(client)
    # Prints its secret on stdout, then never listens: the health check times out.
    create_app(client, "leaky", command=["/bin/sh", "-c", "echo token is $API_TOKEN; echo $API_TOKEN; sleep 600"])
    failed = deploy(client, web_image, app="leaky", platform=platform, expect="failed")

    # What is stored: the tail is there (it is useful) but masked.
    assert TAIL_HEADER in failed.reason and f"token is {MASK}" in failed.reason, failed.reason
    assert SECRET not in failed.reason
    messages = "\n".join(failed.events.values_list("message", flat=True))
    assert f"token is {MASK}" in messages and SECRET not in messages

    # What is served to someone who may read logs: the masked tail.
    url = f"{BASE}/apps/leaky/deployments/{failed.number}/"
    owner_view = client.get(url).json()
    assert f"token is {MASK}" in owner_view["reason"] and SECRET not in json.dumps(owner_view)
    owner_events = client.get(f"{url}events/").json()
    assert any(f"token is {MASK}" in e["message"] for e in owner_events["results"])

    # A viewer (and a token without the logs scope) sees that it failed and why, but no tail.
    for stranger in (viewer_client(world), owner_client(world, scopes=["read", "deploy"])):
        seen = stranger.get(url).json()
        assert seen["status"] == "failed" and "Health check did not pass" in seen["reason"], seen
        assert TAIL_HEADER not in seen["reason"] and "token is" not in seen["reason"], seen["reason"]
        events = stranger.get(f"{url}events/").json()["results"]
        text = "\n".join(e["message"] for e in events)
        assert "Failed:" in text and TAIL_HEADER not in text and "token is" not in text, text
        listed = stranger.get(f"{BASE}/apps/leaky/deployments/").json()["results"]
        assert all(TAIL_HEADER not in d["reason"] for d in listed), listed


def test_runtime_logs_and_cron_run_logs_carry_the_mask(platform, world, web_image):
    client = owner_client(world)
    set_secret(client)
    # Prints its secret, then serves normally (the image's own start script).
    create_app(client, "web", command=["/bin/sh", "-c", "echo token is $API_TOKEN; exec /bin/sh /start.sh"])
    deploy(client, web_image, platform=platform)

    # The runtime logs endpoint, once...
    served = b"".join(client.get(f"{BASE}/apps/web/logs/?tail=100").streaming_content).decode()
    assert f"token is {MASK}" in served and SECRET not in served, served

    # ...and followed.
    lines: list[str] = []

    def follow() -> None:
        stream = client.get(f"{BASE}/apps/web/logs/?tail=100&follow=1")
        for chunk in stream.streaming_content:
            lines.append(chunk.decode())
            if any("token is" in line for line in lines):
                stream.close()
                return

    reader = threading.Thread(target=follow, daemon=True)
    reader.start()
    wait_for(lambda: any("token is" in line for line in lines), timeout=20, what="the followed log")
    reader.join(5)
    followed = "".join(lines)
    assert f"token is {MASK}" in followed and SECRET not in followed, followed

    # A cron run with the app's environment: its log while it runs, and the tail it keeps.
    job = CronJob.objects.create(
        team=world.team,
        project=world.project,
        app=Deployment.objects.get(app__name="web", status="live").app,
        name="leaky-cron",
        command=["sh", "-c", "echo cron sees $API_TOKEN; sleep 3"],
        schedule="0 0 1 1 *",
    )
    run = started(cron_job_run_now(ctx=ctx_of(world), job=job))
    logs_url = f"{BASE}/cron-jobs/leaky-cron/runs/{run.pk}/logs/"

    def running_log() -> str | None:
        body = client.get(logs_url).json()
        return body["log"] if body["status"] == RunStatus.RUNNING and "cron sees" in body["log"] else None

    live_log = wait_for(running_log, timeout=20, what="the running cron run's log")
    assert f"cron sees {MASK}" in live_log and SECRET not in live_log, live_log

    run = finished(run)
    assert run.status == RunStatus.SUCCEEDED, (run.status, run.reason)
    stored = CronRun.objects.get(pk=run.pk).log_tail
    assert f"cron sees {MASK}" in stored and SECRET not in stored, stored
    served = client.get(logs_url).json()["log"]
    assert f"cron sees {MASK}" in served and SECRET not in served
    # The run as a viewer sees it (status, reason) holds no log.
    seen = viewer_client(world).get(f"{BASE}/cron-jobs/leaky-cron/runs/{run.pk}/").json()
    assert "cron sees" not in json.dumps(seen)
