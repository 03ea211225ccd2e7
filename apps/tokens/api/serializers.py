from rest_framework import serializers

from apps.core.capabilities import Scope
from apps.tokens.models import ApiToken


class TokenOutput(serializers.ModelSerializer):
    user_id = serializers.IntegerField(read_only=True)
    projects = serializers.SerializerMethodField()
    active = serializers.BooleanField(source="is_active", read_only=True)

    class Meta:
        model = ApiToken
        fields = (
            "id",
            "name",
            "prefix",
            "user_id",
            "scopes",
            "projects",
            "expires_at",
            "last_used_at",
            "last_used_ip",
            "revoked_at",
            "active",
            "created_at",
        )

    def get_projects(self, token: ApiToken) -> list[str]:
        return sorted(p.slug for p in token.projects.all())


class TokenCreatedOutput(TokenOutput):
    token = serializers.CharField(help_text="The token itself. Shown only in this response; store it now.")

    class Meta(TokenOutput.Meta):
        fields = (*TokenOutput.Meta.fields, "token")


class TokenCreateInput(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    scopes = serializers.ListField(
        child=serializers.ChoiceField(choices=[s.value for s in Scope]),
        default=list,
        max_length=len(Scope),
        help_text="read is always included.",
    )
    projects = serializers.ListField(
        child=serializers.CharField(max_length=40),
        default=list,
        max_length=100,
        help_text="Project slugs to limit the token to; empty for the whole team.",
    )
    expires_in_days = serializers.IntegerField(required=False, min_value=1)
    user = serializers.IntegerField(
        required=False,
        help_text=(
            "Create the token for this service account (its user id; owners and admins). A token for a "
            "person can only be created by that person."
        ),
    )
