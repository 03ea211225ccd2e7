"""Writes for apps and deployments. They record the desired state and enqueue the work (after
the transaction commits); Celery workers do the slow parts (apps.deployments.tasks)."""

from typing import Any

from django.db import transaction
from django.db.models import Exists, Max, OuterRef
from django.utils import timezone

from apps.audit.services import audit_record
from apps.core.access import TeamContext
from apps.core.broker import enqueue
from apps.core.capabilities import Capability
from apps.core.errors import Conflict, ValidationFailed, require_confirmation
from apps.deployments import tasks
from apps.deployments.models import IN_PROGRESS, App, Container, Deployment, DeploymentEvent, DeploymentStatus
from apps.runtime.images import image_reference_check
from apps.secrets.selectors import version_ids_for_app
from apps.teams.models import Project, Team
from apps.teams.quotas import Limit, quota_check, quota_check_value

# What a release carries with it (a rollback runs with these again). Replicas are not part of a
# release: scaling is independent of what runs (a rollback keeps the current scale).
RELEASE_CONFIG_FIELDS = ("port", "health_check_path", "memory_mb", "cpus", "command", "variables")


def _check_limits(team: Team, app: App) -> None:
    quota_check_value(team=team, limit=Limit.REPLICAS_PER_APP, value=app.replicas)
    quota_check_value(team=team, limit=Limit.MEMORY_MB_PER_APP, value=app.memory_mb)
    quota_check_value(team=team, limit=Limit.CPUS_PER_APP, value=app.cpus)


def _validate_command(command: Any) -> None:
    if command is not None and (
        not isinstance(command, list) or not command or not all(isinstance(p, str) and p for p in command)
    ):
        raise ValidationFailed("Invalid command.", fields={"command": ["A non-empty list of strings, or null."]})


@transaction.atomic
def app_create(*, ctx: TeamContext, project: Project, name: str, **fields: Any) -> App:
    team = Team.objects.select_for_update().get(pk=ctx.team.pk)  # serialises concurrent quota checks
    quota_check(team=ctx.team, limit=Limit.APPS, current=App.objects.filter(team=team).count())
    if App.objects.filter(team=ctx.team, name=name).exists():
        raise ValidationFailed(
            "An app with this name already exists in this team.", fields={"name": ["Already taken in this team."]}
        )
    _validate_command(fields.get("command"))
    app = App(team=ctx.team, project=project, name=name, **fields)
    app.full_clean()
    _check_limits(ctx.team, app)
    app.save()
    audit_record(
        actor=ctx.actor,
        action="app.create",
        target=app,
        team=ctx.team,
        data={"project": project.slug, **_jsonable(fields)},
    )
    # A new app is a new router backend: the router config is rewritten (a seamless reload). Deferred,
    # not refused, while the broker is down: the app is usable without it (its first deploy, and the
    # reconciler, write the backend too).
    enqueue(tasks.router_sync, defer=True)
    return app


@transaction.atomic
def app_update(*, ctx: TeamContext, app: App, **changes: Any) -> App:
    """Change settings; release settings (port, limits, command, health check) take effect at the
    next deployment, replicas at once."""
    if not changes:
        return app
    _validate_command(changes.get("command"))
    scale = "replicas" in changes and changes["replicas"] != app.replicas
    for field, value in changes.items():
        setattr(app, field, value)
    app.full_clean()
    _check_limits(ctx.team, app)
    app.save()
    audit_record(actor=ctx.actor, action="app.update", target=app, team=ctx.team, data=_jsonable(changes))
    if scale:
        enqueue(tasks.app_converge, app.pk)
    return app


def _jsonable(data: dict[str, Any]) -> dict[str, Any]:
    return {
        k: (str(v) if not isinstance(v, str | int | float | bool | list | type(None)) else v) for k, v in data.items()
    }


@transaction.atomic
def app_scale(*, ctx: TeamContext, app: App, replicas: int) -> App:
    return app_update(ctx=ctx, app=app, replicas=replicas)


@transaction.atomic
def app_set_running(*, ctx: TeamContext, app: App, running: bool) -> App:
    """Stop (containers leave the router and stop) or start (the live release runs again)."""
    cancelled: list[Deployment] = []
    if not running:
        # Stopping is the newest intent: a deployment still in progress is cancelled, never routed.
        locked = App.objects.select_for_update().get(pk=app.pk)
        cancelled = _stop(
            ctx, _in_flight(locked), status=DeploymentStatus.CANCELLED, why="Cancelled: the app was stopped"
        )
    if app.desired_running != running or cancelled:
        app.desired_running = running
        app.save(update_fields=["desired_running", "updated_at"])
        audit_record(
            actor=ctx.actor,
            action="app.start" if running else "app.stop",
            target=app,
            team=ctx.team,
            data={"cancelled": [d.number for d in cancelled]} if cancelled else None,
        )
        enqueue(tasks.app_converge, app.pk)
    return app


