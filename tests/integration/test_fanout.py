"""A fanned-out build through a real registry (docker-registry on 127.0.0.1), each stage in
a storage of its own as a Job's Pod would have: the common parent pushed, each restacked
module built alone by `build --only` on the pulled parent and pushed, and the final stage
(`build --from-cache-only`) pulling them, stacking, reconciling and finalizing: the same
image ID as a one-machine build of the recipe. An index killed mid-build and run again
completes the build; a missing module layer fails the final stage in one line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import RECIPES, ROOT, Containers, Registry, copy_tree
from tests.integration.helpers import HOST_LOOPBACK, container_of, job_pod, start_pod, wait_pod
from tests.integration.rootless import reachable_folder
from tests.integration.test_registry import CORE, HTTP, build, by_module, other_machine

pytestmark = pytest.mark.integration

FANOUT = RECIPES / "fanout-ci.toml"
LEAVES = ("motd", "marker", "fan-note")


@pytest.fixture(scope="module")
def repo(containers: Containers, registry: Registry) -> str:
    """The parent stage: the session's storage pushes the base and builds and pushes jq."""
    repo = f"{registry.host}/fanout-cache"
    containers.build_once(CORE)
    build(containers, CORE, "--cache-to", repo, HTTP)  # the shared base, pushed
    containers.composer("build", str(FANOUT), "--only", "jq", "--cache-to", repo, HTTP)
    return repo


def diff_ids(box: Containers, image: str) -> list[str]:
    return json.loads(box.podman("image", "inspect", "--format", "{{json .RootFS.Layers}}", image).stdout)


@pytest.fixture(scope="module")
def final_box(containers: Containers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Containers]:
    with other_machine(containers, tmp_path_factory.mktemp("final")) as box:
        yield box


def check_registry(box: Containers, repo: str) -> list[dict[str, Any]]:
    """`composer job --fan-out --check-registry`: the Jobs the registry's state still needs."""
    out = box.composer("job", str(FANOUT), "--fan-out", "--check-registry", "--image", "registry.example/composer:1",
                       "--cache", repo, HTTP).stdout
    return list(yaml.safe_load_all(out))


def kill_mid_build(box: Containers, leaf: str, repo: str) -> None:
    """An index's Pod killed while its module builds: SIGKILL to every process in it
    (composer, buildah, the step's script) once the module's working container exists."""
    argv = [sys.executable, "-m", "composer", "--cache-dir", str(box.cache_dir), "build", str(FANOUT),
            "--only", leaf, "--cache-from", repo, "--cache-to", repo, HTTP]
    log = box.root / "killed.log"
    with log.open("w") as out:
        proc = subprocess.Popen(argv, env=box.env, cwd=ROOT, stderr=out, start_new_session=True)
    while proc.poll() is None and not box.buildah("containers", "--quiet").stdout.split():
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL, log.read_text()  # killed, not finished
    # Killed mid-build: its working container is left, and nothing was pushed (below).
    assert box.buildah("containers", "--quiet").stdout.split(), log.read_text()


def test_fan_out_builds_the_image_of_a_one_machine_build(containers: Containers, repo: str, final_box: Containers,
                                                      tmp_path: Path) -> None:
    # One machine builds the recipe alone first: the common parent from the cache (the
    # parent stage is the same for both), its three modules, reconcile and finalize itself.
    with other_machine(containers, tmp_path / "one-machine") as one:
        alone, _ = build(one, FANOUT, "--cache-from", repo, HTTP)
        assert {m: c for m, c in by_module(alone).items() if m in LEAVES} == dict.fromkeys(LEAVES, "miss")
        single, single_id = diff_ids(one, alone["image"]), one.images()[alone["image"]]
    # The registry has the common parent (jq), no module layer yet: no parent Job, 3 indices.
    modules, final = check_registry(containers, repo)
    assert modules["spec"]["completions"] == 3 and final["metadata"]["name"].endswith("-final")
    for i, leaf in enumerate(LEAVES):
        with other_machine(containers, tmp_path / f"index-{i}") as box:
            if leaf == "fan-note":
                # The last index's first try is killed mid-build; the registry still lacks its
                # layer, and the retry (here in the same storage, with the kill's leftovers)
                # builds and pushes it.
                kill_mid_build(box, leaf, repo)
                modules, _ = check_registry(containers, repo)
                assert modules["spec"]["completions"] == 1
            result = box.composer("build", str(FANOUT), "--only", leaf, "--cache-from", repo, "--cache-to", repo,
                                  HTTP)
            assert f"{leaf}: layer " in result.stderr and " miss, pushed" in result.stderr
            assert not any(leaf in name or "fanout" in name for name in box.images())  # a layer, no image
        if i == 1:
            # Two of three there: the final stage builds nothing, and names the one missing.
            failed = final_box.composer("build", str(FANOUT), "--no-archive", "--from-cache-only",
                                        "--cache-from", repo, HTTP, check=False)
            assert failed.returncode != 0
            errors = [line for line in failed.stderr.splitlines() if "--from-cache-only" in line]
            assert len(errors) == 1 and "1 module layer(s)" in errors[0] and "fan-note (" in errors[0], failed.stderr
            assert "Traceback" not in failed.stderr
            # What is left to fan out: one index, fan-note's.
            modules, final = check_registry(containers, repo)
            script = modules["spec"]["template"]["spec"]["containers"][0]["command"][2]
            assert modules["spec"]["completions"] == 1 and "  0) module=fan-note ;;\n  *)" in script
    report, _ = build(final_box, FANOUT, "--from-cache-only", "--cache-from", repo, HTTP)
    caches = {layer["module"]: layer["cache"] for layer in report["layers"]}
    assert all(caches[m] in ("pulled", "hit") for m in ("jq", *LEAVES)), caches
    assert caches["reconcile"] == "miss" and caches["finalize"] == "miss"
    # Every layer built on four machines is the one-machine build's, and so is the image:
    # the final image keeps no ID of the container that committed it.
    fanned = diff_ids(final_box, report["image"])
    assert len(fanned) == 7  # base, jq, 3 modules, reconcile, finalize
    assert fanned == single
    assert final_box.images()[report["image"]] == single_id


