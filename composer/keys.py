"""Cache keys: sha256 over a canonical JSON document of exactly what shapes a layer."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path
from typing import Any

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
    """file_entry for every file below root, in a stable order."""
    entries: list[list[Any]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in IGNORED_NAMES)
        for name in sorted(filenames):
            if name.endswith(".pyc"):
                continue
            path = Path(dirpath, name)
            entries.append(file_entry(path, path.relative_to(root).as_posix()))
    entries.sort(key=lambda e: e[0])
    return entries
