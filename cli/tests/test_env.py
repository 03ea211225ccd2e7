"""panda env and panda secrets: list|set|unset|reveal|versions at team, project and app level,
.env parsing, and the promise that values never reach stdout or stderr except through `reveal`.
The API is faked with httpx.MockTransport: allowed here because these tests check the CLI's own
request and response handling (URLs, bodies, output, exit codes); end-to-end tests against the
real server are separate."""

import json

import pytest
from conftest import api_error, page, reply

from panda_cli import env
from panda_cli.errors import UsageProblem

TEAM_VARS = "/api/v1/teams/acme/variables/"
PROJECT_VARS = "/api/v1/teams/acme/projects/shop/variables/"
APP_VARS = "/api/v1/teams/acme/apps/web/variables/"

# A value that must never be printed: every test that sets it checks both streams for it.
SENTINEL = "s3ntinel-VALUE-9f2c"

LEVELS = [
    pytest.param([], TEAM_VARS, "team acme", id="team"),
    pytest.param(["--project", "shop"], PROJECT_VARS, "project shop", id="project"),
    pytest.param(["--app", "web"], APP_VARS, "app web", id="app"),
    pytest.param(["--level", "team"], TEAM_VARS, "team acme", id="explicit-team"),
    pytest.param(["--level", "project", "-p", "shop"], PROJECT_VARS, "project shop", id="explicit-project"),
    pytest.param(["--level", "APP", "-a", "web"], APP_VARS, "app web", id="explicit-app"),
]

LEVEL_MISTAKES = [
    pytest.param(["--level", "app"], "--level app needs --app APP", id="app-without-app"),
    pytest.param(["--level", "project"], "--level project needs --project PROJECT", id="project-without-project"),
    pytest.param(["--level", "team", "--app", "web"], "--level team needs neither", id="team-with-app"),
    pytest.param(["--level", "project", "--app", "web"], "--level project needs", id="project-with-app"),
    pytest.param(["--app", "web", "--project", "shop"], "give --app or --project, not both", id="both"),
]


def item(name, value="v", *, level="app", secret=False, version=1):
    return {
        "name": name,
        "level": level,
        "secret": secret,
        "value": None if secret else value,
        "version": version,
        "updated_by": "alice",
        "updated_at": "2025-01-31T12:00:00Z",
    }


def set_answer(*names, secret=True, restarted=("web",), skipped=()):
    return {
        "results": [item(name, secret=secret) for name in names],
        "restarted": list(restarted),
        "skipped": list(skipped),
    }


@pytest.fixture(autouse=True)
def _ci(ci_env):
    pass


def assert_no_value(result, *values):
    for value in values:
        assert value not in result.stdout
        assert value not in result.stderr


# -- levels and usage --------------------------------------------------------------------------


@pytest.mark.parametrize(("level_args", "path", "_"), LEVELS)
def test_list_asks_the_collection_of_the_level(run, api, level_args, path, _):
    api.on("GET", path, page([item("DEBUG", "1")]))
    result = run("env", "list", *level_args)
    assert result.exit_code == 0, result.stderr
    (request,) = api.requests
    assert "effective" not in request.url.params


@pytest.mark.parametrize(("level_args", "message"), LEVEL_MISTAKES)
@pytest.mark.parametrize("command", [["env", "list"], ["env", "set", "A=1"], ["secrets", "unset", "A"]])
def test_levels_that_disagree_are_usage_errors(run, api, command, level_args, message):
    result = run(*command, *level_args)
    assert result.exit_code == 2
    assert message in result.stderr
    assert api.requests == []


def test_unknown_level_is_a_usage_error(run, api):
    assert run("env", "list", "--level", "galaxy").exit_code == 2
    assert api.requests == []


@pytest.mark.parametrize("level_args", [[], ["--project", "shop"]])
def test_effective_needs_an_app(run, api, level_args):
    result = run("env", "list", "--effective", *level_args)
    assert result.exit_code == 2
    assert "--effective needs --app" in result.stderr
    assert api.requests == []


