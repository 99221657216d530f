"""The podman-kube manifest: a Pod (and a Secret template) from the plan's recipe and image.

`podman kube play` runs it and a Kubernetes cluster accepts it. Rendering is pure and
deterministic: the same plan gives the same bytes (golden-tested). docs/kube.md says how
to play it, fill the Secret and give the Pod a GPU.
"""

from __future__ import annotations

import math
import re
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from composer.emit.output import dump
from composer.errors import ComposerError, ComposerErrors
from composer.model import Healthcheck, Plan, Recipe
from composer.schema import display

CONTAINER_NAME = "devpod"
DEFAULT_SECRETS_PATH = "/run/secrets"
# The start-up hooks read /run/secrets/<NAME> unless this variable names another folder.
SECRETS_DIR_ENV = "COMPOSER_SECRETS_DIR"
SECRETS_VOLUME = "secrets"
# Volume keys composer uses itself: podman 4.3 turns the emptyDir and the secret volume
# into named volumes <name>-shm and <name>-secrets, the claims' namespace.
RESERVED_VOLUMES = ("shm", SECRETS_VOLUME)
GPU_RESOURCE = "nvidia.com/gpu"
LIVENESS_DEFAULTS = {"path": "/health", "port": 9090, "interval": "30s"}
# Folders of device nodes: a hostPath CharDevice must name a node, and bind-mounting the
# folder does not grant access to the nodes in it (the device cgroup still denies them).
DEVICE_FOLDERS = ("/dev/dri", "/dev/snd", "/dev/input", "/dev/bus/usb", "/dev/net")
K8S_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DURATION = re.compile(r"^([0-9]+)(ms|s|m|h)$")
SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}


@dataclass(frozen=True)
class PortMap:
    container: int
    host: int | None = None
    name: str = ""
    protocol: str = "TCP"


@dataclass(frozen=True)
class Liveness:
    path: str
    port: int
    period: int
    timeout: int | None = None
    failure_threshold: int | None = None
    initial_delay: int | None = None


@dataclass(frozen=True)
class PodConfig:
    """The recipe's [pod] section, checked against the plan (see the recipe schema)."""

    name: str
    hostname: str = ""
    network: str = ""
    aliases: tuple[str, ...] = ()
    shm_size: str = ""
    capabilities: tuple[str, ...] = ()
    devices: tuple[str, ...] = ()
    gpus: int = 0
    ports: tuple[PortMap, ...] = ()
    volumes: tuple[tuple[str, str, str], ...] = ()  # (volume name, claim name, mount path)
    limits: tuple[tuple[str, str], ...] = ()
    requests: tuple[tuple[str, str], ...] = ()
    secrets_path: str = DEFAULT_SECRETS_PATH
    liveness: Liveness | None = None
    host_network: bool = False  # not a recipe field: set by rootless_config
    secrets_dir: str = ""  # not a recipe field: `composer kube --secrets-dir`, a host folder


@dataclass(frozen=True)
class Dropped:
    """What rootless_config left out of a PodConfig, for the header comment."""

    network: str = ""
    aliases: tuple[str, ...] = ()
    ports: tuple[PortMap, ...] = ()
    limits: tuple[tuple[str, str], ...] = ()
    requests: tuple[tuple[str, str], ...] = ()
    devices: tuple[str, ...] = ()
    gpus: int = 0


def manifest_path(plan: Plan, output_dir: Path) -> Path:
    """Where `composer build` writes the manifest: <output_dir>/<name>-<tag>.kube.yaml."""
    return output_dir / f"{plan.recipe.name}-{plan.recipe.tag}.kube.yaml"


def secret_name(recipe: Recipe) -> str:
    return f"{recipe.name}-secrets"


def rootless_manifest_path(plan: Plan, output_dir: Path) -> Path:
    """The name the rootless variant's header uses: <name>-<tag>.rootless.kube.yaml."""
    return output_dir / f"{plan.recipe.name}-{plan.recipe.tag}.rootless.kube.yaml"


