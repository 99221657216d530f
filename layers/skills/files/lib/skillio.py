"""Line-delimited JSON request loop shared by the composer skill tools.

A tool reads one JSON object per line on stdin, `{"action": NAME, ...}`, and
answers each with one line on stdout: `{"result": ...}` on success or
`{"error": {"message": ..., "type": ...}}` for a bad line, an unknown action or a
failed command. The loop never stops on a bad request; it ends at end of input.
Standard library only: the tools run on the image's system python3.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable
from typing import Any, TextIO

Request = dict[str, Any]
Action = Callable[[Request], Any]

_MISSING = object()


class SkillError(Exception):
    """A request that cannot be served; becomes the error object of the reply."""

    def __init__(self, message: str, type: str = "SkillError") -> None:
        super().__init__(message)
        self.message = message
        self.type = type


def error(message: str, type: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": type}}


def param(request: Request, name: str, kind: Any = None, default: Any = _MISSING) -> Any:
    """Return request[name], checked against `kind` (a type or tuple of types)."""
    if name not in request or request[name] is None:
        if default is _MISSING:
            raise SkillError(f"missing parameter {name!r}", "InvalidRequest")
        return default
    value = request[name]
    # bool is an int in Python; a number parameter must not accept true/false.
    if kind is not None and (not isinstance(value, kind) or (isinstance(value, bool) and bool not in _as_tuple(kind))):
        raise SkillError(f"parameter {name!r} must be {_kind_name(kind)}, got {type(value).__name__}", "InvalidRequest")
    return value


def _as_tuple(kind: Any) -> tuple:
    return kind if isinstance(kind, tuple) else (kind,)


def _kind_name(kind: Any) -> str:
    return " or ".join(k.__name__ for k in _as_tuple(kind))


def safe_path(request: Request, name: str, default: Any = _MISSING) -> str:
    """A file path parameter that cannot be read as a command-line option."""
    value = param(request, name, str, default)
    if not isinstance(value, str) or not value:
        raise SkillError(f"parameter {name!r} must be a non-empty path", "InvalidRequest")
    if value.startswith("-"):
        value = os.path.join(".", value)
    return value


def find_program(*names: str) -> str:
    """The first of `names` on PATH, or a MissingProgram error naming them all."""
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    raise SkillError(f"program not found on PATH: {' or '.join(names)}", "MissingProgram")


def run(argv: list[str], timeout: float = 600, env: dict[str, str] | None = None,
        input: str | None = None) -> subprocess.CompletedProcess:
    """Run argv (never a shell); a failure becomes a SkillError with stderr's tail."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                              env=full_env, input=input)
    except FileNotFoundError:
        raise SkillError(f"program not found: {argv[0]}", "MissingProgram") from None
    except subprocess.TimeoutExpired:
        raise SkillError(f"{os.path.basename(argv[0])} timed out after {timeout:g} s", "Timeout") from None
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip()[-2000:]
        raise SkillError(f"{os.path.basename(argv[0])} exited {proc.returncode}: {tail}", "CommandFailed")
    return proc


def handle(line: str, actions: dict[str, Action]) -> dict[str, Any]:
    """Answer one request line; never raises."""
    try:
        request = json.loads(line)
    except ValueError as exc:
        return error(f"invalid JSON: {exc}", "JSONDecodeError")
    if not isinstance(request, dict):
        return error("a request must be a JSON object with an 'action'", "InvalidRequest")
    action = request.get("action")
    if action == "list_actions":
        return {"result": sorted(actions) + ["list_actions"]}
    if not isinstance(action, str) or action not in actions:
        return error(f"unknown action {action!r}; known: {', '.join(sorted(actions))}", "UnknownAction")
    try:
        return {"result": actions[action](request)}
    except SkillError as exc:
        return error(exc.message, exc.type)
    except Exception as exc:  # a tool bug must not end the session
        return error(f"{type(exc).__name__}: {exc}", type(exc).__name__)


def serve(actions: dict[str, Action], lines: Iterable[str] | None = None,
          out: TextIO | None = None) -> None:
    """The request loop: one reply line per non-blank request line."""
    out = out or sys.stdout
    for line in lines if lines is not None else sys.stdin:
        line = line.strip()
        if not line:
            continue
        out.write(json.dumps(handle(line, actions)) + "\n")
        out.flush()