def test_names_in_urls_are_percent_encoded(run, api):
    api.on("GET", "/api/v1/teams/acme/projects/a/b/variables/", page([]))  # httpx decodes .path
    assert run("env", "list", "--project", "a/b").exit_code == 0
    assert api.requests[0].url.raw_path == b"/api/v1/teams/acme/projects/a%2Fb/variables/"


def test_without_a_token_exits_4(run, api, monkeypatch):
    monkeypatch.delenv("PANDA_TOKEN")
    result = run("env", "set", f"A={SENTINEL}", "--app", "web")
    assert result.exit_code == 4
    assert api.requests == []
    assert_no_value(result, SENTINEL)


def test_a_rejected_token_exits_4(run, api):
    api.on("GET", APP_VARS, api_error(401, "not_authenticated", "Token expired."))
    assert run("env", "list", "--app", "web").exit_code == 4


# -- list --------------------------------------------------------------------------------------


def test_list_table_never_shows_a_secret(run, api):
    leaky = item("DB_PASSWORD", secret=True) | {"value": SENTINEL}  # even if a server sent one
    api.on(
        "GET",
        APP_VARS,
        page(
            [item("DEBUG", "1"), leaky, item("EMPTY", ""), item("CERT", "line1\nline2"), item("NONE", None)],
            next_url="/api/v1/teams/acme/apps/web/variables/?cursor=2",
        ),
        page([item("LOG_LEVEL", "info", level="team", version=4)]),
    )

    result = run("env", "list", "--app", "web")

    assert result.exit_code == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines()]
    assert rows[0] == ["NAME", "VALUE", "LEVEL", "VERSION", "UPDATED", "BY"]
    assert rows[1][:4] == ["DEBUG", "1", "app", "1"]
    assert rows[2][:2] == ["DB_PASSWORD", "(secret)"]
    assert rows[3][:2] == ["EMPTY", '""']
    assert rows[4][:2] == ["CERT", '"line1\\nline2"']  # one row per variable
    assert rows[5][:2] == ["NONE", "-"]
    assert rows[6][:4] == ["LOG_LEVEL", "info", "team", "4"]
    assert rows[1][-1] == "alice"
    assert len(rows) == 7
    assert_no_value(result, SENTINEL)
    assert api.requests[1].url.params["cursor"] == "2"


def test_list_effective_asks_for_the_merged_view(run, api):
    merged = [item("DEBUG", "1", level="team"), item("API_KEY", secret=True, level="project")]
    api.on("GET", APP_VARS, page(merged))

    result = run("env", "list", "--app", "web", "--effective")

    assert result.exit_code == 0, result.stderr
    assert api.requests[0].url.params["effective"] == "1"
    rows = [line.split() for line in result.stdout.splitlines()]
    assert [row[:3] for row in rows[1:]] == [["DEBUG", "1", "team"], ["API_KEY", "(secret)", "project"]]


def test_list_names_prints_only_names(run, api):
    api.on("GET", TEAM_VARS, page([item("DEBUG", SENTINEL), item("TOKEN", secret=True)]))
    result = run("env", "list", "--names")
    assert result.exit_code == 0
    assert result.stdout == "DEBUG\nTOKEN\n"
    assert_no_value(result, SENTINEL)


def test_list_names_json_is_an_array_of_names(run, api):
    api.on("GET", TEAM_VARS, page([item("DEBUG", SENTINEL), item("TOKEN", secret=True)]))
    result = run("env", "list", "--names", "--json")
    assert json.loads(result.stdout) == ["DEBUG", "TOKEN"]
    assert_no_value(result, SENTINEL)


