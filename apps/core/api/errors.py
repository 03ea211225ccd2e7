"""One JSON error shape for every 4xx:

    {"error": {"code": "not_found", "message": "Not found.", "fields": {}, "request_id": "…"}}

`fields` maps input field names to lists of messages (validation errors); extra keys describe the
error further (a quota error names `limit`, `maximum`, `current`, `requested`, `plan`)."""

from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import set_rollback

from apps.core.errors import PandaError

_DRF_CODES = {
    exceptions.ValidationError: "invalid",
    exceptions.ParseError: "parse_error",
    exceptions.AuthenticationFailed: "not_authenticated",
    exceptions.NotAuthenticated: "not_authenticated",
    exceptions.PermissionDenied: "permission_denied",
    exceptions.NotFound: "not_found",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.NotAcceptable: "not_acceptable",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.Throttled: "throttled",
}


def error_body(request: Any, *, code: str, message: str, fields: dict | None = None, **extra: Any) -> dict:
    body = {"code": code, "message": message, "fields": fields or {}, **extra}
    body["request_id"] = getattr(getattr(request, "_request", request), "request_id", None)
    return {"error": body}


def exception_handler(exc: Exception, context: dict) -> Response | None:
    request = context.get("request")
    if isinstance(exc, PandaError):
        set_rollback()
        retry_after = exc.extra.get("retry_after")
        return Response(
            error_body(request, code=exc.code, message=exc.message, fields=exc.fields, **exc.extra),
            status=exc.status_code,
            headers={"Retry-After": str(retry_after)} if retry_after is not None else None,
        )
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    elif isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(
            exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        )
    if not isinstance(exc, exceptions.APIException):
        return None  # a bug: let it surface as a 500 and be reported

    set_rollback()
    headers: dict[str, str] = {}
    extra: dict[str, Any] = {}
    if isinstance(exc, exceptions.Throttled) and exc.wait is not None:
        headers["Retry-After"] = str(int(exc.wait))
        extra["retry_after"] = int(exc.wait)
    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = exc.auth_header
    code = next((c for cls, c in _DRF_CODES.items() if isinstance(exc, cls)), "error")
    if isinstance(exc, exceptions.ValidationError):
        fields = _fields(exc.detail)
        message = "Invalid input."
        if list(fields) == ["non_field_errors"]:
            message = " ".join(fields["non_field_errors"])
        body = error_body(request, code=code, message=message, fields=fields)
    else:
        body = error_body(request, code=code, message=str(exc.detail), **extra)
    status_code = exc.status_code
    if isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
        status_code = status.HTTP_401_UNAUTHORIZED
        headers.setdefault("WWW-Authenticate", 'Bearer realm="api"')
    return Response(body, status=status_code, headers=headers)


def _fields(detail: Any) -> dict[str, list[str]]:
    if isinstance(detail, dict):
        return {str(k): _messages(v) for k, v in detail.items()}
    return {"non_field_errors": _messages(detail)}


def _messages(value: Any) -> list[str]:
    if isinstance(value, list):
        out: list[str] = []
        for item in value:
            out.extend(_messages(item))
        return out
    if isinstance(value, dict):
        return [f"{k}: {m}" for k, v in value.items() for m in _messages(v)]
    return [str(value)]
