"""`composer kube --secrets-dir DIR --no-devices` against this host's podman (4.3 on Debian
12): the recipe names a device node the host lacks, so the full manifest cannot play; the
variant plays, and the secrets come from a root-only host folder (values with '-', which a
Secret on 4.3 refuses), read-only, with no Secret object or leftover volume."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.conftest import RECIPES, Containers
from tests.integration.helpers import free_port, http

pytestmark = pytest.mark.integration

IMAGE_RECIPE = RECIPES / "kube-pod" / "kube-pod.toml"
POD = "composer-kube-p43"
CONTAINER = f"{POD}-devpod"
ABSENT = "/dev/composer-absent-gpu0"
TOKEN = "sk-ant-api03-abc_DEF-ghi"  # '-' and '_': not base64, refused by 4.3's Secret


@dataclass
class Played:
    manifest: Path
    port: int
    folder: Path


def write_recipe(folder: Path) -> Path:
    """kube-pod under a name of its own, with a device node no host has."""
    recipe = folder / "p43.toml"
    recipe.write_text(f'extends = "{IMAGE_RECIPE}"\nname = "{POD}"\n'
                      f'[pod]\ndevices = ["/dev/fuse", "{ABSENT}"]\n')
    return recipe


def with_port(text: str, port: int) -> str:
    docs = [d for d in yaml.safe_load_all(text) if d]
    docs[-1]["spec"]["containers"][0]["ports"][0]["hostPort"] = port
    return yaml.safe_dump_all(docs, sort_keys=False)


def cleanup(containers: Containers, manifest: Path) -> None:
    containers.podman("kube", "down", str(manifest), check=False)
    containers.podman("pod", "rm", "--force", POD, check=False)
    containers.podman("volume", "rm", "--force", f"{POD}-data", f"{POD}-shm", f"{POD}-secrets", check=False)
    containers.podman("secret", "rm", f"{POD}-secrets", check=False)  # 4.3 leaves the Secret


@pytest.fixture(scope="module")
def played(containers: Containers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Played]:
    image = str(containers.build_once(IMAGE_RECIPE)["image"])
    containers.podman("tag", image, f"localhost/{POD}:test")
    folder = tmp_path_factory.mktemp("p43")
    recipe = write_recipe(folder)
    secrets = folder / "secrets"
    secrets.mkdir(mode=0o700)
    (secrets / "KUBE_TEST_TOKEN").write_text(TOKEN + "\n")
    os.chmod(secrets / "KUBE_TEST_TOKEN", 0o600)  # KUBE_TEST_OTHER: no file, not set
    port = free_port()
    full = folder / "full.kube.yaml"
    modules = ["--modules-dir", str(IMAGE_RECIPE.parent / "layers")]  # the recipe is elsewhere
    full.write_text(with_port(containers.composer(*modules, "kube", str(recipe)).stdout, port))
    manifest = folder / "p43.kube.yaml"
    text = containers.composer(*modules, "kube", str(recipe), "--secrets-dir", str(secrets),
                               "--no-devices").stdout
    manifest.write_text(with_port(text, port))
    try:
        # The full manifest needs every device node on the host.
        failed = containers.podman("kube", "play", str(full), check=False)
        assert failed.returncode != 0 and ABSENT in failed.stderr, failed.stderr
        cleanup(containers, full)
        containers.podman("kube", "play", str(manifest))
        http(port, "/health", timeout=60)
        yield Played(manifest, port, secrets)
    finally:
        cleanup(containers, manifest)
        containers.podman("rmi", f"localhost/{POD}:test", check=False)


def in_container(containers: Containers, script: str) -> str:
    return containers.podman("exec", CONTAINER, "/bin/sh", "-c", script).stdout


def test_the_variant_plays_without_the_devices(containers: Containers, played: Played) -> None:
    assert http(played.port, "/health", timeout=60)[1].strip() == "ok"
    out = in_container(containers, f"test -e {ABSENT} || echo no-absent; test -e /dev/fuse || echo no-fuse")
    assert out.split() == ["no-absent", "no-fuse"]


def test_secrets_come_from_the_host_folder(containers: Containers, played: Played) -> None:
    out = in_container(containers, "cat /run/secrets/KUBE_TEST_TOKEN; echo '|'; "
                                   "test -e /run/secrets/KUBE_TEST_OTHER || echo unset; "
                                   "touch /run/secrets/x 2>/dev/null || echo read-only")
    assert out == f"{TOKEN}\n|\nunset\nread-only\n"
    # No Secret object, and nothing of the secrets in podman's own storage.
    assert f"{POD}-secrets" not in containers.podman("secret", "ls", "--format", "{{.Name}}").stdout
    assert f"{POD}-secrets" not in containers.podman("volume", "ls", "--format", "{{.Name}}").stdout


def test_kube_down_leaves_no_secret_behind(containers: Containers, played: Played) -> None:
    containers.podman("kube", "down", str(played.manifest))
    assert containers.podman("pod", "exists", POD, check=False).returncode == 1
    names = containers.podman("volume", "ls", "--format", "{{.Name}}").stdout.split()
    assert f"{POD}-secrets" not in names and f"{POD}-data" in names  # the named volume is kept
    assert (played.folder / "KUBE_TEST_TOKEN").read_text() == TOKEN + "\n"  # the host's file untouched