def render_manifest(
    plan: Plan, rootless: bool = False, secrets_dir: str = "", devices: bool = True
) -> str:
    """The multi-document YAML: a header comment, the Secret template (if any), the Pod.

    rootless=True renders the variant a non-root user's podman plays on a host with
    cgroups v1 and a root-only /dev/net/tun (see rootless_config and docs/kube.md).
    secrets_dir mounts that host folder instead of a Secret (what podman 4.3 can play);
    devices=False leaves out the device volumes and the GPU limit (a host without them)."""
    config = pod_config(plan)
    if secrets_dir:
        config = replace(config, secrets_dir=check_secrets_dir(secrets_dir))
    absent = Dropped()
    if not devices:
        absent = Dropped(devices=config.devices, gpus=config.gpus)
        config = replace(config, devices=(), gpus=0)
    if rootless:
        config, dropped = rootless_config(config)
        parts = [rootless_header_comment(plan, config, dropped)]
    else:
        parts = [header_comment(plan, config, absent)]
    if config.secrets_dir:
        parts += [secrets_dir_comment(plan.recipe, config)]
    elif plan.recipe.secrets:
        # First: podman 4.3 plays documents in order and looks the Secret up for the Pod.
        parts += ["---\n", secret_comment(plan.recipe), secret_yaml(plan.recipe)]
    return "".join([*parts, "---\n", dump(pod_document(plan, config))])


# ---- [pod] -> PodConfig ---------------------------------------------------------------


def pod_config(plan: Plan) -> PodConfig:
    """Read the recipe's [pod] section into a PodConfig; errors name file and field
    (every problem of [pod] at once, see pod_errors)."""
    errors = pod_errors(plan)
    if errors:
        raise errors[0] if len(errors) == 1 else ComposerErrors(errors)
    recipe = plan.recipe
    raw = recipe.pod
    return PodConfig(
        name=recipe.name,
        hostname=raw.get("hostname", ""),
        network=raw.get("network", ""),
        aliases=tuple(raw.get("aliases", ())),
        shm_size=raw.get("shm_size", ""),
        capabilities=tuple(raw.get("capabilities", ())),
        devices=tuple(raw.get("devices", ())),
        gpus=raw.get("gpus", 0),
        ports=tuple(
            PortMap(p["container"], p.get("host"), p.get("name", ""), p.get("protocol", "TCP"))
            for p in raw.get("ports", ())
        ),
        volumes=parse_volumes(recipe.name, raw.get("volumes", {}), ""),
        limits=tuple(raw.get("resources", {}).get("limits", {}).items()),
        requests=tuple(raw.get("resources", {}).get("requests", {}).items()),
        secrets_path=raw.get("secrets_path", DEFAULT_SECRETS_PATH),
        liveness=parse_liveness(plan, raw.get("liveness", False), ""),
    )


