"""The REST API fuzzed against its own OpenAPI schema (/api/schema/) with schemathesis: for every
operation (the log stream `logs?follow=1` aside: it never ends by design), generated valid and invalid
input must never make a server error (5xx) nor a response that breaks the published schema.

In-process through Django's WSGI handler, on the test database: the caller is a team owner with an
all-scopes token, and the team has one of everything (tests/core/routes.py `one_of_everything`), so
every path parameter names a real object and requests reach the real code behind the 404 checks.
Hypothesis is derandomized with a bounded number of examples per operation so CI runs the same
cases every time, in bounded time."""

import os
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from tests.conftest import make_team, make_token
from tests.core.routes import one_of_everything

# Per operation. A deeper local hunt: PANDASTACK_FUZZ_EXAMPLES=200 (CI keeps the default: ~2 minutes).
MAX_EXAMPLES = int(os.environ.get("PANDASTACK_FUZZ_EXAMPLES", "12"))
STREAMS = {("GET", "/api/v1/teams/{team}/apps/{app}/logs/"): "follow"}  # operation -> the query that streams

schema = schemathesis.openapi.from_dict(SchemaGenerator().get_schema(request=None, public=True))
schema.app = WSGIHandler()


@pytest.fixture
def wsgi_keeps_the_test_connection() -> Iterator[None]:
    # Django's own test client does this too: the handler would otherwise close the test's database
    # connection (and with it the test's transaction) at the end of every request.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def seeded(db: Any, wsgi_keeps_the_test_connection: None) -> tuple[dict[str, Any], str]:
    world = make_team("alpha")
    values = one_of_everything(world)
    _, raw = make_token(world.team, world.user("owner"))
    return values, raw


def _path_value(case: Any, name: str, values: dict[str, Any]) -> Any:
    value = values[name]
    if isinstance(value, dict):  # named per parent (a grant under a project or under an app)
        value = value["app" if "/apps/{app}/" in case.path else "project"]
    return value


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_api_answers_bad_input_within_its_schema(case: Any, seeded: tuple[dict[str, Any], str]) -> None:
    values, raw = seeded
    # Path parameters name the seeded objects (random ones only ever reach the 404 answer).
    for name in list(case.path_parameters or {}):
        if name in values:
            case.path_parameters[name] = _path_value(case, name, values)
    stream_param = STREAMS.get((case.method.upper(), case.path))
    if stream_param and case.query:
        case.query.pop(stream_param, None)
    case.call_and_validate(
        headers={"Authorization": f"Bearer {raw}"},
        checks=[not_a_server_error, response_schema_conformance],
    )
