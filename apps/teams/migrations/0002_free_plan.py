from django.db import migrations


def create_free_plan(apps, schema_editor):
    Plan = apps.get_model("teams", "Plan")
    Plan.objects.get_or_create(
        slug="free",
        defaults={
            "name": "Free",
            "is_default": True,
            "max_projects": 3,
            "max_apps": 3,
            "max_replicas_per_app": 2,
            "max_memory_mb_per_app": 512,
            "max_databases": 1,
            "max_cron_jobs": 3,
        },
    )


class Migration(migrations.Migration):
    dependencies = [("teams", "0001_initial")]
    operations = [migrations.RunPython(create_free_plan, migrations.RunPython.noop)]
