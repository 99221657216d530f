#!/usr/bin/env python3
"""What a change to one restacked module costs above its own build: this tree against an
earlier commit (--old REV, checked out with `git worktree`), side by side in one storage.

The recipe must be built already (default: recipes/turboflow.toml in the default storage,
as `composer build recipes/turboflow.toml` leaves it). Per run, for each tree, in an order
that alternates from run to run:
  - no-move: the reconcile and finalize layers removed, then `composer build --no-archive`:
    the stack is there, reconcile is analysed and built again (what every change pays);
  - last:    the last restacked module's layer, the stack, reconcile and finalize removed,
    then the same build: the module is built again (same key) and stacked on the others
    (nothing after it to re-apply), the case "a team changes its last module".
  - edit:    a recipe extending the recipe with one option of its last restacked module
    changed (--edit, default agents' extra_dir), a new value per tree and run, its lock the
    recipe's with that module's inputs as the tree's code computes them: the module is
    built anew under a new key (so is the stack), as when a team edits its last module;
    the reconcile layer of the tree's previous build is there to be reused;
  - change:  like last, for the module --module of the recipe --changed (default: a TeX
    collection added to latex, one of the big modules at the bottom of the stack: every
    layer above it is re-applied); the recipe and its lock must exist and be built once;
  - swap:    a team recipe (--team, default recipes/teams/ml.toml: vnc-desktop swapped for
    novnc) whose own stack, reconcile, finalize and image tag are removed, then the same
    build of the team recipe: its stack shares the recipe's up to the first swapped module, every layer
    above it is re-applied (what the stack order decides, docs/restack.md "Stack order").
Each tree keys reconcile with its own code (the key includes it), so the two never share a
reconcile layer; the module layer and the stack they share are removed for each build. The
old tree has a cache folder of its own (the package downloads copied in), so that neither
tree's reconcile scans and digests are swept by the other's.
Seconds are the build's own per-layer figures (--report), and the wall time of the command.

    python3 bench/reconcile.py --old REV [--recipe recipes/turboflow.toml] [--cases no-move,last,edit,swap,change]
        [--team recipes/teams/ml.toml] [--runs 3] [--json FILE]      (as root; the recipe built; git)

--own-recipes: each tree builds its own copy of the recipes (a stack order set in one tree's
recipe and not in the other's is then what is compared, the swap case's purpose).
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
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

ROOT = Path(__file__).resolve().parent.parent
KEYS = """
import json, sys
from pathlib import Path
from composer.planner import plan_file
plan = plan_file(Path(sys.argv[1]))
members = [s for s in plan.steps if s.restacked]
print(json.dumps({"reconcile": plan.reconcile.key, "stack": plan.reconcile.stack_key, "finalize": plan.finalize.key,
                  "last": members[-1].key, "last_name": members[-1].module.name, "image": plan.image_ref,
                  "members": {s.module.name: s.key for s in members},
                  "restacked": [s.key for s in members], "layers": [x.key for x in plan.layers()]}))
"""
INPUTS = """
import json, sys
from pathlib import Path
from composer.planner import module_inputs, plan_file, relock
plan = plan_file(Path(sys.argv[1]))
print(json.dumps({s.module.name: module_inputs(s.key_document) for s in relock(plan, None, {}).steps}))
"""


def keys(tree: Path, recipe: Path) -> dict[str, Any]:
    """The keys of recipe's plan with tree's code (each tree keys with its own)."""
    out = subprocess.run([sys.executable, "-c", KEYS, str(recipe)], cwd=tree, check=True, capture_output=True,
                         text=True, env={**os.environ, "PYTHONPATH": str(tree)}).stdout
    return dict(json.loads(out))


def edited(tree: Path, recipe: Path, folder: Path, module: str, option: str, value: str) -> Path:
    """A recipe extending recipe with module's option set to value, and its lock: recipe's
    with that module's inputs as tree's code computes them (the packages stay locked)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / recipe.name
    path.write_text(f'extends = "{recipe}"\n[[layers]]\nmodule = "{module}"\n[layers.options]\n'
                    f'{option} = {json.dumps(value)}\n')
    out = subprocess.run([sys.executable, "-c", INPUTS, str(path)], cwd=tree, check=True, capture_output=True,
                         text=True, env={**os.environ, "PYTHONPATH": str(tree)}).stdout
    inputs = json.loads(out)[module]
    lock = recipe.with_suffix(".lock").read_text()
    header = f'[modules."{module}"]\ninputs = "'
    start = lock.index(header) + len(header)
    path.with_suffix(".lock").write_text(lock[:start] + inputs + lock[lock.index('"', start):])
    return path


def remove_images(*refs: str, env: Mapping[str, str] | None = None) -> None:
    """The images gone from the storage, with -f (env: which one; default the host's)."""
    for ref in refs:
        subprocess.run(["buildah", "rmi", "-f", ref], env=env, capture_output=True)


def remove(*keys: str, env: Mapping[str, str] | None = None) -> None:
    """The cached layers of keys gone from the storage."""
    remove_images(*(f"localhost/composer-cache:{key}" for key in keys), env=env)


def alternated(names: Sequence[T], run: int) -> list[T]:
    """The order of run `run`: who goes first alternates from run to run."""
    return [*names[run % 2:], *names[:run % 2]]