def test_list_json_is_every_item_as_one_array(run, api):
    first, second = item("A", "1"), item("B", secret=True)
    api.on("GET", PROJECT_VARS, page([first], next_url=PROJECT_VARS + "?cursor=x"), page([second]))
    result = run("env", "list", "-p", "shop", "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == [first, second]


def test_list_empty_says_so_on_stderr(run, api):
    api.on("GET", APP_VARS, page([]))
    result = run("env", "list", "--app", "web")
    assert result.stdout == ""
    assert "No variables set on app web." in result.stderr


def test_secrets_list_shows_only_secrets(run, api):
    api.on("GET", APP_VARS, page([item("DEBUG", "1"), item("DB_PASSWORD", secret=True)]))

    table = run("secrets", "list", "--app", "web")
    as_json = run("secrets", "list", "--app", "web", "--json")

    assert [line.split()[0] for line in table.stdout.splitlines()] == ["NAME", "DB_PASSWORD"]
    assert [entry["name"] for entry in json.loads(as_json.stdout)] == ["DB_PASSWORD"]


def test_secrets_list_with_none_says_so(run, api):
    api.on("GET", TEAM_VARS, page([item("DEBUG", "1")]))
    result = run("secrets", "list")
    assert result.stdout == ""
    assert "No secrets set on team acme." in result.stderr


# -- set ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("level_args", "path", "where"), LEVELS)
def test_set_posts_the_variables_to_the_level(run, api, level_args, path, where):
    api.on("POST", path, reply(200, set_answer("A", "B", secret=False)))

    result = run("env", "set", "A=1", "B=x=y", *level_args)

    assert result.exit_code == 0, result.stderr
    (request,) = api.requests
    assert api.body(request) == {"variables": {"A": "1", "B": "x=y"}, "secret": False, "restart": True}
    assert f"Set 2 variables on {where}. Redeploying: web" in result.stderr
    assert result.stdout == ""


def test_set_secret_never_prints_the_value(run, api):
    api.on("POST", APP_VARS, reply(200, set_answer("DB_PASSWORD", restarted=["web", "worker"])))

    result = run("env", "set", f"DB_PASSWORD={SENTINEL}", "--secret", "--app", "web")

    assert result.exit_code == 0, result.stderr
    assert api.body(api.requests[0]) == {"variables": {"DB_PASSWORD": SENTINEL}, "secret": True, "restart": True}
    assert "Set 1 variable on app web (secret). Redeploying: web, worker" in result.stderr
    assert result.stdout == ""
    assert_no_value(result, SENTINEL)


def test_secrets_set_is_env_set_with_secret(run, api):
    api.on("POST", PROJECT_VARS, reply(200, set_answer("A", "B", "C")))

    result = run("secrets", "set", f"A={SENTINEL}", "B=", f"C={SENTINEL}2", "--project", "shop")

    assert result.exit_code == 0, result.stderr
    body = api.body(api.requests[0])
    assert body == {"variables": {"A": SENTINEL, "B": "", "C": SENTINEL + "2"}, "secret": True, "restart": True}
    assert "Set 3 variables on project shop (secret)." in result.stderr
    assert_no_value(result, SENTINEL)


def test_set_no_restart(run, api):
    api.on("POST", TEAM_VARS, reply(200, set_answer("A", restarted=[])))
    result = run("env", "set", "A=1", "--no-restart")
    assert api.body(api.requests[0])["restart"] is False
    assert "Not redeploying (--no-restart)" in result.stderr


def test_set_reports_skipped_apps_and_no_live_apps(run, api):
    skipped = [{"app": "cron-worker", "reason": "not live"}]
    api.on("POST", TEAM_VARS, reply(200, set_answer("A", restarted=["web"], skipped=skipped)))
    result = run("env", "set", "A=1")
    assert "Redeploying: web" in result.stderr
    assert "Not redeployed: cron-worker (not live)" in result.stderr

    api.on("POST", TEAM_VARS, reply(200, set_answer("A", restarted=[])))
    assert "No live app to redeploy." in run("env", "set", "A=1").stderr


def test_set_json_prints_the_api_answer_and_the_summary(run, api):
    answer = set_answer("DB_PASSWORD")
    api.on("POST", APP_VARS, reply(200, answer))
    result = run("secrets", "set", f"DB_PASSWORD={SENTINEL}", "-a", "web", "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == answer
    assert "Set 1 variable on app web (secret)." in result.stderr
    assert_no_value(result, SENTINEL)


def test_set_from_file_with_arguments_winning(run, api, tmp_path):
    dotenv = tmp_path / ".env"
    dotenv.write_text(f"# production\nexport A=from-file\nB='{SENTINEL}'\n\nC=\"multi\\nline\"\n")
    api.on("POST", APP_VARS, reply(200, set_answer("A", "B", "C")))

    result = run("env", "set", "--from-file", str(dotenv), "A=from-args", "D=4", "--app", "web")

    assert result.exit_code == 0, result.stderr
    assert api.body(api.requests[0])["variables"] == {"A": "from-args", "B": SENTINEL, "C": "multi\nline", "D": "4"}
    assert "Set 4 variables on app web." in result.stderr
    assert_no_value(result, SENTINEL)


def test_set_from_stdin(run, api):
    api.on("POST", APP_VARS, reply(200, set_answer("TOKEN")))
    result = run("secrets", "set", "-f", "-", "--app", "web", input=f"TOKEN={SENTINEL}\n")
    assert result.exit_code == 0, result.stderr
    assert api.body(api.requests[0])["variables"] == {"TOKEN": SENTINEL}
    assert_no_value(result, SENTINEL)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param([SENTINEL], "argument 1 is not NAME=VALUE", id="no-equals"),
        pytest.param(["A=1", f"DB_PASSWORD {SENTINEL}"], "argument 2 is not NAME=VALUE", id="second-no-equals"),
        pytest.param([f"1BAD={SENTINEL}"], "argument 1: not a valid variable name", id="digit-first"),
        pytest.param([f"{SENTINEL}x=1"], "argument 1: not a valid variable name", id="dash-in-name"),
        pytest.param([f"=x{SENTINEL}"], "argument 1: not a valid variable name", id="empty-name"),
        pytest.param([f"{'A' * 129}=1"], "argument 1: not a valid variable name", id="too-long"),
        pytest.param([], "nothing to set", id="nothing"),
    ],
)
def test_set_usage_errors_never_repeat_the_argument(run, api, args, message):
    result = run("env", "set", *args, "--app", "web")
    assert result.exit_code == 2
    assert message in result.stderr
    assert api.requests == []
    assert_no_value(result, SENTINEL)


