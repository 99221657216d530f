"""The one place composer starts processes: argv lists only, never shell strings."""

from __future__ import annotations

import collections
import contextlib
import os
import re
import shlex
import shutil
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from composer.errors import CommandError, ToolMissing, redact

INSTALL_HINTS = {
    "buildah": "buildah",
    "podman": "podman",
    "skopeo": "skopeo",
    "debootstrap": "debootstrap",
    "runc": "runc",
    "dot": "graphviz",
    "oci-image-tool": "oci-image-tool",
}

TAIL_LINES = 200

# containers/storage re-executes buildah/podman from a sealed copy of its binary; the kernel
# may refuse the seal for a moment (EBUSY while a page of the copy is pinned). The command has
# not started then: run it again.
NOT_STARTED = re.compile(r"sealing memfd copy: Device or resource busy")
ATTEMPTS = 3


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        package = INSTALL_HINTS.get(name, name)
        raise ToolMissing(
            f"{name} is not installed",
            hint=f"run scripts/setup-host (or: apt-get install {package})",
        )
    return path


class Runner:
    """Runs argv lists; echoes them in verbose mode."""

    def __init__(self, verbose: bool = False, echo: Callable[[str], None] | None = None) -> None:
        self.verbose = verbose
        echo = echo or (lambda line: print(line, file=sys.stderr, flush=True))
        # What verbose mode shows (argv, a step's output) may hold a proxy URL's password.
        self.echo = lambda line: echo(redact(line))
        self._live: dict[int, Any] = {}  # the commands running now, from any thread (by id)
        self._live_lock = threading.Lock()

    def end_all(self) -> None:
        """End every command running now, whichever thread started it: after an interrupt,
        so that steps built side by side stop too (each caller sees its command fail and
        cleans up after it). Commands started later run as usual: the clean-up's own."""
        with self._live_lock:
            live = list(self._live.values())
        for process in live:
            with contextlib.suppress(Exception):
                process.terminate()

    def _wait(self, process: Any) -> None:
        """Wait for a started command (one of the running ones meanwhile). Interrupted
        (Ctrl-C, or SIGTERM: see cli.main), end the child first, so that the clean-up that
        follows does not race a buildah still at work (a `buildah from` or `run` finishing
        after the clean-up's `buildah rm` leaves its container)."""
        with self._live_lock:
            self._live[id(process)] = process
        try:
            process.wait()
        except KeyboardInterrupt:
            with contextlib.suppress(Exception):
                process.terminate()
                process.wait(timeout=30)
            raise
        finally:
            with self._live_lock:
                self._live.pop(id(process), None)

    def _echo(self, argv: list[str]) -> None:
        if self.verbose:
            self.echo(f"+ {shlex.join(argv)}")

    def _prepare(self, argv: list[str], env: Mapping[str, str] | None) -> tuple[str, dict[str, str]]:
        """Echo argv (verbose), find its program, and build its environment."""
        self._echo(argv)
        program = require_tool(argv[0]) if "/" not in argv[0] else argv[0]
        return program, {**os.environ, **(env or {})}

    def run(
        self,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        stream: bool = False,
        input: bytes | None = None,
    ) -> str:
        """Run argv and return its output (stdout and stderr merged).

        stream: show the output as it comes (long steps in verbose mode).
        input: what the command reads on its standard input (else nothing).
        A command that failed before it started (NOT_STARTED) runs again, up to ATTEMPTS times.
        """
        for attempt in range(1, ATTEMPTS + 1):
            try:
                return self._run_once(argv, env, stream, input)
            except CommandError as e:
                if attempt == ATTEMPTS or not NOT_STARTED.search(e.output):
                    raise
                self.echo(f"note: {argv[0]} did not start ({NOT_STARTED.pattern}); running it again")
        raise AssertionError("unreachable")

    def _run_once(self, argv: Sequence[str], env: Mapping[str, str] | None, stream: bool,
                  input: bytes | None) -> str:
        import sh  # here, not at the top: sh imports asyncio, a third of a plan's start-up

        argv = [str(a) for a in argv]
        program, full_env = self._prepare(argv, env)
        tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        echo = stream and self.verbose

        def collect(line: str) -> None:
            tail.append(line.rstrip("\n"))
            self.echo("  " + line.rstrip("\n"))

        # A line callback costs ~0.11 s per process (sh's output thread polls), against
        # ~9 ms for sh's own buffer: lines are only followed as they come when shown.
        try:
            process = sh.Command(program)(
                *argv[1:],
                _env=full_env,
                _err_to_out=True,
                _tty_out=False,
                _in=input,
                _bg=True,
                _bg_exc=False,
                _out=collect if echo else None,  # None: sh's own buffer
            )
            self._wait(process)
        except sh.ErrorReturnCode as e:
            raise CommandError(argv, e.exit_code, _tail(tail, e.stdout, echo)) from None
        except sh.SignalException as e:
            raise CommandError(argv, -abs(e.exit_code), _tail(tail, e.stdout, echo)) from None
        text = _tail(tail, process.stdout, echo)
        return text + ("\n" if text else "")

    def output(self, argv: Sequence[str], env: Mapping[str, str] | None = None) -> str:
        """Run a read-only command and return its stdout alone (stderr kept for errors)."""
        import sh

        argv = [str(a) for a in argv]
        program, full_env = self._prepare(argv, env)
        try:
            process = sh.Command(program)(*argv[1:], _env=full_env, _tty_out=False, _in=None, _bg=True,
                                          _bg_exc=False)
            self._wait(process)
        except sh.ErrorReturnCode as e:
            stderr = e.stderr.decode(errors="replace") if e.stderr else ""
            raise CommandError(argv, e.exit_code, stderr) from None
        return str(process)


def _tail(streamed: collections.deque[str], buffered: bytes | None, echo: bool) -> str:
    """The last TAIL_LINES lines of a command's output: the streamed ones, or sh's buffer."""
    if echo:
        return "\n".join(streamed)
    lines = (buffered or b"").decode(errors="replace").splitlines()
    return "\n".join(lines[-TAIL_LINES:])
