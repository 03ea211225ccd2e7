from django.db.models import OuterRef, QuerySet, Subquery

from apps.deployments.models import App, Deployment


def app_queryset() -> QuerySet[App]:
    """Apps with what their list and detail show, in a fixed number of queries."""
    latest = Deployment.objects.filter(app=OuterRef("pk")).order_by("-number")
    return App.objects.select_related("team", "project", "live_deployment").annotate(
        latest_deployment_status=Subquery(latest.values("status")[:1]),
        latest_deployment_number=Subquery(latest.values("number")[:1]),
    )


def deployment_queryset() -> QuerySet[Deployment]:
    return Deployment.objects.select_related("app", "rollback_of")
