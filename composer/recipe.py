"""Load a recipe: read TOML, validate against the schema, resolve `extends`, build a Recipe."""

from __future__ import annotations

import copy
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from composer.errors import ComposerError, ComposerErrors, did_you_mean
from composer.model import Base, BaseKind, Family, LayerRef, Recipe, from_raw
from composer.refs import check_repo
from composer.schema import display, load_schema, validate
from composer.selfmodule import NAME as SELF_MODULE
from composer.selfmodule import self_modules_dir

# Recipes and module files are small; anything larger is a mistake (or an attack).
MAX_TOML_BYTES = 1 << 20
MAX_NESTING = 32


def read_toml(path: Path) -> dict[str, Any]:
    """A TOML file's table; every way it can be unreadable is one line naming the file."""
    where = display(path)
    if not path.exists():
        raise ComposerError(f"{where}: no such file")
    if not path.is_file():  # a FIFO or a device would block or never end
        raise ComposerError(f"{where}: not a regular file")
    if path.stat().st_size > MAX_TOML_BYTES:
        raise ComposerError(f"{where}: larger than {MAX_TOML_BYTES // 1024} KiB; not a recipe or module file")
    try:
        document = tomllib.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ComposerError(f"{where}: not UTF-8 text (byte {e.start})") from None
    except tomllib.TOMLDecodeError as e:
        raise ComposerError(f"{where}: invalid TOML: {e}") from None
    except RecursionError:
        document = None
    if document is None or nesting(document) > MAX_NESTING:
        raise ComposerError(f"{where}: nested more than {MAX_NESTING} levels deep")
    return document


def nesting(value: Any) -> int:
    """How deep tables and arrays nest in value (iteratively: no recursion to exhaust)."""
    deepest, todo = 0, [(value, 0)]
    while todo:
        item, depth = todo.pop()
        deepest = max(deepest, depth)
        if isinstance(item, dict):
            todo += [(v, depth + 1) for v in item.values()]
        elif isinstance(item, list):
            todo += [(v, depth + 1) for v in item]
    return deepest


def load_recipe(path: Path, problems: list[ComposerError] | None = None) -> Recipe:
    """Read, validate and resolve the recipe at path (following `extends`).

    problems: a list to collect the errors a check can look past (a bad base, a module
    listed twice) instead of raising the first; the recipe then has a stand-in base and
    each module once, so that its modules are checked too."""
    resolved = _resolve(path.resolve(), ())
    where = display(path)
    for required in ("name", "base"):
        if required not in resolved.raw:
            raise ComposerError(f"{where}: {required}: missing (required, here or in a parent)")
    found: list[ComposerError] = list(resolved.problems)
    recipe = _build(path.resolve(), resolved, found)
    if found and problems is None:
        raise found[0] if len(found) == 1 else ComposerErrors(found)
    if problems is not None:
        problems += found
    return recipe


# Keys of a child recipe that say how to change its parent; never part of the result.
EDIT_KEYS = ("extends", "remove", "replace", "only", "unset")


@dataclass
class Resolved:
    """A recipe merged along its `extends` chain, with where each part came from."""

    raw: dict[str, Any]
    layer_origins: list[tuple[str, str]]  # per layer: (file, field) that declared it last
    origins: dict[tuple[Any, ...], str] = field(default_factory=dict)  # value path -> file
    removed: dict[str, tuple[str, str]] = field(default_factory=dict)  # module -> (file, field)
    unset: dict[str, str] = field(default_factory=dict)  # value path dropped whole -> file
    chain: tuple[Path, ...] = ()  # the recipe files read: this one first, then what it extends
    # module -> (the module it replaced, its options carried over): see _merge
    carried: dict[str, tuple[str, tuple[str, ...]]] = field(default_factory=dict)
    # the mistakes in remove/only/replace/unset along the chain; each edit that has one is
    # skipped, so that `check` goes on to the modules (load_recipe raises them otherwise)
    problems: list[ComposerError] = field(default_factory=list)


