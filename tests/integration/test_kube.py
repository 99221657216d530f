"""The kube manifest against real podman: play it, look inside, replay it, take it down.

The image is tests/recipes/kube-pod (python3's http.server on :9090 standing in for the
management API, curl for the liveness probe). The manifest comes from `composer kube`
and is filled in the way docs/kube.md tells a user to: secret values, a free host port.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import RECIPES, Containers
from tests.integration.helpers import free_port, header_play_argv, http, podman_version

pytestmark = pytest.mark.integration

RECIPE = RECIPES / "kube-pod" / "kube-pod.toml"
POD = "composer-kube-test"
CONTAINER = f"{POD}-devpod"  # podman names a pod's container <pod>-<container>
VOLUME = f"{POD}-data"
SECRET = f"{POD}-secrets"
TOKEN = "s3cret value: with 'quotes' and $dollar"
# podman 4.3 mounts a `data` value as written (not decoded) and accepts only base64
# text there (podman#16625): the test's value on 4.3 is such text.
TOKEN_4_3 = "c2VjcmV0LXZhbHVl"
# CAP_NET_ADMIN, CAP_SYS_PTRACE, CAP_SYS_ADMIN
CAPS = {"NET_ADMIN": 12, "SYS_PTRACE": 19, "SYS_ADMIN": 21}
MEMORY_LIMIT = 256 * 1024 * 1024


@dataclass
class Played:
    manifest: Path
    port: int
    network: str
    play_args: list[str]
    token: str  # the value the Secret should put in /run/secrets/KUBE_TEST_TOKEN






def fill_in(text: str, port: int, legacy_secret: bool) -> str:
    """What a user does to the template: values in, and here a host port that is free."""
    docs = [d for d in yaml.safe_load_all(text) if d]
    secret, pod = docs
    assert set(secret["stringData"].values()) == {""}  # composer wrote no value
    if legacy_secret:  # podman 4.3 ignores stringData
        del secret["stringData"]
        secret["data"] = {"KUBE_TEST_TOKEN": TOKEN_4_3, "KUBE_TEST_OTHER": ""}
    else:
        secret["stringData"] = {"KUBE_TEST_TOKEN": TOKEN, "KUBE_TEST_OTHER": ""}
    pod["spec"]["containers"][0]["ports"][0]["hostPort"] = port
    return yaml.safe_dump_all(docs, sort_keys=False)






def play(containers: Containers, played: Played) -> None:
    containers.podman("kube", "play", *played.play_args, str(played.manifest))
    http(played.port, "/health", timeout=60)


def down(containers: Containers, played: Played) -> None:
    containers.podman("kube", "down", str(played.manifest))


def in_container(containers: Containers, script: str) -> str:
    return containers.podman("exec", CONTAINER, "/bin/sh", "-c", script).stdout


@pytest.fixture(scope="module")
def played(containers: Containers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Played]:
    containers.build_once(RECIPE)
    text = containers.composer("kube", str(RECIPE)).stdout
    port = free_port()
    folder = tmp_path_factory.mktemp("kube")
    manifest = folder / f"{POD}-test.kube.yaml"
    legacy = podman_version(containers) < (4, 4)
    manifest.write_text(fill_in(text, port, legacy))
    # The header's play line, run as written, on a network of this test's own (networks
    # are host-wide, not per storage).
    argv = header_play_argv(text)
    network = f"composer-kube-test-{uuid.uuid4().hex[:8]}"
    flag = argv.index("--network")
    play_args = ["--network", argv[flag + 1].replace("composer-kube-test", network, 1)]
    containers.podman("network", "create", network)
    box = Played(manifest, port, network, play_args, TOKEN_4_3 if legacy else TOKEN)
    try:
        play(containers, box)
        yield box
    finally:
        containers.podman("kube", "down", str(manifest), check=False)
        containers.podman("volume", "rm", "--force", VOLUME, SECRET, check=False)
        containers.podman("secret", "rm", SECRET, check=False)
        containers.podman("network", "rm", "--force", network, check=False)


def test_health_answers_on_the_host_port(played: Played) -> None:
    assert http(played.port, "/health", timeout=60)[1].strip() == "ok"


def test_liveness_probe_runs_curl_in_the_container(containers: Containers, played: Played) -> None:
    # kube play turns the httpGet probe into a health check that runs curl.
    containers.podman("healthcheck", "run", CONTAINER)


def test_capabilities_are_in_the_effective_set(containers: Containers, played: Played) -> None:
    status = in_container(containers, "cat /proc/1/status")
    eff = int(next(x for x in status.splitlines() if x.startswith("CapEff:")).split()[1], 16)
    missing = [name for name, bit in CAPS.items() if not eff >> bit & 1]
    assert not missing, f"CapEff {eff:x} lacks {missing}"


def test_memory_limit_is_applied(containers: Containers, played: Played) -> None:
    # cgroup v2 inside the container, else v1 (these machines run a hybrid hierarchy).
    out = in_container(
        containers,
        "cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes",
    )
    assert int(out.strip()) == MEMORY_LIMIT


def test_pod_settings(containers: Containers, played: Played) -> None:
    out = in_container(containers, "hostname; pwd; echo $COMPOSER_KUBE_TEST; test -c /dev/fuse && echo fuse")
    assert out.split() == ["kube-devpod", "/srv/www", "1", "fuse"]
    networks: dict[str, Any] = yaml.safe_load(containers.podman(
        "inspect", CONTAINER, "--format", "{{json .NetworkSettings.Networks}}").stdout)
    assert "kube-devpod.test" in networks[played.network]["Aliases"]


def test_secret_values_reach_the_credential_files(containers: Containers, played: Played) -> None:
    out = in_container(containers, "cat /run/secrets/KUBE_TEST_TOKEN; echo '|'; "
                                   "cat /run/secrets/KUBE_TEST_OTHER; echo '|'; "
                                   "touch /run/secrets/x 2>/dev/null || echo read-only")
    assert out == f"{played.token}|\n|\nread-only\n"


def test_volume_survives_down_and_play(containers: Containers, played: Played) -> None:
    in_container(containers, "echo kept > /data/file")
    down(containers, played)
    assert containers.podman("pod", "exists", POD, check=False).returncode == 1
    play(containers, played)
    assert in_container(containers, "cat /data/file") == "kept\n"


def test_kube_down_cleans_up(containers: Containers, played: Played) -> None:
    down(containers, played)
    assert containers.podman("pod", "exists", POD, check=False).returncode == 1
    assert containers.podman("container", "exists", CONTAINER, check=False).returncode == 1
    with socket.socket() as s:  # the host port is free again
        s.bind(("127.0.0.1", played.port))
    # Named volumes outlive the pod on purpose (that is what keeps the workspace).
    assert VOLUME in containers.podman("volume", "ls", "--format", "{{.Name}}").stdout.split()
    play(containers, played)  # leave it running for any test after this one
