#!/usr/bin/env python3
"""Restack against linear layering, side by side in one private storage.

The recipe is tests/recipes/restack-ci.toml (the CI-sized devpod part: base, users,
supervisord under ssh, management-api, tmux-workspace, latex, agents, ai-credentials)
and its linear twin. Measured:
  1. cold build of each (base bootstrapped once beforehand and shared), restack with
     --jobs 2 and with --jobs 1;
  2. one middle module's option changed (tmux-workspace's session name; a new value each
     run so every run rebuilds), restack vs linear, order alternating, median of --runs;
  3. a team swap (tmux-workspace replaced by another module): layers built vs reused.
Raw numbers go to --json; the machine and commit are recorded.

    python3 bench/restack.py [--runs 5] [--json bench-restack.json]   (as root)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RECIPES = ROOT / "tests" / "recipes"
sys.path.insert(0, str(ROOT))
from tests.conftest import write_container_config  # noqa: E402  (the tests' private podman config)


class Bench:
    def __init__(self, work: Path) -> None:
        self.work = work
        # Storage, run state, locks and networks all under work: the `podman system reset`
        # at the end resets this bench's podman, never the host's.
        self.env = dict(os.environ, **write_container_config(work))
        self.env.pop("PYTHONDONTWRITEBYTECODE", None)
        # The recipes are copied (the bench changes them); their modules are the project's.
        self.composer = [sys.executable, "-m", "composer", "--cache-dir", str(work / "cache"),
                         "--modules-dir", str(RECIPES / "layers"), "--modules-dir", str(ROOT / "layers")]

    def build(self, recipe: Path, *extra: str) -> tuple[float, dict]:
        report = self.work / "report.json"
        argv = [*self.composer, "build", "-q", "--no-archive", "--report", str(report), *extra, str(recipe)]
        started = time.perf_counter()
        done = subprocess.run(argv, env=self.env, cwd=ROOT, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"bench: {' '.join(argv)} failed:\n{done.stderr[-2000:]}")
        return time.perf_counter() - started, json.loads(report.read_text())


def layer_counts(report: dict) -> dict[str, int]:
    return {"built": report["totals"]["misses"], "reused": report["totals"]["hits"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", type=Path, help="write the raw numbers here")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="composer-bench-restack-"))
    bench = Bench(work)
    tree = work / "recipes"
    shutil.copytree(RECIPES, tree, ignore=shutil.ignore_patterns("__pycache__"))
    restack, linear = tree / "restack-ci.toml", tree / "restack-ci-linear.toml"
    raw: dict = {"commit": subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                                          text=True).stdout.strip(),
                 "machine": {"cores": os.cpu_count(), "platform": platform.platform()}, "runs": args.runs}
    try:
        base_only = tree / "base-only.toml"
        base_only.write_text('extends = "restack-ci.toml"\nname = "bench-base"\nlayering = "linear"\n'
                             'remove = ["ssh", "management-api", "tmux-workspace", "latex", "agents", '
                             '"ai-credentials"]\n')
        raw["foundation"], _ = bench.build(base_only)
        # 1. cold builds (the foundation is shared: both start from it)
        raw["cold"] = {}
        for name, recipe, extra in (("restack --jobs 2", restack, ("--jobs", "2")),
                                    ("restack --jobs 1", restack, ("--jobs", "1")), ("linear", linear, ())):
            seconds, report = bench.build(recipe, *extra)
            raw["cold"][name] = {"seconds": seconds, **layer_counts(report)}
            if name.startswith("restack"):  # forget the restacked layers for the next cold run
                for layer in report["layers"]:
                    if layer["kind"] in ("module", "reconcile", "finalize") and layer["cache"] == "miss":
                        subprocess.run(["buildah", "rmi", "-f", f"localhost/composer-cache:{layer['key']}"],
                                       env=bench.env, capture_output=True)
        bench.build(restack)  # cached again for what follows
        # 2. one middle module's option, a new value each run
        raw["change"] = {"restack": [], "linear": []}
        for i in range(args.runs):
            for name in (("restack", "linear") if i % 2 == 0 else ("linear", "restack")):
                child = tree / f"change-{name}-{i}.toml"
                child.write_text(f'extends = "{restack if name == "restack" else linear}"\nname = "bench-{name}"\n'
                                 f'[[layers]]\nmodule = "tmux-workspace"\n[layers.options]\nsession = "s{i}"\n')
                seconds, report = bench.build(child)
                raw["change"][name].append({"seconds": seconds, **layer_counts(report)})
        # 3. the team swap
        team = tree / "team.toml"
        team.write_text('extends = "restack-ci.toml"\nname = "bench-team"\nreplace = { "tmux-workspace" = "jq" }\n')
        seconds, report = bench.build(team)
        raw["swap"] = {"seconds": seconds, **layer_counts(report),
                       "built_modules": [x["module"] for x in report["layers"] if x["cache"] == "miss"]}
    finally:
        subprocess.run(["buildah", "rm", "--all"], env=bench.env, capture_output=True)
        subprocess.run(["podman", "system", "reset", "--force"], env=bench.env, capture_output=True)
        shutil.rmtree(work, ignore_errors=True)

    if args.json:
        args.json.write_text(json.dumps(raw, indent=2) + "\n")
    print(f"commit {raw['commit'][:12]}, {raw['machine']['cores']} cores; foundation {raw['foundation']:.1f}s")
    cold = raw["cold"]
    for name, row in cold.items():
        print(f"cold {name:<18} {row['seconds']:7.1f}s  built {row['built']}, reused {row['reused']}")
    print(f"cold restack --jobs 2 / linear: {cold['restack --jobs 2']['seconds'] / cold['linear']['seconds']:.2f}")
    med = {}
    for name, rows in raw["change"].items():
        values = [r["seconds"] for r in rows]
        med[name] = statistics.median(values)
        print(f"middle option change, {name:<8} median {med[name]:6.1f}s  min {min(values):6.1f}  "
              f"max {max(values):6.1f}  layers built {rows[0]['built']}")
    print(f"middle option change, restack / linear: {med['restack'] / med['linear']:.2f}")
    swap = raw["swap"]
    print(f"team swap: {swap['seconds']:.1f}s, built {swap['built_modules']}, reused {swap['reused']}")


if __name__ == "__main__":
    main()
