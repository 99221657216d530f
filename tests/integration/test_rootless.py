"""composer as a non-root user with subuid ranges: buildah (chroot isolation, vfs storage)
builds a recipe on an oci-archive: base that the root build wrote, installing a package
the base does not have (apt inside the user namespace) with root-owned, setuid files."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.conftest import RECIPES, Containers
from tests.integration.rootless import RootlessUser, install_composer, reachable_folder

pytestmark = pytest.mark.integration


# A package the base (the core test image) does not have, with a file whose owner and mode
# only a real (user-namespaced) root install gets right: setuid root.
PACKAGE_MODULE = """name = "sudo-pkg"
version = "1"
description = "Installs sudo: a package of the rootless test"
[packages]
debian = ["sudo"]
"""


@pytest.mark.needs(root=True, why="creating a test user needs root")
def test_non_root_user_builds_on_an_oci_archive_base(containers: Containers, tmp_path_factory) -> None:
    core = containers.build_once(RECIPES / "core-test.toml")
    absent = "if dpkg -s sudo >/dev/null 2>&1 || test -e /usr/bin/sudo; then echo present; else echo absent; fi"
    assert containers.podman("run", "--rm", "--entrypoint", "/bin/sh", core["image_id"], "-c",
                             absent).stdout.strip() == "absent"  # the install below is no no-op
    work = reachable_folder(tmp_path_factory, "rootless")
    user = RootlessUser.for_folder(work)
    shutil.copy(core["archive"], work / "base.oci.tar")
    shutil.copytree(RECIPES / "layers", work / "layers")
    (work / "layers" / "sudo-pkg").mkdir()
    (work / "layers" / "sudo-pkg" / "module.toml").write_text(PACKAGE_MODULE)
    (work / "recipe.toml").write_text(
        'name = "rootless-test"\ntag = "test"\n'
        f'[base]\nfrom = "oci-archive:{work / "base.oci.tar"}"\nfamily = "debian"\n'
        '[[layers]]\nmodule = "motd"\n[[layers]]\nmodule = "sudo-pkg"\n'
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
        script = ("set -eu; cat /etc/motd-composer; stat -c %u /etc/motd-composer; dpkg -s sudo | grep '^Status:';"
                  " stat -c '%u:%g %a' /usr/bin/sudo /etc/sudoers.d /etc/sudoers; sudo --version | head -1")
        out = user.buildah("run", "--isolation", "chroot", "check", "--", "/bin/sh", "-c", script).stdout
        lines = out.splitlines()
        assert lines[0] == "Welcome to a composer-built image."
        assert lines[1] == "0"  # root inside the image, not the user's host uid
        assert lines[2] == "Status: install ok installed"
        # Owned by root inside the image (not by the user's or a subuid), modes as packaged.
        assert lines[3:6] == ["0:0 4755", "0:0 755", "0:0 440"]
        assert lines[6].startswith("Sudo version")
    finally:
        user.buildah("rm", "--all", check=False)
        user.remove_storage()
