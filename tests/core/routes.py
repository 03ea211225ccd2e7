"""The REST API's routes, read from the URL conf, so tests cover every endpoint that exists (a new
one shows up here without anybody listing it)."""

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from django.urls import URLPattern, URLResolver
from rest_framework.mixins import ListModelMixin

from pandastack import api_urls

API_PREFIX = "/api/v1/"
_PARAM = re.compile(r"<(?:\w+:)?(\w+)>")


@dataclass(frozen=True)
class Route:
    name: str
    template: str  # e.g. /api/v1/teams/<str:team>/members/<str:user>/
    methods: tuple[str, ...]  # lower-case HTTP methods the route answers (HEAD and OPTIONS aside)
    is_list: bool  # GET answers a paginated list

    @property
    def params(self) -> list[str]:
        return _PARAM.findall(self.template)

    @property
    def openapi_path(self) -> str:
        return _PARAM.sub(r"{\1}", self.template)

    def url(self, **values: Any) -> str:
        return _PARAM.sub(lambda m: str(values[m.group(1)]), self.template)


def _methods(callback: Any) -> tuple[str, ...]:
    actions = getattr(callback, "actions", None)
    if actions is not None:  # a viewset route: the methods it maps
        return tuple(m for m in actions if m not in ("head", "options"))
    view_class = callback.view_class
    return tuple(m for m in view_class.http_method_names if m not in ("head", "options") and hasattr(view_class, m))


def _is_list(callback: Any) -> bool:
    actions = getattr(callback, "actions", None)
    if actions is not None:
        return actions.get("get") == "list"
    return issubclass(callback.view_class, ListModelMixin)


def _walk(patterns: list[Any], prefix: str) -> Iterator[Route]:
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from _walk(pattern.url_patterns, prefix + str(pattern.pattern))
        elif isinstance(pattern, URLPattern):
            yield Route(
                pattern.name,
                prefix + str(pattern.pattern),
                _methods(pattern.callback),
                _is_list(pattern.callback),
            )


def api_routes() -> list[Route]:
    return list(_walk(api_urls.urlpatterns, API_PREFIX))


def team_routes() -> list[Route]:
    """The routes under /api/v1/teams/{team}/."""
    return [route for route in api_routes() if "team" in route.params]
