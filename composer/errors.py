"""The one exception family composer raises for problems a person can act on."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable

# scheme://user:password@host -> scheme://***@host: proxy URLs carry passwords.
USERINFO = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://)[^/\s@]+@")


def redact(text: str) -> str:
    """text with the user and password of every URL in it replaced by ***."""
    return USERINFO.sub(r"\1***@", text)


class ComposerError(Exception):
    """A problem with a message (what and where) and an optional hint (what to do)."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class CommandError(ComposerError):
    """A process exited non-zero; carries its argv, exit code and output tail."""

    def __init__(self, argv: list[str], code: int, output: str) -> None:
        self.argv = argv
        self.code = code
        self.output = output
        super().__init__(f"command failed with exit code {code}: {argv[0]}")

    def tail(self, lines: int = 20) -> str:
        return "\n".join(self.output.rstrip().splitlines()[-lines:])


class ToolMissing(ComposerError):
    """A required host tool is not installed."""


class ComposerErrors(ComposerError):
    """Several independent problems found at once (`composer check` reports them all)."""

    def __init__(self, errors: list[ComposerError]) -> None:
        self.errors = errors
        super().__init__(errors[0].message, errors[0].hint)

    def __str__(self) -> str:
        return "\n".join(str(e) for e in self.errors)


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """' (did you mean 'x'?)' for the closest of choices, or '' when none is close."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
