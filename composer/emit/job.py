"""`composer job`: a Kubernetes batch/v1 Job that runs `composer build RECIPE` in the image
of recipes/composer.toml, against a registry cache (docs/build-job.md).

Pure: a JobConfig in, a manifest out; nothing here starts a process."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from composer.emit.output import dump

# Where the image of recipes/composer.toml keeps composer's source, shipped recipes included.
PROJECT_IN_IMAGE = "/opt/composer"
STORAGE_MOUNT = "/var/lib/containers"  # the image's storage.conf (layers/composer-tools)
CACHE_MOUNT = "/root/.cache/composer"
AUTH_MOUNT = "/run/composer-registry"
LABELS = {"app.kubernetes.io/name": "composer", "app.kubernetes.io/component": "build"}


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
    jobs: int | None = None
    backoff_limit: int = 0
    ttl_seconds: int = 86400


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
    if config.jobs:
        args += ["--jobs", str(config.jobs)]
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
    return {
        "name": "composer",
        "image": config.image,
        "command": ["composer"],
        "args": build_args(config),
        "workingDir": PROJECT_IN_IMAGE,
        "env": env,
        # buildah in the container mounts file systems, makes namespaces and (with the
        # overlay driver) uses /dev/fuse: a privileged container (docs/build-job.md).
        "securityContext": {"privileged": True},
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
    return found


def pod_spec(config: JobConfig) -> dict[str, Any]:
    return {"restartPolicy": "Never", "containers": [container(config)], "volumes": volumes(config)}


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
        f"# in {config.image}, privileged (buildah in a container); docs/build-job.md\n"
    )
    return header + dump(pod_of_job(job) if as_pod else job)
