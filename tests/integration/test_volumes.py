"""`composer volumes backup/restore` with real podman: files written into two volumes of
tests/recipes/kube-pod/volumes.toml survive backup, removal of the volumes and restore,
identical in content, mode, owner and kind (the files are written and listed by a podman
run with kube-pod's image, the way the Pod's container sees them)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from composer.keys import file_digest
from tests.conftest import RECIPES, Containers

pytestmark = pytest.mark.integration

IMAGE_RECIPE = RECIPES / "kube-pod" / "kube-pod.toml"
RECIPE = RECIPES / "kube-pod" / "volumes.toml"
RECIPE_IMAGE = "localhost/composer-volumes-test:test"
VOLUMES = {"composer-volumes-test-data": "/data", "composer-volumes-test-work": "/work"}

WRITE = r"""
set -e
printf 'report\n' > /data/report.txt; chown 1000:1000 /data/report.txt; chmod 0640 /data/report.txt
mkdir -p /data/private/deep; head -c 300000 /dev/urandom > /data/private/deep/blob.bin
chown -R 1001:1002 /data/private; chmod 0700 /data/private; chmod 0600 /data/private/deep/blob.bin
ln -s report.txt /data/link; ln /data/report.txt /data/hardlink
chown 1000:1000 /data; chmod 0750 /data
printf 'x' > '/work/name with spaces ü.txt'; chmod 4755 '/work/name with spaces ü.txt'
mkdir /work/empty; chmod 1777 /work/empty
"""

# Everything a restore must give back, per volume: path, kind, mode, owner, size, link
# target, hard-link count and the content's digest.
LIST = r"""
for root in /data /work; do
  cd "$root"
  find . -printf '%p %y %m %U:%G %s %l %n\n' | LC_ALL=C sort
  find . -type f -exec sha256sum {} + | LC_ALL=C sort
done
"""


def podman_run(containers: Containers, image: str, script: str) -> str:
    mounts = [arg for claim, path in VOLUMES.items() for arg in ("--volume", f"{claim}:{path}")]
    return containers.podman("run", "--rm", *mounts, image, "/bin/sh", "-c", script).stdout


def remove_volumes(containers: Containers) -> None:
    containers.podman("volume", "rm", "--force", *VOLUMES, check=False)


@pytest.fixture(scope="module")
def image(containers: Containers) -> Iterator[str]:
    """kube-pod's image, also under the name volumes.toml's Pod runs (restore uses it)."""
    image = str(containers.build_once(IMAGE_RECIPE)["image"])
    containers.podman("tag", image, RECIPE_IMAGE)
    remove_volumes(containers)
    yield image
    remove_volumes(containers)
    containers.podman("rmi", RECIPE_IMAGE, check=False)


def test_backup_and_restore_round_trip(containers: Containers, image: str, tmp_path: Path) -> None:
    podman_run(containers, image, WRITE)
    before = podman_run(containers, image, LIST)
    assert "./private/deep/blob.bin f 600 1001:1002 300000" in before
    assert "./link l 777 0:0" in before and " report.txt 1\n" in before
    assert re.search(r"^\. d 750 1000:1000 ", before, re.M)  # the top folder of /data

    backup = tmp_path / "backup"
    containers.composer("volumes", "backup", str(RECIPE), str(backup))
    index = json.loads((backup / "index.json").read_text())
    assert [v["claim"] for v in index["volumes"]] == list(VOLUMES)
    for v in index["volumes"]:
        tar = backup / v["file"]
        assert v["bytes"] == tar.stat().st_size > 0 and v["sha256"] == file_digest(tar)
        assert tar.stat().st_mode & 0o777 == 0o600
    assert backup.stat().st_mode & 0o777 == 0o700
    assert (index["volumes"][0]["uid"], index["volumes"][0]["mode"]) == (1000, "750")

    # A volume with content is not overwritten without --force, and is left as it was.
    refused = containers.composer("volumes", "restore", str(RECIPE), str(backup), check=False)
    assert refused.returncode == 1
    assert "composer: error: volume composer-volumes-test-data is not empty" in refused.stderr
    assert "Traceback" not in refused.stderr

    remove_volumes(containers)
    assert containers.podman("volume", "exists", "composer-volumes-test-data", check=False).returncode == 1
    containers.composer("volumes", "restore", str(RECIPE), str(backup))
    assert podman_run(containers, image, LIST) == before

    # --force replaces changed content (and removes what the backup does not have).
    podman_run(containers, image, "echo changed > /data/report.txt; touch /work/new")
    containers.composer("volumes", "restore", str(RECIPE), str(backup), "--force")
    assert podman_run(containers, image, LIST) == before


def test_restore_refuses_a_volume_in_use(containers: Containers, image: str, tmp_path: Path) -> None:
    remove_volumes(containers)
    podman_run(containers, image, "echo a > /data/a")
    backup = tmp_path / "backup"
    containers.composer("volumes", "backup", str(RECIPE), str(backup))
    mounts = [arg for claim, path in VOLUMES.items() for arg in ("--volume", f"{claim}:{path}")]
    holder = "composer-volumes-holder"  # made, not started: podman still cannot remove the volume
    containers.podman("create", "--name", holder, *mounts, image, "sleep", "60")
    try:
        live = containers.composer("volumes", "backup", str(RECIPE), str(tmp_path / "live"))
        assert f"warning: composer-volumes-test-data is in use by {holder}" in live.stderr  # works, warns
        result = containers.composer("volumes", "restore", str(RECIPE), str(backup), "--force", check=False)
        assert result.returncode == 1
        assert f"volume composer-volumes-test-data is used by {holder}" in result.stderr
        assert "podman kube down" in result.stderr
    finally:
        containers.podman("rm", "--force", holder, check=False)
