"""The composer command line: check, plan, build (and kube, schema)."""

from __future__ import annotations

import json
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from composer import __version__
from composer import commands as cmd
from composer.errors import CommandError, ComposerError
from composer.model import BaseKind, Layering, Plan
from composer.progress import Progress
from composer.runner import Runner


@dataclass
class Settings:
    storage: cmd.Storage
    modules_dirs: tuple[Path, ...]
    cache_dir: Path
    verbose: bool
    debug: bool


pass_settings = click.make_pass_decorator(Settings)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="composer")
@click.option("--root", default="", help="containers-storage root (default: CONTAINERS_STORAGE_CONF or the system's).")
@click.option("--runroot", default="", help="containers-storage run root.")
@click.option("--storage-driver", default="", help="Storage driver (overlay, vfs).")
@click.option("--modules-dir", "modules_dirs", multiple=True, type=click.Path(path_type=Path, file_okay=False),
              help="Extra folder of layer modules, searched first (repeatable).")
@click.option("--cache-dir", type=click.Path(path_type=Path, file_okay=False),
              default=lambda: str(Path("~/.cache/composer").expanduser()), show_default="~/.cache/composer",
              help="Key documents, package downloads and bootstrap debs.")
@click.option("-v", "--verbose", is_flag=True, help="Echo every command and stream its output.")
@click.option("--debug", is_flag=True, help="Show tracebacks on errors.")
@click.pass_context
def cli(ctx: click.Context, root: str, runroot: str, storage_driver: str, modules_dirs: tuple[Path, ...],
        cache_dir: Path, verbose: bool, debug: bool) -> None:
    """Build devpod container images from a TOML recipe of cached layer modules.

    \b
      composer check recipes/turboflow.toml   validate recipe and modules
      composer plan  recipes/turboflow.toml   layers, cache keys, cached/missing
      composer build recipes/turboflow.toml   build, reusing every cached layer
    """
    ctx.obj = Settings(cmd.Storage(root, runroot, storage_driver), modules_dirs, Path(cache_dir), verbose, debug)


recipe_arg = click.argument("recipe", type=click.Path(path_type=Path, dir_okay=False))


def make_plan(settings: Settings, recipe: Path, runner: Runner | None = None) -> Plan:
    from composer import schema
    from composer.planner import plan_loaded
    from composer.recipe import load_recipe

    schema.VALID_CACHE = settings.cache_dir / "valid" / __version__
    loaded = load_recipe(recipe)
    digest = ""
    base = loaded.base
    if base.kind is BaseKind.IMAGE and "@" not in base.ref and runner is not None:
        digest = image_id(runner, settings.storage, base.ref)
    conflicts = {}
    if loaded.layering is Layering.RESTACK:
        from composer.builder import known_conflicts

        conflicts = known_conflicts(settings.cache_dir)
    the_plan = plan_loaded(loaded, settings.modules_dirs, digest, conflicts)
    if the_plan.recipe.pod:
        from composer.kube import pod_config

        pod_config(the_plan)  # [pod] is checked now, not first when a manifest is rendered
    return the_plan


def image_id(runner: Runner, storage: cmd.Storage, ref: str) -> str:
    """The ID of an image: base, pulled first when it is not in storage yet."""
    argv = cmd.buildah(storage, "inspect", "--type", "image", "--format", "{{.FromImageID}}", ref)
    try:
        return runner.output(argv).strip()
    except CommandError:
        runner.run(cmd.buildah(storage, "pull", "--quiet", ref), stream=True)
        return runner.output(argv).strip()


@cli.command()
@recipe_arg
@pass_settings
def check(settings: Settings, recipe: Path) -> None:
    """Validate RECIPE and every module it names; build nothing."""
    plan = make_plan(settings, recipe)
    click.echo(f"{recipe}: ok — base {plan.base.base.source}, {len(plan.steps)} layers, "
               f"{len(plan.finalize.services)} services")


