"""How long each layer took to build, kept per layer name (the last build of it), and what a
fanned-out build (composer job --fan-out, docs/build-job.md) would take from those times:
the common parent, then the restacked modules side by side on N nodes, then the final
stage (reconcile and finalize; pulling and stacking the layers is not measured here)."""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from composer.model import LayerKind, Plan

FOLDER = "timings"
SAFE = re.compile(r"[^A-Za-z0-9._-]")


def record(cache_dir: Path, label: str, key: str, seconds: float) -> None:
    """Keep the time a layer took to build, as the last for its name (atomically: restacked
    modules are built from several threads)."""
    folder = cache_dir / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    data = json.dumps({"label": label, "key": key, "seconds": round(seconds, 3)}).encode()
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".timing.")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, folder / f"{SAFE.sub('_', label)}.json")


def load(cache_dir: Path) -> dict[str, float]:
    """label -> seconds of its last measured build (unreadable files are skipped)."""
    out: dict[str, float] = {}
    folder = cache_dir / FOLDER
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else ():
        try:
            document = json.loads(path.read_text())
            out[str(document["label"])] = float(document["seconds"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return out


def spread(times: Sequence[float], nodes: int) -> float:
    """The wall time of independent jobs on `nodes` machines, longest first onto the least
    loaded (what a Job's parallelism does, near enough)."""
    loads = [0.0] * max(nodes, 1)
    for t in sorted(times, reverse=True):
        loads[loads.index(min(loads))] += t
    return max(loads)


def cluster_estimate(plan: Plan, times: Mapping[str, float], nodes: Sequence[int] = (1, 2, 4)) -> dict[str, Any]:
    """The critical path of a fanned-out build against one machine, from measured times.

    The parent stage is every layer up to the common parent; the module stage the restacked
    modules, spread over N nodes (N = 1: one after the other, as `--jobs 1`); the final
    stage reconcile and finalize. Layers never built here have no time: they are listed as
    unmeasured and counted as 0."""
    layers = plan.layers()
    parent = [layer for layer in layers if layer.kind in (LayerKind.BASE, LayerKind.MODULE) and not layer.restacked]
    modules = [layer for layer in layers if layer.restacked]
    final = [layer for layer in layers if layer.kind in (LayerKind.RECONCILE, LayerKind.FINALIZE)]
    unmeasured = [layer.label for layer in layers if layer.label not in times]

    def total(group: Sequence[Any]) -> float:
        return sum(times.get(layer.label, 0.0) for layer in group)

    module_times = [times.get(layer.label, 0.0) for layer in modules]
    slowest = max(modules, key=lambda layer: times.get(layer.label, 0.0), default=None)
    one_machine = total(parent) + sum(module_times) + total(final)
    counts = sorted({*[n for n in nodes if n < len(modules)], len(modules)}) if modules else [1]
    return {
        "parent": {"layers": [layer.label for layer in parent], "seconds": round(total(parent), 1)},
        "modules": {"layers": {layer.label: times.get(layer.label) for layer in modules},
                    "slowest": slowest.label if slowest else None},
        "final": {"layers": [layer.label for layer in final], "seconds": round(total(final), 1)},
        "one_machine_seconds": round(one_machine, 1),
        "fan_out": [{"nodes": n, "seconds": round(total(parent) + spread(module_times, n) + total(final), 1)}
                    for n in counts],
        "unmeasured": unmeasured,
    }


def estimate_lines(estimate: Mapping[str, Any]) -> list[str]:
    """The estimate as a person reads it."""
    modules = estimate["modules"]
    one = estimate["one_machine_seconds"]
    lines = [f"parent stage: {estimate['parent']['seconds']:.0f} s ({', '.join(estimate['parent']['layers'])})"]
    if modules["layers"]:
        slowest = modules["slowest"]
        lines.append(f"module stage: {len(modules['layers'])} restacked modules, slowest {slowest} "
                     f"{modules['layers'][slowest] or 0:.0f} s")
    lines.append(f"final stage: {estimate['final']['seconds']:.0f} s ({', '.join(estimate['final']['layers'])}; "
                 "pulling and stacking not counted)")
    lines.append(f"one machine, one layer at a time: {one:.0f} s")
    for row in estimate["fan_out"]:
        ratio = f" ({one / row['seconds']:.2f}x)" if row["seconds"] else ""
        nodes = f"{row['nodes']} node{'s' if row['nodes'] > 1 else ''}"
        lines.append(f"fanned out on {nodes}: {row['seconds']:.0f} s{ratio}")
    if estimate["unmeasured"]:
        lines.append(f"not measured (never built with this cache; counted as 0): {', '.join(estimate['unmeasured'])}")
    return lines
