from tests.conftest import assert_error


def test_team_detail_for_member_and_404_for_stranger(team_a, team_b, client_for):
    response = client_for(team_a, "viewer").get("/api/v1/teams/alpha/")
    assert response.status_code == 200
    assert response.json()["role"] == "viewer"
    assert_error(client_for(team_b, "owner").get("/api/v1/teams/alpha/"), 404, "not_found")
