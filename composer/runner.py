"""The one place composer starts processes: argv lists only, never shell strings."""

from __future__ import annotations

import collections
import contextlib
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence

from composer.errors import CommandError, ToolMissing

INSTALL_HINTS = {
    "buildah": "buildah",
    "podman": "podman",
    "skopeo": "skopeo",
    "debootstrap": "debootstrap",
    "runc": "runc",
    "oci-image-tool": "oci-image-tool",
}

TAIL_LINES = 200


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
        self.echo = echo or (lambda line: print(line, file=sys.stderr, flush=True))

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
    ) -> str:
        """Run argv and return its output (stdout and stderr merged).

        stream: show the output as it comes (long steps in verbose mode).
        """
        argv = [str(a) for a in argv]
        program, full_env = self._prepare(argv, env)
        tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        # A plain pipe read line by line: starting a process costs ~2 ms this way, against
        # ~130 ms through the sh library's polling threads (docs/benchmarks.md).
        with subprocess.Popen([program, *argv[1:]], env=full_env, stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as process:
            assert process.stdout is not None
            try:
                for raw in process.stdout:
                    line = raw.decode(errors="replace").rstrip("\n")
                    tail.append(line)
                    if stream and self.verbose:
                        self.echo("  " + line)
                code = process.wait()
            except KeyboardInterrupt:
                # Interrupted (Ctrl-C, or SIGTERM: see cli.main): end the child first, so
                # the clean-up that follows does not race a buildah still at work.
                with contextlib.suppress(Exception):
                    process.terminate()
                    process.wait(timeout=30)
                raise
        if code != 0:
            raise CommandError(argv, code, "\n".join(tail))
        return "\n".join(tail) + ("\n" if tail else "")

    def output(self, argv: Sequence[str], env: Mapping[str, str] | None = None) -> str:
        """Run a read-only command and return its stdout alone (stderr kept for errors)."""
        argv = [str(a) for a in argv]
        program, full_env = self._prepare(argv, env)
        result = subprocess.run([program, *argv[1:]], env=full_env, stdin=subprocess.DEVNULL,
                                capture_output=True)
        if result.returncode != 0:
            raise CommandError(argv, result.returncode, result.stderr.decode(errors="replace"))
        return result.stdout.decode(errors="replace")
