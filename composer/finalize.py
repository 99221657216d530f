"""The generated last layer: process-manager config, entrypoint and image config."""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from composer import STEP_FORMAT
from composer.errors import ComposerError
from composer.model import FinalizeStep, ImageConfig, Recipe, Service, Step
from composer.schema import display

ENTRYPOINT_PATH = "/usr/local/bin/composer-entrypoint"
SUPERVISORD_CONF = "/etc/composer/supervisord.conf"
SERVICES_JSON = "/etc/composer/services.json"
# Every module's [[credentials]], for the 30-credentials start-up hook.
CREDENTIALS_JSON = "/etc/composer/credentials.json"
# Names of the image's environment variables, for the hook that hands them to login
# shells (SSH, su -): those start from a clean environment, not the image config's.
ENV_NAMES = "/etc/composer/env.names"
# Every secret's name: a secret given as an environment variable is read by the start-up
# hooks, then unset before the process manager starts (no service or shell inherits it).
SECRET_NAMES = "/etc/composer/secret.names"
SUPERVISOR_SOCKET = "/run/supervisor.sock"
# The group that may use supervisorctl; the supervisord module creates it.
SUPERVISOR_GROUP = "supervisor"
DEFAULT_CMD = ("supervisord", "-n", "-c", SUPERVISORD_CONF)


def entrypoint_script() -> str:
    return resources.files("composer").joinpath("data/entrypoint.sh").read_text()


def merge_services(steps: Sequence[Step]) -> tuple[Service, ...]:
    """Every module's services, by priority then name; a name used twice is an error."""
    seen: dict[str, str] = {}
    services: list[Service] = []
    for step in steps:
        for service in step.module.services:
            if service.name in seen:
                raise ComposerError(
                    f"{step.module.path / 'module.toml'}: services: {service.name!r} "
                    f"is already defined by module {seen[service.name]!r}"
                )
            seen[service.name] = step.module.name
            check_service_text(service, step.module.path / "module.toml")
            services.append(service)
    return tuple(sorted(services, key=lambda s: (s.priority, s.name)))


def check_service_text(service: Service, where: Path) -> None:
    """No control character (a newline above all) in what goes into supervisord.conf: it
    would end the line and add settings of its own. Checked after options are put in."""
    texts = [("user", service.user), ("directory", service.directory),
             *((f"command[{i}]", c) for i, c in enumerate(service.command)),
             *((f"environment.{k}", f"{k}={v}") for k, v in service.environment)]
    for field, text in texts:
        if any(not c.isprintable() for c in text):
            raise ComposerError(f"{display(where)}: services.{service.name}.{field}: "
                                f"{text!r} has a control character (newline, tab, ...)")
    for key, value in service.environment:
        # supervisord reads environment=K="V",... without escapes: a quote would end V.
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key) or '"' in value:
            raise ComposerError(f"{display(where)}: services.{service.name}.environment.{key}: "
                                "names are letters, digits and _; values hold no double quote")


PORT = re.compile(r"(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3})"
                  r"(/(tcp|udp))?")


def merge_image_config(recipe: Recipe, steps: Sequence[Step]) -> ImageConfig:
    """Modules' ports, volumes and health check, then the recipe's on top."""
    for step in steps:
        for i, port in enumerate(step.module.ports):
            # The schema checks ports as written; one that names an option is checked here.
            if not PORT.fullmatch(port):
                raise ComposerError(f"{display(step.module.path / 'module.toml')}: ports[{i}]: {port!r} "
                                    f"(options put in) is not a port 1-65535 with an optional /tcp or /udp")
    ports = [p for s in steps for p in s.module.ports] + list(recipe.image.ports)
    volumes = [v for s in steps for v in s.module.volumes] + list(recipe.image.volumes)
    healthcheck = recipe.image.healthcheck
    for step in steps:
        healthcheck = healthcheck or step.module.healthcheck
    has_services = any(s.module.services for s in steps)
    return ImageConfig(
        env=recipe.image.env,
        ports=tuple(dict.fromkeys(ports)),
        volumes=tuple(dict.fromkeys(volumes)),
        user=recipe.image.user,
        workdir=recipe.image.workdir,
        labels=recipe.image.labels,
        entrypoint=recipe.image.entrypoint or (ENTRYPOINT_PATH,),
        cmd=recipe.image.cmd or (DEFAULT_CMD if has_services else ()),
        healthcheck=healthcheck,
    )


def env_names(recipe: Recipe, steps: Sequence[Step]) -> list[str]:
    """Every variable the modules and the recipe put in the image config, and PATH."""
    names = {"PATH"} | {k for s in steps for k, _ in s.module.env} | {k for k, _ in recipe.image.env}
    return sorted(names)


def _value(text: str) -> str:
    # supervisord expands %(ENV_X)s in values; a literal % must be doubled.
    return text.replace("%", "%%")


def _home(user: str) -> str:
    return "/root" if user == "root" else f"/home/{user}"


