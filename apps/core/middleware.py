"""A request id on every response (taken from a sane incoming X-Request-ID, else made here), and a
503 instead of a 500 when SQLite's write lock stays taken past the busy timeout."""

import logging
import re
import uuid
from collections.abc import Callable

from django.db import OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse

from apps.core.api.errors import error_body

log = logging.getLogger(__name__)

REQUEST_ID_HEADER = "X-Request-ID"
_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{8,128}$")


class RequestIdMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.headers.get(REQUEST_ID_HEADER, "")
        request.request_id = incoming if _SAFE_ID.match(incoming) else uuid.uuid4().hex
        response = self.get_response(request)
        response[REQUEST_ID_HEADER] = request.request_id
        return response


class DatabaseBusyMiddleware:
    """SQLite (the embedded default) has one writer at a time; a request waits for the write lock up
    to the busy timeout (DATABASES OPTIONS "timeout"), then SQLite gives up with "database is locked".
    That means the platform is overloaded for a moment, not that the request is wrong or the code is
    broken: the client gets 503 `service_unavailable` with Retry-After in the stable error shape, never
    a 500. Any other database error still surfaces as a 500 (a bug to report)."""

    RETRY_AFTER_SECONDS = 5

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not (isinstance(exception, OperationalError) and "database is locked" in str(exception)):
            return None
        log.warning("database busy: answered 503 to %s %s", request.method, request.path)
        body = error_body(
            request,
            code="service_unavailable",
            message="The database is busy; try again in a few seconds.",
            retry_after=self.RETRY_AFTER_SECONDS,
        )
        return JsonResponse(body, status=503, headers={"Retry-After": str(self.RETRY_AFTER_SECONDS)})