def kill_pod_mid_build(box: Containers, manifest: Path, timeout: float = 300) -> None:
    """SIGKILL every process of the Pod of manifest once a working container of buildah's
    exists in its storage (seen from inside, with podman exec)."""
    pod = yaml.safe_load(manifest.read_text())
    name = pod["metadata"]["name"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        inside = box.podman("exec", container_of(pod), "buildah", "containers", "--quiet", check=False)
        if inside.returncode == 0 and inside.stdout.split():
            box.podman("pod", "kill", "--signal", "KILL", name)
            return
        time.sleep(0.1)
    raise AssertionError(f"{name}: no working container in {timeout} s")


def config_digest(box: Containers, ref: str) -> str:
    """The image ID of ref in the registry (its config's digest)."""
    manifest = json.loads(box.run("skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{ref}").stdout)
    return str(manifest["config"]["digest"])


def test_the_fan_out_jobs_run_as_unprivileged_pods(containers: Containers, registry: Registry,
                                                    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    """The three Jobs `composer job --fan-out` prints, each Pod as the Job controller would
    make it (the Indexed Job's with its JOB_COMPLETION_INDEX), played by podman without
    privileges, every Pod with its own storage: the parent, then the three indices at once,
    then the final stage. Its image is the image of one Pod that builds the recipe alone."""
    image = containers.build_once(RECIPES / "composer-ci.toml")["image"]
    work = copy_tree(RECIPES, reachable_folder(tmp_path_factory, "fanout-pods") / "recipes")
    registries_conf = work.parent / "test-registry.conf"
    registries_conf.write_text(f'[[registry]]\nlocation = "{HOST_LOOPBACK}:{registry.port}"\ninsecure = true\n')
    registries_conf.chmod(0o644)
    inside = f"{HOST_LOOPBACK}:{registry.port}"
    cache = f"{inside}/fanout-pods-cache"
    text = containers.composer("job", str(FANOUT), "--fan-out", "--image", image, "--recipe-path",
                               "/work/fanout-ci.toml", "--cache", cache,
                               "--push", f"{inside}/fanout-pods:fanned").stdout
    parent, modules, final = yaml.safe_load_all(text)

    code, logs, _ = wait_pod(containers, start_pod(containers, job_pod(parent, work, registries_conf), tmp_path))
    assert code == "0" and "base debootstrap:trixie" in logs and "jq " in logs, logs
    # Before any index: one Pod builds the recipe alone, the common parent from the cache (the
    # parent stage is the same for both), its three modules, reconcile and finalize itself.
    alone = yaml.safe_load(containers.composer(
        "job", str(FANOUT), "--image", image, "--recipe-path", "/work/fanout-ci.toml", "--cache-from", cache,
        "--push", f"{inside}/fanout-pods:alone").stdout)
    code, logs, _ = wait_pod(containers, start_pod(containers, job_pod(alone, work, registries_conf), tmp_path))
    assert code == "0" and logs.count("built in") == 5, logs  # three modules, reconcile, finalize
    # The indices side by side, as parallelism allows (here all three).
    assert modules["spec"]["parallelism"] == modules["spec"]["completions"] == 3
    started = [start_pod(containers, job_pod(modules, work, registries_conf, index=i), tmp_path)
               for i in range(3)]
    # Index 2's Pod is killed mid-build (SIGKILL to every process in it, as an eviction or a
    # lost node does); the other two finish, and the registry lacks fan-note's layer alone.
    kill_pod_mid_build(containers, started[2])
    code, logs, _ = wait_pod(containers, started.pop())
    assert code == "137" and "fan-note" in logs and "pushed" not in logs, logs
    for leaf, manifest in zip(LEAVES[:2], started, strict=True):
        code, logs, given = wait_pod(containers, manifest)
        assert code == "0" and f"{leaf}: layer " in logs and " miss, pushed" in logs, logs
        assert given["Privileged"] is False and given["CapAdd"] == ["CAP_SYS_ADMIN"]
    left, _ = check_registry(containers, cache.replace(inside, registry.host))
    assert left["spec"]["completions"] == 1 and "  0) module=fan-note ;;" in left["spec"]["template"]["spec"][
        "containers"][0]["command"][2]
    # Its retry, a new Pod for the same index (what backoffLimitPerIndex makes), builds it.
    code, logs, _ = wait_pod(containers, start_pod(containers, job_pod(modules, work, registries_conf, index=2),
                                                   tmp_path))
    assert code == "0" and "fan-note: layer " in logs and " miss, pushed" in logs, logs
    code, logs, _ = wait_pod(containers, start_pod(containers, job_pod(final, work, registries_conf), tmp_path))
    assert code == "0", logs
    assert all(f"{leaf} " in logs for leaf in LEAVES) and "pulled" in logs and "push " in logs, logs

    fanned, single = (config_digest(containers, f"{registry.host}/fanout-pods:{tag}") for tag in ("fanned", "alone"))
    assert fanned == single
