"""What modules there are and what each one offers: `composer modules`, `show`, docs/modules.md."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from composer.model import Module, option_value_text
from composer.modules import available_modules, load_module
from composer.recipe import PROJECT_LAYERS
from composer.schema import display

PROJECT_ROOT = PROJECT_LAYERS.parent


def folder_text(folder: Path | str) -> str:
    """A module folder as shown to a person: relative to the project for shipped modules
    (so the generated docs read the same on every machine), else as display() puts it.
    JSON output has the absolute path (summary, details): one meaning for every module,
    whatever the current folder."""
    try:
        return str(Path(folder).resolve().relative_to(PROJECT_ROOT))
    except ValueError:
        return display(Path(folder))


def summary(module: Module, shadowed: Sequence[Path] = ()) -> dict[str, Any]:
    """One row of `composer modules`."""
    families = module.families()
    return {
        "name": module.name,
        "version": module.version,
        "description": module.description,
        "families": None if families is None else [str(f) for f in families],
        "folder": str(module.path.resolve()),
        "shadows": [str(f.resolve()) for f in shadowed],
    }


def catalog(dirs: Sequence[Path]) -> list[tuple[Module, list[Path]]]:
    """Every module dirs hold (the one used) with the folders it shadows, by name."""
    return [(load_module(folders[0]), folders[1:]) for folders in available_modules(dirs).values()]


def option_info(name: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    """An option's type, default, description, allowed values and limits, as a person reads them."""
    items = spec.get("items", {})
    kind = spec.get("type", "any")
    if kind == "array" and items.get("type"):
        kind = f"array of {items['type']}"
    allowed = spec.get("enum", items.get("enum"))
    limits = []
    if "minimum" in spec or "maximum" in spec:
        limits.append(f"{spec.get('minimum', '')}..{spec.get('maximum', '')}")
    pattern = spec.get("pattern", items.get("pattern"))
    if pattern:
        limits.append(f"matches {pattern}")
    # A table, or a list of tables: the keys each may have (the users of `users`).
    table = items if kind == "array of object" else spec
    required = set(table.get("required", ()))
    return {
        "name": name,
        "type": kind if isinstance(kind, str) else " or ".join(kind),
        "default": spec.get("default"),
        "description": spec.get("description", ""),
        "allowed": allowed,
        "limits": limits,
        "fields": [option_info(key, sub) | {"required": key in required}
                   for key, sub in table.get("properties", {}).items()],
    }


def field_lines(fields: Sequence[Mapping[str, Any]], indent: str) -> list[str]:
    """The keys of a table option (or of each item of a list of tables), one line each."""
    lines = []
    for f in fields:
        default = "required" if f["required"] else "no default" if f["default"] is None \
            else f"default {value_text(f['default'])}"
        allowed = f"; one of {', '.join(value_text(v) for v in f['allowed'])}" if f["allowed"] is not None else ""
        lines.append(f"{indent}.{f['name']} ({f['type']}, {default}{allowed}): {f['description']}".rstrip(": "))
        lines += field_lines(f["fields"], indent + "  ")
    return lines


def details(module: Module, shadowed: Sequence[Path] = ()) -> dict[str, Any]:
    """Everything `composer show` tells about a module."""
    return {
        **summary(module, shadowed),
        "requires": list(module.requires),
        "after": list(module.after),
        "options": [option_info(n, s) for n, s in module.options_schema.items()],
        "packages": {str(f): list(p) for f, p in module.packages},
        "option_packages": module.option_packages,
        "files": [{"src": f.src, "dest": f.dest} for f in module.files],
        "scripts": [s.run for s in module.scripts],
        "env": dict(module.env),
        "services": [{"name": s.name, "command": list(s.command), "user": s.user, "priority": s.priority}
                     for s in module.services],
        "ports": list(module.ports),
        "volumes": list(module.volumes),
        "hooks": list(module.hooks),
        "credentials": [
            {"user": c.user, "file": c.file, "format": str(c.format),
             "secrets": sorted({*dict(c.secrets).values(), *([c.secret] if c.secret else [])})}
            for c in module.credentials
        ],
    }


def value_text(value: Any) -> str:
    return json.dumps(value) if isinstance(value, (dict, list, str)) else option_value_text(value)


