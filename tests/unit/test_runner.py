"""The runner runs a command again only when it failed before it started."""

from __future__ import annotations

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
