from apps.teams.models import Membership
from apps.tokens.models import ApiToken
from tests.conftest import assert_error, make_token, session_client, token_client


def test_a_member_can_leave_and_their_tokens_stop_working(team_a):
    viewer = team_a.user("viewer")
    token, raw = make_token(team_a.team, viewer, scopes=["read"])
    response = session_client(viewer).post("/api/v1/teams/alpha/leave/")
    assert response.status_code == 204
    assert not Membership.objects.filter(team=team_a.team, user=viewer).exists()
    assert ApiToken.objects.get(pk=token.pk).revoked_at is not None
    assert_error(session_client(viewer).get("/api/v1/teams/alpha/"), 404, "not_found")
    assert_error(token_client(raw).get("/api/v1/me/"), 401, "not_authenticated")


def test_the_last_owner_cannot_leave(team_a):
    assert_error(session_client(team_a.user("owner")).post("/api/v1/teams/alpha/leave/"), 409, "last_owner")
    assert Membership.objects.filter(team=team_a.team, user=team_a.user("owner"), role="owner").exists()


def test_leaving_takes_a_person_not_a_token(team_a, client_for):
    assert_error(client_for(team_a, "developer").post("/api/v1/teams/alpha/leave/"), 403, "permission_denied")
    assert Membership.objects.filter(team=team_a.team, user=team_a.user("developer")).exists()
