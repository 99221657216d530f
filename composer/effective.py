"""What a recipe really is: the merged recipe with the file that set each value, and how
two recipes' plans compare (shared layers, the first divergent one and why). Pure."""

from __future__ import annotations

import json
import re
from typing import Any

from composer.explain import change_text, field_changes
from composer.model import Layer, LayerKind, Plan, Recipe, display_name

BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def effective_document(recipe: Recipe) -> dict[str, Any]:
    """The merged recipe as data and, per value path, the file that set it."""
    return {"recipe": recipe.effective, "origins": dict(sorted(recipe.origins.items()))}


def render_effective(recipe: Recipe) -> str:
    """The merged recipe as TOML, each value followed by `# <file that set it>`."""
    data = recipe.effective
    lines = [f"# {recipe.name}: the recipe after extends, remove, replace, only and unset"]
    plain = {k: v for k, v in data.items() if not isinstance(v, dict) and k not in ("layers", "secrets")}
    lines += _values(recipe, plain, ())
    for key, value in data.items():
        if isinstance(value, dict):
            lines += _table(recipe, value, (key,))
    for entry in data.get("layers", []):
        module = entry["module"]
        lines += ["", "[[layers]]", _line(recipe, "module", module, ("layers", module))]
        if entry.get("options"):
            lines += _table(recipe, entry["options"], ("layers", module, "options"), header="layers.options")
    for secret in data.get("secrets", []):
        lines += ["", "[[secrets]]"]
        lines += [_line(recipe, k, v, ("secrets", secret["name"])) for k, v in secret.items()]
    return "\n".join(lines) + "\n"


def _table(recipe: Recipe, table: dict[str, Any], path: tuple[str, ...], header: str = "") -> list[str]:
    plain = {k: v for k, v in table.items() if not (isinstance(v, dict) and v)}
    lines = []
    if plain:  # a table holding only tables needs no header of its own
        lines = ["", f"[{header or '.'.join(_key(p) for p in path)}]", *_values(recipe, plain, path)]
    for key, value in table.items():
        if isinstance(value, dict) and value:
            sub = f"{header}.{_key(key)}" if header else ""
            lines += _table(recipe, value, (*path, key), header=sub)
    return lines


def _values(recipe: Recipe, table: dict[str, Any], path: tuple[str, ...]) -> list[str]:
    return [_line(recipe, key, value, (*path, key)) for key, value in table.items()]


def _line(recipe: Recipe, key: str, value: Any, path: tuple[str, ...]) -> str:
    return f"{_key(key)} = {toml_value(value)}  # {recipe.origin(*path)}"


def _key(key: str) -> str:
    return key if BARE_KEY.match(key) else json.dumps(key)


def toml_value(value: Any) -> str:
    """A TOML value on one line (inline tables and arrays)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, dict):
        inner = ", ".join(f"{_key(k)} = {toml_value(v)}" for k, v in value.items())
        return f"{{ {inner} }}" if inner else "{}"
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(str(value))


# ---- comparing two plans ----------------------------------------------------------------


def _match(layer: Layer) -> str:
    """Layers of the same role in two plans: the base, the reconcile layer and finalize
    by kind, a module by name."""
    return layer.name if layer.kind is LayerKind.MODULE else f"({layer.kind})"


# The shape of `composer diff --json` (docs/teams.md); raised when a field changes meaning.
DIFF_FORMAT = 1


def diff_document(a: Plan, b: Plan) -> dict[str, Any]:
    """Which of A's layers B shares (same cache key: built once, used by both), A's first
    layer B does not share and what differs, and the modules only one of them has. Data
    only: render_diff words it."""
    b_layers = b.layers()
    b_keys = {layer.key for layer in b_layers}
    b_by_name = {_match(layer): layer for layer in b_layers}
    a_layers = a.layers()
    shared = [layer.label for layer in a_layers if layer.key in b_keys]
    first = next((layer for layer in a_layers if layer.key not in b_keys), None)
    divergent = None
    if first is not None:
        other = b_by_name.get(_match(first))
        divergent = {
            "index": first.index, "layer": first.label, "key": first.key,
            "b_key": None if other is None else other.key,
            "changes": [] if other is None else field_changes(other.key_document, first.key_document),
            "parent": {"a": first.parent_key or None, "b": None if other is None else other.parent_key or None,
                       "a_in_b": not first.parent_key or first.parent_key in b_keys},
        }
    a_modules = [s.module.name for s in a.steps]
    b_modules = [s.module.name for s in b.steps]
    options: dict[str, dict[str, dict[str, Any]]] = {}
    for step in a.steps:
        other_step = next((s for s in b.steps if s.module.name == step.module.name), None)
        if other_step is not None and other_step.options != step.options:
            options[step.module.name] = {
                k: {"b": other_step.options.get(k), "a": step.options.get(k)}
                for k in sorted(set(step.options) | set(other_step.options))
                if step.options.get(k) != other_step.options.get(k)
            }
    return {
        "format": DIFF_FORMAT,
        "a": {"recipe": display_name(a.recipe.path), "image": a.image_ref, "layers": len(a_layers)},
        "b": {"recipe": display_name(b.recipe.path), "image": b.image_ref, "layers": len(b_layers)},
        "shared": shared,
        "first_divergent": divergent,
        "only_in_a": [m for m in a_modules if m not in b_modules],
        "only_in_b": [m for m in b_modules if m not in a_modules],
        "options": options,
    }


def divergence_lines(first: dict[str, Any]) -> list[str]:
    """Why A's first divergent layer is not one of B's, in words."""
    if first["b_key"] is None:
        return [f"{first['layer']} is not in B"]
    lines = [change_text(change) for change in first["changes"]]
    parent = first["parent"]
    if not parent["a_in_b"]:
        lines.append("it is built on a layer B does not have")
    elif parent["a"] != parent["b"]:
        lines.append("it is built on another of B's layers than in B")
    return lines or ["its cache key differs"]


def shared_line(a: Plan, b: Plan) -> str:
    """'shares 14 of its 18 layers with recipes/turboflow.toml; the first it builds anew:
    [5] vnc-desktop': what a child recipe costs next to its parent's build."""
    document = diff_document(a, b)
    line = (f"shares {len(document['shared'])} of its {document['a']['layers']} layers with "
            f"{document['b']['recipe']}")
    first = document["first_divergent"]
    return line + (f"; the first it builds anew: [{first['index']}] {first['layer']}" if first else "")


def render_diff(document: dict[str, Any]) -> list[str]:
    a, b = document["a"], document["b"]
    lines = [f"A {a['recipe']} ({a['image']}, {a['layers']} layers)",
             f"B {b['recipe']} ({b['image']}, {b['layers']} layers)",
             f"shared: {len(document['shared'])} of A's {a['layers']} layers"
             + (f" ({', '.join(document['shared'])})" if document["shared"] else "")]
    first = document["first_divergent"]
    if first is None:
        lines.append("A has no layer B lacks")
    else:
        lines.append(f"first divergent: [{first['index']}] {first['layer']}")
        lines += [f"      {reason}" for reason in divergence_lines(first)]
    for key, label in (("only_in_a", "only in A"), ("only_in_b", "only in B")):
        if document[key]:
            lines.append(f"{label}: {', '.join(document[key])}")
    for module, changes in document["options"].items():
        lines.append(f"options of {module} (B -> A): "
                     + "; ".join(f"{k}: {json.dumps(v['b'])} -> {json.dumps(v['a'])}" for k, v in changes.items()))
    return lines
