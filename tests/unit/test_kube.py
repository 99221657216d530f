"""The podman-kube manifest: golden files, Kubernetes schemas, and the checks on [pod]."""

from __future__ import annotations

import runpy
import subprocess
import sys
import textwrap
from dataclasses import fields
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from click.testing import CliRunner

from composer.cli import cli
from composer.emit.kube import (
    PodConfig,
    manifest_path,
    render_manifest,
    rootless_config,
    rootless_manifest_path,
    seconds,
)
from composer.errors import ComposerError
from composer.model import PodPort
from composer.planner import plan_file
from composer.schema import load_schema

ROOT = Path(__file__).resolve().parents[2]
GOLDEN_DIR = ROOT / "tests" / "golden"
REGENERATE = runpy.run_path(str(GOLDEN_DIR / "regenerate"))
KUBE_GOLDEN: dict[str, str] = REGENERATE["KUBE_GOLDEN"]  # golden -> "recipe [flags]"
K8S_VERSION = kubernetes_validate.latest_version()


def documents(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d is not None]


def by_kind(text: str) -> dict[str, dict[str, Any]]:
    return {d["kind"]: d for d in documents(text)}


def write_recipe(folder: Path, pod: str, packages: str = '["curl"]', extra: str = "") -> Path:
    """A one-module recipe in folder (its own layers/), with the given [pod] body."""
    module = folder / "layers" / "tool"
    module.mkdir(parents=True)
    (module / "module.toml").write_text(
        f'name = "tool"\nversion = "1"\ndescription = "t"\nports = ["8080/tcp"]\n'
        f"[packages]\ndebian = {packages}\n"
    )
    recipe = folder / "pod.toml"
    recipe.write_text(
        'name = "podtest"\ntag = "v1"\n[base]\nfrom = "debootstrap:trixie"\n'
        '[[layers]]\nmodule = "tool"\n'
        + textwrap.dedent(extra)
        + "[pod]\n"
        + textwrap.dedent(pod)
    )
    return recipe


def render(recipe: Path, rootless: bool = False) -> str:
    return render_manifest(plan_file(recipe), rootless=rootless)


def container(text: str) -> dict[str, Any]:
    containers: list[dict[str, Any]] = by_kind(text)["Pod"]["spec"]["containers"]
    return containers[0]


# ---- golden files and schemas -----------------------------------------------------------


@pytest.mark.parametrize("golden", sorted(KUBE_GOLDEN))
def test_golden(golden: str) -> None:
    path = GOLDEN_DIR / golden
    assert path.exists(), f"missing {path}: run tests/golden/regenerate"
    assert REGENERATE["render"](KUBE_GOLDEN[golden]) == path.read_text(), (
        f"{golden} differs from `composer kube {KUBE_GOLDEN[golden]}`: "
        "run tests/golden/regenerate and review the diff"
    )


