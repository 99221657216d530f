"""`composer job`: a Kubernetes batch/v1 Job that runs `composer build RECIPE` in the image
of recipes/composer.toml, against a registry cache (docs/build-job.md).

Pure: a JobConfig in, a manifest out; nothing here starts a process."""

from __future__ import annotations

import copy
import re
import shlex
from dataclasses import dataclass, replace
from typing import Any

from composer.emit.output import dump

# Where the image of recipes/composer.toml keeps composer's source, shipped recipes included.
PROJECT_IN_IMAGE = "/opt/composer"
STORAGE_MOUNT = "/var/lib/containers"  # the image's storage.conf (layers/composer-tools)
CACHE_MOUNT = "/root/.cache/composer"
AUTH_MOUNT = "/run/composer-registry"
SIGNING_MOUNT = "/run/composer-signing"
# The keys of the signing Secret: the names `cosign generate-key-pair k8s://NS/NAME` gives
# them, so that command (or kubectl create secret generic with --from-file) makes it.
SIGNING_KEYS = {"cosign.key": "--sign-key", "cosign.password": "--sign-passphrase-file", "cosign.pub": "--verify-key"}
LABELS = {"app.kubernetes.io/name": "composer", "app.kubernetes.io/component": "build"}
# buildah in the container mounts (each layer's overlay, /proc and /dev for a chroot step)
# and makes mount namespaces: CAP_SYS_ADMIN, here held in the pod's own user namespace
# (hostUsers: false), so over nothing of the node's. RuntimeDefault seccomp allows mount and
# unshare to a holder of CAP_SYS_ADMIN; the runtime's default AppArmor profile denies every
# mount, hence Unconfined there (docs/build-job.md, "Privileges").
UNPRIVILEGED = {
    "capabilities": {"add": ["SYS_ADMIN"]},
    "seccompProfile": {"type": "RuntimeDefault"},
    "appArmorProfile": {"type": "Unconfined"},
}


@dataclass(frozen=True)
class JobConfig:
    """What the Job runs: recipe is its path as the container sees it (relative to
    /opt/composer, or absolute in a mounted volume)."""

    name: str
    recipe: str
    image: str
    cache_from: str | None = None
    cache_to: str | None = None
    push: str | None = None
    registry_secret: str | None = None  # a kubernetes.io/dockerconfigjson Secret
    signing_secret: str | None = None  # cosign.key, cosign.password, cosign.pub (docs/build-job.md)
    jobs: int | None = None
    backoff_limit: int = 0
    ttl_seconds: int = 86400
    privileged: bool = False  # the fallback for a cluster without user namespaces


def job_name(recipe_name: str) -> str:
    """A DNS-1123 label for the recipe's build Job: composer-build-<name>."""
    slug = re.sub(r"[^a-z0-9-]+", "-", recipe_name.lower()).strip("-") or "recipe"
    return f"composer-build-{slug}"[:63].rstrip("-")


def build_args(config: JobConfig) -> list[str]:
    """The arguments of `composer` in the Job's container."""
    args = ["build", config.recipe, "--no-archive"]
    if config.cache_from:
        args += ["--cache-from", config.cache_from]
    if config.cache_to:
        args += ["--cache-to", config.cache_to]
    if config.push:
        args += ["--push", config.push]
    args += signing_args(config)
    if config.jobs:
        args += ["--jobs", str(config.jobs)]
    return args


def signing_args(config: JobConfig) -> list[str]:
    """Sign what is pushed, verify what is pulled, with the Secret's files (paths only)."""
    if not config.signing_secret:
        return []
    args: list[str] = []
    if config.cache_to or config.push:
        args += ["--sign-key", f"{SIGNING_MOUNT}/cosign.key",
                 "--sign-passphrase-file", f"{SIGNING_MOUNT}/cosign.password"]
    if config.cache_from:
        args += ["--verify-key", f"{SIGNING_MOUNT}/cosign.pub"]
    return args