@transaction.atomic
def app_delete(*, ctx: TeamContext, app: App, confirm: str) -> None:
    """Delete the app; its containers and route are removed by a worker right after."""
    require_confirmation(confirm, expected=app.name, what="the app's name")
    audit_record(actor=ctx.actor, action="app.delete", target=app, team=ctx.team)
    app_id = app.pk
    app.delete()
    enqueue(tasks.app_teardown, app_id)


# --- deployments ---------------------------------------------------------------------------------
def _release_config(source: App | Deployment) -> dict[str, Any]:
    if isinstance(source, Deployment):
        return {k: source.config.get(k) for k in RELEASE_CONFIG_FIELDS}
    return {
        "port": source.port,
        "health_check_path": source.health_check_path,
        "memory_mb": source.memory_mb,
        "cpus": str(source.cpus),
        "command": source.command,
        # The version of each variable (team, project, app merged): values stay encrypted until
        # the worker starts a container.
        "variables": version_ids_for_app(source),
    }


def _in_flight(app: App) -> list[Deployment]:
    """The app's deployments still in progress that may still be stopped: not those already
    switching traffic to their new containers (they are live within moments; the newer action
    queues behind them). Call with the app's row locked: the worker claims the switch under the
    same lock, so a deployment is either stopped here or switched there, never both."""
    switching = Container.objects.filter(deployment=OuterRef("pk"), in_router=True)
    return list(
        Deployment.objects.filter(app=app, status__in=IN_PROGRESS)
        .annotate(switching=Exists(switching))
        .filter(switching=False)
        .order_by("number")
    )


def _stop(
    ctx: TeamContext, stopped: list[Deployment], *, status: str, why: str, newer: Deployment | None = None
) -> list[Deployment]:
    """Mark in-flight deployments (from `_in_flight`, the app's row still locked) `status`
    (superseded or cancelled), naming who and what stopped them. Their worker notices within a
    second or two, removes their new containers (never routed) and stops; whatever was live keeps
    serving."""
    now = timezone.now()
    label = ctx.actor.label
    for deployment in stopped:
        reason = f"{why} by {label}"
        Deployment.objects.filter(pk=deployment.pk).update(
            status=status,
            superseded_by=newer,
            cancelled_by=label,
            cancelled_at=now,
            finished_at=now,
            reason=reason,
            updated_at=now,
        )
        DeploymentEvent.objects.create(
            deployment=deployment, level="warning", message=f"{reason}; its new containers are removed, never routed"
        )
        deployment.refresh_from_db()
    return stopped


def _create_deployment(
    ctx: TeamContext,
    app: App,
    *,
    image: str,
    config: dict[str, Any],
    action: str,
    rollback_of: Deployment | None = None,
) -> Deployment:
    """The newest intent wins: a deployment still in progress is superseded by this one (it is never
    routed), and this one is queued at once; nothing answers "wait for it to finish"."""
    app = App.objects.select_for_update().get(pk=app.pk)  # numbers and superseding need the row lock
    in_flight = _in_flight(app)
    number = (Deployment.objects.filter(app=app).aggregate(n=Max("number"))["n"] or 0) + 1
    actor = ctx.actor
    deployment = Deployment.objects.create(
        team=ctx.team,
        app=app,
        number=number,
        image=image,
        config=config,
        rollback_of=rollback_of,
        created_by=actor.user,
        created_by_label=actor.label,
        token_prefix=actor.token.prefix if actor.token else "",
    )
    what = {"deployment.create": "a deploy", "deployment.rollback": "a rollback", "app.restart": "a restart"}
    superseded = _stop(
        ctx,
        in_flight,
        status=DeploymentStatus.SUPERSEDED,
        why=f"Superseded by deployment #{number} ({what.get(action, action)})",
        newer=deployment,
    )
    via = f" with token {actor.token.prefix}…" if actor.token else ""
    DeploymentEvent.objects.create(deployment=deployment, message=f"Queued by {actor.label}{via}")
    if superseded:
        numbers = ", ".join(f"#{d.number}" for d in superseded)
        DeploymentEvent.objects.create(deployment=deployment, message=f"Supersedes {numbers} (still in progress)")
    audit_record(
        actor=actor,
        action=action,
        target=deployment,
        team=ctx.team,
        data={"app": app.name, "image": image, "number": number, "supersedes": [d.number for d in superseded]},
    )
    enqueue(tasks.deployment_run, deployment.pk)
    return deployment


