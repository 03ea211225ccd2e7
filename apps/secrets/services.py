"""Writes for variables and secrets. Values are encrypted before they reach the database, never
logged, never put in audit data or error messages."""

import re
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.db.models import Exists, Max, OuterRef, Q

from apps.audit.services import audit_record
from apps.core.access import TeamContext
from apps.core.actors import Actor
from apps.core.capabilities import Capability
from apps.core.errors import Conflict, PandaError, ValidationFailed
from apps.deployments.models import IN_PROGRESS, App, Deployment
from apps.secrets import crypto
from apps.secrets.models import NAME_RE, RESERVED_NAMES, RESERVED_PREFIX, Level, Variable, VariableVersion
from apps.teams.models import Project

MAX_VALUE_LENGTH = 32 * 1024
MAX_VARIABLES_PER_CALL = 500
_NAME = re.compile(NAME_RE)


@dataclass(frozen=True)
class Scope:
    """Where variables are set: the whole team, one project, or one app."""

    level: Level
    project: Project | None = None
    app: App | None = None

    @property
    def filters(self) -> dict[str, Any]:
        if self.level == Level.APP:
            return {"level": Level.APP, "app": self.app}
        if self.level == Level.PROJECT:
            return {"level": Level.PROJECT, "project": self.project}
        return {"level": Level.TEAM}

    @property
    def label(self) -> str:
        if self.level == Level.APP:
            return f"app {self.app.name}"
        if self.level == Level.PROJECT:
            return f"project {self.project.slug}"
        return "the team"

    def affected_apps(self, ctx: TeamContext) -> list[App]:
        """The running apps that see these variables: those with a live release, and those whose
        first release is still in progress (the restart supersedes it, with the new values)."""
        in_flight = Deployment.objects.filter(app=OuterRef("pk"), status__in=IN_PROGRESS)
        apps = App.objects.filter(team=ctx.team, desired_running=True).filter(
            Q(live_deployment__isnull=False) | Exists(in_flight)
        )
        if self.level == Level.APP:
            apps = apps.filter(pk=self.app.pk)
        elif self.level == Level.PROJECT:
            apps = apps.filter(project=self.project)
        return list(apps.select_related("team", "live_deployment").order_by("name"))


@dataclass
class ChangeResult:
    variables: list[Variable] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    restarted: list[str] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)


def validate_name(name: str) -> str | None:
    """The problem with a variable name, or None (the message never repeats a value)."""
    # fullmatch: with match, "$" also matches before a trailing newline, letting "A\n" through.
    if not _NAME.fullmatch(name) or len(name) > 128:
        return "Use letters, digits and underscores (max 128), not starting with a digit."
    if name in RESERVED_NAMES or name.upper().startswith(RESERVED_PREFIX):
        return f"{name} is set by the platform and cannot be overridden."
    return None


def _validate(values: dict[str, str]) -> None:
    if not values:
        raise ValidationFailed("Give at least one variable.", fields={"variables": ["Empty."]})
    if len(values) > MAX_VARIABLES_PER_CALL:
        raise ValidationFailed("Too many variables.", fields={"variables": [f"At most {MAX_VARIABLES_PER_CALL}."]})
    errors: dict[str, list[str]] = {}
    for name, value in values.items():
        if problem := validate_name(name):
            errors[name] = [problem]
        elif not isinstance(value, str):
            errors[name] = ["The value must be a string."]
        elif len(value) > MAX_VALUE_LENGTH or "\x00" in value:
            errors[name] = [f"The value must be at most {MAX_VALUE_LENGTH} characters, without NUL."]
    if errors:
        raise ValidationFailed("Invalid variables.", fields=errors)


def _new_version(actor: Actor, variable: Variable, *, value: str | None) -> VariableVersion:
    number = (variable.versions.aggregate(n=Max("number"))["n"] or 0) + 1
    version = VariableVersion.objects.create(
        variable=variable,
        number=number,
        secret=variable.secret,
        deleted=value is None,
        value_encrypted="" if value is None else crypto.encrypt(value),
        created_by=actor.user,
        created_by_label=actor.label,
    )
    variable.current = version
    variable.save(update_fields=["current", "secret", "updated_at"])
    return version