def summary_lines(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """`composer modules` as text: one line per module, then where each comes from."""
    width = max((len(r["name"]) for r in rows), default=0)
    lines = []
    for r in rows:
        families = ",".join(r["families"]) if r["families"] is not None else "any"
        lines.append(f"{r['name']:<{width}}  {r['version']:<7} {families:<12} {r['description']}")
        lines.append(f"{'':<{width}}  from {folder_text(r['folder'])}"
                     + (f" (shadows {', '.join(map(folder_text, r['shadows']))})" if r["shadows"] else ""))
    return lines


def detail_lines(info: Mapping[str, Any]) -> list[str]:
    """`composer show MODULE` as text."""
    families = ", ".join(info["families"]) if info["families"] is not None else "any (no packages)"
    lines = [f"{info['name']} {info['version']} — {info['description']}",
             f"  folder:    {folder_text(info['folder'])}", f"  families:  {families}"]
    if info["shadows"]:
        lines.append(f"  shadows:   {', '.join(map(folder_text, info['shadows']))}")
    for key in ("requires", "after", "ports", "volumes", "hooks", "scripts"):
        if info[key]:
            lines.append(f"  {key + ':':<10} {', '.join(info[key])}")
    if info["options"]:
        lines.append("  options:")
        for o in info["options"]:
            default = "no default" if o["default"] is None else f"default {value_text(o['default'])}"
            lines.append(f"    {o['name']} ({o['type']}, {default}): {o['description']}")
            if o["allowed"] is not None:
                lines.append(f"      allowed: {', '.join(value_text(v) for v in o['allowed'])}")
            if o["limits"]:
                lines.append(f"      {'; '.join(o['limits'])}")
            lines += field_lines(o["fields"], "      ")
    for family, packages in info["packages"].items():
        lines.append(f"  packages ({family}): {' '.join(packages)}")
    for option, by_value in info["option_packages"].items():
        for value, by_family in by_value.items():
            for family, packages in by_family.items():
                lines.append(f"  packages when {option} has {value} ({family}): {' '.join(packages)}")
    for f in info["files"]:
        lines.append(f"  file:      {f['src']} -> {f['dest']}")
    for name, value in info["env"].items():
        lines.append(f"  env:       {name}={value}")
    for s in info["services"]:
        lines.append(f"  service:   {s['name']} (as {s['user']}, priority {s['priority']}): {' '.join(s['command'])}")
    for c in info["credentials"]:
        lines.append(f"  credential: {c['file']} for {c['user'] or '(option)'} from {', '.join(c['secrets'])}")
    return lines


def markdown(modules: Sequence[Module]) -> str:
    """docs/modules.md: every module with its options, from the module files alone."""
    out = [
        "# Layer modules",
        "",
        "Generated from `layers/*/module.toml` by `composer modules --markdown > docs/modules.md`;",
        "do not edit by hand (a unit test fails when this page is stale).",
        "`composer show MODULE` prints the same for any module a recipe can see.",
        "",
        "| module | version | families | description |",
        "|---|---|---|---|",
    ]
    for m in modules:
        families = ", ".join(str(f) for f in m.families() or ()) or "any"
        out.append(f"| [{m.name}](#{m.name}) | {m.version} | {families} | {_cell(m.description)} |")
    for m in modules:
        info = details(m)
        out += ["", f"## {m.name}", "", f"{m.description}", ""]
        readme = m.path / "README.md"
        facts = [f"version {m.version}", f"folder `{folder_text(info['folder'])}`"]
        if readme.is_file():
            facts.append(f"[README]({Path('..') / folder_text(info['folder']) / 'README.md'})")
        out.append("- " + ", ".join(facts))
        for key, label in (("requires", "requires"), ("after", "after"), ("ports", "ports"),
                           ("volumes", "volumes"), ("hooks", "start-up hooks")):
            if info[key]:
                out.append(f"- {label}: {', '.join(f'`{v}`' for v in info[key])}")
        if info["services"]:
            names = ", ".join(f"`{s['name']}`" for s in info["services"])
            out.append(f"- services: {names}")
        if info["credentials"]:
            secrets = sorted({s for c in info["credentials"] for s in c["secrets"]})
            out.append(f"- credentials from secrets: {', '.join(f'`{s}`' for s in secrets)}")
        for family, packages in info["packages"].items():
            out.append(f"- packages ({family}): {', '.join(f'`{p}`' for p in packages)}")
        for option, by_value in info["option_packages"].items():
            values = ", ".join(f"`{v}`" for v in by_value)
            out.append(f"- option `{option}` adds packages for: {values}")
        if info["options"]:
            out += ["", "| option | type | default | description |", "|---|---|---|---|"]
            for o in info["options"]:
                default = "none" if o["default"] is None else f"`{value_text(o['default'])}`"
                notes = [o["description"]]
                if o["allowed"] is not None:
                    notes.append("one of " + ", ".join(f"`{value_text(v)}`" for v in o["allowed"]))
                notes += [f"`{limit}`" for limit in o["limits"]]
                if o["fields"]:
                    notes.append("keys: " + ", ".join(
                        f"`{f['name']}` ({f['type']}{', required' if f['required'] else ''})" for f in o["fields"]))
                out.append(f"| `{o['name']}` | {o['type']} | {_cell(default)} | {_cell('; '.join(notes))} |")
    return "\n".join(out) + "\n"


def _cell(text: str) -> str:
    """text safe inside a Markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")
