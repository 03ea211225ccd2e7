"""The secret masker on its own: what is masked, what is not (and why), and where the values
come from (secret versions the app can see, old ones included; never plain variables)."""

from apps.secrets import crypto
from apps.secrets.masking import MASK, MIN_MASKED_LENGTH, SecretMasker
from apps.secrets.models import Level, Variable, VariableVersion
from apps.secrets.selectors import log_masker_for_app, secret_values_for_app


def test_values_are_masked_wherever_they_appear_longest_first():
    masker = SecretMasker(["hunter22", "hunter22-extended"])
    assert masker.mask("a hunter22-extended b hunter22 c") == f"a {MASK} b {MASK} c"
    assert masker.mask("nothing here") == "nothing here"


def test_short_values_are_not_masked_so_logs_stay_readable_and_the_mask_reveals_nothing():
    short = "x" * (MIN_MASKED_LENGTH - 1)
    masker = SecretMasker([short, "true", "1"])
    assert not masker
    assert masker.mask(f"{short} true 1") == f"{short} true 1"


def test_multi_line_values_are_masked_line_by_line_and_url_passwords_on_their_own():
    pem = "-----BEGIN KEY-----\nMIIBOgIBAAJBAKj34GkxFhD9\n-----END KEY-----"
    url = "postgres://u_alpha:p%40ss-w0rd-long@db:5432/app"
    masker = SecretMasker([pem, url])
    assert masker.mask("MIIBOgIBAAJBAKj34GkxFhD9") == MASK
    assert masker.mask(f"url={url}") == f"url={MASK}"
    assert masker.mask("password p@ss-w0rd-long") == f"password {MASK}"
    assert masker.mask("password p%40ss-w0rd-long") == f"password {MASK}"


def test_regex_characters_in_values_are_literal():
    masker = SecretMasker(["a.b*c+d(e)"])
    assert masker.mask("aXbbbcd(e) a.b*c+d(e)") == f"aXbbbcd(e) {MASK}"


def _version(variable: Variable, number: int, value: str, *, secret: bool) -> VariableVersion:
    version = VariableVersion.objects.create(
        variable=variable, number=number, secret=secret, value_encrypted=crypto.encrypt(value)
    )
    variable.current, variable.secret = version, secret
    variable.save()
    return version


def test_the_app_masker_covers_its_secret_versions_at_every_level_and_nothing_else(team_a, team_b):
    from apps.deployments.models import App

    app = App.objects.create(team=team_a.team, project=team_a.project, name="web")
    team_var = Variable.objects.create(team=team_a.team, level=Level.TEAM, name="TEAM_SECRET")
    _version(team_var, 1, "team-secret-old-1", secret=True)
    _version(team_var, 2, "team-secret-new-2", secret=True)
    project_var = Variable.objects.create(
        team=team_a.team, level=Level.PROJECT, project=team_a.project, name="PLAIN"
    )
    _version(project_var, 1, "plain-value-production", secret=False)
    app_var = Variable.objects.create(
        team=team_a.team, level=Level.APP, app=app, project=team_a.project, name="APP_SECRET"
    )
    _version(app_var, 1, "app-secret-value-3", secret=True)
    other = Variable.objects.create(team=team_b.team, level=Level.TEAM, name="OTHER")
    _version(other, 1, "other-team-secret-4", secret=True)

    assert sorted(secret_values_for_app(app)) == ["app-secret-value-3", "team-secret-new-2", "team-secret-old-1"]
    masker = log_masker_for_app(app)
    assert masker.mask("team-secret-old-1 plain-value-production other-team-secret-4") == (
        f"{MASK} plain-value-production other-team-secret-4"
    )


def test_a_tail_stored_unmasked_is_masked_as_served_and_hidden_from_viewers(team_a):
    """A reason stored before masking existed (or before the secret was set) still does not show the
    value: the API masks the tail again as it serves it, and viewers get no tail at all."""
    from apps.deployments.models import App, Deployment, DeploymentEvent, DeploymentStatus
    from apps.deployments.selectors import LOG_TAIL_MARKER
    from tests.conftest import session_client

    app = App.objects.create(team=team_a.team, project=team_a.project, name="web")
    var = Variable.objects.create(team=team_a.team, level=Level.APP, app=app, project=team_a.project, name="KEY")
    _version(var, 1, "sk-legacy-secret-9", secret=True)
    reason = f"Health check failed.{LOG_TAIL_MARKER}booting with key sk-legacy-secret-9"
    deployment = Deployment.objects.create(
        team=team_a.team, app=app, number=1, image="registry.local/web:1", status=DeploymentStatus.FAILED,
        reason=reason,
    )  # fmt: skip
    DeploymentEvent.objects.create(deployment=deployment, level="error", message=reason)
    base = f"/api/v1/teams/{team_a.team.slug}/apps/web/deployments/"

    owner = session_client(team_a.user("owner"))
    shown = owner.get(f"{base}1/").json()["reason"]
    assert "sk-legacy-secret-9" not in shown and f"booting with key {MASK}" in shown
    assert all("sk-legacy-secret-9" not in e["message"] for e in owner.get(f"{base}1/events/").json()["results"])
    assert "sk-legacy-secret-9" not in str(owner.get(base).json())

    viewer = session_client(team_a.user("viewer"))
    assert viewer.get(f"{base}1/").json()["reason"] == "Health check failed."
