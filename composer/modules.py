"""Find and load layer modules (layers/<name>/module.toml) and resolve their options."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from composer.errors import ComposerError
from composer.model import Family, FileSpec, LayerRef, Module, ScriptSpec, Service
from composer.recipe import parse_healthcheck, read_toml
from composer.schema import display, load_schema, validate


def find_module(name: str, dirs: Sequence[Path]) -> Path | None:
    for d in dirs:
        candidate = d / name / "module.toml"
        if candidate.is_file():
            return candidate.parent
    return None


def load_module(folder: Path) -> Module:
    """Read and validate folder/module.toml."""
    toml_path = folder / "module.toml"
    raw = read_toml(toml_path)
    where = display(toml_path)
    validate(raw, load_schema("module"), where)
    if raw["name"] != folder.name:
        raise ComposerError(f"{where}: name: {raw['name']!r} must equal the folder name {folder.name!r}")
    for i, f in enumerate(raw.get("files", [])):
        if not (folder / f["src"]).exists():
            raise ComposerError(f"{where}: files[{i}].src: {f['src']!r} not found in {display(folder)}")
    for i, s in enumerate(raw.get("scripts", [])):
        if not (folder / s["run"]).is_file():
            raise ComposerError(f"{where}: scripts[{i}].run: {s['run']!r} not found in {display(folder)}")
    options = raw.get("options", {})
    check_options_schema(options, where)
    return Module(
        name=raw["name"],
        path=folder,
        version=raw["version"],
        description=raw.get("description", ""),
        options_schema=options,
        requires=tuple(raw.get("requires", ())),
        after=tuple(raw.get("after", ())),
        packages=tuple((Family(k), tuple(v)) for k, v in raw.get("packages", {}).items()),
        recommends=raw.get("recommends", False),
        files=tuple(
            FileSpec(f["src"], f["dest"], f.get("mode"), f.get("owner")) for f in raw.get("files", [])
        ),
        scripts=tuple(
            ScriptSpec(s["run"], tuple(Family(x) for x in s.get("families", ())))
            for s in raw.get("scripts", [])
        ),
        env=tuple(raw.get("env", {}).items()),
        ports=tuple(raw.get("ports", ())),
        volumes=tuple(raw.get("volumes", ())),
        services=tuple(_service(s, raw["name"]) for s in raw.get("services", [])),
        hooks=tuple(raw.get("hooks", ())),
        healthcheck=parse_healthcheck(raw.get("healthcheck")),
    )


def check_options_schema(options: dict[str, Any], where: str) -> None:
    """The options table must itself be a valid JSON Schema (checked once per content)."""
    from composer import schema as schemas

    marker = schemas._marker(options, {"check_schema": "2020-12"})
    if marker is not None and marker.exists():
        return
    from jsonschema import Draft202012Validator, SchemaError

    try:
        Draft202012Validator.check_schema(_options_schema(options))
    except SchemaError as e:
        raise ComposerError(f"{where}: options: not a valid JSON Schema: {e.message}") from None
    if marker is not None:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()


def _service(raw: dict[str, Any], module: str) -> Service:
    return Service(
        name=raw["name"],
        command=tuple(raw["command"]),
        user=raw.get("user", "root"),
        priority=raw.get("priority", 500),
        autostart=raw.get("autostart", True),
        autorestart=raw.get("autorestart", True),
        startsecs=raw.get("startsecs", 1),
        delay=raw.get("delay", 0),
        directory=raw.get("directory", ""),
        environment=tuple(raw.get("environment", {}).items()),
        module=module,
    )


def _options_schema(options: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": options, "additionalProperties": False}


def resolve_options(module: Module, layer: LayerRef) -> dict[str, Any]:
    """The layer's options validated against the module's schema, defaults filled in."""
    validate(layer.options, _options_schema(module.options_schema), layer.file, f"{layer.field}.options")
    resolved = {
        name: copy.deepcopy(spec["default"])
        for name, spec in module.options_schema.items()
        if "default" in spec
    }
    resolved.update(copy.deepcopy(layer.options))
    return resolved


def load_modules(layers: Sequence[LayerRef], dirs: Sequence[Path]) -> dict[str, Module]:
    """Load every module the layers name; a missing one is an error naming the layer."""
    modules: dict[str, Module] = {}
    for layer in layers:
        folder = find_module(layer.module, dirs)
        if folder is None:
            searched = ", ".join(display(d) for d in dirs) or "(no layers/ folder found)"
            raise ComposerError(
                f"{layer.where}.module: no module {layer.module!r} (searched {searched})",
                hint="add layers/<name>/module.toml or pass --modules-dir",
            )
        modules[layer.module] = load_module(folder)
    return modules
