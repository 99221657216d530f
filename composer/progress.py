"""Human progress lines for long work: one named step at a time, with elapsed time."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO

Report = Callable[..., None]


class Progress:
    def __init__(self, stream: TextIO | None = None, quiet: bool = False) -> None:
        self.stream = stream or sys.stderr
        self.quiet = quiet

    def line(self, text: str) -> None:
        if not self.quiet:
            print(text, file=self.stream, flush=True)

    @contextmanager
    def step(self, label: str) -> Iterator[Report]:
        """Announce a named step; the caller reports its outcome ("cached", "built in 3s")."""
        started = time.monotonic()
        said = {"final": False}

        def report(message: str, final: bool = True) -> None:
            self.line(f"{label:<40} {message}")
            said["final"] = said["final"] or final

        try:
            yield report
        except BaseException:
            self.line(f"{label:<40} failed after {time.monotonic() - started:.1f}s")
            raise
        if not said["final"]:
            self.line(f"{label:<40} done in {time.monotonic() - started:.1f}s")
