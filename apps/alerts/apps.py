from django.apps import AppConfig
from django.db.models.signals import pre_delete


class AlertsConfig(AppConfig):
    name = "apps.alerts"
    label = "alerts"

    def ready(self) -> None:
        from apps.alerts.models import AlertRule
        from apps.alerts.signals import close_firings_of_deleted_rule

        pre_delete.connect(
            close_firings_of_deleted_rule, sender=AlertRule, dispatch_uid="alerts.close_firings_of_deleted_rule"
        )
