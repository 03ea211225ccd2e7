"""deploy, rollback and releases: progress while waiting, final status, exit codes 0/1/3, the
polling backoff and --detach. The API is faked with httpx.MockTransport: allowed here because
these tests check the CLI's own request and response handling; end-to-end tests against the real
server are separate. A fake clock makes timeouts instant."""

import json

import httpx
import pytest
from conftest import api_error, page, reply

APP = "/api/v1/teams/acme/apps/web/"
DEPLOYMENTS = APP + "deployments/"
D4 = DEPLOYMENTS + "4/"


def deployment(status="pending", **overrides):
    data = {
        "id": 4,
        "image": "registry.test/web:v4",
        "image_digest": None,
        "status": status,
        "reason": "",
        "created_at": "2025-01-31T12:00:00Z",
        "finished_at": None,
        "created_by": "ci-bot",
        "rollback_of": None,
    }
    data.update(overrides)
    return data


class Rollout:
    """A deployment that moves through `statuses`, one step per status poll, revealing one event
    per step; the events endpoint honours `after` like the real one."""

    def __init__(self, statuses, **final):
        self.statuses = list(statuses)
        self.final = final
        self.step = 0
        self.events = [
            {"id": 100 + n, "at": f"2025-01-31T12:00:{n:02d}Z", "level": "info", "message": f"now {status}"}
            for n, status in enumerate(self.statuses)
        ]
        self.after_params = []

    def status(self, request):
        index = min(self.step, len(self.statuses) - 1)
        self.step += 1
        last = index == len(self.statuses) - 1
        return reply(200, deployment(self.statuses[index], **(self.final if last else {})))

    def event_page(self, request):
        after = request.url.params.get("after")
        self.after_params.append(after)
        visible = self.events[: self.step]
        return page([e for e in visible if after is None or e["id"] > int(after)])


@pytest.fixture(autouse=True)
def _ci(ci_env):
    pass


def wire(api, rollout, created=None):
    api.on("POST", DEPLOYMENTS, reply(202, created or deployment("pending")))
    api.on("GET", D4, rollout.status)
    api.on("GET", D4 + "events/", rollout.event_page)
    api.on("GET", APP, reply(200, {"name": "web", "url": "http://web.acme.localhost:8080"}))


def test_deploy_waits_with_progress_and_exits_0_when_live(run, api, clock):
    rollout = Rollout(["pulling", "starting", "health_checking", "live"])
    wire(api, rollout)

    result = run("deploy", "--app", "web", "--image", "registry.test/web:v4")

    assert result.exit_code == 0, result.stderr
    assert api.body(api.sent("POST", DEPLOYMENTS)[0]) == {"image": "registry.test/web:v4"}
    assert result.stdout == "4\n"
    progress = [line for line in result.stderr.splitlines() if "now " in line]
    assert [line.split()[-1] for line in progress] == ["pulling", "starting", "health_checking", "live"]
    assert "Deployment #4 of web is live at http://web.acme.localhost:8080." in result.stderr
    # Each poll asks only for events after the last one printed.
    assert rollout.after_params == [None, "100", "101", "102"]
    assert clock.sleeps  # it polled, with short sleeps
    assert max(clock.sleeps) <= 2.0


def test_deploy_json_prints_the_final_deployment(run, api, clock):
    wire(api, Rollout(["starting", "live"], image_digest="sha256:abc"))

    result = run("deploy", "--app", "web", "--image", "registry.test/web:v4", "--json")

    assert result.exit_code == 0
    final = json.loads(result.stdout)
    assert final["status"] == "live"
    assert final["image_digest"] == "sha256:abc"


def test_deploy_failed_exits_3_with_the_reason(run, api, clock):
    wire(api, Rollout(["pulling", "health_checking", "failed"], reason="health check /healthz answered 500"))

    result = run("deploy", "--app", "web", "--image", "registry.test/web:v4")

    assert result.exit_code == 3
    assert "deployment #4 of web failed: health check /healthz answered 500" in result.stderr
    assert "now failed" in result.stderr  # the events before the end were all printed


def test_deploy_superseded_exits_3(run, api, clock):
    wire(api, Rollout(["pulling", "superseded"]))
    result = run("deploy", "--app", "web", "--image", "registry.test/web:v4")
    assert result.exit_code == 3
    assert "superseded" in result.stderr


