"""/api/v1/teams/{team}/registry-credentials/: the team's registry logins. The password is write-only."""

from typing import Any, ClassVar

from rest_framework import serializers

from apps.core.api.views import TeamScopedCrudViewSet, crud_capabilities
from apps.core.capabilities import Capability
from apps.registries import services
from apps.registries.models import RegistryCredential, registry_normalize
from apps.teams.api.serializers import StrictCharField


class RegistryCredentialOutput(serializers.ModelSerializer):
    class Meta:
        model = RegistryCredential
        fields = ("registry", "username", "created_at", "updated_at")  # never the password


class RegistryCredentialCreateInput(serializers.Serializer):
    registry = StrictCharField(
        max_length=255, help_text="The registry host as image references name it: ghcr.io, registry.example.com:5000."
    )
    username = StrictCharField(max_length=255)
    password = StrictCharField(
        max_length=10000, write_only=True, trim_whitespace=False, help_text="A password or access token; never shown."
    )


class RegistryCredentialUpdateInput(serializers.Serializer):
    username = StrictCharField(max_length=255, required=False)
    password = StrictCharField(max_length=10000, write_only=True, trim_whitespace=False, required=False)


class RegistryCredentialViewSet(TeamScopedCrudViewSet):
    """The team's logins to private registries. Deployments and cron runs of an image on such a host
    pull it with the team's login on every start, so the registry decides each time; the password is
    stored encrypted and never returned."""

    serializer_class = RegistryCredentialOutput
    queryset = RegistryCredential.objects.all()
    lookup_field = "registry"
    lookup_url_kwarg = "registry"
    create_input = RegistryCredentialCreateInput
    update_input = RegistryCredentialUpdateInput
    capability_map: ClassVar = crud_capabilities(change=Capability.MANAGE_SECRETS)

    def get_object(self) -> RegistryCredential:
        # GHCR.IO/ and index.docker.io/ name the credentials stored as ghcr.io and docker.io.
        self.kwargs[self.lookup_url_kwarg] = registry_normalize(self.kwargs[self.lookup_url_kwarg])
        return super().get_object()

    def create_object(self, data: dict[str, Any]) -> RegistryCredential:
        return services.registry_credential_create(ctx=self.ctx, **data)

    def update_object(self, obj: RegistryCredential, data: dict[str, Any]) -> RegistryCredential:
        return services.registry_credential_update(ctx=self.ctx, credential=obj, **data)

    def delete_object(self, obj: RegistryCredential, data: dict[str, Any]) -> None:
        services.registry_credential_delete(ctx=self.ctx, credential=obj)
