"""One build at a time per containers-storage and per composer cache: an advisory lock
(flock) held while layers are built. Builds that find everything cached take no lock."""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path


@contextlib.contextmanager
def exclusive(path: Path, say: Callable[[str], None], what: str, wait: bool = True) -> Iterator[bool]:
    """Hold an exclusive lock on path; when another process holds it, say so and wait.
    With wait=False, yield False at once instead (the lock is not held)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not wait:
                yield False
                return
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            say(f"waiting for another composer build (pid {holder}) to finish with {what} ({path})")
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield True
    finally:
        os.close(fd)  # closing releases the lock, also when the process is killed


# The cache's folder of per-process temporary folders (see owned_tempdir); a build under
# the lock sweeps the ones whose process has ended.
SCRATCH = "scratch"


def owned_tempdir(folder: Path, what: str) -> tempfile.TemporaryDirectory[str]:
    """A temporary folder in folder named after this process (WHAT-PID-random): a sweep by
    another build removes it only once this process is gone (see owner_gone)."""
    folder.mkdir(parents=True, exist_ok=True)
    return tempfile.TemporaryDirectory(prefix=f"{what}-{os.getpid()}-", dir=folder)


def owner_gone(name: str) -> bool:
    """Whether the process an owned_tempdir folder is named after has ended (a folder
    named otherwise, as composer named them before: yes)."""
    match = re.match(r"[a-z]+-(\d+)-", name)
    if match is None:
        return True
    try:
        os.kill(int(match.group(1)), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False
