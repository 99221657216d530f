"""Build a plan with buildah: reuse every cached layer, build the rest, tag the image."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from composer import commands as cmd
from composer.errors import CommandError, ComposerError
from composer.finalize import (
    ENTRYPOINT_PATH,
    ENV_NAMES,
    SERVICES_JSON,
    SUPERVISORD_CONF,
    entrypoint_script,
    services_json,
    supervisord_conf,
)
from composer.keys import canonical_json
from composer.model import BaseKind, Plan, Step
from composer.progress import Progress
from composer.runner import Runner, require_tool

# Variables passed to build steps when the host has them: build time only, never committed.
PROXY_VARS = ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY")
CA_VARS = (
    "SSL_CERT_FILE", "PIP_CERT", "REQUESTS_CA_BUNDLE", "NODE_EXTRA_CA_CERTS",
    "CURL_CA_BUNDLE", "GIT_SSL_CAINFO", "CARGO_HTTP_CAINFO", "npm_config_cafile",
)
HOST_CA_CANDIDATES = ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt")


def default_host_ca() -> Path | None:
    env = os.environ.get("SSL_CERT_FILE")
    for candidate in (env, *HOST_CA_CANDIDATES):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


@dataclass(frozen=True)
class BuildSettings:
    storage: cmd.Storage = field(default_factory=cmd.Storage)
    cache_dir: Path = Path("~/.cache/composer").expanduser()
    output_dir: Path = Path("build")
    host_ca: Path | None = None
    archive: bool = True
    oci_archive: bool = True  # the .oci.tar besides the .oci layout folder


@dataclass
class LayerResult:
    index: int
    name: str
    key: str
    cache: str  # "hit" | "miss"
    seconds: float
    size: int | None = None

    def as_dict(self, last: int) -> dict[str, Any]:
        kind = "base" if self.index == 0 else "finalize" if self.index == last else "module"
        return {
            "index": self.index, "kind": kind, "module": self.name, "key": self.key,
            "cache": self.cache, "seconds": round(self.seconds, 3), "size": self.size,
        }


@dataclass
class BuildContext:
    """What changes while a plan is built; the plan itself stays frozen."""

    plan: Plan
    settings: BuildSettings
    runner: Runner
    progress: Progress
    existing: set[str] = field(default_factory=set)
    tagged: set[str] = field(default_factory=set)  # other names of the images found
    results: list[LayerResult] = field(default_factory=list)
    lists_fresh: bool = False
    archive_path: Path | None = None
    started: float = field(default_factory=time.monotonic)


def list_cached_keys(runner: Runner, storage: cmd.Storage) -> set[str]:
    """Keys that have a layer in containers-storage (one buildah call for all)."""
    return set(list_images(runner, storage))


def list_images(runner: Runner, storage: cmd.Storage) -> dict[str, set[str]]:
    """Cache key -> every name of that image in containers-storage (one buildah call)."""
    text = runner.output(cmd.buildah(storage, "images", "--json"))
    prefix = cmd.CACHE_REPO + ":"
    found: dict[str, set[str]] = {}
    for image in json.loads(text or "[]"):
        names = set(image.get("names") or ())
        for name in names:
            if name.startswith(prefix):
                found[name[len(prefix):]] = names
    return found


def build(plan: Plan, settings: BuildSettings, runner: Runner, progress: Progress) -> BuildContext:
    """Build every step of plan that is not cached, tag the image, write the archive."""
    require_tool("buildah")
    ctx = BuildContext(plan, settings, runner, progress)
    images = list_images(runner, settings.storage)
    ctx.existing = set(images)
    ctx.tagged = images.get(plan.finalize.key, set())
    total = len(plan.steps) + 1
    with progress.step(f"[0/{total}] base {plan.base.base.source}") as report:
        _layer(ctx, 0, plan.base.base.source, plan.base.key, report, lambda: build_base(ctx))
    for step in plan.steps:
        label = f"[{step.index}/{total}] {step.module.name}"
        with progress.step(label) as report:
            _layer(ctx, step.index, step.module.name, step.key, report, lambda s=step: build_module(ctx, s))
    with progress.step(f"[{total}/{total}] finalize") as report:
        _layer(ctx, total, "finalize", plan.finalize.key, report, lambda: build_finalize(ctx))
    with progress.step(f"tag {plan.image_ref}") as report:
        if plan.image_ref in ctx.tagged:
            report("up to date")
        else:
            runner.run(cmd.buildah(settings.storage, "tag", cmd.cache_ref(plan.finalize.key), plan.image_ref))
            report("done")
    if settings.archive:
        write_archive(ctx)
    return ctx


def _layer(ctx: BuildContext, index: int, name: str, key: str, report: Any, make: Any) -> None:
    started = time.monotonic()
    if key in ctx.existing:
        report("cached")
        ctx.results.append(LayerResult(index, name, key, "hit", time.monotonic() - started))
        return
    report("building…", final=False)
    make()
    ctx.existing.add(key)
    seconds = time.monotonic() - started
    ctx.results.append(LayerResult(index, name, key, "miss", seconds))
    report(f"built in {seconds:.1f}s")


@contextmanager
def working_container(ctx: BuildContext, key: str, what: str) -> Iterator[str]:
    """A named working container, removed whatever happens unless it was committed."""
    name = f"composer-{key[:16]}"
    storage = ctx.settings.storage
    # A build killed earlier may have left its container behind under the same name.
    with contextlib.suppress(CommandError):
        ctx.runner.run(cmd.buildah(storage, "rm", name))
    state = {"committed": False}
    try:
        yield name
        state["committed"] = True
    except CommandError as e:
        raise ComposerError(
            f"{what}: command failed (exit {e.code}): {' '.join(e.argv)}\n{indent(e.tail())}",
            hint="the working container was removed; fix the module and build again "
            "(earlier layers stay cached)",
        ) from None
    finally:
        if not state["committed"]:
            with contextlib.suppress(CommandError):
                ctx.runner.run(cmd.buildah(storage, "rm", name))


def indent(text: str) -> str:
    return "\n".join("    | " + line for line in text.splitlines())


def save_key_document(ctx: BuildContext, key: str, document: dict[str, Any]) -> None:
    """Keep the key's inputs beside the cache so a later miss can be explained."""
    folder = ctx.settings.cache_dir / "keys"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{key}.json").write_bytes(canonical_json(document))