def container(config: JobConfig) -> dict[str, Any]:
    mounts: list[dict[str, Any]] = [
        {"name": "storage", "mountPath": STORAGE_MOUNT},
        {"name": "cache", "mountPath": CACHE_MOUNT},
    ]
    env = [{"name": "BUILDAH_ISOLATION", "value": "chroot"}]
    if config.registry_secret:
        mounts.append({"name": "registry-auth", "mountPath": AUTH_MOUNT, "readOnly": True})
        env.append({"name": "REGISTRY_AUTH_FILE", "value": f"{AUTH_MOUNT}/auth.json"})
    if config.signing_secret:
        mounts.append({"name": "signing", "mountPath": SIGNING_MOUNT, "readOnly": True})
    return {
        "name": "composer",
        "image": config.image,
        "command": ["composer"],
        "args": build_args(config),
        "workingDir": PROJECT_IN_IMAGE,
        "env": env,
        "securityContext": {"privileged": True} if config.privileged else copy.deepcopy(UNPRIVILEGED),
        "volumeMounts": mounts,
    }


def volumes(config: JobConfig) -> list[dict[str, Any]]:
    # The storage is a volume, not the container's own overlay root: an overlay cannot
    # sit on an overlay, and the layers need room.
    found: list[dict[str, Any]] = [
        {"name": "storage", "emptyDir": {}},
        {"name": "cache", "emptyDir": {}},
    ]
    if config.registry_secret:
        found.append({"name": "registry-auth", "secret": {
            "secretName": config.registry_secret,
            "items": [{"key": ".dockerconfigjson", "path": "auth.json"}],
        }})
    if config.signing_secret:
        # Readable by root only (the build runs as root); never an environment variable,
        # which `ps e`, /proc/1/environ and a crash dump would show.
        found.append({"name": "signing", "secret": {
            "secretName": config.signing_secret,
            "defaultMode": 0o400,
            "items": [{"key": key, "path": key} for key in SIGNING_KEYS],
        }})
    return found


def pod_spec(config: JobConfig) -> dict[str, Any]:
    # The build talks to no Kubernetes API: no service-account token in a container that
    # runs recipe scripts.
    spec: dict[str, Any] = {"restartPolicy": "Never", "automountServiceAccountToken": False}
    if not config.privileged:
        spec["hostUsers"] = False  # root in the pod is an unprivileged user on the node
    return {**spec, "containers": [container(config)], "volumes": volumes(config)}


def privileges(config: JobConfig) -> str:
    """The header's words for what the container may do."""
    if config.privileged:
        return "privileged (--privileged)"
    return "unprivileged: a user namespace of its own (hostUsers: false), CAP_SYS_ADMIN in it"


def job_document(config: JobConfig) -> dict[str, Any]:
    """The batch/v1 Job."""
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": config.name, "labels": dict(LABELS)},
        "spec": {
            "backoffLimit": config.backoff_limit,
            "ttlSecondsAfterFinished": config.ttl_seconds,
            "template": {"metadata": {"labels": dict(LABELS)}, "spec": pod_spec(config)},
        },
    }


def pod_of_job(job: dict[str, Any]) -> dict[str, Any]:
    """The Pod a Job's template describes, for `podman kube play` where no cluster is."""
    template = job["spec"]["template"]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": job["metadata"]["name"], "labels": dict(template["metadata"]["labels"])},
        "spec": template["spec"],
    }


def render_job(config: JobConfig, as_pod: bool = False) -> str:
    """The manifest as YAML with a header comment: the Job, or with as_pod its Pod."""
    job = job_document(config)
    header = (
        f"# composer build job: composer {' '.join(build_args(config))}\n"
        f"# in {config.image}, {privileges(config)}; docs/build-job.md\n"
    )
    return header + dump(pod_of_job(job) if as_pod else job)


# --- a fanned-out build: parent Job, one Indexed Job of module layers, final Job ------


