"""Cache keys: sha256 over a canonical JSON document of exactly what shapes a layer."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path
from typing import Any

from composer.errors import ComposerError
from composer.schema import display

# Written by tools that run a module's files (Python byte code); never part of a module.
IGNORED_NAMES = frozenset({"__pycache__", ".pytest_cache", ".mypy_cache"})


def canonical_json(document: Any) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def cache_key(document: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(document)).hexdigest()


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_entry(path: Path, name: str) -> list[Any]:
    """[name, mode, content digest]: what of a file reaches a layer (never its mtime)."""
    st = path.lstat()
    if stat.S_ISLNK(st.st_mode):
        return [name, "link", os.readlink(path)]
    return [name, f"{stat.S_IMODE(st.st_mode):04o}", file_digest(path)]


def tree_entries(root: Path) -> list[list[Any]]:
    """file_entry for every file and symlink below root, in a stable order.

    What composer copies from a module folder is exactly what is keyed, so a module
    folder may hold only regular files, folders and symlinks that stay inside it: a link
    out of it would copy a host file (a key, a password) into the image and would not
    rebuild when that file changes; a FIFO or a device would hang the hashing."""
    entries: list[list[Any]] = []
    top = root.resolve()
    for dirpath, dirnames, filenames in os.walk(root):
        links = [d for d in dirnames if Path(dirpath, d).is_symlink()]
        dirnames[:] = sorted(d for d in dirnames if d not in IGNORED_NAMES and d not in links)
        for name in sorted([*filenames, *links]):
            if name.endswith(".pyc"):
                continue
            path = Path(dirpath, name)
            check_module_file(path, top)
            entries.append(file_entry(path, path.relative_to(root).as_posix()))
    entries.sort(key=lambda e: e[0])
    return entries


def check_module_file(path: Path, top: Path) -> None:
    mode = path.lstat().st_mode
    if stat.S_ISLNK(mode):
        target = Path(os.path.realpath(path))
        if not target.exists():
            raise ComposerError(f"{display(path)}: a symlink to {os.readlink(path)!r}, which does not exist")
        if target != top and top not in target.parents:
            raise ComposerError(
                f"{display(path)}: a symlink to {target}, outside the module folder",
                hint="copy the file into the module folder; a link out of it would put a host file in the image",
            )
    elif not stat.S_ISREG(mode):
        raise ComposerError(f"{display(path)}: not a regular file, folder or symlink "
                            "(a FIFO, socket or device has no place in a module)")