def pod_errors(plan: Plan) -> list[ComposerError]:
    """Every problem of the recipe's [pod] against the plan, each naming the file that set
    the value: names, devices, volumes, the liveness probe, and what a dropped module left
    behind (a mapped port or a probe port nothing publishes any more, aliases without a
    network)."""
    recipe = plan.recipe
    raw = recipe.pod
    checks = [
        lambda: check_k8s_name(recipe.name, f"{recipe.origin('name')}: name", "the Pod's name"),
        lambda: parse_devices(raw.get("devices", ()), recipe.origin("pod", "devices")),
        lambda: parse_volumes(recipe.name, raw.get("volumes", {}), recipe.origin("pod", "volumes")),
        lambda: parse_liveness(plan, raw.get("liveness", False), recipe.origin("pod", "liveness")),
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
    errors = []
    for i, port in enumerate(recipe.pod.get("ports", ())):
        if port["container"] not in published:
            label = port.get("name") or port["container"]
            errors.append(ComposerError(
                f"{dangling_where(recipe, f'pod.ports[{i}]', 'pod', 'ports')}: container port {port['container']} "
                f"is published by no module of the recipe nor [image].ports{dropped_text(recipe)}",
                hint=f"drop it: [unset] pod = {{ ports = [{label!r}] }}".replace("'", '"'),
            ))
    liveness = recipe.pod.get("liveness", False)
    if liveness is not False:
        port = (liveness if isinstance(liveness, dict) else {}).get("port", LIVENESS_DEFAULTS["port"])
        if port not in published:
            errors.append(ComposerError(
                f"{dangling_where(recipe, 'pod.liveness', 'pod', 'liveness')}: probes port {port}, which no "
                f"module of the recipe publishes{dropped_text(recipe)}",
                hint="set pod.liveness to a published port, or drop it: [unset] pod = { liveness = true }",
            ))
    health = recipe.image.healthcheck
    for port in local_ports(health.test if health else ()):
        if port not in published:
            errors.append(ComposerError(
                f"{dangling_where(recipe, 'image.healthcheck', 'image', 'healthcheck', 'test')}: tests port {port} "
                f"on localhost, which no module of the recipe publishes{dropped_text(recipe)}",
                hint="set [image.healthcheck] anew, or drop it: [unset] image = { healthcheck = true }",
            ))
    if errors:
        raise errors[0] if len(errors) == 1 else ComposerErrors(errors)


LOCAL_URL = re.compile(r"\b(?:localhost|127\.0\.0\.1|\[::1\]):(\d+)\b")


def local_ports(argv: Sequence[str]) -> list[int]:
    """The ports a health check command reaches on localhost (http://localhost:9090/...)."""
    return [int(port) for arg in argv for port in LOCAL_URL.findall(arg)]


def check_aliases(recipe: Recipe) -> None:
    if not recipe.pod.get("aliases") or recipe.pod.get("network"):
        return
    unset_by = dict(recipe.unset).get("pod.network")
    origin = recipe.origin("pod", "aliases")
    where = (f"{unset_by}: unset.pod.network: leaves pod.aliases (set in {origin}) without a network"
             if unset_by and unset_by != origin else f"{origin}: pod.aliases")
    raise ComposerError(f"{where}: aliases need a pod.network",
                        hint="drop them too: [unset] pod = { aliases = true }")


def rootless_config(config: PodConfig) -> tuple[PodConfig, Dropped]:
    """The Pod a rootless podman plays where slirp4netns cannot open /dev/net/tun and
    cgroups v1 cannot limit a rootless container: the host's network (the services listen
    on the host's ports), no podman network or aliases, no `ports` (podman 4.3 turns even a
    containerPort without hostPort into a port mapping and refuses any with the host's
    network), no resources, no device volumes (they appear owned by nobody) and no GPU
    limit. Pure: the dropped values come back for the header comment."""
    dropped = Dropped(
        network=config.network,
        aliases=config.aliases,
        ports=config.ports,
        limits=config.limits,
        requests=config.requests,
        devices=config.devices,
        gpus=config.gpus,
    )
    rootless = replace(
        config,
        network="",
        aliases=(),
        ports=(),
        limits=(),
        requests=(),
        devices=(),
        gpus=0,
        host_network=True,
    )
    return rootless, dropped


def check_secrets_dir(path: str) -> str:
    """The host folder of --secrets-dir: absolute, normalised, printable (it goes into comments)."""
    if not path.startswith("/") or not path.isprintable() or "/../" in f"{path}/":
        raise ComposerError(
            f"--secrets-dir: {path!r} is not an absolute path on the host",
            hint="name the host folder that holds one file per secret, e.g. /etc/turboflow/secrets",
        )
    return path.rstrip("/") or "/"


def check_k8s_name(name: str, where: str, what: str) -> None:
    if len(name) > 63 or not K8S_NAME.match(name):
        raise ComposerError(
            f"{where}: {name!r} is not a valid Kubernetes name for {what}",
            hint="use lower-case letters, digits and '-', at most 63 characters",
        )


def parse_devices(raw: Any, where: str) -> tuple[str, ...]:
    for i, path in enumerate(raw):
        # Known folders everywhere; any other folder when it is one on this host.
        if path.rstrip("/") in DEVICE_FOLDERS or Path(path).is_dir():
            raise ComposerError(
                f"{where}: pod.devices[{i}]: {path} is a folder of device nodes, not a device",
                hint=f"list its nodes instead (e.g. {path.rstrip('/')}/renderD128); see docs/kube.md",
            )
    return tuple(raw)


def parse_volumes(
    recipe_name: str, raw: dict[str, Any], where: str
) -> tuple[tuple[str, str, str], ...]:
    """Named volumes: `name = "/path"` claims `<recipe>-<name>`; a table may name the claim."""
    out: list[tuple[str, str, str]] = []
    for name, value in raw.items():
        check_k8s_name(name, f"{where}: pod.volumes.{name}", "a volume")
        if name in RESERVED_VOLUMES:
            raise ComposerError(
                f"{where}: pod.volumes.{name}: the name {name!r} is composer's own",
                hint="choose another volume name",
            )
        if isinstance(value, str):
            out.append((name, f"{recipe_name}-{name}", value))
        else:
            out.append((name, value.get("claim", f"{recipe_name}-{name}"), value["path"]))
    return tuple(out)


def parse_liveness(plan: Plan, raw: bool | dict[str, Any], where: str) -> Liveness | None:
    """The httpGet probe; its timing defaults to the image's health check, then 30 s."""
    if raw is False:
        return None
    check_curl(plan, where)
    table = raw if isinstance(raw, dict) else {}
    health = plan.finalize.image.healthcheck
    interval = table.get("interval") or (health.interval if health else None)
    return Liveness(
        path=table.get("path", LIVENESS_DEFAULTS["path"]),
        port=table.get("port", LIVENESS_DEFAULTS["port"]),
        period=seconds(interval or str(LIVENESS_DEFAULTS["interval"])),
        **health_timing(health, table),
    )


def health_timing(health: Healthcheck | None, table: dict[str, Any]) -> dict[str, Any]:
    timeout = table.get("timeout") or (health.timeout if health else None)
    start = table.get("start_period") or (health.start_period if health else None)
    retries = table.get("retries", health.retries if health else None)
    return {
        "timeout": seconds(timeout) if timeout else None,
        "failure_threshold": retries or None,
        "initial_delay": (seconds(start) or None) if start else None,
    }


def seconds(duration: str) -> int:
    """'30s' -> 30, '2m' -> 120, '500ms' -> 1 (probes count whole seconds, at least 1)."""
    match = DURATION.match(duration)
    if not match:
        raise ValueError(f"not a duration: {duration!r}")  # the schema lets none through
    value = int(match.group(1)) * SECONDS[match.group(2)]
    return max(1, math.ceil(value)) if value else 0


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


# ---- PodConfig -> documents -----------------------------------------------------------


def pod_document(plan: Plan, config: PodConfig) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    if config.host_network:
        spec["hostNetwork"] = True
    if config.hostname:
        spec["hostname"] = config.hostname
    spec["containers"] = [container(plan, config)]
    spec["volumes"] = volumes(plan, config)
    if not spec["volumes"]:
        del spec["volumes"]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": config.name,
            "labels": {
                "app.kubernetes.io/name": config.name,
                "app.kubernetes.io/version": plan.recipe.tag,
                "app.kubernetes.io/managed-by": "composer",
            },
        },
        "spec": spec,
    }


