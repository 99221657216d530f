#!/usr/bin/env python3
"""Restacked modules built at once: this tree against an earlier commit (--old REV, checked
out with `git worktree`), side by side in one storage, the package downloads warm.

Made to measure a change to how restacked modules share package installs (composer-install
and the build's install lock: docs/benchmarks.md, "restacked modules' installs side by
side"). A change to the toolkit changes every module's key, so each tree builds its own
layers, and a recipe with a lock needs `composer lock` for the tree first. Per tree, once: a
build of the recipe (its common parent, and the downloads, from then on cached). Per run,
for each tree, in an order that alternates from run to run: every restacked module layer of
the tree's plan removed (with the stack, reconcile and finalize), then `composer build
--no-archive --jobs N`: the restacked modules built again, N at a time, and stacked.
Figures: the build's wall time, and the sum of the module layers' own seconds (--report).

    python3 bench/installs.py --old REV [--recipe tests/recipes/restack-ci.toml] [--jobs 2]
        [--runs 3] [--json FILE] [--storage-dir DIR | --default-storage]       (as root; git)

The storage is a private one under the work folder (or --storage-dir, kept: a second run
reuses its common parents); the cache folder too.
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
sys.path.insert(0, str(ROOT))
from reconcile import alternated, build, keys, remove  # noqa: E402  (bench/reconcile.py: a tree's keys, a timed build)

from tests.conftest import write_container_config  # noqa: E402  (the tests' private podman config)


class Trees:
    def __init__(self, work: Path, storage: Path | None, recipe: Path, jobs: int) -> None:
        self.work, self.recipe, self.jobs = work, recipe, jobs
        self.env = dict(os.environ)
        self.cache: list[str] = []
        if storage is not None:  # None: the host's default storage and composer cache
            storage.mkdir(parents=True, exist_ok=True)
            self.env.update(write_container_config(storage))
            self.cache = ["--cache-dir", str(storage / "cache")]

    def forget(self, tree: Path) -> None:
        k = keys(tree, self.recipe)
        remove(*k["restacked"], k["stack"], k["reconcile"], k["finalize"], env=self.env)

    def build(self, tree: Path) -> tuple[float, dict[str, float]]:
        return build(tree, self.recipe, self.work / "report.json", "-q", "--no-sbom", "--jobs", str(self.jobs),
                     options=self.cache, env=self.env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--old", required=True, help="The commit to compare with.")
    parser.add_argument("--recipe", type=Path, default=Path("tests/recipes/restack-ci.toml"))
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--storage-dir", type=Path, help="keep the storage here (default: a temporary folder)")
    parser.add_argument("--default-storage", action="store_true",
                        help="use the host's default storage and composer cache (where `composer build` of the "
                             "recipe left the old tree's layers: its warm-up is then a no-op)")
    args = parser.parse_args()
    recipe = args.recipe if args.recipe.is_absolute() else (ROOT / args.recipe).resolve()
    work = Path(tempfile.mkdtemp(prefix="composer-bench-installs-"))
    private = not (args.default_storage or args.storage_dir)  # a storage of this run's own, removed after
    storage = None if args.default_storage else args.storage_dir.resolve() if args.storage_dir else work / "storage"
    old_tree = work / "old"
    subprocess.run(["git", "worktree", "add", "--detach", str(old_tree), args.old], cwd=ROOT, check=True,
                   capture_output=True)
    trees = {"new": ROOT, "old": old_tree}
    bench = Trees(work, storage, recipe, args.jobs)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    runs: list[dict[str, Any]] = []
    try:
        for name, tree in trees.items():  # each tree's common parent, and the downloads, once
            wall, _ = bench.build(tree)
            print(f"warm-up {name}: {wall:.1f}s", flush=True)
        for i in range(args.runs):
            for name in alternated(list(trees), i):
                bench.forget(trees[name])
                wall, seconds = bench.build(trees[name])
                modules = {m: s for m, s in seconds.items() if m not in ("reconcile", "finalize")}
                runs.append({"run": i, "tree": name, "wall": wall, "layers": seconds,
                             "module_seconds": sum(modules.values())})
                print(f"run {i} {name}: {wall:6.1f}s  " + "  ".join(f"{m} {s:.1f}s" for m, s in seconds.items()),
                      flush=True)
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(old_tree)], cwd=ROOT, capture_output=True)
        if private:
            subprocess.run(["buildah", "rm", "--all"], env=bench.env, capture_output=True)
            subprocess.run(["podman", "system", "reset", "--force"], env=bench.env, capture_output=True)
        shutil.rmtree(work, ignore_errors=True)

    result: dict[str, Any] = {"recipe": str(args.recipe), "jobs": args.jobs, "runs": args.runs, "commit": commit,
                              "old": args.old, "cores": os.cpu_count(), "medians": {}, "raw": runs}
    for what in ("wall", "module_seconds"):
        new, old = (statistics.median(r[what] for r in runs if r["tree"] == t) for t in ("new", "old"))
        result["medians"][what] = {"new": new, "old": old, "new/old": new / old if old else None}
    print(json.dumps(result["medians"], indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
