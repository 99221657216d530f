"""The composer command line: check, plan, build (and kube, job, volumes, schema, modules, show, diff)."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import click

from composer import __version__
from composer import commands as cmd
from composer.emit.output import write_output
from composer.errors import CommandError, ComposerError, ComposerErrors, redact
from composer.model import BaseKind, Layering, LayerKind, Plan, Pod, Recipe
from composer.progress import Progress
from composer.runner import Runner

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class Settings:
    storage: cmd.Storage
    given_dirs: tuple[Path, ...]  # --modules-dir
    cache_dir: Path
    verbose: bool
    debug: bool
    strict: bool = False
    env_dirs: tuple[Path, ...] = ()  # COMPOSER_MODULES_PATH

    @property
    def modules_dirs(self) -> tuple[Path, ...]:
        """Folders of modules searched before the recipes' own."""
        return (*self.given_dirs, *self.env_dirs)

    def set_late(self, name: str, value: Any) -> None:
        """A global option given after the subcommand (`composer check --strict ...`)."""
        if name == "modules_dirs":
            self.given_dirs = (*self.given_dirs, *value)
        elif name in ("root", "runroot", "storage_driver"):
            field = {"storage_driver": "driver"}.get(name, name)
            self.storage = replace(self.storage, **{field: value})
        elif name == "cache_dir":
            self.cache_dir = Path(value)
        else:
            setattr(self, name, value)


pass_settings = click.make_pass_decorator(Settings)


def env_modules_dirs() -> tuple[Path, ...]:
    """COMPOSER_MODULES_PATH: folders of modules, os.pathsep-separated."""
    return tuple(Path(p) for p in os.environ.get("COMPOSER_MODULES_PATH", "").split(os.pathsep) if p)


# (declarations, settings) of the options every command accepts, before or after its name.
GLOBAL_OPTIONS: list[tuple[tuple[str, ...], dict[str, Any]]] = [
    (("--root",), {"default": "",
                   "help": "containers-storage root (default: CONTAINERS_STORAGE_CONF or the system's)."}),
    (("--runroot",), {"default": "", "help": "containers-storage run root."}),
    (("--storage-driver",), {"default": "", "help": "Storage driver (overlay, vfs)."}),
    (("--modules-dir", "modules_dirs"), {
        "multiple": True, "type": click.Path(path_type=Path, file_okay=False),
        "help": "Folder of layer modules, searched first (repeatable; COMPOSER_MODULES_PATH adds more)."}),
    (("--cache-dir",), {
        "type": click.Path(path_type=Path, file_okay=False),
        "default": lambda: str(Path("~/.cache/composer").expanduser()), "show_default": "~/.cache/composer",
        "help": "Key documents, package downloads and bootstrap debs."}),
    (("-v", "--verbose"), {"is_flag": True, "help": "Echo every command and stream its output."}),
    (("--debug",), {"is_flag": True, "help": "Show tracebacks on errors."}),
    (("--strict",), {"is_flag": True, "help": "A module found in two folders is an error, not a warning."}),
]


def _late_option(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    settings = ctx.find_object(Settings)
    if settings is not None and param.name and value not in (None, (), False):
        settings.set_late(param.name, value)


def global_options(command: F) -> F:
    """The global options again on a subcommand, updating the group's Settings."""
    for decls, attrs in reversed(GLOBAL_OPTIONS):
        late = {k: v for k, v in attrs.items() if k not in ("default", "show_default")}
        command = click.option(*decls, **late, default=None, expose_value=False, callback=_late_option)(command)
    return command


def _group_options(command: F) -> F:
    for decls, attrs in reversed(GLOBAL_OPTIONS):
        command = click.option(*decls, **attrs)(command)
    return command


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="composer")
@_group_options
@click.pass_context
def cli(ctx: click.Context, root: str, runroot: str, storage_driver: str, modules_dirs: tuple[Path, ...],
        cache_dir: Path, verbose: bool, debug: bool, strict: bool) -> None:
    """Build devpod container images from a TOML recipe of cached layer modules.

    \b
      composer check recipes/turboflow.toml   validate recipe and modules
      composer plan  recipes/turboflow.toml   layers, cache keys, cached/missing
      composer build recipes/turboflow.toml   build, reusing every cached layer
      composer modules / show MODULE          the modules there are, and one in full

    Global options may also follow the command's name.
    """
    ctx.obj = Settings(cmd.Storage(root, runroot, storage_driver), modules_dirs, Path(cache_dir), verbose, debug,
                       strict, env_modules_dirs())


recipe_arg = click.argument("recipe", type=click.Path(path_type=Path, dir_okay=False))


def load_checked(settings: Settings, recipe: Path, problems: list[ComposerError] | None = None) -> Recipe:
    """The recipe, read and validated (schema results cached per composer version), with
    a warning for each module two folders hold (an error with --strict). problems: see
    load_recipe."""
    from composer import schema
    from composer.recipe import load_recipe

    schema.VALID_CACHE = settings.cache_dir / "valid" / __version__
    loaded = load_recipe(recipe, problems)
    report_shadowing(settings, loaded)
    return loaded


def make_plan(settings: Settings, recipe: Path, runner: Runner | None = None) -> Plan:
    the_plan = plan_of(settings, load_checked(settings, recipe), runner)
    report_notes(settings, the_plan)
    if the_plan.recipe.pod != Pod():  # a recipe without [pod] has no Pod to check
        from composer.pod import check_pod

        check_pod(the_plan)  # now, not first when a manifest is rendered
    return the_plan


def plan_of(settings: Settings, loaded: Recipe, runner: Runner | None = None) -> Plan:
    """A loaded recipe's plan: an image: base keyed by its image ID (looked up with a
    runner), restacked modules known to collide built on the stack."""
    from composer.planner import plan_loaded

    digest = ""
    base = loaded.base
    if base.kind is BaseKind.IMAGE and "@" not in base.ref and runner is not None:
        digest = image_id(runner, settings.storage, base.ref)
    conflicts = {}
    if loaded.layering is Layering.RESTACK:
        from composer.builder import known_conflicts

        conflicts = known_conflicts(settings.cache_dir)
    return plan_loaded(loaded, settings.modules_dirs, digest, conflicts)


def report_notes(settings: Settings, plan: Plan) -> None:
    """The plan's warnings about the recipe (what a `replace` could not carry over): one
    line each, or with --strict an error."""
    if plan.notes and settings.strict:
        more = f" (and {len(plan.notes) - 1} more)" if len(plan.notes) > 1 else ""
        raise ComposerError(plan.notes[0] + more, hint="drop --strict to build anyway")
    for line in plan.notes:
        click.echo(f"composer: warning: {line}", err=True)


