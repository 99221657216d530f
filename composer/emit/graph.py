"""The plan as a picture: Graphviz DOT text of the layers (base, modules, the common
parent's restacked modules, the reconcile layer, finalize), the modules' requires and
after edges, and what is known of each layer (cached/missing, size). Rendering the text
is pure; `render_image` runs Graphviz's `dot` to make SVG (or PNG)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from composer.errors import ComposerError
from composer.model import Layer, LayerKind, Plan
from composer.units import human_size

if TYPE_CHECKING:
    from composer.runner import Runner

# Colours a person tells apart (also in grey print): cached green, missing orange.
FILL = {"cached": "#c7e9c0", "missing": "#fdd0a2", "unknown": "#f0f0f0"}
SHARED_FILL = "#9ecae1"  # diff --graph: a layer built once, used by both recipes
OWN_FILL = "#fdae6b"  # diff --graph: a layer only this recipe has
FORMATS = ("svg", "dot", "png")


@dataclass(frozen=True)
class Known:
    """What the storage says about the plan's layers (empty: nothing known, --offline)."""

    cached: frozenset[str] | None = None
    sizes: Mapping[str, int] = field(default_factory=dict)  # key -> bytes of that layer


@dataclass(frozen=True)
class Shared:
    """diff --graph: the keys the other recipe has too, and its name."""

    keys: frozenset[str]
    other: str


def quote(text: str) -> str:
    return json.dumps(text)  # a DOT string: double quotes, backslash escapes


def node_id(layer: Layer) -> str:
    return f"L{layer.index}"


SIZE_UNITS = {"B": 1, "KB": 1000, "MB": 1000**2, "GB": 1000**3, "TB": 1000**4}