def container(plan: Plan, config: PodConfig) -> dict[str, Any]:
    image = plan.finalize.image
    out: dict[str, Any] = {"name": CONTAINER_NAME, "image": plan.image_ref}
    env = [{"name": k, "value": v} for k, v in image.env]
    if plan.recipe.secrets and config.secrets_path != DEFAULT_SECRETS_PATH:
        env.append({"name": SECRETS_DIR_ENV, "value": config.secrets_path})
    if env:
        out["env"] = env
    if image.workdir:
        out["workingDir"] = image.workdir
    # The image's ports too are left out on the host's network (see rootless_config).
    if not config.host_network and (ports := container_ports(image.ports, config.ports)):
        out["ports"] = ports
    if security := security_context(image.user, config.capabilities):
        out["securityContext"] = security
    if resources := resource_section(config):
        out["resources"] = resources
    if mounts := volume_mounts(plan, config):
        out["volumeMounts"] = mounts
    if config.liveness:
        out["livenessProbe"] = probe(config.liveness)
    return out


def container_ports(image_ports: tuple[str, ...], maps: tuple[PortMap, ...]) -> list[dict[str, Any]]:
    """The recipe's mappings (with hostPort), then image ports it does not map (no hostPort)."""
    out: list[dict[str, Any]] = []
    for p in maps:
        entry: dict[str, Any] = {"name": p.name} if p.name else {}
        entry["containerPort"] = p.container
        if p.host:
            entry["hostPort"] = p.host
        entry["protocol"] = p.protocol
        out.append(entry)
    mapped = {(p.container, p.protocol) for p in maps}
    for text in image_ports:
        number, _, proto = text.partition("/")
        key = (int(number), (proto or "tcp").upper())
        if key not in mapped:
            out.append({"containerPort": key[0], "protocol": key[1]})
            mapped.add(key)
    return out