def report_shadowing(settings: Settings, recipe: Recipe) -> None:
    """A module of the recipe that two folders hold: a warning, or with --strict an error."""
    from composer.modules import shadowing

    lines = shadowing(recipe.layers, (*settings.modules_dirs, *recipe.module_dirs))
    if lines and settings.strict:
        more = f" (and {len(lines) - 1} more)" if len(lines) > 1 else ""
        raise ComposerError(lines[0] + more, hint="rename one of the modules, or drop --strict to use the first")
    for line in lines:
        click.echo(f"composer: warning: {line}", err=True)


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
@global_options
def check(settings: Settings, recipe: Path) -> None:
    """Validate RECIPE and every module it names; build nothing. Every error found is
    reported, one line each."""
    from composer.planner import check_recipe

    problems: list[ComposerError] = []
    plan, errors = check_recipe(load_checked(settings, recipe, problems), settings.modules_dirs)
    if plan is not None and plan.recipe.pod != Pod():
        from composer.pod import pod_errors

        errors += pod_errors(plan)
    errors = problems + errors
    if plan is None or errors:
        raise ComposerErrors(errors)
    report_notes(settings, plan)
    click.echo(f"{recipe}: ok — base {plan.base.base.source}, {len(plan.steps)} layers, "
               f"{len(plan.finalize.services)} services")
    if plan.recipe.parent_file is not None:
        click.echo(parent_cost(settings, plan))


@cli.command()
@recipe_arg
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--offline", is_flag=True, help="Do not look in containers-storage (status: unknown).")
@click.option("--why", is_flag=True, help="Explain each missing layer against the last build of its module.")
@click.option("--effective", is_flag=True,
              help="Print the merged recipe (extends resolved), each value with the file that set it.")
@click.option("--against", type=click.Path(path_type=Path, dir_okay=False),
              help="Compare with another recipe's plan (as `composer diff RECIPE AGAINST`).")
@click.option("--cluster", is_flag=True,
              help="Estimate a fanned-out build (composer job --fan-out) from the last measured layer times.")
@pass_settings
@global_options
def plan(settings: Settings, recipe: Path, as_json: bool, offline: bool, why: bool, effective: bool,
         against: Path | None, cluster: bool) -> None:
    """Show the ordered layers of RECIPE with their cache keys and status."""
    if effective:
        show_effective(recipe, as_json)
        return
    if against is not None:
        show_diff(settings, recipe, against, as_json)
        return
    runner = Runner(verbose=settings.verbose)
    the_plan = make_plan(settings, recipe, None if offline else runner)
    cached: set[str] | None = None
    if not offline:
        from composer.builder import list_cached_keys

        cached = list_cached_keys(runner, settings.storage)
    document = plan_document(the_plan, cached)
    if why and cached is not None:
        from composer.explain import missing_reasons

        reasons = missing_reasons(the_plan, cached, settings.cache_dir)
        for entry in document["layers"]:
            entry["missing_because"] = reasons.get(entry["key"], [])
    if cluster:
        from composer import timings

        document["cluster"] = timings.cluster_estimate(the_plan, timings.load(settings.cache_dir))
    if as_json:
        click.echo(json.dumps(document, indent=2))
        return
    click.echo(f"{document['image']}  (base {document['base']['source']})")
    restack = the_plan.recipe.layering is Layering.RESTACK
    for layer in the_plan.layers():
        status = "unknown" if cached is None else "cached" if layer.key in cached else "missing"
        how = ""
        if restack and layer.step is not None:
            how = f"  {'restacked' if layer.restacked else 'linear'}: {layer.step.why}"
        click.echo(f"  {layer.index:>2}  {layer.name:<20} {layer.key[:16]}  {status:<8}{how}".rstrip())
    if the_plan.recipe.parent_file is not None:
        click.echo(parent_cost(settings, the_plan, None if offline else runner))
    if cluster:
        from composer.timings import estimate_lines

        click.echo("fan-out estimate (composer job --fan-out, docs/build-job.md):")
        for line in estimate_lines(document["cluster"]):
            click.echo(f"  {line}")
    if why and cached is not None:
        from composer.explain import explain

        click.echo("why:")
        for line in explain(the_plan, cached, settings.cache_dir):
            click.echo(f"  {line}")


def parent_cost(settings: Settings, plan: Plan, runner: Runner | None = None) -> str:
    """What a child recipe shares with the recipe it extends, in one line."""
    from composer.effective import shared_line
    from composer.recipe import load_recipe

    assert plan.recipe.parent_file is not None
    return shared_line(plan, plan_of(settings, load_recipe(plan.recipe.parent_file), runner))


def show_effective(recipe: Path, as_json: bool) -> None:
    from composer.effective import effective_document, render_effective
    from composer.recipe import load_recipe

    loaded = load_recipe(recipe)
    if as_json:
        click.echo(json.dumps(effective_document(loaded), indent=2))
    else:
        click.echo(render_effective(loaded), nl=False)


def show_diff(settings: Settings, a: Path, b: Path, as_json: bool) -> None:
    from composer.effective import diff_document, render_diff

    document = diff_document(make_plan(settings, a), make_plan(settings, b))
    if as_json:
        click.echo(json.dumps(document, indent=2))
        return
    for line in render_diff(document):
        click.echo(line)


@cli.command()
@click.argument("a", type=click.Path(path_type=Path, dir_okay=False))
@click.argument("b", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--graph", "graph_file", type=click.Path(path_type=Path, dir_okay=False), metavar="FILE",
              help="Also draw A's plan with the layers it shares with B coloured (FILE.svg/.png/.dot, `-`).")
@pass_settings
@global_options
def diff(settings: Settings, a: Path, b: Path, as_json: bool, graph_file: Path | None) -> None:
    """Compare the plans of recipes A and B: shared layers, A's first divergent layer and why."""
    if graph_file is not None:
        diff_graph(settings, a, b, graph_file)
        return
    show_diff(settings, a, b, as_json)


def plan_document(plan: Plan, cached: set[str] | None) -> dict[str, Any]:
    def status(key: str) -> str:
        if cached is None:
            return "unknown"
        return "cached" if key in cached else "missing"

    document: dict[str, Any] = {
        "recipe": plan.recipe.name,
        "image": plan.image_ref,
        "family": str(plan.recipe.base.family),
    }
    modules: list[dict[str, Any]] = []
    reconcile: dict[str, Any] | None = None
    for layer in plan.layers():
        if layer.kind is LayerKind.BASE:
            document["base"] = {"source": layer.name, "key": layer.key, "status": status(layer.key)}
            document["layering"] = str(plan.recipe.layering)
        elif layer.step is not None:
            s = layer.step
            modules.append({"module": s.module.name, "version": s.module.version,
                            "folder": str(s.module.path.resolve()), "options": s.options, "key": s.key,
                            "parent": s.parent_key,
                            "status": status(s.key), "restacked": s.restacked, "why": s.why})
        elif layer.kind is LayerKind.RECONCILE:
            reconcile = {"key": layer.key, "parent": layer.parent_key, "stack": layer.key_document["stack"],
                         "status": status(layer.key), "members": [m["module"] for m in modules if m["restacked"]]}
        else:
            document["layers"] = modules
            document["reconcile"] = reconcile
            document["finalize"] = {"key": layer.key, "status": status(layer.key),
                                    "services": [s.name for s in plan.finalize.services]}
    return document


