"""`panda env` and `panda secrets`: environment variables and secrets at team, project and app
level (the narrower level wins when an app's containers get them).

The level follows from the options: `--app` is app level, `--project` project level, neither team
level; `--level` may say it explicitly and must agree. `panda secrets ...` is `panda env ...` with
every value set as a secret and lists narrowed to secrets.

Values are the point of this module and must not leak from it: they are sent to the API and never
printed, logged or put into an error (a parse error names the argument or line, not its text; an
API error during `set` has the values being set blotted out, in case a server repeats one). The
one exception is `reveal`, whose whole job is to print one value to stdout.
"""

import json
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from panda_cli import output
from panda_cli.client import team_path
from panda_cli.errors import ApiError, CliError, UsageProblem
from panda_cli.session import JsonOption, Session, TeamOption, reports_errors

NAME_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MAX_NAME_LENGTH = 128
NAME_RULE = "names are letters, digits and _, do not start with a digit, and have at most 128 characters"
REDACTED = "[redacted]"
# Shorter values are not blotted out of error messages: "1" or "on" protect nothing, and replacing
# them would garble the message ("at most [redacted]28 characters").
MIN_REDACTED_LENGTH = 4
# In a double-quoted .env value; any other backslash stays as written.
DOUBLE_QUOTE_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", '"': '"', "\\": "\\"}

