"""Planning is pure: recipe + modules in, ordered steps with cache keys out. No buildah."""

from __future__ import annotations

import dataclasses
import heapq
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from composer import STEP_FORMAT, lockfile
from composer.errors import ComposerError, ComposerErrors, did_you_mean
from composer.finalize import (
    credentials_json,
    env_names,
    finalize_document,
    merge_image_config,
    merge_services,
)
from composer.keys import cache_key, check_module_file, file_digest, file_entry, tree_entries
from composer.lockfile import Lock
from composer.model import (
    Base,
    BaseKind,
    BaseStep,
    FinalizeStep,
    Layering,
    LayerRef,
    Module,
    Plan,
    Recipe,
    ReconcileStep,
    Secret,
    Step,
)
from composer.modules import load_modules, resolve_options, with_options
from composer.recipe import load_recipe
from composer.schema import display
from composer.toolkit import toolkit_digest

# A module with its resolved options and hooks (resolve_layer).
Resolved = tuple[Module, dict[str, Any], tuple[tuple[str, Path], ...]]

# plan_recipe's lock argument: read RECIPE.lock beside the recipe when there is one.
BESIDE = "beside"


def plan_file(path: Path, extra_module_dirs: Sequence[Path] = (), base_digest: str = "") -> Plan:
    """Load the recipe at path and everything it names, and plan it."""
    return plan_loaded(load_recipe(path), extra_module_dirs, base_digest)


def plan_loaded(recipe: Recipe, extra_module_dirs: Sequence[Path] = (), base_digest: str = "",
                conflicts: Mapping[str, str] | None = None) -> Plan:
    """Load the modules a loaded recipe names, and plan it."""
    dirs = (*extra_module_dirs, *recipe.module_dirs)
    modules = load_modules(recipe.layers, dirs)
    return plan_recipe(recipe, modules, base_digest, conflicts)


