"""The podman-kube manifest: golden files, Kubernetes schemas, and the checks on [pod]."""

from __future__ import annotations

import runpy
import textwrap
from dataclasses import fields
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from click.testing import CliRunner

from composer.cli import cli
from composer.errors import ComposerError
from composer.kube import PodConfig, manifest_path, render_manifest, seconds
from composer.planner import plan_file
from composer.schema import load_schema

ROOT = Path(__file__).resolve().parents[2]
GOLDEN_DIR = ROOT / "tests" / "golden"
KUBE_GOLDEN: dict[str, str] = runpy.run_path(str(GOLDEN_DIR / "regenerate"))["KUBE_GOLDEN"]
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


def render(recipe: Path) -> str:
    return render_manifest(plan_file(recipe))


def container(text: str) -> dict[str, Any]:
    containers: list[dict[str, Any]] = by_kind(text)["Pod"]["spec"]["containers"]
    return containers[0]


# ---- golden files and schemas -----------------------------------------------------------


@pytest.mark.parametrize("golden", sorted(KUBE_GOLDEN))
def test_golden(golden: str) -> None:
    path = GOLDEN_DIR / golden
    assert path.exists(), f"missing {path}: run tests/golden/regenerate"
    assert render(ROOT / KUBE_GOLDEN[golden]) == path.read_text(), (
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
    assert probe == {"httpGet": {"path": "/health", "port": 9090}, "periodSeconds": 60,
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
    """Every [pod] field of the schema is read into PodConfig (resources as limits+requests)."""
    schema_fields = set(load_schema("recipe")["properties"]["pod"]["properties"])
    config_fields = {f.name for f in fields(PodConfig)} - {"name", "limits", "requests"}
    assert schema_fields == config_fields | {"resources"}


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
