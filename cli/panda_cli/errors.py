"""Errors the CLI reports to the user. Each carries the exit code it ends the process with, so one
place (`main`) turns any of them into a message on stderr and that code:

0 success · 1 API error or unreachable API · 2 usage · 3 deploy, awaited cron run or awaited database operation
failed or timed out · 4 not authenticated
"""

from typing import Any


class CliError(Exception):
    """A problem the user can act on; `message` is printed after "error:", `hint` on its own line."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class UsageProblem(CliError):
    """The command line (or an environment variable standing in for it) cannot work as given."""

    exit_code = 2


class NotAuthenticated(CliError):
    """No token is configured, or the API answered 401 to it."""

    exit_code = 4


class ApiUnreachable(CliError):
    """The API could not be reached or stopped answering (network level, no HTTP answer)."""

    exit_code = 1


class ApiError(CliError):
    """The API answered with an error (4xx/5xx), in the stable shape
    `{"error": {"code", "message", "fields", "request_id", ...extra}}` when it is the PandaStack API."""

    exit_code = 1

    def __init__(
        self,
        message: str,
        *,
        status: int,
        code: str,
        fields: dict[str, list[str]] | None = None,
        request_id: str | None = None,
        extra: dict[str, Any] | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.status = status
        self.code = code
        self.fields = fields or {}
        self.request_id = request_id
        self.extra = extra or {}

    @property
    def transient(self) -> bool:
        """True when retrying the same request later may well succeed (server trouble, throttling)."""
        return self.status >= 500 or self.status == 429


class DeployNotLive(CliError):
    """A deployment ended in a state other than live, or waiting for it timed out."""

    exit_code = 3


class RunNotSucceeded(CliError):
    """A cron run waited on (`panda cron run --wait`) ended other than succeeded, or waiting for it
    timed out."""

    exit_code = 3


class OperationNotDone(CliError):
    """A database operation waited on (`panda db create --wait`, a backup, a restore, a rotation)
    ended other than done, or waiting for it timed out."""

    exit_code = 3