@dataclass(frozen=True)
class FanOut:
    """The three stages of a restack recipe's build as Jobs (docs/build-job.md, "Fan-out").
    modules: the restacked modules, one completion index each, in plan order."""

    config: JobConfig  # name, recipe, image, cache (from = to), push
    modules: tuple[str, ...]
    parallelism: int | None = None
    parent_cached: bool = False  # the registry has the common parent: no parent Job
    cached_modules: tuple[str, ...] = ()  # restacked modules whose layer the registry has: no index


def stage_config(config: JobConfig, suffix: str, push: str | None = None) -> JobConfig:
    name = f"{config.name[:63 - len(suffix) - 1].rstrip('-')}-{suffix}"
    return replace(config, name=name, push=push, jobs=None)


def index_script(fan: FanOut) -> str:
    """The Indexed Job's container: JOB_COMPLETION_INDEX picks the module (a case with one
    branch per index), then exec composer (docs/build-job.md)."""
    args = " ".join(shlex.quote(a) for a in build_args(stage_config(fan.config, "modules")))
    cases = "".join(f"  {i}) module={shlex.quote(m)} ;;\n" for i, m in enumerate(fan.modules))
    return (f'case "$JOB_COMPLETION_INDEX" in\n{cases}'
            '  *) echo "no module for index $JOB_COMPLETION_INDEX" >&2; exit 2 ;;\nesac\n'
            f'exec composer {args} --only "$module"\n')


def fanout_documents(fan: FanOut) -> list[dict[str, Any]]:
    """The parent Job (unless the registry has the parent), the Indexed Job, the final Job."""
    docs = []
    if not fan.parent_cached:
        parent = stage_config(fan.config, "parent")
        job = job_document(parent)
        job["spec"]["template"]["spec"]["containers"][0]["args"] = [*build_args(parent), "--parent-only"]
        docs.append(job)
    if fan.modules:  # none when the registry has every module layer
        modules = stage_config(fan.config, "modules")
        job = job_document(modules)
        spec = job["spec"]
        spec.update({"completionMode": "Indexed", "completions": len(fan.modules),
                     "parallelism": fan.parallelism or len(fan.modules), "backoffLimitPerIndex": 1})
        spec.pop("backoffLimit")  # per index instead: a failed index is retried alone
        box = spec["template"]["spec"]["containers"][0]
        box["command"] = ["/bin/sh", "-c", index_script(fan)]
        del box["args"]
        docs.append(job)
    final = replace(stage_config(fan.config, "final", push=fan.config.push), cache_to=None)
    job = job_document(final)
    job["spec"]["template"]["spec"]["containers"][0]["args"] = [*build_args(final), "--from-cache-only"]
    docs.append(job)
    for later in docs[1:]:
        # Created suspended: each starts when the stage before it completed (kubectl patch).
        later["spec"]["suspend"] = True
    return docs


def wait_sequence(names: list[str]) -> list[str]:
    """The commands that run the stages in order, by the standard means only."""
    lines = [f"kubectl wait --for=condition=complete --timeout=2h job/{names[0]}"]
    for name in names[1:]:
        lines += [f"kubectl patch job/{name} --type=merge -p '{{\"spec\":{{\"suspend\":false}}}}'",
                  f"kubectl wait --for=condition=complete --timeout=2h job/{name}"]
    return lines


def render_fanout(fan: FanOut) -> str:
    """The Jobs as one multi-document YAML, with the order they must run in as comments."""
    docs = fanout_documents(fan)
    names = [d["metadata"]["name"] for d in docs]
    header = [f"# composer fan-out build of {fan.config.recipe}: {len(fan.modules)} restacked modules "
              f"({', '.join(fan.modules)}) built side by side; docs/build-job.md",
              "# kubectl apply -f this file, then run the stages in order (later Jobs are created suspended):"]
    if fan.parent_cached:
        header.append("# (no parent Job: the registry cache already has the common parent)")
    if fan.cached_modules:
        header.append(f"# (no index for {', '.join(fan.cached_modules)}: the registry cache has their layers)")
    header += [f"#   {line}" for line in wait_sequence(names)]
    return "\n".join(header) + "\n" + "---\n".join(dump(d) for d in docs)