def _resolve(path: Path, seen: tuple[Path, ...]) -> Resolved:
    """The merged raw recipe, where each layer was declared and who set each value."""
    if path in seen:
        chain = " -> ".join(display(p) for p in (*seen, path))
        raise ComposerError(f"{display(path)}: extends: cycle ({chain})")
    raw = read_toml(path)
    where = display(path)
    validate(raw, load_schema("recipe"), where)
    own_origins = [(where, f"layers[{i}]") for i in range(len(raw.get("layers", [])))]
    if "extends" not in raw:
        for key in EDIT_KEYS[1:]:
            if key in raw:
                raise ComposerError(f"{where}: {key}: only allowed together with extends")
        return Resolved(raw, own_origins, value_origins(raw, where), chain=(path,))
    if "only" in raw and "remove" in raw:
        raise ComposerError(f"{where}: only: say either only (the modules to keep) or remove, not both")
    parent_path = (path.parent / raw["extends"]).resolve()
    if not parent_path.is_file():
        raise ComposerError(f"{where}: extends: {raw['extends']!r} not found ({parent_path})")
    parent = _resolve(parent_path, (*seen, path))
    merged = _merge(parent, raw, own_origins, where)
    merged.chain = (path, *parent.chain)
    return merged


def value_origins(raw: dict[str, Any], where: str) -> dict[tuple[Any, ...], str]:
    """Every value a recipe file sets, by path (tables walked, lists whole), -> where."""
    out: dict[tuple[Any, ...], str] = {}

    def walk(value: Any, path: tuple[Any, ...]) -> None:
        if isinstance(value, dict):  # an empty table sets nothing: merging it changes nothing
            for key, item in value.items():
                walk(item, (*path, key))
        else:
            out[path] = where

    for key, value in raw.items():
        if key in EDIT_KEYS:
            continue
        if key == "layers":
            for entry in value:
                out[("layers", entry["module"])] = where
                walk(entry.get("options", {}), ("layers", entry["module"], "options"))
        elif key == "secrets":
            for secret in value:
                out[("secrets", secret["name"])] = where
        else:
            walk(value, (key,))
    return out


def _forget(origins: dict[tuple[Any, ...], str], prefix: tuple[Any, ...]) -> None:
    for path in [p for p in origins if p[: len(prefix)] == prefix]:
        del origins[path]


def _merge(parent: Resolved, child: dict[str, Any], child_origins: list[tuple[str, str]],
           where: str) -> Resolved:
    layers = [dict(entry) for entry in parent.raw.get("layers", [])]
    layer_origins = list(parent.layer_origins)
    origins = dict(parent.origins)
    removed = dict(parent.removed)
    unset = dict(parent.unset)
    carried = dict(parent.carried)
    names = [entry["module"] for entry in layers]

    # Every mistake in remove/only/replace/unset is reported, not only the first.
    errors: list[ComposerError] = []
    drops = [(name, f"remove[{i}]") for i, name in enumerate(child.get("remove", []))]
    if "only" in child:
        for i, name in enumerate(child["only"]):
            if name not in names:
                errors.append(ComposerError(f"{where}: only[{i}]: module {name!r} is not in the parent recipe"
                                            + did_you_mean(name, names)))
        drops = [(name, "only") for name in names if name not in child["only"]]
    dropped_by: dict[str, str] = {}
    for name, field_name in drops:
        if name in dropped_by:
            errors.append(ComposerError(f"{where}: {field_name}: module {name!r} is already dropped by "
                                        f"{dropped_by[name]}", hint="name it once"))
            continue
        if name not in names:
            errors.append(ComposerError(f"{where}: {field_name}: module {name!r} is not in the parent recipe"
                                        + did_you_mean(name, names)))
            continue
        dropped_by[name] = field_name
        i = names.index(name)
        del layers[i], layer_origins[i], names[i]
        removed[name] = (where, field_name)
        _forget(origins, ("layers", name))
    for old, new in child.get("replace", {}).items():
        if old in dropped_by:
            errors.append(ComposerError(f"{where}: replace.{old}: module {old!r} is already dropped by "
                                        f"{dropped_by[old]}", hint="remove it or replace it, not both"))
            continue
        if old not in names:
            errors.append(ComposerError(f"{where}: replace.{old}: module {old!r} is not in the parent recipe"
                                        + did_you_mean(old, names)))
            continue
        i = names.index(old)
        # The new module keeps the options the recipe set for the old one (a geometry, a
        # user): those it has by the same name apply, the rest are dropped with a note
        # (Plan.notes), so a swap does not fall back to defaults silently.
        options = copy.deepcopy(layers[i].get("options", {}))
        layers[i] = {"module": new, "options": options} if options else {"module": new}
        names[i] = new
        layer_origins[i] = (where, f"replace.{old}")
        removed[old] = (where, f"replace.{old}")
        carried[new] = (old, tuple(options))
        for path in [p for p in origins if p[:3] == ("layers", old, "options")]:
            origins[("layers", new, *path[2:])] = origins[path]
        _forget(origins, ("layers", old))
        origins[("layers", new)] = where

    merged = {k: v for k, v in parent.raw.items() if k not in EDIT_KEYS}
    merged["layers"] = layers
    errors += unset_values(merged, child.get("unset", {}), origins, where)
    unset.update({_path_text(p): where for p in dropped_whole(child.get("unset", {}))})
    layers = merged["layers"]
    errors += readded_layers(child, dropped_by, where)

    for entry, origin in zip(child.get("layers", []), child_origins, strict=True):
        name = entry["module"]
        if name in names:
            i = names.index(name)
            merged_options = deep_merge(layers[i].get("options", {}), entry.get("options", {}))
            layers[i] = {"module": name, "options": merged_options}
            layer_origins[i] = origin
            if name in carried:  # an option this file sets for the new module is its own
                old, kept = carried[name]
                carried[name] = (old, tuple(o for o in kept if o not in entry.get("options", {})))
        else:
            layers.append(dict(entry))
            layer_origins.append(origin)
            names.append(name)
        removed.pop(name, None)

    for key, value in child.items():
        if key in (*EDIT_KEYS, "layers"):
            continue
        if key == "base":
            merged[key] = value  # a new base is a whole new base: no parent mirror etc.
            _forget(origins, ("base",))
        elif key == "secrets":
            by_name = {s["name"]: s for s in merged.get("secrets", [])}
            by_name.update({s["name"]: s for s in value})
            merged["secrets"] = list(by_name.values())
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
            _forget(origins, (key,))
    origins.update(value_origins(child, where))
    merged["layers"] = layers
    carried = {name: value for name, value in carried.items() if name in names}
    return Resolved(merged, layer_origins, origins, removed, unset, carried=carried,
                    problems=[*parent.problems, *errors])


