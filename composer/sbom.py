"""Know what is in a built image and which module brought it: each layer's inventory
(read once per layer key, composer/inventory.py) against its parent's. What `composer sbom`,
`composer why` and the SBOM files `composer build` writes are made of."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable
from pathlib import Path

from composer import commands as cmd
from composer.emit.sbom import Bom, Entry, Origin
from composer.errors import ComposerError
from composer.inventory import Component, Ecosystem, image_inventory
from composer.model import BaseKind, LayerKind, Plan
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

    final = of(plan.finalize.key)
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
    return Bom(plan.image_ref, plan.finalize.key, suite, entries, created)


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
