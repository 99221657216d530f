#!/usr/bin/env python3
"""What containers-storage takes to re-apply one module layer on another parent: the floor
of a change to a restacked module that is not the first of the stack (its new layer, built
on the common parent, is made anew above the modules stacked below it).

Per run: an image of the common parent, the module below (--below, default rust) and the
module (--module, default latex) is tagged by composer's own stacking (a manifest and a
config copied with skopeo: the module's layer is re-applied on the one below), timed, then
removed with the layer it made. Two settings of skopeo's folder for the layer's temporary
copy alternate from run to run: TMPDIR on the disk (/var/tmp, skopeo's default) and in
memory (/dev/shm), to tell whether that copy is the cost.

    python3 bench/reapply.py [--recipe recipes/turboflow.toml] [--below rust] [--module latex]
        [--runs 4] [--json FILE]      (as root; the recipe built in the default storage)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from composer import commands as cmd  # noqa: E402
from composer.planner import plan_file  # noqa: E402
from composer.restack.stack import inspect_docs, materialise, stack_documents  # noqa: E402
from composer.runner import Runner  # noqa: E402

TARGET = "localhost/composer-bench-reapply:latest"
SETTINGS = {"disk": "/var/tmp", "memory": "/dev/shm"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", type=Path, default=ROOT / "recipes" / "turboflow.toml")
    parser.add_argument("--below", default="rust")
    parser.add_argument("--module", default="latex")
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    plan = plan_file(args.recipe)
    steps = {s.module.name: s for s in plan.steps}
    below, module = steps[args.below], steps[args.module]
    if not (below.restacked and module.restacked and plan.reconcile is not None):
        sys.exit(f"{args.below} and {args.module} must both be restacked modules of {args.recipe}")
    runner, storage = Runner(), cmd.Storage()
    refs = [cmd.cache_ref(k) for k in (plan.reconcile.parent_key, below.key, module.key)]
    docs = [inspect_docs(runner, storage, ref) for ref in refs]
    stacked = stack_documents(docs[0], docs[1:])
    size = int(docs[2].layers[-1].get("size", 0))
    seconds: dict[str, list[float]] = {name: [] for name in SETTINGS}
    for run in range(args.runs):
        order = list(SETTINGS) if run % 2 == 0 else list(reversed(SETTINGS))
        for name in order:
            os.environ["TMPDIR"] = SETTINGS[name]
            subprocess.run(["sync"], check=True)
            started = time.monotonic()
            materialise(runner, storage, stacked, TARGET)
            seconds[name].append(round(time.monotonic() - started, 2))
            subprocess.run(["buildah", "rmi", TARGET], check=True, capture_output=True)
            print(f"run {run} TMPDIR on {name:6}: {seconds[name][-1]:6.2f} s", flush=True)
    result = {
        "recipe": str(args.recipe), "below": args.below, "module": args.module, "layer_bytes": size,
        "seconds": seconds, "median": {name: statistics.median(v) for name, v in seconds.items()},
        "commit": subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                                 text=True).stdout.strip(),
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