def build_base(ctx: BuildContext) -> None:
    base = ctx.plan.base.base
    storage = ctx.settings.storage
    run = ctx.runner.run
    key = ctx.plan.base.key
    with working_container(ctx, key, f"base {base.source}") as ctr:
        if base.kind is BaseKind.DEBOOTSTRAP:
            _debootstrap_into(ctx, ctr)
        elif base.kind is BaseKind.SCRATCH:
            run(cmd.from_scratch(storage, ctr))
        elif base.kind is BaseKind.IMAGE:
            run(cmd.from_image(storage, base.ref, ctr, pull="missing"), stream=True)
        else:
            run(cmd.from_image(storage, f"oci-archive:{base.ref}", ctr, pull="missing"), stream=True)
        run(cmd.commit(storage, ctr, cmd.cache_ref(key)))
    save_key_document(ctx, key, ctx.plan.base.key_document)


def _debootstrap_into(ctx: BuildContext, ctr: str) -> None:
    base = ctx.plan.base.base
    storage = ctx.settings.storage
    run = ctx.runner.run
    require_tool("debootstrap")
    if os.geteuid() != 0:
        raise ComposerError(
            f"base {base.source}: debootstrap needs root",
            hint="build the base once as root, or use an image:/oci-archive: base",
        )
    run(cmd.from_scratch(storage, ctr))
    mount = ctx.runner.output(cmd.buildah(storage, "mount", ctr)).strip()
    debs = ctx.settings.cache_dir / "debootstrap" / base.ref
    debs.mkdir(parents=True, exist_ok=True)
    run(cmd.debootstrap(base, mount, str(debs.resolve())), stream=True)
    root = Path(mount)
    (root / "etc/apt/sources.list").write_text(cmd.sources_list(base))
    # debootstrap copies the host's name and resolver; neither belongs in an image.
    (root / "etc/hostname").write_text("localhost\n")
    (root / "etc/resolv.conf").write_text("")
    (root / "etc/hosts").write_text("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost\n")
    for folder in ("var/lib/apt/lists", "var/cache/apt/archives"):
        _empty_folder(root / folder, keep=("partial", "lock"))
    for log in ("var/log/bootstrap.log", "var/log/dpkg.log", "var/log/alternatives.log"):
        (root / log).unlink(missing_ok=True)
    shutil.rmtree(root / "var/log/apt", ignore_errors=True)
    run(cmd.buildah(storage, "umount", ctr))
    run(cmd.config_env(storage, ctr, [("PATH", cmd.DEFAULT_PATH), ("LANG", "C.UTF-8")]))