def plan_recipe(recipe: Recipe, modules: dict[str, Module], base_digest: str = "",
                conflicts: Mapping[str, str] | None = None, lock: Lock | None | str = BESIDE) -> Plan:
    """Order the layers, check them against the base family, and key every step.

    base_digest identifies the content of an image:/oci-archive: base (its image ID or
    file digest); the caller looks it up, so that planning itself stays pure. conflicts
    (restack layering): module layer key -> why that layer cannot be stacked with the
    others; found by an earlier build (see builder), such a module is built on the stack.
    lock: the recipe's composer.lock (read beside it by default; None: plan as if unlocked).
    """
    base = base_step(recipe.base, base_digest)
    the_lock = lockfile.load_beside(recipe.path) if lock == BESIDE else lock
    assert not isinstance(the_lock, str)

    def keyed_document(parent: str, module: Module, options: dict[str, Any], base: Base,
                       hooks: Sequence[tuple[str, Path]]) -> dict[str, Any]:
        return locked_document(module_document(parent, module, options, base, hooks), the_lock)

    ordered = order_layers(recipe.layers, modules, recipe)
    resolved = [resolve_layer(recipe, modules[layer.module], layer) for layer in ordered]
    check_unique_hooks([(module, hooks) for module, _, hooks in resolved])

    # Restack: the modules others build on (requires/after, transitively) and those the
    # recipe declares (`foundation`) form the common parent, built linearly; every other
    # module is built on that parent alone.
    restack = recipe.layering is Layering.RESTACK
    users = dependents(ordered, modules)

    def in_foundation(name: str) -> bool:
        return not restack or bool(users[name]) or name in recipe.foundation

    foundation = [r for r in resolved if in_foundation(r[0].name)]
    leaves = stack_ordered([r for r in resolved if not in_foundation(r[0].name)], recipe, users)
    steps: list[Step] = []
    parent = base.key
    for module, options, hooks in foundation:
        document = keyed_document(parent, module, options, recipe.base, hooks)
        why = ""
        if restack:
            why = (f"others build on it ({names_text(users[module.name])})" if users[module.name]
                   else "the recipe's foundation")
        steps.append(Step(len(steps) + 1, module, options, hooks, parent, cache_key(document), document,
                          why=why))
        parent = steps[-1].key
    common = parent
    common_name = steps[-1].module.name if steps else base.base.source
    tail = []
    for module, options, hooks in leaves:
        document = keyed_document(common, module, options, recipe.base, hooks)
        key = cache_key(document)
        if key in (conflicts or {}):
            tail.append((module, options, hooks, (conflicts or {})[key]))
            continue
        order = (f" by stack_order[{recipe.stack_order.index(module.name)}]"
                 if module.name in recipe.stack_order else "")
        steps.append(Step(len(steps) + 1, module, options, hooks, common, key, document,
                          restacked=True, why=f"no module builds on it: on {common_name}, stacked{order}"))
    reconcile = None
    if any(s.restacked for s in steps):
        reconcile = reconcile_step(common, tuple(s.key for s in steps if s.restacked))
        parent = reconcile.key
    for module, options, hooks, reason in tail:  # linear again, on top of the stack
        document = keyed_document(parent, module, options, recipe.base, hooks)
        steps.append(Step(len(steps) + 1, module, options, hooks, parent, cache_key(document), document,
                          why=f"linear: {reason}"))
        parent = steps[-1].key
    # Every secret the modules' credentials read is declared (kube Secret, check, the
    # entrypoint's list of names to unset) before finalize is keyed.
    recipe = declare_credential_secrets(recipe, steps)
    services = merge_services(steps)
    image = merge_image_config(recipe, steps)
    labels = (
        ("io.composer.recipe", recipe.name),
        ("io.composer.modules", ",".join(s.module.name for s in steps)),
    )
    names = tuple(env_names(recipe, steps))
    credentials = tuple(credentials_json(steps))
    secrets = tuple(sorted({s.name for s in recipe.secrets}))
    final_doc = finalize_document(parent, services, image, labels, names, credentials, secrets)
    final = FinalizeStep(parent, cache_key(final_doc), services, image, labels, names, credentials, final_doc,
                         secrets)
    notes = replace_notes(recipe, {s.module.name: s.module for s in steps})
    if lock == BESIDE and the_lock is None and recipe.parent_file is not None \
            and lockfile.lock_path(recipe.parent_file).is_file():
        notes += (f"{display(recipe.path)}: no lock, while the recipe it extends has one "
                  f"({display(lockfile.lock_path(recipe.parent_file))}): its layers are keyed unlocked, so it "
                  f"shares none of the parent's module layers (composer lock {display(recipe.path)}; docs/lock.md)",)
    return Plan(recipe, base, tuple(steps), final, reconcile, lock=the_lock, notes=notes)


def stack_ordered(leaves: list[Resolved], recipe: Recipe, users: Mapping[str, list[str]]) -> list[Resolved]:
    """The restacked modules in stack order: those the recipe's stack_order names first, in
    its order, then the others in recipe order. A change re-applies every layer above the
    changed one (docs/restack.md, "Stack order"); module keys do not depend on it."""
    named = {name: i for i, name in enumerate(recipe.stack_order)}
    stacked = {module.name for module, _, _ in leaves}
    for i, name in enumerate(recipe.stack_order):
        if name not in stacked:
            where = recipe.origins.get("stack_order", display(recipe.path))
            why = ("the recipe's layering is not restack" if recipe.layering is not Layering.RESTACK
                   else f"others build on it ({names_text(users[name])})" if users.get(name)
                   else "it is in the recipe's foundation")
            raise ComposerError(f"{where}: stack_order[{i}]: {name!r} is not stacked: {why}",
                                hint="name only restacked modules (composer plan shows them)")
    return sorted(leaves, key=lambda r: named.get(r[0].name, len(named)))


def declare_credential_secrets(recipe: Recipe, steps: Sequence[Step]) -> Recipe:
    """The recipe with every secret a module's [[credentials]] reads declared: one the
    recipe's [[secrets]] does not name would be missing from the kube Secret template and
    from the names `check` prints, so nobody would know to set it."""
    declared = {s.name for s in recipe.secrets}
    added: dict[str, list[str]] = {}
    for step in steps:
        for credential in step.module.credentials:
            for name in (*dict(credential.secrets).values(), *([credential.secret] if credential.secret else [])):
                if name not in declared:
                    added.setdefault(name, []).append(step.module.name)
    if not added:
        return recipe
    more = tuple(Secret(name, f"read by the [[credentials]] of module {', '.join(dict.fromkeys(mods))} "
                              "(not declared in the recipe's [[secrets]])")
                 for name, mods in added.items())
    return dataclasses.replace(recipe, secrets=recipe.secrets + more)