def test_set_a_128_character_name_is_fine(run, api):
    api.on("POST", TEAM_VARS, reply(200, set_answer("A" * 128)))
    assert run("env", "set", f"{'A' * 128}=1").exit_code == 0


def test_set_file_errors_name_the_line_not_its_text(run, api, tmp_path):
    dotenv = tmp_path / "prod.env"
    dotenv.write_text(f"GOOD=1\n\n{SENTINEL}\n")
    result = run("env", "set", "-f", str(dotenv))
    assert result.exit_code == 2
    assert f"{dotenv} line 3: not NAME=VALUE" in result.stderr
    assert api.requests == []
    assert_no_value(result, SENTINEL)


def test_set_unreadable_or_empty_file(run, api, tmp_path):
    missing = run("env", "set", "-f", str(tmp_path / "nope.env"))
    assert missing.exit_code == 2
    assert "cannot read" in missing.stderr

    binary = tmp_path / "binary.env"
    binary.write_bytes(b"A=\xff" + SENTINEL.encode())
    not_text = run("env", "set", "-f", str(binary))
    assert not_text.exit_code == 2
    assert "is not UTF-8 text" in not_text.stderr
    assert_no_value(not_text, SENTINEL, "xff")

    empty = tmp_path / "empty.env"
    empty.write_text("# nothing yet\n")
    nothing = run("env", "set", "-f", str(empty))
    assert nothing.exit_code == 2
    assert "has no variables" in nothing.stderr
    assert api.requests == []


def test_set_api_error_shows_fields_but_never_the_value(run, api):
    # A careless server (or proxy) repeating the value must not make the CLI print it.
    api.on(
        "POST",
        APP_VARS,
        api_error(
            400,
            "invalid",
            f"Invalid value {SENTINEL!r}.",
            fields={"variables": {"PORT": ["PORT is reserved."], "X": [f"bad: {SENTINEL}"]}},
            echoed=SENTINEL,
        ),
    )

    result = run("secrets", "set", f"PORT={SENTINEL}", f"X={SENTINEL}", "--app", "web")

    assert result.exit_code == 1
    assert "PORT is reserved." in result.stderr
    assert "[redacted]" in result.stderr
    assert "request id: req-1" in result.stderr
    assert result.stdout == ""
    assert_no_value(result, SENTINEL)


