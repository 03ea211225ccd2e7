from collections.abc import Iterable, Iterator

from django.db.models import OuterRef, QuerySet, Subquery

from apps.core.access import TeamContext
from apps.core.capabilities import Capability
from apps.deployments.models import App, Deployment
from apps.secrets.masking import SecretMasker
from apps.secrets.selectors import log_masker_for_app

# Separates a failure's explanation (anyone who may view the app reads it) from the container's
# last log lines (only those who may read logs do). The platform writes the text before it, so a
# tenant's own output can never come first.
LOG_TAIL_MARKER = "\nLast log lines:\n"


def app_queryset() -> QuerySet[App]:
    """Apps with what their list and detail show, in a fixed number of queries."""
    latest = Deployment.objects.filter(app=OuterRef("pk")).order_by("-number")
    return App.objects.select_related("team", "project", "live_deployment").annotate(
        latest_deployment_status=Subquery(latest.values("status")[:1]),
        latest_deployment_number=Subquery(latest.values("number")[:1]),
    )


def deployment_queryset() -> QuerySet[Deployment]:
    return Deployment.objects.select_related("app", "rollback_of", "superseded_by")


# --- logs --------------------------------------------------------------------------------------------
def app_log_masker(app: App) -> SecretMasker:
    """Masks the secret values the app's containers (and its cron runs) were given. Build it once
    per stream: it decrypts the app's secret versions."""
    return log_masker_for_app(app)


def mask_lines(app: App, lines: Iterable[str]) -> Iterator[str]:
    """The app's log lines with every secret value it was given replaced by the mask."""
    return app_log_masker(app).mask_lines(lines)


def may_read_logs(ctx: TeamContext | None, app: App) -> bool:
    """Whether the caller may read the app's logs; unknown callers may not (closed by default)."""
    return ctx is not None and ctx.can(Capability.VIEW_LOGS, app)


def without_log_tail(text: str) -> str:
    """A deployment reason or event message without the container's log lines."""
    return text.split(LOG_TAIL_MARKER, 1)[0]