def registry_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """--tls-verify, --creds, --authfile: registry access as the containers tools take it."""
    for option in reversed([
        click.option("--tls-verify/--no-tls-verify", default=None,
                     help="Require HTTPS with a verified certificate (default: as registries.conf says)."),
        click.option("--creds", envvar="COMPOSER_REGISTRY_CREDS", default="", metavar="USER[:PASSWORD]",
                     help="Registry credentials (default: auth.json, as podman login writes it). On the "
                          "command line a password is visible in `ps` to every user: prefer --creds-file "
                          "or COMPOSER_REGISTRY_CREDS."),
        click.option("--creds-file", default=None, metavar="FILE",
                     type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
                     help="Read USER:PASSWORD from FILE (- for standard input)."),
        click.option("--authfile", envvar="REGISTRY_AUTH_FILE", default="", metavar="FILE",
                     help="Registry auth file (default: ${XDG_RUNTIME_DIR}/containers/auth.json)."),
    ]):
        f = option(f)

    @functools.wraps(f)
    def with_creds(*args: Any, creds: str, creds_file: Path | None, **kwargs: Any) -> Any:
        return f(*args, creds=registry_creds(creds, creds_file), **kwargs)

    return with_creds


def registry_creds(creds: str, creds_file: Path | None) -> str:
    """The credentials from --creds, COMPOSER_REGISTRY_CREDS or --creds-file (one of them)."""
    ctx = click.get_current_context()
    on_command_line = ctx.get_parameter_source("creds") is click.core.ParameterSource.COMMANDLINE
    if creds_file is not None:
        if creds:
            raise ComposerError("--creds-file: give the credentials once (--creds or COMPOSER_REGISTRY_CREDS "
                                "is set too)")
        try:
            text = sys.stdin.read() if str(creds_file) == "-" else creds_file.read_text()
        except (OSError, UnicodeDecodeError) as e:
            raise ComposerError(f"--creds-file: {creds_file}: cannot be read ({e.__class__.__name__})") from None
        creds = text.strip()
        if not creds or "\n" in creds:
            raise ComposerError(f"--creds-file: {creds_file}: holds no USER[:PASSWORD] line",
                                hint="write one line USER:PASSWORD")
    elif on_command_line and ":" in creds:
        click.echo("composer: warning: --creds puts the password in composer's command line, which every "
                   "user of this host sees (ps) for the whole run; use --creds-file FILE or "
                   "COMPOSER_REGISTRY_CREDS instead", err=True)
    return creds


def sign_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """--sign-key and --sign-passphrase-file: what signs pushed images (docs/cache.md)."""
    for option in reversed([
        click.option("--sign-key", envvar="COMPOSER_SIGN_KEY", default="", metavar="FILE",
                     help="Sign what is pushed (--cache-to, --push) with this sigstore private key "
                          "(composer keygen); the signatures go beside the images in the registry."),
        click.option("--sign-passphrase-file", envvar="COMPOSER_SIGN_PASSPHRASE_FILE", default="", metavar="FILE",
                     help="The sign key's passphrase, on the first line of FILE."),
    ]):
        f = option(f)
    return f


@cli.command()
@recipe_arg
@click.option("-o", "--output", "output_dir", type=click.Path(path_type=Path, file_okay=False),
              default=Path("build"), show_default=True, help="Folder for the OCI archive and manifests.")
@click.option("--report", "report_file", type=click.Path(path_type=Path, dir_okay=False),
              help="Write a JSON build report here.")
@click.option("--no-archive", is_flag=True, help="Export nothing: no OCI layout, no OCI archive.")
@click.option("--oci-archive/--no-oci-archive", default=True, show_default=True,
              help="Also write <name>-<tag>.oci.tar from the OCI layout folder (docs/export.md).")
@click.option("--compression", type=click.Choice(["gzip", "zstd"]), default="gzip", show_default=True,
              envvar="COMPOSER_COMPRESSION",
              help="How the export compresses layers; zstd is smaller and faster to write and read, "
                   "not read by Docker < 23 (docs/export.md).")
@click.option("--compression-level", type=int, default=None, envvar="COMPOSER_COMPRESSION_LEVEL", metavar="N",
              help="gzip 1-9, zstd 1-20 (default: c/image's for the format).")
@click.option("--early-export/--no-early-export", default=True, show_default=True,
              envvar="COMPOSER_EARLY_EXPORT",
              help="Compress each layer for the export as soon as it is committed, while the build "
                   "goes on (docs/export.md).")
@click.option("--host-ca/--no-host-ca", default=True, show_default=True,
              help="Mount the host's CA bundle into build steps (build time only).")
@click.option("-q", "--quiet", is_flag=True, help="No progress lines.")
@click.option("-j", "--jobs", type=click.IntRange(1, 64), default=None,
              help="Restacked module layers to build at once (default: from the cores and memory).")
@click.option("--cache-from", envvar="COMPOSER_CACHE_FROM", default="", metavar="REPO",
              help="Registry repository to pull missing layers from (docs/cache.md).")
@click.option("--cache-to", envvar="COMPOSER_CACHE_TO", default="", metavar="REPO",
              help="Registry repository to push layers to, tagged by their keys.")
@click.option("--verify-key", envvar="COMPOSER_VERIFY_KEY", default="", metavar="FILE",
              help="Use only --cache-from entries signed with this sigstore public key (docs/cache.md).")
@registry_options
@sign_options
@click.option("--push", "push_ref", default="", metavar="REF",
              help="Push the image to this registry reference when it is built (host/path:tag).")
@click.option("--sbom/--no-sbom", default=True, show_default=True,
              help="Write the image's SBOMs (SPDX 2.3 and CycloneDX 1.6 JSON) beside the archive.")
@click.option("--locked/--no-lock", "locked", default=None,
              help="Build exactly RECIPE.lock (the default when it exists; --locked requires it) "
              "or ignore it (docs/lock.md).")
@click.option("--only", "only", default="", metavar="MODULE",
              help="Build only MODULE's layer on its parent (local or --cache-from); push it with --cache-to.")
@click.option("--from-cache-only", is_flag=True,
              help="Build no module layer: pull each missing one from --cache-from, or fail naming them.")
@click.option("--parent-only", is_flag=True,
              help="Restack: build only the layers up to the common parent (a fan-out's first Job).")
