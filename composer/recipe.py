"""Load a recipe: read TOML, validate against the schema, resolve `extends`, build a Recipe."""

from __future__ import annotations

import copy
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from composer.errors import ComposerError
from composer.model import Base, BaseKind, Family, ImageConfig, Layering, LayerRef, Recipe, Secret, from_raw
from composer.schema import display, load_schema, validate
from composer.selfmodule import NAME as SELF_MODULE
from composer.selfmodule import self_modules_dir

DEFAULT_TAG = "latest"


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


def load_recipe(path: Path) -> Recipe:
    """Read, validate and resolve the recipe at path (following `extends`)."""
    raw, origins, chain = _resolve(path.resolve(), ())
    where = display(path)
    for required in ("name", "base"):
        if required not in raw:
            raise ComposerError(f"{where}: {required}: missing (required, here or in a parent)")
    return _build(path.resolve(), raw, origins, chain)


def _resolve(
    path: Path, seen: tuple[Path, ...]
) -> tuple[dict[str, Any], list[tuple[str, str]], tuple[Path, ...]]:
    """The merged raw recipe, per layer where it was declared (for messages), and the
    chain of recipe files it was read from (this one first, then what it extends)."""
    if path in seen:
        chain = " -> ".join(display(p) for p in (*seen, path))
        raise ComposerError(f"{display(path)}: extends: cycle ({chain})")
    raw = read_toml(path)
    where = display(path)
    validate(raw, load_schema("recipe"), where)
    own_origins = [(where, f"layers[{i}]") for i in range(len(raw.get("layers", [])))]
    if "extends" not in raw:
        for key in ("remove", "replace"):
            if key in raw:
                raise ComposerError(f"{where}: {key}: only allowed together with extends")
        return raw, own_origins, (path,)
    parent_path = (path.parent / raw["extends"]).resolve()
    if not parent_path.is_file():
        raise ComposerError(f"{where}: extends: {raw['extends']!r} not found ({parent_path})")
    parent, parent_origins, ancestors = _resolve(parent_path, (*seen, path))
    return (*_merge(parent, parent_origins, raw, own_origins, where), (path, *ancestors))


def _merge(
    parent: dict[str, Any],
    parent_origins: list[tuple[str, str]],
    child: dict[str, Any],
    child_origins: list[tuple[str, str]],
    where: str,
) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    layers = [dict(entry) for entry in parent.get("layers", [])]
    origins = list(parent_origins)
    names = [entry["module"] for entry in layers]

    for name in child.get("remove", []):
        if name not in names:
            raise ComposerError(f"{where}: remove: module {name!r} is not in the parent recipe")
        i = names.index(name)
        del layers[i], origins[i], names[i]
    for old, new in child.get("replace", {}).items():
        if old not in names:
            raise ComposerError(f"{where}: replace.{old}: module {old!r} is not in the parent recipe")
        i = names.index(old)
        layers[i] = {"module": new}
        names[i] = new
    for entry, origin in zip(child.get("layers", []), child_origins, strict=True):
        name = entry["module"]
        if name in names:
            i = names.index(name)
            merged_options = deep_merge(layers[i].get("options", {}), entry.get("options", {}))
            layers[i] = {"module": name, "options": merged_options}
            origins[i] = origin
        else:
            layers.append(dict(entry))
            origins.append(origin)
            names.append(name)

    merged = {k: v for k, v in parent.items() if k not in ("extends", "remove", "replace")}
    for key, value in child.items():
        if key in ("extends", "remove", "replace", "layers"):
            continue
        if key == "base":
            merged[key] = value  # a new base is a whole new base: no parent mirror etc.
        elif key == "secrets":
            by_name = {s["name"]: s for s in merged.get("secrets", [])}
            by_name.update({s["name"]: s for s in value})
            merged["secrets"] = list(by_name.values())
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    merged["layers"] = layers
    return merged, origins


def deep_merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """b over a: tables merge recursively, everything else (lists included) is replaced."""
    out = copy.deepcopy(a)
    for key, value in b.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _build(path: Path, raw: dict[str, Any], origins: list[tuple[str, str]], chain: tuple[Path, ...]) -> Recipe:
    where = display(path)
    base = parse_base(raw["base"], where)
    layers = tuple(
        LayerRef(
            module=e["module"],
            options=e.get("options", {}),
            index=i,
            file=origins[i][0],
            field=origins[i][1],
        )
        for i, e in enumerate(raw.get("layers", []))
    )
    seen: set[str] = set()
    for layer in layers:
        if layer.module in seen:
            raise ComposerError(f"{layer.where}: module {layer.module!r} is listed twice")
        seen.add(layer.module)
    return Recipe(
        path=path,
        name=raw["name"],
        tag=raw.get("tag", DEFAULT_TAG),
        base=base,
        layers=layers,
        image=from_raw(ImageConfig, raw.get("image", {})),
        secrets=tuple(from_raw(Secret, s) for s in raw.get("secrets", [])),
        pod=raw.get("pod", {}),
        layering=Layering(raw.get("layering", Layering.LINEAR)),
        module_dirs=module_dirs(chain, with_self=SELF_MODULE in seen),
    )


# The modules shipped with composer: layers/ beside the composer package.
PROJECT_LAYERS = Path(__file__).resolve().parent.parent / "layers"


def module_dirs(chain: Sequence[Path], with_self: bool = False) -> tuple[Path, ...]:
    """The layers/ folders a recipe's modules are looked up in, first match wins: the one
    beside each recipe of the extends chain (the child first), then the project's own,
    then any layers/ in the folders above those recipes (nearest first), then (when the
    recipe names it) the generated folder of the `composer` module (composer/selfmodule.py)."""
    beside = [recipe.parent / "layers" for recipe in chain]
    above = [folder / "layers" for recipe in chain for folder in recipe.parent.parents]
    own = self_modules_dir() if with_self else None
    found = dict.fromkeys(d for d in (*beside, PROJECT_LAYERS, *above, *filter(None, [own])) if d.is_dir())
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
            f"{where}: base.family: required for a {kind} base",
            hint='set family = "debian" or "arch"',
        )
    else:
        family = Family(family_text)
    if kind is BaseKind.OCI_ARCHIVE and not Path(ref).is_file():
        # A FIFO or a device (/dev/zero) would hang the digest; a folder is no archive.
        raise ComposerError(f"{where}: base.from: {ref!r} is not a regular file")
    if kind is not BaseKind.DEBOOTSTRAP:
        for key in ("mirror", "components", "variant", "include"):
            if key in raw:
                raise ComposerError(f"{where}: base.{key}: only for debootstrap bases")
    table = {k: v for k, v in raw.items() if k not in ("from", "family")}
    return from_raw(Base, table, kind=kind, ref=ref, family=family)
