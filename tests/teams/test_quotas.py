"""Plans and quotas: every limit is enforced by one check, the API answers a clear 403 naming the
limit, and an operator lifts it by changing the plan."""

import pytest
from django.forms.models import model_to_dict
from django.test import Client
from rest_framework.test import APIClient

from apps.accounts.models import User
from apps.audit.models import AuditEvent
from apps.core.errors import QuotaExceeded
from apps.teams.models import Plan, Project, Team
from apps.teams.quotas import Limit, quota_check, quota_check_value
from tests.conftest import assert_error, session_client

PROJECTS = "/api/v1/teams/alpha/projects/"


@pytest.mark.parametrize("limit", list(Limit))
def test_quota_check_allows_up_to_the_limit_and_names_it_beyond(team_a, limit):
    maximum = getattr(team_a.team.plan, limit.value)
    quota_check(team=team_a.team, limit=limit, current=maximum - 1)

    with pytest.raises(QuotaExceeded) as caught:
        quota_check(team=team_a.team, limit=limit, current=maximum - 1, requested=2)

    assert caught.value.extra == {
        "limit": limit.value,
        "maximum": maximum,
        "current": maximum - 1,
        "requested": 2,
        "plan": "free",
    }
    assert limit.value in caught.value.message


@pytest.mark.parametrize("limit", list(Limit))
def test_quota_check_value_allows_the_maximum_and_names_the_limit_beyond(team_a, limit):
    maximum = getattr(team_a.team.plan, limit.value)
    quota_check_value(team=team_a.team, limit=limit, value=maximum)

    with pytest.raises(QuotaExceeded) as caught:
        quota_check_value(team=team_a.team, limit=limit, value=maximum + 1)

    assert caught.value.extra["limit"] == limit.value
    assert caught.value.extra["maximum"] == maximum
    assert caught.value.extra["requested"] == maximum + 1


def fill_free_plan(team_a) -> APIClient:
    """The team already has "web"; two more projects reach the free plan's 3."""
    owner = session_client(team_a.user("owner"))
    for slug in ("api", "db"):
        assert owner.post(PROJECTS, {"slug": slug}).status_code == 201
    return owner


def test_creating_projects_beyond_the_free_plan_is_a_quota_error(team_a):
    owner = fill_free_plan(team_a)
    projects_before = list(Project.objects.values_list("id", flat=True))
    audit_before = AuditEvent.objects.count()

    error = assert_error(owner.post(PROJECTS, {"slug": "extra"}), 403, "quota_exceeded")

    assert error["limit"] == "max_projects"
    assert error["maximum"] == 3
    assert error["current"] == 3
    assert error["requested"] == 1
    assert error["plan"] == "free"
    assert list(Project.objects.values_list("id", flat=True)) == projects_before
    assert AuditEvent.objects.count() == audit_before


def test_quota_is_per_team(team_a, team_b):
    fill_free_plan(team_a)

    response = session_client(team_b.user("owner")).post("/api/v1/teams/bravo/projects/", {"slug": "api"})

    assert response.status_code == 201


def test_operator_raising_the_plan_in_the_admin_lifts_the_quota(team_a):
    owner = fill_free_plan(team_a)
    operator = Client()
    operator.force_login(User.objects.create_superuser("operator", "operator@example.com", "pw-op-1"))
    plan = team_a.team.plan
    form = {k: v for k, v in model_to_dict(plan).items() if k != "id"}

    response = operator.post(f"/admin/teams/plan/{plan.pk}/change/", {**form, "max_projects": 5})

    assert response.status_code == 302, response.content
    assert Plan.objects.get(pk=plan.pk).max_projects == 5
    assert owner.post(PROJECTS, {"slug": "extra"}).status_code == 201


def test_assigning_another_plan_lifts_the_quota(team_a):
    owner = fill_free_plan(team_a)
    assert_error(owner.post(PROJECTS, {"slug": "extra"}), 403, "quota_exceeded")

    team = team_a.team
    team.plan = Plan.objects.create(slug="pro", name="Pro", max_projects=10)
    team.save()

    assert owner.post(PROJECTS, {"slug": "extra"}).status_code == 201


def test_new_teams_get_the_default_plan(db):
    person = User.objects.create_user("founder", "founder@example.com", "pw-not-used-1")

    response = session_client(person).post("/api/v1/teams/", {"slug": "newco"})

    assert response.status_code == 201, response.content
    assert response.json()["plan"]["slug"] == "free"
    assert Team.objects.get(slug="newco").plan == Plan.objects.get(is_default=True)


def test_new_teams_follow_a_changed_default_plan(db):
    Plan.objects.filter(is_default=True).update(is_default=False)
    Plan.objects.create(slug="starter", name="Starter", is_default=True, max_projects=7)
    person = User.objects.create_user("founder", "founder@example.com", "pw-not-used-1")

    response = session_client(person).post("/api/v1/teams/", {"slug": "newco"})

    assert response.status_code == 201, response.content
    assert response.json()["plan"]["slug"] == "starter"
    assert response.json()["plan"]["max_projects"] == 7
