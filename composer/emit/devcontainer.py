"""devcontainer.json for the built image: the devpod opened by the Dev Containers tools.

A pure renderer over the PodConfig the kube emitter derives from [pod] (one reading of
[pod], two outputs). docs/devcontainer.md says how to open it with `devcontainer up`.
"""

from __future__ import annotations

import json
from typing import Any

from composer.emit.kube import DEFAULT_SECRETS_PATH, SECRETS_DIR_ENV, PodConfig, pod_config
from composer.model import Plan

# The user people work as in the devpod; the image's own user (root) runs supervisord.
DEV_USER = "devuser"


# The Dev Containers CLI runs podman with --userns=keep-id for a non-root remoteUser unless
# runArgs map ids themselves; root's podman refuses keep-id ("only supported in rootless
# mode"). An identity map of the ids the image uses (nobody is 65534) keeps files' owners.
IDENTITY_MAP = ("--uidmap=0:0:65536", "--gidmap=0:0:65536")


def render(plan: Plan, podman_secrets: bool = False, rootful: bool = False) -> str:
    """The devcontainer.json text (stable key order, trailing newline).

    podman_secrets=True adds a `--secret` run argument per recipe secret: podman refuses
    to start when one of them was not created, so it is a choice, not the default.
    rootful=True is for a podman run by root (see IDENTITY_MAP)."""
    return json.dumps(document(plan, pod_config(plan), podman_secrets, rootful), indent=2) + "\n"


def document(plan: Plan, config: PodConfig, podman_secrets: bool = False,
             rootful: bool = False) -> dict[str, Any]:
    image = plan.finalize.image
    out: dict[str, Any] = {
        "name": f"{plan.recipe.name}-{plan.recipe.tag}",
        "image": plan.image_ref,
        # The image's entrypoint starts supervisord and the start-up hooks: never replace it.
        "overrideCommand": False,
        "containerUser": image.user or "root",
        "remoteUser": remote_user(plan),
        # The entrypoint already ran the start-up hooks; the CLI must not rewrite users.
        "updateRemoteUserUID": False,
    }
    if ports := forward_ports(image.ports, config):
        out["forwardPorts"] = ports
        if attributes := port_attributes(config):
            out["portsAttributes"] = attributes
    if mounts := volume_mounts(config):
        out["mounts"] = mounts
    if args := run_args(plan, config, podman_secrets) + (list(IDENTITY_MAP) if rootful else []):
        out["runArgs"] = args
    if plan.recipe.secrets and config.secrets_path != DEFAULT_SECRETS_PATH:
        out["containerEnv"] = {SECRETS_DIR_ENV: config.secrets_path}
    if plan.recipe.secrets:
        # The spec's "recommended secrets": names and descriptions, never values.
        out["secrets"] = {
            s.name: {"description": s.description} if s.description else {}
            for s in plan.recipe.secrets
        }
    if image.workdir:
        out["workspaceFolder"] = image.workdir
    return out


def remote_user(plan: Plan) -> str:
    """devuser when the recipe makes it, else its first login user, else the image's user."""
    names = [u for u in user_names(plan) if u and u != "root"]
    if not names:
        return plan.finalize.image.user or "root"
    return DEV_USER if DEV_USER in names else names[0]


def user_names(plan: Plan) -> list[str]:
    """The login users the recipe's `users` module makes (none: no users module)."""
    for layer in plan.recipe.layers:
        if layer.module == "users":
            return [u.get("name", "") for u in layer.options.get("users", ()) if isinstance(u, dict)]
    return []


def forward_ports(image_ports: tuple[str, ...], config: PodConfig) -> list[int]:
    numbers = [p.container for p in config.ports if p.protocol == "TCP"]
    for text in image_ports:
        number, _, proto = text.partition("/")
        if (proto or "tcp").lower() == "tcp" and int(number) not in numbers:
            numbers.append(int(number))
    return numbers


def port_attributes(config: PodConfig) -> dict[str, Any]:
    return {str(p.container): {"label": p.name} for p in config.ports if p.name}


def volume_mounts(config: PodConfig) -> list[str]:
    # The claim name is the named volume `podman kube play` makes: the same data either way.
    return [f"source={claim},target={path},type=volume" for _, claim, path in config.volumes]


def run_args(plan: Plan, config: PodConfig, podman_secrets: bool) -> list[str]:
    args = [f"--cap-add={c}" for c in config.capabilities]
    if config.shm_size:
        args.append(f"--shm-size={podman_size(config.shm_size)}")
    args += [f"--device={d}" for d in config.devices]
    if config.hostname:
        args.append(f"--hostname={config.hostname}")
    # podman secrets by name (`podman secret create NAME FILE` first): mounted as files
    # under the secrets folder, where the start-up hooks read them. Values never appear here.
    if podman_secrets:
        args += [
            f"--secret={s.name},type=mount,target={config.secrets_path}/{s.name}"
            for s in plan.recipe.secrets
        ]
    return args


def podman_size(quantity: str) -> str:
    """A Kubernetes quantity (1Gi, 512Mi) as podman writes it (1g, 512m)."""
    for suffix, unit in (("Gi", "g"), ("Mi", "m"), ("Ki", "k"), ("G", "g"), ("M", "m"), ("K", "k")):
        if quantity.endswith(suffix):
            return quantity[: -len(suffix)] + unit
    return quantity
