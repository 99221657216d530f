#!/usr/bin/env python3
"""`composer plan --offline` of this worktree against another commit's, side by side.

    python3 bench/plan.py [--against REV] [--runs 10] [RECIPE ...]

REV's composer/, layers/ and hooks/ are unpacked into a temp folder (git archive) and run
with the same Python; runs alternate which goes first. Default recipes: a generated
100-module recipe (bench/compare.py's, the target is <= 0.2 s) and recipes/turboflow.toml.
Prints wall and CPU seconds (median, min-max) per recipe and the ratio new/old.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from compare import PLAN_MODULES, synth_recipe  # noqa: E402


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(argv, env=env, cwd=tempfile.gettempdir(), check=True, capture_output=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--against", default="HEAD", help="The commit to compare with (default: HEAD).")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("recipes", nargs="*", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="composer-plan-bench-") as tmp:
        old = Path(tmp) / "old"
        old.mkdir()
        archive = subprocess.run(["git", "archive", args.against, "composer", "layers", "hooks"], cwd=ROOT,
                                 check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(old)], input=archive, check=True)
        recipes = args.recipes or [synth_recipe(Path(tmp) / "plan100", PLAN_MODULES, "p", scripts=False),
                                   ROOT / "recipes" / "turboflow.toml"]
        # PYTHONPATH first: the worktree's own composer is an editable install.
        sides = {args.against: str(old), "worktree": str(ROOT)}
        print(f"load {os.getloadavg()[0]:.1f}, {args.runs} runs, median (min-max) seconds")
        for recipe in recipes:
            results: dict[str, list[tuple[float, float]]] = {name: [] for name in sides}
            argv = [sys.executable, "-m", "composer", "plan", "--offline", str(recipe.resolve())]
            for i in range(args.runs):
                order = list(sides.items()) if i % 2 == 0 else list(sides.items())[::-1]
                for name, path in order:
                    results[name].append(timed(argv, dict(os.environ, PYTHONPATH=path)))
            print(recipe.name)
            medians = {}
            for name, values in results.items():
                wall, cpu = [v[0] for v in values], [v[1] for v in values]
                medians[name] = statistics.median(wall)
                print(f"  {name:<12} wall {statistics.median(wall):.3f} ({min(wall):.3f}-{max(wall):.3f})"
                      f"  cpu {statistics.median(cpu):.3f} ({min(cpu):.3f}-{max(cpu):.3f})")
            print(f"  worktree / {args.against}: {medians['worktree'] / medians[args.against]:.2f}")


if __name__ == "__main__":
    main()
