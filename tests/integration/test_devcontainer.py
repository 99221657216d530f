"""The real Dev Containers CLI opens the devpod-ci image from the devcontainer.json
`composer devcontainer` writes: `devcontainer up` with podman, then `devcontainer exec`
finds devuser with zsh and supervisord's services running (the entrypoint was kept)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import RECIPES, ROOT, Containers

pytestmark = pytest.mark.integration

RECIPE = RECIPES / "devpod-ci.toml"
CLI = ROOT / ".tools" / "devcontainer-cli" / "node_modules" / ".bin" / "devcontainer"
PROGRAMS = {"dbus", "sshd", "xvnc", "xfce4", "management-api", "tmux-autostart"}


def devcontainer(box: Containers, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    # box.env carries CONTAINERS_STORAGE_CONF/CONTAINERS_CONF: the podman the CLI calls sees
    # the test session's storage (the built image) and runc with the lowered rlimits.
    result = subprocess.run([str(CLI), *args], env=box.env, capture_output=True, text=True,
                            timeout=timeout)
    if result.returncode != 0:
        raise AssertionError(f"devcontainer {' '.join(args)} exited {result.returncode}\n"
                             f"{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture(scope="module")
def workspace(containers: Containers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    if not CLI.exists():
        pytest.fail(f"{CLI} missing: run scripts/setup-host --test")
    containers.build_once(RECIPE)
    folder = tmp_path_factory.mktemp("workspace")
    config = folder / ".devcontainer" / "devcontainer.json"
    # The tests run podman as root: root's podman refuses the CLI's --userns=keep-id.
    rootful = ["--rootful-podman"] if os.geteuid() == 0 else []
    containers.composer("devcontainer", str(RECIPE), "-o", str(config), *rootful)
    volumes_before = set(containers.podman("volume", "ls", "-q").stdout.split())
    up = devcontainer(containers, "up", "--workspace-folder", str(folder), "--docker-path", "podman")
    outcome = json.loads(up.stdout.strip().splitlines()[-1])
    try:
        assert outcome["outcome"] == "success", up.stdout + up.stderr
        yield folder
    finally:
        containers.podman("rm", "--force", "--time", "0", outcome.get("containerId", ""), check=False)
        made = set(containers.podman("volume", "ls", "-q").stdout.split()) - volumes_before
        for volume in made:
            containers.podman("volume", "rm", "--force", volume, check=False)


def exec_in(containers: Containers, folder: Path, script: str) -> str:
    return devcontainer(containers, "exec", "--workspace-folder", str(folder), "--docker-path", "podman",
                        "sh", "-c", script, timeout=120).stdout


def test_exec_is_devuser_with_zsh(containers: Containers, workspace: Path) -> None:
    out = exec_in(containers, workspace, 'id -un; getent passwd "$(id -un)" | cut -d: -f7').split()
    assert out == ["devuser", "/usr/bin/zsh"]


def test_supervisord_services_running(containers: Containers, workspace: Path) -> None:
    deadline = time.monotonic() + 120
    status: dict[str, str] = {}
    while time.monotonic() < deadline:
        out = exec_in(containers, workspace, "supervisorctl status || true")
        status = {line.split()[0]: line.split()[1] for line in out.splitlines() if len(line.split()) > 1}
        if all(status.get(p) == "RUNNING" for p in PROGRAMS):
            break
        time.sleep(2)
    assert {p: status.get(p) for p in PROGRAMS} == {p: "RUNNING" for p in PROGRAMS}


def test_named_volumes_are_mounted(containers: Containers, workspace: Path) -> None:
    out = exec_in(containers, workspace, "awk '$2 == \"/home/devuser/workspace\" {print $2}' /proc/mounts")
    assert out.split() == ["/home/devuser/workspace"]