def security_context(user: str, capabilities: tuple[str, ...]) -> dict[str, Any]:
    """Capabilities to add; the image's user as runAsUser/runAsGroup when it is numeric
    (or root). A user name stays in the image config, which the container runs as."""
    out: dict[str, Any] = {}
    uid, _, gid = ("0" if user == "root" else user).partition(":")
    if uid.isdigit():
        out["runAsUser"] = int(uid)
        if gid.isdigit():
            out["runAsGroup"] = int(gid)
    if capabilities:
        out["capabilities"] = {"add": list(capabilities)}
    return out


def resource_section(config: PodConfig) -> dict[str, Any]:
    limits = dict(config.limits)
    if config.gpus:
        limits[GPU_RESOURCE] = str(config.gpus)
    out: dict[str, Any] = {}
    if limits:
        out["limits"] = limits
    if config.requests:
        out["requests"] = dict(config.requests)
    return out


def volume_mounts(plan: Plan, config: PodConfig) -> list[dict[str, Any]]:
    mounts: list[dict[str, Any]] = [
        {"name": name, "mountPath": path} for name, _, path in config.volumes
    ]
    if config.shm_size:
        mounts.append({"name": shm_volume(config), "mountPath": "/dev/shm"})
    if plan.recipe.secrets:
        mounts.append({"name": SECRETS_VOLUME, "mountPath": config.secrets_path, "readOnly": True})
    mounts += [{"name": device_volume(path), "mountPath": path} for path in config.devices]
    return mounts


def volumes(plan: Plan, config: PodConfig) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {"name": name, "persistentVolumeClaim": {"claimName": claim}}
        for name, claim, _ in config.volumes
    ]
    if config.shm_size:
        memory = {"medium": "Memory", "sizeLimit": config.shm_size}
        out.append({"name": shm_volume(config), "emptyDir": memory})
    if plan.recipe.secrets and config.secrets_dir:
        # A folder, not a Secret: podman 4.3 mounts Secret values still base64-encoded.
        out.append({"name": SECRETS_VOLUME, "hostPath": {"path": config.secrets_dir, "type": "Directory"}})
    elif plan.recipe.secrets:
        # optional explicit: podman 4.3 dereferences it when the Secret is missing.
        secret = {"secretName": secret_name(plan.recipe), "defaultMode": 0o400, "optional": False}
        out.append({"name": SECRETS_VOLUME, "secret": secret})
    out += [
        {"name": device_volume(path), "hostPath": {"path": path, "type": "CharDevice"}}
        for path in config.devices
    ]
    return out


def shm_volume(config: PodConfig) -> str:
    # Not a bare "shm": podman 4.3 makes the emptyDir a named volume of this name, and
    # two pods must not share one /dev/shm.
    return f"{config.name}-shm"


def device_volume(path: str) -> str:
    """/dev/nvidia-uvm -> dev-nvidia-uvm (a volume name is a DNS label)."""
    return re.sub(r"[^a-z0-9-]+", "-", path.lower()).strip("-")[:63]