def _empty_folder(folder: Path, keep: tuple[str, ...]) -> None:
    if not folder.is_dir():
        return
    for entry in folder.iterdir():
        if entry.name in keep:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def build_env(ctx: BuildContext) -> tuple[dict[str, str], list[tuple[str, str, str]]]:
    """Environment and mounts every build step gets: CA bundle, proxies, package caches."""
    env: dict[str, str] = {k: os.environ[k] for k in PROXY_VARS if k in os.environ}
    volumes: list[tuple[str, str, str]] = []
    if ctx.settings.host_ca is not None:
        volumes.append((str(ctx.settings.host_ca.resolve()), cmd.CA_MOUNT, "ro"))
        env.update({k: cmd.CA_MOUNT for k in CA_VARS})
    family = ctx.plan.recipe.base.family
    cache_root = ctx.settings.cache_dir / "packages" / ctx.plan.base.key[:16]
    for target in cmd.PACKAGE_CACHE_MOUNTS[family]:
        host = cache_root / target.strip("/").replace("/", "_")
        (host / "partial").mkdir(parents=True, exist_ok=True)
        volumes.append((str(host.resolve()), target, ""))
    return env, volumes


def build_module(ctx: BuildContext, step: Step) -> None:
    module = step.module
    family = ctx.plan.recipe.base.family
    storage = ctx.settings.storage
    run = ctx.runner.run
    what = f"layer {step.index} {module.name}"
    base_env, volumes = build_env(ctx)
    env = {
        **base_env, **cmd.APT_ENV, **cmd.option_env(step.options),
        "COMPOSER_FAMILY": str(family), "COMPOSER_MODULE": module.name,
    }
    with tempfile.TemporaryDirectory(prefix="composer-step-") as tmp, \
            working_container(ctx, step.key, what) as ctr:
        options_file = Path(tmp, "options.json")
        options_file.write_text(json.dumps(step.options, indent=2, sort_keys=True))
        run(cmd.from_image(storage, cmd.cache_ref(step.parent_key), ctr))
        created_by = f"composer layer {step.index} {module.name} {module.version}"
        # One call: the history line and the module's env, which later steps see.
        run(cmd.config_env(storage, ctr, module.env, created_by))

        def inside(argv: list[str], mounts: list[tuple[str, str, str]], workdir: str = "") -> None:
            run(cmd.run_in(storage, ctr, argv, env, mounts, workdir), stream=True)

        packages = module.packages_for(family)
        if packages:
            if not ctx.lists_fresh:
                inside(cmd.refresh_packages(family), volumes)
                ctx.lists_fresh = True
            inside(cmd.install_packages(family, packages, module.recommends), volumes)
        for spec in module.files:
            run(cmd.copy_in(storage, ctr, str(module.path / spec.src), spec.dest, spec.mode, spec.owner))
        for name, path in step.hooks:
            run(cmd.copy_in(storage, ctr, str(path), f"/etc/composer/hooks.d/{name}", "0755", "0:0"))
        scripts = module.scripts_for(family)
        script_mounts = [
            *volumes,
            (str(module.path.resolve()), cmd.MODULE_MOUNT, "ro"),
            (str(options_file), cmd.OPTIONS_MOUNT, "ro"),
        ]
        for script in scripts:
            first = (module.path / script.run).read_text(errors="replace").split("\n", 1)[0]
            argv = cmd.script_argv(first, f"{cmd.MODULE_MOUNT}/{script.run}")
            inside(argv, script_mounts, cmd.MODULE_MOUNT)
        if packages or scripts:
            # The mount points, package caches and logs of this step stay out of the layer.
            clean = cmd.clean_packages(family, mounted=True)
            inside([*clean, cmd.BUILD_MOUNT_ROOT], [])
        run(cmd.commit(storage, ctr, cmd.cache_ref(step.key)))
    save_key_document(ctx, step.key, step.key_document)


