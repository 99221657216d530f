"""`composer containerfile`: the generated Containerfile, built by `buildah bud --layers`,
gives the same file tree and image config as `composer build` (docs/containerfile.md)."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import RECIPES, Containers, private_storage

PEER = "localhost/composer-peer:test"

# Paths allowed to differ between the two builds, and why (docs/containerfile.md). None
# so far: buildah bud writes no /etc/hostname, /etc/hosts or /etc/resolv.conf into its
# layers, and the Containerfile puts back what bud 1.28's cache mounts remove.
ALLOWED: dict[str, str] = {}


def file_tree(containers: Containers, image: str) -> dict[str, tuple[Any, ...]]:
    """path -> (type and mode, uid, gid, content: sha256, link target or device) of
    every entry of image, read from a mounted working container (never mtimes)."""
    ctr = containers.buildah("from", "--quiet", "--pull=never", image).stdout.strip()
    try:
        root = containers.buildah("mount", ctr).stdout.strip()
        tree: dict[str, tuple[Any, ...]] = {}
        for folder, dirs, files in os.walk(root):
            for name in dirs + files:
                path = os.path.join(folder, name)
                st = os.lstat(path)
                if stat.S_ISREG(st.st_mode):
                    content = hashlib.sha256(Path(path).read_bytes()).hexdigest()
                elif stat.S_ISLNK(st.st_mode):
                    content = os.readlink(path)
                elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                    content = str(st.st_rdev)
                else:
                    content = ""
                tree["/" + os.path.relpath(path, root)] = (oct(st.st_mode), st.st_uid, st.st_gid, content)
        return tree
    finally:
        containers.buildah("rm", ctr, check=False)


def image_config(containers: Containers, image: str) -> dict[str, Any]:
    document = json.loads(containers.buildah("inspect", "--type", "image", image).stdout)
    config = document["Docker"]["config"]
    keys = ("Env", "Entrypoint", "Cmd", "User", "WorkingDir", "Labels", "ExposedPorts", "Volumes", "Healthcheck")
    return {k: config.get(k) or None for k in keys}


@pytest.fixture
def containers(containers: Containers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Containers]:
    """A storage of its own: bud's images and cache never meet the other tests' layers
    (and their first builds stay first builds)."""
    with private_storage(containers, tmp_path_factory.mktemp("containerfile-storage")) as box:
        yield box


@pytest.mark.integration
def test_containerfile_builds_the_same_image(containers: Containers, tmp_path: Path) -> None:
    recipe = RECIPES / "core-test.toml"
    built = containers.build_once(recipe)
    target = tmp_path / "core.Containerfile"
    out = containers.composer("containerfile", str(recipe), "-o", str(target)).stdout
    context = tmp_path / "composer-core-test-test.context"
    assert f"-f {target} {context}" in out
    # bud keeps its cache mounts (package lists, downloads) under TMPDIR: the session's folder.
    (containers.root / "tmp").mkdir(exist_ok=True)
    bud = ["buildah", "bud", "--layers", "--quiet", "--format", "docker", "--identity-label=false",
           "--isolation", "chroot", "-t", PEER, "-f", str(target), str(context)]
    result = subprocess.run(bud, env={**containers.env, "TMPDIR": str(containers.root / "tmp")},
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr

    ours, theirs = file_tree(containers, built["image"]), file_tree(containers, PEER)
    differ = sorted(p for p in ours.keys() | theirs.keys() if ours.get(p) != theirs.get(p))
    unexplained = [f"{p}: composer {ours.get(p)} bud {theirs.get(p)}" for p in differ if p not in ALLOWED]
    assert not unexplained, "\n".join(unexplained)
    # The option that looks like shell reached the peer's script as data, as it does composer's.
    assert ours["/opt/marker/value"] == theirs["/opt/marker/value"]
    # The cache label is each image's own: composer's names its last layer's key, the
    # peer inherits its FROM image's (the base layer's key).
    ours_config, theirs_config = image_config(containers, built["image"]), image_config(containers, PEER)
    for config in (ours_config, theirs_config):
        (config["Labels"] or {}).pop("io.composer.key", None)
    assert ours_config == theirs_config
