"""A small client for the PandaStack REST API: JSON in and out, the one error shape turned into
typed errors, cursor pagination followed to the end, NDJSON streams, and polling intervals.

Tests replace `transport_factory` (with an `httpx.MockTransport`) and `clock` (with a fake that
does not really sleep); nothing else here needs to know.
"""

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from panda_cli import __version__
from panda_cli.errors import ApiError, ApiUnreachable, NotAuthenticated

LOGIN_HINT = "run `panda login --token TOKEN`, or set PANDA_TOKEN"


def _default_transport() -> httpx.BaseTransport | None:
    return None  # httpx's own transport


# Called once per Client; None means a real network transport.
transport_factory: Callable[[], httpx.BaseTransport | None] = _default_transport


class Clock:
    """Wall-clock time for polling; a seam so tests can run a 600-second timeout in no time."""

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


clock = Clock()


class Backoff:
    """Polling intervals that start short and grow to a ceiling: a fast deploy is seen almost at
    once, a slow one costs the API little. `reset()` after progress goes back to short intervals."""

    def __init__(self, first: float = 0.25, ceiling: float = 2.0, factor: float = 1.5) -> None:
        self.first, self.ceiling, self.factor = first, ceiling, factor
        self._current = first

    def next(self) -> float:
        """The interval to wait now; each call returns a longer one, up to the ceiling."""
        interval = self._current
        self._current = min(self._current * self.factor, self.ceiling)
        return interval

    def reset(self) -> None:
        self._current = self.first


def team_path(team: str, *parts: str | int) -> str:
    """`/api/v1/teams/{team}/{parts...}/`, each segment percent-encoded, so a name can never step
    outside its place in the URL."""
    segments = [quote(str(segment), safe="") for segment in (team, *parts)]
    return "/api/v1/teams/" + "/".join(segments) + "/"