def test_deploy_timeout_exits_3_and_backs_off(run, api, clock):
    wire(api, Rollout(["starting"]))

    result = run("deploy", "--app", "web", "--image", "registry.test/web:v4", "--timeout", "30")

    assert result.exit_code == 3
    assert "timed out after 30s waiting for deployment #4 of web to go live (last status: starting)" in result.stderr
    # Said plainly: stopping the wait did not stop the deployment, and how to.
    assert "it is still in progress on the server and may still go live" in result.stderr
    assert "panda deploy --cancel --app web" in result.stderr
    assert api.sent("POST", D4 + "cancel/") == []
    assert result.stdout == "4\n"
    assert sum(clock.sleeps) == pytest.approx(30)
    assert clock.sleeps[0] == 0.25
    assert clock.sleeps[:3] == sorted(clock.sleeps[:3])  # backs off...
    assert max(clock.sleeps) == 2.0  # ...up to a ceiling, never a long fixed sleep
    assert len(clock.sleeps) < 30


def test_deploy_timeout_with_json_prints_the_last_known_state(run, api, clock):
    wire(api, Rollout(["starting"]))
    result = run("deploy", "--app", "web", "--image", "i", "--timeout", "5", "--json")
    assert result.exit_code == 3
    assert json.loads(result.stdout)["status"] == "starting"


def test_deploy_rides_out_a_brief_api_outage(run, api, clock):
    rollout = Rollout(["starting", "live"])
    wire(api, rollout)
    outage = [
        api_error(503, "unavailable", "Down for a moment."),
        api_error(503, "unavailable", "Down for a moment."),
        rollout.status,
    ]
    api.on("GET", D4, *outage)

    result = run("deploy", "--app", "web", "--image", "i")

    assert result.exit_code == 0, result.stderr
    assert result.stderr.count("Down for a moment.; still waiting.") == 1


def test_deploy_stops_waiting_when_the_app_disappears(run, api, clock):
    wire(api, Rollout(["starting"]))
    api.on("GET", D4, api_error(404, "not_found", "Not found."))
    result = run("deploy", "--app", "web", "--image", "i")
    assert result.exit_code == 1
    assert "Not found. (not_found)" in result.stderr


def test_deploy_detach_returns_at_once(run, api, clock):
    api.on("POST", DEPLOYMENTS, reply(202, deployment("pending")))

    result = run("deploy", "--app", "web", "--image", "i", "--detach")

    assert result.exit_code == 0
    assert result.stdout == "4\n"
    assert [r.method for r in api.requests] == ["POST"]
    assert clock.sleeps == []


def test_deploy_detach_json(run, api):
    api.on("POST", DEPLOYMENTS, reply(202, deployment("pending")))
    result = run("deploy", "--app", "web", "--image", "i", "--detach", "--json")
    assert json.loads(result.stdout) == deployment("pending")


def test_deploy_without_the_deploy_permission_exits_1(run, api):
    api.on("POST", DEPLOYMENTS, api_error(403, "permission_denied", "Your token lacks the deploy scope."))
    result = run("deploy", "--app", "web", "--image", "i")
    assert result.exit_code == 1
    assert "Your token lacks the deploy scope. (permission_denied)" in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["deploy", "--image", "i"],
        ["deploy", "--app", "web"],
        ["deploy", "--app", "web", "--image", "i", "--timeout", "0"],
        ["deploy", "--app", "web", "--image", "i", "--timeout", "soon"],
    ],
)
def test_deploy_usage_errors_exit_2(run, api, args):
    assert run(*args).exit_code == 2
    assert api.requests == []


def test_deploy_when_the_api_is_down_exits_1(run, monkeypatch):
    from panda_cli import client

    def refuse(request):
        raise httpx.ConnectError("Connection refused", request=request)

    monkeypatch.setattr(client, "transport_factory", lambda: httpx.MockTransport(refuse))
    result = run("deploy", "--app", "web", "--image", "i")
    assert result.exit_code == 1
    assert "cannot reach the PandaStack API at http://panda.test" in result.stderr


def test_rollback_to_a_named_release_waits_like_deploy(run, api, clock):
    rollout = Rollout(["starting", "live"])
    wire(api, rollout)
    api.on("POST", APP + "rollback/", reply(202, deployment("pending", rollback_of=2, image="registry.test/web:v2")))

    result = run("rollback", "--app", "web", "--to", "2")

    assert result.exit_code == 0, result.stderr
    assert api.body(api.sent("POST", APP + "rollback/")[0]) == {"to": 2}
    assert "Rolling web back to deployment #2 (deployment #4, registry.test/web:v2)." in result.stderr
    assert result.stdout == "4\n"


def test_rollback_to_the_previous_release_sends_null(run, api, clock):
    api.on("POST", APP + "rollback/", reply(202, deployment("pending", rollback_of=3)))

    result = run("rollback", "--app", "web", "--detach", "--json")

    assert result.exit_code == 0
    assert api.body(api.requests[0]) == {"to": None}
    assert json.loads(result.stdout)["rollback_of"] == 3


