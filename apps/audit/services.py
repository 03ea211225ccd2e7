from typing import Any

from django.db import models

from apps.audit.models import AuditEvent
from apps.core.actors import Actor


def audit_record(
    *,
    actor: Actor,
    action: str,
    target: models.Model,
    team: Any = None,
    data: dict[str, Any] | None = None,
) -> AuditEvent:
    """Write one audit row. Call it inside the transaction of the change it records, so the two
    land together or not at all. Never put secret values in `data`."""
    token = actor.token
    return AuditEvent.objects.create(
        team=team,
        team_slug=team.slug if team is not None else "",
        team_ref=team.pk if team is not None else None,
        actor=actor.user,
        actor_label=actor.label,
        token=token,
        token_prefix=token.prefix if token else "",
        via=actor.via,
        action=action,
        target_type=target._meta.label_lower,
        target_id=str(target.pk or ""),
        target_label=str(target)[:200],
        ip=actor.ip,
        data=data or {},
    )
