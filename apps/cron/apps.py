from django.apps import AppConfig


class CronConfig(AppConfig):
    name = "apps.cron"
    label = "cron"