@cli.command()
@recipe_arg
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--offline", is_flag=True, help="Do not look in containers-storage (status: unknown).")
@click.option("--why", is_flag=True, help="Explain each missing layer against the last build of its module.")
@pass_settings
def plan(settings: Settings, recipe: Path, as_json: bool, offline: bool, why: bool) -> None:
    """Show the ordered layers of RECIPE with their cache keys and status."""
    runner = Runner(verbose=settings.verbose)
    the_plan = make_plan(settings, recipe, None if offline else runner)
    cached: set[str] | None = None
    if not offline:
        from composer.builder import list_cached_keys

        cached = list_cached_keys(runner, settings.storage)
    document = plan_document(the_plan, cached)
    if as_json:
        click.echo(json.dumps(document, indent=2))
        return
    click.echo(f"{document['image']}  (base {document['base']['source']})")
    steps = {s.key: s for s in the_plan.steps}
    restack = the_plan.recipe.layering is Layering.RESTACK
    for layer in the_plan.layers():
        status = "unknown" if cached is None else "cached" if layer.key in cached else "missing"
        step = steps.get(layer.key)
        how = ""
        if restack and step is not None:
            how = f"  {'restacked' if step.restacked else 'linear'}: {step.why}"
        click.echo(f"  {layer.index:>2}  {layer.name:<20} {layer.key[:16]}  {status:<8}{how}".rstrip())
    if why and cached is not None:
        from composer.explain import explain

        click.echo("why:")
        for line in explain(the_plan, cached, settings.cache_dir):
            click.echo(f"  {line}")


def plan_document(plan: Plan, cached: set[str] | None) -> dict[str, Any]:
    def status(key: str) -> str:
        if cached is None:
            return "unknown"
        return "cached" if key in cached else "missing"

    return {
        "recipe": plan.recipe.name,
        "image": plan.image_ref,
        "family": str(plan.recipe.base.family),
        "base": {"source": plan.base.base.source, "key": plan.base.key, "status": status(plan.base.key)},
        "layering": str(plan.recipe.layering),
        "layers": [
            {"module": s.module.name, "version": s.module.version, "key": s.key, "parent": s.parent_key,
             "status": status(s.key), "restacked": s.restacked, "why": s.why}
            for s in plan.steps
        ],
        "reconcile": None if plan.reconcile is None else {
            "key": plan.reconcile.key, "parent": plan.reconcile.parent_key, "status": status(plan.reconcile.key),
            "members": [s.module.name for s in plan.steps if s.restacked]},
        "finalize": {"key": plan.finalize.key, "status": status(plan.finalize.key),
                     "services": [s.name for s in plan.finalize.services]},
    }


@cli.command()
@recipe_arg
@click.option("-o", "--output", "output_dir", type=click.Path(path_type=Path, file_okay=False),
              default=Path("build"), show_default=True, help="Folder for the OCI archive and manifests.")
@click.option("--report", "report_file", type=click.Path(path_type=Path, dir_okay=False),
              help="Write a JSON build report here.")
@click.option("--no-archive", is_flag=True, help="Export nothing: no OCI layout, no OCI archive.")
@click.option("--oci-archive/--no-oci-archive", default=True, show_default=True,
              help="Also write <name>-<tag>.oci.tar from the OCI layout folder (docs/export.md).")
@click.option("--host-ca/--no-host-ca", default=True, show_default=True,
              help="Mount the host's CA bundle into build steps (build time only).")
@click.option("-q", "--quiet", is_flag=True, help="No progress lines.")
@click.option("-j", "--jobs", type=click.IntRange(1, 64), default=None,
              help="Restacked module layers to build at once (default: from the cores and memory).")
@pass_settings
def build(settings: Settings, recipe: Path, output_dir: Path, report_file: Path | None,
          no_archive: bool, oci_archive: bool, host_ca: bool, quiet: bool, jobs: int | None) -> None:
    """Build RECIPE: reuse cached layers, build the rest, tag NAME:TAG, write the archive."""
    from composer.builder import BuildSettings, default_host_ca, default_jobs, measure_sizes, report_document
    from composer.builder import build as run_build

    runner = Runner(verbose=settings.verbose)
    the_plan = make_plan(settings, recipe, runner)
    build_settings = BuildSettings(
        storage=settings.storage,
        cache_dir=settings.cache_dir,
        output_dir=output_dir,
        host_ca=default_host_ca() if host_ca else None,
        archive=not no_archive,
        jobs=jobs or default_jobs(),
        oci_archive=oci_archive,
    )
    progress = Progress(quiet=quiet)
    ctx = run_build(the_plan, build_settings, runner, progress)
    write_manifest(the_plan, output_dir, progress)
    if report_file:
        measure_sizes(ctx)
        report_file.parent.mkdir(parents=True, exist_ok=True)
        report_file.write_text(json.dumps(report_document(ctx), indent=2) + "\n")
    hits = sum(1 for r in ctx.results if r.cache == "hit")
    progress.line(f"{the_plan.image_ref}: {hits}/{len(ctx.results)} layers cached")