def resolve_layer(recipe: Recipe, module: Module, layer: LayerRef) -> Resolved:
    """A layer's module with its options checked, defaulted and put in, and its hooks."""
    layer = without_foreign_options(module, layer)
    check_family(module, layer, recipe)
    check_option_names(module, layer, recipe)
    options = resolve_options(module, layer)
    check_option_rules(module, options, layer, recipe)
    with_values = with_options(module, options, layer.where)
    check_ports(with_values, layer)
    return with_values, options, resolve_hooks(with_values, layer)


def check_recipe(recipe: Recipe, extra_module_dirs: Sequence[Path] = (), base_digest: str = "",
                 conflicts: Mapping[str, str] | None = None) -> tuple[Plan | None, list[ComposerError]]:
    """Plan the recipe, collecting every error found on the way rather than the first:
    each module is loaded and each layer resolved on its own, then the order is checked."""
    dirs = (*extra_module_dirs, *recipe.module_dirs)
    errors: list[ComposerError] = []
    modules: dict[str, Module] = {}
    for layer in recipe.layers:
        try:
            modules.update(load_modules([layer], dirs))
        except ComposerError as e:
            errors.append(e)
    loaded = tuple(layer for layer in recipe.layers if layer.module in modules)
    for layer in loaded:
        try:
            resolve_layer(recipe, modules[layer.module], layer)
        except ComposerError as e:
            errors += e.errors if isinstance(e, ComposerErrors) else [e]
    try:
        order_layers(loaded, modules, recipe, missing_ok={layer.module for layer in recipe.layers})
    except ComposerError as e:
        errors.append(e)
    try:
        check_unique_hooks([(modules[layer.module], hooks_of(modules[layer.module], layer)) for layer in loaded])
    except ComposerError as e:
        errors += e.errors if isinstance(e, ComposerErrors) else [e]
    if errors:
        return None, errors
    try:
        return plan_recipe(recipe, modules, base_digest, conflicts), []
    except ComposerError as e:
        return None, [e]


def foreign_options(module: Module, layer: LayerRef) -> list[str]:
    """The options a `replace` carried over from the module it swapped out that this module
    does not have."""
    return [name for name in layer.carried if name in layer.options and name not in module.options_schema]


def without_foreign_options(module: Module, layer: LayerRef) -> LayerRef:
    foreign = foreign_options(module, layer)
    if not foreign:
        return layer
    return dataclasses.replace(layer, options={k: v for k, v in layer.options.items() if k not in foreign})


def replace_notes(recipe: Recipe, modules: Mapping[str, Module]) -> tuple[str, ...]:
    """One line per option a `replace` could not carry over to the new module, and per port
    the new module publishes that the recipe's pod does not map (modules: with their options
    put in)."""
    notes = list(unmapped_ports(recipe, modules))
    for layer in recipe.layers:
        module = modules.get(layer.module)
        if module is None or not layer.replaced:
            continue
        foreign = foreign_options(module, layer)
        if not foreign:
            continue
        files = dict.fromkeys(recipe.origin("layers", layer.module, "options", name) for name in foreign)
        valid = sorted(module.options_schema)
        one = len(foreign) == 1
        notes.append(f"{layer.where}: {'option' if one else 'options'} {', '.join(foreign)} of {layer.replaced!r} "
                     f"(set in {', '.join(files)}) {'is not an option' if one else 'are not options'} of "
                     f"{layer.module!r}: dropped (its options: {', '.join(valid) or 'none'})")
    return tuple(notes)


def replacement_ports(recipe: Recipe, modules: Mapping[str, Module]) -> list[tuple[LayerRef, str]]:
    """(layer, port) for each port a module a `replace` brought in publishes that the recipe's
    pod does not map (none when the pod maps no ports at all); modules: with options put in."""
    if not recipe.pod.ports:
        return []
    mapped = {port.container for port in recipe.pod.ports}
    return [(layer, port) for layer in recipe.layers if layer.replaced and layer.module in modules
            for port in modules[layer.module].ports if int(port.partition("/")[0]) not in mapped]


