"""The devpod-ci manifest against real podman (issue 5, live): play it as root, look inside
the running devpod, replay it, take it down.

The image is tests/recipes/devpod-ci.toml, built once per session and shared with
test_devpod.py. The manifest is the one `composer kube` prints, changed only where a test
must: free host ports instead of 2222/5901/9090 (so parallel runs do not collide), the
Secret filled with test values, and the header's `--network` on a network of this test's
own. Podman runs through the session's containers.conf (runc, lowered ulimits).
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import socket
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import RECIPES, Containers
from tests.integration.helpers import free_port, header_play_argv, http, podman_version

pytestmark = pytest.mark.integration

RECIPE = RECIPES / "devpod-ci.toml"
POD = "devpod-ci"
CONTAINER = f"{POD}-devpod"  # podman names a pod's container <pod>-<container>
SECRET = f"{POD}-secrets"
# CAP_NET_ADMIN, CAP_SYS_PTRACE, CAP_SYS_ADMIN
CAPS = {"NET_ADMIN": 12, "SYS_PTRACE": 19, "SYS_ADMIN": 21}
QUANTITY = re.compile(r"^([0-9]+)(Ki|Mi|Gi|Ti|Pi|k|M|G|T|P)?$")
FACTORS = {None: 1, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50,
           "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15}


def base64_text() -> str:
    """A fresh test value that is itself valid base64 text (only [A-Za-z0-9+/], length a
    multiple of 4). podman 4.3 ignores stringData, accepts only base64 text under `data`
    and mounts that text without decoding it (podman#16625, docs/kube.md); a value like
    this reaches /run/secrets/NAME unchanged whether it goes under `data` (4.3) or
    `stringData` (>= 4.4, Kubernetes)."""
    return base64.b64encode(secrets.token_bytes(24)).decode()


@dataclass
class Played:
    manifest: Path
    play_args: list[str]
    ports: dict[int, int]  # container port -> host port
    memory_limit: int  # bytes, from the manifest's resources.limits.memory
    claims: list[str]  # the named volumes the Pod claims
    values: dict[str, str] = field(default_factory=dict)  # what the Secret holds

    @property
    def api(self) -> int:
        return self.ports[9090]






def quantity(text: str) -> int:
    """A Kubernetes memory quantity ('64Gi', '512M', '1073741824') in bytes."""
    match = QUANTITY.match(str(text))
    assert match, f"unexpected memory quantity {text!r}"
    return int(match.group(1)) * FACTORS[match.group(2)]


def fill_in(docs: list[dict[str, Any]], values: dict[str, str], legacy_secret: bool) -> None:
    """What a user does to the Secret template: put values in (empty = not set)."""
    secret = next(d for d in docs if d["kind"] == "Secret")
    assert set(secret["stringData"].values()) == {""}  # composer wrote no value
    filled = {name: values.get(name, "") for name in secret["stringData"]}
    if legacy_secret:  # podman 4.3 ignores stringData (see base64_text)
        del secret["stringData"]
        secret["data"] = filled
    else:
        secret["stringData"] = filled






def sh(containers: Containers, script: str, user: str = "root",
       check: bool = True) -> subprocess.CompletedProcess[str]:
    return containers.podman("exec", "--user", user, CONTAINER, "sh", "-c", script,
                             check=check, timeout=60)


def play(containers: Containers, played: Played) -> None:
    containers.podman("kube", "play", *played.play_args, str(played.manifest))
    try:
        status, _ = http(played.api, "/health")
    except OSError as err:
        logs = containers.podman("logs", CONTAINER, check=False)
        raise AssertionError(f"/health never answered: {err}\n{logs.stdout}\n{logs.stderr}") from err
    assert status == 200


def down(containers: Containers, played: Played) -> None:
    containers.podman("kube", "down", str(played.manifest))


@pytest.fixture(scope="module")
def played(containers: Containers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Played]:
    containers.build_once(RECIPE)
    text = containers.composer("kube", str(RECIPE)).stdout
    docs = [d for d in yaml.safe_load_all(text) if d]
    pod = next(d for d in docs if d["kind"] == "Pod")
    devpod = pod["spec"]["containers"][0]
    ports: dict[int, int] = {}
    for entry in devpod["ports"]:
        if "hostPort" in entry:
            entry["hostPort"] = ports[entry["containerPort"]] = free_port()
    assert 9090 in ports, devpod["ports"]
    values = {"ANTHROPIC_API_KEY": base64_text(), "GOOGLE_GEMINI_API_KEY": base64_text(),
              "OPENAI_API_KEY": base64_text(), "MANAGEMENT_API_TOKEN": base64_text()}
    fill_in(docs, values, legacy_secret=podman_version(containers) < (4, 4))
    manifest = tmp_path_factory.mktemp("kube-devpod") / "devpod-ci-test.kube.yaml"
    manifest.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    claims = [v["persistentVolumeClaim"]["claimName"] for v in pod["spec"]["volumes"]
              if "persistentVolumeClaim" in v]

    # The header's play line as written, on a network of this test's own.
    argv = header_play_argv(text)
    flag = argv.index("--network")
    _, _, aliases = argv[flag + 1].partition(":")
    network = f"composer-kube-devpod-{uuid.uuid4().hex[:8]}"
    play_args = ["--network", f"{network}:{aliases}" if aliases else network]
    containers.podman("network", "create", network)
    box = Played(manifest, play_args, ports, quantity(devpod["resources"]["limits"]["memory"]),
                 claims, values)
    try:
        play(containers, box)
        yield box
    finally:
        containers.podman("kube", "down", str(manifest), check=False)
        # podman 4.3 leaves the Secret and a volume of its name behind (docs/kube.md).
        containers.podman("volume", "rm", "--force", *claims, SECRET, f"{POD}-shm", check=False)
        containers.podman("secret", "rm", SECRET, check=False)
        containers.podman("network", "rm", "--force", network, check=False)


def test_health_answers_json_on_the_host_port(played: Played) -> None:
    status, body = http(played.api, "/health")
    assert status == 200
    health = json.loads(body)
    assert health["status"] == "healthy" and {"timestamp", "uptime"} <= set(health)


def test_capabilities_are_in_the_effective_set(containers: Containers, played: Played) -> None:
    status = sh(containers, "cat /proc/1/status").stdout
    eff = int(next(x for x in status.splitlines() if x.startswith("CapEff:")).split()[1], 16)
    missing = [name for name, bit in CAPS.items() if not eff >> bit & 1]
    assert not missing, f"CapEff {eff:x} lacks {missing}"
    assert "Seccomp:\t2" in status  # seccompProfile RuntimeDefault: a filter is on


def test_memory_limit_is_applied(containers: Containers, played: Played) -> None:
    # cgroup v2 inside the container, else v1 (these machines run a hybrid hierarchy).
    out = sh(containers, "cat /sys/fs/cgroup/memory.max 2>/dev/null"
                         " || cat /sys/fs/cgroup/memory/memory.limit_in_bytes").stdout
    assert int(out.strip()) == played.memory_limit


def test_secret_values_reach_the_credential_files(containers: Containers, played: Played) -> None:
    expected = {
        "/home/devuser/.config/claude/config.json": ("devuser", "ANTHROPIC_API_KEY"),
        "/home/gemini-user/.config/gemini/config.json": ("gemini-user", "GOOGLE_GEMINI_API_KEY"),
        "/home/openai-user/.config/openai/config.json": ("openai-user", "OPENAI_API_KEY"),
    }
    for path, (owner, name) in expected.items():
        assert sh(containers, f"stat -c '%a %U %G' {path}").stdout.split() == ["600", owner, owner]
        assert json.loads(sh(containers, f"cat {path}").stdout) == {"api_key": played.values[name]}
    # ZAI_API_KEY was left empty, which counts as not set: no zai-user config.
    assert sh(containers, "test -e /home/zai-user/.config/zai/config.json",
              check=False).returncode != 0
    # The management API got its token from the Secret too.
    assert http(played.api, "/services")[0] == 401
    assert http(played.api, "/services", token=played.values["MANAGEMENT_API_TOKEN"])[0] == 200


def test_secret_volume_is_root_only(containers: Containers, played: Played) -> None:
    # podman 4.3 mounts the Secret read-only with 0644 files: the 00-secrets hook covers it
    # with a root-only copy; >= 4.4 honours defaultMode 0400. Either way, users cannot read.
    assert sh(containers, "cat /run/secrets/ANTHROPIC_API_KEY").stdout.strip() == \
        played.values["ANTHROPIC_API_KEY"]
    for user in ("devuser", "gemini-user"):
        assert sh(containers, "cat /run/secrets/ANTHROPIC_API_KEY", user=user,
                  check=False).returncode != 0, user


def test_volume_survives_down_and_play(containers: Containers, played: Played) -> None:
    note = f"kept {uuid.uuid4().hex}"
    sh(containers, f"echo '{note}' > /home/devuser/workspace/kube-test.txt", user="devuser")
    down(containers, played)
    assert containers.podman("pod", "exists", POD, check=False).returncode == 1
    play(containers, played)
    out = sh(containers, "cat /home/devuser/workspace/kube-test.txt", user="devuser").stdout
    assert out == f"{note}\n"


def test_kube_down_cleans_up(containers: Containers, played: Played) -> None:
    down(containers, played)
    assert containers.podman("pod", "exists", POD, check=False).returncode == 1
    assert containers.podman("container", "exists", CONTAINER, check=False).returncode == 1
    for port in played.ports.values():  # the host ports are free again
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))
    # Named volumes outlive the pod on purpose (that is what keeps the workspace);
    # the fixture's teardown removes them.
    names = containers.podman("volume", "ls", "--format", "{{.Name}}").stdout.split()
    assert set(played.claims) <= set(names)


def test_hardened_pod_runs_without_the_seed_capabilities(containers: Containers, played: Played,
                                                         tmp_path: Path) -> None:
    """[pod] security = "hardened" on devpod-ci: the same image plays, serves /health, and
    its processes hold none of SYS_ADMIN, NET_ADMIN, SYS_PTRACE, under a seccomp filter.
    Played beside the seed Pod under other names (same image, no rebuild)."""
    child = tmp_path / "hardened.toml"
    child.write_text(f'extends = "{RECIPE}"\n[pod]\nsecurity = "hardened"\n')
    # Without SYS_ADMIN the 00-secrets hook cannot cover a world-readable Secret mount
    # (podman 4.3's) with a root-only copy: a hardened Pod takes its secrets from a
    # root-only host folder (docs/kube.md), which works on every podman.
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir(mode=0o700)
    token = base64_text()
    (secrets_dir / "MANAGEMENT_API_TOKEN").write_text(token)
    text = containers.composer("kube", str(child), "--secrets-dir", str(secrets_dir)).stdout
    assert "# security = hardened: left out the capabilities" in text
    hard = "devpod-ci-hard"
    text = text.replace(f"{POD}-", f"{hard}-").replace(f"name: {POD}\n", f"name: {hard}\n")
    docs = [d for d in yaml.safe_load_all(text) if d]
    devpod = next(d for d in docs if d["kind"] == "Pod")["spec"]["containers"][0]
    assert devpod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    ports: dict[int, int] = {}
    for entry in devpod["ports"]:
        if "hostPort" in entry:
            entry["hostPort"] = ports[entry["containerPort"]] = free_port()
    manifest = tmp_path / f"{hard}.kube.yaml"
    manifest.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    network = f"composer-kube-hard-{uuid.uuid4().hex[:8]}"
    containers.podman("network", "create", network)
    try:
        containers.podman("kube", "play", "--network", network, str(manifest))
        try:
            assert http(ports[9090], "/health", timeout=60)[0] == 200
        except OSError as err:
            logs = containers.podman("logs", f"{hard}-devpod", check=False)
            port = containers.podman("port", f"{hard}-devpod", check=False)
            raise AssertionError(f"/health never answered: {err}\n{port.stdout}\n{logs.stdout}\n{logs.stderr}") from err
        status = containers.podman("exec", f"{hard}-devpod", "cat", "/proc/1/status").stdout
        eff = int(next(x for x in status.splitlines() if x.startswith("CapEff:")).split()[1], 16)
        held = [name for name, bit in CAPS.items() if eff >> bit & 1]
        assert held == [], f"CapEff {eff:x} holds {held}"
        assert "Seccomp:\t2" in status
        assert http(ports[9090], "/services", token=token)[0] == 200  # the secret reached the API
    finally:
        containers.podman("kube", "down", str(manifest), check=False)
        claims = [v["persistentVolumeClaim"]["claimName"] for d in docs if d["kind"] == "Pod"
                  for v in d["spec"]["volumes"] if "persistentVolumeClaim" in v]
        containers.podman("volume", "rm", "--force", *claims, f"{hard}-shm", check=False)
        containers.podman("network", "rm", "--force", network, check=False)