def build_finalize(ctx: BuildContext) -> None:
    final = ctx.plan.finalize
    storage = ctx.settings.storage
    run = ctx.runner.run
    with tempfile.TemporaryDirectory(prefix="composer-final-") as tmp, \
            working_container(ctx, final.key, "finalize") as ctr:
        stage = Path(tmp)
        entry = stage / ENTRYPOINT_PATH.lstrip("/")
        entry.parent.mkdir(parents=True)
        entry.write_text(entrypoint_script())
        entry.chmod(0o755)
        conf_dir = stage / "etc/composer"
        conf_dir.mkdir(parents=True)
        services_file = stage / SERVICES_JSON.lstrip("/")
        services_file.write_text(json.dumps(services_json(final.services), indent=2))
        (stage / ENV_NAMES.lstrip("/")).write_text("".join(f"{name}\n" for name in final.env_names))
        if final.services:
            (stage / SUPERVISORD_CONF.lstrip("/")).write_text(supervisord_conf(final.services))
            (stage / "var/log/supervisor").mkdir(parents=True)
        for path in stage.rglob("*"):
            if path.is_dir():
                path.chmod(0o755)
            elif path.name != entry.name:
                path.chmod(0o644)
        run(cmd.from_image(storage, cmd.cache_ref(final.parent_key), ctr))
        run(cmd.buildah(storage, "copy", "--quiet", "--chown", "0:0", ctr, f"{stage}/", "/"))
        run(cmd.config_image(storage, ctr, final.image, final.labels, "composer finalize"))
        run(cmd.commit(storage, ctr, cmd.cache_ref(final.key)))
    save_key_document(ctx, final.key, final.key_document)


def archive_path(plan: Plan, output_dir: Path) -> Path:
    return output_dir / f"{plan.recipe.name}-{plan.recipe.tag}.oci.tar"


def write_archive(ctx: BuildContext) -> None:
    """The image as an OCI layout folder, and the OCI archive of it unless turned off; each
    export compresses and writes only the layers the previous one did not have."""
    from composer.export import export_layout, write_oci_archive

    plan = ctx.plan
    path = archive_path(plan, ctx.settings.output_dir)
    layout = path.with_suffix("")  # <name>-<tag>.oci
    with ctx.progress.step(f"write oci layout {layout}") as report:
        report("writing…", final=False)  # a first export of a large image takes minutes
        result = export_layout(ctx.runner, ctx.settings.storage, cmd.cache_ref(plan.finalize.key),
                               layout, plan.image_ref)
        if result.up_to_date:
            report("up to date")
        else:
            report(f"{len(result.new_layers)} layers written ({result.written_bytes / 1e6:.1f} MB), "
                   f"{len(result.reused_layers)} reused, {len(result.removed)} old blobs removed")
    ctx.archive_path = layout
    if not ctx.settings.oci_archive:
        return
    path.with_name(path.name + ".key").unlink(missing_ok=True)  # the marker of earlier versions
    with ctx.progress.step(f"write oci-archive {path}") as report:
        report("writing…", final=False)
        archive = write_oci_archive(layout, plan.image_ref, path)
        if archive.up_to_date:
            report("up to date")
        else:
            report(f"{archive.written_bytes / 1e6:.1f} MB appended to {archive.kept_bytes / 1e6:.1f} MB kept")
    ctx.archive_path = path


def measure_sizes(ctx: BuildContext) -> None:
    """Fill in each layer's size: its image's total minus its parent's (one podman call)."""
    keys = [r.key for r in ctx.results]
    argv = ["podman", *ctx.settings.storage.flags(), "image", "inspect", "--format",
            "{{.Size}}", *(cmd.cache_ref(k) for k in keys)]
    try:
        sizes = [int(x) for x in ctx.runner.output(argv).split()]
    except (CommandError, ComposerError, ValueError):
        return
    previous = 0
    for result, total in zip(ctx.results, sizes, strict=False):
        result.size = max(total - previous, 0)
        previous = total


def report_document(ctx: BuildContext) -> dict[str, Any]:
    layers = [r.as_dict(len(ctx.plan.steps) + 1) for r in ctx.results]
    return {
        "recipe": ctx.plan.recipe.name,
        "image": ctx.plan.image_ref,
        "base": ctx.plan.base.base.source,
        "archive": str(ctx.archive_path) if ctx.archive_path else None,
        "layers": layers,
        "totals": {
            "layers": len(layers),
            "hits": sum(1 for r in ctx.results if r.cache == "hit"),
            "misses": sum(1 for r in ctx.results if r.cache == "miss"),
            "seconds": round(time.monotonic() - ctx.started, 3),
            "size": sum(r.size or 0 for r in ctx.results),
        },
    }
