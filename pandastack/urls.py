from django.contrib import admin
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import include, path
from django.views.defaults import page_not_found
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from apps.core.api.errors import error_body
from apps.monitoring.prometheus import metrics_view


def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """Unknown URLs under /api/ answer with the API's JSON error shape; others with Django's page."""
    if request.path.startswith("/api/"):
        body = error_body(request, code="not_found", message="No such API endpoint.")
        return JsonResponse(body, status=404)
    return page_not_found(request, exception)


handler404 = not_found


urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include(("pandastack.api_urls", "api"), namespace="api")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("healthz", healthz, name="healthz"),
    path("metrics", metrics_view, name="prometheus-metrics"),
]
