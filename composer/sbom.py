"""Know what is in a built image and which module brought it: each layer's inventory
(read once per layer key, composer/inventory.py) against its parent's. What `composer sbom`,
`composer why` and the SBOM files `composer build` writes are made of."""

from __future__ import annotations

import hashlib
import json
import time
from collections import deque
from collections.abc import Iterable
from pathlib import Path

from composer import commands as cmd
from composer.emit.sbom import Bom, Entry, Origin
from composer.errors import CommandError, ComposerError
from composer.inventory import Component, Ecosystem, image_inventory, remember, stored_inventory, unchanged_by
from composer.model import BaseKind, LayerKind, Plan
from composer.restack.reconcile import ScanCache
from composer.runner import Runner


def collect(plan: Plan, runner: Runner, storage: cmd.Storage, cache_dir: Path,
            existing: set[str] | None = None) -> Bom:
    """The image's components, each with the layers that added it (a module's layer against
    the image it was built on; what the base holds, the base)."""
    if existing is not None and plan.finalize.key not in existing:
        raise ComposerError(f"{plan.recipe.path}: {plan.image_ref} is not built (its final layer is missing)",
                            hint=f"composer build {plan.recipe.path}")
    inventories: dict[str, list[Component]] = {}

    def of(key: str) -> list[Component]:
        if key not in inventories:
            inventories[key] = image_inventory(runner, storage, key, cache_dir)
        return inventories[key]

    inventory_of, final = final_inventory(plan, runner, storage, cache_dir)
    inventories[plan.finalize.key] = final
    origins: dict[tuple[str, str, str, str], list[Origin]] = {}
    for layer in plan.layers():
        if layer.kind is LayerKind.BASE:
            added: Iterable[Component] = of(layer.key)
        elif layer.kind is LayerKind.MODULE:
            before = {c.ident for c in of(layer.parent_key)}
            added = [c for c in of(layer.key) if c.ident not in before]
        else:
            continue  # composer's own layers install nothing (reconcile merges what modules did)
        for c in added:
            origins.setdefault(c.ident, []).append(Origin(layer.label, layer.key))
    entries = tuple(Entry(c, tuple(origins.get(c.ident, [Origin("composer (reconcile, finalize)",
                                                                  plan.finalize.key)])))
                    for c in final)
    base = plan.base.base
    suite = base.ref if base.kind is BaseKind.DEBOOTSTRAP else ""
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return Bom(plan.image_ref, plan.finalize.key, suite, entries, created, inventory_of)


LAST_FINAL = "last-final"  # per image name: the final layer's key whose inventory was read last


def final_inventory(plan: Plan, runner: Runner, storage: cmd.Storage, cache_dir: Path) -> tuple[str, list[Component]]:
    """The inventory of the final image: kept by key, else that of the last final image of
    the same name when the two differ only in layers that cannot change it
    (inventory.unchanged_by: a rebuilt module that installs nothing, the finalize layer),
    else read in the image. A change to such a module is then not a walk of 22 GB.
    Returns the key of the image it was read in, and the inventory."""
    key = plan.finalize.key
    source = key
    memo = cache_dir / "inventory" / LAST_FINAL / f"{hashlib.sha256(plan.image_ref.encode()).hexdigest()[:32]}"
    if not stored_inventory(cache_dir, key).is_file():
        try:
            previous = memo.read_text().strip()
        except OSError:
            previous = ""
        if previous and previous != key and stored_inventory(cache_dir, previous).is_file():
            components = image_inventory(runner, storage, previous, cache_dir)
            if same_inventory(runner, storage, cache_dir, previous, key, components):
                remember(cache_dir, key, components)
                source = previous
    components = image_inventory(runner, storage, key, cache_dir)
    memo.parent.mkdir(parents=True, exist_ok=True)
    memo.write_text(key + "\n")
    return source, components


def same_inventory(runner: Runner, storage: cmd.Storage, cache_dir: Path, old: str, new: str,
                   components: list[Component]) -> bool:
    """Whether the cache images of old and new (same number of layers) differ only in layers
    none of which can change an inventory, old's being components."""
    argv = ["podman", *storage.flags(), "image", "inspect", "--format",
            "{{json .RootFS.Layers}}|{{.GraphDriver.Name}}|{{.GraphDriver.Data.UpperDir}}|"
            "{{.GraphDriver.Data.LowerDir}}", cmd.cache_ref(old), cmd.cache_ref(new)]
    try:
        lines = runner.output(argv).strip().splitlines()
    except CommandError:
        return False  # the old image is gone
    images = []
    for line in lines:
        layers, driver, upper, lower = line.split("|", 3)
        diff_ids = json.loads(layers)
        folders = [*reversed([f for f in lower.split(":") if f and f != "<no value>"]), upper]
        if driver != "overlay" or len(folders) != len(diff_ids):
            return False
        images.append(list(zip(diff_ids, map(Path, folders), strict=True)))
    if len(images) != 2 or len(images[0]) != len(images[1]):
        return False
    scans = ScanCache(cache_dir, images[1][-1][1].parent.parent)
    for (old_id, old_folder), (new_id, new_folder) in zip(*images, strict=True):
        if old_id == new_id:
            continue
        for folder in (old_folder, new_folder):
            entries = scans.scan(folder)
            if unchanged_by(((p, e.kind, e.opaque) for p, e in entries.items()), components) is not None:
                return False
    return True


def why(bom: Bom, package: str) -> list[str]:
    """Which module(s) bring package, at which version, and (Debian) the chain of Depends
    from a package the module asked for: one line each."""
    found = [e for e in bom.entries if e.component.name == package
             or (e.component.ecosystem is Ecosystem.PYPI and e.component.name == package.lower().replace("_", "-"))]
    if not found:
        return []
    debs = {e.component.name: e for e in bom.entries if e.component.ecosystem is Ecosystem.DEB}
    lines = []
    for entry in found:
        c = entry.component
        where = f" in {c.location}" if c.location else ""
        for origin in entry.origins:
            lines.append(f"{c.name} {c.version} ({c.ecosystem}{where}): brought by {origin.module} "
                         f"(layer {origin.layer[:16]})")
            if c.ecosystem is Ecosystem.DEB:
                chain = depends_chain(debs, origin, c.name)
                if chain:
                    lines.append("  " + " -> ".join(chain))
    return lines


def depends_chain(debs: dict[str, Entry], origin: Origin, target: str) -> list[str]:
    """The shortest Depends path to target from a package the same layer brought that
    nothing else of that layer depends on (what the module asked for, or its script did)."""
    mine = {name for name, e in debs.items() if origin in e.origins}
    needed = {d for name in mine for d in debs[name].component.depends}
    roots = sorted(mine - needed) or sorted(mine)
    for root in roots:
        queue: deque[list[str]] = deque([[root]])
        seen = {root}
        while queue:
            path = queue.popleft()
            if path[-1] == target:
                return path if len(path) > 1 else []
            for dep in debs[path[-1]].component.depends if path[-1] in debs else ():
                if dep not in seen:
                    seen.add(dep)
                    queue.append([*path, dep])
    return []
