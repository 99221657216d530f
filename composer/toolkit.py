"""The build-step toolkit: helpers composer mounts on the PATH of every module script
(composer-install, composer-remove, composer-lib.sh). Build time only, never in a layer;
their digest is part of every module's cache key, since they shape the layer."""

from __future__ import annotations

import hashlib
from functools import cache
from importlib import resources
from pathlib import Path

MOUNT = "/run/composer/bin"
LIB = f"{MOUNT}/composer-lib.sh"


def toolkit_dir() -> Path:
    return Path(str(resources.files("composer").joinpath("data/toolkit")))


@cache
def toolkit_digest() -> str:
    h = hashlib.sha256()
    for path in sorted(toolkit_dir().iterdir()):
        h.update(f"{path.name}\0{path.stat().st_mode & 0o777:o}\0".encode())
        h.update(path.read_bytes())
    return h.hexdigest()
