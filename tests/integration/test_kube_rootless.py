"""`composer kube --rootless` against a rootless podman: as the non-root test user, load
the image the root build wrote into the user's own storage (`podman load`, the header's
line), play the manifest, look inside, replay it, take it down.

The image is tests/recipes/kube-pod (see test_kube.py). The host network means the
server listens on a host port: the test points it (and the probe) at a free one, the way
a user would edit the file if 9090 were taken.
"""

from __future__ import annotations

import contextlib
import shlex
import shutil
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.conftest import RECIPES, Containers
from tests.integration.helpers import free_port, http
from tests.integration.rootless import RootlessUser, reachable_folder
from tests.integration.test_kube import CAPS, TOKEN, TOKEN_4_3

pytestmark = [
    pytest.mark.integration,
    pytest.mark.needs(root=True, why="creating a test user needs root"),
]

RECIPE = RECIPES / "kube-pod" / "kube-pod.toml"
POD = "composer-kube-test"
CONTAINER = f"{POD}-devpod"
VOLUME = f"{POD}-data"
SECRET = f"{POD}-secrets"
IMAGE = "localhost/composer-kube-test:test"


@dataclass
class Played:
    user: RootlessUser
    manifest: Path
    header: str
    port: int
    token: str


def header_command(header: str, label: str) -> list[str]:
    """A command line of the manifest's header comment, e.g. 'Play (rootless)'."""
    line = next(x for x in header.splitlines() if x.startswith(f"# {label}:"))
    argv = shlex.split(line.split(":", 1)[1])
    return argv[: argv.index("(named")] if "(named" in argv else argv


def fill_in(text: str, port: int, legacy_secret: bool) -> str:
    """The user's edits: the Secret's value, and the server (and its probe) on a free port."""
    docs = [d for d in yaml.safe_load_all(text) if d]
    secret, pod = docs
    if legacy_secret:  # podman 4.3 ignores stringData (see test_kube.py)
        del secret["stringData"]
        secret["data"] = {"KUBE_TEST_TOKEN": TOKEN_4_3, "KUBE_TEST_OTHER": ""}
    else:
        secret["stringData"] = {"KUBE_TEST_TOKEN": TOKEN, "KUBE_TEST_OTHER": ""}
    container = pod["spec"]["containers"][0]
    container["args"] = ["python3", "-m", "http.server", str(port), "--directory", "/srv/www"]
    container["livenessProbe"]["httpGet"]["port"] = port
    return yaml.safe_dump_all(docs, sort_keys=False)


def play(played: Played) -> None:
    argv = header_command(played.header, "Play (rootless)")
    assert argv[:3] == ["podman", "kube", "play"] and "--network" not in argv
    played.user.podman(*argv[1:-1], str(played.manifest))
    assert http(played.port, "/health", timeout=60) == (200, "ok\n")


def down(played: Played) -> None:
    argv = header_command(played.header, "Stop")
    assert argv[:3] == ["podman", "kube", "down"]
    played.user.podman(*argv[1:-1], str(played.manifest))


def in_container(played: Played, script: str) -> str:
    return played.user.podman("exec", CONTAINER, "/bin/sh", "-c", script).stdout


@pytest.fixture(scope="module")
def played(containers: Containers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Played]:
    archive = Path(containers.build_once(RECIPE)["archive"])
    text = containers.composer("kube", str(RECIPE), "--rootless").stdout
    header = text.split("---", 1)[0]
    work = reachable_folder(tmp_path_factory, "kube-rootless")
    user = RootlessUser.for_folder(work)
    load = header_command(header, "Image (once)")  # podman load -i <name>-<tag>.oci.tar
    manifest = work / header_command(header, "Play (rootless)")[-1]
    try:
        user.setup_podman()
        user.chown(work)
        version = user.podman("version", "--format", "{{.Client.Version}}").stdout.strip()
        legacy = tuple(int(p) for p in version.split("-")[0].split(".")[:2]) < (4, 4)
        port = free_port()
        manifest.write_text(fill_in(text, port, legacy))
        shutil.copy(archive, work / load[-1])
        user.chown(work)
        # The image into the user's own storage, with the header's line.
        user.podman(*load[1:], timeout=300)
        assert IMAGE in user.podman("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
        box = Played(user, manifest, header, port, TOKEN_4_3 if legacy else TOKEN)
        play(box)
        yield box
    finally:
        user.podman("kube", "down", str(manifest), check=False)
        user.podman("pod", "rm", "--all", "--force", check=False)
        user.stop_pause_process()
        user.remove_storage()  # images, containers, volumes and secrets are all in there
        shutil.rmtree(work, ignore_errors=True)


def test_the_pod_is_on_the_host_network(played: Played) -> None:
    assert http(played.port, "/health") == (200, "ok\n")  # on 127.0.0.1, no port mapping
    pod = yaml.safe_load(played.user.podman("pod", "inspect", POD).stdout)
    assert pod["InfraConfig"]["HostNetwork"] is True
    assert not pod["InfraConfig"]["PortBindings"]


def test_liveness_probe_runs_curl_in_the_container(played: Played) -> None:
    played.user.podman("healthcheck", "run", CONTAINER)


def test_pod_settings_that_work_rootless(played: Played) -> None:
    out = in_container(played, "hostname; pwd; echo $COMPOSER_KUBE_TEST; test -e /dev/fuse || echo no-fuse")
    assert out.split() == ["kube-devpod", "/srv/www", "1", "no-fuse"]  # the device is left out
    status = in_container(played, "cat /proc/1/status")
    eff = int(next(x for x in status.splitlines() if x.startswith("CapEff:")).split()[1], 16)
    missing = [name for name, bit in CAPS.items() if not eff >> bit & 1]
    assert not missing, f"CapEff {eff:x} lacks {missing}"


def test_secret_values_reach_the_credential_files(played: Played) -> None:
    out = in_container(played, "cat /run/secrets/KUBE_TEST_TOKEN; echo '|'; "
                               "touch /run/secrets/x 2>/dev/null || echo read-only")
    assert out == f"{played.token}|\nread-only\n"


def test_volume_survives_down_and_play(played: Played) -> None:
    in_container(played, "echo kept > /data/file")
    down(played)
    assert played.user.podman("pod", "exists", POD, check=False).returncode == 1
    play(played)
    assert in_container(played, "cat /data/file") == "kept\n"


def test_kube_down_cleans_up(played: Played) -> None:
    down(played)
    assert played.user.podman("pod", "exists", POD, check=False).returncode == 1
    assert played.user.podman("container", "exists", CONTAINER, check=False).returncode == 1
    # Nothing listens on the host port any more (SO_REUSEADDR: our own requests leave it
    # in TIME_WAIT, which is no listener).
    with contextlib.closing(socket.socket()) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", played.port))
        s.listen()
    assert VOLUME in played.user.podman("volume", "ls", "--format", "{{.Name}}").stdout.split()
