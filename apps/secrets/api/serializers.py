from typing import Any

from rest_framework import serializers

from apps.secrets.models import Level, Variable
from apps.secrets.selectors import plain_value


class VariableOutput(serializers.ModelSerializer):
    """Never a secret's value: `value` is null for secrets (reveal is a separate, audited action)."""

    value = serializers.SerializerMethodField()
    version = serializers.IntegerField(source="current.number")
    updated_by = serializers.CharField(source="current.created_by_label")
    updated_at = serializers.DateTimeField(source="current.created_at")

    class Meta:
        model = Variable
        fields = ("name", "level", "secret", "value", "version", "updated_by", "updated_at")

    def get_value(self, variable: Variable) -> str | None:
        return plain_value(variable)


class VersionOutput(serializers.Serializer):
    version = serializers.IntegerField(source="number")
    secret = serializers.BooleanField()
    deleted = serializers.BooleanField()
    created_by = serializers.CharField(source="created_by_label")
    created_at = serializers.DateTimeField()


class RevealOutput(serializers.Serializer):
    name = serializers.CharField()
    value = serializers.CharField()
    version = serializers.IntegerField()


class SetInput(serializers.Serializer):
    variables = serializers.DictField(
        child=serializers.CharField(allow_blank=True, trim_whitespace=False, max_length=32 * 1024),
        allow_empty=False,
        help_text='{"NAME": "value", ...}',
    )
    secret = serializers.BooleanField(default=False)
    restart = serializers.BooleanField(default=True, help_text="Redeploy the live apps that see these variables.")

    def validate_variables(self, value: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(self.initial_data.get("variables"), dict):
            raise serializers.ValidationError("An object of names to string values.")
        for name, raw in self.initial_data["variables"].items():
            if not isinstance(raw, str):
                raise serializers.ValidationError(f"The value of {name} must be a string.")
        return value


class UnsetInput(serializers.Serializer):
    names = serializers.ListField(child=serializers.CharField(max_length=128), allow_empty=False, max_length=500)
    restart = serializers.BooleanField(default=True)


class ChangeOutput(serializers.Serializer):
    results = VariableOutput(many=True, required=False)
    unset = serializers.ListField(child=serializers.CharField(), required=False)
    restarted = serializers.ListField(child=serializers.CharField())
    skipped = serializers.ListField(child=serializers.DictField())


LEVELS = [level.value for level in Level]
