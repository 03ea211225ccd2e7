"""The data plane: turn the desired state in the database into containers on the engine and
servers in the router. Every function here is idempotent and level-triggered — run twice, or
after a worker was killed halfway, it converges to the same place — and is called only by
Celery tasks (apps.deployments.tasks) and the reconciler, never by a web request."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

import httpx
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.core import shutdown
from apps.core.broker import enqueue
from apps.core.leases import Lease, LeaseLost, holder_of, lease, long_ago, stale_before
from apps.deployments.models import IN_PROGRESS, App, Container, Deployment, DeploymentEvent, DeploymentStatus
from apps.deployments.selectors import LOG_TAIL_MARKER, app_log_masker
from apps.events.models import Severity
from apps.events.services import event_emit
from apps.monitoring.services import record
from apps.registries.selectors import image_pull_for
from apps.runtime.engine import LABEL_PREFIX, ContainerSpec, DockerEngine, Engine, EngineError, Workload
from apps.runtime.router import Backend, HAProxyRouter, Router, RouterError, Server
from apps.secrets.crypto import DecryptionFailed
from apps.secrets.selectors import environment_from_versions
from apps.teams.quotas import Limit, plan_cap

log = logging.getLogger(__name__)

LOG_TAIL_LINES = 20


@cache
def engine() -> Engine:
    return DockerEngine.from_settings()


@cache
def router() -> Router:
    return HAProxyRouter.from_settings()


def team_network(team_slug: str) -> str:
    return f"ps-team-{team_slug}"


def app_host(app: App) -> str:
    return host_of(app.name, app.team.slug)


def host_of(app_name: str, team_slug: str) -> str:
    return f"{app_name}.{team_slug}.{settings.PANDASTACK_APPS_DOMAIN}"


def app_url(app: App) -> str:
    port = settings.PANDASTACK_ROUTER_HTTP_PORT
    return f"http://{app_host(app)}" + ("" if port == 80 else f":{port}")


def network_labels(team_slug: str) -> dict[str, str]:
    return {f"{LABEL_PREFIX}managed": "true", f"{LABEL_PREFIX}team": team_slug, **settings.PANDASTACK_EXTRA_LABELS}


def labels_for(app: App, deployment: Deployment | None = None, replica: int | None = None) -> dict[str, str]:
    labels = {
        **network_labels(app.team.slug),
        f"{LABEL_PREFIX}app": str(app.pk),
        f"{LABEL_PREFIX}app-name": app.name,
    }
    if deployment is not None:
        labels[f"{LABEL_PREFIX}deployment"] = str(deployment.pk)
    if replica is not None:
        labels[f"{LABEL_PREFIX}replica"] = str(replica)
    return labels


# --- locking ---------------------------------------------------------------------------------------
def app_lock_key(app_id: int) -> str:
    return f"pandastack:lock:app:{app_id}"


def _deployment_holder(deployment_id: int) -> str:
    return f"deployment:{deployment_id}"


@contextmanager
def app_lock(app_id: int, *, wait: float = 0.0, deployment_id: int | None = None) -> Iterator[Lease | None]:
    """One worker at a time changes an app's containers (a deploy, a scale, the reconciler).

    Yields the lease (truthy) or None when the app stayed locked for `wait` seconds. While held, a
    heartbeat (apps.core.leases) keeps the lock alive and the deployment's `updated_at` fresh, so a
    killed worker's lock expires within seconds and the takeover sweep can tell a slow deploy
    (heartbeats) from an abandoned one (none)."""
    touch = None
    if deployment_id is not None:

        def touch() -> None:
            Deployment.objects.filter(pk=deployment_id, status__in=IN_PROGRESS).update(updated_at=timezone.now())

    holder = _deployment_holder(deployment_id) if deployment_id is not None else f"app:{app_id}"
    with lease(app_lock_key(app_id), holder=holder, wait=wait, touch=touch) as held:
        yield held


# --- the router -------------------------------------------------------------------------------------
def router_backends() -> list[Backend]:
    """Every app as a backend, with the containers that should receive traffic as its servers.
    Two queries of plain values (no model instances): every reconciler pass renders all apps."""
    servers: dict[int, list[Server]] = {}
    for _container, app_id, server in _routed_servers():
        servers.setdefault(app_id, []).append(server)
    return [
        Backend(name=App.router_backend_of(pk), hosts=(host_of(name, slug),), servers=tuple(servers.get(pk, ())))
        for pk, name, slug in App.objects.order_by("id").values_list("pk", "name", "team__slug")
    ]


def _routed_servers() -> Iterator[tuple[int, int, Server]]:
    """(container id, app id, server) of every container that should receive traffic."""
    routed = Container.objects.filter(in_router=True).exclude(ip=None)
    for app_id, pk, ip, port in routed.values_list("app_id", "pk", "ip", "deployment__config__port"):
        yield pk, app_id, Server(name=Container.router_server_of(pk), address=ip, port=port)


def sync_router() -> bool:
    """Start the router if it is not running and give it the config for every app (a seamless
    reload, only when something changed)."""
    r = router()
    r.ensure_running()
    # Rendered under the router's lock, which every run-time server change takes too: a server another
    # worker adds or removes meanwhile is either in this render or changed after this reload, never
    # undone by a reload rendered before it.
    with r.locked():
        return r.apply_config(router_backends())


def _server(container: Container) -> Server:
    return Server(name=container.router_server, address=container.ip, port=container.deployment.config["port"])


# --- deployments ---------------------------------------------------------------------------------
def event(deployment: Deployment, message: str, level: str = "info") -> None:
    DeploymentEvent.objects.create(deployment=deployment, message=message, level=level)
    # The event doubles as the deployment's heartbeat for the reconciler.
    Deployment.objects.filter(pk=deployment.pk).update(updated_at=timezone.now())


def set_status(deployment: Deployment, status: str, message: str, **fields: object) -> None:
    """Move an in-progress deployment on. Conditional on it still being in progress: a newer action
    (or a cancel) may have stopped it meanwhile, and its worker must never write over that."""
    changed = Deployment.objects.filter(pk=deployment.pk, status__in=IN_PROGRESS).update(
        status=status, updated_at=timezone.now(), **fields
    )
    if not changed:
        raise DeploymentStopped(deployment)
    deployment.status = status
    for name, value in fields.items():
        setattr(deployment, name, value)
    event(deployment, message, level="error" if status == DeploymentStatus.FAILED else "info")


class DeployFailed(Exception):
    pass


class DeploymentStopped(Exception):
    """A newer deploy, rollback, restart or stop superseded the deployment, or it was cancelled,
    while this worker ran it: the newest intent wins, this one stops."""

    def __init__(self, deployment: Deployment) -> None:
        super().__init__(f"deployment {deployment.pk} was stopped")


# The lease of each deployment this process runs (one at a time per pool process), for the check points.
_running: dict[int, Lease] = {}


def check_still_wanted(deployment: Deployment) -> None:
    """Raise DeploymentStopped when the deployment is no longer in progress (superseded, cancelled,
    deleted); LeaseLost when another worker took it over; WorkerStopping when this worker is asked to
    stop (apps.core.shutdown). Asked between steps and on every round of the health check, so each is
    noticed within about a second."""
    status = Deployment.objects.filter(pk=deployment.pk).values_list("status", flat=True).first()
    if status not in IN_PROGRESS:
        raise DeploymentStopped(deployment)
    if (held := _running.get(deployment.pk)) is not None:
        held.check()
    shutdown.check()


def run_deployment(deployment_id: int) -> None:
    """Take a deployment from wherever it is to live or failed. Safe to run again after a crash:
    every step checks what already exists before acting. When the worker is asked to stop, the
    deployment is handed back before its switch (WorkerStopping: its message is queued again)."""
    deployment = Deployment.objects.select_related("app__team", "app__project").filter(pk=deployment_id).first()
    if deployment is None or not deployment.in_progress:
        return
    app = deployment.app
    if holder_of(app_lock_key(app.pk)) == _deployment_holder(deployment.pk):
        # A second message for a deployment another worker is running (a redelivery, a takeover that
        # raced a hand-back): that worker's heartbeat shows it is alive; if it dies, the sweep resumes it.
        return
    interrupted: Exception | None = None
    with app_lock(app.pk, wait=settings.PANDASTACK_HEALTH_TIMEOUT, deployment_id=deployment.pk) as held:
        if not held:
            raise DeployFailed("another operation on this app did not finish in time; retrying")
        stopped = False
        deployment.refresh_from_db()
        if not deployment.in_progress:
            stopped = True
        else:
            if deployment.started_at is not None:
                event(deployment, "Resumed: a previous run of it stopped before finishing", level="warning")
            _running[deployment.pk] = held
            try:
                _deploy(deployment)
            except DeploymentStopped:
                stopped = True
            except (shutdown.WorkerStopping, LeaseLost) as exc:
                interrupted = exc
            except (DeployFailed, EngineError, RouterError, DecryptionFailed) as exc:
                stopped = not _fail(deployment, str(exc))
            finally:
                _running.pop(deployment.pk, None)
        if stopped:
            _abandon(deployment)  # still holding the app: the newer deployment starts after this
    if isinstance(interrupted, LeaseLost):
        log.warning("deployment %s was taken over by another worker; this one stops", deployment.pk)
        return
    if interrupted is not None:
        _hand_back(deployment)
        raise interrupted
    if stopped or not App.objects.filter(pk=app.pk, desired_running=True).exists():
        # A stop that came while this deployment held the app found it locked: converge it now.
        converge_app(app.pk)


def _hand_back(deployment: Deployment) -> None:
    """The worker is stopping: leave the deployment in progress for the next one. Its new containers
    (never routed) stay: the resumer finds them running by name and only checks their health again,
    which is quicker than starting them anew (a deployment that ends otherwise has them removed as
    always: by its newer deployment's switch, or by the reconciler). Its row is made stale at once, so
    the takeover sweep resumes it even if the message queued again were lost."""
    if Deployment.objects.filter(pk=deployment.pk, status__in=IN_PROGRESS).exists():
        event(deployment, "Handed back: its worker is stopping; the next worker resumes it", level="warning")
        Deployment.objects.filter(pk=deployment.pk, status__in=IN_PROGRESS).update(updated_at=long_ago())


def _abandon(deployment: Deployment) -> None:
    """A deployment stopped by a newer action or a cancel: remove the containers it started (none
    was ever routed) and say so. Idempotent."""
    removed = 0
    for container in Container.objects.filter(deployment=deployment).select_related("app"):
        try:
            _remove_container(container)
            removed += 1
        except (EngineError, RouterError) as exc:
            # The reconciler removes what is left (the app converges to its live release).
            log.warning("could not remove %s of stopped deployment %s: %s", container.name, deployment.pk, exc)
    if removed:
        event(deployment, f"Stopped; removed its {removed} new container(s), none was routed", level="warning")


def _deploy(deployment: Deployment) -> None:
    app = deployment.app
    config = deployment.config
    if deployment.started_at is None:
        Deployment.objects.filter(pk=deployment.pk).update(started_at=timezone.now())
    eng = engine()

    # The team's own registry login, if it has one for the image's host; such images are pulled on every
    # deploy, so the registry (not a copy another team's pull cached) decides. Never logged.
    pull = image_pull_for(team=app.team, image=deployment.image)
    logged_in = pull.auth is not None and bool(pull.auth.username)
    how = "skipped when present"
    if pull.always_pull:
        how = "with the team's registry login" if logged_in else "without a login: the registry decides"
    set_status(deployment, DeploymentStatus.PULLING, f"Pulling {deployment.image} ({how})")
    # A pull is not interrupted by a supersede (noticed right after it), but is by a worker stopping.
    with shutdown.interruptible():
        eng.ensure_image(deployment.image, auth=pull.auth, always_pull=pull.always_pull)
    digest = eng.image_digest(deployment.image) or ""
    set_status(deployment, DeploymentStatus.STARTING, f"Starting {app.replicas} container(s)", image_digest=digest)
    eng.ensure_network(team_network(app.team.slug), network_labels(app.team.slug))
    containers = []
    for replica in range(1, app.replicas + 1):
        check_still_wanted(deployment)
        containers.append(_start_container(deployment, replica))

    set_status(deployment, DeploymentStatus.HEALTH_CHECKING, _health_description(config))
    _wait_healthy(deployment, containers, stoppable=True)

    # Switch: the new containers join the router, then the old ones drain and stop.
    sync_router()  # makes sure the app's backend exists (a reload only for a new app)
    _claim_switch(deployment, containers)
    r = router()
    for container in containers:
        r.add_server(app.router_backend, _server(container))
    event(deployment, f"Routing traffic to {len(containers)} new container(s)")
    previous = App.objects.filter(pk=app.pk).values_list("live_deployment", flat=True).first()
    _retire_containers(app, keep_deployment=deployment)
    with transaction.atomic():
        if previous is not None and previous != deployment.pk:
            # Rolled back when this is a rollback to an older release; superseded when this
            # re-releases the live one (a rollback that stopped a newer deployment in flight).
            replaced = (
                DeploymentStatus.ROLLED_BACK
                if deployment.rollback_of_id and deployment.rollback_of_id != previous
                else DeploymentStatus.SUPERSEDED
            )
            Deployment.objects.filter(pk=previous).update(status=replaced, superseded_by=deployment)
        App.objects.filter(pk=app.pk).update(live_deployment=deployment)
        set_status(deployment, DeploymentStatus.LIVE, f"Live at {app_url(app)}", finished_at=timezone.now())
        verb = "rolled back to" if deployment.rollback_of_id else "deployed"
        event_emit(
            team=deployment.team,
            kind="deployment.succeeded",
            subject=app,
            message=f"{app.name}: {verb} #{deployment.number} ({deployment.image})",
            data={"deployment": deployment.number, "image": deployment.image},
        )


def _claim_switch(deployment: Deployment, containers: list[Container]) -> None:
    """The point of no return: under the app's row lock (the lock a newer deploy, a rollback, a
    restart, a stop or a cancel takes to stop this deployment), check it is still wanted and mark
    its containers as routed. From here on nothing stops it (it is live within moments); before
    here, a stop means its containers never get traffic."""
    with transaction.atomic():
        App.objects.select_for_update().filter(pk=deployment.app_id).first()
        check_still_wanted(deployment)
        # Recorded first: a router reload rendered from the database in between keeps the servers.
        Container.objects.filter(pk__in=[c.pk for c in containers]).update(in_router=True)
    for container in containers:
        container.in_router = True


def _health_description(config: dict) -> str:
    path = config.get("health_check_path")
    target = f"HTTP GET {path} answers 2xx/3xx" if path else f"port {config['port']} accepts connections"
    return f"Waiting until {target} (up to {settings.PANDASTACK_HEALTH_TIMEOUT:.0f}s)"


def _container_name(deployment: Deployment, replica: int) -> str:
    app = deployment.app
    return f"ps-{app.team.slug}-{app.name}-{app.pk}-{deployment.number}-r{replica}"


def _start_container(deployment: Deployment, replica: int) -> Container:
    app = deployment.app
    config = deployment.config
    name = _container_name(deployment, replica)
    container, _ = Container.objects.get_or_create(
        deployment=deployment, replica=replica, defaults={"team": app.team, "app": app, "name": name}
    )
    env = {
        # The team's, project's and app's variables as recorded by the deployment; the platform's
        # own names below always win.
        **environment_from_versions(config.get("variables") or {}),
        "PORT": str(config["port"]),
        "PANDASTACK_APP": app.name,
        "PANDASTACK_TEAM": app.team.slug,
        "PANDASTACK_RELEASE": str(deployment.number),
    }
    info = engine().run(
        ContainerSpec(
            name=name,
            image=deployment.image,
            port=config["port"],
            env=env,
            labels=labels_for(app, deployment, replica),
            network=team_network(app.team.slug),
            command=config.get("command"),
            # The plan's caps, also for a release recorded under a more generous plan (a rollback).
            memory_mb=int(plan_cap(team=app.team, limit=Limit.MEMORY_MB_PER_APP, value=config.get("memory_mb"))),
            cpus=plan_cap(team=app.team, limit=Limit.CPUS_PER_APP, value=config.get("cpus")),
            pids_limit=app.team.plan.max_pids_per_container,
            workload=Workload.APP,
        )
    )
    container.docker_id, container.ip = info.id, info.ip
    container.save(update_fields=["docker_id", "ip", "updated_at"])
    return container


def _probe(ip: str, port: int, path: str) -> bool:
    try:
        if path:
            response = httpx.get(f"http://{ip}:{port}{path}", timeout=2.0, follow_redirects=False)
            return 200 <= response.status_code < 400
        with socket.create_connection((ip, port), timeout=1.0):
            return True
    except (httpx.HTTPError, OSError):
        return False


def _wait_healthy(deployment: Deployment, containers: list[Container], *, stoppable: bool = False) -> None:
    """Wait until every container passes its health check. `stoppable`: a deploy's wait, which ends
    (DeploymentStopped) as soon as the deployment is superseded or cancelled."""
    config = deployment.config
    deadline = time.monotonic() + settings.PANDASTACK_HEALTH_TIMEOUT
    pending = {c.pk: c for c in containers}
    delay = 0.05
    while pending:
        if stoppable:
            check_still_wanted(deployment)
        for pk, container in list(pending.items()):
            info = engine().inspect(container.name)
            if info is None or info.status not in ("running", "created", "restarting"):
                code = info.exit_code if info else "gone"
                raise DeployFailed(_with_log_tail(f"Container {container.name} stopped (exit code {code})", container))
            if container.ip is None and info.ip:
                container.ip = info.ip
                Container.objects.filter(pk=pk).update(ip=info.ip)
            if container.ip and _probe(container.ip, config["port"], config.get("health_check_path", "")):
                pending.pop(pk)
                event(deployment, f"{container.name} is healthy")
        if not pending:
            return
        if time.monotonic() > deadline:
            first = next(iter(pending.values()))
            raise DeployFailed(
                _with_log_tail(
                    f"Health check did not pass within {settings.PANDASTACK_HEALTH_TIMEOUT:.0f}s: "
                    + _health_description(config).removeprefix("Waiting until "),
                    first,
                )
            )
        time.sleep(delay)
        delay = min(delay * 1.5, 0.5 if stoppable else 1.0)


def _with_log_tail(message: str, container: Container) -> str:
    """The failure message and the container's last log lines, its secrets masked: the text is
    stored (reason, events) and served, so no value the platform injected may be in it."""
    try:
        lines = engine().logs(container.name, tail=LOG_TAIL_LINES)
    except EngineError:
        lines = []
    if not lines:
        return message
    masked = app_log_masker(container.app).mask_lines(line.text for line in lines)
    return message + LOG_TAIL_MARKER + "\n".join(masked)


def _fail(deployment: Deployment, reason: str) -> bool:
    """The new containers never got traffic: remove them; whatever was live keeps serving. False
    when the deployment was stopped meanwhile (superseded or cancelled: that, not the failure, is
    what it ended as)."""
    for container in Container.objects.filter(deployment=deployment):
        _remove_container(container)
    try:
        set_status(deployment, DeploymentStatus.FAILED, f"Failed: {reason}", reason=reason, finished_at=timezone.now())
    except DeploymentStopped:
        return False
    event_emit(
        team=deployment.team,
        kind="deployment.failed",
        subject=deployment.app,
        message=f"{deployment.app.name}: deployment #{deployment.number} of {deployment.image} failed",
        severity=Severity.ERROR,
        data={"deployment": deployment.number, "image": deployment.image},
    )
    return True


def _remove_container(container: Container) -> None:
    if container.in_router:
        _unroute(container)
        router().remove_server(
            container.app.router_backend, container.router_server, drain_timeout=settings.PANDASTACK_DRAIN_TIMEOUT
        )
    engine().remove(container.name)
    container.delete()


def _unroute(container: Container) -> None:
    """Out of the routes in the database before out of the router: a reload rendered from here on
    leaves the server out (a reload rendered while it is being drained would otherwise put it back,
    pointing at a container about to stop)."""
    Container.objects.filter(pk=container.pk).update(in_router=False)
    container.in_router = False


def _retire_containers(app: App, *, keep_deployment: Deployment | None) -> None:
    """Drain and remove every container of the app that does not belong to `keep_deployment`."""
    old = Container.objects.filter(app=app).select_related("app")
    if keep_deployment is not None:
        old = old.exclude(deployment=keep_deployment)
    for container in old:
        if container.in_router:
            _unroute(container)
            router().remove_server(
                app.router_backend, container.router_server, drain_timeout=settings.PANDASTACK_DRAIN_TIMEOUT
            )
        engine().stop(container.name, timeout=10)
        engine().remove(container.name)
        container.delete()


# --- convergence of running apps (scale, stop/start, crashed containers) ---------------------------
def converge_app(app_id: int, *, sync: bool = True) -> None:
    """Make the app's containers match its desired state: `replicas` healthy containers of its live
    deployment in the router while it should run; none otherwise. `sync=False`: the caller (a
    reconciler pass) has just given the router every app's backend, so rendering the whole
    configuration again for this one app is not needed."""
    with app_lock(app_id) as locked:
        if not locked:
            return  # a deploy holds the app; it converges it itself
        app = App.objects.select_related("team", "live_deployment").filter(pk=app_id).first()
        if app is None:
            return
        live = app.live_deployment
        if not app.desired_running or live is None:
            _retire_containers(app, keep_deployment=None)
            return
        if Deployment.objects.filter(app=app, status__in=IN_PROGRESS).exists():
            return
        _retire_containers(app, keep_deployment=live)
        wanted = set(range(1, app.replicas + 1))
        for container in Container.objects.filter(deployment=live).select_related("app"):
            info = engine().inspect(container.name)
            if container.replica not in wanted or info is None or info.status != "running":
                _remove_container(container)
                if container.replica in wanted:
                    # Recorded once the crashed container is gone: a removal that fails is retried by
                    # the next round, which must not count the same crash again.
                    state = f"exited with code {info.exit_code}" if info else "disappeared"
                    log.warning("replaced container %s (%s)", container.name, state)
                    event_emit(
                        team=app.team,
                        kind="container.crashed",
                        subject=app,
                        message=f"{app.name}: container r{container.replica} {state}; replacing it",
                        severity=Severity.ERROR,
                        data={"replica": container.replica, "exit_code": info.exit_code if info else None},
                    )
                    record(app_id=app.pk, team_id=app.team_id, restarts=1)
        present = set(Container.objects.filter(deployment=live).values_list("replica", flat=True))
        fresh = [_start_container(live, replica) for replica in sorted(wanted - present)]
        if fresh:
            try:
                _wait_healthy(live, fresh)
            except DeployFailed as exc:
                event(live, f"Replacement containers failed: {exc}", level="error")
                for container in fresh:
                    _remove_container(container)
                return
        if sync:
            sync_router()
        r = router()
        for container in Container.objects.filter(deployment=live, in_router=False).exclude(ip=None):
            Container.objects.filter(pk=container.pk).update(in_router=True)
            r.add_server(app.router_backend, _server(container))


def teardown_app(app_id: int) -> None:
    """Remove a deleted app's router backend, then its containers (found by label): traffic stops
    going to them before they go."""
    sync_router()
    for info in engine().list({f"{LABEL_PREFIX}app": str(app_id), f"{LABEL_PREFIX}managed": "true"}):
        engine().remove(info.id)


# --- the reconciler ----------------------------------------------------------------------------------
def take_over_stale_deployments() -> int:
    """Queue again every deployment in progress whose heartbeat stopped (its worker died, or handed it
    back); how many. Each is claimed with a compare-and-set on its heartbeat, so two sweeps (the
    takeover beat, the reconciler, a second beat) queue it once; the deploy is idempotent."""
    from apps.deployments.tasks import deployment_run

    cutoff = stale_before()
    resumed = 0
    stale = Deployment.objects.filter(status__in=IN_PROGRESS, updated_at__lt=cutoff).only("pk", "started_at")
    for deployment in stale:
        claimed = Deployment.objects.filter(pk=deployment.pk, status__in=IN_PROGRESS, updated_at__lt=cutoff).update(
            updated_at=timezone.now()
        )
        if not claimed:
            continue
        enqueue(deployment_run, deployment.pk, defer=True)
        resumed += 1
        if deployment.started_at is None:
            # Never started: most likely still queued behind other work (a second message is a no-op
            # then), else its message was lost with a worker that died holding it. Nothing to tell.
            continue
        log.warning("taking over stale deployment %s", deployment.pk)
        DeploymentEvent.objects.create(
            deployment=deployment,
            level="warning",
            message=f"Taken over: no worker reported on it for {settings.PANDASTACK_WORKER_STALE_SECONDS:.0f}s",
        )
    return resumed


def reconcile() -> dict[str, int]:
    """Compare what the engine and the router run with the database and converge: start the router
    if it died and restore its routes, take over deployments a killed worker left half-done,
    remove orphan containers, replace crashed ones."""
    summary = {"resumed": 0, "orphans": 0, "apps": 0}
    sync_router()
    summary["resumed"] = take_over_stale_deployments()
    summary.update(_converge_all())
    _restore_router_servers()
    return summary


def _converge_all() -> dict[str, int]:
    """The reconciler's pass over every app, at a cost that does not grow with the apps that are
    fine: one engine listing and four queries find the orphan containers (removed) and the apps
    whose containers differ from what they should be; only those go through `converge_app` (its
    lock, its own reads, the engine). Read before any app is converged, so an app that changes
    during the pass may wait for the next one — as it may when it changes just after a pass."""
    # Listed before the names are read: a deploy on another worker records its container's row before it
    # creates the container, so whatever it started by the time of the listing is known.
    listing = engine().list({f"{LABEL_PREFIX}managed": "true", **settings.PANDASTACK_EXTRA_LABELS})
    rows = list(Container.objects.values_list("app_id", "deployment_id", "replica", "name", "in_router", "ip"))
    known = {row[3] for row in rows}
    orphans = 0
    for info in listing:
        if info.name not in known:
            engine().remove(info.id)
            orphans += 1
    running = {info.name for info in listing if info.status == "running"}
    containers: dict[int, list[tuple]] = {}
    for row in rows:
        containers.setdefault(row[0], []).append(row)
    busy = set(Deployment.objects.filter(status__in=IN_PROGRESS).values_list("app_id", flat=True))
    apps = App.objects.exclude(live_deployment=None).values_list("pk", "desired_running", "live_deployment", "replicas")
    looked = converged = 0
    for app_id, desired_running, live_id, replicas in apps.order_by("pk"):
        looked += 1
        if _converged(containers.get(app_id, []), desired_running, app_id in busy, live_id, replicas, running):
            continue
        converge_app(app_id, sync=False)  # the pass synced the router before it began
        converged += 1
    return {"orphans": orphans, "apps": looked, "converged": converged}


def _converged(
    containers: list[tuple], desired_running: bool, deploying: bool, live_id: int, replicas: int, running: set[str]
) -> bool:
    """Whether `converge_app` would leave the app as it is, judged from the pass's reads: the same
    conditions it checks, in the same order. (A doubt costs only a `converge_app` that does nothing.)"""
    if not desired_running:
        return not containers  # it removes every container of a stopped app
    if deploying:
        return True  # the deploy in progress converges the app itself
    wanted = set(range(1, replicas + 1))
    for _app, deployment_id, replica, name, in_router, ip in containers:
        if deployment_id != live_id or replica not in wanted or name not in running:
            return False  # a container to retire, an extra replica, a crashed or vanished one
        if not in_router and ip is not None:
            return False  # a healthy container not yet given traffic
    return {row[2] for row in containers} == wanted


def _restore_router_servers() -> None:
    """Servers the router lost (a restart from an older config) come back from the database. One
    runtime command reads every backend's servers, however many apps there are."""
    r = router()
    present = r.server_names()
    lost = [
        pk
        for pk, app_id, server in _routed_servers()
        if server.name not in present.get(App.router_backend_of(app_id), ())
    ]
    for container in Container.objects.filter(pk__in=lost).select_related("app", "deployment"):
        _restore_server(container)


def _restore_server(container: Container) -> None:
    """Put back a server the router lost, unless it was unrouted since it was read: a retire on another
    worker unroutes it in the database first, then takes the router's lock to remove it, so asked under
    that lock the database says whether it is still wanted."""
    r = router()
    with r.locked():
        if Container.objects.filter(pk=container.pk, in_router=True).exists():
            r.add_server(container.app.router_backend, _server(container))
