"""Where `panda login` keeps the token, and how the settings every command uses are resolved.

Precedence, highest first: command-line options, then environment variables (`PANDA_TOKEN`,
`PANDA_API_URL`, `PANDA_TEAM`), then the config file, then defaults. An environment variable set to
the empty string counts as unset, so a CI template with `PANDA_TEAM: ""` falls through.
"""

import json
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from panda_cli.errors import CliError, UsageProblem

DEFAULT_API_URL = "http://127.0.0.1:8000"
KEYS = ("api_url", "token", "team")


def config_path() -> Path:
    """The config file: `$XDG_CONFIG_HOME/panda/config.json`, else `~/.config/panda/config.json`.
    A relative XDG_CONFIG_HOME is ignored, as the XDG spec asks."""
    base = os.environ.get("XDG_CONFIG_HOME", "")
    root = Path(base) if base and Path(base).is_absolute() else Path.home() / ".config"
    return root / "panda" / "config.json"


def load() -> dict[str, str]:
    """The saved settings ({} when there is no file). Raises CliError when the file is unreadable or
    not a JSON object, rather than silently running without the user's login."""
    path = config_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise CliError(f"cannot read the config file {path}: {exc.strerror}") from None
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise CliError(
            f"the config file {path} is not a JSON object", hint="fix it, or run `panda logout` to remove it"
        )
    return {key: value for key, value in data.items() if key in KEYS and isinstance(value, str) and value}


def save(settings: dict[str, str]) -> Path:
    """Write the settings to the config file, readable by the user only: the directory ends up 0700
    and the file 0600. The file is replaced atomically, so the token is never readable by others, not
    even for a moment, and a crash never leaves half a file."""
    path = config_path()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.parent.chmod(0o700)  # mkdir's mode is masked by the umask and ignored for an existing dir
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    data = {key: settings[key] for key in KEYS if settings.get(key)}
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # in case the file already existed with a wider mode
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        temporary.replace(path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


def forget_credentials() -> bool:
    """Remove the token (and the team that came with it) from the config file, keeping the API URL
    so the next `panda login` needs no --api-url. Removes the file when nothing is left, and also
    when it is unreadable. Returns whether there was a token to forget."""
    path = config_path()
    try:
        saved = load()
    except CliError:
        path.unlink(missing_ok=True)
        return True
    had_token = "token" in saved
    remaining = {key: value for key, value in saved.items() if key == "api_url"}
    if remaining:
        save(remaining)
    else:
        path.unlink(missing_ok=True)
    return had_token


def normalize_api_url(url: str, *, source: str) -> str:
    """`url` without trailing slashes, after checking it is an absolute http(s) URL.
    Raises UsageProblem naming `source` (the option or variable it came from) otherwise."""
    cleaned = url.strip().rstrip("/")
    parts = urlsplit(cleaned)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise UsageProblem(f"{source} must be an http:// or https:// URL, got {url!r}")
    return cleaned


@dataclass(frozen=True)
class Settings:
    """What a command runs with. `team` may be None: commands then ask the API for the token's team."""

    api_url: str
    token: str | None
    team: str | None
    token_source: str | None  # "PANDA_TOKEN" or the config file's path, for messages


def resolve() -> Settings:
    """Settings from the environment, falling back to the config file, then to defaults."""
    env = os.environ
    saved = load()
    if env.get("PANDA_API_URL"):
        api_url = normalize_api_url(env["PANDA_API_URL"], source="PANDA_API_URL")
    else:
        api_url = normalize_api_url(saved.get("api_url", DEFAULT_API_URL), source=str(config_path()))
    if env.get("PANDA_TOKEN"):
        token, token_source = env["PANDA_TOKEN"].strip(), "PANDA_TOKEN"
    elif saved.get("token"):
        token, token_source = saved["token"], str(config_path())
    else:
        token, token_source = None, None
    team = env.get("PANDA_TEAM") or saved.get("team") or None
    return Settings(api_url=api_url, token=token, team=team, token_source=token_source)