def parse_size(value: object) -> int | None:
    """buildah's image size: bytes (newer) or text such as "124 MB" (decimal units)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    match = re.fullmatch(r"\s*([0-9.]+)\s*([kKMGT]?B)\s*", value) if isinstance(value, str) else None
    if match is None:
        return None
    return int(float(match[1]) * SIZE_UNITS[match[2].upper()])


def state(layer: Layer, known: Known) -> str:
    if known.cached is None:
        return "unknown"
    return "cached" if layer.key in known.cached else "missing"


def label(layer: Layer, plan: Plan, known: Known) -> str:
    title = {LayerKind.BASE: f"base\n{layer.name}", LayerKind.RECONCILE: "reconcile",
             LayerKind.FINALIZE: f"finalize\n{plan.image_ref}"}.get(layer.kind, layer.name)
    parts = [title]
    if layer.kind is LayerKind.MODULE:
        step = next(s for s in plan.steps if s.key == layer.key)
        parts[0] = f"{layer.name} {step.module.version}"
        if step.module.requires:  # all of them, drawn or not (see module_edges)
            parts.append("requires " + ", ".join(step.module.requires))
    details = [layer.key[:12]]
    if layer.key in known.sizes:
        # Image sizes add up the layers below: a layer's own is the difference to its parent.
        own = known.sizes[layer.key] - known.sizes.get(layer.parent_key, 0)
        details.append(("+" if layer.parent_key else "") + human_size(max(own, 0)))
    status = state(layer, known)
    if status != "unknown":
        details.append(status)
    return "\n".join([*parts, "  ".join(details)])


def render_dot(plan: Plan, known: Known | None = None, shared: Shared | None = None) -> str:
    """The DOT text: stable for a plan (golden-testable, docs/graph.md)."""
    known = known or Known()
    layers = plan.layers()
    by_key = {layer.key: layer for layer in layers}
    lines = [
        f"digraph {quote(plan.recipe.name)} {{",
        "  rankdir=TB;",
        '  graph [fontname="Helvetica", fontsize=11, nodesep=0.25, ranksep=0.35,'
        f" label={quote(graph_title(plan, shared))}, labelloc=t];",
        '  node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=10];',
        '  edge [fontname="Helvetica", fontsize=9];',
    ]
    restacked = {s.key for s in plan.steps if s.restacked}
    for layer in layers:
        if layer.key in restacked:
            continue
        lines.append(f"  {node_id(layer)} [label={quote(label(layer, plan, known))}, "
                     f"fillcolor={quote(fill(layer, known, shared))}];")
    if restacked:
        parent = by_key.get(plan.reconcile.parent_key) if plan.reconcile else None
        lines.append("  subgraph cluster_restack {")
        lines.append(f"    label={quote('restacked on the common parent' + (f' ({parent.name})' if parent else ''))};")
        lines.append('    style="dashed,rounded"; color="#6a51a3"; fontcolor="#6a51a3";')
        for layer in layers:
            if layer.key in restacked:
                lines.append(f"    {node_id(layer)} [label={quote(label(layer, plan, known))}, "
                             f"fillcolor={quote(fill(layer, known, shared))}];")
        lines.append("  }")
    lines += stack_edges(plan, layers, by_key, restacked)
    lines += module_edges(plan, layers)
    lines += legend(known, shared)
    lines.append("}")
    return "\n".join(lines) + "\n"


def graph_title(plan: Plan, shared: Shared | None) -> str:
    title = f"{plan.recipe.name}:{plan.recipe.tag}  ({plan.recipe.layering} layering)"
    if shared is not None:
        title += f"\nblue: shared with {shared.other}; orange: only here"
    return title


def fill(layer: Layer, known: Known, shared: Shared | None) -> str:
    if shared is not None:
        return SHARED_FILL if layer.key in shared.keys else OWN_FILL
    return FILL[state(layer, known)]


def stack_edges(plan: Plan, layers: list[Layer], by_key: dict[str, Layer], restacked: set[str]) -> list[str]:
    """Each layer on its parent (solid): what the image is made of, in build order."""
    out = []
    for layer in layers:
        parent = by_key.get(layer.parent_key)
        if parent is None:
            continue
        style = ' [color="#6a51a3"]' if layer.key in restacked else ' [color="#525252", penwidth=1.5]'
        out.append(f"  {node_id(parent)} -> {node_id(layer)}{style};")
    if plan.reconcile is not None:
        # The reconcile layer stacks the restacked layers' changes: one edge from each.
        reconcile = next(layer for layer in layers if layer.kind is LayerKind.RECONCILE)
        for key in plan.reconcile.members:
            if key in by_key and by_key[key].key != reconcile.parent_key:
                out.append(f"  {node_id(by_key[key])} -> {node_id(reconcile)} [color=\"#6a51a3\", style=dotted];")
    return out


def module_edges(plan: Plan, layers: list[Layer]) -> list[str]:
    """requires (dashed blue) and after (dotted grey) between modules, dependency first,
    where the stack does not already show the order: a module below in the same stack is
    built first anyway, and drawing those edges too buries the picture in lines."""
    ids = {layer.name: node_id(layer) for layer in layers if layer.kind is LayerKind.MODULE}
    by_key = {layer.key: layer for layer in layers}
    out = []
    for step in plan.steps:
        below = ancestors(by_key, step.parent_key)
        me = ids[step.module.name]
        out += [f'  {ids[d]} -> {me} [style=dashed, color="#2171b5", constraint=false];'
                for d in step.module.requires if d in ids and d not in below]
        out += [f'  {ids[d]} -> {me} [style=dotted, color="#737373", constraint=false];'
                for d in step.module.after if d in ids and d not in below and d not in step.module.requires]
    return out


def ancestors(by_key: dict[str, Layer], key: str) -> set[str]:
    names: set[str] = set()
    while key in by_key:
        names.add(by_key[key].name)
        key = by_key[key].parent_key
    return names


def legend(known: Known, shared: Shared | None) -> list[str]:
    """What the colours and line styles mean, in a box of its own."""
    if shared is not None:
        fills = [("shared", SHARED_FILL), ("only here", OWN_FILL)]
    elif known.cached is not None:
        fills = [("cached", FILL["cached"]), ("missing", FILL["missing"])]
    else:
        fills = [("status unknown (--offline)", FILL["unknown"])]
    out = ["  subgraph cluster_legend {", '    label="legend"; style=rounded; color="#bdbdbd"; fontsize=10;',
           '    node [fontsize=9, width=0.3, height=0.25];']
    out += [f"    legend_{i} [label={quote(text)}, fillcolor={quote(colour)}];"
            for i, (text, colour) in enumerate(fills)]
    out += ['    legend_a [label="A", fillcolor="white"]; legend_b [label="B", fillcolor="white"];',
            '    legend_c [label="C", fillcolor="white"]; legend_d [label="D", fillcolor="white"];',
            '    legend_a -> legend_b [label=" B built on A", color="#525252", penwidth=1.5];',
            '    legend_c -> legend_d [label=" D requires C", style=dashed, color="#2171b5"];',
            '    legend_c -> legend_b [label=" B after C", style=dotted, color="#737373"];',
            "  }"]
    return out


def output_format(path: Path) -> str:
    suffix = path.suffix.lstrip(".").lower()
    if suffix not in FORMATS:
        raise ComposerError(f"{path}: cannot draw a .{suffix or '(no suffix)'} file",
                            "name the output FILE.svg, FILE.png or FILE.dot")
    return suffix


def write_graph(runner: Runner, dot_text: str, dest: Path) -> None:
    """dest.dot is the text; dest.svg/.png is what Graphviz's dot draws of it."""
    fmt = output_format(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "dot":
        dest.write_text(dot_text)
        return
    source = dest.with_name(dest.name + ".dot.tmp")
    source.write_text(dot_text)
    try:
        runner.run(["dot", f"-T{fmt}", "-o", str(dest), str(source)])
    finally:
        source.unlink()