@pass_settings
@global_options
def build(settings: Settings, recipe: Path, output_dir: Path, report_file: Path | None,
          no_archive: bool, oci_archive: bool, compression: str, compression_level: int | None,
          early_export: bool, host_ca: bool, quiet: bool, jobs: int | None, cache_from: str, cache_to: str,
          verify_key: str, tls_verify: bool | None, creds: str, authfile: str,
          sign_key: str, sign_passphrase_file: str, push_ref: str, sbom: bool, locked: bool | None, only: str,
          from_cache_only: bool, parent_only: bool) -> None:
    """Build RECIPE: reuse cached layers, build the rest, tag NAME:TAG, write the archive."""
    from composer.builder import BuildSettings, default_host_ca, default_jobs, measure_sizes, report_document
    from composer.builder import build as run_build
    from composer.cache.registry import RegistryCache, push_image
    from composer.cache.signing import Signing, check_key_files
    from composer.emit.oci import Compression
    from composer.refs import check_image_ref, check_repo

    runner = Runner(verbose=settings.verbose)
    push_ref = check_image_ref(push_ref, "--push") if push_ref else ""
    if sum(map(bool, (only, from_cache_only, parent_only))) > 1 or (push_ref and (only or parent_only)):
        raise click.UsageError("--only, --parent-only and --from-cache-only are stages of their own; "
                               "only the last pushes an image")
    signing = check_key_files(Signing(sign_key, sign_passphrase_file, verify_key))
    try:
        compress = Compression(compression, compression_level)
    except ComposerError as e:
        raise click.BadParameter(str(e), param_hint="--compression-level") from None
    the_plan = make_plan(settings, recipe, runner)
    progress = Progress(quiet=quiet)
    the_plan = lock_mode(settings, the_plan, locked, progress)
    # The command line (or its environment variables) wins over the recipe's [cache].
    registry = RegistryCache(check_repo(cache_from, "--cache-from") or the_plan.recipe.cache_from,
                             check_repo(cache_to, "--cache-to") or the_plan.recipe.cache_to,
                             tls_verify, authfile, creds, signing)
    build_settings = BuildSettings(
        storage=settings.storage,
        cache_dir=settings.cache_dir,
        output_dir=output_dir,
        host_ca=default_host_ca() if host_ca else None,
        archive=not no_archive,
        jobs=jobs or default_jobs(),
        oci_archive=oci_archive,
        compression=compress,
        early_export=early_export,
        registry=registry,
        only=only,
        from_cache_only=from_cache_only,
        parent_only=parent_only,
    )
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    ctx = run_build(the_plan, build_settings, runner, progress)
    the_plan = ctx.plan  # as built: modules found to collide went onto the stack (replan)
    if only:
        (result,) = ctx.results
        progress.line(f"{only}: layer {result.key} {result.cache}" + (", pushed" if result.pushed else ""))
        return
    if parent_only:
        progress.line(f"common parent {ctx.results[-1].key}: {len(ctx.results)} layers")
        return
    write_manifest(the_plan, output_dir, progress)
    documents = []
    if sbom:
        from composer.emit.attach import attach
        from composer.emit.attach import documents as build_documents

        write_sboms(the_plan, runner, settings, output_dir, progress, started)
        documents = build_documents(output_dir, f"{the_plan.recipe.name}-{the_plan.recipe.tag}")
        if ctx.archive_path is not None:  # the SBOMs and provenance beside the image in its layout
            from composer.builder import archive_path

            layout = archive_path(the_plan, output_dir).with_suffix("")
            subject, attached = attach(layout, the_plan.image_ref, documents)
            progress.line(f"attached {', '.join(a.kind.name for a in attached)} to {subject.digest[:19]} in {layout}")
    if report_file:
        measure_sizes(ctx)
        report_file.parent.mkdir(parents=True, exist_ok=True)
        report_file.write_text(json.dumps(report_document(ctx), indent=2) + "\n")
    if push_ref:
        with progress.step(f"push {push_ref}") as push_report:
            tags = push_image(runner, settings.storage, the_plan.image_ref, push_ref, tls_verify, authfile, creds,
                              scratch_folder(settings), signing, documents)
            push_report("done" + (f"; SBOMs and provenance as {', '.join(t.rsplit(':', 1)[1] for t in tags)}"
                                  if tags else ""))
    hits = sum(1 for r in ctx.results if r.cache == "hit")
    pulled = sum(1 for r in ctx.results if r.cache == "pulled")
    progress.line(f"{the_plan.image_ref}: {hits}/{len(ctx.results)} layers cached"
                  + (f", {pulled} pulled from the registry cache" if pulled else ""))


SBOM_FORMATS = {"spdx": "spdx.json", "cyclonedx": "cdx.json"}


