"""The runner runs a command again only when it failed before it started, and ends the
command it waits for when composer is interrupted."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import pytest

from composer.errors import CommandError
from composer.runner import ATTEMPTS, Runner

# What buildah printed in CI when containers/storage could not seal its re-executed copy.
NOT_STARTED = ("Close_Fd sealing memfd copy: Device or resource busy\nsubprocess exited with status 1\n"
               "Error: exit status 1")


def flaky(tmp_path: Path, failures: int, message: str) -> tuple[Path, Path]:
    """A program that prints message and exits 1 the first `failures` times, then says ok;
    the file that counts its runs."""
    count = tmp_path / "runs"
    program = tmp_path / "tool"
    program.write_text(
        "#!/bin/sh\n"
        f'n=$(cat {count} 2>/dev/null || echo 0); n=$((n + 1)); echo "$n" > {count}\n'
        f'if [ "$n" -le {failures} ]; then printf "%s\\n" "{message}"; exit 1; fi\n'
        "echo ok\n"
    )
    program.chmod(0o755)
    return program, count


def test_a_command_that_did_not_start_runs_again(tmp_path: Path) -> None:
    program, count = flaky(tmp_path, ATTEMPTS - 1, NOT_STARTED)
    notes: list[str] = []
    assert Runner(echo=notes.append).run([str(program)]) == "ok\n"
    assert count.read_text().strip() == str(ATTEMPTS)
    assert len(notes) == ATTEMPTS - 1 and all("did not start" in note for note in notes)


def test_it_gives_up_after_the_last_attempt(tmp_path: Path) -> None:
    program, count = flaky(tmp_path, ATTEMPTS, NOT_STARTED)
    with pytest.raises(CommandError) as failed:
        Runner(echo=lambda line: None).run([str(program)])
    assert count.read_text().strip() == str(ATTEMPTS) and "sealing memfd copy" in failed.value.output


def test_any_other_failure_runs_once(tmp_path: Path) -> None:
    # A step that failed may have done half its work: it is never run again.
    program, count = flaky(tmp_path, 1, "E: Unable to locate package nosuch")
    with pytest.raises(CommandError):
        Runner(echo=lambda line: None).run([str(program)])
    assert count.read_text().strip() == "1"


def slow(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A program that says it started, then writes a file two seconds later (what a buildah
    left running would do after composer's clean-up: make a container)."""
    started, late = tmp_path / "started", tmp_path / "late"
    program = tmp_path / "slow"
    program.write_text(f"#!/bin/sh\ntouch {started}\nsleep 2\ntouch {late}\necho done\n")
    program.chmod(0o755)
    return program, started, late


@pytest.mark.parametrize("call", ["run", "output"])
def test_an_interrupted_wait_ends_the_command(tmp_path: Path, call: str) -> None:
    # Ctrl-C, or SIGTERM (cli.main turns it into KeyboardInterrupt), while composer waits for a
    # command: the command must be over when the interrupt reaches the clean-up.
    program, started, late = slow(tmp_path)

    main = threading.get_ident()

    def interrupt_once_started() -> None:
        while not started.exists():
            time.sleep(0.01)
        signal.pthread_kill(main, signal.SIGINT)  # a real signal, at the thread that waits

    threading.Thread(target=interrupt_once_started, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        getattr(Runner(echo=lambda line: None), call)([str(program)])
    time.sleep(2.5)  # past the moment the program would have written its file
    assert started.exists() and not late.exists()
