"""Human progress lines for long work: one named step at a time, with elapsed time."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO

Report = Callable[..., None]


class Progress:
    def __init__(self, stream: TextIO | None = None, quiet: bool = False, heartbeat: float = 60) -> None:
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.heartbeat = heartbeat  # seconds between "still building" lines on long steps

    def line(self, text: str) -> None:
        if not self.quiet:
            print(text, file=self.stream, flush=True)

    @contextmanager
    def step(self, label: str) -> Iterator[Report]:
        """Announce a named step; the caller reports its outcome ("cached", "built in 3s").

        A report with final=False ("building…") starts a heartbeat: a line every
        `heartbeat` seconds with the elapsed time, so a long install is not silent.
        """
        started = time.monotonic()
        said = {"final": False}
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(self.heartbeat):
                self.line(f"{label:<40} still building ({time.monotonic() - started:.0f}s)")

        ticker: threading.Thread | None = None

        def report(message: str, final: bool = True) -> None:
            nonlocal ticker
            if final:
                stop.set()
            self.line(f"{label:<40} {message}")
            said["final"] = said["final"] or final
            if not final and ticker is None and self.heartbeat > 0:
                ticker = threading.Thread(target=beat, daemon=True)
                ticker.start()

        try:
            yield report
        except BaseException:
            stop.set()
            self.line(f"{label:<40} failed after {time.monotonic() - started:.1f}s")
            raise
        finally:
            stop.set()
            if ticker is not None:
                ticker.join()
        if not said["final"]:
            self.line(f"{label:<40} done in {time.monotonic() - started:.1f}s")