def write_sboms(plan: Plan, runner: Runner, settings: Settings, output_dir: Path, progress: Progress,
                started: str) -> None:
    """<name>-<tag>.spdx.json and .cdx.json beside the archive, and the build's provenance
    statement (docs/sbom.md); each layer's part is read once per layer key."""
    from composer import inventory
    from composer import sbom as sbom_module
    from composer.emit import provenance
    from composer.emit import sbom as emit
    from composer.keys import cache_key, file_digest

    stem = f"{plan.recipe.name}-{plan.recipe.tag}"
    outputs = [output_dir / f"{stem}.{suffix}" for suffix in (*SBOM_FORMATS.values(), "provenance.json")]
    marker = output_dir / f"{stem}.sbom.key"
    key = cache_key({"final": plan.finalize.key, "image": plan.image_ref, "recipe": file_digest(plan.recipe.path),
                     "code": [file_digest(Path(str(m.__file__))) for m in (emit, provenance, inventory, sbom_module)]})
    if is_current(marker, outputs, key):  # a no-op build: the same image, the same documents
        progress.line(f"sbom {output_dir / stem}.{{spdx,cdx,provenance}}.json up to date")
        return
    with progress.step("sbom") as report:
        bom = sbom_module.collect(plan, runner, settings.storage, settings.cache_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        for fmt, suffix in SBOM_FORMATS.items():
            document = emit.spdx(bom) if fmt == "spdx" else emit.cyclonedx(bom)
            (output_dir / f"{stem}.{suffix}").write_text(json.dumps(document, indent=1) + "\n")
        statement = provenance.statement(plan, image_id(runner, settings.storage, plan.image_ref), started,
                                         bom.created)
        (output_dir / f"{stem}.provenance.json").write_text(json.dumps(statement, indent=1) + "\n")
        marker.write_text(key + "\n")
        kept = "" if bom.inventory_of == bom.image_key else (
            f" (the inventory of {bom.inventory_of[:12]}: the layers that differ change nothing it reads)")
        report(f"{len(bom.entries)} components: {output_dir / stem}.{{spdx,cdx,provenance}}.json{kept}")


def lock_mode(settings: Settings, plan: Plan, locked: bool | None, progress: Progress) -> Plan:
    """A recipe with a lock is built locked unless --no-lock; --locked without a fresh lock is an error."""
    from composer.builder import known_conflicts
    from composer.lockfile import lock_path, require_fresh
    from composer.planner import relock

    if locked is False:
        if plan.lock is not None:
            progress.line(f"warning: {lock_path(plan.recipe.path)} ignored (--no-lock): "
                          "each module installs what its sources serve today")
            return relock(plan, None, known_conflicts(settings.cache_dir))
        return plan
    if plan.lock is not None or locked:
        require_fresh(plan, known_conflicts(settings.cache_dir), f"composer lock {plan.recipe.path}")
    return plan


@cli.command("lock")
@recipe_arg
@click.option("--update", "update", multiple=True, metavar="MODULE",
              help="Refresh only this module's entry (repeat for more); the others stay as locked.")
@click.option("--check", is_flag=True, help="Exit non-zero when RECIPE.lock is stale for RECIPE; build nothing.")
@click.option("-q", "--quiet", is_flag=True, help="No progress lines.")
@pass_settings
@global_options
def lock(settings: Settings, recipe: Path, update: tuple[str, ...], check: bool, quiet: bool) -> None:
    """Write RECIPE.lock: build RECIPE (cached layers are reused), then record every package
    each module layer installs (docs/lock.md)."""
    from composer.lockfile import lock_recipe

    runner = Runner(verbose=settings.verbose)
    for line in lock_recipe(make_plan(settings, recipe, runner), settings.storage, settings.cache_dir, runner,
                            Progress(quiet=quiet), update, check):
        click.echo(line)


def write_manifest(plan: Plan, output_dir: Path, progress: Progress) -> None:
    """The kube manifest beside the archive; left alone when its inputs are unchanged."""
    from composer import pod
    from composer.emit import kube
    from composer.keys import cache_key, file_digest

    path = kube.manifest_path(plan, output_dir)
    marker = path.with_name(path.name + ".key")
    inputs = {
        "final": plan.finalize.key,
        "image": plan.image_ref,
        "pod": dataclasses.asdict(plan.recipe.pod),
        "secrets": [[s.name, s.description] for s in plan.recipe.secrets],
        "renderer": [file_digest(Path(kube.__file__)), file_digest(Path(pod.__file__))],
    }
    key = cache_key(inputs)
    if is_current(marker, [path], key):
        progress.line(f"kube manifest {path} up to date")
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(kube.render_manifest(plan))
    marker.write_text(key + "\n")
    progress.line(f"kube manifest {path}")


def is_current(marker: Path, outputs: Sequence[Path], key: str) -> bool:
    """What a build writes beside the archive is left alone when every file of it exists and
    the marker beside them holds the key of the inputs they were made from."""
    return all(p.is_file() for p in outputs) and marker.is_file() and marker.read_text().strip() == key


@cli.command()
@recipe_arg
@click.option("-o", "--output", "output_file", type=click.Path(path_type=Path, dir_okay=False),
              help="Write the manifest here instead of printing it.")
@click.option("--rootless", is_flag=True,
              help="The variant a non-root user's podman plays on a cgroups v1 host without "
                   "/dev/net/tun: host network; no ports, resources or devices (docs/kube.md).")
@click.option("--secrets-dir", default="", metavar="DIR",
              help="Mount the host folder DIR (one file per secret) instead of a Secret: "
                   "what podman 4.3 can play (docs/kube.md).")
@click.option("--no-devices", is_flag=True,
              help="Leave out the recipe's device nodes and GPU limit (a host without them).")
@pass_settings
@global_options
def kube(settings: Settings, recipe: Path, output_file: Path | None, rootless: bool,
         secrets_dir: str, no_devices: bool) -> None:
    """Print the podman-kube manifest (Pod + Secret template) of RECIPE; build nothing."""
    from composer.emit.kube import render_manifest

    text = render_manifest(make_plan(settings, recipe), rootless=rootless,
                           secrets_dir=secrets_dir, devices=not no_devices)
    write_output(text, output_file)


@cli.group()
def volumes() -> None:
    """Back up and restore the named volumes of RECIPE's Pod (docs/operations.md)."""


@volumes.command("backup")
@recipe_arg
@click.argument("folder", type=click.Path(path_type=Path, file_okay=False))
@click.option("--force", is_flag=True, help="Replace a backup already in FOLDER.")
@pass_settings
@global_options
def volumes_backup(settings: Settings, recipe: Path, folder: Path, force: bool) -> None:
    """Write one tar per volume of RECIPE's Pod and index.json into FOLDER."""
    from composer.volumes import backup

    backup(*volume_context(settings, recipe), folder, force, lambda line: click.echo(line, err=True))


@volumes.command("restore")
@recipe_arg
@click.argument("folder", type=click.Path(path_type=Path, file_okay=False))
@click.option("--force", is_flag=True, help="Replace the content of volumes that are not empty.")
@pass_settings
@global_options
def volumes_restore(settings: Settings, recipe: Path, folder: Path, force: bool) -> None:
    """Import the backup in FOLDER into RECIPE's volumes (made when missing)."""
    from composer.volumes import restore

    restore(*volume_context(settings, recipe), folder, force, lambda line: click.echo(line, err=True))


def volume_context(settings: Settings, recipe: Path) -> tuple[Runner, cmd.Storage, Plan]:
    return Runner(verbose=settings.verbose), settings.storage, make_plan(settings, recipe)


def scratch_folder(settings: Settings) -> Path:
    """Where a command's own temporary folders go (owned_tempdir makes it)."""
    from composer.scratch import SCRATCH

    return settings.cache_dir / SCRATCH


@cli.command()
@recipe_arg
@click.argument("ref")
@click.option("-o", "--output", "output_dir", type=click.Path(path_type=Path, file_okay=False), default="build",
              show_default=True, help="Where the build wrote the SBOMs and provenance pushed beside the image.")
@registry_options
@sign_options
@pass_settings
@global_options
def push(settings: Settings, recipe: Path, ref: str, output_dir: Path, tls_verify: bool | None, creds: str,
         authfile: str, sign_key: str, sign_passphrase_file: str) -> None:
    """Push the image RECIPE was built into to REF (host/path:tag), without building; with
    the build's SBOMs and provenance beside it when they are that image's."""
    from composer.builder import list_cached_keys
    from composer.cache.registry import push_image
    from composer.cache.signing import Signing, check_key_files
    from composer.refs import check_image_ref

    dest = check_image_ref(ref, "REF")
    signing = check_key_files(Signing(sign_key, sign_passphrase_file))
    runner = Runner(verbose=settings.verbose)
    the_plan = make_plan(settings, recipe, runner)
    final = the_plan.finalize.key
    if final not in list_cached_keys(runner, settings.storage):
        raise ComposerError(f"{recipe}: not built (its last layer {final[:16]} is not in containers-storage)",
                            hint=f"run composer build {recipe} first, or build with --push")
    documents = current_documents(the_plan, output_dir, image_id(runner, settings.storage, cmd.cache_ref(final)))
    tags = push_image(runner, settings.storage, cmd.cache_ref(final), dest, tls_verify, authfile, creds,
                      scratch_folder(settings), signing, documents)
    click.echo(f"pushed {the_plan.image_ref} to {dest}"
               + (f", with {', '.join(t.rsplit(':', 1)[1] for t in tags)}" if tags else ""))


def current_documents(plan: Plan, output_dir: Path, image: str) -> list[tuple[Any, Path]]:
    """The SBOMs and provenance a build wrote into output_dir, when they describe image (the
    provenance's subject names it); else a warning and none."""
    from composer.emit.attach import documents

    found = documents(output_dir, f"{plan.recipe.name}-{plan.recipe.tag}")
    provenance = next((path for kind, path in found if kind.name == "att"), None)
    try:
        subject = json.loads(provenance.read_text())["subject"][0]["digest"]["sha256"] if provenance else ""
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        subject = ""
    if subject and subject == image.removeprefix("sha256:"):
        return found
    click.echo(f"composer: warning: no SBOMs of this image in {output_dir} (build it with -o {output_dir}): "
               "the image is pushed without them", err=True)
    return []


@cli.command()
@click.option("--output-prefix", required=True, type=click.Path(path_type=Path, dir_okay=False), metavar="P",
              help="Write the pair to P.private (0600) and P.pub.")
@click.option("--passphrase-file", required=True, type=click.Path(path_type=Path, dir_okay=False), metavar="FILE",
              help="The private key's passphrase, on the first line of FILE (never on the command line).")
@pass_settings
@global_options
def keygen(settings: Settings, output_prefix: Path, passphrase_file: Path) -> None:
    """Make a sigstore key pair for --sign-key and --verify-key (docs/cache.md)."""
    from composer.cache.keygen import generate_key_pair

    private, public, maker = generate_key_pair(Runner(verbose=settings.verbose), output_prefix, passphrase_file)
    click.echo(f"{private} (private: --sign-key, keep it secret) and {public} (public: --verify-key), made by {maker}")


@cli.group()
def cache() -> None:
    """The layers in containers-storage: list them, remove old ones (docs/cache.md)."""


@cache.command("ls")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--registry", "registry_repo", default="", metavar="REPO",
              help="List the layers of this registry cache instead of containers-storage.")
