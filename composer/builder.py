"""Build a plan with buildah: reuse every cached layer, build the rest, tag the image."""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from composer import commands as cmd
from composer import inventory, lockfile, timings, toolkit
from composer.cache import SharedCache, open_shared_cache
from composer.cache.local import mark_used
from composer.cache.registry import KEY_LABEL, RegistryCache
from composer.emit.oci import Compression
from composer.errors import CommandError, ComposerError
from composer.finalize import write_finalize_files
from composer.keys import canonical_json
from composer.model import BaseKind, Family, Layer, LayerKind, Plan, Step
from composer.planner import reconciler_digest, replan
from composer.progress import Progress
from composer.restack import reconcile as rec
from composer.restack.stack import layer_folders, stack_image, transplant_image
from composer.runner import Runner, require_tool
from composer.scratch import SCRATCH, exclusive, owned_tempdir, owner_gone
from composer.step import CA_VARS, Copy, ModuleStep, Run, Source, module_step

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
    jobs: int = 1  # restacked module layers built at once
    oci_archive: bool = True  # the .oci.tar besides the .oci layout folder
    compression: Compression = Compression()  # of the layers the export writes
    early_export: bool = True  # compress each layer for the export as it is committed
    registry: RegistryCache = field(default_factory=RegistryCache)  # --cache-from/--cache-to
    # Fan-out (docs/build-job.md): build only this module's layer (`--only`), or build no
    # module layer at all and pull every missing one from the cache (`--from-cache-only`).
    only: str = ""
    from_cache_only: bool = False
    parent_only: bool = False  # `--parent-only`: the layers up to the common parent, no more