def unmapped_ports(recipe: Recipe, modules: Mapping[str, Module]) -> list[str]:
    """'file: replace.old: new publishes 6080/tcp, which no pod port maps', per replacement_ports."""
    return [f"{layer.where}: {layer.module!r} publishes {port}, which no pod port maps "
            f"(unreachable from outside the pod; {recipe.origin('pod', 'ports')}: pod.ports)"
            for layer, port in replacement_ports(recipe, modules)]


def check_option_names(module: Module, layer: LayerRef, recipe: Recipe) -> None:
    """Unknown options: each one named, with the closest valid name and the valid ones."""
    valid = sorted(module.options_schema)
    unknown = [name for name in layer.options if name not in module.options_schema]
    errors = [
        ComposerError(
            f"{recipe.origin('layers', layer.module, 'options', name)}: {layer.field}.options.{name}: "
            f"module {module.name!r} has no option {name!r}{did_you_mean(name, valid)}",
            hint=f"its options: {', '.join(valid) or 'none'}",
        )
        for name in unknown
    ]
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise ComposerErrors(errors)


def check_option_rules(module: Module, options: Mapping[str, Any], layer: LayerRef, recipe: Recipe) -> None:
    """What a JSON Schema cannot say about options, from the module's own keywords:
    `x-unique-keys` (array of tables: no two items share a value of these keys) and
    `x-names-of` (every name in this option is a `name` of an item of that option)."""
    for name, spec in module.options_schema.items():
        value = options.get(name)
        set_in = recipe.origin("layers", module.name, "options", name)
        for key in spec.get("x-unique-keys", ()):
            seen: dict[Any, int] = {}
            for i, item in enumerate(value or ()):
                if not isinstance(item, dict) or key not in item:
                    continue
                if item[key] in seen:
                    raise ComposerError(
                        f"{set_in}: {slot(layer, set_in)}.options.{name}[{i}].{key}: {item[key]!r} is already used by "
                        f"{name}[{seen[item[key]]}]; each {key} must be unique"
                    )
                seen[item[key]] = i
        if other := spec.get("x-names-of"):
            # Blame the file that set the list of names (a child that dropped a user), and
            # say where the dangling reference was set when that is another file.
            names_in = recipe.origin("layers", module.name, "options", other)
            also = f" (set in {set_in})" if set_in != names_in else ""
            known = [item.get("name") for item in options.get(other) or () if isinstance(item, dict)]
            names = value.items() if isinstance(value, dict) else enumerate(value or ())
            for where_in, target in names:
                if isinstance(target, str) and target not in known:
                    field_name = f"{name}.{where_in}" if isinstance(value, dict) else f"{name}[{where_in}]"
                    where = f"{names_in}: {slot(layer, names_in)}.options.{field_name}{also}"
                    raise ComposerError(
                        f"{where}: {target!r} is not one of the {other} ({', '.join(map(str, known)) or 'none'})",
                        hint=f'drop it too: [unset.options.{module.name}] {name} = ["{where_in}"]'
                        if isinstance(value, dict) else f"list only {other} that exist in {name}",
                    )


def slot(layer: LayerRef, file: str) -> str:
    """The layer's field in file: layers[3] in the file that declared it, else
    layers.<module> (the path `plan --effective --json` uses)."""
    return layer.field if file == layer.file else f"layers.{layer.module}"


def check_ports(module: Module, layer: LayerRef) -> None:
    """A module's ports, options put in, are numbers 1-65535."""
    for i, text in enumerate(module.ports):
        number = text.partition("/")[0]
        if not number.isdigit() or not 1 <= int(number) <= 65535:
            raise ComposerError(
                f"{display(module.path / 'module.toml')}: ports[{i}]: {text!r} is not a port 1-65535 "
                f"(used by {layer.where})"
            )


def names_text(names: Sequence[str], shown: int = 4) -> str:
    more = len(names) - shown
    return ", ".join(names[:shown]) + (f" and {more} more" if more > 0 else "")


