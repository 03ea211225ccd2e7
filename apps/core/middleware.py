"""A request id on every response (taken from a sane incoming X-Request-ID, else made here), and a
503 instead of a 500 when SQLite's write lock stays taken past the busy timeout or when the broker or
the cache (Redis) cannot be reached."""

import logging
import re
import uuid
from collections.abc import Callable

from django.db import OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from kombu.exceptions import OperationalError as BrokerError

from apps.core.api.errors import error_body
from apps.core.broker import REDIS_DOWN
from apps.core.errors import ServiceUnavailable

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
        return unavailable(request, "The database is busy; try again in a few seconds.", self.RETRY_AFTER_SECONDS)


class ServiceUnavailableMiddleware:
    """Redis down (as the broker or as the cache) means the platform cannot do this request now, not
    that the request is wrong: 503 `service_unavailable` in the stable error shape, never a 500.

    Writes that need a worker refuse cleanly on their own (apps.core.broker: ServiceUnavailable, handled
    by the API's exception handler). This is the net under everything else: a ServiceUnavailable raised
    outside the API (the admin, the portal), and a broker or cache call that failed where no caller
    expected it (a login's guessing throttle, for instance, which must not let logins through
    unchecked)."""

    RETRY_AFTER_SECONDS = 10
    REDIS_DOWN = (BrokerError, *REDIS_DOWN)

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, ServiceUnavailable):
            return unavailable(request, exception.message, exception.extra.get("retry_after", self.RETRY_AFTER_SECONDS))
        if not isinstance(exception, self.REDIS_DOWN):
            return None
        log.warning("redis unreachable (%s): answered 503 to %s %s", exception, request.method, request.path)
        return unavailable(
            request,
            "A service the platform depends on (Redis) is not reachable; try again in a little while.",
            self.RETRY_AFTER_SECONDS,
        )


def unavailable(request: HttpRequest, message: str, retry_after: int) -> JsonResponse:
    """503 `service_unavailable` in the one error shape, with Retry-After."""
    body = error_body(request, code="service_unavailable", message=message, retry_after=retry_after)
    return JsonResponse(body, status=503, headers={"Retry-After": str(retry_after)})
