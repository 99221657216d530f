"""`composer import-feature`: a Dev Container Feature folder as a layer module.

A Feature is `devcontainer-feature.json` + `install.sh` (containers.dev/implementors/features).
The module keeps the Feature's folder as it is (under `feature/`) and runs its install.sh
through a small wrapper that gives it the environment the Features spec defines: one
variable per option, named by the spec's rule (below), from composer's COMPOSER_OPT_*.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from composer.errors import ComposerError

MANIFEST = "devcontainer-feature.json"
INSTALL = "install.sh"
FEATURE_DIR = "feature"  # the Feature's own folder inside the module
WRAPPER = "scripts/run-feature.sh"
MODULE_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")
OPTION_TYPES = ("string", "boolean")


@dataclass(frozen=True)
class FeatureOption:
    id: str  # as the Feature names it
    name: str  # the module option's name (lower case, kebab)
    schema: tuple[tuple[str, Any], ...]  # JSON Schema keywords of the module option

    @property
    def feature_env(self) -> str:
        return feature_env_name(self.id)

    @property
    def composer_env(self) -> str:
        return "COMPOSER_OPT_" + self.name.upper().replace("-", "_")


@dataclass(frozen=True)
class Feature:
    folder: Path
    name: str
    version: str
    description: str
    options: tuple[FeatureOption, ...]
    requires: tuple[str, ...]
    after: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    dependency_options: tuple[tuple[str, str], ...]  # (dependency, its options as JSON)


def feature_env_name(option_id: str) -> str:
    """The Features spec's rule for an option's variable (the reference CLI's getSafeId):
    non-word characters to `_`, leading digits and underscores to one `_`, upper case."""
    name = re.sub(r"[^\w]", "_", option_id, flags=re.ASCII)
    return re.sub(r"^[\d_]+", "_", name).upper()


def module_option_name(option_id: str) -> str:
    """installZsh -> install-zsh: composer option names are lower case."""
    kebab = re.sub(r"(?<=[a-z0-9])([A-Z])", r"-\1", option_id).lower()
    return re.sub(r"[^a-z0-9_-]+", "-", kebab).strip("-_")


def reference_name(ref: str) -> str:
    """A Feature reference as a module name: ghcr.io/devcontainers/features/node:1 -> node,
    ./local-thing -> local-thing."""
    last = ref.rstrip("/").rsplit("/", 1)[-1]
    return re.split(r"[:@]", last, maxsplit=1)[0].lower().replace("_", "-")


def load_feature(folder: Path) -> Feature:
    manifest = folder / MANIFEST
    if not folder.is_dir():
        raise ComposerError(f"{folder}: not a folder", "give the Feature's folder (with devcontainer-feature.json)")
    if not manifest.is_file():
        raise ComposerError(f"{manifest}: missing", "a Feature folder holds devcontainer-feature.json and install.sh")
    if not (folder / INSTALL).is_file():
        raise ComposerError(f"{folder / INSTALL}: missing",
                            "a Feature's entry point is install.sh next to devcontainer-feature.json")
    try:
        data = json.loads(manifest.read_text())
    except json.JSONDecodeError as e:
        raise ComposerError(f"{manifest}: line {e.lineno} column {e.colno}: {e.msg}",
                            "devcontainer-feature.json must be JSON (no comments)") from None
    if not isinstance(data, dict):
        raise ComposerError(f"{manifest}: not a JSON object")
    return parse_feature(folder, manifest, data)


def field(manifest: Path, data: dict[str, Any], key: str, kind: type, default: Any) -> Any:
    value = data.get(key, default)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ComposerError(f"{manifest}: {key}: expected {kind.__name__ if kind is not dict else 'an object'}"
                            f", got {json.dumps(value)}")
    return value


def parse_feature(folder: Path, manifest: Path, data: dict[str, Any]) -> Feature:
    feature_id = field(manifest, data, "id", str, "")
    if not feature_id:
        raise ComposerError(f"{manifest}: id: missing", "the spec requires an id (the Feature's folder name)")
    name = feature_id.lower().replace("_", "-")
    if not MODULE_NAME.match(name):
        raise ComposerError(f"{manifest}: id: {feature_id!r} cannot be a module name",
                            "module names are lower-case letters, digits and -")
    depends = field(manifest, data, "dependsOn", dict, {})
    installs_after = field(manifest, data, "installsAfter", list, [])
    env = field(manifest, data, "containerEnv", dict, {})
    for key, value in env.items():
        if not isinstance(value, str):
            raise ComposerError(f"{manifest}: containerEnv.{key}: expected a string, got {json.dumps(value)}")
    options = parse_options(manifest, field(manifest, data, "options", dict, {}))
    requires = tuple(reference_name(ref) for ref in depends)
    return Feature(
        folder=folder,
        name=name,
        version=str(field(manifest, data, "version", str, "0.0.0")),
        description=field(manifest, data, "description", str, "") or field(manifest, data, "name", str, name),
        options=options,
        requires=requires,
        after=tuple(n for n in (reference_name(r) for r in installs_after if isinstance(r, str))
                    if n not in requires),
        env=tuple(env.items()),
        dependency_options=tuple(
            (reference_name(ref), json.dumps(opts, sort_keys=True))
            for ref, opts in depends.items() if isinstance(opts, dict) and opts
        ),
    )


def parse_options(manifest: Path, raw: dict[str, Any]) -> tuple[FeatureOption, ...]:
    out: list[FeatureOption] = []
    seen: dict[str, str] = {}
    for option_id, spec in raw.items():
        where = f"{manifest}: options.{option_id}"
        if not isinstance(spec, dict):
            raise ComposerError(f"{where}: expected an object, got {json.dumps(spec)}")
        kind = spec.get("type")
        if kind not in OPTION_TYPES:
            raise ComposerError(f"{where}.type: {json.dumps(kind)} is not a Feature option type",
                                "the spec's types are \"string\" and \"boolean\"")
        name = module_option_name(option_id)
        if not name or not re.match(r"^[a-z]", name):
            raise ComposerError(f"{where}: the id cannot be a composer option name",
                                "option names start with a letter")
        if name in seen:
            raise ComposerError(f"{where}: becomes option {name!r}, as options.{seen[name]} does")
        seen[name] = option_id
        out.append(FeatureOption(option_id, name, option_schema(where, kind, spec)))
    return tuple(out)


def option_schema(where: str, kind: str, spec: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    schema: list[tuple[str, Any]] = [("type", kind)]
    if "enum" in spec:
        values = spec["enum"]
        if kind != "string" or not isinstance(values, list) or not values \
                or not all(isinstance(v, str) for v in values):
            raise ComposerError(f"{where}.enum: expected a list of strings, got {json.dumps(values)}")
        schema.append(("enum", values))
    if "proposals" in spec:
        # Proposals are suggestions: any string is allowed (the spec); keep them as examples.
        values = spec["proposals"]
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise ComposerError(f"{where}.proposals: expected a list of strings, got {json.dumps(values)}")
        schema.append(("examples", values))
    if "default" not in spec:
        raise ComposerError(f"{where}.default: missing", "the spec requires a default for every option")
    default = spec["default"]
    if not isinstance(default, bool if kind == "boolean" else str):
        raise ComposerError(f"{where}.default: {json.dumps(default)} is not a {kind}")
    if "enum" in spec and default not in spec["enum"]:
        raise ComposerError(f"{where}.default: {json.dumps(default)} is not in its enum")
    schema.append(("default", default))
    schema.append(("description", str(spec.get("description", "")) or "(no description)"))
    return tuple(schema)


# ---- writing the module ---------------------------------------------------------------


def write_module(feature: Feature, dest: Path, force: bool = False) -> Path:
    if dest.exists() and any(dest.iterdir()) and not force:
        raise ComposerError(f"{dest}: exists and is not empty", "pass --force to replace it, or -o another folder")
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(feature.folder, dest / FEATURE_DIR)
    (dest / "scripts").mkdir()
    wrapper = dest / WRAPPER
    wrapper.write_text(wrapper_script(feature))
    wrapper.chmod(0o755)
    (dest / "module.toml").write_text(module_toml(feature))
    (dest / "README.md").write_text(readme(feature))
    return dest


def toml_value(value: Any) -> str:
    # JSON strings, booleans and arrays of them are valid TOML (basic strings, same escapes).
    return json.dumps(value)


def module_toml(feature: Feature) -> str:
    lines = [
        f"# Imported from the Dev Container Feature in {FEATURE_DIR}/ by `composer import-feature`.",
        f"name = {toml_value(feature.name)}",
        f"version = {toml_value(feature.version)}",
        f"description = {toml_value(feature.description)}",
    ]
    if feature.requires:
        lines.append(f"requires = {toml_value(list(feature.requires))}")
    if feature.after:
        lines.append(f"after = {toml_value(list(feature.after))}")
    for option in feature.options:
        lines += ["", f"[options.{option.name}]"]
        lines += [f"{key} = {toml_value(value)}" for key, value in option.schema]
    if feature.env:
        lines += ["", "[env]"] + [f"{toml_value(k)} = {toml_value(v)}" for k, v in feature.env]
    lines += ["", "[[scripts]]", f"run = {toml_value(WRAPPER)}"]
    return "\n".join(lines) + "\n"


def wrapper_script(feature: Feature) -> str:
    exports = [
        f'{o.feature_env}="${{{o.composer_env}}}"; export {o.feature_env}' for o in feature.options
    ]
    return "\n".join([
        "#!/bin/sh",
        "# Generated by `composer import-feature`: run the Feature's install.sh as the",
        "# Features spec does (as root, from its folder), each option in the variable the",
        "# spec names (option id upper-cased, non-alphanumerics to _).",
        "set -eu",
        *exports,
        f'cd "$COMPOSER_MODULE_DIR/{FEATURE_DIR}"',
        # The module folder is mounted read-only: no chmod +x, so run a script without the
        # executable bit through its #! interpreter (the spec's default is sh).
        f'if [ -x ./{INSTALL} ]; then exec ./{INSTALL}; fi',
        f"interpreter=$(sed -n '1s/^#![[:space:]]*//p' ./{INSTALL})",
        f'exec ${{interpreter:-/bin/sh}} ./{INSTALL}',
        "",
    ])


def readme(feature: Feature) -> str:
    lines = [
        f"# {feature.name}",
        "",
        f"{feature.description}",
        "",
        f"Imported from a Dev Container Feature (`{FEATURE_DIR}/`, unchanged) by "
        "`composer import-feature`. `scripts/run-feature.sh` runs its install.sh with the options:",
        "",
        "| option | Feature variable | default |",
        "|---|---|---|",
    ]
    lines += [f"| `{o.name}` | `{o.feature_env}` | `{dict(o.schema)['default']}` |" for o in feature.options]
    if feature.dependency_options:
        lines += ["", "The Feature asks for its dependencies with these options; set them in the recipe:"]
        lines += [f"- `{dep}`: `{opts}`" for dep, opts in feature.dependency_options]
    return "\n".join(lines) + "\n"
