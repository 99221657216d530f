#!/usr/bin/env python3
"""A cold build with its first export: the layers compressed as they are committed (early
export, the default) against compressed after the build (--no-early-export), side by side.

Per run, for each mode, in an order that alternates from run to run: every layer of the
recipe's plan removed from the storage (the package downloads and the bootstrap's debs stay
in the cache, warm), the output folder emptied, then `composer build -o OUT
--no-oci-archive --no-sbom --report`: every layer built again, and the OCI layout written.
Figures: the build's wall time; the module layers' seconds (their sum: the build is slowed
by the compression going on beside it); what the export cost after the last layer (the wait
for the early export, then the layout); the seconds the early export compressed.

    python3 bench/early_export.py [--recipe recipes/turboflow.toml] [--runs 2] [--json FILE]
        (as root; the default storage; about 20 minutes per build of turboflow on 2 cores)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from reconcile import alternated, build, keys, remove, remove_images  # noqa: E402  (bench/reconcile.py)

MODES = {"early": "--early-export", "late": "--no-early-export"}


def one(recipe: Path, mode: str, work: Path) -> dict[str, Any]:
    k = keys(ROOT, recipe)
    remove_images(k["image"])
    remove(k["stack"], *reversed(k["layers"]))
    out = work / "out"
    shutil.rmtree(out, ignore_errors=True)
    report = work / "report.json"
    wall, seconds = build(ROOT, recipe, report, MODES[mode], output=out)
    export = json.loads(report.read_text())["export"]
    early = export.get("early", {})
    return {"mode": mode, "wall": wall, "layers": sum(seconds.values()), "built": len(seconds),
            "export_after_layers": early.get("waited", 0.0) + export["layout"]["seconds"],
            "early_seconds": early.get("seconds", 0.0), "early_layers": early.get("layers_written", 0),
            "layout_layers": export["layout"]["layers_written"], "per_layer": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", type=Path, default=Path("recipes/turboflow.toml"))
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    recipe = (ROOT / args.recipe).resolve() if not args.recipe.is_absolute() else args.recipe
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    work = Path(tempfile.mkdtemp(prefix="composer-bench-early-"))
    runs: list[dict[str, Any]] = []
    try:
        for i in range(args.runs):
            for mode in alternated(list(MODES), i):
                row = {"run": i, **one(recipe, mode, work)}
                runs.append(row)
                print(f"run {i} {mode:<5}: wall {row['wall']:7.1f}s  layers {row['layers']:7.1f}s "
                      f"({row['built']} built)  export after the layers {row['export_after_layers']:6.1f}s  "
                      f"early {row['early_seconds']:6.1f}s ({row['early_layers']} layers), "
                      f"layout wrote {row['layout_layers']}", flush=True)
                result = {"recipe": str(args.recipe), "runs": args.runs, "commit": commit, "cores": os.cpu_count(),
                          "medians": medians(runs), "raw": runs}
                if args.json:  # after every build: a run cut short keeps what it measured
                    args.json.write_text(json.dumps(result, indent=2) + "\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(medians(runs), indent=2))


def medians(runs: list[dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    out: dict[str, dict[str, float | None]] = {}
    for what in ("wall", "layers", "export_after_layers"):
        early, late = ([r[what] for r in runs if r["mode"] == mode] for mode in MODES)
        if early and late:
            a, b = statistics.median(early), statistics.median(late)
            out[what] = {"early": a, "late": b, "early/late": a / b if b else None}
    return out

if __name__ == "__main__":
    main()
