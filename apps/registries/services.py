"""Writes on a team's registry credentials. The password is write-only: it is encrypted before it is
stored, and nothing here returns it, logs it or records it in the audit trail."""

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from apps.audit.services import audit_record
from apps.core.access import TeamContext
from apps.core.capabilities import Capability
from apps.core.errors import ValidationFailed
from apps.registries.models import RegistryCredential, registry_normalize
from apps.secrets import crypto

# Who may manage registry logins: MANAGE_SECRETS. A registry password is a secret the platform uses on
# the team's behalf, like a secret variable: developers (and tokens with the "secrets" scope) may set
# one, nobody may read it back (there is no reveal), and viewers only see which hosts have one.


def _taken(registry: str) -> ValidationFailed:
    return ValidationFailed(
        f"The team already has a credential for {registry}; change its password with PATCH.",
        fields={"registry": ["Already has a credential."]},
    )


def _full_clean(credential: RegistryCredential) -> None:
    try:
        credential.full_clean(exclude=["team", "created_by"])
    except ValidationError as exc:
        # Field names only: a message never quotes the password.
        raise ValidationFailed("Invalid registry credential.", fields=exc.message_dict) from None


def registry_credential_create(
    *, ctx: TeamContext, registry: str, username: str, password: str
) -> RegistryCredential:
    """Store the team's login to ``registry`` (one per host; a second is a 409). The password is
    stored only encrypted; deployments and cron runs of images on that host pull with it."""
    ctx.require(Capability.MANAGE_SECRETS)
    registry = registry_normalize(registry)
    credential = RegistryCredential(
        team=ctx.team,
        registry=registry,
        username=username,
        password_encrypted=crypto.encrypt(password),
        created_by=ctx.actor.user,
    )
    _full_clean(credential)
    if RegistryCredential.objects.filter(team=ctx.team, registry=registry).exists():
        raise _taken(registry)
    try:
        with transaction.atomic():
            credential.save()
            audit_record(
                actor=ctx.actor,
                action="registry_credential.create",
                target=credential,
                team=ctx.team,
                data={"registry": registry, "username": username},
            )
    except IntegrityError as exc:
        # Another request stored the same host between the check above and this insert.
        if "registry_credential_unique_in_team" not in str(exc):
            raise
        raise _taken(registry) from None
    return credential


@transaction.atomic
def registry_credential_update(
    *, ctx: TeamContext, credential: RegistryCredential, username: str | None = None, password: str | None = None
) -> RegistryCredential:
    """Replace the username and/or the password (the old password is never shown)."""
    ctx.require(Capability.MANAGE_SECRETS)
    changed = []
    if username is not None:
        credential.username = username
        changed.append("username")
    if password is not None:
        credential.password_encrypted = crypto.encrypt(password)
        changed.append("password")
    if not changed:
        return credential
    _full_clean(credential)
    credential.save()
    audit_record(
        actor=ctx.actor,
        action="registry_credential.update",
        target=credential,
        team=ctx.team,
        data={"registry": credential.registry, "changed": changed},
    )
    return credential


@transaction.atomic
def registry_credential_delete(*, ctx: TeamContext, credential: RegistryCredential) -> None:
    """Forget the login. Images of that host are then pulled without it (and fail when private)."""
    ctx.require(Capability.MANAGE_SECRETS)
    audit_record(
        actor=ctx.actor,
        action="registry_credential.delete",
        target=credential,
        team=ctx.team,
        data={"registry": credential.registry},
    )
    credential.delete()