@transaction.atomic
def deployment_create(*, ctx: TeamContext, app: App, image: str) -> Deployment:
    """Queue a release of `image` with the app's current settings (answers at once; poll it)."""
    image_reference_check(image)  # no pulls from the platform's own network (the engine checks again)
    if not app.desired_running:
        app.desired_running = True
        app.save(update_fields=["desired_running", "updated_at"])
    return _create_deployment(ctx, app, image=image, config=_release_config(app), action="deployment.create")


def _never_ran(deployment: Deployment) -> bool:
    """Failed, or stopped before it went live (superseded while in progress, or cancelled)."""
    return deployment.status in (DeploymentStatus.FAILED, DeploymentStatus.CANCELLED) or (
        deployment.cancelled_at is not None
    )


@transaction.atomic
def deployment_rollback(*, ctx: TeamContext, app: App, to: int | None = None) -> Deployment:
    """Release again the image and configuration of an earlier deployment: the one numbered `to`,
    or else — when a deployment is still in progress — the live one (the newest intent is "back to
    what serves": the one in flight is superseded), or else the one that was live before the
    current live one."""
    history = Deployment.objects.filter(app=app)
    if to is not None:
        target = history.filter(number=to).first()
        if target is None:
            raise ValidationFailed("No such deployment of this app.", fields={"to": [f"No deployment #{to}."]})
        if _never_ran(target) or target.in_progress:
            raise ValidationFailed(
                "Only a deployment that ran can be rolled back to.", fields={"to": [f"#{to} is {target.status}."]}
            )
    elif app.live_deployment is not None and history.filter(status__in=IN_PROGRESS).exists():
        target = app.live_deployment
    else:
        live_number = app.live_deployment.number if app.live_deployment else None
        candidates = history.filter(
            status__in=[DeploymentStatus.SUPERSEDED, DeploymentStatus.ROLLED_BACK], cancelled_at=None
        )
        if live_number is not None:
            candidates = candidates.filter(number__lt=live_number)
        target = candidates.order_by("-number").first()
        if target is None:
            raise ValidationFailed(
                "There is no earlier release to roll back to.", fields={"to": ["Nothing to roll back to."]}
            )
    return _create_deployment(
        ctx, app, image=target.image, config=_release_config(target), action="deployment.rollback", rollback_of=target
    )


@transaction.atomic
def app_restart(*, ctx: TeamContext, app: App) -> Deployment:
    """Replace the containers with fresh ones of the current release, without downtime. They get
    the variables as they are now (this is how a variable change reaches a running app). The
    current release is the newest one still in progress, if any (it is superseded by this restart,
    which carries its image on with the new variables), else the live one."""
    current = (
        Deployment.objects.filter(app=app, status__in=IN_PROGRESS).order_by("-number").first() or app.live_deployment
    )
    if current is None:
        raise ValidationFailed("The app has no live release to restart.", fields={"app": ["Deploy it first."]})
    config = {**_release_config(current), "variables": version_ids_for_app(app)}
    return _create_deployment(ctx, app, image=current.image, config=config, action="app.restart")


@transaction.atomic
def deployment_cancel(*, ctx: TeamContext, deployment: Deployment) -> Deployment:
    """Stop a deployment still in progress: it is marked cancelled at once, and its worker removes
    its new containers (never routed) within a second or two; whatever was live keeps serving.
    Conflict if it already finished (or is already switching traffic, i.e. as good as live)."""
    ctx.require(Capability.DEPLOY, deployment.app)
    app = App.objects.select_for_update().get(pk=deployment.app_id)
    deployment.refresh_from_db()
    if not deployment.in_progress:
        raise Conflict(
            f"Deployment #{deployment.number} of {app.name} already finished ({deployment.status}); "
            "there is nothing to cancel.",
            code="deployment_finished",
        )
    stoppable = [d for d in _in_flight(app) if d.pk == deployment.pk]
    if not _stop(ctx, stoppable, status=DeploymentStatus.CANCELLED, why="Cancelled"):
        raise Conflict(
            f"Deployment #{deployment.number} of {app.name} is already switching traffic to its new containers "
            "and cannot be cancelled any more; roll back once it is live.",
            code="deployment_finished",
        )
    audit_record(
        actor=ctx.actor,
        action="deployment.cancel",
        target=deployment,
        team=ctx.team,
        data={"app": app.name, "number": deployment.number},
    )
    deployment.refresh_from_db()
    return deployment