def write_manifest(plan: Plan, output_dir: Path, progress: Progress) -> None:
    """The kube manifest beside the archive; left alone when its inputs are unchanged."""
    from composer import kube
    from composer.keys import cache_key, file_digest

    path = kube.manifest_path(plan, output_dir)
    marker = path.with_name(path.name + ".key")
    inputs = {
        "final": plan.finalize.key,
        "image": plan.image_ref,
        "pod": plan.recipe.pod,
        "secrets": [[s.name, s.description] for s in plan.recipe.secrets],
        "renderer": file_digest(Path(kube.__file__)),
    }
    key = cache_key(inputs)
    if path.is_file() and marker.is_file() and marker.read_text().strip() == key:
        progress.line(f"kube manifest {path} up to date")
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(kube.render_manifest(plan))
    marker.write_text(key + "\n")
    progress.line(f"kube manifest {path}")


@cli.command()
@recipe_arg
@click.option("-o", "--output", "output_file", type=click.Path(path_type=Path, dir_okay=False),
              help="Write the manifest here instead of printing it.")
@click.option("--rootless", is_flag=True,
              help="The variant a non-root user's podman plays on a cgroups v1 host without "
                   "/dev/net/tun: host network; no ports, resources or devices (docs/kube.md).")
@pass_settings
def kube(settings: Settings, recipe: Path, output_file: Path | None, rootless: bool) -> None:
    """Print the podman-kube manifest (Pod + Secret template) of RECIPE; build nothing."""
    from composer.kube import render_manifest

    text = render_manifest(make_plan(settings, recipe), rootless=rootless)
    if output_file is None:
        click.echo(text, nl=False)
        return
    output_file.parent.mkdir(parents=True, exist_ok=True)
    output_file.write_text(text)


@cli.command()
@recipe_arg
@click.option("-o", "--output", "output_file", type=click.Path(path_type=Path, dir_okay=False),
              help="Where to write it (default: build/<name>-<tag>.Containerfile).")
@pass_settings
def containerfile(settings: Settings, recipe: Path, output_file: Path | None) -> None:
    """Write an equivalent Containerfile of RECIPE and its build context (build nothing)."""
    from composer.containerfile import render, write_context

    the_plan = make_plan(settings, recipe)
    name = f"{the_plan.recipe.name}-{the_plan.recipe.tag}"
    path = output_file or Path("build") / f"{name}.Containerfile"
    context = path.with_name(f"{name}.context")
    result = render(the_plan)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_context(the_plan, context)
    path.write_text(result.text)
    click.echo(f"{path} (context {context})")
    if result.base_hint:
        click.echo(f"base: {result.base_hint}")
    click.echo(f"build: buildah bud --layers --format docker --identity-label=false "
               f"-t {the_plan.image_ref} -f {path} {context}")


@cli.command()
@click.argument("which", type=click.Choice(["recipe", "module"]))
def schema(which: str) -> None:
    """Print the JSON Schema of a recipe or a layer module."""
    from composer.schema import load_schema

    click.echo(json.dumps(load_schema(which), indent=2))


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> None:
    """Entry point: one-line errors, tracebacks only with --debug."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    # SIGTERM ends a build like Ctrl-C: the working container is removed, nothing is tagged.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        cli.main(args=args, prog_name="composer", standalone_mode=False)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except click.exceptions.Abort:
        click.echo("composer: aborted", err=True)
        sys.exit(130)
    except ComposerError as e:
        if debug:
            raise
        click.echo(f"composer: error: {e.message}", err=True)
        if e.hint:
            click.echo(f"composer: hint: {e.hint}", err=True)
        sys.exit(1)
    except OSError as e:  # a file or folder composer cannot read or write
        if debug:
            raise
        click.echo(f"composer: error: {e.filename or ''}: {e.strerror or e}".replace(": : ", ": "), err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo("composer: interrupted", err=True)
        sys.exit(130)
