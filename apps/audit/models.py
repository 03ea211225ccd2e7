from django.conf import settings
from django.db import models


class AuditEvent(models.Model):
    """One change: who (and through which token), what, on what, in which team, from where."""

    # The trail outlives what it describes: deleting a team, user or token keeps their rows, with
    # the names kept in clear beside the (then null) foreign keys.
    # SET_NULL, never CASCADE or PROTECT: a cascade would erase a departed tenant's trail (what an
    # incident review needs most), and PROTECT would make every team undeletable. The slug says
    # which team it was; the id tells apart two teams that used the same slug one after the other.
    team = models.ForeignKey("teams.Team", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    team_slug = models.CharField(max_length=40, blank=True)
    team_ref = models.PositiveBigIntegerField(
        null=True, blank=True, db_index=True, help_text="The team's id, kept after the team is deleted."
    )
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_label = models.CharField(max_length=200)
    token = models.ForeignKey("tokens.ApiToken", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    token_prefix = models.CharField(max_length=20, blank=True)
    via = models.CharField(max_length=20, default="api")
    action = models.CharField(max_length=64, db_index=True)
    target_type = models.CharField(max_length=64)
    target_id = models.CharField(max_length=64, blank=True)
    target_label = models.CharField(max_length=200, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ("-id",)
        indexes = [models.Index(fields=["team", "-id"])]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.actor_label} {self.action} {self.target_label}"