def test_set_redaction_leaves_short_values_and_other_text_alone(run, api):
    api.on("POST", TEAM_VARS, api_error(400, "invalid", "Names must have at most 128 characters.", fields={}))
    result = run("env", "set", "A=1", "B=12")
    assert "Names must have at most 128 characters. (invalid)" in result.stderr


def test_set_permission_denied_exits_1(run, api):
    api.on("POST", APP_VARS, api_error(403, "permission_denied", "You may not change variables of this app."))
    result = run("env", "set", f"A={SENTINEL}", "--app", "web")
    assert result.exit_code == 1
    assert "You may not change variables of this app. (permission_denied)" in result.stderr
    assert_no_value(result, SENTINEL)


def test_set_unreachable_api_exits_1_without_the_value(run, api):
    import httpx

    def refuse(request):
        raise httpx.ConnectError("connection refused")

    api.on("POST", APP_VARS, refuse)
    result = run("env", "set", f"A={SENTINEL}", "--app", "web")
    assert result.exit_code == 1
    assert "cannot reach the PandaStack API" in result.stderr
    assert_no_value(result, SENTINEL)


def test_blot_out_replaces_longest_values_first():
    from panda_cli.errors import ApiError

    exc = ApiError(f"x {SENTINEL}-tail y", status=400, code="invalid", fields={"a": [SENTINEL]}, hint=SENTINEL)
    env.blot_out(exc, [SENTINEL, f"{SENTINEL}-tail", "ab"])
    assert exc.message == "x [redacted] y"
    assert exc.fields == {"a": ["[redacted]"]}
    assert exc.hint == "[redacted]"
    assert SENTINEL not in str(exc)


# -- .env parsing ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("A=1\nB=2", {"A": "1", "B": "2"}, id="plain-no-final-newline"),
        pytest.param("\n  \n# comment\n   # indented comment\nA=1\n", {"A": "1"}, id="blank-and-comments"),
        pytest.param("export A=1\nexport\tB=2\n", {"A": "1", "B": "2"}, id="export-prefix"),
        pytest.param("export=1\n", {"export": "1"}, id="a-variable-named-export"),
        pytest.param("  A =  spaced value  \n", {"A": "spaced value"}, id="spaces-trimmed"),
        pytest.param("A=\nB=''\nC=\"\"\n", {"A": "", "B": "", "C": ""}, id="empty-values"),
        pytest.param("A=x=y==\n", {"A": "x=y=="}, id="equals-in-value"),
        pytest.param(
            "A=value # comment\nB=a#b\nC=#c\nD= # only a comment\n",
            {"A": "value", "B": "a#b", "C": "#c", "D": ""},
            id="inline-comments",
        ),
        pytest.param("A='single $HOME \\n \"q\"'\n", {"A": 'single $HOME \\n "q"'}, id="single-quotes-literal"),
        pytest.param('A="l1\\nl2\\t\\"q\\" \\\\ \\x"\n', {"A": 'l1\nl2\t"q" \\ \\x'}, id="double-quote-escapes"),
        pytest.param("A='# not a comment'\nB=\"x\" # comment\n", {"A": "# not a comment", "B": "x"}, id="hash-quoted"),
        pytest.param('A="line 1\nline 2"\nB=3\n', {"A": "line 1\nline 2", "B": "3"}, id="multiline-double"),
        pytest.param(
            "A='-----BEGIN\nxyz\n-----END'\nB=3\n", {"A": "-----BEGIN\nxyz\n-----END", "B": "3"}, id="multiline-single"
        ),
        pytest.param("A=1\r\nB='x'\r\n", {"A": "1", "B": "x"}, id="crlf"),
        pytest.param("\ufeffA=1\n", {"A": "1"}, id="bom"),
        pytest.param("A=1\nA=2\n", {"A": "2"}, id="last-wins"),
        pytest.param("A=${B}\n", {"A": "${B}"}, id="no-interpolation"),
        pytest.param("A=it's\n", {"A": "it's"}, id="apostrophe-unquoted"),
        pytest.param("", {}, id="empty-file"),
    ],
)
def test_parse_dotenv(text, expected):
    assert env.parse_dotenv(text, source=".env") == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param(f"A=1\n{SENTINEL}\n", ".env line 2: not NAME=VALUE", id="no-equals"),
        pytest.param(f"A=1\nexport {SENTINEL}\n", ".env line 2: not NAME=VALUE", id="export-no-equals"),
        pytest.param(f"9A={SENTINEL}\n", ".env line 1: not a valid variable name", id="bad-name"),
        pytest.param(f"MY VAR={SENTINEL}\n", ".env line 1: not a valid variable name", id="space-in-name"),
        pytest.param(f"A=1\nB='{SENTINEL}\n", ".env line 2: the quoted value has no closing quote", id="open-single"),
        pytest.param(f'B="{SENTINEL}\\"\n', ".env line 1: the quoted value has no closing quote", id="open-double"),
        pytest.param(f"A='x' {SENTINEL}\n", ".env line 1: unexpected text after the closing quote", id="after-quote"),
        pytest.param(f"A='x\ny'\nB=1\n{SENTINEL}\n", ".env line 4: not NAME=VALUE", id="line-count-after-multiline"),
    ],
)
def test_parse_dotenv_errors_name_the_line_and_never_the_text(text, message):
    with pytest.raises(UsageProblem) as caught:
        env.parse_dotenv(text, source=".env")
    assert caught.value.message == message
    assert SENTINEL not in str(caught.value)
    assert SENTINEL not in (caught.value.hint or "")


