"""Find and load layer modules (layers/<name>/module.toml) and resolve their options."""

from __future__ import annotations

import copy
import dataclasses
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from composer.errors import ComposerError, did_you_mean
from composer.model import Credential, LayerRef, Module, Service, from_raw, option_value_text
from composer.recipe import read_toml
from composer.schema import anchored, display, load_schema, validate


def find_module(name: str, dirs: Sequence[Path]) -> Path | None:
    """The folder of module name: the first of dirs that has name/module.toml."""
    folders = module_folders(name, dirs)
    return folders[0] if folders else None


def module_folders(name: str, dirs: Sequence[Path]) -> list[Path]:
    """Every folder of dirs that holds module name, in search order (the first is used);
    a folder named twice (--modules-dir layers, and the project's) counts once."""
    found: dict[Path, Path] = {}
    for d in dirs:
        # exists(), not is_file(): a FIFO there is refused by name, not "no module"
        if (d / name / "module.toml").exists():
            found.setdefault((d / name).resolve(), d / name)
    return list(found.values())


def shadowing(layers: Sequence[LayerRef], dirs: Sequence[Path]) -> list[str]:
    """One line per module of the layers that more than one folder of dirs holds."""
    lines = []
    for layer in layers:
        folders = module_folders(layer.module, dirs)
        if len(folders) > 1:
            lines.append(shadow_text(layer.module, folders, f"{layer.where}.module: "))
    return lines


def shadow_text(name: str, folders: Sequence[Path], where: str = "") -> str:
    others = ", ".join(display(f.parent) for f in folders[1:])
    return f"{where}module {name!r} is in {display(folders[0].parent)} and {others}; {display(folders[0])} is used"


def available_modules(dirs: Sequence[Path]) -> dict[str, list[Path]]:
    """Every module name dirs hold -> its folders in search order (the first is used)."""
    names = {toml.parent.name for d in dirs if d.is_dir() for toml in d.glob("*/module.toml")}
    return {name: module_folders(name, dirs) for name in sorted(names)}


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
    check_option_keywords(options, where)
    check_option_env_names(options, where)
    check_options_schema(options, where)
    check_option_defaults(options, where)
    check_option_packages(raw.get("option_packages", {}), options, where)
    name = raw["name"]
    table = {k: v for k, v in raw.items() if k not in ("options", "services", "credentials")}
    module = from_raw(
        Module, table, path=folder, options_schema=options,
        services=tuple(from_raw(Service, s, module=name) for s in raw.get("services", [])),
        credentials=tuple(from_raw(Credential, c, module=name) for c in raw.get("credentials", [])),
    )
    # A placeholder must name a declared option: found here, not when a recipe uses it.
    for field_name in OPTION_FIELDS:
        context = f"{where}: {field_name}"
        _walk(getattr(module, field_name), lambda text, c=context: _check_names(text, options, c))  # type: ignore[misc]
    return module


# The declarative fields whose strings may say {options.NAME}; the value is put in at
# plan time, so the result is in the key document and the image config alike.
OPTION_FIELDS = ("services", "ports", "volumes", "files", "env", "healthcheck", "credentials", "clean")
PLACEHOLDER = re.compile(r"\{options\.([A-Za-z0-9_-]+)\}")


def _check_names(text: str, options: Mapping[str, Any], where: str) -> str:
    for name in PLACEHOLDER.findall(text):
        if name not in options:
            raise ComposerError(f"{where}: {{options.{name}}}: no such option "
                                f"(options: {', '.join(sorted(options)) or 'none'})")
    return text


def substitute(text: str, options: Mapping[str, Any], where: str) -> str:
    """text with each {options.NAME} replaced by that option's (scalar) value."""

    def one(match: re.Match[str]) -> str:
        value = options.get(match.group(1))
        if value is None or isinstance(value, (dict, list)):
            raise ComposerError(f"{where}: {match.group(0)}: the option must have a string, number "
                                f"or boolean value (it has {value!r})")
        return option_value_text(value)

    return PLACEHOLDER.sub(one, text)


