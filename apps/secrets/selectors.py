"""Reads of variables. Values are decrypted only here and in the reveal service, and only for the
caller that needs them (a container's environment, a reveal, a plain value in a list)."""

from collections.abc import Iterable, Mapping
from typing import Any

from django.db.models import Q, QuerySet

from apps.secrets import crypto
from apps.secrets.masking import NO_SECRETS, SecretMasker
from apps.secrets.models import Level, Variable, VariableVersion


def live_variables() -> QuerySet[Variable]:
    """Variables that currently have a value (not unset), with their current version."""
    return Variable.objects.exclude(current=None).exclude(current__deleted=True).select_related("current")


def variables_for_app(app: object) -> list[Variable]:
    """The merged variables an app's containers get: team, then project, then app level, the
    narrower level winning for the same name."""
    rows = live_variables().filter(
        Q(level=Level.TEAM, team=app.team_id)
        | Q(level=Level.PROJECT, project=app.project_id)
        | Q(level=Level.APP, app=app.pk)
    )
    rank = {Level.TEAM: 0, Level.PROJECT: 1, Level.APP: 2}
    merged: dict[str, Variable] = {}
    for variable in sorted(rows, key=lambda v: rank[v.level]):
        merged[variable.name] = variable
    return [merged[name] for name in sorted(merged)]


def version_ids_for_app(app: object) -> dict[str, int]:
    """What a deployment records: the version of each variable it runs with."""
    return {v.name: v.current_id for v in variables_for_app(app)}


def environment_from_versions(
    version_ids: dict[str, int], *, versions: Mapping[int, VariableVersion] | None = None
) -> dict[str, str]:
    """Decrypt the recorded versions into a container's environment (in the worker only).
    `versions`: those already read with versions_of (starting many containers at once)."""
    by_pk = versions_of([version_ids]) if versions is None else versions
    return {name: crypto.decrypt(by_pk[pk].value_encrypted) for name, pk in sorted(version_ids.items()) if pk in by_pk}


def versions_of(recorded: Iterable[dict[str, int]]) -> dict[int, VariableVersion]:
    """The versions (not deleted) that recorded environments name, by id, in one query."""
    ids = {pk for version_ids in recorded for pk in version_ids.values()}
    return {v.pk: v for v in VariableVersion.objects.filter(pk__in=ids, deleted=False)} if ids else {}


def plain_value(variable: Variable) -> str | None:
    """The value of a non-secret variable (anyone who can view may read it); None for secrets."""
    if variable.secret or variable.current is None or variable.current.deleted:
        return None
    return crypto.decrypt(variable.current.value_encrypted)


def secret_values_for_app(app: object) -> list[str]:
    """Every secret value the app's containers (and its cron runs) may hold: each secret version,
    old ones included, of the variables at the levels the app sees. For masking logs only."""
    return secret_values_for_apps([app])[app.pk]


def secret_values_for_apps(apps: Iterable[Any]) -> dict[int, list[str]]:
    """secret_values_for_app for several apps (by id), in one query."""
    apps = list(apps)
    teams, projects, ids = ({getattr(a, f) for a in apps} for f in ("team_id", "project_id", "pk"))
    versions = VariableVersion.objects.filter(secret=True, deleted=False).filter(
        Q(variable__level=Level.TEAM, variable__team__in=teams)
        | Q(variable__level=Level.PROJECT, variable__project__in=projects)
        | Q(variable__level=Level.APP, variable__app__in=ids)
    )
    by_owner: dict[tuple[str, int], list[str]] = {}
    rows = versions.exclude(value_encrypted="").values_list(
        "variable__level", "variable__team_id", "variable__project_id", "variable__app_id", "value_encrypted"
    )
    for level, team_id, project_id, app_id, token in rows.iterator():
        try:
            value = crypto.decrypt(token)
        except crypto.DecryptionFailed:
            continue  # no container can have received it either
        owner = {Level.TEAM: team_id, Level.PROJECT: project_id, Level.APP: app_id}[level]
        by_owner.setdefault((level, owner), []).append(value)
    return {
        app.pk: [
            value
            for level, owner in ((Level.TEAM, app.team_id), (Level.PROJECT, app.project_id), (Level.APP, app.pk))
            for value in by_owner.get((level, owner), [])
        ]
        for app in apps
    }


def log_masker_for_app(app: object) -> SecretMasker:
    """A masker for whatever the app's containers print (see apps.secrets.masking)."""
    return SecretMasker(secret_values_for_app(app))


def log_masker_for_cron_job(job: object, *, secrets: Mapping[int, list[str]] | None = None) -> SecretMasker:
    """A cron run gets its app's environment (a job with an image of its own gets no variables).
    `secrets`: the apps' secret values already read with secret_values_for_apps."""
    if not job.app_id:
        return NO_SECRETS
    return SecretMasker(secrets[job.app_id]) if secrets is not None else log_masker_for_app(job.app)
