"""The permission matrix: what each role may do, and which token scope each capability needs.

This module is the single source of truth for roles, capabilities and scopes; docs/permissions.md
shows the same table for people (a test keeps the two in step).
"""

from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    OWNER = "owner"
    ADMIN = "admin"
    DEVELOPER = "developer"
    VIEWER = "viewer"

    @property
    def rank(self) -> int:
        return _ROLE_RANK[self]


_ROLE_RANK = {Role.VIEWER: 0, Role.DEVELOPER: 1, Role.ADMIN: 2, Role.OWNER: 3}


class Scope(StrEnum):
    """What a token may be used for. Every token can read; the other scopes widen it."""

    READ = "read"
    DEPLOY = "deploy"
    LOGS = "logs"
    SECRETS = "secrets"
    INFRA = "infra"
    ADMIN = "admin"


class Capability(StrEnum):
    VIEW = "view"
    VIEW_LOGS = "view_logs"
    DEPLOY = "deploy"
    CHANGE_CONFIG = "change_config"
    MANAGE_APPS = "manage_apps"
    MANAGE_SECRETS = "manage_secrets"
    REVEAL_SECRETS = "reveal_secrets"
    MANAGE_CRON = "manage_cron"
    MANAGE_ALERTS = "manage_alerts"
    MANAGE_DATABASES = "manage_databases"
    DELETE = "delete"
    MANAGE_MEMBERS = "manage_members"
    MANAGE_TEAM = "manage_team"


@dataclass(frozen=True)
class CapabilityRule:
    capability: Capability
    description: str
    roles: frozenset[Role]
    # The scope a token needs; None means people only (no token may ever do it).
    scope: Scope | None
    # Whether a capability can be granted on a single object (project, app, ...) beyond the role.
    grantable: bool = True


_ALL = frozenset(Role)
_DEVELOPER_UP = frozenset({Role.OWNER, Role.ADMIN, Role.DEVELOPER})
_ADMIN_UP = frozenset({Role.OWNER, Role.ADMIN})

MATRIX: dict[Capability, CapabilityRule] = {
    rule.capability: rule
    for rule in (
        CapabilityRule(
            Capability.VIEW, "View apps, deployments, databases, cron jobs, alerts, metrics", _ALL, Scope.READ
        ),
        CapabilityRule(Capability.VIEW_LOGS, "View build, deploy, runtime and cron logs", _DEVELOPER_UP, Scope.LOGS),
        CapabilityRule(Capability.DEPLOY, "Deploy, roll back, restart", _DEVELOPER_UP, Scope.DEPLOY),
        CapabilityRule(Capability.CHANGE_CONFIG, "Scale and change app configuration", _DEVELOPER_UP, Scope.DEPLOY),
        CapabilityRule(
            Capability.MANAGE_APPS,
            "Create and change projects, apps, edge functions",
            _DEVELOPER_UP,
            Scope.DEPLOY,
        ),
        CapabilityRule(Capability.MANAGE_SECRETS, "Set and unset variables and secrets", _DEVELOPER_UP, Scope.SECRETS),
        CapabilityRule(
            Capability.REVEAL_SECRETS,
            "Reveal secret values and database credentials",
            _ADMIN_UP,
            Scope.SECRETS,
        ),
        CapabilityRule(Capability.MANAGE_CRON, "Create and change cron jobs", _DEVELOPER_UP, Scope.DEPLOY),
        CapabilityRule(
            Capability.MANAGE_ALERTS,
            "Create and change alert rules and notification channels",
            _DEVELOPER_UP,
            Scope.DEPLOY,
        ),
        CapabilityRule(
            Capability.MANAGE_DATABASES,
            "Create, delete, back up and restore databases",
            _ADMIN_UP,
            Scope.INFRA,
        ),
        CapabilityRule(Capability.DELETE, "Delete projects and apps", _ADMIN_UP, Scope.INFRA),
        CapabilityRule(
            Capability.MANAGE_MEMBERS,
            "Manage members, groups, grants, service accounts, others' tokens; read the audit log",
            _ADMIN_UP,
            Scope.ADMIN,
            grantable=False,
        ),
        CapabilityRule(
            Capability.MANAGE_TEAM,
            "Change the plan, rename or delete the team, transfer ownership",
            frozenset({Role.OWNER}),
            None,
            grantable=False,
        ),
    )
}

GRANTABLE = tuple(c for c, rule in MATRIX.items() if rule.grantable)


def role_allows(role: Role | str, capability: Capability) -> bool:
    return Role(role) in MATRIX[capability].roles


def scope_allows(scopes: "frozenset[str] | set[str] | list[str]", capability: Capability) -> bool:
    needed = MATRIX[capability].scope
    return needed is not None and (needed == Scope.READ or needed in scopes)


def role_capabilities(role: Role | str) -> list[Capability]:
    return [c for c in Capability if role_allows(role, c)]


def markdown_table() -> str:
    """The matrix as the Markdown table in docs/permissions.md (a test keeps the two equal)."""
    roles = list(Role)
    lines = [
        "| capability | what it allows | " + " | ".join(roles) + " | token scope | grantable |",
        "|---|---|" + "---|" * len(roles) + "---|---|",
    ]
    for capability, rule in MATRIX.items():
        marks = " | ".join("Y" if role in rule.roles else "—" for role in roles)
        scope = f"`{rule.scope}`" if rule.scope else "none (people only)"
        lines.append(
            f"| `{capability}` | {rule.description} | {marks} | {scope} | {'yes' if rule.grantable else 'no'} |"
        )
    return "\n".join(lines)
