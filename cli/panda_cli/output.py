"""Printing: data to stdout (plain columns, key/value blocks or the API's JSON), messages to stderr.

Colour only when the stream is a terminal and NO_COLOR is not set (https://no-color.org). Data is
never wrapped or truncated, so CI logs and pipes get every character.
"""

import json
import os
import sys
import zlib
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any, TextIO

import typer

from panda_cli.errors import ApiError, CliError

REPLICA_COLOURS = ("cyan", "magenta", "blue", "green", "yellow", "bright_cyan", "bright_magenta", "bright_blue")


def colour_enabled(stream: TextIO) -> bool:
    """Whether to colour what goes to `stream`."""
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _style(text: str, stream: TextIO, **style: Any) -> str:
    return typer.style(text, **style) if colour_enabled(stream) else text


def _write(text: str, *, err: bool) -> None:
    stream = sys.stderr if err else sys.stdout
    try:
        typer.echo(text, file=stream, color=colour_enabled(stream))
    except BrokenPipeError:
        _reader_gone()


def _reader_gone() -> None:
    # `panda logs | head`: the reader is gone. Point stdout at /dev/null so Python's exit-time
    # flush does not complain again, and stop quietly.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    raise typer.Exit(0) from None


# -- messages (stderr) -------------------------------------------------------------------------


def info(message: str) -> None:
    _write(message, err=True)


def success(message: str) -> None:
    _write(_style(message, sys.stderr, fg="green"), err=True)


def warning(message: str) -> None:
    _write(_style("warning:", sys.stderr, fg="yellow", bold=True) + " " + message, err=True)


def error(message: str) -> None:
    _write(_style("error:", sys.stderr, fg="red", bold=True) + " " + message, err=True)


def event(stamp: str, level: str, message: str) -> None:
    """One progress line of a deployment: `  14:05:09  message`, flagged when it is a warning or error."""
    flag = ""
    if level.lower() in ("warning", "error"):
        flag = _style(f"{level.lower()}: ", sys.stderr, fg="yellow" if level.lower() == "warning" else "red", bold=True)
    _write(f"  {stamp}  {flag}{message}", err=True)


def report(exc: CliError) -> None:
    """Print an error with everything the user can act on: for an API error its message and code,
    each field's messages, any extra details (a quota's limit...) and the request id."""
    if isinstance(exc, ApiError):
        error(f"{exc.message} ({exc.code})")
        for field, messages in exc.fields.items():
            text = "; ".join(messages) if isinstance(messages, list) else str(messages)
            info(f"  {field}: {text}")
        for key, value in exc.extra.items():
            info(f"  {key}: {value}")
        if exc.request_id:
            info(f"  request id: {exc.request_id}")
    else:
        error(exc.message)
    if exc.hint:
        info(_style("hint:", sys.stderr, bold=True) + " " + exc.hint)


# -- data (stdout) -----------------------------------------------------------------------------


def line(text: str) -> None:
    """One line of data on stdout."""
    _write(text, err=False)


def exact(text: str) -> None:
    """`text` on stdout exactly as it is (a revealed value): never styled, never stripped of escape
    sequences as `echo` would when not on a terminal. A newline follows only on a terminal, where it
    keeps the prompt off the value; a pipe or a file gets the value byte for byte."""
    stream = sys.stdout
    try:
        isatty = stream.isatty()
    except (AttributeError, ValueError):
        isatty = False
    try:
        stream.write(text + ("\n" if isatty else ""))
        stream.flush()
    except BrokenPipeError:
        _reader_gone()


def print_json(data: Any) -> None:
    """The API's JSON, indented, on stdout."""
    line(json.dumps(data, indent=2, ensure_ascii=False))


def text(value: Any) -> str:
    """How a value reads in a table: "-" for nothing."""
    if value is None or value == "" or value == []:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict):  # a nested resource (a user, a project): show its name
        for key in ("username", "name", "slug", "id"):
            if value.get(key) is not None:
                return str(value[key])
    return str(value)


def local_time(value: str | None, *, seconds: bool = False) -> str:
    """An ISO timestamp from the API shown in local time ("2025-01-31 14:05"); as given when unparsable."""
    if not value:
        return "-"
    try:
        moment = datetime.fromisoformat(value).astimezone()
    except ValueError:
        return value
    return moment.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


def clock_time(value: str | None) -> str:
    """Just the local time of day ("14:05:09") of an ISO timestamp, for progress lines."""
    if not value:
        return "--:--:--"
    try:
        return datetime.fromisoformat(value).astimezone().strftime("%H:%M:%S")
    except ValueError:
        return value


Column = tuple[str, Callable[[dict[str, Any]], Any]]


def table(rows: Iterable[dict[str, Any]], columns: Sequence[Column]) -> None:
    """Rows as left-aligned columns under an upper-case header; the last column is not padded."""
    cells = [[header.upper() for header, _ in columns]]
    cells += [[text(getter(row)) for _, getter in columns] for row in rows]
    widths = [max(len(row[index]) for row in cells) for index in range(len(columns))]
    for index, row in enumerate(cells):
        rendered = "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        line(_style(rendered, sys.stdout, bold=True) if index == 0 else rendered)


def listing(rows: list[dict[str, Any]], columns: Sequence[Column], *, json_: bool, empty: str) -> None:
    """What a list command prints: every row as a JSON array with --json; else `empty` (how to make
    the first one) when there is none, or a table."""
    if json_:
        print_json(rows)
    elif not rows:
        info(empty)
    else:
        table(rows, columns)


def fields(pairs: Sequence[tuple[str, Any]]) -> None:
    """A `Label: value` block with aligned values."""
    width = max(len(label) for label, _ in pairs) + 1
    for label, value in pairs:
        line(f"{label + ':':<{width}} {text(value)}")


def replica_label(name: str) -> str:
    """`[r1]`, in a colour that stays the same for a replica across lines (terminals only)."""
    colour = REPLICA_COLOURS[zlib.crc32(name.encode()) % len(REPLICA_COLOURS)]
    return _style(f"[{name}]", sys.stdout, fg=colour)