def readded_layers(child: dict[str, Any], dropped_by: dict[str, str], where: str) -> list[ComposerError]:
    """A child's [[layers]] block for a module the same child drops would silently bring it
    back, and a second block for one module would silently win over the first: both are
    errors."""
    errors: list[ComposerError] = []
    # `only` keeps the listed modules and appends the child's [[layers]] (docs/format.md):
    # a block there adds a module, it does not contradict the file.
    dropped = {name: fld for name, fld in dropped_by.items() if fld != "only"}
    dropped.update({old: f"replace.{old}" for old in child.get("replace", {})})
    first: dict[str, int] = {}
    for i, entry in enumerate(child.get("layers", [])):
        name = entry["module"]
        if name in dropped:
            errors.append(ComposerError(
                f"{where}: layers[{i}]: module {name!r} is dropped by {dropped[name]} of the same file",
                hint=f"keep it (delete {dropped[name]}) or drop it (delete this [[layers]] block)"))
        elif first.setdefault(name, i) != i:
            errors.append(ComposerError(
                f"{where}: layers[{i}]: module {name!r} is already listed in layers[{first[name]}]",
                hint="merge its options into one [[layers]] block"))
    return errors


def unset_values(merged: dict[str, Any], unset: dict[str, Any], origins: dict[tuple[Any, ...], str],
                 where: str) -> list[ComposerError]:
    """Drop what the child's [unset] names from the inherited recipe (before the child's own
    values are merged in). Every entry must name something the parent has: the mistakes
    come back (the first one per top-level key or module)."""
    errors: list[ComposerError] = []
    for key, what in unset.items():
        if key == "options":
            names = [entry["module"] for entry in merged["layers"]]
            for module, spec in what.items():
                if module not in names:
                    errors.append(ComposerError(f"{where}: unset.options.{module}: module {module!r} is not in "
                                                "the recipe" + did_you_mean(module, names)))
                    continue
                entry = merged["layers"][names.index(module)]
                options = dict(copy.deepcopy(entry.get("options", {})))
                try:
                    _unset(options, spec, f"unset.options.{module}", f"layers.{module}.options", where,
                           origins, ("layers", module, "options"))
                except ComposerError as e:
                    errors.append(e)
                    continue
                merged["layers"][names.index(module)] = {"module": module, "options": options}
        else:
            try:
                _unset(merged, {key: what}, "unset", "", where, origins, ())
            except ComposerError as e:
                errors.append(e)
    return errors


