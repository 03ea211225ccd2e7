from typing import Any

from django.db import models

from apps.events.models import PlatformEvent, Severity


def event_emit(
    *,
    team: Any,
    kind: str,
    subject: models.Model,
    message: str,
    severity: str = Severity.INFO,
    data: dict[str, Any] | None = None,
) -> PlatformEvent:
    """Record a platform event (consumed by alert rules). Never put secret values in `data`."""
    # A project is its own project (its `project_lookup` is "pk"): its events belong to its timeline.
    is_project = getattr(type(subject), "project_lookup", None) == "pk"
    return PlatformEvent.objects.create(
        team=team,
        project_id=subject.pk if is_project else getattr(subject, "project_id", None),
        kind=kind,
        severity=severity,
        subject_type=subject._meta.label_lower,
        subject_id=str(subject.pk),
        subject_label=str(subject)[:200],
        message=message,
        data=data or {},
    )