def service_argv(service: Service) -> list[str]:
    if service.delay:
        # A fixed script; the delay and the command reach it as arguments, not as text.
        return ["/bin/sh", "-c", 'sleep "$0"; exec "$@"', str(service.delay), *service.command]
    return list(service.command)


def supervisord_conf(services: Sequence[Service]) -> str:
    """supervisord's whole configuration, generated from the modules' services."""
    lines = [
        "; Generated by composer from the modules' [[services]]; do not edit.",
        "[unix_http_server]",
        f"file={SUPERVISOR_SOCKET}",
        "chmod=0770",
        f"chown=root:{SUPERVISOR_GROUP}",
        "",
        "[supervisord]",
        "nodaemon=true",
        "user=root",
        "logfile=/var/log/supervisord.log",
        "pidfile=/run/supervisord.pid",
        "childlogdir=/var/log/supervisor",
        "",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
        "",
        "[supervisorctl]",
        f"serverurl=unix://{SUPERVISOR_SOCKET}",
        "",
    ]
    for s in services:
        env = {"HOME": _home(s.user), "USER": s.user, **dict(s.environment)}
        env_text = ",".join(f'{k}="{_value(v)}"' for k, v in env.items())
        lines += [
            f"[program:{s.name}]",
            f"command={_value(shlex.join(service_argv(s)))}",
            f"user={s.user}",
            f"priority={s.priority}",
            f"autostart={str(s.autostart).lower()}",
            f"autorestart={str(s.autorestart).lower()}",
            f"startsecs={s.startsecs + s.delay}",
            f"stdout_logfile=/var/log/{s.name}.log",
            "redirect_stderr=true",
            f"environment={env_text}",
        ]
        if s.directory:
            lines.append(f"directory={s.directory}")
        lines.append("")
    # Start-up hooks may drop overrides here (e.g. the service toggle).
    lines += ["[include]", "files = /run/composer/supervisord.d/*.conf", ""]
    return "\n".join(lines)


def services_json(services: Sequence[Service]) -> list[dict[str, Any]]:
    return [
        {"name": s.name, "module": s.module, "user": s.user, "priority": s.priority,
         "command": list(s.command)}
        for s in services
    ]


def credentials_json(steps: Sequence[Step]) -> list[dict[str, Any]]:
    """Every module's credentials, in layer order, as the hook reads them."""
    return [
        {"module": c.module, "user": c.user, "file": c.file, "format": str(c.format),
         "secrets": dict(c.secrets), "optional": list(c.optional), "secret": c.secret,
         "generate": c.generate}
        for step in steps for c in step.module.credentials
    ]


def finalize_document(
    parent: str,
    services: Sequence[Service],
    image: ImageConfig,
    labels: Sequence[tuple[str, str]],
    names: Sequence[str],
    credentials: Sequence[dict[str, Any]],
    secret_names: Sequence[str] = (),
) -> dict[str, Any]:
    hc = image.healthcheck
    return {
        "format": STEP_FORMAT,
        "kind": "finalize",
        "parent": parent,
        "env_names": list(names),
        "secret_names": list(secret_names),
        "credentials": list(credentials),
        "supervisord_conf": supervisord_conf(services) if services else "",
        "services": services_json(services),
        "entrypoint": entrypoint_script(),
        "image": {
            "env": [list(kv) for kv in image.env],
            "ports": list(image.ports),
            "volumes": list(image.volumes),
            "user": image.user,
            "workdir": image.workdir,
            "labels": [list(kv) for kv in (*image.labels, *labels)],
            "entrypoint": list(image.entrypoint),
            "cmd": list(image.cmd),
            "healthcheck": None if hc is None else {
                "test": list(hc.test), "interval": hc.interval, "timeout": hc.timeout,
                "retries": hc.retries, "start_period": hc.start_period,
            },
        },
    }


def write_finalize_files(final: FinalizeStep, stage: Path) -> None:
    """The files of the finalize layer, as a tree under stage (copied to / owned by root):
    the entrypoint, services, env names, credentials and supervisord's config."""
    entry = stage / ENTRYPOINT_PATH.lstrip("/")
    entry.parent.mkdir(parents=True)
    entry.write_text(entrypoint_script())
    (stage / "etc/composer").mkdir(parents=True)
    (stage / SERVICES_JSON.lstrip("/")).write_text(json.dumps(services_json(final.services), indent=2))
    (stage / ENV_NAMES.lstrip("/")).write_text("".join(f"{name}\n" for name in final.env_names))
    (stage / SECRET_NAMES.lstrip("/")).write_text("".join(f"{name}\n" for name in final.secret_names))
    (stage / CREDENTIALS_JSON.lstrip("/")).write_text(json.dumps(list(final.credentials), indent=2) + "\n")
    if final.services:
        (stage / SUPERVISORD_CONF.lstrip("/")).write_text(supervisord_conf(final.services))
        (stage / "var/log/supervisor").mkdir(parents=True)
    for path in stage.rglob("*"):
        path.chmod(0o755 if path.is_dir() or path == entry else 0o644)
