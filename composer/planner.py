"""Planning is pure: recipe + modules in, ordered steps with cache keys out. No buildah."""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from composer import STEP_FORMAT
from composer.errors import ComposerError
from composer.finalize import credentials_json, env_names, finalize_document, merge_image_config, merge_services
from composer.keys import cache_key, file_digest, file_entry, tree_entries
from composer.model import Base, BaseKind, BaseStep, FinalizeStep, LayerRef, Module, Plan, Recipe, Step
from composer.modules import load_modules, resolve_options, with_options
from composer.recipe import load_recipe
from composer.toolkit import toolkit_digest


def plan_file(path: Path, extra_module_dirs: Sequence[Path] = (), base_digest: str = "") -> Plan:
    """Load the recipe at path and everything it names, and plan it."""
    return plan_loaded(load_recipe(path), extra_module_dirs, base_digest)


def plan_loaded(recipe: Recipe, extra_module_dirs: Sequence[Path] = (), base_digest: str = "") -> Plan:
    """Load the modules a loaded recipe names, and plan it."""
    dirs = (*extra_module_dirs, *recipe.module_dirs)
    modules = load_modules(recipe.layers, dirs)
    return plan_recipe(recipe, modules, base_digest)


def plan_recipe(recipe: Recipe, modules: dict[str, Module], base_digest: str = "") -> Plan:
    """Order the layers, check them against the base family, and key every step.

    base_digest identifies the content of an image:/oci-archive: base (its image ID or
    file digest); the caller looks it up, so that planning itself stays pure.
    """
    base = base_step(recipe.base, base_digest)
    ordered = order_layers(recipe.layers, modules)
    steps: list[Step] = []
    parent = base.key
    for index, layer in enumerate(ordered, start=1):
        check_family(modules[layer.module], layer, recipe.base)
        options = resolve_options(modules[layer.module], layer)
        module = with_options(modules[layer.module], options, layer.where)
        hooks = resolve_hooks(module, layer)
        document = module_document(parent, module, options, recipe.base, hooks)
        key = cache_key(document)
        steps.append(Step(index, module, options, hooks, parent, key, document))
        parent = key
    services = merge_services(steps)
    image = merge_image_config(recipe, steps)
    labels = (
        ("io.composer.recipe", recipe.name),
        ("io.composer.modules", ",".join(s.module.name for s in steps)),
    )
    names = tuple(env_names(recipe, steps))
    credentials = tuple(credentials_json(steps))
    final_doc = finalize_document(parent, services, image, labels, names, credentials)
    final = FinalizeStep(parent, cache_key(final_doc), services, image, labels, names, credentials, final_doc)
    return Plan(recipe, base, tuple(steps), final)


def base_step(base: Base, digest: str = "") -> BaseStep:
    document: dict[str, Any] = {
        "format": STEP_FORMAT,
        "kind": "base",
        "source": base.source,
        "family": str(base.family),
    }
    if base.kind is BaseKind.DEBOOTSTRAP:
        document.update(
            mirror=base.mirror,
            components=list(base.components),
            variant=base.variant,
            include=list(base.include),
        )
    elif base.kind is BaseKind.OCI_ARCHIVE:
        document["digest"] = digest or file_digest(Path(base.ref))
    elif base.kind is BaseKind.IMAGE:
        # A ref pinned by digest names its content; otherwise the caller's lookup does.
        document["digest"] = digest or (base.ref.split("@", 1)[1] if "@" in base.ref else "")
    return BaseStep(base, cache_key(document), document)


def module_document(
    parent: str,
    module: Module,
    options: dict[str, Any],
    base: Base,
    hooks: Sequence[tuple[str, Path]],
) -> dict[str, Any]:
    return {
        "format": STEP_FORMAT,
        "kind": "module",
        "parent": parent,
        "module": module.name,
        "family": str(base.family),
        "files": tree_entries(module.path),
        "options": options,
        "hooks": [file_entry(path, name) for name, path in hooks],
        # The helpers scripts call (composer-install, lib.sh) shape the layer too.
        "toolkit": toolkit_digest(),
    }


def order_layers(layers: Sequence[LayerRef], modules: dict[str, Module]) -> list[LayerRef]:
    """Topological order by requires/after; ties keep the recipe's order (deterministic)."""
    by_name = {layer.module: layer for layer in layers}
    before: dict[str, set[str]] = {name: set() for name in by_name}
    for layer in layers:
        module = modules[layer.module]
        for dep in module.requires:
            if dep not in by_name:
                raise ComposerError(
                    f"{layer.where}: module {layer.module!r} requires {dep!r}, "
                    "which the recipe does not list",
                    hint=f"add a [[layers]] entry with module = {dep!r}",
                )
            before[layer.module].add(dep)
        before[layer.module].update(dep for dep in module.after if dep in by_name)
    for name, deps in before.items():
        if name in deps:
            raise ComposerError(f"{by_name[name].where}: module {name!r} is ordered after itself")

    waiting = {name: set(deps) for name, deps in before.items()}
    ready = [(layer.index, layer.module) for layer in layers if not waiting[layer.module]]
    heapq.heapify(ready)
    ordered: list[LayerRef] = []
    while ready:
        _, name = heapq.heappop(ready)
        ordered.append(by_name[name])
        for other, deps in waiting.items():
            if name in deps:
                deps.discard(name)
                if not deps:
                    heapq.heappush(ready, (by_name[other].index, other))
    if len(ordered) < len(layers):
        stuck = sorted(n for n, deps in waiting.items() if deps)
        first = min((by_name[n] for n in stuck), key=lambda layer: layer.index)
        raise ComposerError(
            f"{first.where}: ordering cycle among modules {', '.join(stuck)} (requires/after)"
        )
    return ordered


def check_family(module: Module, layer: LayerRef, base: Base) -> None:
    families = module.families()
    if families is not None and base.family not in families:
        supported = ", ".join(families)
        raise ComposerError(
            f"{layer.where}: module {module.name!r} has no packages for family "
            f"'{base.family}' (base {base.source}); it supports: {supported}",
            hint=f"add [packages].{base.family} to {module.path / 'module.toml'}",
        )


def hook_dirs(module: Module) -> tuple[Path, ...]:
    """Where a module's hooks are looked up, in order: its own hooks/ folder, then the
    hooks/ folder beside the layers/ folder it lives in. Nothing else: a hooks/ folder
    somewhere above a recipe is never picked up."""
    return (module.path / "hooks", module.path.parent.parent / "hooks")


def resolve_hooks(module: Module, layer: LayerRef) -> tuple[tuple[str, Path], ...]:
    dirs = hook_dirs(module)
    found: list[tuple[str, Path]] = []
    for i, name in enumerate(module.hooks):
        path = next((d / name for d in dirs if (d / name).is_file()), None)
        if path is None:
            raise ComposerError(
                f"{module.path / 'module.toml'}: hooks[{i}]: {name!r} not found in "
                f"{' or '.join(str(d) for d in dirs)} (used by {layer.where})"
            )
        found.append((name, path))
    return tuple(found)