@dataclass
class LayerResult:
    layer: Layer
    cache: str  # "hit" | "miss" | "pulled" (from the registry cache)
    seconds: float
    size: int | None = None
    pushed: bool = False  # to the registry cache by this build

    @property
    def key(self) -> str:
        return self.layer.key

    def as_dict(self) -> dict[str, Any]:
        return {
            "index": self.layer.index, "kind": str(self.layer.kind), "module": self.layer.name,
            "key": self.layer.key, "cache": self.cache, "seconds": round(self.seconds, 3), "size": self.size,
            "pushed": self.pushed,
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
    # Shared by the steps of one build (mounted at cmd.STATE_MOUNT): composer-install's
    # "package lists fetched" stamp lives here, so lists are fetched once per build.
    state_dir: Path | None = None
    archive_path: Path | None = None
    export: dict[str, Any] = field(default_factory=dict)  # what the export wrote, for the report
    started: float = field(default_factory=time.monotonic)
    remote: SharedCache | None = None  # the registry cache, when the build has one
    lists_fetched: bool = False  # refresh_lists ran in this build
    lists_lock: threading.Lock = field(default_factory=threading.Lock)
    early: EarlyExport | None = None  # compresses each layer for the export as it is committed
    reconcile: dict[str, Any] = field(default_factory=dict)  # how the reconcile layer was made, for the report


def list_cached_keys(runner: Runner, storage: cmd.Storage) -> set[str]:
    """Keys that have a layer in containers-storage (one buildah call for all)."""
    return set(list_images(runner, storage))


class DamagedImages(ComposerError):
    """containers-storage holds image records without their manifest: what a buildah
    killed in the middle of a commit leaves. Every `buildah images` fails until they go."""

    def __init__(self, ids: list[str]) -> None:
        self.ids = ids
        super().__init__(
            f"containers-storage holds {len(ids)} damaged image(s) ({', '.join(i[:12] for i in ids)}): "
            "left by a buildah killed while committing",
            hint=f"`composer build` removes them, or: buildah rmi --force {' '.join(ids)}",
        )


# c/storage's words for an image record whose manifest is missing, and the ID it names.
DAMAGED_IMAGE = re.compile(r'locating item named \\?"manifest\\?" for image with ID \\?"([0-9a-f]{64})')


def damaged_ids(output: str) -> list[str]:
    """The IDs of the damaged images a failed `buildah images` names."""
    return sorted(set(DAMAGED_IMAGE.findall(output)))


def list_images(runner: Runner, storage: cmd.Storage) -> dict[str, set[str]]:
    """Cache key -> every name of that image in containers-storage (one buildah call)."""
    try:
        text = runner.output(cmd.buildah(storage, "images", "--json"))
    except CommandError as e:
        damaged = damaged_ids(e.output)
        if damaged:
            raise DamagedImages(damaged) from None
        raise
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
    images = images_repaired(ctx)
    ctx.existing = set(images)
    ctx.tagged = images.get(plan.finalize.key, set())
    with contextlib.ExitStack() as stack:
        must_build = any(layer.key not in ctx.existing for layer in plan.layers())
        if must_build or left_behind(settings.cache_dir):
            # Another build of this storage or cache may be building the same layers:
            # wait for it, then look again at what exists now. A build with nothing to
            # build only sweeps what a killed build left, and only when no build runs.
            held = [stack.enter_context(exclusive(path, progress.line, what, wait=must_build))
                    for path, what in lock_paths(ctx)]
            if all(held):
                ctx.existing = set(list_images(runner, settings.storage))
                sweep_working_containers(ctx)
                sweep_scratch(settings.cache_dir)
        ctx.state_dir = Path(stack.enter_context(scratch_dir(ctx, "state")))
        if settings.archive and settings.early_export and not (settings.only or settings.parent_only):
            early = ctx.early = EarlyExport(ctx)
            stack.push(lambda failed, *_: early.close(cancel=failed is not None))
        if settings.registry:
            # Its own scratch folder: the state folder is mounted into build steps.
            auth_dir = Path(stack.enter_context(scratch_dir(ctx, "registry")))
            ctx.remote = open_shared_cache(settings.registry, settings.storage, runner, progress.line, auth_dir)
        if settings.only:
            build_only(ctx, settings.only)
            return ctx
        if settings.parent_only:
            build_layers(ctx, parent_layers(plan))
            mark_used(settings.cache_dir, [r.key for r in ctx.results])
            return ctx
        while True:
            try:
                if settings.from_cache_only:
                    require_module_layers(ctx)
                build_layers(ctx)
                break
            except StackConflict as e:
                # Those modules cannot be stacked with the others: remember it (the next
                # plan knows), and build them on top of the stack instead.
                record_conflicts(settings.cache_dir, e.conflicts)
                for line in e.lines:
                    progress.line(line)
                ctx.plan = plan = replan(ctx.plan, known_conflicts(settings.cache_dir))
                ctx.tagged = images.get(plan.finalize.key, set())
        # One result per layer of the plan that was built (after a replan, a layer built in
        # the first pass counts as built, not as the cache hit the second pass saw).
        first: dict[str, LayerResult] = {}
        for result in ctx.results:
            first.setdefault(result.key, result)
        ctx.results = [LayerResult(layer, first[layer.key].cache, first[layer.key].seconds,
                                   pushed=first[layer.key].pushed)
                       for layer in plan.layers() if layer.key in first]
    mark_used(settings.cache_dir, [r.key for r in ctx.results])
    with progress.step(f"tag {plan.image_ref}") as report:
        if plan.image_ref in ctx.tagged:
            report("up to date")
        else:
            runner.run(cmd.buildah(settings.storage, "tag", cmd.cache_ref(plan.finalize.key), plan.image_ref))
            report("done")
    if settings.archive:
        write_archive(ctx)
    return ctx


def images_repaired(ctx: BuildContext) -> dict[str, set[str]]:
    """list_images; damaged images (a killed commit's) are removed first, under the locks
    so that no build of ours is committing one right now."""
    storage = ctx.settings.storage
    try:
        return list_images(ctx.runner, storage)
    except DamagedImages as e:
        with contextlib.ExitStack() as stack:
            for path, what in lock_paths(ctx):
                stack.enter_context(exclusive(path, ctx.progress.line, what))
            for image_id in e.ids:
                ctx.runner.run(cmd.buildah(storage, "rmi", "--force", image_id))
                ctx.progress.line(f"removed damaged image {image_id[:12]} (left by a buildah killed while committing)")
            return list_images(ctx.runner, storage)


def parent_layers(plan: Plan) -> list[Layer]:
    """The fan-out's first stage: the base and the linear layers up to the common parent."""
    if plan.reconcile is None:
        raise ComposerError(f"--parent-only: the recipe {plan.recipe.name} restacks no module",
                            hint='set layering = "restack" in the recipe (docs/restack.md)')
    layers = plan.layers()
    end = next(x.index for x in layers if x.key == plan.reconcile.parent_key)
    return layers[:end + 1]


def build_layers(ctx: BuildContext, only: list[Layer] | None = None) -> None:
    """Every layer of the plan (or of only), in order, each cached or built. Restacked
    module layers do not depend on each other: up to settings.jobs of them build at once."""
    every = ctx.plan.layers()
    last = len(every) - 1
    layers = every if only is None else only

    def one(layer: Layer) -> None:
        with ctx.progress.step(f"[{layer.index}/{last}] {layer.label}") as report:
            if layer.kind is LayerKind.BASE:
                make = lambda: build_base(ctx)  # noqa: E731
            elif layer.kind is LayerKind.RECONCILE:
                make = lambda: build_reconcile(ctx)  # noqa: E731
            elif layer.kind is LayerKind.FINALIZE:
                make = lambda: build_finalize(ctx)  # noqa: E731
            else:
                assert layer.step is not None
                make = lambda step=layer.step: build_module(ctx, step)  # type: ignore[misc]  # noqa: E731
            _layer(ctx, layer, report, make)

    together = [x for x in layers if x.restacked] if ctx.settings.jobs > 1 else []
    for layer in layers:
        if layer in together[1:]:
            continue  # built together with the first restacked one
        if together and layer == together[0]:
            with side_by_side(ctx, ctx.settings.jobs) as pool:
                futures = [pool.submit(one, x) for x in together]
                for future in futures:
                    future.result()  # the first failure is raised once every job has ended
            continue
        one(layer)


@contextmanager
def side_by_side(ctx: BuildContext, workers: int) -> Iterator[ThreadPoolExecutor]:
    """A pool for steps run beside the build's own thread. Interrupted (Ctrl-C, SIGTERM), no
    job not yet started starts and the commands running now are ended (a terminal's Ctrl-C
    reaches them itself; a SIGTERM to composer alone does not): each job then fails and
    cleans up after itself as a single step does, and the pool waits for that."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        try:
            yield pool
        except KeyboardInterrupt:
            pool.shutdown(wait=False, cancel_futures=True)
            ctx.runner.end_all()
            raise


class MissingLayers(ComposerError):
    """Fan-out: a layer another Job should have pushed is in neither storage nor cache."""


def only_layer(plan: Plan, name: str) -> Layer:
    for layer in plan.layers():
        if layer.kind is LayerKind.MODULE and layer.name == name:
            return layer
    names = ", ".join(x.name for x in plan.layers() if x.kind is LayerKind.MODULE)
    raise ComposerError(f"--only {name}: the recipe {plan.recipe.name} has no module layer {name} "
                        f"(its modules: {names})")


def have_or_pull(ctx: BuildContext, layer: Layer) -> bool:
    """layer is in the local storage, or was pulled into it from the registry cache, its
    parent first: a pulled layer must sit on its local parent (docs/cache.md)."""
    if layer.key in ctx.existing:
        return True
    parent = next((x for x in ctx.plan.layers() if x.key == layer.parent_key), None)
    if ctx.remote is None or (parent is not None and not have_or_pull(ctx, parent)):
        return False
    return pulled(ctx, layer)


def pulled(ctx: BuildContext, layer: Layer) -> bool:
    """layer fetched from the registry cache into the storage (checked on its local parent:
    docs/cache.md) and recorded as present; False when the cache has none it can use."""
    if ctx.remote is None or not ctx.remote.fetch(layer.key, diff_ids_below(ctx, layer)):
        return False
    save_key_document(ctx, layer.key, layer.key_document)
    ctx.existing.add(layer.key)
    return True


def build_only(ctx: BuildContext, name: str) -> None:
    """One index of a fanned-out build: exactly the layer of module name, on its parent
    from the local storage or the cache; no other layer is built, nothing is tagged."""
    layers = ctx.plan.layers()
    target = only_layer(ctx.plan, name)
    # Its parent, and the base its package lists are fetched on (refresh_lists).
    needed = [x for x in layers if x.key == target.parent_key or x.kind is LayerKind.BASE]
    missing = [] if target.key in ctx.existing else [x for x in needed if not have_or_pull(ctx, x)]
    if missing:
        names = ", ".join(f"{x.label} ({x.key})" for x in missing)
        raise MissingLayers(f"--only {name}: layer(s) it is built on in neither the local storage nor the "
                            f"--cache-from registry: {names}", hint="run the fan-out's parent Job first")
    assert target.step is not None
    step = target.step
    with ctx.progress.step(f"[{target.index}/{len(layers) - 1}] {target.label}") as report:
        _layer(ctx, target, report, lambda: build_module(ctx, step))
    mark_used(ctx.settings.cache_dir, [r.key for r in ctx.results])


def require_module_layers(ctx: BuildContext) -> None:
    """The final stage of a fanned-out build builds no module layer: each missing one is
    pulled from the cache, or the build fails naming every one still missing."""
    missing = [x for x in ctx.plan.layers() if x.kind is LayerKind.MODULE and not have_or_pull(ctx, x)]
    if missing:
        names = ", ".join(f"{x.name} ({x.key})" for x in missing)
        raise MissingLayers(f"--from-cache-only: {len(missing)} module layer(s) in neither the local storage "
                            f"nor the --cache-from registry: {names}",
                            hint="run their `composer build --only MODULE` Jobs first")


def default_jobs() -> int:
    """Parallel module builds: one per core, at most one per 4 GiB of memory, at most 4."""
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        memory = 8 << 30
    return max(1, min(os.cpu_count() or 1, memory // (4 << 30), 4))


class StackConflict(Exception):
    """Restacked module layers that cannot be stacked together (found at reconcile)."""

    def __init__(self, conflicts: dict[str, str], lines: list[str]) -> None:
        super().__init__("; ".join(lines))
        self.conflicts = conflicts  # module layer key -> reason
        self.lines = lines


CONFLICTS_FILE = "restack-conflicts.json"


def known_conflicts(cache_dir: Path) -> dict[str, str]:
    """Module layer keys earlier builds found not to stack (cache_dir/restack-conflicts.json)."""
    try:
        data = json.loads((cache_dir / CONFLICTS_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def record_conflicts(cache_dir: Path, conflicts: dict[str, str]) -> None:
    merged = {**known_conflicts(cache_dir), **conflicts}
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = cache_dir / f".{CONFLICTS_FILE}.{os.getpid()}"
    tmp.write_text(json.dumps(merged, indent=2, sort_keys=True) + "\n")
    tmp.replace(cache_dir / CONFLICTS_FILE)


def build_reconcile(ctx: BuildContext) -> None:
    """Stack the restacked module layers on their common parent (no layer is rebuilt or
    recompressed), then commit one layer that merges what they each changed."""
    plan, storage, run = ctx.plan, ctx.settings.storage, ctx.runner.run
    r = plan.reconcile
    assert r is not None
    members = [s for s in plan.steps if s.restacked]
    # The stack is tagged while the layers are analysed (skopeo and c/storage in a thread of
    # their own, the analysis in Python): an image of those layers whatever the analysis finds.
    # It carries its own key, as a layer's image does, so that a write cut short is found.
    def write_stack() -> None:
        with removed_if_cut_short(ctx, r.stack_key):
            stack_image(ctx.runner, storage, cmd.cache_ref(r.parent_key), [cmd.cache_ref(s.key) for s in members],
                        cmd.cache_ref(r.stack_key), {KEY_LABEL: r.stack_key})

    with side_by_side(ctx, 1) as pool:
        stacking = pool.submit(write_stack) if r.stack_key not in ctx.existing else None
        with working_container(ctx, r.parent_key, "reconcile: the common parent") as parent_ctr:
            run(cmd.from_image(storage, cmd.cache_ref(r.parent_key), parent_ctr))
            parent_root = ctx.runner.output(cmd.buildah(storage, "mount", parent_ctr)).strip()
            folders = layer_folders(ctx.runner, storage, [cmd.cache_ref(s.key) for s in members])
            changes = [(s.module.name, folder) for s, folder in zip(members, folders, strict=True)]
            # Each member's layer is walked once (it never changes); overlay keeps layers in
            # <graph root>/overlay/<layer ID>/diff.
            scans = rec.ScanCache(ctx.settings.cache_dir, folders[0].parent.parent)
            analysis = rec.analyse(parent_root, changes, plan.recipe.base.family, scans)
            scans.sweep()
            run(cmd.buildah(storage, "rm", parent_ctr))
        if stacking is not None:
            stacking.result()
            ctx.existing.add(r.stack_key)
    if analysis.conflicts:
        by_name = {s.module.name: s for s in members}
        keys: dict[str, str] = {}
        lines = []
        for c in analysis.conflicts:
            # The later module of a conflicting pair goes on top of the stack.
            loser = by_name[c.modules[-1]]
            keys[loser.key] = f"{c.reason} ({', '.join(c.modules)}: {c.path})"
            lines.append(f"restack: {loser.module.name} is built on the stack instead: {keys[loser.key]}")
        raise StackConflict(keys, lines)
    memo = rec.ReuseMemo(ctx.settings.cache_dir, r.parent_key, [s.module.name for s in members])
    digest = rec.analysis_digest(analysis)
    reused = reusable_reconcile(ctx, memo, digest, analysis, scans, [s.key for s in members])
    if reused is not None:
        old_key, changed, made = reused
        with removed_if_cut_short(ctx, r.key):
            transplant_image(ctx.runner, storage, cmd.cache_ref(r.stack_key), cmd.cache_ref(old_key),
                             cmd.cache_ref(r.key), {KEY_LABEL: r.key})
        names = [members[i].module.name for i in changed]
        ctx.reconcile = {"reused": old_key, "changed": names}
        ctx.progress.line(f"reconcile: the layer of {old_key[:12]} reused ({', '.join(names)} changed "
                          "nothing its commands read or wrote)")
    else:
        with working_container(ctx, r.key, "reconcile") as ctr:
            run(cmd.from_image(storage, cmd.cache_ref(r.stack_key), ctr))
            run(cmd.config_env(storage, ctr, (), f"composer reconcile {len(members)} restacked modules"))
            rec.apply_plan(ctx.runner, storage, ctr, rec.ReconcilePlan(analysis.writes, analysis.commands,
                                                                        analysis.deletes))
            run(cmd.run_in(storage, ctr, cmd.clean_step(plan.recipe.base.family)))
            commit_layer(ctx, ctr, r.key)
        ctx.reconcile = {"reused": None, "commands": len(analysis.commands)}
    if analysis.reads is not None:
        # What the next reconcile on this parent may reuse: each member, a bystander of this
        # layer or not (a reused layer's entries are the old one's, read already).
        if reused is None:
            made = scans.scan(layer_folders(ctx.runner, storage, [cmd.cache_ref(r.key)])[0])
        memo.save(reconciler_digest(), digest, r.key,
                  [(s.module.name, s.key, rec.tie(layer, analysis.reads, made) is None)
                   for s, layer in zip(members, analysis.layers, strict=True)])
    save_key_document(ctx, r.key, r.key_document)


def reusable_reconcile(ctx: BuildContext, memo: rec.ReuseMemo, digest: str, analysis: rec.Analysis,
                       scans: rec.ScanCache, keys: list[str]) -> tuple[str, list[int], dict[str, rec.Entry]] | None:
    """A reconcile layer made before on this parent for these members that this one may
    reuse (docs/restack.md, "Reconcile reuse"): made of the same analysis (files written,
    commands, deletions), and every member changed since a bystander of it, before and now:
    nothing where its commands read, nothing it changed. Its key, the indices of the members
    changed (keys: the members' now) and its entries; None when there is none."""
    if analysis.reads is None:
        return None
    found = memo.candidate(reconciler_digest(), digest, keys)
    if found is None or found[0] not in ctx.existing:
        return None
    old_key, changed = found
    previous = scans.scan(layer_folders(ctx.runner, ctx.settings.storage, [cmd.cache_ref(old_key)])[0])
    if any(rec.tie(analysis.layers[i], analysis.reads, previous) is not None for i in changed):
        return None
    return old_key, changed, previous


def _layer(ctx: BuildContext, layer: Layer, report: Callable[..., None], make: Callable[[], None]) -> None:
    started = time.monotonic()
    if layer.key in ctx.existing:
        # Registry cache hook: a layer the registry lacks is pushed, built here or not.
        pushed = ctx.remote is not None and ctx.remote.offer(layer.key)
        report("cached, pushed" if pushed else "cached")
        ctx.results.append(LayerResult(layer, "hit", time.monotonic() - started, pushed=pushed))
        return
    if pulled(ctx, layer):
        if ctx.early is not None:
            ctx.early.offer(layer)
        seconds = time.monotonic() - started
        ctx.results.append(LayerResult(layer, "pulled", seconds))
        report(f"pulled in {seconds:.1f}s")
        return
    report("building…", final=False)
    make()
    ctx.existing.add(layer.key)
    if ctx.early is not None:
        ctx.early.offer(layer)
    seconds = time.monotonic() - started
    pushed = ctx.remote is not None and ctx.remote.offer(layer.key)
    ctx.results.append(LayerResult(layer, "miss", seconds, pushed=pushed))
    timings.record(ctx.settings.cache_dir, layer.label, layer.key, seconds)  # plan --cluster reads them
    report(f"built in {seconds:.1f}s" + (", pushed" if pushed else ""))


def diff_ids_below(ctx: BuildContext, layer: Layer) -> list[str] | None:
    """The diff IDs a layer pulled from the registry must sit on: its local parent's; for
    the reconcile layer the stack's (the common parent's and each member's own layer). A
    debootstrap or scratch base sits on nothing; an image base on upstream layers that are
    not composer's to check (None)."""
    from composer.restack.stack import inspect_docs

    if layer.kind is LayerKind.BASE:
        return [] if ctx.plan.base.base.kind in (BaseKind.DEBOOTSTRAP, BaseKind.SCRATCH) else None
    storage = ctx.settings.storage
    below = inspect_docs(ctx.runner, storage, cmd.cache_ref(layer.parent_key)).diff_ids
    if layer.kind is LayerKind.RECONCILE:
        below += [inspect_docs(ctx.runner, storage, cmd.cache_ref(s.key)).diff_ids[-1]
                  for s in ctx.plan.steps if s.restacked]
    return below


def lock_paths(ctx: BuildContext) -> list[tuple[Path, str]]:
    """The storage's lock (in its graph root) and the cache's (package downloads, key
    documents), always taken in this order."""
    storage = ctx.settings.storage
    root = storage.root or ctx.runner.output(
        cmd.buildah(storage, "info", "--format", "{{.store.GraphRoot}}")).strip()
    return [(Path(root) / "composer.lock", f"the storage {root}"),
            (ctx.settings.cache_dir / "build.lock", f"the cache {ctx.settings.cache_dir}")]


WORKING_PREFIX = "composer-work-"
WORKING_MARKERS = "working-containers"  # in SCRATCH: one empty file per working container


def scratch_dir(ctx: BuildContext, what: str) -> tempfile.TemporaryDirectory[str]:
    """A temporary folder for one build's files (options, the state folder) in the cache,
    so that what a killed build leaves is found and removed by the next one."""
    return owned_tempdir(ctx.settings.cache_dir / SCRATCH, what)


def sweep_scratch(cache_dir: Path) -> None:
    """Remove what killed builds left in the cache's scratch folder (under the cache lock).
    A folder whose process still runs stays: a fully cached build, `composer push` or
    `cache prune --registry` take no lock, and their registry credentials live there."""
    folder = cache_dir / SCRATCH
    if folder.is_dir():
        for entry in folder.iterdir():
            if entry.name != WORKING_MARKERS and owner_gone(entry.name):  # markers go with their containers
                shutil.rmtree(entry, ignore_errors=True)


def left_behind(cache_dir: Path) -> bool:
    """Whether a build of this cache may have left a working container: each one has a
    marker in the scratch folder while it exists (a listing, no buildah process)."""
    folder = cache_dir / SCRATCH / WORKING_MARKERS
    return folder.is_dir() and any(folder.iterdir())


def sweep_working_containers(ctx: BuildContext) -> None:
    """Remove working containers a killed build left behind. Only composer's own (by
    name) and only under the storage lock, so none of them can belong to a running build."""
    listing = ctx.runner.output(cmd.buildah(ctx.settings.storage, "containers", "--json"))
    left = set()
    for ctr in json.loads(listing or "[]") or []:
        name = ctr.get("containername", "")
        if name.startswith(WORKING_PREFIX):
            try:
                ctx.runner.run(cmd.buildah(ctx.settings.storage, "rm", name))
            except CommandError:
                left.add(name)
    markers = ctx.settings.cache_dir / SCRATCH / WORKING_MARKERS
    if markers.is_dir():
        for marker in markers.iterdir():
            if marker.name not in left:
                key = marker.read_text().strip()  # a write's (removed_if_cut_short); a container's is empty
                if key:  # the build was killed while it wrote key's image
                    remove_half_committed(ctx, key)
                marker.unlink(missing_ok=True)


def place_marker(ctx: BuildContext, name: str, key: str = "") -> Path:
    """A marker in the cache's scratch folder (left_behind, sweep_working_containers): empty
    for a working container, the key of the image being written for a write."""
    marker = ctx.settings.cache_dir / SCRATCH / WORKING_MARKERS / name
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(key)
    return marker


@contextmanager
def working_container(ctx: BuildContext, key: str, what: str) -> Iterator[str]:
    """A working container with a name of its own (never one another build could hold),
    removed whatever happens unless it was committed."""
    name = f"{WORKING_PREFIX}{key[:12]}-{secrets.token_hex(4)}"
    storage = ctx.settings.storage
    state = {"committed": False}
    marker = place_marker(ctx, name)  # before the container exists: a killed build is found by the next one
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
        gone = state["committed"]
        if not gone:
            with contextlib.suppress(CommandError):
                ctx.runner.run(cmd.buildah(storage, "rm", name))
                gone = True
        if gone:
            marker.unlink(missing_ok=True)


def commit_layer(ctx: BuildContext, ctr: str, key: str) -> None:
    """Commit ctr as key's cache image, labelled with its key: what a registry pull checks
    the image against (composer/cache/registry.py)."""
    storage = ctx.settings.storage
    ctx.runner.run(cmd.buildah(storage, "config", "--label", f"{KEY_LABEL}={key}", ctr))
    with removed_if_cut_short(ctx, key):
        ctx.runner.run(cmd.commit(storage, ctr, cmd.cache_ref(key)))


@contextmanager
def removed_if_cut_short(ctx: BuildContext, key: str) -> Iterator[None]:
    """Around commands that write key's image into containers-storage (buildah commit,
    skopeo copy): if they fail or are interrupted (Ctrl-C, SIGTERM), what they left goes.
    A marker holding the key is in the cache meanwhile, beside the working containers':
    a build killed outright here is found, and cleaned up after, by the next one."""
    marker = place_marker(ctx, f"composer-write-{key[:12]}-{secrets.token_hex(4)}", key)
    done = False
    try:
        yield
        done = True
    except BaseException:
        remove_half_committed(ctx, key)
        done = True
        raise
    finally:
        if done:  # else (interrupted again while cleaning up) the next build's sweep does it
            marker.unlink(missing_ok=True)


def remove_half_committed(ctx: BuildContext, key: str) -> None:
    """Remove what a write of key's image that was cut short left: c/storage creates the
    image first and names it after, so a buildah or skopeo ended in between leaves the image
    without a name (found by its key label), or without its manifest yet (a damaged image,
    which every `buildah images` then fails on). Called when the write is ended and, for a
    build killed outright in it, by the next build's sweep. The build holds the
    locks: no other build of ours is writing in this storage, and the key's image that
    counts is the one with its name."""
    storage = ctx.settings.storage
    force: tuple[str, ...] = ()  # an image a container uses stays, and so does the container
    try:
        ids = ctx.runner.output(cmd.buildah(storage, "images", "--all", "--no-trunc", "--format", "{{.ID}}",
                                            "--filter", "dangling=true", "--filter", f"label={KEY_LABEL}={key}"))
        left = [line.removeprefix("sha256:") for line in ids.split()]
    except CommandError as e:
        left, force = damaged_ids(e.output), ("--force",)  # as images_repaired
    for image_id in left:
        with contextlib.suppress(CommandError):
            ctx.runner.run(cmd.buildah(storage, "rmi", *force, image_id))
            ctx.progress.line(f"removed image {image_id[:12]}: the write of its layer was cut short")


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
        commit_layer(ctx, ctr, key)
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
    if base.snapshot:
        (root / cmd.SNAPSHOT_APT_CONF[0]).write_text(cmd.SNAPSHOT_APT_CONF[1])
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


OPTIONS_FILE = "options.json"  # in a module step's scratch folder


def mount_sources(ctx: BuildContext, options_file: Path) -> dict[Source, str | None]:
    """Where each kind of mount of a module step comes from on this host (docs/format.md)."""
    assert ctx.state_dir is not None
    host_ca = ctx.settings.host_ca
    return {
        Source.MODULE: None,  # per step: the module's own folder
        Source.TOOLKIT: str(toolkit.toolkit_dir()),
        Source.OPTIONS: str(options_file),
        Source.STATE: str(ctx.state_dir),
        Source.PACKAGE_CACHE: None,  # per target: a folder of the base's package cache
        Source.HOST_CA: str(host_ca.resolve()) if host_ca is not None else None,
    }


def package_cache(ctx: BuildContext, target: str) -> Path:
    """The host folder behind a package cache mount, shared by the builds on one base."""
    host = ctx.settings.cache_dir / "packages" / ctx.plan.base.key[:16] / target.strip("/").replace("/", "_")
    (host / "partial").mkdir(parents=True, exist_ok=True)
    return host.resolve()


def volumes(ctx: BuildContext, step: Step, spec: ModuleStep, scratch: Path) -> list[tuple[str, str, str]]:
    """The step's mounts as `buildah run --volume` triples; scratch: the step's own folder
    (its options file, apt's work folders)."""
    sources = mount_sources(ctx, scratch / OPTIONS_FILE)
    out = []
    for mount in spec.mounts:
        if mount.source is Source.MODULE:
            host = str(step.module.path.resolve())
        elif mount.source in (Source.PACKAGE_CACHE, Source.PACKAGE_LISTS):
            host = str(package_cache(ctx, mount.target))
        elif mount.source is Source.LIST_WORK:  # empty, the step's own (in its scratch folder)
            host = str(scratch / "lists" / Path(mount.target).name)
            Path(host).mkdir(parents=True, exist_ok=True)
            (package_cache(ctx, cmd.PACKAGE_LISTS[ctx.plan.recipe.base.family]) / Path(mount.target).name).mkdir(
                exist_ok=True)  # the mount point, below the read-only lists
        else:
            host = sources[mount.source] or ""
        out.append((host, mount.target, "ro" if mount.read_only else ""))
    return out


def refresh_lists(ctx: BuildContext) -> None:
    """Fetch the package lists once per build, in a step of composer's own on the base:
    module steps see them read-only (docs/design.md, "Build steps")."""
    with ctx.lists_lock:
        if ctx.lists_fetched:
            return
        family = ctx.plan.recipe.base.family
        storage = ctx.settings.storage
        mounts = [(str(package_cache(ctx, target)), target, "") for target in cmd.PACKAGE_CACHE_MOUNTS[family]]
        env = dict(cmd.APT_ENV)
        if ctx.settings.host_ca is not None:
            mounts.append((str(ctx.settings.host_ca.resolve()), cmd.CA_MOUNT, "ro"))
            env.update({k: cmd.CA_MOUNT for k in CA_VARS})
        with working_container(ctx, ctx.plan.base.key, "package lists") as ctr:
            ctx.runner.run(cmd.from_image(storage, cmd.cache_ref(ctx.plan.base.key), ctr))
            ctx.runner.run(cmd.run_in(storage, ctr, cmd.refresh_lists_argv(family), env, mounts), stream=True)
            ctx.runner.run(cmd.buildah(storage, "rm", ctr))
        ctx.lists_fetched = True


def needs_fresh_lists(ctx: BuildContext, entry: lockfile.Entry | None) -> bool:
    """Whether a module step waits for this build's refresh of the package lists (~1 s).
    Not when its lock entry records no deb: the lock check then refuses a layer that
    installs or upgrades any deb, so the step can at most ask apt about what is installed
    already, which the lists an earlier build fetched answer as well. Always when the host
    has no lists yet, and when the step is unlocked or installs debs."""
    if entry is None or entry.versions("deb") or ctx.plan.recipe.base.family is not Family.DEBIAN:
        return True
    lists = package_cache(ctx, cmd.PACKAGE_LISTS[Family.DEBIAN])
    return not any(lists.glob("*_Packages*"))


def build_module(ctx: BuildContext, step: Step) -> None:
    spec = module_step(ctx.plan, step, ctx.settings.host_ca is not None)
    storage = ctx.settings.storage
    run = ctx.runner.run
    env = {**spec.env, **({k: cmd.CA_MOUNT for k in CA_VARS} if ctx.settings.host_ca is not None else {}),
           "COMPOSER_LISTS_FETCHED": "1"}  # by refresh_lists: composer-install leaves them alone
    what = f"layer {step.index} {step.module.name}"
    entry = ctx.plan.lock.entry(step.module.name) if ctx.plan.lock is not None else None
    with scratch_dir(ctx, "step") as tmp, working_container(ctx, step.key, what) as ctr:
        options_file = Path(tmp, OPTIONS_FILE)
        options_file.write_text(cmd.options_json(step.options))
        mounts = volumes(ctx, step, spec, Path(tmp))
        if entry is not None:  # composer.lock: every install of the step takes the locked versions
            mounts.append((str(write_pins(Path(tmp), entry)), lockfile.PIN_MOUNT, "ro"))
            env = {**env, **lockfile.pin_env()}
        if any(isinstance(action, Run) for action in spec.actions) and needs_fresh_lists(ctx, entry):
            refresh_lists(ctx)
        run(cmd.from_image(storage, cmd.cache_ref(step.parent_key), ctr))
        # One call: the history line and the module's env, which later steps see.
        run(cmd.config_env(storage, ctr, spec.image_env, spec.history))
        for action in spec.actions:
            if isinstance(action, Run):
                run(cmd.run_in(storage, ctr, list(action.argv), env, mounts, cmd.MODULE_MOUNT), stream=True)
            elif isinstance(action, Copy):
                origin = options_file if action.origin is None else action.origin
                run(cmd.copy_in(storage, ctr, str(origin), action.dest, action.mode, action.owner))
            else:
                run(cmd.run_in(storage, ctr, list(action.argv)))
        held = check_locked(ctx, step, entry, ctr) if entry is not None else None
        commit_layer(ctx, ctr, step.key)
    if held is not None:  # what the layer's image holds, read for the check: the SBOM's too
        inventory.remember(ctx.settings.cache_dir, step.key, held)
    save_key_document(ctx, step.key, step.key_document)


def write_pins(folder: Path, entry: lockfile.Entry) -> Path:
    pins = folder / "lock"
    pins.mkdir()
    for name, text in lockfile.pin_files(entry).items():
        (pins / name).write_text(text)
    return pins


def check_locked(ctx: BuildContext, step: Step, entry: lockfile.Entry, ctr: str) -> list[inventory.Component]:
    """The layer installs exactly what the lock records, or it is not committed (the
    working container goes: nothing half-built is tagged). Returns what the container holds."""
    storage = ctx.settings.storage
    parent = inventory.image_inventory(ctx.runner, storage, step.parent_key, ctx.settings.cache_dir)
    if unchanged_inventory(ctx, ctr, parent):  # a module of files and scripts that installs nothing
        child = parent
    else:
        child = inventory.parse(ctx.runner.output(cmd.run_in(storage, ctr, ["/bin/sh", "-c", inventory.SCRIPT])))
    problem = lockfile.drift(step.module.name, entry, lockfile.added(parent, child))
    if problem:
        raise ComposerError(problem, hint=lockfile.update_hint(step.module.name))
    return child


def unchanged_inventory(ctx: BuildContext, ctr: str, parent: list[inventory.Component]) -> bool:
    """Whether what the working container ctr changed cannot change what the inventory script
    lists (inventory.unchanged_by), its parent's inventory being parent: then that is the
    container's too, without the script's walk of the image (a second or so on turboflow).
    Read in the container's own folder of changes (overlay's diff folder beside the mount);
    anywhere else (another driver, a rootless mount) the script runs."""
    try:
        merged = Path(ctx.runner.output(cmd.buildah(ctx.settings.storage, "mount", ctr)).strip())
    except CommandError:
        return False
    upper = merged.parent / "diff"
    if merged.name != "merged" or not upper.is_dir():
        return False
    entries = rec.scan_layer(upper)
    path = inventory.unchanged_by(((p, e.kind, e.opaque) for p, e in entries.items()), parent)
    if path is not None and ctx.runner.verbose:
        ctx.runner.echo(f"lock check: {ctr} changed {path}: its inventory is read")
    return path is None


def build_finalize(ctx: BuildContext) -> None:
    final = ctx.plan.finalize
    storage = ctx.settings.storage
    run = ctx.runner.run
    with scratch_dir(ctx, "final") as tmp, working_container(ctx, final.key, "finalize") as ctr:
        stage = Path(tmp)
        write_finalize_files(final, stage)
        run(cmd.from_image(storage, cmd.cache_ref(final.parent_key), ctr))
        run(cmd.buildah(storage, "copy", "--quiet", "--chown", "0:0", ctr, f"{stage}/", "/"))
        run(cmd.config_image(storage, ctr, final.image, final.labels, "composer finalize"))
        commit_layer(ctx, ctr, final.key)
    drop_container_fields(ctx, final.key)
    save_key_document(ctx, final.key, final.key_document)


def drop_container_fields(ctx: BuildContext, key: str) -> None:
    """Re-tag key's image as its layers and config without the IDs of the container that
    committed it and of the image below it, which differ on every machine: the image's ID is
    then the same wherever the same layers are finalized (a fan-out's final stage, one machine)."""
    from composer.restack.stack import inspect_docs, materialise, without_container

    storage = ctx.settings.storage
    ref = cmd.cache_ref(key)
    image = inspect_docs(ctx.runner, storage, ref)
    clean = without_container(image)
    if clean is None:
        return
    # Cut short, the new image may be left without its name, and the old one without its own.
    with removed_if_cut_short(ctx, key):
        materialise(ctx.runner, storage, clean, ref)
        with contextlib.suppress(CommandError):  # untagged now; a container using it keeps it
            ctx.runner.run(cmd.buildah(storage, "rmi", image.image_id))


def archive_path(plan: Plan, output_dir: Path) -> Path:
    return output_dir / f"{plan.recipe.name}-{plan.recipe.tag}.oci.tar"


class EarlyExport:
    """Compress each layer this build commits for the export while the build goes on, one
    layer at a time in commit order, so that the export at the end finds them compressed
    (composer.emit.oci, "early export"; docs/export.md, "Export while building").

    A failed early export is not the build's failure: the export compresses that layer
    itself (and fails there if the cause remains)."""

    def __init__(self, ctx: BuildContext) -> None:
        self.ctx = ctx
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="composer-early-export")
        self.futures: list[tuple[Layer, Future[None]]] = []
        self.layers = self.bytes = 0
        self.seconds = self.waited = 0.0  # spent compressing; waited for at the build's end
        self.failures: list[str] = []

    def offer(self, layer: Layer) -> None:
        self.futures.append((layer, self.pool.submit(self._export, layer)))

    def _export(self, layer: Layer) -> None:
        from composer.emit.oci import export_early

        ctx, started = self.ctx, time.monotonic()
        layout = archive_path(ctx.plan, ctx.settings.output_dir).with_suffix("")
        result = export_early(ctx.runner, ctx.settings.storage, cmd.cache_ref(layer.key), layout,
                              ctx.plan.image_ref, ctx.settings.compression)
        self.layers += len(result.new_layers)
        self.bytes += result.written_bytes
        self.seconds += time.monotonic() - started

    def close(self, cancel: bool) -> None:
        """Wait for the layers offered (cancel: only for the one being compressed)."""
        started = time.monotonic()
        pending = sum(not f.done() for _, f in self.futures)
        if cancel or not pending:
            self.pool.shutdown(wait=True, cancel_futures=cancel)
        else:
            with self.ctx.progress.step("compress layers for the export") as report:
                report(f"{pending} still compressing…", final=False)
                self.pool.shutdown(wait=True)
                report(f"done in {time.monotonic() - started:.1f}s")
        self.waited = time.monotonic() - started
        self.failures += [f"{layer.label}: {one_line(error)}" for layer, f in self.futures
                          if not f.cancelled() and (error := f.exception()) is not None]
        for failure in self.failures:
            self.ctx.progress.line(f"early export of {failure}; the export compresses it")

    def as_dict(self) -> dict[str, Any]:
        return {"layers_written": self.layers, "bytes_written": self.bytes, "seconds": round(self.seconds, 3),
                "waited": round(self.waited, 3), "failures": list(self.failures)}


def one_line(error: BaseException) -> str:
    """One line for an early export's error: composer's or the system's own first line; any
    other (a bug) with its type, so it is not taken for an expected failure."""
    if isinstance(error, (ComposerError, OSError)):
        return str(error).splitlines()[0] if str(error) else type(error).__name__
    return f"{type(error).__name__}: {error}"


def write_archive(ctx: BuildContext) -> None:
    """The image as an OCI layout folder, and the OCI archive of it unless turned off; each
    export compresses and writes only the layers the previous one did not have."""
    from composer.emit.oci import export_layout, write_oci_archive

    plan = ctx.plan
    path = archive_path(plan, ctx.settings.output_dir)
    layout = path.with_suffix("")  # <name>-<tag>.oci
    with ctx.progress.step(f"write oci layout {layout}") as report:
        report("writing…", final=False)  # a first export of a large image takes minutes
        started = time.monotonic()
        result = export_layout(ctx.runner, ctx.settings.storage, cmd.cache_ref(plan.finalize.key),
                               layout, plan.image_ref, ctx.settings.compression)
        ctx.export["layout"] = {"path": str(layout), "seconds": round(time.monotonic() - started, 3),
                                "layers_written": len(result.new_layers),
                                "layers_reused": len(result.reused_layers),
                                "bytes_written": result.written_bytes}
        early = ""
        if ctx.early is not None and ctx.early.layers:
            ctx.export["early"] = ctx.early.as_dict()
            early = f" (of which {ctx.early.layers} compressed during the build, {ctx.early.bytes / 1e6:.1f} MB)"
        if result.up_to_date:
            report("up to date")
        else:
            report(f"{len(result.new_layers)} layers written ({result.written_bytes / 1e6:.1f} MB), "
                   f"{len(result.reused_layers)} reused{early}, {len(result.removed)} old blobs removed")
    ctx.archive_path = layout
    if not ctx.settings.oci_archive:
        return
    path.with_name(path.name + ".key").unlink(missing_ok=True)  # the marker of earlier versions
    with ctx.progress.step(f"write oci-archive {path}") as report:
        report("writing…", final=False)
        started = time.monotonic()
        archive = write_oci_archive(layout, plan.image_ref, path)
        ctx.export["archive"] = {"path": str(path), "seconds": round(time.monotonic() - started, 3),
                                 "bytes_written": archive.written_bytes, "bytes_kept": archive.kept_bytes}
        if archive.up_to_date:
            report("up to date")
        else:
            report(f"{archive.written_bytes / 1e6:.1f} MB appended to {archive.kept_bytes / 1e6:.1f} MB kept")
    ctx.archive_path = path


def measure_sizes(ctx: BuildContext) -> None:
    """Fill in each layer's size: its image's total minus the image it was built on (the
    plain stack for the reconcile layer), with one podman call for all of them."""
    reconcile = ctx.plan.reconcile
    below = {r.key: (reconcile.stack_key if reconcile is not None and r.key == reconcile.key
                     else r.layer.parent_key) for r in ctx.results}
    keys = list(dict.fromkeys([*below, *(k for k in below.values() if k)]))
    argv = ["podman", *ctx.settings.storage.flags(), "image", "inspect", "--format",
            "{{.Size}}", *(cmd.cache_ref(k) for k in keys)]
    try:
        sizes = dict(zip(keys, (int(x) for x in ctx.runner.output(argv).split()), strict=True))
    except (CommandError, ComposerError, ValueError):
        return
    for result in ctx.results:
        parent = below[result.key]
        result.size = max(sizes[result.key] - (sizes[parent] if parent else 0), 0)


def report_document(ctx: BuildContext) -> dict[str, Any]:
    layers = [r.as_dict() for r in ctx.results]
    return {
        "recipe": ctx.plan.recipe.name,
        "image": ctx.plan.image_ref,
        "base": ctx.plan.base.base.source,
        "archive": str(ctx.archive_path) if ctx.archive_path else None,
        "export": ctx.export,
        "reconcile": ctx.reconcile,
        "layers": layers,
        "totals": {
            "layers": len(layers),
            "hits": sum(1 for r in ctx.results if r.cache == "hit"),
            "misses": sum(1 for r in ctx.results if r.cache == "miss"),
            "pulled": sum(1 for r in ctx.results if r.cache == "pulled"),
            "seconds": round(time.monotonic() - ctx.started, 3),
            "size": sum(r.size or 0 for r in ctx.results),
        },
    }
