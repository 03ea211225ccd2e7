from rest_framework import serializers

from apps.audit.models import AuditEvent


class AuditEventOutput(serializers.ModelSerializer):
    actor = serializers.CharField(source="actor_label")

    class Meta:
        model = AuditEvent
        fields = (
            "id",
            "created_at",
            "actor",
            "actor_id",
            "token_prefix",
            "via",
            "action",
            "target_type",
            "target_id",
            "target_label",
            "ip",
            "data",
        )
