"""An equivalent Containerfile of a plan: the user's escape hatch and the benchmark's peer.

Each module becomes one instruction group that does what `composer build` does in its
layer (docs/containerfile.md): its env, the package install through the same
composer-install toolkit, its files, hooks and options file, its scripts with the same
build-step contract, the clean-up; then the finalize files and image config. Pure text
and a build context folder: no buildah call here."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from composer import commands as cmd
from composer import toolkit
from composer.errors import ComposerError
from composer.finalize import write_finalize_files
from composer.model import BaseKind, Family, Healthcheck, ImageConfig, Plan, Step
from composer.step import CA_VARS, Copy, Mount, Run, Source, module_step

# Fixed script every step's RUN goes through: the host CA bundle when the builder mounts
# one (docs/containerfile.md), the module folder as working folder, then the argv.
STEP_SCRIPT = (
    'if [ -f "$0" ]; then for v in ' + " ".join(CA_VARS)
    + '; do export "$v=$0"; done; fi; cd "$COMPOSER_MODULE_DIR" && exec "$@"'
)


# The empty folders a base has under the package cache mounts (builder._debootstrap_into
# keeps them), which `buildah bud` 1.28 removes with the cache mount.
RESTORED = {
    Family.DEBIAN: ("/var/lib/apt/lists/partial", "/var/cache/apt/archives/partial"),
    Family.ARCH: cmd.PACKAGE_CACHE_MOUNTS[Family.ARCH],
}


@dataclass(frozen=True)
class Containerfile:
    text: str
    base_ref: str  # what FROM names
    base_hint: str  # how to get that image, for a person


def base_reference(plan: Plan) -> tuple[str, str]:
    """What FROM names and how a person gets that image."""
    base = plan.base.base
    if base.kind is BaseKind.DEBOOTSTRAP:
        ref = cmd.cache_ref(plan.base.key)
        return ref, (f"{ref} is the {base.source} base composer bootstraps: `composer build` of "
                     "this recipe makes it (or give another with --build-arg BASE=...)")
    if base.kind is BaseKind.SCRATCH:
        return "scratch", ""
    if base.kind is BaseKind.OCI_ARCHIVE:
        return f"oci-archive:{base.ref}", ""
    return base.ref, ""


def env_value(value: str) -> str:
    """A double-quoted ENV/LABEL value; $VAR stays live, as `buildah config --env` expands it."""
    return '"' + one_line(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def one_line(value: str) -> str:
    """A value written into an instruction: a newline would end it and start another
    (`user = "root\nRUN ..."`). The schemas refuse them; this is the last guard."""
    if CONTROL.search(value):
        raise ComposerError(f"{value!r}: a control character cannot be written into a Containerfile instruction",
                            hint="give the value on one line")
    return value


def exec_form(argv: Sequence[str]) -> str:
    return json.dumps(list(argv))


# The host CA bundle's name in the build context, bind-mounted where composer mounts it.
HOST_CA = "host-ca.crt"


def module_group(plan: Plan, step: Step, host_ca: bool = False) -> list[str]:
    """The instructions of one module's layer; host_ca: mount the context's HOST_CA in each
    step (its mount point goes with /run/composer in the clean-up, as in composer's layer)."""
    spec = module_step(plan, step, host_ca)
    family = plan.recipe.base.family
    lines = [f"# layer {step.index} {step.module.name} {step.module.version}"]
    if spec.image_env:
        lines.append("ENV " + " ".join(f"{k}={env_value(v)}" for k, v in spec.image_env))
    # buildah bud's layer cache (1.28) knows a RUN by its text, not by what its mounts
    # hold: with composer's key in the text, it misses exactly when composer's cache does.
    env = [f"{k}={v}" for k, v in {**spec.env, "COMPOSER_LAYER_KEY": step.key}.items()]
    mounts = " \\\n    ".join(flag for mount in spec.mounts if (flag := mount_flag(mount, step)))
    for action in spec.actions:
        if isinstance(action, Run):
            lines.append(f"RUN {mounts} \\\n    " + exec_form(
                ["/usr/bin/env", *env, "/bin/sh", "-c", STEP_SCRIPT, cmd.CA_MOUNT, *action.argv]))
        elif isinstance(action, Copy):
            lines.append(copy(action.context, action.dest, action.mode, action.owner))
        else:
            # Its own RUN, without mounts: /run/composer can only go once nothing is mounted there.
            # buildah 1.28 removes the folder a cache mount was on: put back the empty folders
            # the base has there (the layer composer builds keeps them), then clean.
            sh, c, clean_script, argv0, *paths = action.argv
            restore = 'n=$1; shift; while [ "$n" -gt 0 ]; do mkdir -p -- "$1"; shift; n=$((n - 1)); done; '
            lines.append("RUN " + exec_form([sh, c, restore + clean_script, argv0, str(len(RESTORED[family])),
                                             *RESTORED[family], *paths]))
    return lines


def mount_flag(mount: Mount, step: Step) -> str:
    """A step's mount as a RUN --mount flag over the build context (write_context). bud has
    no step of composer's own that fetches the lists: they are a cache mount each step
    updates, as composer-install does where it can write them ("" for what that covers)."""
    target = f"target={mount.target}"
    match mount.source:
        case Source.MODULE:
            return f"--mount=type=bind,source=modules/{step.module.name},{target}"
        case Source.TOOLKIT:
            return f"--mount=type=bind,source=toolkit,{target}"
        case Source.OPTIONS:
            return f"--mount=type=bind,source=options/{step.module.name}.json,{target}"
        case Source.STATE:
            return f"--mount=type=tmpfs,{target}"
        case Source.PACKAGE_LISTS | Source.PACKAGE_CACHE:
            return f"--mount=type=cache,{target}"
        case Source.LIST_WORK:
            return ""
        case Source.HOST_CA:
            return f"--mount=type=bind,source={HOST_CA},{target}"


def copy(src: str, dest: str, mode: str | None, owner: str | None) -> str:
    flags = (f"--chmod={mode} " if mode else "") + (f"--chown={owner} " if owner else "")
    return f"COPY {flags}{exec_form([src, dest])}"


def config_lines(image: ImageConfig, labels: Sequence[tuple[str, str]]) -> list[str]:
    """The finalize step's image config (commands.config_image) as instructions."""
    lines = []
    if image.env:
        lines.append("ENV " + " ".join(f"{k}={env_value(v)}" for k, v in image.env))
    if image.ports:
        lines.append("EXPOSE " + " ".join(one_line(p) for p in image.ports))
    if image.volumes:
        lines.append("VOLUME " + exec_form(image.volumes))
    if image.user:
        lines.append(f"USER {one_line(image.user)}")
    if image.workdir:
        lines.append(f"WORKDIR {one_line(image.workdir)}")
    all_labels = (*image.labels, *labels)
    if all_labels:
        lines.append("LABEL " + " ".join(f"{env_value(k)}={env_value(v)}" for k, v in all_labels))
    lines.append(f"ENTRYPOINT {exec_form(image.entrypoint)}")
    lines.append(f"CMD {exec_form(image.cmd)}")
    if image.healthcheck:
        lines.append(healthcheck_line(image.healthcheck))
    return lines


def healthcheck_line(hc: Healthcheck) -> str:
    # A zero duration is the default, and the only way to say it: bud refuses "0s".
    durations = (("interval", hc.interval), ("timeout", hc.timeout), ("start-period", hc.start_period))
    flags = " ".join([*(f"--{k}={v}" for k, v in durations if v.strip("0smh")), f"--retries={hc.retries}"])
    kind, *test = hc.test
    if kind == "NONE":
        return "HEALTHCHECK NONE"
    # CMD-SHELL: the shell form; CMD: the exec form (what buildah makes of the same test).
    return f"HEALTHCHECK {flags} CMD {' '.join(test) if kind == 'CMD-SHELL' else exec_form(test)}"


def render(plan: Plan, host_ca: bool = False) -> Containerfile:
    """The Containerfile text of plan; its sources are relative to the context folder.
    host_ca: the steps mount the context's copy of the host CA bundle (write_context)."""
    ref, hint = base_reference(plan)
    lines = [
        f"# {plan.image_ref}, generated by `composer containerfile` from its recipe; build it with",
        "#   buildah bud --layers --format docker --identity-label=false -f THIS_FILE CONTEXT_FOLDER",
        "# (docs/containerfile.md). docker format: OCI image configs have no HEALTHCHECK.",
    ]
    if hint:
        lines.append(f"# Base: {hint}.")
    lines += [f"ARG BASE={ref}", "FROM $BASE", ""]
    for layer in plan.layers():
        if layer.step is not None:  # the base is FROM; the reconcile layer is composer's own
            lines += [*module_group(plan, layer.step, host_ca), ""]
    lines += ["# finalize", "COPY --chown=0:0 finalize/ /", *config_lines(plan.finalize.image, plan.finalize.labels)]
    return Containerfile("\n".join(lines) + "\n", ref, hint)


def write_context(plan: Plan, folder: Path, host_ca: Path | None = None) -> None:
    """The build context the Containerfile's sources name: each module's folder, the
    toolkit, the hooks, each module's options file and the finalize files; with host_ca a
    copy of that CA bundle (public certificates, mounted into steps, never in a layer)."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    if host_ca is not None:
        shutil.copyfile(host_ca, folder / HOST_CA)
    shutil.copytree(toolkit.toolkit_dir(), folder / "toolkit")
    for step in plan.steps:
        name = step.module.name
        shutil.copytree(step.module.path, folder / "modules" / name, symlinks=True,
                        ignore=shutil.ignore_patterns("__pycache__"))
        options = folder / "options" / f"{name}.json"
        options.parent.mkdir(exist_ok=True)
        options.write_text(cmd.options_json(step.options))
        for hook, path in step.hooks:
            target = folder / "hooks" / name / hook
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
    write_finalize_files(plan.finalize, folder / "finalize")