# -- unset -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("level_args", "path", "where"), LEVELS)
def test_unset_posts_the_names(run, api, level_args, path, where):
    api.on("POST", path + "unset/", reply(200, {"unset": ["A", "B"], "restarted": ["web"], "skipped": []}))

    result = run("env", "unset", "A", "B", "A", *level_args)

    assert result.exit_code == 0, result.stderr
    assert api.body(api.requests[0]) == {"names": ["A", "B"], "restart": True}
    assert f"Unset 2 variables on {where}. Redeploying: web" in result.stderr
    assert result.stdout == ""


def test_secrets_unset_no_restart_json(run, api):
    answer = {"unset": ["TOKEN"], "restarted": [], "skipped": []}
    api.on("POST", APP_VARS + "unset/", reply(200, answer))
    result = run("secrets", "unset", "TOKEN", "--app", "web", "--no-restart", "--json")
    assert result.exit_code == 0
    assert api.body(api.requests[0]) == {"names": ["TOKEN"], "restart": False}
    assert json.loads(result.stdout) == answer
    assert "Unset 1 variable on app web. Not redeploying (--no-restart)" in result.stderr


def test_unset_unknown_names_exit_1_with_the_field(run, api):
    api.on(
        "POST", TEAM_VARS + "unset/", api_error(400, "invalid", "Invalid input.", fields={"names": ["Unknown: NOPE."]})
    )
    result = run("env", "unset", "NOPE")
    assert result.exit_code == 1
    assert "names: Unknown: NOPE." in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param([f"DB_PASSWORD={SENTINEL}"], "argument 1 is not a name", id="name-equals-value"),
        pytest.param(["A", f"{SENTINEL}"], "argument 2: not a valid variable name", id="bad-name"),
        pytest.param([], "Missing argument", id="nothing"),
    ],
)
def test_unset_usage_errors(run, api, args, message):
    result = run("env", "unset", *args)
    assert result.exit_code == 2
    assert message in result.stderr
    assert api.requests == []
    assert_no_value(result, SENTINEL)


