"""Alert rules that go close their firings first. A rule is deleted by itself (rules.rule_delete) or
with the app, cron job or database it watches (a cascade); either way its open firing is closed before the row
goes, so its incident resolves by itself when nothing else in it fires, and later firings of the
project do not join an incident still waiting for a rule that no longer exists."""

from typing import Any

from django.db.models import Model, QuerySet
from django.utils import timezone

from apps.alerts.incidents import firings_close
from apps.alerts.models import AlertRule
from apps.cron.models import CronJob
from apps.databases.models import Database
from apps.deployments.models import App


def close_firings_of_deleted_rule(
    sender: type[AlertRule], instance: AlertRule, origin: Model | QuerySet | None = None, **kwargs: Any
) -> None:
    """pre_delete of AlertRule (Django sends it for every rule a deletion takes, cascades included):
    close the rule's open firing, resolving its incident if nothing else in it still fires."""
    origin_model = origin.model if isinstance(origin, QuerySet) else type(origin)
    # Wait for an evaluator holding the rule (it may be recording a firing right now), so that
    # firing is closed too. An app, cron job or database takes all its rules with it: lock them all at once,
    # in one order, before any incident is locked (one at a time, an evaluator holding the next rule
    # and waiting for the incident this one locked would deadlock with us).
    if origin_model in (App, CronJob, Database) and (instance.app_id or instance.cron_job_id or instance.database_id):
        rules = AlertRule.objects.filter(
            app_id=instance.app_id, cron_job_id=instance.cron_job_id, database_id=instance.database_id
        )
    else:
        rules = AlertRule.objects.filter(pk=instance.pk)
    list(rules.select_for_update(of=("self",)).order_by("pk").values_list("pk", flat=True))
    firings_close(rule=instance, now=timezone.now())
