"""composer as a non-root user with subuid ranges: buildah (chroot isolation, vfs storage)
builds a recipe on an oci-archive: base that the root build wrote."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from tests.conftest import RECIPES, Containers
from tests.integration.rootless import RootlessUser, install_composer, reachable_folder

pytestmark = pytest.mark.integration


@pytest.mark.skipif(os.geteuid() != 0, reason="creating a test user needs root")
def test_non_root_user_builds_on_an_oci_archive_base(containers: Containers, tmp_path_factory) -> None:
    archive = containers.build_once(RECIPES / "core-test.toml")["archive"]
    work = reachable_folder(tmp_path_factory, "rootless")
    user = RootlessUser.for_folder(work)
    shutil.copy(archive, work / "base.oci.tar")
    shutil.copytree(RECIPES / "layers", work / "layers")
    (work / "recipe.toml").write_text(
        'name = "rootless-test"\ntag = "test"\n'
        f'[base]\nfrom = "oci-archive:{work / "base.oci.tar"}"\nfamily = "debian"\n'
        '[[layers]]\nmodule = "motd"\n[[layers]]\nmodule = "jq"\n'
    )
    composer = install_composer(work)
    user.chown(work)
    result = user.run(str(composer), *user.storage, "--cache-dir", str(work / "cache"), "build",
                      str(work / "recipe.toml"), "-o", str(work / "out"), "--report", str(work / "report.json"),
                      check=False, timeout=900)
    try:
        assert result.returncode == 0, result.stdout + result.stderr
        report = json.loads((work / "report.json").read_text())
        assert [layer["cache"] for layer in report["layers"]] == ["miss"] * 4
        user.buildah("from", "--name", "check", "localhost/rootless-test:test")
        script = "cat /etc/motd-composer; jq --version; stat -c %u /etc/motd-composer"
        out = user.buildah("run", "--isolation", "chroot", "check", "--", "/bin/sh", "-c", script).stdout
        lines = out.splitlines()
        assert lines[0] == "Welcome to a composer-built image." and lines[1].startswith("jq-")
        assert lines[2] == "0"  # root inside the image, not the user's host uid
    finally:
        user.buildah("rm", "--all", check=False)
        user.remove_storage()
