from django.db import models


class Severity(models.TextChoices):
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


class PlatformEvent(models.Model):
    """Something that happened to a team's resources which people may want to hear about: a failed
    cron run, a failed deployment... One table for every kind, so alert rules and incident
    timelines read one place."""

    team = models.ForeignKey("teams.Team", on_delete=models.CASCADE, related_name="+")
    # The project of the subject, when it has one: project-limited tokens see only their projects' events.
    project = models.ForeignKey("teams.Project", null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=64, db_index=True, help_text="e.g. cron.run_failed")
    severity = models.CharField(max_length=10, choices=Severity.choices, default=Severity.INFO)
    subject_type = models.CharField(max_length=64)
    subject_id = models.CharField(max_length=64)
    subject_label = models.CharField(max_length=200)
    message = models.TextField()
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    project_lookup = "project"

    class Meta:
        ordering = ("-id",)
        indexes = [
            models.Index(fields=["team", "-id"]),
            models.Index(fields=["kind", "-id"]),
            # What an event-count alert rule reads: a team's events of a kind in a time window.
            models.Index(fields=["team", "kind", "created_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.subject_label}"