def replan(plan: Plan, conflicts: Mapping[str, str]) -> Plan:
    """plan again, with (more) module layers known not to stack."""
    modules = {s.module.name: s.module for s in plan.steps}
    return plan_recipe(plan.recipe, modules, plan.base.key_document.get("digest", ""), conflicts, plan.lock)


def relock(plan: Plan, lock: Lock | None, conflicts: Mapping[str, str] | None = None) -> Plan:
    """plan again with another composer.lock (None: as if the recipe had none)."""
    modules = {s.module.name: s.module for s in plan.steps}
    return plan_recipe(plan.recipe, modules, plan.base.key_document.get("digest", ""), conflicts, lock)


def dependents(ordered: Sequence[LayerRef], modules: dict[str, Module]) -> dict[str, list[str]]:
    """For each module of the recipe, the modules that build on it (through requires or
    after, transitively), in recipe order."""
    names = [layer.module for layer in ordered]
    direct = {n: [d for d in (*modules[n].requires, *modules[n].after) if d in names] for n in names}
    users: dict[str, list[str]] = {n: [] for n in names}
    for name in names:
        todo, seen = list(direct[name]), set()
        while todo:
            dep = todo.pop()
            if dep in seen:
                continue
            seen.add(dep)
            todo += direct[dep]
        for dep in seen:
            users[dep].append(name)
    return {n: sorted(u, key=names.index) for n, u in users.items()}


def reconcile_step(parent: str, members: tuple[str, ...]) -> ReconcileStep:
    stack = cache_key({"format": STEP_FORMAT, "kind": "stack", "parent": parent, "members": list(members)})
    document = {
        "format": STEP_FORMAT, "kind": "reconcile", "parent": parent, "members": list(members),
        "stack": stack, "reconciler": reconciler_digest(),
    }
    return ReconcileStep(parent, members, cache_key(document), document)


def reconciler_digest() -> str:
    """The reconcile layer is made by composer's own code: a change to it is a new layer."""
    return file_digest(Path(__file__).parent / "restack" / "reconcile.py")


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
        if base.snapshot:  # only when set: the keys of bases without one stay
            document.update(snapshot=base.snapshot, snapshot_mirror=base.snapshot_mirror)
    elif base.kind is BaseKind.OCI_ARCHIVE:
        document["digest"] = digest or file_digest(Path(base.ref))
    elif base.kind is BaseKind.IMAGE:
        # A ref pinned by digest names its content; otherwise the caller's lookup does.
        document["digest"] = digest or (base.ref.split("@", 1)[1] if "@" in base.ref else "")
    return BaseStep(base, cache_key(document), document)


def locked_document(document: dict[str, Any], lock: Lock | None) -> dict[str, Any]:
    """A module's key document with its lock entry in, when the recipe has a lock: a
    recipe without one keeps its keys. A module the lock lacks has `lock: null`."""
    if lock is None:
        return document
    entry = lock.entry(document["module"])
    return {**document, "lock": entry.key_part() if entry else None}


def module_inputs(document: dict[str, Any]) -> str:
    """What a module is made of, whatever it is built on and locked to: the lock's `inputs`."""
    return cache_key({k: v for k, v in document.items() if k not in ("parent", "lock")})


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


def order_layers(layers: Sequence[LayerRef], modules: dict[str, Module], recipe: Recipe | None = None,
                 missing_ok: set[str] | frozenset[str] = frozenset()) -> list[LayerRef]:
    """Topological order by requires/after; ties keep the recipe's order (deterministic).
    missing_ok: modules the recipe lists that could not be loaded (check goes on)."""
    by_name = {layer.module: layer for layer in layers}
    before: dict[str, set[str]] = {name: set() for name in by_name}
    for layer in layers:
        module = modules[layer.module]
        for dep in module.requires:
            if dep in missing_ok and dep not in by_name:
                continue
            if dep not in by_name:
                raise missing_requirement(layer, dep, recipe)
            before[layer.module].add(dep)
        before[layer.module].update(dep for dep in module.after if dep in by_name)
    for name, deps in before.items():
        if name in deps:
            raise ComposerError(f"{display(modules[name].path / 'module.toml')}: requires/after: "
                                f"module {name!r} is ordered after itself (used by {by_name[name].where})")

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
        files = ", ".join(display(modules[n].path / "module.toml") for n in stuck)
        # The cycle is in the modules' own requires/after, not in the recipe slot.
        raise ComposerError(
            f"{display(modules[first.module].path / 'module.toml')}: requires/after: ordering cycle "
            f"among modules {', '.join(stuck)} (declared in {files}; used by {first.where})"
        )
    return ordered


