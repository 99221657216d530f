"""The podman-kube manifest: a Pod (and a Secret template) from the plan's recipe and image.

`podman kube play` runs it and a Kubernetes cluster accepts it. Rendering is pure and
deterministic: the same plan gives the same bytes (golden-tested). docs/kube.md says how
to play it, fill the Secret and give the Pod a GPU.
"""

from __future__ import annotations

import math
import re
import textwrap
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from composer.emit.output import dump
from composer.errors import ComposerError
from composer.model import DEFAULT_SECRETS_PATH, LivenessProbe, Plan, PodBasics, PodPort, PodSecurity, Recipe
from composer.pod import SECRETS_VOLUME, check_pod

CONTAINER_NAME = "devpod"
# The start-up hooks read /run/secrets/<NAME> unless this variable names another folder.
SECRETS_DIR_ENV = "COMPOSER_SECRETS_DIR"
GPU_RESOURCE = "nvidia.com/gpu"
# What [pod] security = "hardened" never grants (docs/kube.md: what each buys and costs).
HARDENED_WITHOUT = ("SYS_ADMIN", "NET_ADMIN", "SYS_PTRACE")
DEFAULT_INTERVAL = "30s"  # a liveness probe's period when neither it nor the health check has one
DURATION = re.compile(r"^([0-9]+)(ms|s|m|h)$")
SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}


@dataclass(frozen=True)
class Liveness:
    path: str
    port: int
    period: int
    command: tuple[str, ...] = ()  # an exec probe (the image's health check) instead of httpGet
    timeout: int | None = None
    failure_threshold: int | None = None
    initial_delay: int | None = None


@dataclass(frozen=True)
class PodConfig(PodBasics):
    """The recipe's [pod] resolved against the plan: what the manifest is rendered from."""

    name: str = ""
    volumes: tuple[tuple[str, str, str], ...] = ()  # (volume name, claim name, mount path)
    limits: tuple[tuple[str, str], ...] = ()
    requests: tuple[tuple[str, str], ...] = ()
    liveness: Liveness | None = None
    host_network: bool = False  # not a recipe field: set by rootless_config
    secrets_dir: str = ""  # not a recipe field: `composer kube --secrets-dir`, a host folder


@dataclass(frozen=True)
class Dropped:
    """What rootless_config left out of a PodConfig, for the header comment."""

    network: str = ""
    aliases: tuple[str, ...] = ()
    ports: tuple[PodPort, ...] = ()
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
    """The recipe's [pod] resolved against the plan into what is rendered; every problem of
    [pod] first, at once (composer/pod.py)."""
    check_pod(plan)
    recipe = plan.recipe
    pod = recipe.pod
    basics = {f.name: getattr(pod, f.name) for f in fields(PodBasics)}
    return PodConfig(
        **{**basics, "capabilities": tuple(c for c in pod.capabilities
                                           if pod.security is PodSecurity.SEED or c not in HARDENED_WITHOUT)},
        name=recipe.name,
        volumes=tuple((name, v.claim or f"{recipe.name}-{name}", v.path) for name, v in pod.volumes),
        limits=pod.resources.limits,
        requests=pod.resources.requests,
        liveness=liveness(plan, pod.probe),
    )


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


def liveness(plan: Plan, probe: LivenessProbe | None) -> Liveness | None:
    """`liveness = true`: the image's own health check as an exec probe (it may reach the
    service where users cannot, e.g. a root-only socket), else GET /health on 9090; a table:
    that httpGet. Timing defaults to the image's health check, then 30 s."""
    if probe is None:
        return None
    health = plan.finalize.image.healthcheck
    command = health.test[1:] if plan.recipe.pod.liveness is True and health and health.test[0] == "CMD" else ()
    interval = probe.interval or (health.interval if health else None)
    timeout = probe.timeout or (health.timeout if health else None)
    start = probe.start_period or (health.start_period if health else None)
    retries = probe.retries if probe.retries is not None else (health.retries if health else None)
    return Liveness(
        path=probe.path,
        port=probe.port,
        period=seconds(interval or DEFAULT_INTERVAL),
        command=tuple(command),
        timeout=seconds(timeout) if timeout else None,
        failure_threshold=retries or None,
        initial_delay=(seconds(start) or None) if start else None,
    )


def seconds(duration: str) -> int:
    """'30s' -> 30, '2m' -> 120, '500ms' -> 1 (probes count whole seconds, at least 1)."""
    match = DURATION.match(duration)
    if not match:
        raise ValueError(f"not a duration: {duration!r}")  # the schema lets none through
    value = int(match.group(1)) * SECONDS[match.group(2)]
    return max(1, math.ceil(value)) if value else 0


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


def container_ports(image_ports: tuple[str, ...], maps: tuple[PodPort, ...]) -> list[dict[str, Any]]:
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
    (or root). A user name stays in the image config, which the container runs as. Always
    the runtime's default seccomp profile: Kubernetes otherwise runs a Pod unconfined."""
    out: dict[str, Any] = {"seccompProfile": {"type": "RuntimeDefault"}}
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
        **({"exec": {"command": list(liveness.command)}} if liveness.command
           else {"httpGet": {"path": liveness.path, "port": liveness.port}}),
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
    if left_out := [c for c in plan.recipe.pod.capabilities if c not in config.capabilities]:
        lines += textwrap.wrap(f"security = hardened: left out the capabilities {', '.join(left_out)} "
                               "the recipe lists (docs/kube.md).", 86, break_on_hyphens=False)
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
