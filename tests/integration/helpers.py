"""Small helpers the integration tests share: ports, podman's version, HTTP with retries,
build Pods played as a kubelet would run them."""

from __future__ import annotations

import contextlib
import copy
import json
import shlex
import shutil
import socket
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from composer.emit.job import pod_of_job
from tests.conftest import Containers
from tests.integration.rootless import AUTO_USERNS, ensure_subids

# What a pod in a user namespace of its own sees of the host's 127.0.0.1: podman kube play
# with slirp4netns (allow_host_loopback) shows it at 10.0.2.2.
HOST_LOOPBACK = "10.0.2.2"


def shim(tmp_path: Path, env: Mapping[str, str], tool: str, script: str) -> dict[str, str]:
    """env with a folder first on its PATH in which `tool` is script (REAL in it: the real
    tool, as env's PATH finds it): the real tool, except at the moment a test picks."""
    folder = tmp_path / "bin"
    folder.mkdir(exist_ok=True)
    real = shutil.which(tool, path=env["PATH"])
    assert real is not None, tool
    (folder / tool).write_text(script.replace("REAL", real))
    (folder / tool).chmod(0o755)
    return {**env, "PATH": f"{folder}:{env['PATH']}"}


# A skopeo whose copy into containers-storage (the one to an image named $CUT_KEY when that
# is set) stops where c/storage has created the image and not yet named it: the real copy,
# then the name taken away (the image such a stop leaves). Then it signals composer (SIG)
# and waits (WAIT seconds) to be ended, as a copy still at work would.
CUT_SHORT_COPY = """#!/bin/bash
[ "$1" = copy ] || exec REAL "$@"
[ -z "$CUT_KEY" ] || [[ "${@: -1}" == *":$CUT_KEY" ]] || exec REAL "$@"
REAL "$@" || exit
dest="${@: -1}"; ref="${dest#containers-storage:}"; ref="${ref#\\[*\\]}"
podman untag "$ref"
kill -SIG $PPID; sleep WAIT; exit 1
"""


def free_port() -> int:
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def podman_version(containers: Containers) -> tuple[int, ...]:
    text = containers.podman("version", "--format", "{{.Client.Version}}").stdout.strip()
    return tuple(int(p) for p in text.split("-")[0].split(".")[:2])


def header_play_argv(text: str) -> list[str]:
    """The `podman kube play ...` line of a manifest's header comment."""
    line = next(x for x in text.splitlines() if x.startswith("# Play (root):"))
    return shlex.split(line.split(":", 1)[1])


def http(port: int, path: str, token: str | None = None, timeout: float = 120) -> tuple[int, str]:
    """GET 127.0.0.1:port/path, retrying until the server answers (or timeout)."""
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(req, timeout=5) as res:
                return res.status, res.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def start_pod(containers: Containers, pod: dict[str, Any], folder: Path) -> Path:
    """Play a build Pod (`hostUsers: false`) as a kubelet would run it: a user namespace of
    65536 IDs of its own (podman's auto, from the "containers" ranges), and the host's
    loopback at HOST_LOOPBACK. Returns its manifest, for wait_pod."""
    ensure_subids(*AUTO_USERNS)
    name = pod["metadata"]["name"] = f"{pod['metadata']['name'][:40]}-{uuid.uuid4().hex[:8]}"
    # podman 4.3 plays an emptyDir as a named volume of the volume's name, which every pod
    # with that name would share: one of the pod's own instead, fresh as a kubelet's is.
    spec = pod["spec"]
    renamed = {v["name"]: f"{name}-{v['name']}" for v in spec["volumes"] if "emptyDir" in v}
    for volume in spec["volumes"]:
        volume["name"] = renamed.get(volume["name"], volume["name"])
    for mount in spec["containers"][0]["volumeMounts"]:
        mount["name"] = renamed.get(mount["name"], mount["name"])
    manifest = folder / f"{name}.yaml"
    manifest.write_text(yaml.safe_dump(pod, sort_keys=False))
    containers.podman("kube", "play", "--userns", "auto:size=65536", "--network",
                      "slirp4netns:allow_host_loopback=true", str(manifest))
    return manifest


def container_of(pod: dict[str, Any]) -> str:
    """The name podman kube play gives the Pod's one container."""
    return f"{pod['metadata']['name']}-{pod['spec']['containers'][0]['name']}"


def wait_pod(containers: Containers, manifest: Path, timeout: float = 900) -> tuple[str, str, dict[str, Any]]:
    """The exit code and log of the Pod's one container, and what podman gave it (its
    HostConfig); the Pod and its emptyDir volumes are removed."""
    pod = yaml.safe_load(manifest.read_text())
    ctr = container_of(pod)
    try:
        code = containers.podman("wait", ctr, timeout=timeout).stdout.strip()
        logs = containers.podman("logs", ctr).stdout + containers.podman("logs", ctr).stderr
        (given,) = json.loads(containers.podman("inspect", ctr).stdout)
        return code, logs, given["HostConfig"]
    finally:
        containers.podman("kube", "down", str(manifest), check=False)
        containers.podman("pod", "rm", "--force", pod["metadata"]["name"], check=False)  # 4.3 may keep it
        volumes = [v["name"] for v in pod["spec"]["volumes"] if "emptyDir" in v]
        containers.podman("volume", "rm", "--force", *volumes, check=False)


def job_pod(job: dict[str, Any], work: Path, registries_conf: Path, index: int | None = None) -> dict[str, Any]:
    """The Pod the Job controller would make of job's template (for an Indexed Job, the one
    for index: JOB_COMPLETION_INDEX set, as the controller sets it), with the recipe's folder
    at /work and the test registry listed as plain HTTP in the image's registries.conf.d, as a
    cluster lists an insecure registry (docs/build-job.md)."""
    pod = copy.deepcopy(pod_of_job(job))
    spec = pod["spec"]
    ctr = spec["containers"][0]
    if index is not None:
        ctr["env"].append({"name": "JOB_COMPLETION_INDEX", "value": str(index)})
        pod["metadata"]["name"] += f"-{index}"
    spec["volumes"] += [{"name": "work", "hostPath": {"path": str(work), "type": "Directory"}},
                        {"name": "registries", "hostPath": {"path": str(registries_conf), "type": "File"}}]
    ctr["volumeMounts"] += [{"name": "work", "mountPath": "/work", "readOnly": True},
                            {"name": "registries", "mountPath": "/etc/containers/registries.conf.d/test.conf",
                             "readOnly": True}]
    return pod