@registry_options
@pass_settings
@global_options
def cache_ls(settings: Settings, as_json: bool, registry_repo: str, tls_verify: bool | None, creds: str,
             authfile: str) -> None:
    """Every cache layer: key, module, size, last used, the tagged images built on it."""
    import time

    from composer.cache.local import age_text, list_entries
    from composer.units import human_size

    runner = Runner(verbose=settings.verbose)
    if registry_repo:
        with registry_listing(settings, runner, registry_repo, tls_verify, creds, authfile) as (_, entries):
            pass
    else:
        entries = list_entries(runner, settings.storage, settings.cache_dir)
    if as_json:
        click.echo(json.dumps([e.as_dict() for e in entries], indent=2))
        return
    now = time.time()
    click.echo(f"{'KEY':<16}  {'MODULE':<22} {'SIZE':>9}  {'LAST USED':<10} USED BY")
    for e in entries:
        click.echo(f"{e.key[:16]}  {e.module[:22]:<22} {human_size(e.size):>9}  "
                   f"{age_text(e.last_used, now):<10} {', '.join(e.used_by) or '-'}")


@contextlib.contextmanager
def registry_listing(settings: Settings, runner: Runner, repo: str, tls_verify: bool | None, creds: str,
                     authfile: str) -> Iterator[tuple[Any, list[Any]]]:
    """The link to a registry cache and its listing: its key tags, what uses each."""
    from composer.cache.local import list_entries
    from composer.cache.prune import RegistryListing, local_users
    from composer.cache.registry import write_auth_file
    from composer.refs import check_repo
    from composer.scratch import owned_tempdir

    repo = check_repo(repo, "--registry")
    local = local_users(list_entries(runner, settings.storage, settings.cache_dir))
    with owned_tempdir(scratch_folder(settings), "auth") as folder:
        if creds:  # a private auth file, gone with the command: never on a command line
            authfile = write_auth_file([repo], creds, Path(folder))
        listing = RegistryListing(runner, repo, tls_verify, authfile)
        yield listing, listing.entries(settings.cache_dir, local)


@cache.command("prune")
@click.option("--older-than", "older_than", type=click.FloatRange(0), default=None, metavar="DAYS",
              help="Remove layers last used more than DAYS ago.")
@click.option("--keep", type=click.IntRange(0), default=None, metavar="N",
              help="Keep the N last used layers of each module.")
@click.option("--dry-run", is_flag=True, help="Say what would be removed; remove nothing.")
@click.option("--registry", "registry_repo", default="", metavar="REPO",
              help="Delete tags of this registry cache instead of local layers (the registry must allow deletes).")
@registry_options
@pass_settings
@global_options
def cache_prune(settings: Settings, older_than: float | None, keep: int | None, dry_run: bool,
                registry_repo: str, tls_verify: bool | None, creds: str, authfile: str) -> None:
    """Remove cache layers no tagged image is built on (by age and/or per module count)."""
    import time

    from composer.cache.local import list_entries, prune_candidates, remove
    from composer.cache.prune import registry_candidates
    from composer.units import human_size

    if older_than is None and keep is None:
        raise ComposerError("cache prune: say what to remove", hint="give --older-than DAYS and/or --keep N")
    runner = Runner(verbose=settings.verbose)
    verb = "would remove" if dry_run else "removing"
    if registry_repo:
        with registry_listing(settings, runner, registry_repo, tls_verify, creds, authfile) as (listing, entries):
            doomed = registry_candidates(entries, older_than, keep, time.time())
            for e in doomed:
                click.echo(f"{verb} {listing.repo}:{e.key[:16]}  {e.module}")
                if not dry_run:
                    listing.delete(e)
    else:
        entries = list_entries(runner, settings.storage, settings.cache_dir)
        doomed = prune_candidates(entries, older_than, keep, time.time())
        for e in doomed:
            click.echo(f"{verb} {e.key[:16]}  {e.module}")
        if not dry_run:
            remove(runner, settings.storage, settings.cache_dir, doomed)
    kept = len(entries) - len(doomed)
    click.echo(f"{len(doomed)} layers {'would be ' if dry_run else ''}removed "
               f"({human_size(sum(e.size for e in doomed))} of images), {kept} kept")


@cli.command()
@recipe_arg
@click.option("--image", required=True, help="The image of recipes/composer.toml the Job runs (a registry ref).")
@click.option("--cache", "cache_repo", metavar="REPO",
              help="Registry cache to read and write: --cache-from and --cache-to.")
@click.option("--cache-from", metavar="REPO", help="Registry cache the build reads (default: --cache).")
@click.option("--cache-to", metavar="REPO", help="Registry cache the build writes (default: --cache).")
@click.option("--push", "push_ref", metavar="REF", help="Push the built image here.")
@click.option("--registry-secret", metavar="NAME", help="A dockerconfigjson Secret with the registry's credentials.")
@click.option("--signing-secret", metavar="NAME",
              help="A Secret with cosign.key, cosign.password and cosign.pub: sign what is pushed, use only "
                   "cache entries signed with that key (docs/build-job.md).")
@click.option("--recipe-path", metavar="PATH",
              help="RECIPE's path in the container (default: its path in this project, which the image carries).")
@click.option("--pod", "as_pod", is_flag=True, help="Print the Pod of the Job's template (for podman kube play).")
@click.option("--privileged", is_flag=True,
              help="A privileged container instead of a user namespace with CAP_SYS_ADMIN in it, for a cluster "
                   "without user namespaces (docs/build-job.md).")
@click.option("--fan-out", "fan_out", is_flag=True,
              help="Restack: a parent Job, one Indexed Job of the restacked modules, a final Job.")
@click.option("--parallelism", type=click.IntRange(1, 1000), default=None,
              help="--fan-out: module layers built at once (default: all).")
@click.option("--check-registry", is_flag=True,
              help="--fan-out: ask the cache which layers it has: no parent Job when it has the common parent, "
                   "no index for a module layer it has.")
@click.option("-o", "--output", "output_file", type=click.Path(path_type=Path, dir_okay=False),
              help="Write the manifest here instead of printing it.")
@registry_options
@pass_settings
@global_options
def job(settings: Settings, recipe: Path, image: str, cache_repo: str | None, cache_from: str | None,
        cache_to: str | None, push_ref: str | None, registry_secret: str | None, signing_secret: str | None,
        recipe_path: str | None, as_pod: bool, privileged: bool, fan_out: bool, parallelism: int | None,
        check_registry: bool, output_file: Path | None, tls_verify: bool | None, creds: str, authfile: str) -> None:
    """Print a Kubernetes Job that builds RECIPE with composer in a cluster (docs/build-job.md)."""
    from composer.emit.job import JobConfig, job_name, render_job
    from composer.recipe import load_recipe
    from composer.selfmodule import PROJECT_ROOT

    loaded = load_recipe(recipe)
    if recipe_path is None:
        try:
            recipe_path = str(recipe.resolve().relative_to(PROJECT_ROOT))
        except ValueError:
            raise ComposerError(
                f"{recipe}: not in this project, so not in the composer image",
                hint="mount it in the Job and give its path there with --recipe-path",
            ) from None
    config = JobConfig(
        name=job_name(loaded.name), recipe=recipe_path, image=image,
        cache_from=cache_from or cache_repo, cache_to=cache_to or cache_repo,
        push=push_ref, registry_secret=registry_secret, signing_secret=signing_secret, privileged=privileged,
    )
    if check_registry and not fan_out:
        raise click.UsageError("--check-registry goes with --fan-out")
    cached = registry_keys(settings, config.cache_from, tls_verify, creds, authfile) if check_registry else None
    text = (fanout_text(settings, recipe, config, parallelism, as_pod, cached) if fan_out
            else render_job(config, as_pod=as_pod))
    write_output(text, output_file)