# -- reveal ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("level_args", "path", "_"), LEVELS)
def test_reveal_prints_only_the_value(run, api, level_args, path, _):
    api.on("POST", path + "DB_PASSWORD/reveal/", reply(200, {"name": "DB_PASSWORD", "value": SENTINEL, "version": 3}))

    result = run("env", "reveal", "DB_PASSWORD", *level_args)

    assert result.exit_code == 0, result.stderr
    assert result.stdout == SENTINEL  # exactly: no newline when stdout is not a terminal
    assert result.stderr == ""
    assert api.requests[0].method == "POST"


def test_reveal_keeps_the_value_byte_for_byte(run, api):
    value = "-----BEGIN KEY-----\nabc\x1b[31m\n-----END KEY-----\n"
    api.on("POST", APP_VARS + "CERT/reveal/", reply(200, {"name": "CERT", "value": value, "version": 1}))
    result = run("secrets", "reveal", "CERT", "--app", "web")
    assert result.stdout == value


def test_reveal_json(run, api):
    answer = {"name": "DB_PASSWORD", "value": SENTINEL, "version": 3}
    api.on("POST", APP_VARS + "DB_PASSWORD/reveal/", reply(200, answer))
    result = run("secrets", "reveal", "DB_PASSWORD", "-a", "web", "--json")
    assert json.loads(result.stdout) == answer


def test_reveal_refused_exits_1(run, api):
    api.on(
        "POST",
        APP_VARS + "DB_PASSWORD/reveal/",
        api_error(403, "permission_denied", "You may not reveal secret values."),
    )
    result = run("secrets", "reveal", "DB_PASSWORD", "--app", "web")
    assert result.exit_code == 1
    assert "You may not reveal secret values. (permission_denied)" in result.stderr
    assert result.stdout == ""


def test_reveal_without_a_value_is_an_error(run, api):
    api.on("POST", APP_VARS + "A/reveal/", reply(200, {"name": "A", "version": 1}))
    result = run("env", "reveal", "A", "--app", "web")
    assert result.exit_code == 1
    assert result.stdout == ""


def test_reveal_rejects_a_bad_name_before_asking(run, api):
    result = run("env", "reveal", "../../me", "--app", "web")
    assert result.exit_code == 2
    assert api.requests == []


# -- versions ----------------------------------------------------------------------------------


def versions_page():
    return page(
        [
            {"version": 2, "secret": True, "deleted": True, "created_by": "bob", "created_at": "2025-02-01T09:00:00Z"},
            {"version": 1, "secret": False, "deleted": False, "created_by": "alice", "created_at": None},
        ]
    )


@pytest.mark.parametrize(("level_args", "path", "_"), LEVELS)
def test_versions_lists_the_history(run, api, level_args, path, _):
    api.on("GET", path + "DB_PASSWORD/versions/", versions_page())

    result = run("env", "versions", "DB_PASSWORD", *level_args)

    assert result.exit_code == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines()]
    assert rows[0] == ["VERSION", "SECRET", "DELETED", "CREATED", "BY"]
    assert rows[1][:3] == ["2", "yes", "yes"]
    assert rows[1][-1] == "bob"
    assert rows[2] == ["1", "no", "no", "-", "alice"]


def test_secrets_versions_json(run, api):
    api.on("GET", APP_VARS + "TOKEN/versions/", versions_page())
    result = run("secrets", "versions", "TOKEN", "--app", "web", "--json")
    assert [entry["version"] for entry in json.loads(result.stdout)] == [2, 1]


def test_versions_of_an_unknown_variable_exits_1(run, api):
    api.on("GET", TEAM_VARS + "NOPE/versions/", api_error(404, "not_found", "Not found."))
    result = run("env", "versions", "NOPE")
    assert result.exit_code == 1
    assert "Not found. (not_found)" in result.stderr


# -- the command set ---------------------------------------------------------------------------


def test_every_env_and_secrets_command_exists(run):
    for group in ("env", "secrets"):
        for command in ("list", "set", "unset", "reveal", "versions"):
            result = run(group, command, "--help")
            assert result.exit_code == 0, (group, command)


def test_only_env_set_offers_secret(run):
    assert "--secret" in run("env", "set", "--help").stdout
    assert "--secret " not in run("secrets", "set", "--help").stdout
    assert run("secrets", "set", "A=1", "--secret").exit_code == 2
