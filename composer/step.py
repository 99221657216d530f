"""What one module's layer does, described once: the build-step contract (environment),
the mounts and the ordered actions. `composer build` carries it out with buildah
(builder.build_module) and `composer containerfile` writes it as instructions
(emit/containerfile.module_group); neither decides what a step does on its own.
Pure: no process, no file written."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from composer import commands as cmd
from composer import toolkit
from composer.model import Plan, Step

# The variables that point a program at the host's CA bundle, when the build mounts one.
# The host's proxy variables (http_proxy, HTTPS_PROXY, no_proxy, ...) are not listed: `buildah
# run` passes those of its own environment into the container (buildah from --http-proxy, on by
# default). Never as `--env NAME=VALUE`: a proxy URL may hold a password, and argv is what every
# user of the host sees in `ps`.
CA_VARS = (
    "SSL_CERT_FILE", "PIP_CERT", "REQUESTS_CA_BUNDLE", "NODE_EXTRA_CA_CERTS",
    "CURL_CA_BUNDLE", "GIT_SSL_CAINFO", "CARGO_HTTP_CAINFO", "npm_config_cafile",
)


class Source(StrEnum):
    """What a mount brings into a step; each backend knows where it finds it."""

    MODULE = "module"  # the module's folder, read-only
    TOOLKIT = "toolkit"  # composer-install and its library, read-only
    OPTIONS = "options"  # the module's resolved options as JSON, read-only
    STATE = "state"  # scratch state shared by the steps of one build
    PACKAGE_LISTS = "package-lists"  # the family's package lists, fetched by composer: read-only
    LIST_WORK = "list-work"  # apt's work folders below the lists: the step's own, empty
    PACKAGE_CACHE = "package-cache"  # the family's downloads (apt checks each against the lists)
    HOST_CA = "host-ca"  # the host's CA bundle, read-only, only when the build has one


@dataclass(frozen=True)
class Mount:
    source: Source
    target: str
    read_only: bool


@dataclass(frozen=True)
class Copy:
    """A file into the layer. origin None: the module's options file, which the backend
    writes (a scratch file for buildah, options/NAME.json in a Containerfile's context)."""

    origin: Path | None
    context: str  # the same file's path in a Containerfile build context
    dest: str
    mode: str | None
    owner: str | None


@dataclass(frozen=True)
class Run:
    """A command in the step's container, with the step's environment and mounts."""

    argv: tuple[str, ...]


@dataclass(frozen=True)
class Clean:
    """The clean-up that ends a step: run with no mounts, so their folder can go too."""

    argv: tuple[str, ...]


Action = Copy | Run | Clean


@dataclass(frozen=True)
class ModuleStep:
    env: dict[str, str]  # the build-step contract (docs/format.md), CA variables not included
    image_env: tuple[tuple[str, str], ...]  # the module's env: image config, seen by later steps
    history: str  # the layer's history line
    mounts: tuple[Mount, ...]
    actions: tuple[Action, ...]


def module_step(plan: Plan, step: Step, host_ca: bool) -> ModuleStep:
    """The step that builds step's layer on its parent."""
    module = step.module
    name = module.name
    family = plan.recipe.base.family
    env = {
        **cmd.APT_ENV, **cmd.option_env(step.options),
        "PATH": f"{toolkit.MOUNT}:{container_path(plan, step)}",
        "COMPOSER_OPTIONS": cmd.OPTIONS_MOUNT,
        "COMPOSER_FAMILY": str(family),
        "COMPOSER_MODULE": name,
        "COMPOSER_MODULE_DIR": cmd.MODULE_MOUNT,
        "COMPOSER_LIB": toolkit.LIB,
        "COMPOSER_STATE": cmd.STATE_MOUNT,
        "COMPOSER_RECOMMENDS": str(module.recommends).lower(),
    }
    mounts = (
        Mount(Source.MODULE, cmd.MODULE_MOUNT, True),
        Mount(Source.TOOLKIT, toolkit.MOUNT, True),
        Mount(Source.OPTIONS, cmd.OPTIONS_MOUNT, True),
        Mount(Source.STATE, cmd.STATE_MOUNT, False),
        Mount(Source.PACKAGE_LISTS, cmd.PACKAGE_LISTS[family], True),
        *(Mount(Source.LIST_WORK, f"{cmd.PACKAGE_LISTS[family]}/{name}", False)
          for name in cmd.LIST_WORK_FOLDERS[family]),
        *(Mount(Source.PACKAGE_CACHE, t, False) for t in cmd.PACKAGE_CACHE_MOUNTS[family][1:]),
        *((Mount(Source.HOST_CA, cmd.CA_MOUNT, True),) if host_ca else ()),
    )
    actions: list[Action] = []
    packages = module.packages_for(family, step.options)
    if packages:
        actions.append(Run((f"{toolkit.MOUNT}/composer-install", *packages)))
    for spec in module.files:
        actions.append(Copy(module.path / spec.src, f"modules/{name}/{spec.src}", spec.dest, spec.mode, spec.owner))
    for hook, path in step.hooks:
        actions.append(Copy(path, f"hooks/{name}/{hook}", f"/etc/composer/hooks.d/{hook}", "0755", "0:0"))
    # The start-up hooks read a module's options here (docs/format.md).
    actions.append(Copy(None, f"options/{name}.json", cmd.options_path(name), "0644", "0:0"))
    scripts = module.scripts_for(family)
    for script in scripts:
        first = (module.path / script.run).read_text(errors="replace").split("\n", 1)[0]
        actions.append(Run(tuple(cmd.script_argv(first, f"{cmd.MODULE_MOUNT}/{script.run}"))))
    if packages or scripts or module.clean:
        # The mount points, package caches and logs of this step stay out of the layer.
        actions.append(Clean(tuple(cmd.clean_step(family, module.clean))))
    return ModuleStep(env, module.env, f"composer layer {step.index} {name} {module.version}",
                      mounts, tuple(actions))


def container_path(plan: Plan, step: Step) -> str:
    """PATH inside the step's container: the base's, changed by each module up to this one
    (a module's PATH may refer to the one before it as $PATH, as buildah config expands it)."""
    path = cmd.DEFAULT_PATH
    for earlier in plan.steps[: step.index]:
        value = dict(earlier.module.env).get("PATH")
        if value is not None:
            path = value.replace("${PATH}", path).replace("$PATH", path)
    return path
