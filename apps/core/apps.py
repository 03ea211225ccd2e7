from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "apps.core"
    label = "core"
    verbose_name = "Core"

    def ready(self) -> None:
        from apps.core import checks, shutdown  # noqa: F401  # importing checks registers the system checks

        # Celery workers hand work back on a graceful stop (apps.core.shutdown); elsewhere inert.
        shutdown.connect_celery_signals()