@transaction.atomic
def variables_set(
    *, ctx: TeamContext, scope: Scope, values: dict[str, str], secret: bool = False, restart: bool = True
) -> ChangeResult:
    """Set variables at one level (each change a new encrypted version), then redeploy the live
    apps that see them, unless `restart` is false."""
    _validate(values)
    result = ChangeResult()
    for name in sorted(values):
        variable, _ = Variable.objects.select_for_update().get_or_create(
            team=ctx.team,
            name=name,
            **scope.filters,
            defaults={"project": scope.project or (scope.app.project if scope.app else None), "secret": secret},
        )
        if variable.secret and not secret and variable.current and not variable.current.deleted:
            # Turning a secret into a plain value would make it readable: unset it first.
            raise Conflict(
                f"{name} is a secret; unset it before setting it as a plain value.",
                fields={name: ["Is a secret."]},
            )
        variable.secret = secret
        _new_version(ctx.actor, variable, value=values[name])
        result.variables.append(variable)
        result.names.append(name)
    audit_record(
        actor=ctx.actor,
        action="secrets.set" if secret else "variables.set",
        target=scope.app or scope.project or ctx.team,
        team=ctx.team,
        data={"names": result.names, "level": scope.level},  # names only, never values
    )
    if restart:
        _restart(ctx, scope, result)
    return result


@transaction.atomic
def variables_unset(*, ctx: TeamContext, scope: Scope, names: list[str], restart: bool = True) -> ChangeResult:
    existing = {
        v.name: v
        for v in Variable.objects.select_for_update()
        .filter(team=ctx.team, name__in=names, **scope.filters)
        .exclude(current=None)
        .exclude(current__deleted=True)
    }
    missing = sorted(set(names) - set(existing))
    if not names or missing:
        raise ValidationFailed(
            f"No such variable at this level: {', '.join(missing)}." if missing else "Give at least one name.",
            fields={"names": [f"Not set on {scope.label}: {', '.join(missing)}" if missing else "Empty."]},
        )
    result = ChangeResult()
    for name in sorted(existing):
        _new_version(ctx.actor, existing[name], value=None)
        result.names.append(name)
    audit_record(
        actor=ctx.actor,
        action="variables.unset",
        target=scope.app or scope.project or ctx.team,
        team=ctx.team,
        data={"names": result.names, "level": scope.level},
    )
    if restart:
        _restart(ctx, scope, result)
    return result


@transaction.atomic
def platform_secret_set(*, actor: Actor, app: App, name: str, value: str | None, reason: str) -> None:
    """Set (or, with None, unset) a secret of `app` that the platform manages for it — a managed
    database's URL. A new version like any other (the app's next deploy receives it); audited with
    names only. No restart: the caller decides."""
    variable, _ = Variable.objects.select_for_update().get_or_create(
        team_id=app.team_id, name=name, level=Level.APP, app=app,
        defaults={"project_id": app.project_id, "secret": True},  # nosec B105 - a flag, not a password
    )  # fmt: skip
    current = variable.current
    if value is None and (current is None or current.deleted):
        return  # already unset
    variable.secret = True
    _new_version(actor, variable, value=value)
    audit_record(
        actor=actor,
        action="secrets.set" if value is not None else "variables.unset",
        target=app,
        team=app.team,
        data={"names": [name], "level": Level.APP, "reason": reason},
    )


def _restart(ctx: TeamContext, scope: Scope, result: ChangeResult) -> None:
    from apps.deployments.services import app_restart

    for app in scope.affected_apps(ctx):
        if not ctx.can(Capability.DEPLOY, app):
            result.skipped.append({"app": app.name, "reason": "You may not deploy this app."})
            continue
        try:
            with transaction.atomic():
                app_restart(ctx=ctx, app=app)
        except PandaError as exc:
            result.skipped.append({"app": app.name, "reason": exc.message})
        else:
            result.restarted.append(app.name)


@transaction.atomic
def variable_reveal(*, ctx: TeamContext, variable: Variable) -> str:
    """The value of a variable, for a caller with the reveal capability; every reveal is audited."""
    audit_record(
        actor=ctx.actor,
        action="secrets.reveal",
        target=variable,
        team=ctx.team,
        data={"name": variable.name, "level": variable.level, "version": variable.current.number},
    )
    return crypto.decrypt(variable.current.value_encrypted)