@pytest.mark.parametrize("golden", sorted(KUBE_GOLDEN))
def test_every_document_passes_the_kubernetes_schema(golden: str) -> None:
    path = GOLDEN_DIR / golden
    if not path.exists():
        pytest.fail(f"missing {path}: run tests/golden/regenerate")
    for document in documents(path.read_text()):
        try:
            kubernetes_validate.validate(document, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            pytest.fail(f"{golden}: {document['kind']}: {e.message} at {list(e.path)}")


def test_the_schema_check_catches_a_wrong_field() -> None:
    text = render(ROOT / KUBE_GOLDEN["kube-pod.kube.yaml"])
    pod = by_kind(text)["Pod"]
    pod["spec"]["containers"][0]["ports"][0]["hostPort"] = "not a number"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(pod, K8S_VERSION, strict=True)


@pytest.mark.parametrize("golden", sorted(KUBE_GOLDEN))
def test_secrets_never_have_values(golden: str) -> None:
    path = GOLDEN_DIR / golden
    if not path.exists():
        pytest.fail(f"missing {path}: run tests/golden/regenerate")
    secrets = [d for d in documents(path.read_text()) if d["kind"] == "Secret"]
    for secret in secrets:
        assert "data" not in secret
        assert set(secret["stringData"].values()) == {""}


def test_rendering_is_deterministic() -> None:
    recipe = ROOT / KUBE_GOLDEN["kube-pod.kube.yaml"]
    assert render(recipe) == render(recipe)


# ---- what the Pod holds -------------------------------------------------------------------


def test_pod_fields(tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path, """\
        hostname = "dev"
        shm_size = "1Gi"
        capabilities = ["SYS_PTRACE"]
        devices = ["/dev/nvidia0"]
        gpus = 2
        ports = [{ name = "web", container = 8080, host = 18080 }, { container = 53, protocol = "UDP" }]
        resources = { limits = { memory = "2Gi", cpu = "2" }, requests = { cpu = "500m" } }
        [pod.volumes]
        work = "/work"
        cache = { path = "/cache", claim = "shared-cache" }
        """, extra='[image]\nuser = "1000:1000"\nworkdir = "/work"\nenv = { A = "1" }\n')
    text = render(recipe)
    pod = by_kind(text)["Pod"]
    c = container(text)
    assert pod["metadata"]["name"] == "podtest"
    assert pod["spec"]["hostname"] == "dev"
    assert c["image"] == "localhost/podtest:v1"
    assert c["env"] == [{"name": "A", "value": "1"}]
    assert c["workingDir"] == "/work"
    assert c["ports"] == [
        {"name": "web", "containerPort": 8080, "hostPort": 18080, "protocol": "TCP"},
        {"containerPort": 53, "protocol": "UDP"},
    ]
    assert c["securityContext"] == {
        "seccompProfile": {"type": "RuntimeDefault"},
        "runAsUser": 1000, "runAsGroup": 1000, "capabilities": {"add": ["SYS_PTRACE"]},
    }
    assert c["resources"] == {
        "limits": {"memory": "2Gi", "cpu": "2", "nvidia.com/gpu": "2"},
        "requests": {"cpu": "500m"},
    }
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes["work"] == {"name": "work", "persistentVolumeClaim": {"claimName": "podtest-work"}}
    assert volumes["cache"]["persistentVolumeClaim"] == {"claimName": "shared-cache"}
    assert volumes["podtest-shm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "1Gi"}
    assert volumes["dev-nvidia0"]["hostPath"] == {"path": "/dev/nvidia0", "type": "CharDevice"}
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    assert mounts == {"work": "/work", "cache": "/cache", "podtest-shm": "/dev/shm",
                      "dev-nvidia0": "/dev/nvidia0"}
    assert "livenessProbe" not in c
    assert [d["kind"] for d in documents(text)] == ["Pod"]  # no secrets, no Secret
    for document in documents(text):
        kubernetes_validate.validate(document, K8S_VERSION, strict=True)


def test_image_ports_without_mapping_have_no_host_port(tmp_path: Path) -> None:
    c = container(render(write_recipe(tmp_path, 'hostname = "x"\n')))
    assert c["ports"] == [{"containerPort": 8080, "protocol": "TCP"}]


def test_secret_template_and_mount(tmp_path: Path) -> None:
    extra = (
        '[[secrets]]\nname = "API_KEY"\ndescription = "the key\\n  for the API"\n'
        '[[secrets]]\nname = "123"\n'
    )
    recipe = write_recipe(tmp_path, 'hostname = "x"\n', extra=extra)
    text = render(recipe)
    assert [d["kind"] for d in documents(text)] == ["Secret", "Pod"]
    secret = by_kind(text)["Secret"]
    assert secret["metadata"]["name"] == "podtest-secrets"
    assert secret["stringData"] == {"API_KEY": "", "123": ""}  # "123" stays a string key
    assert "  API_KEY: ''  # the key for the API\n" in text
    assert "kubectl create secret generic podtest-secrets" in text
    c = container(text)
    assert {"name": "secrets", "mountPath": "/run/secrets", "readOnly": True} in c["volumeMounts"]
    volume = next(v for v in by_kind(text)["Pod"]["spec"]["volumes"] if v["name"] == "secrets")
    assert volume["secret"] == {"secretName": "podtest-secrets", "defaultMode": 0o400, "optional": False}
    assert "env" not in c


def test_secrets_path_reaches_the_hooks(tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path, 'secrets_path = "/etc/creds"\n',
                          extra='[[secrets]]\nname = "TOKEN"\n')
    c = container(render(recipe))
    assert {"name": "secrets", "mountPath": "/etc/creds", "readOnly": True} in c["volumeMounts"]
    assert {"name": "COMPOSER_SECRETS_DIR", "value": "/etc/creds"} in c["env"]


def test_network_and_aliases_in_the_play_command(tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path, 'network = "ragnet"\naliases = ["a.test", "b"]\n')
    text = render(recipe)
    assert ("# Play (root):     podman kube play --network ragnet:alias=a.test,alias=b "
            "podtest-v1.kube.yaml\n") in text
    assert "# Network (once): podman network create ragnet\n" in text
    assert "network" not in yaml.safe_dump(by_kind(text)["Pod"]["spec"])


def test_manifest_path(tmp_path: Path) -> None:
    plan = plan_file(write_recipe(tmp_path, 'hostname = "x"\n'))
    assert manifest_path(plan, tmp_path / "out") == tmp_path / "out" / "podtest-v1.kube.yaml"


# ---- liveness and its curl check ---------------------------------------------------------


def test_liveness_defaults(tmp_path: Path) -> None:
    probe = container(render(write_recipe(tmp_path, "liveness = true\n")))["livenessProbe"]
    assert probe == {"httpGet": {"path": "/health", "port": 9090}, "periodSeconds": 30}


def test_liveness_timing_follows_the_health_check(tmp_path: Path) -> None:
    extra = ('[image.healthcheck]\ntest = ["CMD", "true"]\ninterval = "1m"\ntimeout = "500ms"\n'
             'retries = 5\nstart_period = "20s"\n')
    probe = container(render(write_recipe(tmp_path, "liveness = true\n", extra=extra)))["livenessProbe"]
    # liveness = true runs the image's own health check (which may use a root-only socket)
    assert probe == {"exec": {"command": ["true"]}, "periodSeconds": 60,
                     "initialDelaySeconds": 20, "timeoutSeconds": 1, "failureThreshold": 5}


def test_liveness_table(tmp_path: Path) -> None:
    pod = 'liveness = { path = "/ping", port = 8080, interval = "10s" }\n'
    probe = container(render(write_recipe(tmp_path, pod)))["livenessProbe"]
    assert probe == {"httpGet": {"path": "/ping", "port": 8080}, "periodSeconds": 10}


def test_liveness_needs_curl(tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path, "liveness = true\n", packages='["wget"]')
    with pytest.raises(ComposerError) as info:
        render(recipe)
    assert "pod.toml: pod.liveness:" in info.value.message
    assert "curl" in info.value.message and "'debian'" in info.value.message
    assert info.value.hint and "[packages].debian" in info.value.hint


def test_no_liveness_needs_no_curl(tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path, "liveness = false\n", packages='["wget"]')
    assert "livenessProbe" not in container(render(recipe))


def test_seconds() -> None:
    assert [seconds(d) for d in ("30s", "2m", "1h", "500ms", "0s")] == [30, 120, 3600, 1, 0]


# ---- errors a person can act on --------------------------------------------------------------


def test_device_folder_is_an_error(tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path, 'devices = ["/dev/nvidia0", "/dev/dri"]\n')
    with pytest.raises(ComposerError, match=r"pod\.toml: pod\.devices\[1\]: /dev/dri is a folder"):
        render(recipe)


@pytest.mark.parametrize("name", ["shm", "secrets"])
def test_reserved_volume_names(tmp_path: Path, name: str) -> None:
    recipe = write_recipe(tmp_path, f'[pod.volumes]\n{name} = "/x"\n')
    with pytest.raises(ComposerError, match=rf"pod\.volumes\.{name}: the name"):
        render(recipe)


def test_volume_name_must_be_a_dns_label(tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path, '[pod.volumes]\nMy_Vol = "/x"\n')
    with pytest.raises(ComposerError, match=r"pod\.volumes"):
        render(recipe)


def test_recipe_name_must_be_a_kubernetes_name(tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path, 'hostname = "x"\n')
    recipe.write_text(recipe.read_text().replace('name = "podtest"', 'name = "pod_test"'))
    with pytest.raises(ComposerError, match=r"pod\.toml: name: 'pod_test' is not a valid Kubernetes"):
        render(recipe)


def test_schema_and_pod_config_agree() -> None:
    """Every [pod] field of the schema is read into PodConfig (resources as limits+requests;
    security decides which capabilities it gets)."""
    schema_fields = set(load_schema("recipe")["properties"]["pod"]["properties"])
    config_fields = {f.name for f in fields(PodConfig)} - {
        "name", "limits", "requests", "host_network", "secrets_dir"}
    assert schema_fields == config_fields | {"resources", "security"}


# ---- the command line ------------------------------------------------------------------------


def test_cli_kube_prints_and_writes(tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path, 'hostname = "x"\n')
    runner = CliRunner()
    printed = runner.invoke(cli, ["kube", str(recipe)])
    assert printed.exit_code == 0, printed.output
    assert printed.output == render(recipe)
    out = tmp_path / "out" / "m.yaml"
    written = runner.invoke(cli, ["kube", str(recipe), "-o", str(out)])
    assert written.exit_code == 0, written.output
    assert written.output == ""
    assert out.read_text() == render(recipe)


def test_cli_kube_rootless(tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path, 'hostname = "x"\n')
    printed = CliRunner().invoke(cli, ["kube", str(recipe), "--rootless"])
    assert printed.exit_code == 0, printed.output
    assert printed.output == render(recipe, rootless=True)
    assert printed.output != render(recipe)


# ---- the rootless variant --------------------------------------------------------------------

FULL_POD = """\
    hostname = "dev"
    network = "ragnet"
    aliases = ["a.test"]
    shm_size = "1Gi"
    capabilities = ["SYS_PTRACE"]
    devices = ["/dev/nvidia0", "/dev/nvidiactl"]
    gpus = 1
    liveness = true
    ports = [{ name = "ssh", container = 22, host = 2222 }, { name = "web", container = 8080, host = 18080 }]
    resources = { limits = { memory = "2Gi", cpu = "2" }, requests = { cpu = "500m" } }
    [pod.volumes]
    work = "/work"
    """


def test_rootless_config_is_a_pure_transformation() -> None:
    config = PodConfig(
        name="p", network="net", aliases=("a",), devices=("/dev/fuse",), gpus=2,
        ports=(PodPort(22, 2222, "ssh"), PodPort(53, None, "", "UDP")),
        limits=(("memory", "1Gi"),), requests=(("cpu", "1"),), capabilities=("SYS_ADMIN",),
        volumes=(("work", "p-work", "/work"),), shm_size="1Gi", hostname="h",
    )
    rootless, dropped = rootless_config(config)
    assert rootless == PodConfig(
        name="p", capabilities=("SYS_ADMIN",), volumes=(("work", "p-work", "/work"),), shm_size="1Gi",
        hostname="h", host_network=True,
    )
    assert dropped.network == "net" and dropped.aliases == ("a",)
    assert dropped.ports == config.ports
    assert dropped.limits == (("memory", "1Gi"),) and dropped.requests == (("cpu", "1"),)
    assert dropped.devices == ("/dev/fuse",) and dropped.gpus == 2
    assert config.network == "net"  # the input is left alone
    assert rootless_config(rootless)[0] == rootless  # and applying it twice changes nothing


def test_rootless_pod(tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path, FULL_POD, extra='[[secrets]]\nname = "TOKEN"\n')
    text = render(recipe, rootless=True)
    pod = by_kind(text)["Pod"]
    c = container(text)
    assert pod["spec"]["hostNetwork"] is True
    assert pod["spec"]["hostname"] == "dev"
    # podman 4.3 maps even a bare containerPort, and refuses any mapping on the host's
    # network: no ports at all, not even the image's (8080 of the module).
    assert "ports" not in c
    assert "resources" not in c
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert set(volumes) == {"work", "podtest-shm", "secrets"}  # no device volumes
    assert {m["name"] for m in c["volumeMounts"]} == set(volumes)
    assert c["securityContext"] == {"seccompProfile": {"type": "RuntimeDefault"},
                                    "capabilities": {"add": ["SYS_PTRACE"]}}
    assert c["livenessProbe"]["httpGet"] == {"path": "/health", "port": 9090}
    assert [d["kind"] for d in documents(text)] == ["Secret", "Pod"]
    # Everything else is as in the root manifest.
    root_pod = by_kind(render(recipe))["Pod"]
    root_c = root_pod["spec"]["containers"][0]
    for key in ("env", "image", "securityContext", "livenessProbe"):
        assert c.get(key) == root_c.get(key)
    for document in documents(text):
        kubernetes_validate.validate(document, K8S_VERSION, strict=True)


def test_rootless_header(tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path, FULL_POD)
    text = render(recipe, rootless=True)
    header = text.split("---", 1)[0]
    assert all(line.startswith("#") for line in header.splitlines())
    assert "# Play (rootless): podman kube play podtest-v1.rootless.kube.yaml\n" in header
    assert "# Stop:            podman kube down podtest-v1.rootless.kube.yaml" in header
    assert "# Image (once):    podman load -i podtest-v1.oci.tar\n" in header
    assert "--network" not in header and "Play (root)" not in header
    assert "cgroups v1 a rootless container cannot be limited" in header
    assert "limits memory=2Gi cpu=2, requests cpu=500m" in header
    assert "/dev/nvidia0, /dev/nvidiactl, the nvidia.com/gpu limit 1" in header
    assert "Host ports the services use: 22/tcp (ssh), 8080/tcp (web)." in header
    assert "hostPort mappings 2222->22, 18080->8080 (the host port" in header
    assert "podman network ragnet and its aliases a.test" in header
    assert "Port 22 is below net.ipv4.ip_unprivileged_port_start" in header
    for setting in ('runtime = "runc"', 'cgroup_manager = "cgroupfs"', 'events_logger = "file"'):
        assert setting in header
    plan = plan_file(recipe)
    assert rootless_manifest_path(plan, tmp_path).name == "podtest-v1.rootless.kube.yaml"


def test_rootless_header_says_only_what_it_left_out(tmp_path: Path) -> None:
    header = render(write_recipe(tmp_path, 'hostname = "x"\n'), rootless=True).split("---", 1)[0]
    assert "hostNetwork" in header
    assert "Host ports the services use: 8080/tcp." in header  # the module's image port
    for absent in ("Left out", "resources", "device", "below net.ipv4"):
        assert absent not in header, absent


# ---- the podman 4.3 variant: --secrets-dir and --no-devices ------------------------------------


def test_secrets_dir_mounts_a_host_folder_instead_of_a_secret(tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path, 'secrets_path = "/etc/creds"\n',
                          extra='[[secrets]]\nname = "API_KEY"\n[[secrets]]\nname = "TOKEN"\n')
    text = render_manifest(plan_file(recipe), secrets_dir="/etc/podtest/secrets/")
    assert [d["kind"] for d in documents(text)] == ["Pod"]  # no Secret document
    pod = by_kind(text)["Pod"]
    volume = next(v for v in pod["spec"]["volumes"] if v["name"] == "secrets")
    assert volume == {"name": "secrets", "hostPath": {"path": "/etc/podtest/secrets", "type": "Directory"}}
    c = container(text)
    assert {"name": "secrets", "mountPath": "/etc/creds", "readOnly": True} in c["volumeMounts"]
    assert {"name": "COMPOSER_SECRETS_DIR", "value": "/etc/creds"} in c["env"]
    header = text.split("---", 1)[0]
    assert "install -d -m 0700 -o root -g root /etc/podtest/secrets\n" in header
    assert "install -m 0600 -o root -g root KEYFILE /etc/podtest/secrets/NAME\n" in header
    assert "API_KEY, TOKEN." in header
    assert "Fill in the Secret" not in header
    for document in documents(text):
        kubernetes_validate.validate(document, K8S_VERSION, strict=True)
    # The rootless variant takes the folder too.
    rootless = render_manifest(plan_file(recipe), rootless=True, secrets_dir="/srv/s")
    assert [d["kind"] for d in documents(rootless)] == ["Pod"]
    assert "hostPath" in str(by_kind(rootless)["Pod"]["spec"]["volumes"])


def test_secrets_dir_without_secrets_changes_nothing_but_nothing_breaks(tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path, 'hostname = "x"\n')
    text = render_manifest(plan_file(recipe), secrets_dir="/etc/s")
    assert "secrets" not in str(by_kind(text)["Pod"])


@pytest.mark.parametrize("bad", ["etc/secrets", "", "/etc/../root", "/etc/se\ncrets"])
def test_secrets_dir_must_be_an_absolute_host_path(tmp_path: Path, bad: str) -> None:
    recipe = write_recipe(tmp_path, 'hostname = "x"\n', extra='[[secrets]]\nname = "T"\n')
    if not bad:  # empty means "no folder": the Secret template as before
        assert "kind: Secret" in render_manifest(plan_file(recipe), secrets_dir=bad)
        return
    with pytest.raises(ComposerError, match="--secrets-dir: .* is not an absolute path"):
        render_manifest(plan_file(recipe), secrets_dir=bad)


def test_no_devices_drops_device_volumes_and_the_gpu_limit(tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path, FULL_POD)
    with_devices = render(recipe)
    assert "/dev/nvidia0, /dev/nvidiactl must exist on the host" in with_devices.split("---")[0]
    text = render_manifest(plan_file(recipe), devices=False)
    pod = by_kind(text)["Pod"]
    c = container(text)
    assert "CharDevice" not in str(pod)
    assert "nvidia.com/gpu" not in c["resources"]["limits"]
    assert c["resources"]["limits"] == {"memory": "2Gi", "cpu": "2"}
    assert {m["name"] for m in c["volumeMounts"]} == {v["name"] for v in pod["spec"]["volumes"]}
    header = text.split("---", 1)[0]
    assert "--no-devices: left out /dev/nvidia0, /dev/nvidiactl, the nvidia.com/gpu limit 1." in header
    assert "must exist on the host" not in header
    # Everything but the devices is as in the full manifest.
    full = container(with_devices)
    for key in ("env", "image", "ports", "securityContext", "livenessProbe"):
        assert c.get(key) == full.get(key)
    for document in documents(text):
        kubernetes_validate.validate(document, K8S_VERSION, strict=True)


def test_cli_kube_secrets_dir_and_no_devices(tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path, FULL_POD, extra='[[secrets]]\nname = "T"\n')
    printed = CliRunner().invoke(cli, ["kube", str(recipe), "--secrets-dir", "/etc/s", "--no-devices"])
    assert printed.exit_code == 0, printed.output
    assert printed.output == render_manifest(plan_file(recipe), secrets_dir="/etc/s", devices=False)


def test_cli_kube_bad_secrets_dir_is_one_line(tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path, 'hostname = "x"\n', extra='[[secrets]]\nname = "T"\n')
    result = subprocess.run(
        [sys.executable, "-m", "composer", "kube", str(recipe), "--secrets-dir", "rel/dir"],
        capture_output=True, text=True, cwd=ROOT,
    )
    assert result.returncode == 1
    first = result.stderr.splitlines()[0]
    assert first == "composer: error: --secrets-dir: 'rel/dir' is not an absolute path on the host"
    assert "Traceback" not in result.stderr


# ---- [pod] security ------------------------------------------------------------------------


def test_every_pod_runs_under_the_default_seccomp_profile_and_hardened_drops_the_seed_caps(
        tmp_path: Path) -> None:
    seed = by_kind(render(ROOT / "recipes" / "turboflow.toml"))["Pod"]["spec"]["containers"][0]
    assert seed["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert seed["securityContext"]["capabilities"]["add"] == ["SYS_ADMIN", "NET_ADMIN", "SYS_PTRACE"]
    child = tmp_path / "hard.toml"
    child.write_text(f'extends = "{ROOT / "recipes" / "turboflow.toml"}"\nname = "hard"\n'
                     '[pod]\nsecurity = "hardened"\ncapabilities = ["SYS_ADMIN", "NET_RAW"]\n')
    text = render(child)
    hardened = by_kind(text)["Pod"]["spec"]["containers"][0]["securityContext"]
    assert hardened["seccompProfile"] == {"type": "RuntimeDefault"}
    assert hardened["capabilities"]["add"] == ["NET_RAW"]  # what hardened allows stays
    assert "# security = hardened: left out the capabilities SYS_ADMIN" in text
    kubernetes_validate.validate(by_kind(text)["Pod"], K8S_VERSION, strict=True)
