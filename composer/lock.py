"""One build at a time per containers-storage and per composer cache: an advisory lock
(flock) held while layers are built. Builds that find everything cached take no lock."""

from __future__ import annotations

import contextlib
import fcntl
import os
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