def probe(liveness: Liveness) -> dict[str, Any]:
    out: dict[str, Any] = {
        "httpGet": {"path": liveness.path, "port": liveness.port},
        "periodSeconds": liveness.period,
    }
    if liveness.initial_delay:
        out["initialDelaySeconds"] = liveness.initial_delay
    if liveness.timeout:
        out["timeoutSeconds"] = liveness.timeout
    if liveness.failure_threshold:
        out["failureThreshold"] = liveness.failure_threshold
    return out


# ---- comments and the Secret template ---------------------------------------------------


def play_command(config: PodConfig, file_name: str) -> list[str]:
    """The `podman kube play` argv: a Pod has no field for a podman network or aliases."""
    argv = ["podman", "kube", "play"]
    if config.network:
        aliases = "".join(f",alias={a}" for a in config.aliases).lstrip(",")
        argv += ["--network", f"{config.network}:{aliases}" if aliases else config.network]
    return [*argv, file_name]


def comment_text(text: str) -> str:
    """text safe inside a YAML comment: a newline would end the comment and start YAML."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def header_comment(plan: Plan, config: PodConfig, absent: Dropped) -> str:
    name = manifest_path(plan, Path(".")).name
    play = " ".join(play_command(config, name))
    lines = [
        f"Generated by composer from {comment_text(plan.recipe.path.name)}; `composer kube` prints it again.",
        f"Pod {config.name} running {plan.image_ref}. See docs/kube.md.",
        "",
    ]
    if config.network:
        lines += ["Network (once): podman network create " + config.network]
    lines += [
        f"Play (root):     {play}",
        f"Stop:            podman kube down {name}   (named volumes are kept)",
    ]
    if config.devices:
        lines += textwrap.wrap(
            f"Devices {', '.join(config.devices)} must exist on the host; "
            "`composer kube --no-devices` leaves them (and the GPU limit) out.", 86,
            break_on_hyphens=False)
    if absent.devices or absent.gpus:
        gpu = [f"the {GPU_RESOURCE} limit {absent.gpus}"] if absent.gpus else []
        lines += textwrap.wrap(f"--no-devices: left out {', '.join([*absent.devices, *gpu])}.", 86,
                               break_on_hyphens=False)
    if plan.recipe.secrets and not config.secrets_dir:
        lines += ["Fill in the Secret below first (see its comment)."]
    return "".join(f"# {line}".rstrip() + "\n" for line in lines)


def rootless_header_comment(plan: Plan, config: PodConfig, dropped: Dropped) -> str:
    name = rootless_manifest_path(plan, Path(".")).name
    archive = f"{plan.recipe.name}-{plan.recipe.tag}.oci.tar"
    lines = [
        f"Generated by composer from {comment_text(plan.recipe.path.name)}; "
        "`composer kube --rootless` prints it again.",
        f"Pod {config.name} running {plan.image_ref}. See docs/kube.md (Rootless).",
        "",
        "Rootless variant, for a non-root user's podman on a host with cgroups v1 (or the",
        "v1/v2 hybrid) and a root-only /dev/net/tun (no slirp4netns):",
        "- hostNetwork: the services listen on the host's own ports, which must be free.",
        "  No `ports:` list: podman 4.3 maps even a containerPort without hostPort and then",
        "  refuses (\"PortMappings can only be used with Bridge or slirp4netns networking\").",
    ]
    ports = container_ports(plan.finalize.image.ports, dropped.ports)
    if ports:
        listed = ", ".join(
            f"{p['containerPort']}/{p['protocol'].lower()}" + (f" ({p['name']})" if "name" in p else "")
            for p in ports
        )
        lines += [f"  Host ports the services use: {listed}."]
    if maps := [p for p in dropped.ports if p.host and p.host != p.container]:
        listed = ", ".join(f"{p.host}->{p.container}" for p in maps)
        lines += [f"  Left out: the hostPort mappings {listed} (the host port is the container's)."]
    if low := sorted({int(p["containerPort"]) for p in ports if p["containerPort"] < 1024}):
        listed = ", ".join(str(n) for n in low)
        lines += [
            f"  Port {listed} is below net.ipv4.ip_unprivileged_port_start (1024 by default):",
            "  a rootless user cannot bind it unless the host lowers that sysctl.",
        ]
    if dropped.network:
        aliases = f" and its aliases {', '.join(dropped.aliases)}" if dropped.aliases else ""
        lines += [f"  Left out: the podman network {dropped.network}{aliases}."]
    if dropped.limits or dropped.requests:
        values = ", ".join(
            f"{kind} " + " ".join(f"{k}={v}" for k, v in pairs)
            for kind, pairs in (("limits", dropped.limits), ("requests", dropped.requests))
            if pairs
        )
        lines += [
            "- No resources: with cgroups v1 a rootless container cannot be limited",
            f"  (podman: \"cannot set memory limit\"). Left out: {values}.",
        ]
    if dropped.devices or dropped.gpus:
        gpu = [f"the {GPU_RESOURCE} limit {dropped.gpus}"] if dropped.gpus else []
        what = ", ".join([*dropped.devices, *gpu])
        lines += [
            "- No device volumes or GPU limit: a rootless container sees the host's device",
            f"  nodes owned by nobody and cannot open them. Left out: {what}.",
        ]
    lines += [
        "",
        "Needs ~/.config/containers/containers.conf with runtime = \"runc\",",
        "cgroup_manager = \"cgroupfs\", events_logger = \"file\" under [engine] and",
        "default_ulimits = [\"nofile=1024:1024\", \"nproc=1024:1024\"] under [containers].",
        f"Image (once):    podman load -i {archive}",
        f"Play (rootless): podman kube play {name}",
        f"Stop:            podman kube down {name}   (named volumes are kept)",
    ]
    if plan.recipe.secrets and not config.secrets_dir:
        lines += ["Fill in the Secret below first (see its comment)."]
    return "".join(f"# {line}".rstrip() + "\n" for line in lines)


def secrets_dir_comment(recipe: Recipe, config: PodConfig) -> str:
    """What the host folder of --secrets-dir must hold (instead of a Secret document)."""
    folder = config.secrets_dir
    lines = [
        "",
        f"Secrets come from the host folder {folder} (--secrets-dir), mounted read-only",
        f"at {config.secrets_path}: one file per name, the value alone. Make it as root:",
        f"  install -d -m 0700 -o root -g root {folder}",
        f"  install -m 0600 -o root -g root KEYFILE {folder}/NAME",
        "A missing or empty file counts as not set. Names:",
        *textwrap.wrap(", ".join(s.name for s in recipe.secrets) + ".", 80,
                       initial_indent="  ", subsequent_indent="  "),
    ]
    return "".join(f"# {line}".rstrip() + "\n" for line in lines)


def secret_comment(recipe: Recipe) -> str:
    lines = [
        "Secret template: composer lists the names and never writes a value.",
        "Fill in the values (plain text) in a copy kept out of version control, or make",
        f"it yourself: kubectl create secret generic {secret_name(recipe)} --from-file=NAME=FILE",
        "Each key becomes a read-only file <secrets path>/NAME that the start-up hooks read;",
        "an empty value counts as not set.",
        "podman 4.3 ignores stringData and mounts data values still base64-encoded",
        "(podman#16625, fixed in 4.4): see docs/kube.md for what to do there.",
    ]
    return "".join(f"# {line}".rstrip() + "\n" for line in lines)


def secret_yaml(recipe: Recipe) -> str:
    document = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": secret_name(recipe),
            "labels": {"app.kubernetes.io/name": recipe.name, "app.kubernetes.io/managed-by": "composer"},
        },
        "type": "Opaque",
    }
    lines = [dump(document), "stringData:\n"]
    for secret in recipe.secrets:
        entry = dump({secret.name: ""}).rstrip("\n")
        note = " ".join(secret.description.split())
        lines.append(f"  {entry}" + (f"  # {note}" if note else "") + "\n")
    return "".join(lines)