class Client:
    """One API base URL and token. Every method returns parsed JSON or raises ApiError (the API said
    no), NotAuthenticated (401) or ApiUnreachable (no answer); never an httpx exception."""

    def __init__(self, api_url: str, token: str, *, timeout: float = 30.0) -> None:
        self.api_url = api_url
        self._base_path = urlsplit(api_url).path.rstrip("/")
        self._http = httpx.Client(
            base_url=api_url + "/",
            headers={
                "Authorization": f"Bearer {token}",
                "Accept": "application/json",
                "User-Agent": f"pandastack-cli/{__version__}",
            },
            timeout=httpx.Timeout(timeout, connect=10.0),
            transport=transport_factory(),
            follow_redirects=False,  # a redirect means a wrong URL; following it could drop or leak the token
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def get(self, path: str, *, params: dict[str, Any] | None = None) -> Any:
        return self.request("GET", path, params=params)

    def post(self, path: str, body: dict[str, Any]) -> Any:
        return self.request("POST", path, json=body)

    def patch(self, path: str, body: dict[str, Any]) -> Any:
        return self.request("PATCH", path, json=body)

    def delete(self, path: str, body: dict[str, Any] | None = None) -> Any:
        return self.request("DELETE", path, json=body)

    def request(
        self, method: str, path: str, *, params: dict[str, Any] | None = None, json: dict[str, Any] | None = None
    ) -> Any:
        """Send one request to `path` (relative to the API URL) and return its JSON body (None for 204)."""
        with _network_errors(self.api_url):
            response = self._http.request(method, self._relative(path), params=params, json=json)
        self._raise_for_status(response)
        if response.status_code == httpx.codes.NO_CONTENT:
            return None
        return self._json(response)

    def paginate(self, path: str, *, params: dict[str, Any] | None = None) -> Iterator[Any]:
        """Every item of a cursor-paginated list, following `next` until it is null. Only the path
        and query of `next` are used, against our API URL: behind a proxy the server may spell its
        own address differently, and the token must never go to another host."""
        page = self.get(path, params=params)
        while True:
            if not isinstance(page, dict) or not isinstance(page.get("results"), list):
                raise ApiError(
                    "the API answered a list request with something that is not a list page",
                    status=200,
                    code="bad_response",
                )
            yield from page["results"]
            next_url = page.get("next")
            if not next_url:
                return
            page = self.get(self._follow(next_url))

    def stream_lines(self, path: str, *, params: dict[str, Any] | None = None, follow: bool = False) -> Iterator[str]:
        """The non-empty lines of a streamed response, as they arrive. With `follow` there is no read
        timeout: a quiet app may say nothing for a long time."""
        timeout = httpx.Timeout(30.0, connect=10.0, read=None if follow else 30.0)
        with _network_errors(self.api_url):
            request = self._http.build_request("GET", self._relative(path), params=params, timeout=timeout)
            request.headers["Accept"] = "application/x-ndjson"
            response = self._http.send(request, stream=True)
            try:
                if response.is_error or response.is_redirect:
                    response.read()
                    self._raise_for_status(response)
                for line in response.iter_lines():
                    if line.strip():
                        yield line
            finally:
                response.close()

    @contextmanager
    def download(self, path: str) -> Iterator["Download"]:
        """A streamed GET of a file: the response's headers at once, its bytes as they arrive
        (`Download.chunks`). An error answer is raised as for any request, before anything is read."""
        with _network_errors(self.api_url):
            request = self._http.build_request(
                "GET", self._relative(path), timeout=httpx.Timeout(30.0, connect=10.0, read=300.0)
            )
            # The file, or an error in the one JSON shape.
            request.headers["Accept"] = "application/octet-stream, application/json"
            response = self._http.send(request, stream=True)
        try:
            if response.is_error or response.is_redirect:
                with _network_errors(self.api_url):
                    response.read()
                self._raise_for_status(response)
            yield Download(response, self.api_url)
        finally:
            response.close()

    # -- internals ---------------------------------------------------------------------------

    def _relative(self, path: str) -> str:
        # httpx appends a relative path to the base URL's path, so an API mounted under a prefix works.
        return path.lstrip("/")

    def _follow(self, next_url: str) -> str:
        parts = urlsplit(next_url)
        path = parts.path
        if self._base_path and path.startswith(self._base_path + "/"):
            path = path[len(self._base_path) :]
        return path + (f"?{parts.query}" if parts.query else "")

    def _json(self, response: httpx.Response) -> Any:
        try:
            return response.json()
        except ValueError:
            raise ApiError(
                f"the server at {self.api_url} did not answer with JSON",
                status=response.status_code,
                code="bad_response",
                hint="check the API URL (--api-url, PANDA_API_URL or `panda login`)",
            ) from None

    def _raise_for_status(self, response: httpx.Response) -> None:
        status = response.status_code
        if status < 300:
            return
        if 300 <= status < 400:
            location = response.headers.get("Location", "")
            raise ApiError(
                f"the API answered with a redirect (HTTP {status}) to {location or 'nowhere'}",
                status=status,
                code="redirect",
                hint="check the API URL; perhaps it should start with https://",
            )
        error = _error_body(response)
        if status == httpx.codes.UNAUTHORIZED:
            message = error.get("message") if error else None
            raise NotAuthenticated(
                f"the API at {self.api_url} rejected the token" + (f": {message}" if message else ""),
                hint=LOGIN_HINT,
            )
        if error is None:
            raise ApiError(
                f"HTTP {status} {response.reason_phrase} from {self.api_url}", status=status, code=f"http_{status}"
            )
        known = {"code", "message", "fields", "request_id"}
        fields = error.get("fields")
        raise ApiError(
            str(error.get("message") or f"HTTP {status}"),
            status=status,
            code=str(error.get("code") or f"http_{status}"),
            fields=fields if isinstance(fields, dict) else {},
            request_id=error.get("request_id"),
            extra={key: value for key, value in error.items() if key not in known},
        )


def _error_body(response: httpx.Response) -> dict[str, Any] | None:
    """The `error` object of a PandaStack error body, or None when the body is something else
    (an HTML page from a proxy, an empty 502...)."""
    try:
        body = json.loads(response.content)
    except ValueError:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else None


@contextmanager
def _network_errors(api_url: str) -> Iterator[None]:
    """Turns httpx's transport errors into ApiUnreachable, with a message that names the URL."""
    try:
        yield
    except httpx.TransportError as exc:
        if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
            message = f"cannot reach the PandaStack API at {api_url}"
        elif isinstance(exc, httpx.TimeoutException):
            message = f"the PandaStack API at {api_url} did not answer in time"
        else:
            message = f"lost the connection to the PandaStack API at {api_url}"
        detail = str(exc)
        raise ApiUnreachable(message + (f" ({detail})" if detail else "")) from None


class Download:
    """A file being downloaded: its response headers, and its bytes in chunks."""

    def __init__(self, response: httpx.Response, api_url: str) -> None:
        self.headers = response.headers
        self._response = response
        self._api_url = api_url

    def chunks(self, size: int = 1 << 16) -> Iterator[bytes]:
        with _network_errors(self._api_url):
            yield from self._response.iter_bytes(size)