def registry_keys(settings: Settings, repo: str | None, tls_verify: bool | None, creds: str,
                  authfile: str) -> set[str]:
    """The cache keys a registry cache repository holds (one list-tags)."""
    from composer.cache.prune import KEY_TAG, RegistryListing
    from composer.cache.registry import write_auth_file
    from composer.scratch import owned_tempdir

    if not repo:
        raise click.UsageError("--check-registry: give --cache REPO")
    with owned_tempdir(scratch_folder(settings), "job") as folder:
        if creds:
            authfile = write_auth_file([repo], creds, Path(folder))
        tags = RegistryListing(Runner(verbose=settings.verbose), repo, tls_verify, authfile).tags()
    return {tag for tag in tags if KEY_TAG.fullmatch(tag)}


def fanout_text(settings: Settings, recipe: Path, config: Any, parallelism: int | None, as_pod: bool,
                cached: set[str] | None = None) -> str:
    """The fan-out's Jobs; with cached (the registry's keys), only the stages and indices
    whose layers the registry lacks."""
    from composer.emit.job import FanOut, render_fanout

    if as_pod:
        raise click.UsageError("--fan-out prints Jobs: not with --pod")
    if not (config.cache_from and config.cache_to):
        raise click.UsageError("--fan-out: the stages share layers through a registry: give --cache REPO")
    the_plan = make_plan(settings, recipe)  # offline: which modules are restacked is all it needs
    restacked = [s for s in the_plan.steps if s.restacked]
    if not restacked:
        raise ComposerError(f"{recipe}: --fan-out: no restacked module to fan out",
                            hint='layering = "restack" in the recipe (docs/restack.md)')
    have = cached or set()
    modules = tuple(s.module.name for s in restacked if s.key not in have)
    parent_cached = restacked[0].parent_key in have
    return render_fanout(FanOut(config, modules, parallelism, parent_cached=parent_cached,
                                cached_modules=tuple(s.module.name for s in restacked if s.key in have)))


@cli.command()
@recipe_arg
@click.option("-o", "--output", "output_file", type=click.Path(path_type=Path, dir_okay=False),
              help="Where to write it (default: build/<name>-<tag>.Containerfile).")
@click.option("--host-ca/--no-host-ca", default=True, show_default=True,
              help="Copy the host's CA bundle into the context and mount it into the steps, as "
                   "`composer build` does (behind a TLS-intercepting proxy pip and curl need it).")
@pass_settings
@global_options
def containerfile(settings: Settings, recipe: Path, output_file: Path | None, host_ca: bool) -> None:
    """Write an equivalent Containerfile of RECIPE and its build context (build nothing)."""
    if output_file is not None and str(output_file) == "-":
        raise ComposerError("-o -: a Containerfile is written beside its build context folder, not to stdout",
                            hint="give a file name, e.g. -o build/x.Containerfile")
    from composer.builder import default_host_ca
    from composer.emit.containerfile import render, write_context

    the_plan = make_plan(settings, recipe)
    name = f"{the_plan.recipe.name}-{the_plan.recipe.tag}"
    path = output_file or Path("build") / f"{name}.Containerfile"
    context = path.with_name(f"{name}.context")
    ca = default_host_ca() if host_ca else None
    result = render(the_plan, host_ca=ca is not None)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_context(the_plan, context, ca)
    path.write_text(result.text)
    click.echo(f"{path} (context {context})")
    if result.base_hint:
        click.echo(f"base: {result.base_hint}")
    click.echo(f"build: buildah bud --layers --format docker --identity-label=false "
               f"-t {the_plan.image_ref} -f {path} {context}")


@cli.command()
@recipe_arg
@click.option("--format", "fmt", type=click.Choice(list(SBOM_FORMATS)), default="spdx", show_default=True)
@click.option("-o", "--output", "output_file", type=click.Path(path_type=Path, dir_okay=False, allow_dash=True),
              help="Write it here instead of printing it.")
@pass_settings
@global_options
def sbom(settings: Settings, recipe: Path, fmt: str, output_file: Path | None) -> None:
    """Print the SBOM of RECIPE's built image: every Debian package, Python distribution, npm
    package and cargo crate, with the module and layer that brought it (docs/sbom.md)."""
    from composer.builder import list_cached_keys
    from composer.emit import sbom as emit
    from composer.sbom import collect

    runner = Runner(verbose=settings.verbose)
    the_plan = make_plan(settings, recipe, runner)
    bom = collect(the_plan, runner, settings.storage, settings.cache_dir,
                  existing=list_cached_keys(runner, settings.storage))
    document = emit.spdx(bom) if fmt == "spdx" else emit.cyclonedx(bom)
    write_output(json.dumps(document, indent=1) + "\n", output_file)


@cli.command()
@click.argument("package")
@recipe_arg
@pass_settings
@global_options
def why(settings: Settings, package: str, recipe: Path) -> None:
    """Which module(s) of RECIPE's built image bring PACKAGE, at which version, and (Debian)
    the Depends chain from a package the module installed."""
    from composer.builder import list_cached_keys
    from composer.sbom import collect
    from composer.sbom import why as explain_why

    runner = Runner(verbose=settings.verbose)
    the_plan = make_plan(settings, recipe, runner)
    bom = collect(the_plan, runner, settings.storage, settings.cache_dir,
                  existing=list_cached_keys(runner, settings.storage))
    lines = explain_why(bom, package)
    if not lines:
        raise ComposerError(f"{package}: not in {the_plan.image_ref}",
                            hint=f"composer sbom {recipe} lists what is")
    for line in lines:
        click.echo(line)


@cli.command()
@click.argument("which", type=click.Choice(["recipe", "module"]))
@global_options
def schema(which: str) -> None:
    """Print the JSON Schema of a recipe or a layer module."""
    from composer.schema import load_schema

    click.echo(json.dumps(load_schema(which), indent=2))


def visible_dirs(settings: Settings, recipe: Path | None) -> tuple[Path, ...]:
    """The folders searched for modules: for RECIPE as check and plan search them, else
    --modules-dir, COMPOSER_MODULES_PATH and the project's layers/."""
    from composer.recipe import PROJECT_LAYERS, load_recipe

    own = load_recipe(recipe).module_dirs if recipe is not None else (PROJECT_LAYERS,)
    return tuple(dict.fromkeys((*settings.modules_dirs, *own)))