def _walk(value: Any, fn: Callable[[str], str]) -> Any:
    """value with fn applied to every string in it (tuples and dataclasses rebuilt)."""
    if isinstance(value, str):
        return fn(value)
    if isinstance(value, tuple):
        return tuple(_walk(v, fn) for v in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changes = {f.name: _walk(getattr(value, f.name), fn) for f in dataclasses.fields(value)}
        return dataclasses.replace(value, **changes)
    return value


def with_options(module: Module, options: Mapping[str, Any], where: str) -> Module:
    """The module with its options put into its declarative fields (see OPTION_FIELDS).
    A credential whose user comes out empty is dropped: the option turned it off."""
    changes = {name: _walk(getattr(module, name), lambda text: substitute(text, options, where))
               for name in OPTION_FIELDS}
    changes["credentials"] = tuple(c for c in changes["credentials"] if c.user)
    for i, credential in enumerate(changes["credentials"]):
        check_credential(credential, f"{display(module.path / 'module.toml')}: credentials[{i}]", where)
    return dataclasses.replace(module, **changes)


USER_NAME = re.compile(r"[a-z_][a-z0-9_-]{0,31}\Z")
SECRET_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# Relative to the user's home (no `..` anywhere), or under /run/composer/.
CREDENTIAL_FILE = re.compile(r"(?!.*(^|/)\.\.(/|$))([A-Za-z0-9._-][^\n\t]*|/run/composer/[^\n\t]+)\Z")


def check_credential(credential: Credential, where: str, options_from: str) -> None:
    """A credential as the start-up hook will use it, with its options put in: the schema
    checked the text with {options.NAME} in it, and an option's value could make a user
    of `../root` or a file of `../../etc/shadow`."""
    checks = [("user", credential.user, USER_NAME, "a user name"),
              ("file", credential.file, CREDENTIAL_FILE,
               "a file in the user's home (no '..') or under /run/composer/"),
              *(("secret", credential.secret, SECRET_NAME, "a secret name") for _ in [0] if credential.secret),
              *((f"secrets.{k}", v, SECRET_NAME, "a secret name") for k, v in credential.secrets)]
    for field_name, value, pattern, what in checks:
        if not pattern.match(value):
            raise ComposerError(f"{where}.{field_name}: {value!r} (with the options of {options_from} put in) "
                                f"is not {what}", hint="check the option that fills it")


def check_option_packages(table: dict[str, Any], options: dict[str, Any], where: str) -> None:
    """option_packages names real options, and for an enum only values it allows."""
    for option, by_value in table.items():
        if option not in options:
            raise ComposerError(f"{where}: option_packages.{option}: no such option")
        spec = options[option]
        allowed = spec.get("items", {}).get("enum", spec.get("enum"))
        if allowed is None:
            continue
        names = {option_value_text(v) for v in allowed}
        for value in by_value:
            if value not in names:
                raise ComposerError(
                    f"{where}: option_packages.{option}.{value}: not a value of option {option!r} "
                    f"({', '.join(sorted(names))})"
                )


def check_options_schema(options: dict[str, Any], where: str) -> None:
    """The options table must itself be a valid JSON Schema (checked once per content)."""
    from composer import schema as schemas

    marker = schemas._marker(options, {"check_schema": "2020-12"})
    if marker is not None and marker.exists():
        return
    from jsonschema import Draft202012Validator, SchemaError

    for name, spec in options.items():  # one at a time: the message names the option
        try:
            Draft202012Validator.check_schema(_options_schema({name: spec}))
        except SchemaError as e:
            raise ComposerError(f"{where}: options.{name}: not a valid JSON Schema: {e.message}") from None
    if marker is not None:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()


# The JSON Schema keywords an option table (and each schema nested in it) may hold, plus
# composer's own x- keywords (composer/schema). Anything else is refused: TOML puts a key
# written after `[options.NAME]` into that table, so a stray `ports = [...]` there would
# otherwise be dropped without a word (docs/format.md, "Options").
OPTION_KEYWORDS = frozenset({
    "type", "enum", "const", "default", "description", "title", "examples", "deprecated", "$comment",
    "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf",
    "minLength", "maxLength", "pattern", "format",
    "items", "prefixItems", "minItems", "maxItems", "uniqueItems", "contains",
    "properties", "required", "additionalProperties", "propertyNames", "patternProperties",
    "minProperties", "maxProperties", "oneOf", "anyOf", "allOf", "not",
    "x-unique-keys", "x-names-of",
})
SUBSCHEMA_KEYS = ("items", "contains", "additionalProperties", "propertyNames", "not")
SUBSCHEMA_MAPS = ("properties", "patternProperties")
SUBSCHEMA_LISTS = ("prefixItems", "oneOf", "anyOf", "allOf")


def check_option_keywords(options: dict[str, Any], where: str) -> None:
    """Each option table holds only OPTION_KEYWORDS, nested schemas too."""
    def walk(spec: Any, field_name: str) -> None:
        if not isinstance(spec, dict):
            return
        for key in spec:
            if key not in OPTION_KEYWORDS:
                raise ComposerError(
                    f"{where}: {field_name}.{key}: not a keyword of an option's schema",
                    hint="a key written after a [table] belongs to that table: move it above the first "
                    "table (docs/format.md lists the keywords an option takes)")
        for key in SUBSCHEMA_KEYS:
            walk(spec.get(key), f"{field_name}.{key}")
        for key in SUBSCHEMA_MAPS:
            for sub, sub_spec in (spec.get(key) or {}).items():
                walk(sub_spec, f"{field_name}.{key}.{sub}")
        for key in SUBSCHEMA_LISTS:
            for i, sub_spec in enumerate(spec.get(key) or []):
                walk(sub_spec, f"{field_name}.{key}[{i}]")

    for name, spec in options.items():
        walk(spec, f"options.{name}")


def check_option_env_names(options: dict[str, Any], where: str) -> None:
    """Scripts see each option as COMPOSER_OPT_<NAME> ('-' becomes '_'): two names that
    meet there would hand a script only one of the values."""
    seen: dict[str, str] = {}
    for name in options:
        key = "COMPOSER_OPT_" + name.upper().replace("-", "_")
        other = seen.setdefault(key, name)
        if other != name:
            raise ComposerError(
                f"{where}: options.{name}: scripts see it as {key}, as they see options.{other}",
                hint="rename one of the two options")


def check_option_defaults(options: dict[str, Any], where: str) -> None:
    """Each option's default passes the option's own schema (a wrong default would
    otherwise reach every recipe that leaves the option out)."""
    for name, spec in options.items():
        if "default" in spec:
            validate(spec["default"], anchored(spec), where, f"options.{name}.default")


def _options_schema(options: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": anchored(options), "additionalProperties": False}


def resolve_options(module: Module, layer: LayerRef) -> dict[str, Any]:
    """The layer's options validated against the module's schema, defaults filled in."""
    validate(layer.options, _options_schema(module.options_schema), layer.file, f"{layer.field}.options")
    _check_plain_data(layer.options, f"{layer.where}.options")
    resolved = {
        name: copy.deepcopy(spec["default"])
        for name, spec in module.options_schema.items()
        if "default" in spec
    }
    resolved.update(copy.deepcopy(layer.options))
    return resolved


def _check_plain_data(value: Any, where: str) -> None:
    """Options become JSON (key documents, options files): TOML dates and times do not."""
    if isinstance(value, dict):
        for k, v in value.items():
            _check_plain_data(v, f"{where}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _check_plain_data(v, f"{where}[{i}]")
    elif not isinstance(value, (str, int, float, bool)):
        raise ComposerError(f"{where}: a TOML {type(value).__name__} is not an option value; "
                            "write it as a string")


def load_modules(layers: Sequence[LayerRef], dirs: Sequence[Path]) -> dict[str, Module]:
    """Load every module the layers name; a missing one is an error naming the layer."""
    modules: dict[str, Module] = {}
    for layer in layers:
        folder = find_module(layer.module, dirs)
        if folder is None:
            searched = ", ".join(display(d) for d in dirs) or "(no layers/ folder found)"
            known = [p.parent.name for d in dirs for p in d.glob("*/module.toml")]
            raise ComposerError(
                f"{layer.module_where}: no module {layer.module!r}{did_you_mean(layer.module, known)} "
                f"(searched {searched})",
                hint="add layers/<name>/module.toml or pass --modules-dir",
            )
        modules[layer.module] = load_module(folder)
    return modules
