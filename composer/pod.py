"""The recipe's [pod] checked against the plan: every problem at once, each naming the file
that set the value (names, devices, volumes, the liveness probe, and what a dropped module
left behind). Pure: `composer check` and the kube emitter both ask it."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from composer.errors import ComposerError, ComposerErrors
from composer.model import Plan, Pod, Recipe
from composer.planner import replacement_ports
from composer.schema import display

# Volume keys composer uses itself: podman 4.3 turns the emptyDir and the secret volume
# into named volumes <name>-shm and <name>-secrets, the claims' namespace.
SECRETS_VOLUME = "secrets"
RESERVED_VOLUMES = ("shm", SECRETS_VOLUME)
# Folders of device nodes: a hostPath CharDevice must name a node, and bind-mounting the
# folder does not grant access to the nodes in it (the device cgroup still denies them).
DEVICE_FOLDERS = ("/dev/dri", "/dev/snd", "/dev/input", "/dev/bus/usb", "/dev/net")
K8S_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def check_pod(plan: Plan) -> None:
    """Raise every problem of the recipe's [pod] (one error, or all of them together)."""
    errors = pod_errors(plan)
    if errors:
        raise errors[0] if len(errors) == 1 else ComposerErrors(errors)


def pod_errors(plan: Plan) -> list[ComposerError]:
    """Every problem of the recipe's [pod] against the plan, each naming the file that set
    the value: names, devices, volumes, the liveness probe, and what a dropped module left
    behind (a mapped port or a probe port nothing publishes any more, aliases without a
    network)."""
    recipe = plan.recipe
    pod = recipe.pod
    checks = [
        lambda: check_k8s_name(recipe.name, f"{recipe.origin('name')}: name", "the Pod's name"),
        lambda: check_devices(pod.devices, recipe.origin("pod", "devices")),
        lambda: check_volumes(pod, recipe.origin("pod", "volumes")),
        lambda: check_ports(pod, recipe.origin("pod", "ports")),
        lambda: check_curl(plan, recipe.origin("pod", "liveness")) if pod.probe else None,
        lambda: check_published(plan),
        lambda: check_aliases(recipe),
    ]
    errors: list[ComposerError] = []
    for check in checks:
        try:
            check()
        except ComposerErrors as e:
            errors += e.errors
        except ComposerError as e:
            errors.append(e)
    return errors


def dangling_where(recipe: Recipe, field_name: str, *path: str) -> str:
    """'file: field' for a value nothing serves any more: the recipe that dropped modules
    is blamed (its edit left the value behind), naming the file that set the value."""
    origin = recipe.origin(*path)
    if not recipe.removed or origin == display(recipe.path):
        return f"{origin}: {field_name}"
    return f"{display(recipe.path)}: {field_name} (set in {origin})"


def dropped_text(recipe: Recipe) -> str:
    if not recipe.removed:
        return ""
    return " (dropped from the parent: " + ", ".join(f"{m} by {fld}" for m, _, fld in recipe.removed) + ")"


def check_published(plan: Plan) -> None:
    """When a child recipe dropped modules: each mapped pod port and the liveness probe's
    port is still one the image publishes (a module's ports or [image].ports), else the
    dropped module most likely served it. (Without dropped modules a pod may map a port
    its image does not declare.)"""
    recipe = plan.recipe
    if not recipe.removed:
        return
    published = {int(p.partition("/")[0]) for p in plan.finalize.image.ports}
    # What a replacing module publishes and the pod does not map: most likely what the
    # dangling port should now be.
    instead = [f"{layer.module}'s {port.partition('/')[0]}"
               for layer, port in replacement_ports(recipe, {s.module.name: s.module for s in plan.steps})]
    errors = []
    for i, port in enumerate(recipe.pod.ports):
        if port.container not in published:
            label = port.name or port.container
            hint = f"drop it: [unset] pod = {{ ports = [{label!r}] }}".replace("'", '"')
            if instead:
                hint += f"; and map {', '.join(instead)} (no pod port maps it)"
            errors.append(ComposerError(
                f"{dangling_where(recipe, f'pod.ports[{i}]', 'pod', 'ports')}: container port {port.container} "
                f"is published by no module of the recipe nor [image].ports{dropped_text(recipe)}",
                hint=hint,
            ))
    probe = recipe.pod.probe
    # `liveness = true` runs the image's health check when there is one: checked below.
    http_probe = probe is not None and not (recipe.pod.liveness is True and plan.finalize.image.healthcheck)
    if probe is not None and http_probe and probe.port not in published:
        errors.append(ComposerError(
            f"{dangling_where(recipe, 'pod.liveness', 'pod', 'liveness')}: probes port {probe.port}, which no "
            f"module of the recipe publishes{dropped_text(recipe)}",
            hint="set pod.liveness to a published port, or drop it: [unset] pod = { liveness = true }",
        ))
    health = recipe.image.healthcheck
    modules = {s.module.name for s in plan.steps}
    for folder in module_folders(health.test if health else ()):
        if folder not in modules:
            errors.append(ComposerError(
                f"{dangling_where(recipe, 'image.healthcheck', 'image', 'healthcheck', 'test')}: reaches "
                f"/run/composer/{folder}/, the run-time folder of module {folder!r}, which the recipe does not "
                f"have{dropped_text(recipe)}",
                hint="set [image.healthcheck] anew, or drop it: [unset] image = { healthcheck = true }",
            ))
    for local in local_ports(health.test if health else ()):
        if local not in published:
            errors.append(ComposerError(
                f"{dangling_where(recipe, 'image.healthcheck', 'image', 'healthcheck', 'test')}: tests port {local} "
                f"on localhost, which no module of the recipe publishes{dropped_text(recipe)}",
                hint="set [image.healthcheck] anew, or drop it: [unset] image = { healthcheck = true }",
            ))
    if errors:
        raise errors[0] if len(errors) == 1 else ComposerErrors(errors)