def complete_module(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    """Shell completion for a module name: those the recipe (--recipe) or the project sees."""
    from composer.modules import available_modules

    # Completion parses without running the group, so there may be no Settings yet.
    settings = ctx.find_object(Settings) or Settings(cmd.Storage(), (), Path(), False, False,
                                                      env_dirs=env_modules_dirs())
    recipe = ctx.params.get("recipe")
    try:
        dirs = visible_dirs(settings, recipe)
    except ComposerError:  # a broken recipe: complete from the project's modules
        dirs = visible_dirs(settings, None)
    return [name for name in available_modules(dirs) if name.startswith(incomplete)]


@cli.command()
@click.argument("recipe", required=False, type=click.Path(path_type=Path, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--markdown", is_flag=True, help="The module reference page (docs/modules.md), options and all.")
@pass_settings
@global_options
def modules(settings: Settings, recipe: Path | None, as_json: bool, markdown: bool) -> None:
    """List the modules RECIPE (or, without it, the project) can use, and their folders."""
    from composer import catalog

    found = catalog.catalog(visible_dirs(settings, recipe))
    if markdown:
        click.echo(catalog.markdown([m for m, _ in found]), nl=False)
        return
    rows = [catalog.summary(m, shadowed) for m, shadowed in found]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for line in catalog.summary_lines(rows):
        click.echo(line)


@cli.command()
@click.argument("module", shell_complete=complete_module)
@click.option("--recipe", type=click.Path(path_type=Path, dir_okay=False),
              help="Look MODULE up as this recipe does (its layers/ folders and its parents').")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_settings
@global_options
def show(settings: Settings, module: str, recipe: Path | None, as_json: bool) -> None:
    """Everything about MODULE: options, requires/after, packages, files, services, ports, hooks."""
    from composer import catalog
    from composer.modules import available_modules, load_module, module_folders

    dirs = visible_dirs(settings, recipe)
    folders = module_folders(module, dirs)
    if not folders:
        known = ", ".join(available_modules(dirs)) or "none"
        raise ComposerError(f"no module {module!r} (known: {known})",
                            hint="composer modules lists them; pass --recipe or --modules-dir for others")
    info = catalog.details(load_module(folders[0]), folders[1:])
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    for line in catalog.detail_lines(info):
        click.echo(line)


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
        for error in e.errors if isinstance(e, ComposerErrors) else [e]:
            # A failed step's output may show a proxy URL with its password: never print one.
            click.echo(f"composer: error: {redact(error.message)}", err=True)
            if error.hint:
                click.echo(f"composer: hint: {redact(error.hint)}", err=True)
        sys.exit(1)
    except OSError as e:  # a file or folder composer cannot read or write
        if debug:
            raise
        click.echo(redact(f"composer: error: {e.filename or ''}: {e.strerror or e}".replace(": : ", ": ")), err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo("composer: interrupted", err=True)
        sys.exit(130)


# ---- the devpod in the tools people already use (issue 23) --------------------------


@cli.command()
@recipe_arg
@click.option("-o", "--output", "output_file", default=".devcontainer/devcontainer.json",
              show_default=True, metavar="FILE",
              help="Where to write it; `-` prints it.")
@click.option("--podman-secrets", is_flag=True,
              help="Pass each recipe secret as a podman secret of its name (create them first "
                   "with `podman secret create`: podman refuses to start when one is missing).")
@click.option("--rootful-podman", is_flag=True,
              help="For `devcontainer up --docker-path podman` run as root: an identity id map "
                   "instead of the --userns=keep-id root's podman refuses (docs/devcontainer.md).")
@pass_settings
@global_options
def devcontainer(settings: Settings, recipe: Path, output_file: str, podman_secrets: bool,
                 rootful_podman: bool) -> None:
    """Write a devcontainer.json for RECIPE's image, for `devcontainer up` or VS Code
    (docs/devcontainer.md); build nothing."""
    from composer.emit.devcontainer import render

    the_plan = make_plan(settings, recipe)
    write_text_output(render(the_plan, podman_secrets=podman_secrets, rootful=rootful_podman), output_file)


def write_text_output(text: str, output_file: str) -> None:
    """`-` is stdout; anything else a file, its folder made."""
    if output_file == "-":
        click.echo(text, nl=False)
        return
    path = Path(output_file)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    click.echo(str(path))


@cli.command("import-feature")
@click.argument("folder", type=click.Path(path_type=Path, file_okay=False))
@click.option("-o", "--output", "output_dir", type=click.Path(path_type=Path, file_okay=False),
              help="The module folder to write (default: layers/<the Feature's id>).")
@click.option("--force", is_flag=True, help="Replace the output folder when it exists.")
def import_feature(folder: Path, output_dir: Path | None, force: bool) -> None:
    """Turn the Dev Container Feature in FOLDER (devcontainer-feature.json + install.sh)
    into a layer module: its options typed, installsAfter/dependsOn as after/requires,
    containerEnv as env, install.sh run with the options the Features spec way."""
    from composer.feature import load_feature, write_module

    feature = load_feature(folder)
    dest = write_module(feature, output_dir or Path("layers") / feature.name, force=force)
    click.echo(str(dest))
    for dependency, options in feature.dependency_options:
        click.echo(f"note: the Feature wants {dependency} with options {options}: set them in the recipe")


@cli.command()
@recipe_arg
@click.option("-o", "--output", "output_file", type=click.Path(path_type=Path, dir_okay=False),
              help="FILE.svg or FILE.png (drawn by Graphviz's dot), FILE.dot (the text); "
                   "default or `-`: the DOT text on stdout.")
@click.option("--offline", is_flag=True, help="Do not look in containers-storage (no cached/missing, no sizes).")
@pass_settings
@global_options
def graph(settings: Settings, recipe: Path, output_file: Path | None, offline: bool) -> None:
    """Draw RECIPE's plan: base, modules with their requires/after, the common parent and
    the restacked layers, finalize; each layer's size and cached/missing state when the
    storage has them (docs/graph.md)."""
    from composer.emit.graph import Known, render_dot

    runner = Runner(verbose=settings.verbose)
    the_plan = make_plan(settings, recipe, None if offline else runner)
    known = Known() if offline else storage_known(runner, settings)
    write_graph_output(runner, render_dot(the_plan, known), output_file)


def storage_known(runner: Runner, settings: Settings) -> Any:
    """Cached keys and the size of each cached image, from one `buildah images` call."""
    from composer.emit.graph import Known, parse_size

    listing = json.loads(runner.output(cmd.buildah(settings.storage, "images", "--json")) or "[]")
    prefix = cmd.CACHE_REPO + ":"
    cached: set[str] = set()
    sizes: dict[str, int] = {}
    for image in listing:
        for name in image.get("names") or ():
            if name.startswith(prefix):
                cached.add(name[len(prefix):])
                if (size := parse_size(image.get("size"))) is not None:
                    sizes[name[len(prefix):]] = size
    return Known(cached=frozenset(cached), sizes=sizes)


def write_graph_output(runner: Runner, dot_text: str, output_file: Path | None) -> None:
    from composer.emit.graph import write_graph

    if output_file is None or str(output_file) == "-":
        click.echo(dot_text, nl=False)
        return
    write_graph(runner, dot_text, output_file)
    click.echo(str(output_file))


def diff_graph(settings: Settings, a: Path, b: Path, output_file: Path) -> None:
    """`composer diff A B --graph FILE`: A's plan, its layers shared with B in blue."""
    from composer.emit.graph import Shared, render_dot

    plan_a, plan_b = make_plan(settings, a), make_plan(settings, b)
    shared = Shared(frozenset(layer.key for layer in plan_b.layers()), plan_b.recipe.name)
    write_graph_output(Runner(verbose=settings.verbose), render_dot(plan_a, shared=shared), output_file)
