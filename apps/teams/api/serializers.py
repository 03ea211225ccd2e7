from typing import Any

from rest_framework import serializers

from apps.core.capabilities import GRANTABLE, Role
from apps.teams.models import (
    SLUG_MAX_LENGTH,
    Membership,
    Plan,
    Project,
    ServiceAccount,
    Team,
    TeamGroup,
    slug_validator,
)

ROLE_CHOICES = [r.value for r in Role]
SERVICE_ACCOUNT_ROLE_CHOICES = [Role.VIEWER.value, Role.DEVELOPER.value, Role.ADMIN.value]
# User ids are 64-bit: a larger number is refused here, not by the database (SQLite raises
# OverflowError on it, a 500; found by tests/security/test_api_fuzz.py).
MAX_ID = 2**63 - 1


class StrictCharField(serializers.CharField):
    """A CharField that takes only a JSON string: DRF would turn 123 into "123" and a slug sent as
    a number is a client bug worth reporting, not guessing at."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


def slug_field(**kwargs: Any) -> serializers.CharField:
    return StrictCharField(max_length=SLUG_MAX_LENGTH, validators=[slug_validator], **kwargs)


# --- output -------------------------------------------------------------------------------------
class PlanOutput(serializers.ModelSerializer):
    class Meta:
        model = Plan
        fields = (
            "slug",
            "name",
            "max_projects",
            "max_apps",
            "max_replicas_per_app",
            "max_memory_mb_per_app",
            "max_databases",
            "max_cron_jobs",
        )


class TeamOutput(serializers.ModelSerializer):
    plan = PlanOutput(read_only=True)
    role = serializers.SerializerMethodField(help_text="Your role in this team.")
    suspended = serializers.SerializerMethodField()

    class Meta:
        model = Team
        fields = ("slug", "name", "plan", "role", "suspended", "created_at")

    def get_role(self, team: Team) -> str | None:
        return getattr(team, "my_role", None)

    def get_suspended(self, team: Team) -> bool:
        return team.is_suspended


class UserBriefOutput(serializers.Serializer):
    id = serializers.IntegerField()
    email = serializers.EmailField()
    name = serializers.SerializerMethodField()

    def get_name(self, user: Any) -> str:
        return user.get_full_name() or user.username


class MembershipOutput(serializers.ModelSerializer):
    user = UserBriefOutput(read_only=True)

    class Meta:
        model = Membership
        fields = ("user", "role", "created_at")


class ProjectOutput(serializers.ModelSerializer):
    class Meta:
        model = Project
        fields = ("slug", "name", "description", "created_at", "updated_at")


class GroupOutput(serializers.ModelSerializer):
    members = serializers.SerializerMethodField()

    class Meta:
        model = TeamGroup
        fields = ("slug", "name", "members", "created_at")

    def get_members(self, group: TeamGroup) -> list[int]:
        return sorted(u.pk for u in group.group.user_set.all())


class ServiceAccountOutput(serializers.ModelSerializer):
    role = serializers.CharField(source="role_in_team", read_only=True)
    user_id = serializers.IntegerField(read_only=True)

    class Meta:
        model = ServiceAccount
        fields = ("slug", "description", "role", "user_id", "created_at")


class GrantOutput(serializers.Serializer):
    id = serializers.CharField()
    capability = serializers.CharField()
    user = UserBriefOutput(allow_null=True)
    group = serializers.CharField(allow_null=True, help_text="The team group's slug.")
    created_at = serializers.DateTimeField()


# --- input --------------------------------------------------------------------------------------
class TeamCreateInput(serializers.Serializer):
    slug = slug_field()
    name = serializers.CharField(max_length=100, required=False, default="")


class TeamUpdateInput(serializers.Serializer):
    name = serializers.CharField(max_length=100)


class ConfirmInput(serializers.Serializer):
    confirm = serializers.CharField(max_length=100, help_text="Repeat the slug to confirm deletion.")


class TransferInput(serializers.Serializer):
    user = serializers.IntegerField(min_value=1, max_value=MAX_ID, help_text="Id of the member who becomes owner.")


class MemberAddInput(serializers.Serializer):
    email = serializers.EmailField(max_length=150)
    role = serializers.ChoiceField(choices=ROLE_CHOICES)


class MemberUpdateInput(serializers.Serializer):
    role = serializers.ChoiceField(choices=ROLE_CHOICES)


class ProjectCreateInput(serializers.Serializer):
    slug = slug_field()
    name = serializers.CharField(max_length=100, required=False, default="")
    description = serializers.CharField(max_length=500, required=False, default="", allow_blank=True)


class ProjectUpdateInput(serializers.Serializer):
    name = serializers.CharField(max_length=100, required=False)
    description = serializers.CharField(max_length=500, required=False, allow_blank=True)


class GroupCreateInput(serializers.Serializer):
    slug = slug_field()
    name = serializers.CharField(max_length=100, required=False, default="")
    members = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=MAX_ID), required=False, default=list, max_length=1000
    )


class GroupUpdateInput(serializers.Serializer):
    name = serializers.CharField(max_length=100, required=False)
    members = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=MAX_ID), required=False, max_length=1000
    )


class GrantCreateInput(serializers.Serializer):
    capability = serializers.ChoiceField(choices=[c.value for c in GRANTABLE])
    user = serializers.IntegerField(required=False, min_value=1, max_value=MAX_ID, help_text="A member's user id.")
    group = serializers.CharField(required=False, max_length=SLUG_MAX_LENGTH, help_text="A team group's slug.")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if ("user" in attrs) == ("group" in attrs):
            raise serializers.ValidationError("Give exactly one of 'user' or 'group'.")
        return attrs


class ServiceAccountCreateInput(serializers.Serializer):
    slug = slug_field()
    role = serializers.ChoiceField(choices=SERVICE_ACCOUNT_ROLE_CHOICES)
    description = serializers.CharField(max_length=500, required=False, default="", allow_blank=True)


class ServiceAccountUpdateInput(serializers.Serializer):
    role = serializers.ChoiceField(choices=SERVICE_ACCOUNT_ROLE_CHOICES, required=False)
    description = serializers.CharField(max_length=500, required=False, allow_blank=True)


class MemberRemoveInput(serializers.Serializer):
    revoke_service_account_tokens = serializers.BooleanField(
        required=False,
        default=False,
        help_text=(
            "Also revoke the tokens this member made for the team's service accounts (kept by default so "
            "CI keeps working, and listed in the response)."
        ),
    )


class TokenBriefOutput(serializers.Serializer):
    id = serializers.IntegerField()
    prefix = serializers.CharField()
    name = serializers.CharField()
    user = serializers.IntegerField(help_text="The id of the token's user (a service account's, for kept tokens).")


class MemberRemovalOutput(serializers.Serializer):
    user_id = serializers.IntegerField()
    tokens_revoked = TokenBriefOutput(many=True, help_text="The member's tokens, and tokens they made, now revoked.")
    service_account_tokens_kept = TokenBriefOutput(
        many=True,
        help_text="Tokens this member made for service accounts that still work: revoke them if the member "
        "might keep a copy.",
    )


class TeardownOutput(serializers.Serializer):
    apps = serializers.ListField(child=serializers.CharField(), help_text="Apps deleted (containers stop shortly).")
    cron_jobs = serializers.ListField(child=serializers.CharField(), help_text="Cron jobs deleted.")
    databases = serializers.ListField(
        child=serializers.CharField(), help_text="Databases deleted and being purged (no undelete grace period)."
    )
    finished = serializers.BooleanField(help_text="False while a worker still purges databases.")
