from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "apps.core"
    label = "core"
    verbose_name = "Core"

    def ready(self) -> None:
        from apps.core import shutdown

        # Celery workers hand work back on a graceful stop (apps.core.shutdown); elsewhere inert.
        shutdown.connect_celery_signals()