def _unset(target: dict[str, Any], spec: dict[str, Any], field_name: str, inherited: str, where: str,
           origins: dict[tuple[Any, ...], str], path: tuple[Any, ...]) -> None:
    for key, what in spec.items():
        here = f"{field_name}.{key}"
        name = f"{inherited}.{key}".lstrip(".")
        if key not in target:
            raise ComposerError(f"{where}: {here}: the parent recipe sets no {name}"
                                + did_you_mean(key, target))
        value = target[key]
        if what is True:
            del target[key]
            _forget(origins, (*path, key))
        elif isinstance(what, dict):
            if not isinstance(value, dict):
                raise ComposerError(f"{where}: {here}: {name} is not a table; write {key} = true")
            value = target[key] = copy.deepcopy(value)
            _unset(value, what, here, name, where, origins, (*path, key))
        elif isinstance(value, dict):
            check_listed_once(what, f"{where}: {here}")
            for i, item in enumerate(what):
                if item not in value:
                    raise ComposerError(f"{where}: {here}[{i}]: {name} has no entry {item!r}"
                                        + did_you_mean(str(item), value))
            target[key] = {k: v for k, v in value.items() if k not in what}
            for item in what:
                _forget(origins, (*path, key, item))
        elif isinstance(value, list):
            check_listed_once(what, f"{where}: {here}")
            kept = list(value)
            for i, item in enumerate(what):
                match = [v for v in kept if _names(v, item)]
                if not match:
                    labels = [str(_label(v)) for v in value]
                    raise ComposerError(f"{where}: {here}[{i}]: {name} has no entry {item!r}"
                                        + did_you_mean(str(item), labels))
                kept = [v for v in kept if not _names(v, item)]
                if key == "secrets" and not path:
                    _forget(origins, ("secrets", item))
            target[key] = kept
            if (*path, key) in origins:
                origins[(*path, key)] = where  # the list as it stands is this file's doing
        else:
            raise ComposerError(f"{where}: {here}: {name} is a single value; write {key} = true")


def check_listed_once(items: list[Any], where: str) -> None:
    """An [unset] list naming one entry twice: said as such, not as a missing entry."""
    for i, item in enumerate(items):
        if item in items[:i]:
            raise ComposerError(f"{where}[{i}]: {item!r} is already listed in {where.partition(': ')[2]}"
                                f"[{items.index(item)}]", hint="name it once")


