from tests.conftest import assert_error


def test_team_detail_for_member_and_404_for_stranger(team_a, team_b, client_for):
    response = client_for(team_a, "viewer").get("/api/v1/teams/alpha/")
    assert response.status_code == 200
    assert response.json()["role"] == "viewer"
    assert_error(client_for(team_b, "owner").get("/api/v1/teams/alpha/"), 404, "not_found")


def test_unknown_api_url_answers_the_json_error_shape(client, db):
    assert_error(client.get("/api/v1/no-such-endpoint/"), 404, "not_found")


def test_empty_patch_changes_nothing_and_records_nothing(team_a, client_for):
    from apps.audit.models import AuditEvent
    from apps.core.access import resolve_team
    from apps.core.actors import Actor
    from apps.teams.services import group_create

    ctx = resolve_team(Actor(user=team_a.user("owner")), "alpha")
    group_create(ctx=ctx, slug="ops", name="Ops", members=[])

    client = client_for(team_a, "owner")
    before = AuditEvent.objects.count()
    for url in ("/api/v1/teams/alpha/projects/web/", "/api/v1/teams/alpha/groups/ops/"):
        assert client.patch(url, {}, format="json").status_code == 200, url
    assert AuditEvent.objects.count() == before


def test_malformed_ids_and_cursors_are_404_like_missing_ones(team_a, client_for):
    client = client_for(team_a, "owner")
    assert_error(client.get("/api/v1/teams/alpha/projects/web/grants/?cursor=bm9wZQ=="), 404, "not_found")
    assert_error(client.get("/api/v1/teams/alpha/projects/?cursor=nope"), 404, "not_found")
    assert_error(client.get("/api/v1/teams/alpha/tokens/abc/"), 404, "not_found")