env_app = typer.Typer(
    help="Environment variables at team, project or app level; the narrower level wins.\n\n"
    "The level follows from `--app` (app) or `--project` (project), else team; `--level` may say it.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)
secrets_app = typer.Typer(
    help="Secrets: variables whose values are encrypted and write-only; only `reveal` shows one.\n\n"
    "The same as `panda env`, with every value set as a secret and lists showing secrets only.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)


class Level(StrEnum):
    TEAM = "team"
    PROJECT = "project"
    APP = "app"


LevelOption = Annotated[
    Level | None,
    typer.Option(
        "--level",
        case_sensitive=False,
        help="team, project or app. Default: app with --app, project with --project, else team.",
        show_default=False,
    ),
]
EnvAppOption = Annotated[
    str | None, typer.Option("--app", "-a", help="App level: this app's variables.", show_default=False)
]
ProjectOption = Annotated[
    str | None, typer.Option("--project", "-p", help="Project level: this project's variables.", show_default=False)
]
NoRestartOption = Annotated[
    bool,
    typer.Option(
        "--no-restart", help="Do not redeploy the live apps affected; they get the change at their next deploy."
    ),
]
FromFileOption = Annotated[
    str | None,
    typer.Option(
        "--from-file",
        "-f",
        metavar="FILE",
        help="Read NAME=VALUE lines from a .env file (`-` reads stdin). NAME=VALUE arguments win over it.",
        show_default=False,
    ),
]
AssignmentsArgument = Annotated[
    list[str] | None, typer.Argument(metavar="NAME=VALUE", help="Variables to set.", show_default=False)
]
NamesArgument = Annotated[list[str], typer.Argument(metavar="NAME", help="Names to unset.", show_default=False)]
NameArgument = Annotated[str, typer.Argument(metavar="NAME", help="The variable's name.", show_default=False)]
EffectiveOption = Annotated[
    bool,
    typer.Option(
        "--effective",
        help="With --app: what the app's containers get, merged from all levels (LEVEL says where each comes from).",
    ),
]
NamesOnlyOption = Annotated[
    bool, typer.Option("--names", help="Print only the names, one per line (with --json, a JSON array of names).")
]


# -- where the variables live ------------------------------------------------------------------


@dataclass(frozen=True)
class Scope:
    """Which level a command works on, and the project or app it names (None at team level).
    Checked before anything talks to the API, so a usage error never costs a request."""

    level: Level
    owner: str | None

    @classmethod
    def choose(cls, *, app: str | None, project: str | None, level: Level | None) -> "Scope":
        """The level the options ask for. Raises UsageProblem when they disagree."""
        if app and project:
            raise UsageProblem(
                "give --app or --project, not both",
                hint="an app's own variables are at app level (--app); its project's at project level (--project)",
            )
        inferred = Level.APP if app else Level.PROJECT if project else Level.TEAM
        if level is not None and level != inferred:
            needs = {
                Level.APP: "--app APP",
                Level.PROJECT: "--project PROJECT",
                Level.TEAM: "neither --app nor --project",
            }
            raise UsageProblem(f"--level {level.value} needs {needs[level]}")
        return cls(inferred, app or project)

    def describe(self, team: str) -> str:
        """`app web`, `project shop` or `team acme`, for messages."""
        return f"{self.level.value} {self.owner if self.owner else team}"

    def path(self, team: str, *parts: str) -> str:
        """The URL of this level's variable collection, or of `parts` under it."""
        if self.level is Level.TEAM:
            return team_path(team, "variables", *parts)
        collection = "apps" if self.level is Level.APP else "projects"
        return team_path(team, collection, str(self.owner), "variables", *parts)


# -- names and values from the command line and .env files -------------------------------------


def check_name(name: str, *, where: str) -> str:
    """`name` when it is a valid variable name. Otherwise raises UsageProblem naming `where` (an
    argument's position or a file's line) and not the text: a mistyped line may hold a value."""
    if not NAME_PATTERN.fullmatch(name) or len(name) > MAX_NAME_LENGTH:
        raise UsageProblem(f"{where}: not a valid variable name", hint=NAME_RULE)
    return name


def parse_assignments(arguments: Sequence[str]) -> dict[str, str]:
    """NAME=VALUE arguments as a dict, each split at its first `=` (so a value may hold `=`, and may
    be empty); a later argument wins over an earlier one. Raises UsageProblem, without repeating the
    argument, when one has no `=` or an invalid name."""
    variables: dict[str, str] = {}
    for position, argument in enumerate(arguments, start=1):
        name, equals, value = argument.partition("=")
        if not equals:
            raise UsageProblem(
                f"argument {position} is not NAME=VALUE",
                hint="write NAME=VALUE (NAME= sets an empty value); `panda env unset NAME` removes one",
            )
        variables[check_name(name, where=f"argument {position}")] = value
    return variables


def parse_dotenv(text: str, *, source: str) -> dict[str, str]:
    """The variables of a .env file, in file order; a name given twice keeps its last value.

    Understood: blank lines and `#` comment lines; an optional `export ` prefix; `NAME=value` with
    spaces around the name and value ignored and a ` #` starting a comment in an unquoted value;
    `'single quotes'` taken literally; `"double quotes"` with \\n, \\r, \\t, \\" and \\\\ escapes.
    Quoted values may span lines. Nothing is interpolated: `${OTHER}` stays as written.
    Raises UsageProblem naming `source` and the line, never the line's text.
    """
    text = text.removeprefix("\ufeff").replace("\r\n", "\n")
    variables: dict[str, str] = {}
    position, line_number, end = 0, 1, len(text)
    while position < end:
        line_end = text.find("\n", position)
        line_end = end if line_end == -1 else line_end
        line = text[position:line_end]
        where = f"{source} line {line_number}"
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            position, line_number = line_end + 1, line_number + 1
            continue
        name, equals, _ = stripped.partition("=")
        if not equals:
            raise UsageProblem(f"{where}: not NAME=VALUE", hint="each line is NAME=VALUE, a # comment, or blank")
        name = name.strip()
        if name.startswith("export") and name[6:7] in (" ", "\t"):
            name = name[6:].strip()
        check_name(name, where=where)
        value_start = text.index("=", position) + 1
        raw = text[value_start:line_end]
        opening = raw.lstrip(" \t")[:1]
        if opening in ("'", '"'):
            quote_at = value_start + len(raw) - len(raw.lstrip(" \t"))
            value, after = _quoted(text, quote_at + 1, opening, where=where)
            line_number += text.count("\n", position, after)
            line_end = text.find("\n", after)
            line_end = end if line_end == -1 else line_end
            rest = text[after:line_end].strip()
            if rest and not rest.startswith("#"):
                raise UsageProblem(f"{where}: unexpected text after the closing quote")
        else:
            # A comment starts at a # that follows whitespace: `a #b` is "a", `a#b` and `#b` keep theirs.
            value = re.split(r"[ \t]#", raw, maxsplit=1)[0].strip()
        variables[name] = value
        position, line_number = line_end + 1, line_number + 1
    return variables


def _quoted(text: str, start: int, quote: str, *, where: str) -> tuple[str, int]:
    """The value of a quoted string whose content starts at `start`, and the index just after its
    closing quote. Single quotes are literal; double quotes understand DOUBLE_QUOTE_ESCAPES."""
    if quote == "'":
        closing = text.find("'", start)
        if closing == -1:
            raise UsageProblem(f"{where}: the quoted value has no closing quote")
        return text[start:closing], closing + 1
    chars: list[str] = []
    index = start
    while index < len(text):
        char = text[index]
        if char == '"':
            return "".join(chars), index + 1
        if char == "\\" and index + 1 < len(text):
            following = text[index + 1]
            chars.append(DOUBLE_QUOTE_ESCAPES.get(following, "\\" + following))
            index += 2
            continue
        chars.append(char)
        index += 1
    raise UsageProblem(f"{where}: the quoted value has no closing quote")


def read_env_file(path: str) -> dict[str, str]:
    """The variables of the .env file at `path` (`-` is stdin). Raises UsageProblem when it cannot
    be read or parsed."""
    if path == "-":
        return parse_dotenv(sys.stdin.read(), source="stdin")
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageProblem(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        # The decoder's message quotes the offending bytes, which may be part of a value.
        raise UsageProblem(f"{path} is not UTF-8 text") from None
    return parse_dotenv(text, source=path)


def _redact(data: Any, values: Sequence[str]) -> Any:
    if isinstance(data, str):
        for value in values:
            data = data.replace(value, REDACTED)
        return data
    if isinstance(data, list):
        return [_redact(item, values) for item in data]
    if isinstance(data, dict):
        return {key: _redact(item, values) for key, item in data.items()}
    return data


def blot_out(exc: CliError, values: Iterable[str]) -> None:
    """Replace every value of `values` (of MIN_REDACTED_LENGTH characters or more) in the error's
    message, hint and details by REDACTED, in place: what the CLI prints must never hold a value it
    sent, even when the server (or a proxy in between) repeats it."""
    # Longest first, so a value that contains another is blotted out whole.
    worth_hiding = sorted({value for value in values if len(value) >= MIN_REDACTED_LENGTH}, key=len, reverse=True)
    if not worth_hiding:
        return
    exc.message = _redact(exc.message, worth_hiding)
    exc.args = (exc.message,)
    exc.hint = _redact(exc.hint, worth_hiding)
    if isinstance(exc, ApiError):
        exc.fields = _redact(exc.fields, worth_hiding)
        exc.extra = _redact(exc.extra, worth_hiding)


# -- what the commands do ----------------------------------------------------------------------


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _shown_value(item: dict[str, Any]) -> str | None:
    """How a variable's value reads in a table: never a secret's, whatever the API sent; an empty
    or multi-line value quoted and escaped so the table keeps one row per variable."""
    if item.get("secret"):
        return "(secret)"
    value = item.get("value")
    if not isinstance(value, str):
        return value
    if value == "" or not value.isprintable():
        return json.dumps(value, ensure_ascii=False)
    return value


def _restart_note(answer: dict[str, Any], *, restart: bool) -> str:
    if not restart:
        return " Not redeploying (--no-restart): apps get the change at their next deploy."
    restarted = answer.get("restarted") or []
    if restarted:
        return " Redeploying: " + ", ".join(str(name) for name in restarted)
    if not answer.get("skipped"):
        return " No live app to redeploy."
    return ""


def _report_skipped(answer: dict[str, Any]) -> None:
    for skipped in answer.get("skipped") or []:
        reason = skipped.get("reason") if isinstance(skipped, dict) else None
        name = skipped.get("app") if isinstance(skipped, dict) else skipped
        output.info(f"Not redeployed: {name}" + (f" ({reason})" if reason else ""))


def list_variables(
    scope: Scope, *, team: str | None, effective: bool, names_only: bool, json_: bool, secrets_only: bool
) -> None:
    """Print a level's variables (every page): a table, names only, or the API's JSON."""
    if effective and scope.level != Level.APP:
        raise UsageProblem("--effective needs --app: it shows what one app's containers get")
    session = Session(team=team)
    params = {"effective": 1} if effective else None
    items = list(session.client.paginate(scope.path(session.team), params=params))
    if secrets_only:
        items = [item for item in items if item.get("secret")]
    noun = "secrets" if secrets_only else "variables"
    if names_only:
        names = [str(item.get("name")) for item in items]
        if json_:
            output.print_json(names)
        else:
            for name in names:
                output.line(name)
        return
    if json_:
        output.print_json(items)
        return
    if not items:
        where = scope.describe(session.team)
        output.info(f"No {noun} reach {where}." if effective else f"No {noun} set on {where}.")
        return
    output.table(
        items,
        [
            ("name", lambda item: item.get("name")),
            ("value", _shown_value),
            ("level", lambda item: item.get("level")),
            ("version", lambda item: item.get("version")),
            ("updated", lambda item: output.local_time(item.get("updated_at"))),
            ("by", lambda item: item.get("updated_by")),
        ],
    )


def set_variables(
    scope: Scope,
    *,
    team: str | None,
    assignments: Sequence[str],
    from_file: str | None,
    secret: bool,
    restart: bool,
    json_: bool,
) -> None:
    """Set variables from NAME=VALUE arguments and/or a .env file (arguments win), then print a
    summary to stderr (and the API's JSON with --json). No value is printed, nor left in an error."""
    variables = read_env_file(from_file) if from_file else {}
    variables.update(parse_assignments(assignments))
    if not variables:
        raise UsageProblem(
            "nothing to set" + (f": {from_file} has no variables" if from_file else ""),
            hint="give NAME=VALUE arguments, or --from-file FILE",
        )
    session = Session(team=team)
    body = {"variables": variables, "secret": secret, "restart": restart}
    try:
        answer = session.client.post(scope.path(session.team), body)
    except CliError as exc:
        blot_out(exc, variables.values())
        raise
    if json_:
        output.print_json(answer)
    noun = _plural(len(variables), "variable")
    output.success(
        f"Set {noun} on {scope.describe(session.team)}{' (secret)' if secret else ''}."
        + _restart_note(answer, restart=restart)
    )
    _report_skipped(answer)


def unset_variables(scope: Scope, *, team: str | None, names: Sequence[str], restart: bool, json_: bool) -> None:
    """Remove variables by name, then print a summary to stderr (and the API's JSON with --json)."""
    for position, name in enumerate(names, start=1):
        if "=" in name:
            raise UsageProblem(f"argument {position} is not a name", hint="unset takes names only, not NAME=VALUE")
        check_name(name, where=f"argument {position}")
    unique = list(dict.fromkeys(names))
    session = Session(team=team)
    answer = session.client.post(scope.path(session.team, "unset"), {"names": unique, "restart": restart})
    if json_:
        output.print_json(answer)
    count = len(answer.get("unset") or unique)
    output.success(
        f"Unset {_plural(count, 'variable')} on {scope.describe(session.team)}."
        + _restart_note(answer, restart=restart)
    )
    _report_skipped(answer)


def reveal_variable(scope: Scope, *, team: str | None, name: str, json_: bool) -> None:
    """Print one variable's value to stdout, exactly (its JSON with --json); nothing else."""
    check_name(name, where="NAME")
    session = Session(team=team)
    answer = session.client.post(scope.path(session.team, name, "reveal"), {})
    if json_:
        output.print_json(answer)
        return
    value = answer.get("value") if isinstance(answer, dict) else None
    if not isinstance(value, str):
        raise ApiError("the API answered a reveal without a value", status=200, code="bad_response")
    output.exact(value)


def variable_versions(scope: Scope, *, team: str | None, name: str, json_: bool) -> None:
    """Print a variable's version history (every page; never values)."""
    check_name(name, where="NAME")
    session = Session(team=team)
    versions = list(session.client.paginate(scope.path(session.team, name, "versions")))
    if json_:
        output.print_json(versions)
        return
    if not versions:
        output.info(f"{name} has no versions on {scope.describe(session.team)}.")
        return
    output.table(
        versions,
        [
            ("version", lambda version: version.get("version")),
            ("secret", lambda version: version.get("secret")),
            ("deleted", lambda version: version.get("deleted")),
            ("created", lambda version: output.local_time(version.get("created_at"))),
            ("by", lambda version: version.get("created_by")),
        ],
    )


# -- panda env ---------------------------------------------------------------------------------


@env_app.command("list")
@reports_errors
def env_list(
    app: EnvAppOption = None,
    project: ProjectOption = None,
    level: LevelOption = None,
    effective: EffectiveOption = False,
    names: NamesOnlyOption = False,
    team: TeamOption = None,
    json_: JsonOption = False,
) -> None:
    """List a level's variables (every page). Secrets show as (secret), never their value."""
    scope = Scope.choose(app=app, project=project, level=level)
    list_variables(scope, team=team, effective=effective, names_only=names, json_=json_, secrets_only=False)


@env_app.command("set")
@reports_errors
def env_set(
    assignments: AssignmentsArgument = None,
    from_file: FromFileOption = None,
    secret: Annotated[bool, typer.Option("--secret", help="Store the values as secrets (write-only).")] = False,
    no_restart: NoRestartOption = False,
    app: EnvAppOption = None,
    project: ProjectOption = None,
    level: LevelOption = None,
    team: TeamOption = None,
    json_: JsonOption = False,
) -> None:
    """Set variables: `NAME=VALUE` arguments and/or `--from-file .env` (arguments win).

    Live apps that get the variables are redeployed unless --no-restart. Values are never printed;
    to keep them out of shell history, use `--from-file FILE` or `--from-file -` (stdin).
    """
    scope = Scope.choose(app=app, project=project, level=level)
    set_variables(
        scope,
        team=team,
        assignments=assignments or [],
        from_file=from_file,
        secret=secret,
        restart=not no_restart,
        json_=json_,
    )


@env_app.command("unset")
@reports_errors
def env_unset(
    names: NamesArgument,
    no_restart: NoRestartOption = False,
    app: EnvAppOption = None,
    project: ProjectOption = None,
    level: LevelOption = None,
    team: TeamOption = None,
    json_: JsonOption = False,
) -> None:
    """Remove variables. Live apps that had them are redeployed unless --no-restart."""
    scope = Scope.choose(app=app, project=project, level=level)
    unset_variables(scope, team=team, names=names, restart=not no_restart, json_=json_)


@env_app.command("reveal")
@reports_errors
def env_reveal(
    name: NameArgument,
    app: EnvAppOption = None,
    project: ProjectOption = None,
    level: LevelOption = None,
    team: TeamOption = None,
    json_: JsonOption = False,
) -> None:
    """Print one value to stdout and nothing else: `$(panda env reveal DB_PASSWORD --app web)`.

    Revealing a secret needs the reveal permission and a token with the secrets scope, and is audited.
    """
    scope = Scope.choose(app=app, project=project, level=level)
    reveal_variable(scope, team=team, name=name, json_=json_)


@env_app.command("versions")
@reports_errors
def env_versions(
    name: NameArgument,
    app: EnvAppOption = None,
    project: ProjectOption = None,
    level: LevelOption = None,
    team: TeamOption = None,
    json_: JsonOption = False,
) -> None:
    """List a variable's versions: who changed it and when (never the values)."""
    scope = Scope.choose(app=app, project=project, level=level)
    variable_versions(scope, team=team, name=name, json_=json_)


# -- panda secrets -----------------------------------------------------------------------------


@secrets_app.command("list")
@reports_errors
def secrets_list(
    app: EnvAppOption = None,
    project: ProjectOption = None,
    level: LevelOption = None,
    effective: EffectiveOption = False,
    names: NamesOnlyOption = False,
    team: TeamOption = None,
    json_: JsonOption = False,
) -> None:
    """List a level's secrets (every page): names, versions, who changed them; never values."""
    scope = Scope.choose(app=app, project=project, level=level)
    list_variables(scope, team=team, effective=effective, names_only=names, json_=json_, secrets_only=True)


@secrets_app.command("set")
@reports_errors
def secrets_set(
    assignments: AssignmentsArgument = None,
    from_file: FromFileOption = None,
    no_restart: NoRestartOption = False,
    app: EnvAppOption = None,
    project: ProjectOption = None,
    level: LevelOption = None,
    team: TeamOption = None,
    json_: JsonOption = False,
) -> None:
    """Set secrets: `NAME=VALUE` arguments and/or `--from-file .env` (arguments win).

    Live apps that get them are redeployed unless --no-restart. Values are never printed; to keep
    them out of shell history, use `--from-file FILE` or `--from-file -` (stdin).
    """
    scope = Scope.choose(app=app, project=project, level=level)
    set_variables(
        scope,
        team=team,
        assignments=assignments or [],
        from_file=from_file,
        secret=True,
        restart=not no_restart,
        json_=json_,
    )


# The same commands as `panda env`, with help that speaks of secrets.
secrets_app.command("unset", help="Remove secrets. Live apps that had them are redeployed unless --no-restart.")(
    env_unset
)
secrets_app.command(
    "reveal",
    help=(
        "Print one secret's value to stdout and nothing else: `$(panda secrets reveal DB_PASSWORD --app web)`.\n\n"
        "Needs the reveal permission and a token with the secrets scope, and is audited."
    ),
)(env_reveal)
secrets_app.command("versions", help="List a secret's versions: who changed it and when (never the values).")(
    env_versions
)