def dropped_whole(unset: dict[str, Any], path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """The value paths an [unset] table drops whole (`key = true`)."""
    out: list[tuple[Any, ...]] = []
    for key, what in unset.items():
        if what is True:
            out.append((*path, key))
        elif isinstance(what, dict):
            out += dropped_whole(what, (*path, key))
    return out


def _names(value: Any, item: Any) -> bool:
    """Whether an unset list entry names this list item: the item itself, or a table's
    name (secrets, pod ports) or container port (pod ports)."""
    if isinstance(value, dict):
        return item in (value.get("name"), value.get("container"))
    return bool(value == item)


def _label(value: Any) -> Any:
    return value.get("name", value.get("container", "")) if isinstance(value, dict) else value


def deep_merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """b over a: tables merge recursively, everything else (lists included) is replaced."""
    out = copy.deepcopy(a)
    for key, value in b.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _build(path: Path, resolved: Resolved, problems: list[ComposerError]) -> Recipe:
    raw, origins = resolved.raw, resolved.layer_origins
    where = display(path)
    try:
        base = parse_base(raw["base"], where)
    except ComposerError as e:
        problems.append(e)
        base = Base(BaseKind.SCRATCH, "", Family.DEBIAN)  # stands in while the rest is checked
    layers = tuple(
        LayerRef(
            module=e["module"],
            options=e.get("options", {}),
            index=i,
            file=origins[i][0],
            field=origins[i][1],
            replaced=resolved.carried.get(e["module"], ("", ()))[0],
            carried=resolved.carried.get(e["module"], ("", ()))[1],
        )
        for i, e in enumerate(raw.get("layers", []))
    )
    seen: set[str] = set()
    unique = []  # each module once, as the first listed it
    for layer in layers:
        if layer.module in seen:
            problems.append(ComposerError(f"{layer.where}: module {layer.module!r} is listed twice"))
        else:
            seen.add(layer.module)
            unique.append(layer)
    layers = tuple(unique)
    cache = raw.get("cache", {})
    foundation = _named_modules(raw, "foundation", resolved, seen, where)
    stack_order = _named_modules(raw, "stack_order", resolved, seen, where)
    # The tables that map onto the model as written; the rest is worked out above.
    tables = ("name", "tag", "description", "image", "secrets", "pod", "layering")
    loaded: dict[str, Any] = {k: raw[k] for k in tables if k in raw}
    return from_raw(
        Recipe, loaded,
        path=path,
        base=base,
        layers=layers,
        foundation=foundation,
        stack_order=stack_order,
        module_dirs=module_dirs(resolved.chain, with_self=SELF_MODULE in seen),
        removed=tuple((name, f, fld) for name, (f, fld) in resolved.removed.items()),
        unset=tuple(resolved.unset.items()),
        effective=({k: v for k, v in raw.items() if k != "layers"} | {"layers": raw.get("layers", [])}
                   | ({"foundation": list(foundation)} if "foundation" in raw else {})
                   | ({"stack_order": list(stack_order)} if "stack_order" in raw else {})),
        origins={_path_text(p): w for p, w in resolved.origins.items()},
        cache_from=check_repo(cache.get("from", ""), f"{where}: cache.from"),
        cache_to=check_repo(cache.get("to", ""), f"{where}: cache.to"),
        parent_file=resolved.chain[1] if len(resolved.chain) > 1 else None,
    )


def _named_modules(raw: dict[str, Any], key: str, resolved: Resolved, names: set[str],
                   where: str) -> tuple[str, ...]:
    """A declared list of modules (foundation, stack_order), less the modules a child
    dropped; any other name that is not a layer of the recipe is a mistake (blamed on the
    file that declared it)."""
    declared = raw.get(key, [])
    where = resolved.origins.get((key,), where)
    for i, name in enumerate(declared):
        if name not in names and name not in resolved.removed:
            raise ComposerError(f"{where}: {key}[{i}]: {name!r} is not a module of the recipe"
                                f"{did_you_mean(name, sorted(names))}")
    return tuple(name for name in declared if name in names)


# The modules shipped with composer: layers/ beside the composer package.
PROJECT_LAYERS = Path(__file__).resolve().parent.parent / "layers"


def module_dirs(chain: Sequence[Path], with_self: bool = False) -> tuple[Path, ...]:
    """The layers/ folders a recipe's modules are looked up in, first match wins: the one
    beside each recipe of the extends chain (the child first), then the project's own,
    then (when the recipe names it) the generated folder of the `composer` module
    (composer/selfmodule.py). Never a folder merely above a recipe: whoever can write
    /tmp/layers must not be able to add modules to a recipe kept under /tmp."""
    beside = [recipe.parent / "layers" for recipe in chain]
    own = self_modules_dir() if with_self else None
    found = dict.fromkeys(d for d in (*beside, PROJECT_LAYERS, *filter(None, [own])) if d.is_dir())
    return tuple(found)


def parse_base(raw: dict[str, Any], where: str) -> Base:
    source = raw.get("from")
    if not source:
        raise ComposerError(f"{where}: base.from: missing (e.g. \"debootstrap:trixie\")")
    kind_text, _, ref = source.partition(":")
    kind = BaseKind(kind_text)
    family_text = raw.get("family")
    if kind is BaseKind.DEBOOTSTRAP:
        if family_text not in (None, "debian"):
            raise ComposerError(f"{where}: base.family: a debootstrap base is always debian")
        family = Family.DEBIAN
    elif family_text is None:
        raise ComposerError(
            f"{where}: base.family: required (only a debootstrap: base implies it; this one is {kind})",
            hint='set family = "debian" or "arch"',
        )
    else:
        family = Family(family_text)
    if kind is BaseKind.OCI_ARCHIVE and not Path(ref).is_file():
        # A FIFO or a device (/dev/zero) would hang the digest; a folder is no archive.
        raise ComposerError(f"{where}: base.from: {ref!r} is not a regular file")
    if kind is not BaseKind.DEBOOTSTRAP:
        for key in ("mirror", "components", "variant", "include", "snapshot", "snapshot_mirror"):
            if key in raw:
                raise ComposerError(f"{where}: base.{key}: only for debootstrap bases")
    table = {k: v for k, v in raw.items() if k not in ("from", "family")}
    return from_raw(Base, table, kind=kind, ref=ref, family=family)


def _path_text(path: tuple[Any, ...]) -> str:
    """("layers", "users", "options", "helpers") -> 'layers.users.options.helpers'."""
    return ".".join(str(p) for p in path)
