"""The platform's own Prometheus endpoint, `GET /metrics` with `Authorization: Bearer
$PANDASTACK_PROMETHEUS_TOKEN`: platform gauges (teams, apps, deployments, cron runs, deliveries,
alerts, incidents) and per-app metrics (router counters, health, CPU, memory, latency).

Per-app request counters come from the router's own counters (they restart from zero when HAProxy
reloads, which Prometheus's rate() expects of a counter); the other per-app figures come from the
last minutes of stored buckets. A fixed number of queries whatever the number of apps.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Iterator
from datetime import timedelta

from django.conf import settings
from django.db.models import Count
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.http import require_GET
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from apps.core.api.errors import error_body
from apps.deployments.models import App
from apps.monitoring.collectors import monitored_apps
from apps.monitoring.models import AppHealth, HealthStatus, MetricBucket, Resolution
from apps.monitoring.selectors import aggregates, totals_of

log = logging.getLogger(__name__)

RECENT = timedelta(minutes=5)  # the window of the per-app latency, CPU and memory gauges
APP_LABELS = ("team", "app")


def _grouped(model: type, field: str) -> dict[str, int]:
    return dict(model.objects.values_list(field).annotate(n=Count("pk")).order_by())


def _gauge_by(name: str, documentation: str, label: str, counts: dict[str, int]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=[label])
    for value, n in sorted(counts.items()):
        family.add_metric([str(value)], n)
    return family


class PlatformCollector:
    """Reads the database (and the router) at each scrape."""

    def collect(self) -> Iterator[Metric]:
        from apps.alerts.models import AlertRule, Delivery, Incident
        from apps.cron.models import CronRun
        from apps.deployments.models import Container, Deployment
        from apps.teams.models import Team

        yield GaugeMetricFamily("pandastack_teams", "Teams on the platform.", value=Team.objects.count())
        yield GaugeMetricFamily("pandastack_apps", "Apps on the platform.", value=App.objects.count())
        serving = monitored_apps().count()
        yield GaugeMetricFamily("pandastack_apps_serving", "Apps with a live deployment, not stopped.", value=serving)
        yield GaugeMetricFamily("pandastack_containers", "Containers placed.", value=Container.objects.count())
        yield _gauge_by("pandastack_deployments", "Deployments by status.", "status", _grouped(Deployment, "status"))
        yield _gauge_by("pandastack_cron_runs", "Cron runs kept, by status.", "status", _grouped(CronRun, "status"))
        yield _gauge_by(
            "pandastack_notification_deliveries", "Notification deliveries by status.", "status",
            _grouped(Delivery, "status"),
        )  # fmt: skip
        yield _gauge_by("pandastack_alert_rules", "Alert rules by state.", "state", _grouped(AlertRule, "state"))
        yield _gauge_by("pandastack_incidents", "Incidents by status.", "status", _grouped(Incident, "status"))

        apps = {a["pk"]: a for a in App.objects.values("pk", "name", "team__slug")}
        yield from self._router(apps)
        yield from self._app_gauges(apps)

    def _router(self, apps: dict[int, dict]) -> Iterator[Metric]:
        from apps.deployments.orchestrator import router

        up = GaugeMetricFamily("pandastack_router_up", "Whether the router answers its runtime API.")
        try:
            counters = router().backend_counters()
        except Exception as exc:  # the router being down is a reading, not an error of the endpoint
            log.warning("router counters unavailable: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        requests = CounterMetricFamily(
            "pandastack_app_http_requests", "HTTP requests routed to the app (the router's counter).", labels=APP_LABELS
        )
        responses = CounterMetricFamily(
            "pandastack_app_http_responses", "HTTP responses by status class (the router's counter).",
            labels=(*APP_LABELS, "code"),
        )  # fmt: skip
        sessions = GaugeMetricFamily(
            "pandastack_app_current_sessions", "Connections open to the app now.", labels=APP_LABELS
        )
        for backend, counter in sorted(counters.items()):
            app = apps.get(App.id_of_router_backend(backend))
            if app is None:
                continue
            labels = [app["team__slug"], app["name"]]
            requests.add_metric(labels, counter.requests)
            responses.add_metric([*labels, "4xx"], counter.responses_4xx)
            responses.add_metric([*labels, "5xx"], counter.responses_5xx)
            sessions.add_metric(labels, counter.current_sessions)
        yield requests
        yield responses
        yield sessions

    def _app_gauges(self, apps: dict[int, dict]) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "pandastack_app_up", "1 when the app's health checks pass, 0 when down.", labels=APP_LABELS
        )
        for app_id, status in AppHealth.objects.exclude(status=HealthStatus.UNKNOWN).values_list("app_id", "status"):
            if app_id in apps:
                up.add_metric([apps[app_id]["team__slug"], apps[app_id]["name"]], 1 if status == HealthStatus.UP else 0)
        yield up
        rows = (
            MetricBucket.objects.filter(resolution=Resolution.RAW, start__gte=timezone.now() - RECENT)
            .values("app_id")
            .annotate(**aggregates())
            .order_by()
        )
        cpu = GaugeMetricFamily(
            "pandastack_app_cpu_percent", "Average CPU over the last 5 minutes (100 = one core).", labels=APP_LABELS
        )
        memory = GaugeMetricFamily(
            "pandastack_app_memory_bytes", "Largest memory in use over the last 5 minutes.", labels=APP_LABELS
        )
        latency = GaugeMetricFamily(
            "pandastack_app_latency_milliseconds", "Request latency quantiles over the last 5 minutes.",
            labels=(*APP_LABELS, "quantile"),
        )  # fmt: skip
        for row in rows:
            app = apps.get(row["app_id"])
            if app is None:
                continue
            labels = [app["team__slug"], app["name"]]
            recent = totals_of(row)
            if recent.cpu_percent is not None:
                cpu.add_metric(labels, recent.cpu_percent)
            if recent.sums["resource_samples"]:
                memory.add_metric(labels, recent.memory_bytes_max)
            for q in (0.5, 0.95, 0.99):
                value = recent.latency(q)
                if value is not None:
                    latency.add_metric([*labels, str(q)], value)
        yield cpu
        yield memory
        yield latency


@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    """Prometheus text format; 404 unless PANDASTACK_PROMETHEUS_TOKEN is set, 401 without it."""
    expected = settings.PANDASTACK_PROMETHEUS_TOKEN
    if not expected:
        body = error_body(request, code="not_found", message="The Prometheus endpoint is off (no token is set).")
        return JsonResponse(body, status=404)
    given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    if not hmac.compare_digest(given.encode(), expected.encode()):
        body = error_body(request, code="not_authenticated", message="Send Authorization: Bearer <metrics token>.")
        return JsonResponse(body, status=401, headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PlatformCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