def build(tree: Path, recipe: Path, report: Path, *extra: str, options: Sequence[str] = (),
          env: Mapping[str, str] | None = None, output: Path | None = None) -> tuple[float, dict[str, float]]:
    """`composer [options] build --no-archive [extra]` of recipe with tree's code (output:
    export into that folder instead, the OCI layout only): the wall time, and the seconds
    of each layer it built (its --report)."""
    export = ["--no-archive"] if output is None else ["-o", str(output), "--no-oci-archive", "--no-sbom"]
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "composer", *options, "build", *export, *extra,
                             "--report", str(report), str(recipe)], cwd=tree, capture_output=True, text=True,
                            env={**(os.environ if env is None else env), "PYTHONPATH": str(tree)})
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"build in {tree} exited {result.returncode}:\n{result.stderr[-2000:]}")
    layers = json.loads(report.read_text())["layers"]
    return wall, {layer["module"]: layer["seconds"] for layer in layers if layer["cache"] == "miss"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--old", required=True, help="The commit to compare with.")
    parser.add_argument("--recipe", type=Path, default=Path("recipes/turboflow.toml"))
    parser.add_argument("--team", type=Path, default=Path("recipes/teams/ml.toml"))
    parser.add_argument("--cases", default="no-move,last,swap")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--changed", type=Path, help="The change case's recipe (with its lock).")
    parser.add_argument("--module", default="latex", help="The change case's module.")
    parser.add_argument("--edit", default="agents.extra_dir",
                        help="MODULE.OPTION the edit case sets (a string option of the last restacked module).")
    parser.add_argument("--own-recipes", action="store_true",
                        help="Each tree builds its own copy of --recipe and --team (relative paths): "
                             "compares recipes (a stack order) rather than code on one recipe.")
    args = parser.parse_args()
    recipe = (ROOT / args.recipe).resolve() if not args.recipe.is_absolute() else args.recipe
    team = (ROOT / args.team).resolve() if not args.team.is_absolute() else args.team
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    if "change" in cases and args.changed is None:
        parser.error("the change case needs --changed RECIPE")
    work = Path(tempfile.mkdtemp(prefix="composer-bench-reconcile-"))
    old_tree = work / "old"
    subprocess.run(["git", "worktree", "add", "--detach", str(old_tree), args.old], cwd=ROOT, check=True,
                   capture_output=True)
    trees = {"new": ROOT, "old": old_tree}
    # The old tree's cache folder of its own (package downloads copied in): an older sweep of
    # the reconcile's scans may drop files a newer one keeps there (the members' digests).
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "composer"
    old_cache = work / "old-cache"
    if (cache / "packages").is_dir():
        shutil.copytree(cache / "packages", old_cache / "packages", symlinks=True)
    options = {"new": [], "old": ["--cache-dir", str(old_cache)]}
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    runs: list[dict[str, Any]] = []
    try:
        def own(name: str, path: Path, given: Path) -> Path:
            return trees[name] / given if args.own_recipes and not given.is_absolute() else path

        for name, tree in trees.items():  # each tree's reconcile layer (and the team's), once, before timing
            build(tree, own(name, recipe, args.recipe), work / "report.json", options=options[name])
            if "swap" in cases:
                build(tree, own(name, team, args.team), work / "report.json", options=options[name])
            if "change" in cases:
                build(tree, args.changed.resolve(), work / "report.json", options=options[name])
        for i in range(args.runs):
            order = alternated(list(trees), i)
            for case in cases:
                for name in order:
                    built = own(name, team, args.team) if case == "swap" else own(name, recipe, args.recipe)
                    if case == "change":
                        built = args.changed.resolve()
                    if case == "edit":
                        module, option = args.edit.split(".", 1)
                        built = edited(trees[name], built, work / f"edit-{name}-{i}", module, option,
                                       f"/opt/{work.name.replace('_', '-')}-{name}-{i}")  # new in every bench
                    k = keys(trees[name], built)
                    remove(k["finalize"], k["reconcile"])
                    if case == "last":
                        remove(k["last"], k["stack"])
                    if case == "change":
                        remove(k["members"][args.module], k["stack"])
                    if case == "swap":
                        # The team's image tag too (both trees tag it; -f everywhere): an image
                        # left holds the stack's layers, which the stack would find again
                        # instead of re-applying them.
                        remove_images(k["image"])
                        remove(k["stack"])
                    wall, seconds = build(trees[name], built, work / "report.json", options=options[name])
                    runs.append({"run": i, "case": case, "tree": name, "wall": wall, "layers": seconds})
                    print(f"run {i} {case:<8} {name}: {wall:6.1f}s  "
                          + "  ".join(f"{m} {s:.1f}s" for m, s in seconds.items()), flush=True)
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(old_tree)], cwd=ROOT, capture_output=True)
        shutil.rmtree(work, ignore_errors=True)

    def median(case: str, tree: str, what: str) -> float:
        values = [r["wall"] if what == "wall" else r["layers"].get(what, 0.0)
                  for r in runs if r["case"] == case and r["tree"] == tree]
        return statistics.median(values)

    result: dict[str, Any] = {"recipe": str(args.recipe), "team": str(args.team), "runs": args.runs,
                              "commit": commit, "old": args.old, "cores": os.cpu_count(), "medians": {}, "raw": runs}
    for case in cases:
        for what in ("wall", "reconcile", *([args.module] if case == "change" else [])):
            new, old = median(case, "new", what), median(case, "old", what)
            result["medians"][f"{case} {what}"] = {"new": new, "old": old, "new/old": new / old if old else None}
    print(json.dumps(result["medians"], indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