RUN_FOLDER = re.compile(r"^/run/composer/([a-z0-9][a-z0-9-]*)/")


def module_folders(argv: Sequence[str]) -> list[str]:
    """The modules whose run-time folder (/run/composer/MODULE/, e.g. a service's socket) a
    health check command reaches."""
    return [m.group(1) for arg in argv if (m := RUN_FOLDER.match(arg))]


LOCAL_URL = re.compile(r"\b(?:localhost|127\.0\.0\.1|\[::1\]):(\d+)\b")


def local_ports(argv: Sequence[str]) -> list[int]:
    """The ports a health check command reaches on localhost (http://localhost:9090/...)."""
    return [int(port) for arg in argv for port in LOCAL_URL.findall(arg)]


def check_aliases(recipe: Recipe) -> None:
    if not recipe.pod.aliases or recipe.pod.network:
        return
    unset_by = dict(recipe.unset).get("pod.network")
    origin = recipe.origin("pod", "aliases")
    where = (f"{unset_by}: unset.pod.network: leaves pod.aliases (set in {origin}) without a network"
             if unset_by and unset_by != origin else f"{origin}: pod.aliases")
    raise ComposerError(f"{where}: aliases need a pod.network",
                        hint="drop them too: [unset] pod = { aliases = true }")


def check_k8s_name(name: str, where: str, what: str) -> None:
    if len(name) > 63 or not K8S_NAME.match(name):
        raise ComposerError(
            f"{where}: {name!r} is not a valid Kubernetes name for {what}",
            hint="use lower-case letters, digits and '-', at most 63 characters",
        )


def check_volumes(pod: Pod, where: str) -> None:
    """Volume names are Kubernetes names and not composer's own; each mounts on its own
    path, one without '..' (a kube mountPath is taken as written)."""
    mounts: dict[str, str] = {}
    for name, volume in pod.volumes:
        if ".." in volume.path.split("/"):
            raise ComposerError(
                f"{where}: pod.volumes.{name}: the mount path {volume.path!r} has a '..' part",
                hint="write the absolute path it means, without '..'",
            )
        other = mounts.setdefault(volume.path.rstrip("/") or "/", name)
        if other != name:
            raise ComposerError(
                f"{where}: pod.volumes.{name}: mounts on {volume.path}, as pod.volumes.{other} does",
                hint="mount each volume on its own path",
            )
        check_k8s_name(name, f"{where}: pod.volumes.{name}", "a volume")
        if name in RESERVED_VOLUMES:
            raise ComposerError(
                f"{where}: pod.volumes.{name}: the name {name!r} is composer's own",
                hint="choose another volume name",
            )


def check_ports(pod: Pod, where: str) -> None:
    """Two pod ports on one host port or under one name: podman maps only one of them."""
    errors: list[ComposerError] = []
    seen_host: dict[tuple[int, str], int] = {}
    seen_name: dict[str, int] = {}
    for i, port in enumerate(pod.ports):
        if port.host is not None:
            first = seen_host.setdefault((port.host, port.protocol), i)
            if first != i:
                errors.append(ComposerError(
                    f"{where}: pod.ports[{i}]: host port {port.host}/{port.protocol} is already "
                    f"mapped by pod.ports[{first}]",
                    hint="give each port its own host port",
                ))
        if port.name:
            first = seen_name.setdefault(port.name, i)
            if first != i:
                errors.append(ComposerError(
                    f"{where}: pod.ports[{i}]: the name {port.name!r} is already used by pod.ports[{first}]",
                    hint="give each port its own name",
                ))
    if errors:
        raise errors[0] if len(errors) == 1 else ComposerErrors(errors)


def check_devices(devices: Sequence[str], where: str) -> None:
    for i, path in enumerate(devices):
        # Known folders everywhere; any other folder when it is one on this host.
        if path.rstrip("/") in DEVICE_FOLDERS or Path(path).is_dir():
            raise ComposerError(
                f"{where}: pod.devices[{i}]: {path} is a folder of device nodes, not a device",
                hint=f"list its nodes instead (e.g. {path.rstrip('/')}/renderD128); see docs/kube.md",
            )


def check_curl(plan: Plan, where: str) -> None:
    """podman runs an httpGet probe with curl inside the container: the image needs it."""
    family = plan.recipe.base.family
    if any("curl" in step.module.packages_for(family) for step in plan.steps):
        return
    raise ComposerError(
        f"{where}: pod.liveness: podman runs the httpGet liveness probe with curl in the "
        f"container, but no module of the recipe installs curl for family '{family}'",
        hint=f"add a module whose [packages].{family} lists curl (e.g. base), "
        "or set pod.liveness = false",
    )


