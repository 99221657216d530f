"""composer's own source as a layer module named `composer` (recipes/composer.toml).

The module folder is generated from the project's files (the package, the shipped modules,
hooks and recipes) into a folder named by their digest, so its cache key is the key of any
module: it changes exactly when one of those files changes, and never because of an mtime."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# What an image needs to run `composer build` on the project's and a team's recipes.
SOURCES = ("pyproject.toml", "composer", "layers", "hooks", "recipes")
SKIP = ("__pycache__", ".pyc", ".pyo")
NAME = "composer"

MODULE_TOML = """\
name = "composer"
version = "1.0.0"
description = "composer itself: this project's source at /opt/composer and its Python dependencies"
requires = ["composer-tools"]

[packages]
debian = ["python3", "python3-click", "python3-jsonschema", "python3-yaml", "python3-sh", "python3-cryptography",
          "python3-nacl"]
arch = ["python", "python-click", "python-jsonschema", "python-yaml", "python-sh", "python-cryptography",
        "python-pynacl"]

[[scripts]]
run = "install.sh"
"""

INSTALL_SH = """\
#!/bin/sh
# The source keeps its layout (composer/, layers/, hooks/, recipes/): composer finds the
# shipped modules beside its package. Byte code is not written at build time, so the
# layer holds only the source.
set -eu
rm -rf /opt/composer
mkdir -p /opt/composer
cp -R "$COMPOSER_MODULE_DIR/src/." /opt/composer/
chmod -R u=rwX,go=rX /opt/composer
cat > /usr/local/bin/composer <<'WRAPPER'
#!/bin/sh
PYTHONPATH=/opt/composer${PYTHONPATH:+:$PYTHONPATH} exec python3 -m composer "$@"
WRAPPER
chmod 0755 /usr/local/bin/composer
PYTHONDONTWRITEBYTECODE=1 /usr/local/bin/composer --help > /dev/null
"""


def source_files(root: Path = PROJECT_ROOT) -> Iterator[tuple[str, Path]]:
    """(path relative to root, path) of every source file, sorted; byte code skipped."""
    for top in SOURCES:
        path = root / top
        if path.is_file():
            yield top, path
            continue
        for found in sorted(path.rglob("*")):
            if found.is_file() and not any(part.endswith(SKIP) for part in found.relative_to(root).parts):
                yield str(found.relative_to(root)), found


def source_digest(root: Path = PROJECT_ROOT) -> str:
    """sha256 over every source file's path, mode and bytes."""
    digest = hashlib.sha256()
    for rel, path in source_files(root):
        digest.update(f"{rel}\0{path.stat().st_mode & 0o777:o}\0".encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def self_modules_dir(root: Path = PROJECT_ROOT, cache: Path | None = None) -> Path | None:
    """A layers/ folder holding only the `composer` module of this source (made on first
    use, one per source digest), or None when composer runs from no source tree."""
    if not (root / "pyproject.toml").is_file() or not (root / "layers").is_dir():
        return None
    cache = cache or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "composer" / "self"
    folder = cache / source_digest(root)[:32]
    if (folder / NAME / "module.toml").is_file():
        return folder
    cache.mkdir(parents=True, exist_ok=True)
    # Written aside and renamed: a concurrent composer sees the whole folder or none.
    staging = Path(tempfile.mkdtemp(dir=cache, prefix=".staging-"))
    module = staging / NAME
    for rel, path in source_files(root):
        target = module / "src" / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
        os.chmod(target, 0o755 if path.stat().st_mode & 0o111 else 0o644)
    (module / "module.toml").write_text(MODULE_TOML)
    (module / "install.sh").write_text(INSTALL_SH)
    os.chmod(module / "install.sh", 0o755)
    try:
        staging.rename(folder)
    except OSError:  # another composer made it first
        shutil.rmtree(staging, ignore_errors=True)
    return folder