def missing_requirement(layer: LayerRef, dep: str, recipe: Recipe | None) -> ComposerError:
    """A required module is not in the recipe: blame the child's remove/replace/only
    that dropped it when one did, else the layer that needs it."""
    dropped_by = recipe.removed_by(dep) if recipe is not None else ""
    if dropped_by:
        return ComposerError(
            f"{dropped_by}: dropping {dep!r} leaves module {layer.module!r} ({layer.where}) "
            f"without {dep!r}, which it requires",
            hint=f"drop {layer.module!r} too, or keep {dep!r}",
        )
    return ComposerError(
        f"{layer.where}: module {layer.module!r} requires {dep!r}, which the recipe does not list",
        hint=f"add a [[layers]] entry with module = {dep!r}",
    )


def check_family(module: Module, layer: LayerRef, recipe: Recipe) -> None:
    """The module supports the base's family; the message names the module file (which
    lacks the packages), the recipe file that chose the base and the layer that uses it."""
    base = recipe.base
    families = module.families()
    if families is not None and base.family not in families:
        supported = ", ".join(families)
        raise ComposerError(
            f"{display(module.path / 'module.toml')}: packages: module {module.name!r} has no packages "
            f"for family '{base.family}' (base {base.source} from {recipe.origin('base')}; used by "
            f"{layer.where}); it supports: {supported}",
            hint=f"add [packages].{base.family} to {display(module.path / 'module.toml')}",
        )


def hook_dirs(module: Module) -> tuple[Path, ...]:
    """Where a module's hooks are looked up, in order: its own hooks/ folder, then the
    hooks/ folder beside the layers/ folder it lives in. Nothing else: a hooks/ folder
    somewhere above a recipe is never picked up."""
    return (module.path / "hooks", module.path.parent.parent / "hooks")


def hooks_of(module: Module, layer: LayerRef) -> tuple[tuple[str, Path], ...]:
    """The module's hooks, () when they cannot be found (that error is reported apart)."""
    try:
        return resolve_hooks(module, layer)
    except ComposerError:
        return ()


def check_unique_hooks(hooks: Sequence[tuple[Module, Sequence[tuple[str, Path]]]]) -> None:
    """Every hook lands in /etc/composer/hooks.d/<name>: two modules naming one hook would
    overwrite each other there, unless both name the same shared file (hooks/ beside
    layers/), which is then one hook."""
    first: dict[str, tuple[Module, Path]] = {}
    errors: list[ComposerError] = []
    for module, found in hooks:
        for i, (name, path) in enumerate(found):
            other, other_path = first.setdefault(name, (module, path))
            if other is not module and other_path != path:
                errors.append(ComposerError(
                    f"{display(module.path / 'module.toml')}: hooks[{i}]: {name!r} is also a hook of module "
                    f"{other.name!r} ({display(other_path)}): both would be /etc/composer/hooks.d/{name}",
                    hint="rename this module's hook (hook names are one folder per image)"))
    if errors:
        raise errors[0] if len(errors) == 1 else ComposerErrors(errors)


def resolve_hooks(module: Module, layer: LayerRef) -> tuple[tuple[str, Path], ...]:
    dirs = hook_dirs(module)
    found: list[tuple[str, Path]] = []
    for i, name in enumerate(module.hooks):
        folder = next((d for d in dirs if (d / name).is_file()), None)
        if folder is None:
            raise ComposerError(
                f"{display(module.path / 'module.toml')}: hooks[{i}]: {name!r} not found in "
                f"{' or '.join(display(d) for d in dirs)} (used by {layer.where})"
            )
        # Like a module's own files: a link out of the hooks folder would put a host file in
        # the image; a hook is keyed and copied by the content it names, never a link's text.
        check_module_file(folder / name, folder.resolve())
        found.append((name, (folder / name).resolve()))
    return tuple(found)