def test_rollback_failing_exits_3(run, api, clock):
    wire(api, Rollout(["starting", "failed"], reason="container exited with code 1"))
    api.on("POST", APP + "rollback/", reply(202, deployment("pending", rollback_of=2)))
    result = run("rollback", "--app", "web", "--timeout", "60")
    assert result.exit_code == 3
    assert "container exited with code 1" in result.stderr


def test_rollback_with_nothing_to_go_back_to_exits_1(run, api):
    api.on("POST", APP + "rollback/", api_error(400, "no_previous_release", "web has no earlier live release."))
    result = run("rollback", "--app", "web")
    assert result.exit_code == 1
    assert "(no_previous_release)" in result.stderr


def test_releases_table_newest_first(run, api):
    api.on(
        "GET",
        DEPLOYMENTS,
        page(
            [
                deployment("live", id=5, rollback_of=3, image="registry.test/web:v3"),
                deployment("failed", id=4, reason="health check timed out"),
            ],
            next_url="http://panda.test" + DEPLOYMENTS + "?cursor=n",
        ),
        page([deployment("superseded", id=3, image="registry.test/web:v3")]),
    )

    result = run("releases", "--app", "web")

    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["ID", "STATUS", "IMAGE", "CREATED", "BY", "NOTE"]
    assert [line.split()[0] for line in lines[1:]] == ["5", "4", "3"]
    assert "rollback of #3" in lines[1]
    assert "health check timed out" in lines[2]


def test_releases_json(run, api):
    api.on("GET", DEPLOYMENTS, page([deployment("live")]))
    result = run("releases", "--app", "web", "--json")
    assert json.loads(result.stdout) == [deployment("live")]


def test_releases_empty(run, api):
    api.on("GET", DEPLOYMENTS, page([]))
    result = run("releases", "--app", "web")
    assert result.exit_code == 0
    assert "no deployments yet" in result.stderr


def test_warning_and_error_events_are_flagged(run, api, clock):
    rollout = Rollout(["starting", "failed"], reason="no answer on port 8000")
    rollout.events[0].update(level="warning", message="first health check failed")
    rollout.events[1].update(level="error", message="giving up")
    wire(api, rollout)

    result = run("deploy", "--app", "web", "--image", "i")

    assert result.exit_code == 3
    assert "warning: first health check failed" in result.stderr
    assert "error: giving up" in result.stderr


def test_created_by_as_an_object_shows_its_name(run, api):
    api.on("GET", DEPLOYMENTS, page([deployment("live", created_by={"id": 1, "username": "ada"})]))
    result = run("releases", "--app", "web")
    assert result.stdout.splitlines()[1].split()[5] == "ada"


# -- superseding and cancelling -------------------------------------------------------------------
CANCEL_4 = D4 + "cancel/"


def test_deploy_cancelled_exits_3(run, api, clock):
    wire(api, Rollout(["health_checking", "cancelled"], reason="Cancelled by ada@acme.test"))
    result = run("deploy", "--app", "web", "--image", "i")
    assert result.exit_code == 3
    assert "deployment #4 of web was cancelled before it went live: Cancelled by ada@acme.test" in result.stderr


def test_deploy_superseded_names_the_newer_deployment(run, api, clock):
    reason = "Superseded by deployment #5 (a rollback) by ada@acme.test"
    wire(api, Rollout(["health_checking", "superseded"], reason=reason, superseded_by=5))
    result = run("deploy", "--app", "web", "--image", "i")
    assert result.exit_code == 3
    assert reason in result.stderr


def test_deploy_cancel_on_timeout_cancels_it_and_exits_3(run, api, clock):
    wire(api, Rollout(["health_checking"]))
    api.on("POST", CANCEL_4, reply(202, deployment("cancelled", reason="Cancelled by ci-bot")))

    result = run("deploy", "--app", "web", "--image", "i", "--timeout", "10", "--cancel-on-timeout")

    assert result.exit_code == 3
    assert len(api.sent("POST", CANCEL_4)) == 1
    assert "timed out after 10s; cancelled deployment #4 of web (it was health_checking)" in result.stderr
    assert "whatever was live keeps serving" in result.stderr
    assert result.stdout == "4\n"


def test_deploy_cancel_on_timeout_json_prints_the_cancelled_deployment(run, api, clock):
    wire(api, Rollout(["starting"]))
    api.on("POST", CANCEL_4, reply(202, deployment("cancelled")))
    result = run("deploy", "--app", "web", "--image", "i", "--timeout", "5", "--cancel-on-timeout", "--json")
    assert result.exit_code == 3
    assert json.loads(result.stdout)["status"] == "cancelled"


