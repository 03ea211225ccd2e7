"""List and detail endpoints keep a flat query count as objects grow: 5 rows and 200 rows cost the
same number of queries (no N+1), and never more than a small ceiling. Run with -s to see the counts."""

from typing import Any

import pytest

from apps.secrets.models import Level
from tests.conftest import TeamWorld, make_token, session_client, token_client
from tests.core.bulk import DETAILS, LISTS, VARIABLE_PREFIXES, variables_at

CEILING = 12
SMALL, LARGE = 5, 200


def results(response: Any) -> list[Any]:
    assert response.status_code == 200, response.content
    return response.json()["results"]


@pytest.mark.parametrize("endpoint", LISTS)
def test_list_query_count_does_not_grow_with_rows(
    team_a: TeamWorld,
    endpoint: str,
    django_assert_max_num_queries: Any,
    django_assert_num_queries: Any,
) -> None:
    path, grow, via = LISTS[endpoint]
    if via == "token":
        client = token_client(make_token(team_a.team, team_a.user("owner"))[1])
    else:
        client = session_client(team_a.user("owner"))
    url = f"{path}?limit={LARGE}"
    grow(team_a, 0, SMALL)
    small_rows = len(results(client.get(url)))  # warm up: a token's first use records last_used_at

    with django_assert_max_num_queries(CEILING) as small:
        assert len(results(client.get(url))) == small_rows
    grow(team_a, SMALL, LARGE - SMALL)
    with django_assert_num_queries(len(small)) as large:
        large_rows = len(results(client.get(url)))

    print(f"\n{endpoint}: {len(small)} queries for {small_rows} rows, {len(large)} for {large_rows} rows")
    if via == "token" and path == "/api/v1/teams/":
        assert large_rows == small_rows == 1  # a token sees only its own team
    else:
        assert large_rows == min(small_rows + LARGE - SMALL, LARGE)


def test_effective_app_variables_query_count_does_not_grow_with_rows(
    team_a: TeamWorld, django_assert_max_num_queries: Any, django_assert_num_queries: Any
) -> None:
    # The merged team/project/app view of an app's variables is one unpaginated list.
    client = token_client(make_token(team_a.team, team_a.user("owner"))[1])
    url = f"{VARIABLE_PREFIXES[Level.APP]}variables/?effective=true"
    grows = [variables_at(level) for level in VARIABLE_PREFIXES]
    for grow in grows:
        grow(team_a, 0, SMALL)
    results(client.get(url))  # warm up

    with django_assert_max_num_queries(CEILING) as small:
        small_rows = len(results(client.get(url)))
    for grow in grows:
        grow(team_a, SMALL, LARGE - SMALL)
    with django_assert_num_queries(len(small)) as large:
        large_rows = len(results(client.get(url)))

    print(f"\neffective app variables: {len(small)} queries for {small_rows} rows, {len(large)} for {large_rows} rows")
    assert (small_rows, large_rows) == (SMALL, LARGE)  # the same names at every level merge into one each


@pytest.mark.parametrize("endpoint", DETAILS)
def test_detail_query_count_does_not_grow_with_nested_rows(
    team_a: TeamWorld, endpoint: str, django_assert_max_num_queries: Any, django_assert_num_queries: Any
) -> None:
    path, grow = DETAILS[endpoint]
    client = token_client(make_token(team_a.team, team_a.user("owner"))[1])
    grow(team_a, 0, SMALL)
    assert client.get(path).status_code == 200  # warm up: a token's first use records last_used_at

    with django_assert_max_num_queries(CEILING) as small:
        assert client.get(path).status_code == 200
    grow(team_a, SMALL, LARGE - SMALL)
    with django_assert_num_queries(len(small)) as large:
        assert client.get(path).status_code == 200
    print(f"\n{endpoint}: {len(small)} queries with {SMALL} nested rows, {len(large)} with {LARGE}")