def test_deploy_cancel_on_timeout_that_went_live_meanwhile_exits_0(run, api, clock):
    wire(api, Rollout(["health_checking"]))
    api.on("POST", CANCEL_4, api_error(409, "deployment_finished", "Deployment #4 of web already finished (live)."))
    # It went live just as the wait gave up: the cancel is refused, and the re-read shows it live.
    api.on(
        "GET", D4, lambda request: reply(200, deployment("live" if api.sent("POST", CANCEL_4) else "health_checking"))
    )

    result = run("deploy", "--app", "web", "--image", "i", "--timeout", "3", "--cancel-on-timeout")

    assert result.exit_code == 0, result.stderr
    assert "Deployment #4 of web is live" in result.stderr


def test_rollback_cancel_on_timeout(run, api, clock):
    wire(api, Rollout(["starting"]))
    api.on("POST", APP + "rollback/", reply(202, deployment("pending", rollback_of=2)))
    api.on("POST", CANCEL_4, reply(202, deployment("cancelled")))
    result = run("rollback", "--app", "web", "--timeout", "5", "--cancel-on-timeout")
    assert result.exit_code == 3
    assert len(api.sent("POST", CANCEL_4)) == 1


def test_deploy_cancel_cancels_the_deployment_in_progress(run, api):
    api.on(
        "GET",
        DEPLOYMENTS,
        page([deployment("health_checking", id=4), deployment("live", id=3), deployment("superseded", id=2)]),
    )
    api.on("POST", CANCEL_4, reply(202, deployment("cancelled", reason="Cancelled by ci-bot")))

    result = run("deploy", "--app", "web", "--cancel")

    assert result.exit_code == 0, result.stderr
    assert [r.method + " " + r.url.path for r in api.requests] == ["GET " + DEPLOYMENTS, "POST " + CANCEL_4]
    assert result.stdout == "4\n"
    assert "Cancelled deployment #4 of web" in result.stderr


def test_deploy_cancel_json(run, api):
    api.on("GET", DEPLOYMENTS, page([deployment("pending", id=4)]))
    api.on("POST", CANCEL_4, reply(202, deployment("cancelled")))
    result = run("deploy", "--app", "web", "--cancel", "--json")
    assert json.loads(result.stdout)["status"] == "cancelled"


def test_deploy_cancel_with_nothing_in_progress_exits_1(run, api):
    api.on("GET", DEPLOYMENTS, page([deployment("live", id=3)]))
    result = run("deploy", "--app", "web", "--cancel")
    assert result.exit_code == 1
    assert "no deployment of web is in progress; nothing to cancel" in result.stderr
    assert api.sent("POST", CANCEL_4) == []


@pytest.mark.parametrize("args", [["deploy", "--app", "web", "--cancel", "--image", "i"], ["deploy", "--cancel"]])
def test_deploy_cancel_usage_errors_exit_2(run, api, args):
    assert run(*args).exit_code == 2
    assert api.requests == []


def test_releases_cancel(run, api):
    api.on("POST", CANCEL_4, reply(202, deployment("cancelled", reason="Cancelled by ci-bot")))
    result = run("releases", "cancel", "--app", "web", "4")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "4\n"
    assert len(api.sent("POST", CANCEL_4)) == 1


def test_releases_cancel_of_a_finished_deployment_exits_1_with_the_reason(run, api):
    api.on(
        "POST",
        CANCEL_4,
        api_error(409, "deployment_finished", "Deployment #4 of web already finished (live); nothing to cancel."),
    )
    result = run("releases", "cancel", "--app", "web", "4")
    assert result.exit_code == 1
    assert "already finished (live); nothing to cancel. (deployment_finished)" in result.stderr


def test_releases_without_app_is_a_usage_error(run, api):
    assert run("releases").exit_code == 2
    assert api.requests == []


def test_releases_note_names_what_superseded_a_deployment(run, api):
    api.on(
        "GET",
        DEPLOYMENTS,
        page(
            [
                deployment("live", id=5),
                deployment("superseded", id=4, superseded_by=5, reason="Superseded by deployment #5 (a deploy) by ada"),
                deployment("superseded", id=3, superseded_by=5),
            ]
        ),
    )
    result = run("releases", "--app", "web")
    lines = result.stdout.splitlines()
    assert "Superseded by deployment #5 (a deploy) by ada" in lines[2]
    assert "superseded by #5" in lines[3]
